//! Keys derived from a seed: every key of a cluster, reproducibly, for the simulator,
//! property tests and fuzz targets. Never for a real cluster (`zz init` draws random keys).

use crate::config::LOCAL_ACTIVATOR;
use crate::crypto::{
    ClientVerifyingKeys, NodeKeys, ReplicaVerifyingKeys, SessionKey, client_key,
    client_signing_key, signing_key_from_bytes,
};
use crate::{ClientId, Digest, Endpoint, ExecutionId, NodeId, ProtocolParams, ReplicaId};
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

/// Clients 0..this have keys unless [`DerivedKeys::with_clients`] says otherwise.
pub const DERIVED_CLIENTS_DEFAULT: u64 = 64;

/// Every key of a cluster of `params.replica_count()` agreement replicas,
/// `execution_count` execution replicas and `client_count` clients, derived from `seed`.
pub struct DerivedKeys {
    seed: u64,
    params: ProtocolParams,
    execution_count: u32,
    client_count: u64,
    /// The clients' verifying keys, computed once (a scalar multiplication each).
    client_verifying_keys: std::sync::OnceLock<ClientVerifyingKeys>,
}

impl DerivedKeys {
    pub fn new(seed: u64, params: &ProtocolParams) -> DerivedKeys {
        DerivedKeys {
            seed,
            params: params.clone(),
            execution_count: 0,
            client_count: DERIVED_CLIENTS_DEFAULT,
            client_verifying_keys: std::sync::OnceLock::new(),
        }
    }

    /// The same cluster with clients 0..count: the others sign with keys no replica knows.
    pub fn with_clients(mut self, count: u64) -> DerivedKeys {
        self.client_count = count;
        self.client_verifying_keys = std::sync::OnceLock::new();
        self
    }

    fn client_signing_master(&self) -> SessionKey {
        SessionKey(derive(self.seed, b"client signing master", 0, 0))
    }

    /// Every client's request-verifying key, as agreement replicas hold them.
    pub fn client_verifying_keys(&self) -> ClientVerifyingKeys {
        let master = self.client_signing_master();
        (self.client_verifying_keys.get_or_init(|| {
            ClientVerifyingKeys::new(
                (0..self.client_count)
                    .map(|client| client_signing_key(&master, ClientId(client)).verifying_key())
                    .collect(),
            )
        }))
        .clone()
    }

    /// The same cluster with execution replicas 0..count.
    pub fn with_executions(mut self, count: u32) -> DerivedKeys {
        self.execution_count = count;
        self
    }

    fn replica_count(&self) -> u32 {
        self.params.replica_count() as u32
    }

    fn executions(&self) -> impl Iterator<Item = ExecutionId> + use<> {
        (0..self.execution_count).map(ExecutionId)
    }

    fn client_master(&self, node: NodeId) -> SessionKey {
        match node {
            NodeId::Replica(replica) => {
                SessionKey(derive(self.seed, b"client master", replica.0 as u64, 0))
            }
            NodeId::Execution(execution) => SessionKey(derive(
                self.seed,
                b"execution client master",
                execution.0 as u64,
                0,
            )),
            NodeId::Client(_) | NodeId::Activator(_) => {
                unreachable!("clients and activators derive no client keys")
            }
        }
    }

    fn replica_execution_key(&self, replica: ReplicaId, execution: ExecutionId) -> SessionKey {
        SessionKey(derive(
            self.seed,
            b"replica-execution",
            replica.0 as u64,
            execution.0 as u64,
        ))
    }

