//! Deterministic keys for a simulated cluster, derived from the seed.

use std::collections::BTreeMap;
use zz_protocol::crypto::{
    NodeKeys, ReplicaVerifyingKeys, SessionKey, client_key, signing_key_from_bytes,
};
use zz_protocol::{ClientId, Digest, NodeId, ProtocolParams, ReplicaId};

fn derive(seed: u64, label: &[u8], a: u64, b: u64) -> [u8; 32] {
    Digest::of(&[
        b"zz sim key",
        &seed.to_le_bytes(),
        label,
        &a.to_le_bytes(),
        &b.to_le_bytes(),
    ])
    .0
}

/// Every key of a simulated cluster.
pub struct SimKeys {
    seed: u64,
    replica_count: usize,
}

impl SimKeys {
    pub fn new(seed: u64, params: &ProtocolParams) -> SimKeys {
        SimKeys {
            seed,
            replica_count: params.replica_count(),
        }
    }

    fn client_master(&self, replica: ReplicaId) -> SessionKey {
        SessionKey(derive(self.seed, b"client master", replica.0 as u64, 0))
    }

    pub fn replica(&self, replica: ReplicaId) -> NodeKeys {
        let peer_keys = (0..self.replica_count as u32)
            .map(ReplicaId)
            .filter(|peer| *peer != replica)
            .map(|peer| {
                let (low, high) = (replica.0.min(peer.0), replica.0.max(peer.0));
                let key = SessionKey(derive(self.seed, b"pair", low as u64, high as u64));
                (NodeId::Replica(peer), key)
            })
            .collect();
        NodeKeys {
            id: NodeId::Replica(replica),
            peer_keys,
            client_master: Some(self.client_master(replica)),
            signing_key: Some(signing_key_from_bytes(derive(
                self.seed,
                b"signing",
                replica.0 as u64,
                0,
            ))),
        }
    }

    pub fn client(&self, client: ClientId) -> NodeKeys {
        let peer_keys: BTreeMap<NodeId, SessionKey> = (0..self.replica_count as u32)
            .map(ReplicaId)
            .map(|replica| {
                (
                    NodeId::Replica(replica),
                    client_key(&self.client_master(replica), client),
                )
            })
            .collect();
        NodeKeys {
            id: NodeId::Client(client),
            peer_keys,
            client_master: None,
            signing_key: None,
        }
    }

    pub fn verifying_keys(&self) -> ReplicaVerifyingKeys {
        ReplicaVerifyingKeys(
            (0..self.replica_count as u32)
                .map(|replica| {
                    self.replica(ReplicaId(replica))
                        .signing_key
                        .expect("replicas sign")
                        .verifying_key()
                })
                .collect(),
        )
    }
}
