//! Framing, sealing and opening. An [`Endpoint`] seals outgoing messages (a MAC for one
//! receiver, an authenticator for a multicast to the replicas) and opens incoming frames:
//! size check before decoding, MAC check, then the signature and certificate checks of
//! [`crate::validate`]. Only what passes all of them comes out, as a [`Verified`] message.
//! What fails is a [`Rejection`]; drivers count it, and what they refuse themselves after
//! opening, by [`RejectReason`] in their [`FrameCounters`].

use crate::crypto::{
    Authenticator, ClientVerifyingKeys, Mac, MacKey, NodeKeys, ReplicaVerifyingKeys, Signature,
    sign_request, verify_request,
};
use crate::ids::{AppId, ClientId, NodeId, ReplicaId};
use crate::messages::{AuthenticatedRequest, Message, Request};
use crate::params::ProtocolParams;
use crate::validate::{self, Invalid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

/// How an envelope is authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// One MAC, for one receiver.
    Mac(Mac),
    /// One MAC per agreement replica, indexed by replica id.
    Authenticator(Authenticator),
}

/// What travels in one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub auth: Auth,
    /// The postcard encoding of a [`Message`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A message whose sender was authenticated and whose signatures and certificates checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    from: NodeId,
    message: Message,
}

impl Verified {
    pub fn from(&self) -> NodeId {
        self.from
    }
    pub fn message(&self) -> &Message {
        &self.message
    }
    pub fn into_parts(self) -> (NodeId, Message) {
        (self.from, self.message)
    }

    /// Wrap a message a test builds by hand, as if `from` had sent it and it had passed
    /// every check. Only tests may: network input must go through [`Endpoint::open`].
    #[cfg(any(test, feature = "test-support"))]
    pub fn assume_verified(from: NodeId, message: Message) -> Verified {
        Verified { from, message }
    }
}

/// Why an incoming frame was dropped. Every variant is counted by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("envelope does not decode: {0}")]
    EnvelopeDecode(String),
    #[error("message does not decode: {0}")]
    MessageDecode(String),
    #[error("no key shared with sender {0}")]
    UnknownSender(NodeId),
    #[error("bad MAC from {0}")]
    BadMac(NodeId),
    #[error("invalid {kind} from {from}: {invalid}")]
    Invalid {
        from: NodeId,
        kind: &'static str,
        invalid: Invalid,
    },
}

impl Rejection {
    /// Why, for counters.
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::FrameTooLarge { .. } => RejectReason::FrameTooLarge,
            Rejection::EnvelopeDecode(_) => RejectReason::EnvelopeDecode,
            Rejection::MessageDecode(_) => RejectReason::MessageDecode,
            Rejection::UnknownSender(_) => RejectReason::UnknownSender,
            Rejection::BadMac(_) => RejectReason::BadMac,
            Rejection::Invalid { .. } => RejectReason::Invalid,
        }
    }
}

/// Why a node dropped an incoming frame before its core saw it: a [`Rejection`] of
/// [`Endpoint::open`], or a message that opened but that the driver refuses. Status files
/// show each by its name (`bad-mac`, `bad-bucket`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// [`Rejection::FrameTooLarge`].
    FrameTooLarge,
    /// [`Rejection::EnvelopeDecode`].
    EnvelopeDecode,
    /// [`Rejection::MessageDecode`].
    MessageDecode,
    /// [`Rejection::UnknownSender`].
    UnknownSender,
    /// [`Rejection::BadMac`].
    BadMac,
    /// [`Rejection::Invalid`].
    Invalid,
    /// A kind of message this node never takes (or not from that sender).
    UnexpectedKind,
    /// An order or report for an app this execution replica does not run.
    OtherApp,
    /// A fetched bucket whose proof does not verify against the agreed root.
    BadBucket,
    /// A fetched bucket the replica already holds.
    BucketAlreadyPresent,
    /// An answer to a bucket fetch without a proof that decodes, or for another bucket or
    /// app.
    BucketMissingOrUndecodable,
    /// A client's retransmission whose reply is no longer cached.
    RetransmissionNotCached,
}