    pub fn replica(&self, replica: ReplicaId) -> NodeKeys {
        let mut peer_keys: BTreeMap<NodeId, SessionKey> = (0..self.replica_count())
            .map(ReplicaId)
            .filter(|peer| *peer != replica)
            .map(|peer| {
                let (low, high) = (replica.0.min(peer.0), replica.0.max(peer.0));
                let key = SessionKey(derive(self.seed, b"pair", low as u64, high as u64));
                (NodeId::Replica(peer), key)
            })
            .collect();
        for execution in self.executions() {
            let key = self.replica_execution_key(replica, execution);
            peer_keys.insert(NodeId::Execution(execution), key);
        }
        peer_keys.insert(
            NodeId::Activator(LOCAL_ACTIVATOR),
            self.activator_key(replica),
        );
        NodeKeys {
            id: NodeId::Replica(replica),
            peer_keys,
            client_master: Some(self.client_master(NodeId::Replica(replica))),
            signing_key: Some(signing_key_from_bytes(derive(
                self.seed,
                b"signing",
                replica.0 as u64,
                0,
            ))),
        }
    }

    fn activator_key(&self, replica: ReplicaId) -> SessionKey {
        SessionKey(derive(self.seed, b"activator", replica.0 as u64, 0))
    }

    /// The activator's keys: one per agreement replica.
    pub fn activator(&self) -> NodeKeys {
        let peer_keys = (0..self.replica_count())
            .map(ReplicaId)
            .map(|replica| (NodeId::Replica(replica), self.activator_key(replica)))
            .collect();
        NodeKeys {
            id: NodeId::Activator(LOCAL_ACTIVATOR),
            peer_keys,
            client_master: None,
            signing_key: None,
        }
    }

    /// The activator's endpoint.
    pub fn activator_endpoint(&self) -> Endpoint {
        Endpoint::new(self.activator(), self.verifying_keys(), self.params.clone())
    }

    /// An execution replica's keys: one per agreement replica, one per other execution
    /// replica, and its client master.
    pub fn execution(&self, execution: ExecutionId) -> NodeKeys {
        assert!(execution.0 < self.execution_count);
        let mut peer_keys: BTreeMap<NodeId, SessionKey> = (0..self.replica_count())
            .map(ReplicaId)
            .map(|replica| {
                let key = self.replica_execution_key(replica, execution);
                (NodeId::Replica(replica), key)
            })
            .collect();
        for peer in self.executions().filter(|peer| *peer != execution) {
            let (low, high) = (execution.0.min(peer.0), execution.0.max(peer.0));
            let key = SessionKey(derive(
                self.seed,
                b"execution pair",
                low as u64,
                high as u64,
            ));
            peer_keys.insert(NodeId::Execution(peer), key);
        }
        NodeKeys {
            id: NodeId::Execution(execution),
            peer_keys,
            client_master: Some(self.client_master(NodeId::Execution(execution))),
            signing_key: None,
        }
    }

    pub fn client(&self, client: ClientId) -> NodeKeys {
        let replicas = (0..self.replica_count()).map(|r| NodeId::Replica(ReplicaId(r)));
        let executions = self.executions().map(NodeId::Execution);
        let peer_keys = replicas
            .chain(executions)
            .map(|node| (node, client_key(&self.client_master(node), client)))
            .collect();
        NodeKeys {
            id: NodeId::Client(client),
            peer_keys,
            client_master: None,
            signing_key: Some(client_signing_key(&self.client_signing_master(), client)),
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

    /// Replica `id`'s endpoint.
    pub fn replica_endpoint(&self, id: ReplicaId) -> Endpoint {
        Endpoint::new(self.replica(id), self.verifying_keys(), self.params.clone())
            .with_client_verifying_keys(self.client_verifying_keys())
    }

    /// Execution replica `id`'s endpoint.
    pub fn execution_endpoint(&self, id: ExecutionId) -> Endpoint {
        Endpoint::new(
            self.execution(id),
            self.verifying_keys(),
            self.params.clone(),
        )
    }

    /// Client `id`'s endpoint.
    pub fn client_endpoint(&self, id: ClientId) -> Endpoint {
        Endpoint::new(self.client(id), self.verifying_keys(), self.params.clone())
    }
}
