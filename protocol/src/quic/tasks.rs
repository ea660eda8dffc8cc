//! The bus's tasks: the accept loop, a reader per connection, a writer per peer node (it
//! dials and redials), and a writer per client route (it answers over the client's
//! connection). Every one ends when its connection or queue does.

use super::frame::{self, FrameError, FrameReader, HELLO_BYTES_MAX, WRITE_BATCH_FRAMES_MAX};
use super::hello::{self, HelloClaim};
use super::tls::SERVER_NAME;
use super::{
    CONNECT_TIMEOUT, INCOMING_CONNECTIONS_MAX, PEER_QUEUE_FRAMES_MAX, RECONNECT_BACKOFF_MAX,
    RECONNECT_BACKOFF_MIN, Route, Shared,
};
use crate::crypto::Mac;
use crate::ids::{ClientId, NodeId};
use bytes::{Bytes, BytesMut};
use quinn::{Connection, Endpoint, SendStream, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Application close codes, so a peer's log says why.
pub(super) const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
pub(super) const CLOSE_FRAMING: VarInt = VarInt::from_u32(1);
pub(super) const CLOSE_BAD_HELLO: VarInt = VarInt::from_u32(2);

/// One peer (replica or execution replica) this node dials.
/// How a writer learns that its peer restarted: the peer's last incarnation and a count
/// of restarts seen, with a wake-up for the writer.
#[derive(Default)]
pub(super) struct PeerRestart {
    incarnation: std::sync::Mutex<Option<u64>>,
    restarts: std::sync::atomic::AtomicU64,
    notify: tokio::sync::Notify,
}

impl PeerRestart {
    /// A hello from the peer with `incarnation`: a new one after an old one means it
    /// restarted.
    fn saw(&self, incarnation: u64) {
        let mut last = self
            .incarnation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let restarted = last.is_some_and(|last| last != incarnation);
        *last = Some(incarnation);
        drop(last);
        if restarted {
            self.restarts.fetch_add(1, Ordering::Relaxed);
            self.notify.notify_waiters();
        }
    }

    pub(super) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

/// A number that differs between two starts of a process (time and pid), in hellos.
pub(super) fn draw_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

pub(super) struct DialTarget {
    pub peer: NodeId,
    pub address: SocketAddr,
    /// Pins that peer's certificate.
    pub config: quinn::ClientConfig,
    /// Dial at once and redial whenever the connection is lost, rather than on the next
    /// frame: a client host does, so that its hello registers its route with the peer
    /// before the peer has anything to answer.
    pub eager: bool,
}

/// Accept connections until the endpoint closes. Handshakes run in their own tasks so a
/// slow or silent dialer cannot hold up the others.
pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        // Counted from the handshake on, so handshakes in progress count against the bound.
        let connections = shared.connections_incoming.fetch_add(1, Ordering::Relaxed);
        if connections >= INCOMING_CONNECTIONS_MAX {
            shared.connections_incoming.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(remote = %incoming.remote_address(), "too many connections, refused");
            incoming.refuse();
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => {
                    serve_connection(Arc::clone(&shared), connection, Origin::Accepted).await
                }
                Err(error) => tracing::debug!(%error, "incoming handshake failed"),
            }
            shared.connections_incoming.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Count a framing violation and close the connection that committed it.
fn reject(shared: &Shared, connection: &Connection, code: VarInt, problem: &str) {
    tracing::debug!(remote = %connection.remote_address(), problem, "frame rejected, closing");
    shared.count_rejected();
    connection.close(code, problem.as_bytes());
}

/// How a connection came to be.
#[derive(Clone, Copy, Debug)]
pub(super) enum Origin {
    /// Dialed to us: the dialer is whoever its certificate (a node) or hello tag (a client
    /// host) proves it is.
    Accepted,
    /// Dialed by this node to this peer, whose pinned certificate the handshake checked.
    Dialed(NodeId),
}

/// The node a connection's certificate belongs to, if the dialer presented one (the
/// handshake checked it is one of the pinned node certificates).
fn certified_node(shared: &Shared, connection: &Connection) -> Option<NodeId> {
    let identity = connection.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let end_entity = chain.first()?;
    shared.node_certificates.get(end_entity.as_ref()).copied()
}

/// Whether the hello `claim` (with `tag`) may be believed on a connection of `origin`;
/// the problem to close it with if not.
fn check_hello(
    shared: &Shared,
    connection: &Connection,
    origin: Origin,
    claim: HelloClaim,
    tag: &Mac,
) -> Result<(), String> {
    let certified = match origin {
        Origin::Dialed(peer) => Some(peer),
        Origin::Accepted => certified_node(shared, connection),
    };
    match (claim.id, certified) {
        (NodeId::Client(_), Some(node)) => Err(format!("{node}'s connection speaks for clients")),
        (NodeId::Client(_), None) => {
            if claim.clients == 0 || claim.clients > super::CLIENTS_PER_CONNECTION_MAX {
                return Err(format!("hello speaks for {} clients", claim.clients));
            }
            let holds = (shared.hello_keys.as_deref())
                .is_some_and(|keys| hello::client_tag_holds(keys, claim, shared.id, tag));
            if holds {
                Ok(())
            } else {
                Err(format!("hello of {} fails its tag", claim.id))
            }
        }
        (node, Some(certified)) if node == certified => Ok(()),
        (node, certified) => Err(format!(
            "hello names {node}, the certificate is {}",
            certified.map_or("no node's".to_string(), |c| format!("{c}'s"))
        )),
    }
}

/// Read every stream the peer opens on `connection`, one at a time, into the inbox. Each
/// stream starts with a hello, believed only as [`check_hello`] allows; on a connection
/// this node accepted, the first hello naming clients makes this connection the route to
/// them.
pub(super) async fn serve_connection(shared: Arc<Shared>, connection: Connection, origin: Origin) {
    // Who the connection's first believed hello named, and that sender's inbox share.
    let mut peer: Option<(NodeId, Arc<crate::bus::InboxShare>)> = None;
    while let Ok(mut recv) = connection.accept_uni().await {
        let mut reader = FrameReader::new();
        let hello = match reader.next(&mut recv, HELLO_BYTES_MAX).await {
            Ok(Some(hello)) => hello,
            Ok(None) => continue,
            Err(error @ FrameError::Lost(_)) => {
                tracing::debug!(remote = %connection.remote_address(), %error, "read ended");
                return;
            }
            Err(error) => {
                return reject(
                    &shared,
                    &connection,
                    CLOSE_BAD_HELLO,
                    &format!("hello: {error}"),
                );
            }
        };
        let Some((claim, tag)) = frame::parse_hello(&hello) else {
            return reject(
                &shared,
                &connection,
                CLOSE_BAD_HELLO,
                "hello does not decode",
            );
        };
        let id = claim.id;
        let share = match &peer {
            Some((known, _)) if *known != id => {
                let problem = format!("hello names {id}, connection is {known}'s");
                return reject(&shared, &connection, CLOSE_BAD_HELLO, &problem);
            }
            Some((_, share)) => Arc::clone(share),
            None => {
                if let Err(problem) = check_hello(&shared, &connection, origin, claim, &tag) {
                    return reject(&shared, &connection, CLOSE_BAD_HELLO, &problem);
                }
                let share = shared.shares.of(id);
                peer = Some((id, Arc::clone(&share)));
                if let Some(restart) = shared.peer_restarts.get(&id) {
                    restart.saw(claim.incarnation);
                }
                if let (Origin::Accepted, NodeId::Client(first)) = (origin, id) {
                    register_routes(&shared, &connection, first, claim.clients);
                }
                share
            }
        };
        loop {
            match reader.next(&mut recv, shared.frame_bytes_max).await {
                Ok(Some(frame)) => {
                    if !shared.deliver(frame, &share) {
                        // Nobody reads the inbox any more: the node is going away.
                        connection.close(CLOSE_SHUTDOWN, b"inbox closed");
                        return;
                    }
                }
                Ok(None) => break,
                Err(error @ FrameError::Lost(_)) => {
                    tracing::debug!(remote = %connection.remote_address(), %error, "read ended");
                    return;
                }
                Err(error) => {
                    let _ = recv.stop(CLOSE_FRAMING);
                    return reject(&shared, &connection, CLOSE_FRAMING, &error.to_string());
                }
            }
        }
    }
}

/// Make `connection` the route to clients `first..first + count`, replacing older routes
/// (a client that reconnects is reached over its newest connection). The clients of one
/// connection share one queue and one stream, so replies to them travel together.
fn register_routes(shared: &Arc<Shared>, connection: &Connection, first: ClientId, count: u32) {
    let (queue, frames) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
    {
        let mut routes = shared.routes();
        for client in first.0..first.0.saturating_add(count as u64) {
            let route = Route {
                connection_id: connection.stable_id(),
                queue: queue.clone(),
            };
            routes.insert(ClientId(client), route);
        }
        // What was sent to these clients before their hello arrived goes first.
        for frame in shared.parked().take_range(first, count) {
            if queue.try_send(frame).is_err() {
                shared.count_dropped_send(1);
            }
        }
    }
    tokio::spawn(route_writer(
        Arc::clone(shared),
        connection.clone(),
        (first, count),
        frames,
    ));
}

/// Write frames to the clients of one connection, over the connection they opened; the
/// stream is opened on the first frame. Ends, and removes the routes that are still this
/// connection's, when the connection closes.
async fn route_writer(
    shared: Arc<Shared>,
    connection: Connection,
    (first, count): (ClientId, u32),
    mut frames: mpsc::Receiver<Bytes>,
) {
    let first_frame = tokio::select! {
        frame = frames.recv() => frame,
        _ = connection.closed() => None,
    };
    if let Some(first_frame) = first_frame {
        match open_stream(&shared, &connection, None).await {
            Ok(mut send) => {
                if let WriteEnd::ConnectionLost { frames_lost } =
                    write_frames(&mut send, &connection, Some(first_frame), &mut frames, None).await
                {
                    shared.count_dropped_send(frames_lost);
                }
            }
            Err(problem) => {
                tracing::debug!(%first, count, problem, "reply stream failed");
                shared.count_dropped_send(1);
            }
        }
    }
    {
        let mut routes = shared.routes();
        for client in first.0..first.0.saturating_add(count as u64) {
            if routes
                .get(&ClientId(client))
                .is_some_and(|route| route.connection_id == connection.stable_id())
            {
                routes.remove(&ClientId(client));
            }
        }
    }
    shared.count_dropped_send(drain(&mut frames));
}

/// Open this node's stream on `connection` to `to` and send the hello (a client host's
/// tagged for `to`; a node's proven by its certificate).
async fn open_stream(
    shared: &Shared,
    connection: &Connection,
    to: Option<NodeId>,
) -> Result<SendStream, String> {
    let claim = HelloClaim {
        id: shared.id,
        clients: shared.client_count,
        incarnation: shared.incarnation,
    };
    let tag = match (shared.id, to, shared.hello_keys.as_deref()) {
        (NodeId::Client(_), Some(to), Some(keys)) => hello::client_tag(keys, claim, to)
            .ok_or_else(|| format!("no keys to say hello to {to} with"))?,
        _ => [0; 32],
    };
    let mut send = connection
        .open_uni()
        .await
        .map_err(|error| error.to_string())?;
    send.write_all(&frame::hello(claim, tag))
        .await
        .map_err(|error| error.to_string())?;
    Ok(send)
}

/// Dial `target` and open the stream: a connection with this node's hello already sent.
async fn dial(
    shared: &Shared,
    endpoint: &Endpoint,
    target: &DialTarget,
) -> Result<(Connection, SendStream), String> {
    let connecting = endpoint
        .connect_with(target.config.clone(), target.address, SERVER_NAME)
        .map_err(|error| error.to_string())?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("no handshake within {CONNECT_TIMEOUT:?}"))?
        .map_err(|error| error.to_string())?;
    let send = open_stream(shared, &connection, Some(target.peer)).await?;
    Ok((connection, send))
}

/// Drop everything queued now; returns how many frames that was.
fn drain(frames: &mut mpsc::Receiver<Bytes>) -> u64 {
    let mut count = 0;
    while frames.try_recv().is_ok() {
        count += 1;
    }
    count
}

/// The writer for one peer node. It dials on the first frame (so a node that never talks
/// to a peer never connects to it), writes until the connection is lost, and redials on the
/// next frame; an eager writer dials at once and redials without waiting for a frame. While
/// the peer cannot be reached, queued frames are dropped rather than kept: they would be
/// stale by the time it is back, and the protocol retransmits.
pub(super) async fn dial_writer(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    target: DialTarget,
    mut frames: mpsc::Receiver<Bytes>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut next: Option<Bytes> = None;
    loop {
        if target.eager {
            if frames.is_closed() && frames.is_empty() {
                return;
            }
        } else if next.is_none() {
            match frames.recv().await {
                Some(frame) => next = Some(frame),
                None => return,
            }
        }
        match dial(&shared, &endpoint, &target).await {
            Ok((connection, mut send)) => {
                let connected_at = Instant::now();
                tokio::spawn(serve_connection(
                    Arc::clone(&shared),
                    connection.clone(),
                    Origin::Dialed(target.peer),
                ));
                let restart = shared.peer_restarts.get(&target.peer).map(Arc::as_ref);
                let watch = restart.map(|restart| (restart, restart.restarts()));
                match write_frames(&mut send, &connection, next.take(), &mut frames, watch).await {
                    WriteEnd::QueueClosed => {
                        let _ = send.finish();
                        return;
                    }
                    WriteEnd::ConnectionLost { frames_lost } => {
                        shared.count_dropped_send(frames_lost);
                        connection.close(CLOSE_SHUTDOWN, b"redialing");
                    }
                }
                // A connection that dies soon after it is made (the peer refuses us, or
                // crashes on start) is backed off like a failed dial.
                if connected_at.elapsed() >= RECONNECT_BACKOFF_MAX {
                    backoff = RECONNECT_BACKOFF_MIN;
                    continue;
                }
            }
            Err(problem) => {
                tracing::debug!(peer = %target.peer, address = %target.address, problem, "dial failed");
                shared.count_dropped_send(u64::from(next.take().is_some()) + drain(&mut frames));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Why [`write_frames`] returned.
enum WriteEnd {
    /// The bus is gone: nothing more will be queued.
    QueueClosed,
    /// The connection failed; `frames_lost` were taken from the queue and not delivered.
    ConnectionLost { frames_lost: u64 },
}

/// Bytes gathered into one write at most (a single larger frame goes alone).
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Write `first`, then everything queued, as length-prefixed frames on `send`, gathering
/// what is already queued into one write; stops when the queue closes or the connection
/// is lost.
///
/// `restart`, for a writer to a node peer, with the restarts counted when it connected:
/// once the peer restarts, the connection (to its old process) is given up.
async fn write_frames(
    send: &mut SendStream,
    connection: &Connection,
    mut next: Option<Bytes>,
    frames: &mut mpsc::Receiver<Bytes>,
    restart: Option<(&PeerRestart, u64)>,
) -> WriteEnd {
    // Frames are copied into one buffer per write: quinn handles one large chunk far more
    // cheaply than many small ones (a 4-byte prefix and a small frame each).
    let mut buffer = BytesMut::new();
    let restarted = || restart.is_some_and(|(peer, seen)| peer.restarts() != seen);
    loop {
        if restarted() {
            tracing::debug!(remote = %connection.remote_address(), "peer restarted: redialing");
            return WriteEnd::ConnectionLost {
                frames_lost: u64::from(next.is_some()),
            };
        }
        let first = match next.take() {
            Some(frame) => frame,
            None => tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => frame,
                    None => return WriteEnd::QueueClosed,
                },
                _ = connection.closed() => return WriteEnd::ConnectionLost { frames_lost: 0 },
                () = async {
                    match restart {
                        Some((peer, _)) => peer.notify.notified().await,
                        None => std::future::pending().await,
                    }
                } => continue,
            },
        };
        let mut count = 1u64;
        buffer.reserve(frame::PREFIX_BYTES + first.len());
        buffer.extend_from_slice(&frame::prefix(first.len()));
        buffer.extend_from_slice(&first);
        while count < WRITE_BATCH_FRAMES_MAX as u64 && buffer.len() < WRITE_BATCH_BYTES_MAX {
            match frames.try_recv() {
                Ok(frame) => {
                    buffer.extend_from_slice(&frame::prefix(frame.len()));
                    buffer.extend_from_slice(&frame);
                    count += 1;
                }
                Err(_) => break,
            }
        }
        if let Err(error) = send.write_chunk(buffer.split().freeze()).await {
            tracing::debug!(remote = %connection.remote_address(), %error, "write failed");
            return WriteEnd::ConnectionLost { frames_lost: count };
        }
    }
}