impl RejectReason {
    /// The name status files and logs show.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::FrameTooLarge => "frame-too-large",
            RejectReason::EnvelopeDecode => "envelope-decode",
            RejectReason::MessageDecode => "message-decode",
            RejectReason::UnknownSender => "unknown-sender",
            RejectReason::BadMac => "bad-mac",
            RejectReason::Invalid => "invalid",
            RejectReason::UnexpectedKind => "unexpected-kind",
            RejectReason::OtherApp => "other-app",
            RejectReason::BadBucket => "bad-bucket",
            RejectReason::BucketAlreadyPresent => "bucket-already-present",
            RejectReason::BucketMissingOrUndecodable => "bucket-missing-or-undecodable",
            RejectReason::RetransmissionNotCached => "retransmission-not-cached",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What a driver counts of the frames it is handed: all of them, and those it dropped
/// before its core saw them, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameCounters {
    pub frames_received: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl FrameCounters {
    /// Count one frame dropped for `reason`.
    pub fn count_rejection(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }
}

/// Derived client keys kept per endpoint at most; past that the cache starts over.
const CLIENT_KEY_CACHE_MAX: usize = 65_536;

/// Keys derived for clients; a clone starts empty (it is only a cache).
#[derive(Debug, Default)]
struct ClientKeyCache(Mutex<HashMap<ClientId, MacKey>>);

impl Clone for ClientKeyCache {
    fn clone(&self) -> Self {
        ClientKeyCache::default()
    }
}

/// One node's view of the network's security: its keys and everyone's public keys.
#[derive(Clone, Debug)]
pub struct Endpoint {
    keys: NodeKeys,
    verifying_keys: ReplicaVerifyingKeys,
    params: ProtocolParams,
    /// Keyed HMAC state for every peer key this node holds.
    peer_macs: BTreeMap<NodeId, MacKey>,
    /// Keys derived for clients (a replica derives one per client it hears from).
    client_macs: ClientKeyCache,
    /// Clients 0..this are provisioned; no key is derived for any other id, so a frame or
    /// a request naming one fails its check. None: any id (tests, the simulator).
    clients_provisioned: Option<u64>,
    /// The apps requests may name (besides [`AppId::ORDERING_ONLY`]); None: any.
    apps_hosted: Option<std::collections::BTreeSet<AppId>>,
    /// Every provisioned client's request-verifying key; a request from a client with none
    /// here has no valid signature.
    client_verifying_keys: ClientVerifyingKeys,
}

/// Where a replica met a request, which decides what it must check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestCheck {
    /// In a request message (from its client, or relayed by a replica; the envelope's MAC
    /// names the sender): the replica may propose it in a batch, so its signature must
    /// hold. The MAC slots do not count here: a client could spoil the primary's slot alone,
    /// and backups, unable to get the primary to order it, would change view.
    Received,
    /// In a batch another replica proposes: this replica's MAC slot, or, when the client
    /// made that slot wrong, the signature. Either proves the client sent it; the primary
    /// checked the signature, so every correct backup accepts what a correct primary
    /// proposes.
    Batched,
}

fn envelope_mac_input<'a>(from: &'a [u8], to: &'a [u8], payload: &'a [u8]) -> [&'a [u8]; 4] {
    [b"zz envelope", from, to, payload]
}

fn node_bytes(node: NodeId) -> [u8; 9] {
    let mut bytes = [0u8; 9];
    match node {
        NodeId::Replica(replica) => {
            bytes[0] = 1;
            bytes[1..5].copy_from_slice(&replica.0.to_le_bytes());
        }
        NodeId::Client(client) => {
            bytes[0] = 2;
            bytes[1..9].copy_from_slice(&client.0.to_le_bytes());
        }
        NodeId::Execution(execution) => {
            bytes[0] = 3;
            bytes[1..5].copy_from_slice(&execution.0.to_le_bytes());
        }
        NodeId::Activator(activator) => {
            bytes[0] = 4;
            bytes[1..5].copy_from_slice(&activator.0.to_le_bytes());
        }
    }
    bytes
}

