//! The QUIC implementation of [`MessageBus`]: quinn over rustls (ring), certificates pinned
//! from the cluster configuration.
//!
//! Shape:
//! - A replica listens on its configured address; a client binds 127.0.0.1:0 and only dials.
//! - Frames to a replica go over one long-lived connection this node dials, lazily on the
//!   first frame, with one long-lived unidirectional stream carrying length-prefixed frames
//!   (u32 big-endian length, then the bytes). A writer task per peer drains a bounded queue
//!   into that stream and redials with backoff when the connection is lost.
//! - Frames to a client go back over the connection the client opened: every stream starts
//!   with a hello frame naming its sender, and a replica that accepts a connection whose
//!   hello names a client records that connection as the route to the client. The hello is
//!   unauthenticated routing information only: every message is MAC-checked by the
//!   [`crate::Endpoint`] above the bus, so a false hello can misroute replies (which the client
//!   then retransmits for), never forge a message.
//! - Incoming frames from every connection land in one bounded [`Inbox`], unopened.
//!
//! Bounds: every queue has a named limit; a frame that finds its queue full is dropped and
//! counted, never waited for, so [`MessageBus::send`] never blocks. A length prefix above
//! `frame_bytes_max` is rejected before anything is allocated for it, counted, and its
//! connection closed.
//!
//! Calling protocol: [`install_crypto_provider`] at start-up (optional; [`QuicBus::start`]
//! does it too); build a [`QuicIdentity`] and [`QuicPeers`] (from a cluster directory with
//! [`QuicIdentity::replica`], [`QuicIdentity::client`] and [`QuicPeers::from_config`]);
//! [`QuicBus::start`] inside a tokio runtime; `send` from anywhere; read the inbox; finally
//! [`QuicBus::shutdown`] (or drop the bus).

mod frame;
mod tasks;
#[cfg(test)]
mod tests;
mod tls;

pub use tls::{ALPN, install_crypto_provider};

use crate::bus::{Inbox, MessageBus};
use crate::config::{ClusterConfig, ConfigError, load_tls_key};
use crate::ids::{ClientId, NodeId, ReplicaId};
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames received and not yet taken from the inbox, at most.
pub const INBOX_FRAMES_MAX: usize = 8192;
/// Frames queued for one peer and not yet written, at most.
pub const PEER_QUEUE_FRAMES_MAX: usize = 4096;
/// Incoming connections (established or in their handshake) a replica keeps at most; each
/// client holds one.
pub const INCOMING_CONNECTIONS_MAX: usize = 4096;
/// Client ids one connection may speak for at most (bounds the route table per hello).
pub const CLIENTS_PER_CONNECTION_MAX: u32 = 65_536;
/// First wait before redialing a peer that could not be reached; doubles up to the max.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between dials to an unreachable peer.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A dial that has not completed its handshake by then is abandoned. QUIC ignores ICMP, so
/// without it a dial to a stopped peer would wait out the whole idle timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// [`QuicBus::shutdown`] waits this long at most for peers to acknowledge the close.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

const _: () = assert!(frame::WRITE_BATCH_FRAMES_MAX <= PEER_QUEUE_FRAMES_MAX);
const _: () = assert!(PEER_QUEUE_FRAMES_MAX <= INBOX_FRAMES_MAX);
const _: () = assert!(RECONNECT_BACKOFF_MIN.as_millis() < RECONNECT_BACKOFF_MAX.as_millis());

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
    /// Some for a replica (it listens), None for a client (it binds 127.0.0.1:0 and dials).
    pub listen: Option<ListenIdentity>,
    /// For a client host: how many consecutive client ids from `id` it speaks for; 0 for
    /// a replica.
    pub client_count: u32,
}

/// How to reach one replica.
#[derive(Clone, Debug)]
pub struct ReplicaPeer {
    pub address: SocketAddr,
    /// The certificate the replica must present, exactly.
    pub certificate: CertificateDer<'static>,
}

/// Every replica of the cluster, and the frame size limit.
#[derive(Clone, Debug)]
pub struct QuicPeers {
    /// Indexed by replica id.
    pub replicas: Vec<ReplicaPeer>,
    /// Bytes in one frame at most, both ways (the cluster's `frame_bytes_max`).
    pub frame_bytes_max: usize,
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
        Ok(QuicIdentity {
            id: NodeId::Replica(id),
            listen: Some(ListenIdentity {
                address,
                certificate,
                private_key,
            }),
            client_count: 0,
        })
    }

    /// A client's identity: it does not listen.
    pub fn client(id: ClientId) -> QuicIdentity {
        QuicIdentity::client_host(id, 1)
    }

    /// A process that speaks for clients `first..first + count` over one connection per
    /// replica (a load generator, a gateway): replies to all of them share that connection.
    pub fn client_host(first: ClientId, count: u32) -> QuicIdentity {
        assert!((1..=CLIENTS_PER_CONNECTION_MAX).contains(&count));
        QuicIdentity {
            id: NodeId::Client(first),
            listen: None,
            client_count: count,
        }
    }
}

