//! Authentication: HMAC-SHA256 with pairwise keys, PBFT authenticators for multicast, and
//! Ed25519 signatures for the rare messages that must convince third parties.
//!
//! Key distribution: every pair of agreement replicas shares a random key written by
//! `zz init`, and so does every (agreement replica, execution replica) pair. Each replica
//! and each execution replica also holds a client master secret; the key it shares with
//! client `c` is HMAC(master, c), so it derives any client's key without a table, and a
//! client is provisioned with the keys for its own id. No node learns the keys that two
//! other nodes share, so it cannot forge their messages.
//!
//! Client requests are also signed (Ed25519, one key pair per client id; every node holds
//! the public keys). A MAC convinces only the replica holding its key, so a client could
//! make a request valid for some replicas and not others, and backups would then refuse a
//! correct primary's batch; a signature convinces every replica alike. The MAC slots stay as
//! the cheap path: a backup checks the signature of a batched request only when its own slot
//! fails (the Aardvark scheme).

use crate::ids::{ClientId, NodeId, ReplicaId};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type HmacSha256 = Hmac<sha2::Sha256>;

/// A 32-byte HMAC-SHA256 tag.
pub type Mac = [u8; 32];

/// A 32-byte symmetric key shared by exactly two nodes.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// HMAC-SHA256 over `parts`, concatenated.
    pub fn mac(&self, parts: &[&[u8]]) -> Mac {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against the MAC of `parts`.
    pub fn verify(&self, parts: &[&[u8]], tag: &Mac) -> bool {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("any key length");
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

/// A session key with its HMAC state keyed once: computing a MAC then costs only the
/// message's own hashing, not the two extra compressions of keying HMAC every time.
#[derive(Clone)]
pub struct MacKey(HmacSha256);

impl MacKey {
    pub fn new(key: &SessionKey) -> MacKey {
        MacKey(<HmacSha256 as KeyInit>::new_from_slice(&key.0).expect("any key length"))
    }

    pub fn mac(&self, parts: &[&[u8]]) -> Mac {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against the MAC of `parts`.
    pub fn verify(&self, parts: &[&[u8]], tag: &Mac) -> bool {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// The key a replica or an execution replica shares with `client`, derived from that
/// node's client master.
pub fn client_key(client_master: &SessionKey, client: ClientId) -> SessionKey {
    SessionKey(client_master.mac(&[b"zz client key", &client.0.to_le_bytes()]))
}

/// One MAC per agreement replica, indexed by replica id (PBFT's authenticator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticator(pub Vec<Mac>);

/// An Ed25519 signature, stored as two halves because serde has no 64-byte arrays.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(pub [u8; 32], pub [u8; 32]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl Signature {
    fn to_bytes(self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.0);
        bytes[32..].copy_from_slice(&self.1);
        bytes
    }

    fn from_bytes(bytes: [u8; 64]) -> Signature {
        let mut low = [0u8; 32];
        let mut high = [0u8; 32];
        low.copy_from_slice(&bytes[..32]);
        high.copy_from_slice(&bytes[32..]);
        Signature(low, high)
    }
}

/// A message body that may be signed. Each kind has its own domain so a signature on one
/// kind can never be replayed as another of the same shape (a prepare as a pre-prepare).
pub trait SignedBody: Serialize {
    const DOMAIN: &'static [u8];
}

/// `body`, signed by agreement replica `signer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    pub body: T,
    pub signer: ReplicaId,
    pub signature: Signature,
}

fn signing_input<T: SignedBody>(body: &T, signer: ReplicaId) -> Vec<u8> {
    let mut input = Vec::with_capacity(64);
    input.extend_from_slice(b"zz sig ");
    input.extend_from_slice(T::DOMAIN);
    input.extend_from_slice(&signer.0.to_le_bytes());
    postcard::to_io(body, &mut input).expect("encoding into a Vec cannot fail");
    input
}

impl<T: SignedBody> Signed<T> {
    pub fn sign(body: T, signer: ReplicaId, key: &SigningKey) -> Signed<T> {
        let signature = Signature::from_bytes(key.sign(&signing_input(&body, signer)).to_bytes());
        Signed {
            body,
            signer,
            signature,
        }
    }

    /// Whether the signature is `signer`'s, per `keys`. Strict: a signature with a
    /// non-canonical or small-order component is refused, so no replica accepts a
    /// signature another would refuse (or one a forger derived from a genuine one).
    pub fn verify(&self, keys: &ReplicaVerifyingKeys) -> bool {
        let Some(key) = keys.0.get(self.signer.index()) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature.to_bytes());
        verify_strict(key, &signing_input(&self.body, self.signer), &signature)
    }
}

/// Signature checks remembered at most, per thread, before the memo starts over.
const CHECKS_REMEMBERED_MAX: usize = 1 << 18;

thread_local! {
    /// Outcomes of signature checks on this thread, by a digest of key, signature and
    /// input, while [`remember_signature_checks`] is on.
    static CHECKS: std::cell::RefCell<Option<std::collections::HashMap<[u8; 32], bool>>> =
        const { std::cell::RefCell::new(None) };
}

/// Remember on this thread the outcome of every signature check, or stop (and forget).
/// For the simulator, where every node runs on one thread and checks the same signatures
/// again and again (3f+1 replicas, retransmissions, certificates): a check is a pure
/// function of key, signature and input, so remembering it changes no outcome, only the
/// time. Nodes never turn it on.
pub fn remember_signature_checks(on: bool) {
    CHECKS.with(|checks| *checks.borrow_mut() = on.then(Default::default));
}

fn verify_strict(key: &VerifyingKey, input: &[u8], signature: &ed25519_dalek::Signature) -> bool {
    let check = || key.verify_strict(input, signature).is_ok();
    CHECKS.with(|checks| {
        let mut checks = checks.borrow_mut();
        let Some(checks) = checks.as_mut() else {
            return check();
        };
        // Key and signature have fixed lengths: the concatenation is unambiguous.
        let id = crate::ids::Digest::of(&[key.as_bytes(), &signature.to_bytes(), input]).0;
        if let Some(&valid) = checks.get(&id) {
            return valid;
        }
        let valid = check();
        if checks.len() >= CHECKS_REMEMBERED_MAX {
            checks.clear();
        }
        checks.insert(id, valid);
        valid
    })
}

/// Every agreement replica's public key, indexed by replica id.
#[derive(Clone, Debug)]
pub struct ReplicaVerifyingKeys(pub Vec<VerifyingKey>);

/// Every provisioned client's request-verifying key, indexed by client id (0..len).
#[derive(Clone, Debug, Default)]
pub struct ClientVerifyingKeys(pub std::sync::Arc<Vec<VerifyingKey>>);

impl ClientVerifyingKeys {
    pub fn new(keys: Vec<VerifyingKey>) -> ClientVerifyingKeys {
        ClientVerifyingKeys(std::sync::Arc::new(keys))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, client: ClientId) -> Option<&VerifyingKey> {
        usize::try_from(client.0)
            .ok()
            .and_then(|index| self.0.get(index))
    }
}

/// What a client signs for a request: a domain, then the request's encoding.
fn request_signing_input(request_bytes: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(24 + request_bytes.len());
    input.extend_from_slice(b"zz sig client request");
    input.extend_from_slice(request_bytes);
    input
}

/// A client's signature over an encoded request.
pub fn sign_request(key: &SigningKey, request_bytes: &[u8]) -> Signature {
    Signature::from_bytes(key.sign(&request_signing_input(request_bytes)).to_bytes())
}

/// Whether `signature` is `key`'s over the encoded request (strict, as for replicas).
pub fn verify_request(key: &VerifyingKey, request_bytes: &[u8], signature: &Signature) -> bool {
    let signature = ed25519_dalek::Signature::from_bytes(&signature.to_bytes());
    verify_strict(key, &request_signing_input(request_bytes), &signature)
}

/// Client `client`'s request-signing key, derived from the operator's signing master (held
/// only in `keys/clients.toml` and in that client's own key file).
pub fn client_signing_key(signing_master: &SessionKey, client: ClientId) -> SigningKey {
    signing_key_from_bytes(signing_master.mac(&[b"zz client signing key", &client.0.to_le_bytes()]))
}

/// The secret keys one node holds.
#[derive(Clone, Debug)]
pub struct NodeKeys {
    pub id: NodeId,
    /// Pairwise keys. A replica holds one per other replica and per execution replica; an
    /// execution replica one per replica; a client one per replica and per execution
    /// replica (derived from their client masters).
    pub peer_keys: BTreeMap<NodeId, SessionKey>,
    /// For a replica or an execution replica: the master from which client keys are derived.
    pub client_master: Option<SessionKey>,
    /// For a replica: its signing key. For a client: the key it signs its requests with.
    pub signing_key: Option<SigningKey>,
}

impl NodeKeys {
    /// The key this node shares with `peer`, if it has one.
    pub fn key_for(&self, peer: NodeId) -> Option<SessionKey> {
        match peer {
            NodeId::Client(client) => self
                .client_master
                .as_ref()
                .map(|master| client_key(master, client)),
            NodeId::Replica(_) | NodeId::Execution(_) | NodeId::Activator(_) => {
                self.peer_keys.get(&peer).copied()
            }
        }
    }
}

/// A deterministic signing key from 32 bytes of seed material.
pub fn signing_key_from_bytes(bytes: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&bytes)
}