fn request_mac_input(request_bytes: &[u8]) -> [&[u8]; 2] {
    [b"zz request", request_bytes]
}

impl Endpoint {
    pub fn new(
        keys: NodeKeys,
        verifying_keys: ReplicaVerifyingKeys,
        params: ProtocolParams,
    ) -> Self {
        assert_eq!(verifying_keys.0.len(), params.replica_count());
        let peer_macs = keys
            .peer_keys
            .iter()
            .map(|(peer, key)| (*peer, MacKey::new(key)))
            .collect();
        Endpoint {
            keys,
            verifying_keys,
            params,
            peer_macs,
            client_macs: ClientKeyCache::default(),
            clients_provisioned: None,
            apps_hosted: None,
            client_verifying_keys: ClientVerifyingKeys::default(),
        }
    }

    /// Check client requests' signatures with `keys`.
    pub fn with_client_verifying_keys(mut self, keys: ClientVerifyingKeys) -> Self {
        self.client_verifying_keys = keys;
        self
    }

    /// Refuse requests naming an app other than `apps` (the configuration's) and
    /// [`AppId::ORDERING_ONLY`]: a made-up app id would become an app of its own in every
    /// replica's state.
    pub fn with_apps_hosted(mut self, apps: impl IntoIterator<Item = AppId>) -> Self {
        let mut hosted: std::collections::BTreeSet<AppId> = apps.into_iter().collect();
        hosted.insert(AppId::ORDERING_ONLY);
        self.apps_hosted = Some(hosted);
        self
    }

    /// Refuse every client id at or above `clients` (the configuration's `clients`).
    pub fn with_clients_provisioned(mut self, clients: u64) -> Self {
        self.clients_provisioned = Some(clients);
        self
    }

    /// Run `use_key` with the keyed MAC state this node shares with `peer`, if any. Client
    /// keys are derived once and cached; the cache lock is held only for the call.
    fn with_mac_key<R>(&self, peer: NodeId, use_key: impl FnOnce(&MacKey) -> R) -> Option<R> {
        match peer {
            NodeId::Replica(_) | NodeId::Execution(_) | NodeId::Activator(_) => {
                self.peer_macs.get(&peer).map(use_key)
            }
            NodeId::Client(client) => {
                if self
                    .clients_provisioned
                    .is_some_and(|clients| client.0 >= clients)
                {
                    return None;
                }
                // A poisoned cache is only a cache: keep using it.
                let mut cache = self
                    .client_macs
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if !cache.contains_key(&client) {
                    let key = MacKey::new(&self.keys.key_for(peer)?);
                    if cache.len() >= CLIENT_KEY_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(client, key);
                }
                cache.get(&client).map(use_key)
            }
        }
    }

    pub fn id(&self) -> NodeId {
        self.keys.id
    }

    pub fn params(&self) -> &ProtocolParams {
        &self.params
    }

    pub fn keys(&self) -> &NodeKeys {
        &self.keys
    }

    pub fn verifying_keys(&self) -> &ReplicaVerifyingKeys {
        &self.verifying_keys
    }

    fn replicas(&self) -> impl Iterator<Item = ReplicaId> + use<> {
        (0..self.params.replica_count() as u32).map(ReplicaId)
    }

    /// Seal `message` for one receiver. Returns None when this node shares no key with `to`.
    pub fn seal(&self, to: NodeId, message: &Message) -> Option<Vec<u8>> {
        let payload = postcard::to_stdvec(message).expect("encoding a message cannot fail");
        let (from_bytes, to_bytes) = (node_bytes(self.keys.id), node_bytes(to));
        let mac = self.with_mac_key(to, |key| {
            key.mac(&envelope_mac_input(&from_bytes, &to_bytes, &payload))
        })?;
        Some(encode_envelope(&Envelope {
            from: self.keys.id,
            auth: Auth::Mac(mac),
            payload,
        }))
    }

