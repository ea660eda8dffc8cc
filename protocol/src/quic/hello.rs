//! Who may say hello as whom. A node (agreement replica, execution replica, activator)
//! proves who it is with its pinned TLS certificate, presented as a client certificate
//! when it dials; a client host has no certificate, so its hello carries a tag that proves
//! it holds the key of every client id it speaks for, with the node it dials.
//!
//! The tag is the XOR of one HMAC per client id in the hello's range, each under the key
//! that client shares with the dialed node (an aggregate MAC, Katz and Lindell, CT-RSA
//! 2008: forging it needs every one of those keys). Each HMAC covers the dialed node, the
//! range and the dialer's incarnation, so a tag is good for one node only; TLS keeps it
//! from anyone watching.

use crate::crypto::{Mac, SessionKey};
use crate::ids::{ClientId, NodeId};

/// The keys hellos are tagged and checked with: `key(client, node)` is the key `client`
/// shares with `node`, or None where this process does not hold it (a listening node
/// answers only for itself; a client host only for its own clients).
pub trait HelloKeys: Send + Sync {
    fn key(&self, client: ClientId, node: NodeId) -> Option<SessionKey>;
}

/// What a hello claims: the sender, how many consecutive client ids from it it speaks for
/// (0 for a node), and its incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HelloClaim {
    pub(super) id: NodeId,
    pub(super) clients: u32,
    pub(super) incarnation: u64,
}

/// The tag a client host's hello to `node` carries, if `keys` hold every key it needs.
pub(super) fn client_tag(keys: &dyn HelloKeys, claim: HelloClaim, node: NodeId) -> Option<Mac> {
    let NodeId::Client(first) = claim.id else {
        return None;
    };
    let mut tag = [0u8; 32];
    for client in first.0..first.0.checked_add(u64::from(claim.clients))? {
        let key = keys.key(ClientId(client), node)?;
        let mac = key.mac(&[
            b"zz hello",
            &postcard::to_stdvec(&(node, client, claim.clients, claim.incarnation))
                .expect("encoding a hello claim cannot fail"),
        ]);
        for (byte, mac_byte) in tag.iter_mut().zip(mac) {
            *byte ^= mac_byte;
        }
    }
    Some(tag)
}

/// Whether a client host's hello to this node `node` carries the right tag.
pub(super) fn client_tag_holds(
    keys: &dyn HelloKeys,
    claim: HelloClaim,
    node: NodeId,
    tag: &Mac,
) -> bool {
    let Some(expected) = client_tag(keys, claim, node) else {
        return false;
    };
    // Constant time: fold every byte's difference before looking.
    (expected.iter().zip(tag)).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::client_key;
    use crate::ids::ReplicaId;

    struct Masters;
    impl HelloKeys for Masters {
        fn key(&self, client: ClientId, node: NodeId) -> Option<SessionKey> {
            let NodeId::Replica(replica) = node else {
                return None;
            };
            (client.0 < 8).then(|| client_key(&SessionKey([replica.0 as u8; 32]), client))
        }
    }

    /// Only keys for every client of the range, with the very node, make a tag that holds.
    #[test]
    fn a_hello_tag_binds_the_range_the_node_and_the_incarnation() {
        let (r0, r1) = (NodeId::Replica(ReplicaId(0)), NodeId::Replica(ReplicaId(1)));
        let claim = HelloClaim {
            id: NodeId::Client(ClientId(2)),
            clients: 3,
            incarnation: 7,
        };
        let tag = client_tag(&Masters, claim, r0).expect("keys for 2..5");
        assert!(client_tag_holds(&Masters, claim, r0, &tag));
        assert!(!client_tag_holds(&Masters, claim, r1, &tag), "another node");
        let wider = HelloClaim {
            clients: 4,
            ..claim
        };
        assert!(
            !client_tag_holds(&Masters, wider, r0, &tag),
            "another range"
        );
        let later = HelloClaim {
            incarnation: 8,
            ..claim
        };
        assert!(
            !client_tag_holds(&Masters, later, r0, &tag),
            "another incarnation"
        );
        let beyond = HelloClaim {
            clients: 7,
            ..claim
        };
        assert_eq!(
            client_tag(&Masters, beyond, r0),
            None,
            "no key for client 8"
        );
        let node = HelloClaim {
            id: r1,
            clients: 0,
            incarnation: 7,
        };
        assert_eq!(
            client_tag(&Masters, node, r0),
            None,
            "nodes use certificates"
        );
    }
}