impl QuicPeers {
    /// Every replica's address and pinned certificate, from a loaded configuration.
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
        Ok(QuicPeers {
            replicas,
            frame_bytes_max: config.protocol.frame_bytes_max,
        })
    }
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("QuicBus::start must be called from within a tokio runtime")]
    NoRuntime,
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The identity and the peers do not fit together.
    #[error("{0}")]
    Identity(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The bus's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// Frames dropped on the way out: queue full, no route, peer unreachable, connection lost.
    pub dropped_send: u64,
    /// Frames received and dropped because the inbox was full.
    pub dropped_inbox: u64,
    /// Incoming frames that broke the framing (length above the limit, bad hello, a stream
    /// ending inside a frame); each also closed its connection.
    pub rejected_frames: u64,
    /// Incoming connections now, established or in their handshake.
    pub connections_incoming: usize,
}

/// The route to a client: the writer of the connection it opened.
struct Route {
    connection_id: usize,
    queue: mpsc::Sender<Bytes>,
}

/// What the bus's tasks share.
struct Shared {
    id: NodeId,
    /// For a client host: how many consecutive client ids from `id` it speaks for.
    client_count: u32,
    frame_bytes_max: usize,
    inbox: mpsc::Sender<Bytes>,
    routes: Mutex<HashMap<ClientId, Route>>,
    dropped_send: AtomicU64,
    dropped_inbox: AtomicU64,
    rejected_frames: AtomicU64,
    connections_incoming: AtomicUsize,
}