    /// Seal `message` once for every agreement replica, with an authenticator. A slot this
    /// node has no key for (its own) holds zeros.
    pub fn seal_multicast(&self, message: &Message) -> Vec<u8> {
        let payload = postcard::to_stdvec(message).expect("encoding a message cannot fail");
        let from = node_bytes(self.keys.id);
        let macs = self
            .replicas()
            .map(|replica| {
                let to = NodeId::Replica(replica);
                let to_bytes = node_bytes(to);
                let mac = (to != self.keys.id).then(|| {
                    self.with_mac_key(to, |key| {
                        key.mac(&envelope_mac_input(&from, &to_bytes, &payload))
                    })
                });
                mac.flatten().unwrap_or([0u8; 32])
            })
            .collect();
        encode_envelope(&Envelope {
            from: self.keys.id,
            auth: Auth::Authenticator(Authenticator(macs)),
            payload,
        })
    }

    /// A client authenticates its request for every replica and signs it, so it can travel
    /// in a batch. Without a signing key (not a client) the signature is zeros, which no
    /// replica accepts.
    pub fn authenticate_request(&self, request: Request) -> AuthenticatedRequest {
        let bytes = postcard::to_stdvec(&request).expect("encoding a request cannot fail");
        let macs = self
            .replicas()
            .map(|replica| {
                self.with_mac_key(NodeId::Replica(replica), |key| {
                    key.mac(&request_mac_input(&bytes))
                })
                .unwrap_or([0u8; 32])
            })
            .collect();
        let signature = (self.keys.signing_key.as_ref())
            .filter(|_| matches!(self.keys.id, NodeId::Client(_)))
            .map_or(Signature([0; 32], [0; 32]), |key| sign_request(key, &bytes));
        AuthenticatedRequest {
            request,
            auth: Authenticator(macs),
            signature,
        }
    }

    /// Whether the request is a provisioned client's, for this replica, met as `check` says.
    pub fn check_request(&self, request: &AuthenticatedRequest, check: RequestCheck) -> bool {
        let NodeId::Replica(me) = self.keys.id else {
            return false;
        };
        let client = request.request.client;
        if request.auth.0.len() != self.params.replica_count()
            || (self.clients_provisioned).is_some_and(|clients| client.0 >= clients)
            || request.request.op.len() > self.params.request_bytes_max
            || (self.apps_hosted.as_ref()).is_some_and(|apps| !apps.contains(&request.request.app))
        {
            return false;
        }
        let bytes = postcard::to_stdvec(&request.request).expect("encoding a request cannot fail");
        let tag = &request.auth.0[me.index()];
        let mac_holds = || {
            self.with_mac_key(NodeId::Client(request.request.client), |key| {
                key.verify(&request_mac_input(&bytes), tag)
            })
            .unwrap_or(false)
        };
        let signature_holds = || {
            (self.client_verifying_keys.get(request.request.client))
                .is_some_and(|key| verify_request(key, &bytes, &request.signature))
        };
        match check {
            RequestCheck::Received => signature_holds(),
            RequestCheck::Batched => mac_holds() || signature_holds(),
        }
    }

