//! Keys derived from a seed: every key of a cluster, reproducibly, for the simulator,
//! property tests and fuzz targets. Never for a real cluster (`zz init` draws random keys).

use crate::crypto::{
    NodeKeys, ReplicaVerifyingKeys, SessionKey, client_key, signing_key_from_bytes,
};
use crate::{ClientId, Digest, Endpoint, NodeId, ProtocolParams, ReplicaId};
use std::collections::BTreeMap;

fn derive(seed: u64, label: &[u8], a: u64, b: u64) -> [u8; 32] {
    Digest::of(&[
        b"zz derived key",
        &seed.to_le_bytes(),
        label,
        &a.to_le_bytes(),
        &b.to_le_bytes(),
    ])
    .0
}

/// Every key of a cluster of `params.replica_count()` replicas, derived from `seed`.
pub struct DerivedKeys {
    seed: u64,
    params: ProtocolParams,
}

impl DerivedKeys {
    pub fn new(seed: u64, params: &ProtocolParams) -> DerivedKeys {
        DerivedKeys {
            seed,
            params: params.clone(),
        }
    }

    fn replica_count(&self) -> u32 {
        self.params.replica_count() as u32
    }

    fn client_master(&self, replica: ReplicaId) -> SessionKey {
        SessionKey(derive(self.seed, b"client master", replica.0 as u64, 0))
    }

    pub fn replica(&self, replica: ReplicaId) -> NodeKeys {
        let peer_keys = (0..self.replica_count())
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
        let peer_keys: BTreeMap<NodeId, SessionKey> = (0..self.replica_count())
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
            (0..self.replica_count())
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

impl DerivedKeys {
    /// Replica `id`'s endpoint.
    pub fn replica_endpoint(&self, id: ReplicaId) -> Endpoint {
        Endpoint::new(self.replica(id), self.verifying_keys(), self.params.clone())
    }

    /// Client `id`'s endpoint.
    pub fn client_endpoint(&self, id: ClientId) -> Endpoint {
        Endpoint::new(self.client(id), self.verifying_keys(), self.params.clone())
    }
}