impl Shared {
    /// The routes to clients. A panic elsewhere while holding the lock cannot leave the map
    /// half-updated (every critical section is one insert, get or remove), so a poisoned
    /// lock is still safe to use.
    fn routes(&self) -> MutexGuard<'_, HashMap<ClientId, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_dropped_send(&self, frames: u64) {
        if frames > 0 {
            self.dropped_send.fetch_add(frames, Ordering::Relaxed);
        }
    }

    fn count_rejected(&self) {
        self.rejected_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Hand a received frame to the inbox. False when the inbox is gone (nobody reads).
    fn deliver(&self, frame: Bytes) -> bool {
        match self.inbox.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_inbox.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A node's QUIC message bus. Dropping it closes every connection.
pub struct QuicBus {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    /// Indexed by replica id; None for this node itself.
    replica_queues: Vec<Option<mpsc::Sender<Bytes>>>,
    /// The accept loop and the per-replica writers; aborted when the bus goes.
    tasks: Vec<JoinHandle<()>>,
}

impl QuicBus {
    /// Bind, start listening (a replica) and start a writer per replica, each of which dials
    /// on its first frame. Must be called from within a tokio runtime.
    pub fn start(local: QuicIdentity, peers: QuicPeers) -> Result<(QuicBus, Inbox), QuicError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| QuicError::NoRuntime)?;
        install_crypto_provider();
        if u32::try_from(peers.frame_bytes_max).is_err() || peers.frame_bytes_max == 0 {
            let problem = format!(
                "frame_bytes_max {} must be 1..=u32::MAX",
                peers.frame_bytes_max
            );
            return Err(QuicError::Identity(problem));
        }
        match (local.id, &local.listen) {
            (NodeId::Replica(id), Some(_)) if id.index() < peers.replicas.len() => {}
            (NodeId::Replica(id), _) => {
                let problem =
                    format!("replica {id} needs a listen identity and a place among the peers");
                return Err(QuicError::Identity(problem));
            }
            (NodeId::Client(_), None) => {}
            (NodeId::Client(id), Some(_)) => {
                return Err(QuicError::Identity(format!("client {id} does not listen")));
            }
            (NodeId::Execution(id), _) => {
                let problem = format!("execution replica {id}: not carried over QUIC yet");
                return Err(QuicError::Identity(problem));
            }
        }
        // Every fallible step before the first task is spawned, so a failure leaks nothing.
        let mut targets = Vec::with_capacity(peers.replicas.len());
        for (index, peer) in peers.replicas.into_iter().enumerate() {
            let replica = ReplicaId(index as u32);
            if local.id == NodeId::Replica(replica) {
                targets.push(None);
                continue;
            }
            targets.push(Some(tasks::DialTarget {
                replica,
                address: peer.address,
                config: tls::client_config(peer.certificate)?,
            }));
        }
        let listening = local.listen.is_some();
        let endpoint = match local.listen {
            Some(listen) => {
                let mut config = tls::server_config(listen.certificate, listen.private_key)?;
                config.max_incoming(INCOMING_CONNECTIONS_MAX);
                quinn::Endpoint::server(config, listen.address).map_err(|source| {
                    QuicError::Bind {
                        address: listen.address,
                        source,
                    }
                })?
            }
            None => {
                let address = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                quinn::Endpoint::client(address)
                    .map_err(|source| QuicError::Bind { address, source })?
            }
        };
        let local_addr = endpoint.local_addr().map_err(|source| QuicError::Bind {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        })?;

        let (inbox, inbox_receiver) = mpsc::channel(INBOX_FRAMES_MAX);
        let shared = Arc::new(Shared {
            id: local.id,
            client_count: local.client_count,
            frame_bytes_max: peers.frame_bytes_max,
            inbox,
            routes: Mutex::new(HashMap::new()),
            dropped_send: AtomicU64::new(0),
            dropped_inbox: AtomicU64::new(0),
            rejected_frames: AtomicU64::new(0),
            connections_incoming: AtomicUsize::new(0),
        });
        let mut task_handles = Vec::with_capacity(targets.len() + 1);
        if listening {
            let accept = tasks::accept_loop(Arc::clone(&shared), endpoint.clone());
            task_handles.push(runtime.spawn(accept));
        }
        let replica_queues = targets
            .into_iter()
            .map(|target| {
                let target = target?;
                let (queue, frames) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
                let writer =
                    tasks::dial_writer(Arc::clone(&shared), endpoint.clone(), target, frames);
                task_handles.push(runtime.spawn(writer));
                Some(queue)
            })
            .collect();
        tracing::debug!(id = %local.id, %local_addr, "quic bus started");
        let bus = QuicBus {
            shared,
            endpoint,
            local_addr,
            replica_queues,
            tasks: task_handles,
        };
        Ok((bus, inbox_receiver))
    }

    /// A bus for node `id` of the cluster in `dir`: a replica listens on its configured
    /// address, a client dials only.
    pub fn start_node(
        dir: &Path,
        config: &ClusterConfig,
        id: NodeId,
    ) -> Result<(QuicBus, Inbox), QuicError> {
        let identity = match id {
            NodeId::Replica(replica) => QuicIdentity::replica(dir, config, replica)?,
            NodeId::Client(client) => return QuicBus::start_client_host(dir, config, client, 1),
            NodeId::Execution(execution) => {
                let problem = format!("execution replica {execution}: not carried over QUIC yet");
                return Err(QuicError::Identity(problem));
            }
        };
        QuicBus::start(identity, QuicPeers::from_config(dir, config)?)
    }

    /// A bus for a process that speaks for clients `first..first + count` of the cluster in
    /// `dir`, with one connection per replica for all of them.
    pub fn start_client_host(
        dir: &Path,
        config: &ClusterConfig,
        first: ClientId,
        count: u32,
    ) -> Result<(QuicBus, Inbox), QuicError> {
        let clients = config.clients;
        let last = first.0.saturating_add(count as u64);
        if count == 0 || count > CLIENTS_PER_CONNECTION_MAX || last > clients {
            let client = ClientId(last.saturating_sub(1).max(first.0));
            return Err(ConfigError::UnknownClient { client, clients }.into());
        }
        let identity = QuicIdentity::client_host(first, count);
        QuicBus::start(identity, QuicPeers::from_config(dir, config)?)
    }

    /// The address the bus is bound to (for a client, the port the OS picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// Incoming frames that broke the framing, so far.
    pub fn rejected_frames(&self) -> u64 {
        self.shared.rejected_frames.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> QuicStats {
        QuicStats {
            dropped_send: self.shared.dropped_send.load(Ordering::Relaxed),
            dropped_inbox: self.shared.dropped_inbox.load(Ordering::Relaxed),
            rejected_frames: self.rejected_frames(),
            connections_incoming: self.shared.connections_incoming.load(Ordering::Relaxed),
        }
    }

    /// Close every connection, stop every task, and wait (at most [`SHUTDOWN_WAIT`]) for
    /// peers to learn of the close, so they redial promptly and the address can be reused.
    pub async fn shutdown(self) {
        let endpoint = self.endpoint.clone();
        drop(self);
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, endpoint.wait_idle()).await;
    }
}

impl Drop for QuicBus {
    fn drop(&mut self) {
        self.endpoint.close(tasks::CLOSE_SHUTDOWN, b"bus stopped");
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl MessageBus for QuicBus {
    /// Queue `frame` for `to` without waiting. Dropped and counted: a frame above the size
    /// limit, a frame to this node itself or to a client with no open connection here, and
    /// a frame whose peer queue is full.
    fn send(&self, to: NodeId, frame: Bytes) {
        if frame.len() > self.shared.frame_bytes_max {
            tracing::debug!(%to, size = frame.len(), "outgoing frame above the limit, dropped");
            self.shared.count_dropped_send(1);
            return;
        }
        let queued = match to {
            NodeId::Replica(replica) => match self.replica_queues.get(replica.index()) {
                Some(Some(queue)) => queue.try_send(frame).is_ok(),
                _ => false,
            },
            NodeId::Client(client) => match self.shared.routes().get(&client) {
                Some(route) => route.queue.try_send(frame).is_ok(),
                None => false,
            },
            // No route to execution replicas yet: dropped and counted like any unroutable frame.
            NodeId::Execution(_) => false,
        };
        if !queued {
            self.shared.count_dropped_send(1);
        }
    }

    fn dropped_frames(&self) -> u64 {
        let stats = self.stats();
        stats.dropped_send + stats.dropped_inbox
    }
}
