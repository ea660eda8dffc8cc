//! The QUIC implementation of [`MessageBus`]: quinn over rustls (ring), certificates pinned
//! from the cluster configuration.
//!
//! Shape:
//! - Peers are the nodes with an address: agreement replicas and execution replicas. Each
//!   listens on its configured address; a client binds 127.0.0.1:0 and only dials.
//! - Frames to a peer go over one long-lived connection this node dials, with one
//!   long-lived unidirectional stream carrying length-prefixed frames (u32 big-endian
//!   length, then the bytes). A writer task per peer drains a bounded queue into that
//!   stream and redials with backoff when the connection is lost. Replicas and execution
//!   replicas dial lazily, on the first frame, so a node that never talks to a peer never
//!   connects to it. A client host dials every peer at once, and keeps redialing: execution
//!   replicas answer clients they may never have heard from (a client only sends to them
//!   when it retransmits), so the client's route must be registered everywhere up front.
//! - Frames to a client go back over the connection the client opened: every stream starts
//!   with a hello frame naming its sender, and a node that accepts a connection whose
//!   hello names a client records that connection as the route to the client.
//! - Hellos are authenticated (the `hello` module): one naming a node only on a connection
//!   that node's pinned certificate authenticated (nodes present theirs when they dial;
//!   mutual TLS), one naming clients only with a tag made from every one of those clients'
//!   keys. A false hello is refused and counted, and changes nothing: no route is taken,
//!   no peer is thought restarted. Every message is MAC-checked by the [`crate::Endpoint`]
//!   above the bus besides.
//! - Incoming frames from every connection land in one bounded [`Inbox`], unopened, each
//!   charged to its sender's share of it (by the id its hello proved): a node's own, or a
//!   client host's inside the share of all clients, so no sender crowds out the others.
//!
//! Bounds: every queue has a named limit; a frame that finds its queue full is dropped and
//! counted, never waited for, so [`MessageBus::send`] never blocks. A length prefix above
//! `frame_bytes_max` is rejected before anything is allocated for it, counted, and its
//! connection closed.
//!
//! Calling protocol: [`install_crypto_provider`] at start-up (optional; [`QuicBus::start`]
//! does it too); build a [`QuicIdentity`] and [`QuicPeers`] (from a cluster directory with
//! [`QuicIdentity::replica`], [`QuicIdentity::execution`], [`QuicIdentity::client`] and
//! [`QuicPeers::from_config`]), or let [`QuicBus::start_node`] do it;
//! [`QuicBus::start`] inside a tokio runtime; `send` from anywhere; read the inbox; finally
//! [`QuicBus::shutdown`] (or drop the bus).

mod frame;
mod hello;
mod identity;
mod tasks;
#[cfg(test)]
mod tests;
mod tls;

pub use hello::HelloKeys;
pub use identity::{HeldKeys, ListenIdentity, QuicIdentity, QuicPeers, ReplicaPeer};
pub use tls::{ALPN, install_crypto_provider};

