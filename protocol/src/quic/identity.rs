//! Who a bus is and whom it can reach: a node's [`QuicIdentity`] and the [`QuicPeers`] it
//! dials, both usually read from a cluster directory.

use super::CLIENTS_PER_CONNECTION_MAX;
use super::hello::HelloKeys;
use crate::config::{
    ClusterConfig, ConfigError, LOCAL_ACTIVATOR, load_activator_tls_key, load_execution_tls_key,
    load_tls_key,
};
use crate::crypto::{NodeKeys, SessionKey};
use crate::ids::{ClientId, ExecutionId, NodeId, ReplicaId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The keys a bus tags and checks client hellos with: a listening node's own (the key it
/// shares with any provisioned client), or a client host's (each of its clients' keys
/// with every node).
pub struct HeldKeys {
    by_id: BTreeMap<NodeId, NodeKeys>,
    clients_provisioned: u64,
}

impl HeldKeys {
    /// `keys`, of nodes or of clients, for a cluster that provisions `clients` client ids.
    pub fn new(keys: impl IntoIterator<Item = NodeKeys>, clients: u64) -> HeldKeys {
        HeldKeys {
            by_id: keys.into_iter().map(|keys| (keys.id, keys)).collect(),
            clients_provisioned: clients,
        }
    }
}

impl HelloKeys for HeldKeys {
    fn key(&self, client: ClientId, node: NodeId) -> Option<SessionKey> {
        if client.0 >= self.clients_provisioned {
            return None;
        }
        match self.by_id.get(&node) {
            Some(own) => own.key_for(NodeId::Client(client)),
            None => self.by_id.get(&NodeId::Client(client))?.key_for(node),
        }
    }
}

impl std::fmt::Debug for HeldKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldKeys({} holders)", self.by_id.len())
    }
}

/// What a listening node presents.
#[derive(Debug)]
pub struct ListenIdentity {
    pub address: SocketAddr,
    /// This node's certificate, as its dialers pin it.
    pub certificate: CertificateDer<'static>,
    pub private_key: PrivateKeyDer<'static>,
}

/// Who this node is on the network.
#[derive(Debug)]
pub struct QuicIdentity {
    pub id: NodeId,
    /// Some for a replica or an execution replica (it listens), None for a client (it binds
    /// 127.0.0.1:0 and dials).
    pub listen: Option<ListenIdentity>,
    /// For a client host: how many consecutive client ids from `id` it speaks for; 0 for
    /// a replica or an execution replica.
    pub client_count: u32,
    /// The keys client hellos are tagged (client host) or checked (listening node) with;
    /// None: this bus sends no client hello and accepts none.
    pub hello_keys: Option<Arc<HeldKeys>>,
}

/// How to reach one listening node: an agreement replica or an execution replica.
#[derive(Clone, Debug)]
pub struct ReplicaPeer {
    pub address: SocketAddr,
    /// The certificate the node must present, exactly.
    pub certificate: CertificateDer<'static>,
}

/// Every node of the cluster that has an address (agreement replicas and execution
/// replicas), and the frame size limit.
#[derive(Clone, Debug)]
pub struct QuicPeers {
    /// Agreement replicas, indexed by replica id.
    pub replicas: Vec<ReplicaPeer>,
    /// Execution replicas, indexed by execution id.
    pub executions: Vec<ReplicaPeer>,
    /// The activator, if the cluster has one.
    pub activator: Option<ReplicaPeer>,
    /// Bytes in one frame at most, both ways (the cluster's `frame_bytes_max`).
    pub frame_bytes_max: usize,
    /// Bytes of one request's operation at most (the cluster's `request_bytes_max`): what
    /// a client's share of an inbox must hold a few of.
    pub request_bytes_max: usize,
}

impl QuicIdentity {
    /// Replica `id`'s identity: its configured address, certificate and TLS key.
    pub fn replica(
        dir: &Path,
        config: &ClusterConfig,
        id: ReplicaId,
    ) -> Result<QuicIdentity, ConfigError> {
        let certificate = config.load_certificate(dir, id)?;
        let private_key = load_tls_key(dir, config, id)?;
        let address = config.replica(id).map(|replica| replica.address).ok_or(
            ConfigError::UnknownReplica {
                replica: id,
                replica_count: config.replica_count(),
            },
        )?;
        Ok(QuicIdentity::listening(
            NodeId::Replica(id),
            ListenIdentity {
                address,
                certificate,
                private_key,
            },
        ))
    }