    /// Open one frame: every check, in order of cost. Never panics on any input.
    pub fn open(&self, frame: &[u8]) -> Result<Verified, Rejection> {
        if frame.len() > self.params.frame_bytes_max {
            return Err(Rejection::FrameTooLarge {
                size: frame.len(),
                limit: self.params.frame_bytes_max,
            });
        }
        let envelope: Envelope = decode_exact(frame).map_err(Rejection::EnvelopeDecode)?;
        let from = envelope.from;
        if from == self.keys.id {
            return Err(Rejection::UnknownSender(from));
        }
        let tag = match &envelope.auth {
            Auth::Mac(tag) => tag,
            Auth::Authenticator(Authenticator(macs)) => {
                let NodeId::Replica(me) = self.keys.id else {
                    return Err(Rejection::BadMac(from));
                };
                macs.get(me.index()).ok_or(Rejection::BadMac(from))?
            }
        };
        let (from_bytes, to_bytes) = (node_bytes(from), node_bytes(self.keys.id));
        let mac_input = envelope_mac_input(&from_bytes, &to_bytes, &envelope.payload);
        match self.with_mac_key(from, |key| key.verify(&mac_input, tag)) {
            None => return Err(Rejection::UnknownSender(from)),
            Some(false) => return Err(Rejection::BadMac(from)),
            Some(true) => {}
        }
        let message: Message = decode_exact(&envelope.payload).map_err(Rejection::MessageDecode)?;
        validate::check_message(self, from, &message).map_err(|invalid| Rejection::Invalid {
            from,
            kind: message.kind(),
            invalid,
        })?;
        Ok(Verified { from, message })
    }
}

/// Decode `bytes` as one `T` with nothing left over: a frame has exactly one reading.
fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(error) => Err(error.to_string()),
    }
}

pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    postcard::to_stdvec(envelope).expect("encoding an envelope cannot fail")
}

/// The message inside a frame, read without opening it: UNAUTHENTICATED. No size limit,
/// MAC, signature or certificate is checked, so anyone may have forged it, and trailing
/// bytes are ignored. Only for deciding which endpoint should open a frame, or for a
/// harness that reads what its own nodes sent; everything else goes through
/// [`Endpoint::open`].
pub fn peek_message(frame: &[u8]) -> Option<Message> {
    let envelope: Envelope = postcard::from_bytes(frame).ok()?;
    postcard::from_bytes(&envelope.payload).ok()
}

#[cfg(test)]
mod tests {
    use super::RejectReason;
    use crate::derived_keys::DerivedKeys;
    use crate::messages::{Message, Request};
    use crate::{AppId, ClientId, NodeId, ReplicaId, params::ProtocolParams};

    /// A client id outside the provisioned range gets nowhere, even with MACs made from
    /// the replica's client master (which derives a key for any id): its frames are
    /// refused, its request's authenticator fails, and nothing is sealed for it.
    #[test]
    fn a_client_outside_the_provisioned_range_is_refused() {
        let params = ProtocolParams::default();
        let keys = DerivedKeys::new(1, &params);
        let replica = keys
            .replica_endpoint(ReplicaId(0))
            .with_clients_provisioned(4);
        let request = |client| Request {
            app: AppId(0),
            client: ClientId(client),
            timestamp: 1,
            op: Vec::new(),
        };
        for (client, provisioned) in [(3, true), (4, false), (u64::MAX, false)] {
            let sender = keys.client_endpoint(ClientId(client));
            let authenticated = sender.authenticate_request(request(client));
            let frame = sender.seal_multicast(&Message::Request(authenticated.clone()));
            assert_eq!(replica.open(&frame).is_ok(), provisioned, "client {client}");
            let check = super::RequestCheck::Received;
            assert_eq!(replica.check_request(&authenticated, check), provisioned);
            let to = NodeId::Client(ClientId(client));
            assert_eq!(
                replica.seal(to, &Message::Request(authenticated)).is_some(),
                provisioned
            );
        }
    }
    /// A request naming an app the configuration does not host is refused (it would
    /// become an app head of its own in every checkpoint), even with a valid
    /// authenticator; the hosted apps and the ordering-only app pass.
    #[test]
    fn a_request_for_an_app_not_hosted_is_refused() {
        let params = ProtocolParams::default();
        let keys = DerivedKeys::new(1, &params);
        let replica = (keys.replica_endpoint(ReplicaId(0))).with_apps_hosted([AppId(0), AppId(1)]);
        let client = keys.client_endpoint(ClientId(0));
        for (app, hosted) in [(0, true), (1, true), (2, false), (u32::MAX, true)] {
            let request = client.authenticate_request(Request {
                app: AppId(app),
                client: ClientId(0),
                timestamp: 1,
                op: Vec::new(),
            });
            let check = super::RequestCheck::Received;
            assert_eq!(replica.check_request(&request, check), hosted, "app {app}");
            let frame = client.seal_multicast(&Message::Request(request));
            assert_eq!(replica.open(&frame).is_ok(), hosted, "app {app}");
        }
    }