use crate::bus::{INBOX_BYTES_MAX, Inbox, InboxSender, InboxShare, MessageBus};
use crate::config::{ClusterConfig, ConfigError};
use crate::ids::{ClientId, NodeId};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames received and not yet taken from the inbox, at most (and at most
/// [`INBOX_BYTES_MAX`](crate::bus::INBOX_BYTES_MAX) bytes of them).
pub const INBOX_FRAMES_MAX: usize = 8192;
/// Frames queued for one peer and not yet written, at most.
pub const PEER_QUEUE_FRAMES_MAX: usize = 4096;
/// Incoming connections (established or in their handshake) a listening node keeps at
/// most; each client host holds one.
pub const INCOMING_CONNECTIONS_MAX: usize = 4096;
/// Client ids one connection may speak for at most (bounds the route table per hello).
pub const CLIENTS_PER_CONNECTION_MAX: u32 = 65_536;
/// Bytes of one client host's frames an inbox holds at most (more when requests may be
/// larger: [`InboxShares`]), so that a client flooding a node drops its own frames only.
pub const CLIENT_INBOX_SHARE_BYTES: usize = 8 * 1024 * 1024;
/// Bytes of all clients' frames together an inbox holds at most: the rest is kept for the
/// nodes' own traffic, which a crowd of clients must not crowd out.
pub const CLIENTS_INBOX_SHARE_BYTES: usize = INBOX_BYTES_MAX / 4;
/// Bytes of one node's frames an inbox holds at most, at least (more when frames may be
/// larger): a Byzantine replica fills its own share only.
pub const NODE_INBOX_SHARE_BYTES: usize = INBOX_BYTES_MAX / 8;
/// Per-sender shares kept for senders no longer connected, at most, before they are swept.
const INBOX_SHARES_KEPT_MAX: usize = 2 * INCOMING_CONNECTIONS_MAX;

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

/// Clients a node keeps a frame for at most while their route is missing.
pub const PARKED_CLIENTS_MAX: usize = 1024;
/// Bytes of parked frames a node keeps at most.
pub const PARKED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A parked frame older than this is dropped rather than sent.
pub const PARKED_FRAME_TTL: Duration = Duration::from_secs(2);

/// The last frame to each client whose hello has not arrived here yet. A client dials every
/// node when it starts, and a reply can be ready before the client's hello reaches this
/// node (the request went by the agreement replicas); dropped, that reply would cost the
/// client a retransmission, which the replicas read as a sign of faulty execution and
/// answer by waking standbys. One frame per client (its latest), bounded in clients and
/// bytes, each kept [`PARKED_FRAME_TTL`] at most.
#[derive(Default)]
struct ParkedFrames {
    frames: HashMap<ClientId, (std::time::Instant, Bytes)>,
    bytes: usize,
}

impl ParkedFrames {
    /// Keep `frame` for `client`; false (the frame is dropped) when full.
    fn park(&mut self, client: ClientId, frame: Bytes) -> bool {
        self.expire(std::time::Instant::now());
        if let Some((_, old)) = self.frames.remove(&client) {
            self.bytes -= old.len();
        }
        if self.frames.len() >= PARKED_CLIENTS_MAX || self.bytes + frame.len() > PARKED_BYTES_MAX {
            return false;
        }
        self.bytes += frame.len();
        self.frames
            .insert(client, (std::time::Instant::now(), frame));
        true
    }

    /// The frames parked for clients `first..first + count`, taken out (expired ones
    /// dropped).
    fn take_range(&mut self, first: ClientId, count: u32) -> Vec<Bytes> {
        self.expire(std::time::Instant::now());
        if self.frames.is_empty() {
            return Vec::new();
        }
        let range = first.0..first.0.saturating_add(u64::from(count));
        let clients: Vec<ClientId> = (self.frames.keys())
            .filter(|client| range.contains(&client.0))
            .copied()
            .collect();
        let mut taken = Vec::with_capacity(clients.len());
        for client in clients {
            if let Some((_, frame)) = self.frames.remove(&client) {
                self.bytes -= frame.len();
                taken.push(frame);
            }
        }
        taken
    }

    fn expire(&mut self, now: std::time::Instant) {
        let mut freed = 0;
        self.frames.retain(|_, (at, frame)| {
            let keep = now.duration_since(*at) < PARKED_FRAME_TTL;
            if !keep {
                freed += frame.len();
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// What the bus's tasks share.
struct Shared {
    id: NodeId,
    /// For a client host: how many consecutive client ids from `id` it speaks for.
    client_count: u32,
    frame_bytes_max: usize,
    inbox: InboxSender,
    routes: Mutex<HashMap<ClientId, Route>>,
    dropped_send: AtomicU64,
    dropped_inbox: AtomicU64,
    rejected_frames: AtomicU64,
    connections_incoming: AtomicUsize,
    /// This process's incarnation, sent in every hello.
    incarnation: u64,
    /// The incarnation each peer node last said hello with, and the redial signal of the
    /// writer to it: a peer that comes back with a new incarnation has restarted, and the
    /// connection to its old process is dead even if QUIC has not noticed yet.
    peer_restarts: HashMap<NodeId, Arc<tasks::PeerRestart>>,
    /// Every node's pinned certificate, by its bytes: who a dialer's certificate says it is.
    node_certificates: HashMap<Vec<u8>, NodeId>,
    /// What client hellos are tagged or checked with.
    hello_keys: Option<Arc<HeldKeys>>,
    /// Frames to clients that had no route yet, kept a moment for their hello (see
    /// [`ParkedFrames`]).
    parked: Mutex<ParkedFrames>,
    /// Each authenticated sender's share of the inbox.
    shares: InboxShares,
}

/// Each sender's share of the inbox, by the id its hello proved: every node has a share of
/// its own, and every client host one inside the clients' common share. Frames over a
/// share are dropped and counted like frames over the inbox's bounds.
struct InboxShares {
    node_bytes_max: usize,
    client_bytes_max: usize,
    clients: Arc<InboxShare>,
    /// Held by the connections that read for each sender; a sender with two connections
    /// (a restart, a second client process for the same ids) shares one.
    by_sender: Mutex<HashMap<NodeId, std::sync::Weak<InboxShare>>>,
}

impl InboxShares {
    fn new(frame_bytes_max: usize, request_bytes_max: usize) -> InboxShares {
        // A few of the largest requests, with their envelopes, always fit a client's share.
        let request_frame = request_bytes_max.saturating_add(64 * 1024);
        InboxShares {
            node_bytes_max: NODE_INBOX_SHARE_BYTES.max(frame_bytes_max),
            client_bytes_max: CLIENT_INBOX_SHARE_BYTES.max(request_frame.saturating_mul(4)),
            clients: InboxShare::new(CLIENTS_INBOX_SHARE_BYTES.max(request_frame * 16)),
            by_sender: Mutex::new(HashMap::new()),
        }
    }

    /// The share of `sender`, whose hello was checked.
    fn of(&self, sender: NodeId) -> Arc<InboxShare> {
        let mut by_sender = self
            .by_sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = by_sender.get(&sender).and_then(std::sync::Weak::upgrade) {
            return share;
        }
        if by_sender.len() >= INBOX_SHARES_KEPT_MAX {
            by_sender.retain(|_, share| share.strong_count() > 0);
        }
        let share = match sender {
            NodeId::Client(_) => InboxShare::within(&self.clients, self.client_bytes_max),
            _ => InboxShare::new(self.node_bytes_max),
        };
        by_sender.insert(sender, Arc::downgrade(&share));
        share
    }
}

impl Shared {
    /// The routes to clients. A panic elsewhere while holding the lock cannot leave the map
    /// half-updated (every critical section is one insert, get or remove), so a poisoned
    /// lock is still safe to use.
    fn routes(&self) -> MutexGuard<'_, HashMap<ClientId, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn parked(&self) -> MutexGuard<'_, ParkedFrames> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count_dropped_send(&self, frames: u64) {
        if frames > 0 {
            self.dropped_send.fetch_add(frames, Ordering::Relaxed);
        }
    }

    fn count_rejected(&self) {
        self.rejected_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Hand a frame received from an authenticated sender to the inbox, charged to its
    /// share. False when the inbox is gone (nobody reads).
    fn deliver(&self, frame: Bytes, share: &Arc<InboxShare>) -> bool {
        match self.inbox.try_send_within(frame, share) {
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
    /// The queue of the dial-writer for each peer node (replica or execution replica),
    /// this node itself excepted.
    peer_queues: HashMap<NodeId, mpsc::Sender<Bytes>>,
    /// The accept loop and the per-peer writers; aborted when the bus goes.
    tasks: Vec<JoinHandle<()>>,
}

impl QuicBus {
    /// Bind, start listening (a replica or an execution replica) and start a writer per
    /// peer, which dials on its first frame, or at once on a client host. Must be called
    /// from within a tokio runtime.
    pub fn start(local: QuicIdentity, peers: QuicPeers) -> Result<(QuicBus, Inbox), QuicError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| QuicError::NoRuntime)?;
        install_crypto_provider();
        let frame_limit = INBOX_BYTES_MAX / 2;
        if peers.frame_bytes_max > frame_limit || peers.frame_bytes_max == 0 {
            let problem = format!(
                "frame_bytes_max {} must be 1..={frame_limit} (two frames fit an inbox)",
                peers.frame_bytes_max
            );
            return Err(QuicError::Identity(problem));
        }
        let id = local.id;
        match (id, &local.listen) {
            (NodeId::Replica(_) | NodeId::Execution(_) | NodeId::Activator(_), Some(_))
                if peers.get(id).is_some() => {}
            (NodeId::Replica(_) | NodeId::Execution(_) | NodeId::Activator(_), _) => {
                let problem = format!("{id} needs a listen identity and a place among the peers");
                return Err(QuicError::Identity(problem));
            }
            (NodeId::Client(_), None) => {}
            (NodeId::Client(_), Some(_)) => {
                return Err(QuicError::Identity(format!("client {id} does not listen")));
            }
        }
        // A client host registers its route with every peer at once (see the module doc).
        let eager = matches!(id, NodeId::Client(_));
        // Every fallible step before the first task is spawned, so a failure leaks nothing.
        let mut targets = Vec::with_capacity(peers.replicas.len() + peers.executions.len());
        let frame_bytes_max = peers.frame_bytes_max;
        let request_bytes_max = peers.request_bytes_max;
        let nodes: Vec<(NodeId, ReplicaPeer)> = peers.into_nodes().collect();
        let node_certificates: HashMap<Vec<u8>, NodeId> = (nodes.iter())
            .map(|(node, how)| (how.certificate.to_vec(), *node))
            .collect();
        for (peer, how) in nodes.iter().cloned() {
            // Clients never talk to the activator.
            if peer == id || (eager && matches!(peer, NodeId::Activator(_))) {
                continue;
            }
            // A node dials with its own certificate, so the peer knows who it is.
            let own = (local.listen.as_ref())
                .map(|listen| (listen.certificate.clone(), listen.private_key.clone_key()));
            targets.push(tasks::DialTarget {
                peer,
                address: how.address,
                config: tls::client_config(how.certificate, own)?,
                eager,
            });
        }
        let listening = local.listen.is_some();
        let endpoint = match local.listen {
            Some(listen) => {
                let certificates = nodes.into_iter().map(|(_, how)| how.certificate).collect();
                let mut config =
                    tls::server_config(listen.certificate, listen.private_key, certificates)?;
                config.max_incoming(INCOMING_CONNECTIONS_MAX);
                quinn::Endpoint::server(config, listen.address).map_err(|source| {
                    QuicError::Bind {
                        address: listen.address,
                        source,
                    }
                })?
            }
            None => {
                // A loopback socket cannot reach other addresses (containers on a bridge
                // network): bind to every interface only when some peer needs it.
                let all_loopback = targets
                    .iter()
                    .all(|target| target.address.ip().is_loopback());
                let ip = match all_loopback {
                    true => Ipv4Addr::LOCALHOST,
                    false => Ipv4Addr::UNSPECIFIED,
                };
                let address = SocketAddr::from((ip, 0));
                quinn::Endpoint::client(address)
                    .map_err(|source| QuicError::Bind { address, source })?
            }
        };
        let local_addr = endpoint.local_addr().map_err(|source| QuicError::Bind {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        })?;

        let (inbox, inbox_receiver) = crate::bus::inbox(INBOX_FRAMES_MAX, INBOX_BYTES_MAX);
        let shared = Arc::new(Shared {
            id: local.id,
            client_count: local.client_count,
            frame_bytes_max,
            inbox,
            routes: Mutex::new(HashMap::new()),
            dropped_send: AtomicU64::new(0),
            dropped_inbox: AtomicU64::new(0),
            rejected_frames: AtomicU64::new(0),
            connections_incoming: AtomicUsize::new(0),
            incarnation: tasks::draw_incarnation(),
            peer_restarts: (targets.iter())
                .map(|target| (target.peer, Arc::default()))
                .collect(),
            node_certificates,
            hello_keys: local.hello_keys,
            parked: Mutex::new(ParkedFrames::default()),
            shares: InboxShares::new(frame_bytes_max, request_bytes_max),
        });
        let mut task_handles = Vec::with_capacity(targets.len() + 1);
        if listening {
            let accept = tasks::accept_loop(Arc::clone(&shared), endpoint.clone());
            task_handles.push(runtime.spawn(accept));
        }
        let peer_queues = targets
            .into_iter()
            .map(|target| {
                let peer = target.peer;
                let (queue, frames) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
                let writer =
                    tasks::dial_writer(Arc::clone(&shared), endpoint.clone(), target, frames);
                task_handles.push(runtime.spawn(writer));
                (peer, queue)
            })
            .collect();
        tracing::debug!(id = %local.id, %local_addr, "quic bus started");
        let bus = QuicBus {
            shared,
            endpoint,
            local_addr,
            peer_queues,
            tasks: task_handles,
        };
        Ok((bus, inbox_receiver))
    }

    /// A bus for node `id` of the cluster in `dir`: a replica or an execution replica
    /// listens on its configured address, a client dials only.
    pub fn start_node(
        dir: &Path,
        config: &ClusterConfig,
        id: NodeId,
    ) -> Result<(QuicBus, Inbox), QuicError> {
        // A node checks client hellos with the key it shares with each client.
        let identity = match id {
            NodeId::Replica(replica) => QuicIdentity::replica(dir, config, replica)?
                .with_hello_keys(HeldKeys::new(
                    [crate::config::load_replica_keys(dir, replica)?],
                    config.clients,
                )),
            NodeId::Execution(execution) => QuicIdentity::execution(dir, config, execution)?
                .with_hello_keys(HeldKeys::new(
                    [crate::config::load_execution_keys(dir, execution)?],
                    config.clients,
                )),
            NodeId::Activator(_) => QuicIdentity::activator(dir, config)?,
            NodeId::Client(client) => return QuicBus::start_client_host(dir, config, client, 1),
        };
        QuicBus::start(identity, QuicPeers::from_config(dir, config)?)
    }

    /// A bus for a process that speaks for clients `first..first + count` of the cluster in
    /// `dir`, with one connection per peer (replica or execution replica) for all of them,
    /// dialed at once so that every peer can answer any of these clients.
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
        let keys = crate::config::client_range_keys(dir, config, first, count)?;
        QuicBus::start_client_host_with(dir, config, keys)
    }

    /// [`QuicBus::start_client_host`] for the clients whose keys are `keys` (consecutive
    /// ids, as a client key file holds them).
    pub fn start_client_host_with(
        dir: &Path,
        config: &ClusterConfig,
        keys: Vec<crate::crypto::NodeKeys>,
    ) -> Result<(QuicBus, Inbox), QuicError> {
        let first = match keys.first().map(|keys| keys.id) {
            Some(NodeId::Client(first)) => first,
            _ => {
                return Err(QuicError::Identity(
                    "a client host needs client keys".into(),
                ));
            }
        };
        let count = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        let consecutive = (keys.iter().enumerate())
            .all(|(index, keys)| keys.id == NodeId::Client(ClientId(first.0 + index as u64)));
        if !consecutive || count > CLIENTS_PER_CONNECTION_MAX {
            let problem = format!(
                "a client host speaks for 1..={CLIENTS_PER_CONNECTION_MAX} consecutive ids"
            );
            return Err(QuicError::Identity(problem));
        }
        let identity = QuicIdentity::client_host(first, count)
            .with_hello_keys(HeldKeys::new(keys, config.clients));
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
    /// Queue `frame` for `to` without waiting: to a replica or an execution replica over
    /// the connection this node dials, to a client over the connection it opened. Dropped
    /// and counted: a frame above the size limit, a frame to this node itself, to a node
    /// outside the cluster or to a client with no open connection here, and a frame whose
    /// peer queue is full.
    fn send(&self, to: NodeId, frame: Bytes) {
        if frame.len() > self.shared.frame_bytes_max {
            tracing::debug!(%to, size = frame.len(), "outgoing frame above the limit, dropped");
            self.shared.count_dropped_send(1);
            return;
        }
        let queued = match to {
            NodeId::Replica(_) | NodeId::Execution(_) | NodeId::Activator(_) => {
                match self.peer_queues.get(&to) {
                    Some(queue) => queue.try_send(frame).is_ok(),
                    None => false,
                }
            }
            NodeId::Client(client) => {
                let routes = self.shared.routes();
                match routes.get(&client) {
                    Some(route) => route.queue.try_send(frame).is_ok(),
                    // Parked under the routes' lock, so a hello registering the route now
                    // either sees it or came before (and the frame went by the route).
                    None => self.shared.parked().park(client, frame),
                }
            }
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