    /// Execution replica `id`'s identity: its configured address, certificate and TLS key.
    pub fn execution(
        dir: &Path,
        config: &ClusterConfig,
        id: ExecutionId,
    ) -> Result<QuicIdentity, ConfigError> {
        let certificate = config.load_execution_certificate(dir, id)?;
        let private_key = load_execution_tls_key(dir, config, id)?;
        let address = config
            .execution(id)
            .map(|execution| execution.address)
            .ok_or(ConfigError::UnknownExecution {
                execution: id,
                execution_count: config.execution_count(),
            })?;
        Ok(QuicIdentity::listening(
            NodeId::Execution(id),
            ListenIdentity {
                address,
                certificate,
                private_key,
            },
        ))
    }

    /// The activator's identity.
    pub fn activator(dir: &Path, config: &ClusterConfig) -> Result<QuicIdentity, ConfigError> {
        let certificate = config.load_activator_certificate(dir)?;
        let private_key = load_activator_tls_key(dir)?;
        let address = config
            .activator
            .as_ref()
            .map(|activator| activator.address)
            .expect("the certificate loaded, so the activator is configured");
        Ok(QuicIdentity::listening(
            NodeId::Activator(LOCAL_ACTIVATOR),
            ListenIdentity {
                address,
                certificate,
                private_key,
            },
        ))
    }

    fn listening(id: NodeId, listen: ListenIdentity) -> QuicIdentity {
        QuicIdentity {
            id,
            listen: Some(listen),
            client_count: 0,
            hello_keys: None,
        }
    }

    /// Check client hellos with `keys` (a listening node), or tag this client host's
    /// hellos with them.
    pub fn with_hello_keys(mut self, keys: HeldKeys) -> QuicIdentity {
        self.hello_keys = Some(Arc::new(keys));
        self
    }

    /// A client's identity: it does not listen.
    pub fn client(id: ClientId) -> QuicIdentity {
        QuicIdentity::client_host(id, 1)
    }

    /// A process that speaks for clients `first..first + count` over one connection per
    /// peer (a load generator, a gateway): replies to all of them share that connection.
    pub fn client_host(first: ClientId, count: u32) -> QuicIdentity {
        assert!((1..=CLIENTS_PER_CONNECTION_MAX).contains(&count));
        QuicIdentity {
            id: NodeId::Client(first),
            listen: None,
            client_count: count,
            hello_keys: None,
        }
    }
}

impl QuicPeers {
    /// Every replica's and execution replica's address and pinned certificate, from a
    /// loaded configuration.
    pub fn from_config(dir: &Path, config: &ClusterConfig) -> Result<QuicPeers, ConfigError> {
        let replicas = config
            .replicas
            .iter()
            .map(|replica| {
                Ok(ReplicaPeer {
                    address: replica.address,
                    certificate: config.load_certificate(dir, replica.id)?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let executions = config
            .executions
            .iter()
            .map(|execution| {
                Ok(ReplicaPeer {
                    address: execution.address,
                    certificate: config.load_execution_certificate(dir, execution.id)?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let activator = match &config.activator {
            Some(activator) => Some(ReplicaPeer {
                address: activator.address,
                certificate: config.load_activator_certificate(dir)?,
            }),
            None => None,
        };
        Ok(QuicPeers {
            replicas,
            executions,
            activator,
            frame_bytes_max: config.protocol.frame_bytes_max,
            request_bytes_max: config.protocol.request_bytes_max,
        })
    }

    /// How to reach `node`; None for a client or a node outside the cluster.
    pub fn get(&self, node: NodeId) -> Option<&ReplicaPeer> {
        match node {
            NodeId::Replica(replica) => self.replicas.get(replica.index()),
            NodeId::Execution(execution) => self.executions.get(execution.index()),
            NodeId::Activator(activator) if activator == LOCAL_ACTIVATOR => self.activator.as_ref(),
            NodeId::Client(_) | NodeId::Activator(_) => None,
        }
    }

    /// Every peer node with its id: the replicas, the execution replicas, the activator.
    pub fn into_nodes(self) -> impl Iterator<Item = (NodeId, ReplicaPeer)> {
        let activator =
            (self.activator.into_iter()).map(|peer| (NodeId::Activator(LOCAL_ACTIVATOR), peer));
        let replicas = (self.replicas.into_iter().enumerate())
            .map(|(index, peer)| (NodeId::Replica(ReplicaId(index as u32)), peer));
        let executions = (self.executions.into_iter().enumerate())
            .map(|(index, peer)| (NodeId::Execution(ExecutionId(index as u32)), peer));
        replicas.chain(executions).chain(activator)
    }
}