    /// A client's MAC slot convinces one replica only, its signature every replica: a request
    /// met directly needs its signature (the replica may propose it), one met in a batch
    /// either. So a client that spoils some replicas' slots cannot make them refuse a correct
    /// primary's batch, and one that spoils its signature gets nothing proposed.
    #[test]
    fn a_request_needs_mac_and_signature_when_received_and_either_in_a_batch() {
        use super::RequestCheck::{Batched, Received};
        let params = ProtocolParams::default();
        let keys = DerivedKeys::new(1, &params);
        let replica = keys.replica_endpoint(ReplicaId(2));
        let client = keys.client_endpoint(ClientId(5));
        let genuine = client.authenticate_request(Request {
            app: AppId(0),
            client: ClientId(5),
            timestamp: 9,
            op: b"put a 1".to_vec(),
        });
        let mut spoiled_slot = genuine.clone();
        spoiled_slot.auth.0[2][0] ^= 1;
        let mut spoiled_signature = genuine.clone();
        spoiled_signature.signature.1[0] ^= 1;
        let mut both = spoiled_slot.clone();
        both.signature = spoiled_signature.signature;
        // Client 6's signature over client 5's request.
        let mut other_signer = genuine.clone();
        let forger = keys.client_endpoint(ClientId(6));
        other_signer.signature = forger
            .authenticate_request(genuine.request.clone())
            .signature;
        other_signer.auth.0[2][0] ^= 1;
        let cases = [
            ("genuine", &genuine, true, true),
            ("spoiled slot", &spoiled_slot, true, true),
            ("spoiled signature", &spoiled_signature, false, true),
            ("both spoiled", &both, false, false),
            ("another client's signature", &other_signer, false, false),
        ];
        for (what, request, received, batched) in cases {
            assert_eq!(replica.check_request(request, Received), received, "{what}");
            assert_eq!(replica.check_request(request, Batched), batched, "{what}");
        }
        // A replica without the clients' public keys accepts no signature.
        let unkeyed = crate::Endpoint::new(
            keys.replica(ReplicaId(2)),
            keys.verifying_keys(),
            params.clone(),
        );
        assert!(!unkeyed.check_request(&genuine, Received));
        assert!(unkeyed.check_request(&genuine, Batched));
        assert!(!unkeyed.check_request(&spoiled_slot, Batched));
    }

    use serde::Deserialize as _;
    use serde::de::IntoDeserializer as _;
    use serde::de::value::{Error, StrDeserializer};

    /// Status files count rejections under these names: serde and Display agree on them.
    #[test]
    fn reject_reasons_go_by_their_kebab_case_names() {
        let reasons = [
            (RejectReason::FrameTooLarge, "frame-too-large"),
            (RejectReason::EnvelopeDecode, "envelope-decode"),
            (RejectReason::MessageDecode, "message-decode"),
            (RejectReason::UnknownSender, "unknown-sender"),
            (RejectReason::BadMac, "bad-mac"),
            (RejectReason::Invalid, "invalid"),
            (RejectReason::UnexpectedKind, "unexpected-kind"),
            (RejectReason::OtherApp, "other-app"),
            (RejectReason::BadBucket, "bad-bucket"),
            (RejectReason::BucketAlreadyPresent, "bucket-already-present"),
            (
                RejectReason::BucketMissingOrUndecodable,
                "bucket-missing-or-undecodable",
            ),
            (
                RejectReason::RetransmissionNotCached,
                "retransmission-not-cached",
            ),
        ];
        for (reason, name) in reasons {
            assert_eq!(reason.to_string(), name);
            let deserializer: StrDeserializer<Error> = name.into_deserializer();
            assert_eq!(RejectReason::deserialize(deserializer), Ok(reason));
        }
    }
}