pub use ed25519_dalek::{SigningKey as Ed25519SigningKey, VerifyingKey as Ed25519VerifyingKey};

impl SignedBody for crate::messages::PrePrepareHeader {
    const DOMAIN: &'static [u8] = b"pre-prepare";
}
impl SignedBody for crate::messages::Prepare {
    const DOMAIN: &'static [u8] = b"prepare";
}
impl SignedBody for crate::messages::Checkpoint {
    const DOMAIN: &'static [u8] = b"checkpoint";
}
impl SignedBody for crate::messages::ViewChange {
    const DOMAIN: &'static [u8] = b"view-change";
}
impl SignedBody for crate::messages::ExecutionCheckpoint {
    const DOMAIN: &'static [u8] = b"stable execution checkpoint vote";
}
impl SignedBody for crate::messages::NewView {
    const DOMAIN: &'static [u8] = b"new-view";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let tag: [u8; 32] = mac.finalize().into_bytes().into();
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn signature_does_not_cross_domains() {
        use crate::ids::{Digest, Seq, View};
        use crate::messages::{PrePrepareHeader, Prepare};
        let key = signing_key_from_bytes([7; 32]);
        let keys = ReplicaVerifyingKeys(vec![key.verifying_key()]);
        let prepare = Signed::sign(
            Prepare {
                view: View(1),
                seq: Seq(2),
                digest: Digest([3; 32]),
            },
            ReplicaId(0),
            &key,
        );
        assert!(prepare.verify(&keys));
        let forged = Signed {
            body: PrePrepareHeader {
                view: View(1),
                seq: Seq(2),
                digest: Digest([3; 32]),
            },
            signer: ReplicaId(0),
            signature: prepare.signature,
        };
        assert!(!forged.verify(&keys));
    }

    /// A small-order key (here the identity point) with R the identity and S zero
    /// "verifies" any message under the lax check; the strict one refuses it.
    #[test]
    fn a_signature_under_a_small_order_key_is_refused() {
        use crate::ids::{Digest, Seq, View};
        use crate::messages::Prepare;
        use ed25519_dalek::Verifier as _;
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak_key = VerifyingKey::from_bytes(&identity).expect("a point on the curve");
        let mut signature = [0u8; 64];
        signature[0] = 1;
        let forged = Signed {
            body: Prepare {
                view: View(1),
                seq: Seq(2),
                digest: Digest([3; 32]),
            },
            signer: ReplicaId(0),
            signature: Signature::from_bytes(signature),
        };
        let lax = ed25519_dalek::Signature::from_bytes(&signature);
        let input = signing_input(&forged.body, forged.signer);
        assert!(
            weak_key.verify(&input, &lax).is_ok(),
            "the lax check accepts it"
        );
        assert!(!forged.verify(&ReplicaVerifyingKeys(vec![weak_key])));
    }
}
