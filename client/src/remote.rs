//! The async client over QUIC: a task that owns a [`ClientCore`], the client's endpoint and
//! its bus, and answers [`Client::invoke`] calls one at a time.

use crate::core::{ClientCore, Destination};
use bytes::Bytes;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use zz_protocol::bus::MessageBus;
use zz_protocol::config::{ConfigError, endpoint_for_client};
use zz_protocol::messages::{Message, Request};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::{AppId, ClientId, NodeId, ReplicaId, Time};

/// How long a client waits for f+1 matching replies before it asks every replica.
pub const RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`Client::invoke`] waits for a result by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("no f+1 matching replies within {0:?}; is the platform running?")]
    Deadline(Duration),
    #[error("the client task stopped")]
    Closed,
}

struct Invoke {
    app: AppId,
    op: Vec<u8>,
    deadline: Duration,
    result: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

/// A connected client. Requests from one client are ordered one at a time (PBFT's clients
/// have one outstanding request); use several clients for concurrency.
pub struct Client {
    id: ClientId,
    commands: mpsc::Sender<Invoke>,
}

impl Client {
    /// Connect client `id` to the cluster in `dir`. Must be called inside a tokio runtime.
    pub fn connect(dir: &Path, id: ClientId) -> Result<Client, ClientError> {
        zz_protocol::quic::install_crypto_provider();
        let (cluster, endpoint) = endpoint_for_client(dir, id)?;
        let (bus, inbox) = QuicBus::start_node(dir, &cluster, NodeId::Client(id))?;
        let (commands, receiver) = mpsc::channel(1);
        let core = ClientCore::new(cluster.protocol.f, RETRANSMIT_TIMEOUT.as_micros() as u64);
        let task = ClientTask {
            id,
            core,
            endpoint,
            bus,
            replica_count: cluster.replica_count() as u32,
            started: Instant::now(),
            last_timestamp: 0,
        };
        tokio::spawn(task.run(receiver, inbox));
        Ok(Client { id, commands })
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Order `op` for `app` and return the result f+1 replicas vouch for.
    pub async fn invoke(&self, app: AppId, op: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.invoke_with_deadline(app, op, DEFAULT_DEADLINE).await
    }

    pub async fn invoke_with_deadline(
        &self,
        app: AppId,
        op: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let (result, receiver) = oneshot::channel();
        let invoke = Invoke {
            app,
            op,
            deadline,
            result,
        };
        self.commands
            .send(invoke)
            .await
            .map_err(|_| ClientError::Closed)?;
        receiver.await.map_err(|_| ClientError::Closed)?
    }
}

struct ClientTask {
    id: ClientId,
    core: ClientCore,
    endpoint: zz_protocol::Endpoint,
    bus: QuicBus,
    replica_count: u32,
    started: Instant,
    last_timestamp: u64,
}

struct Pending {
    deadline: Instant,
    timeout: Duration,
    result: oneshot::Sender<Result<Vec<u8>, ClientError>>,
}

impl ClientTask {
    fn now(&self) -> Time {
        Time(self.started.elapsed().as_micros() as u64)
    }

    /// Timestamps must grow across restarts of the same client id, or replicas would take
    /// new requests for old ones: start from the wall clock.
    fn next_timestamp(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros() as u64);
        self.last_timestamp = wall.max(self.last_timestamp + 1);
        self.last_timestamp
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Invoke>,
        mut inbox: zz_protocol::bus::Inbox,
    ) {
        let mut pending: Option<Pending> = None;
        loop {
            let wake = match (&pending, self.core.poll_timeout()) {
                (Some(pending), Some(retransmit)) => pending
                    .deadline
                    .min(self.started + Duration::from_micros(retransmit.as_micros())),
                (Some(pending), None) => pending.deadline,
                _ => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                command = commands.recv(), if pending.is_none() => {
                    let Some(invoke) = command else { break };
                    let request = Request {
                        app: invoke.app,
                        client: self.id,
                        timestamp: self.next_timestamp(),
                        op: invoke.op,
                    };
                    let request = self.endpoint.authenticate_request(request);
                    self.core.submit(self.now(), request);
                    pending = Some(Pending {
                        deadline: Instant::now() + invoke.deadline,
                        timeout: invoke.deadline,
                        result: invoke.result,
                    });
                }
                frame = inbox.recv() => {
                    let Some(frame) = frame else { break };
                    if let Some(result) = self.handle_frame(&frame)
                        && let Some(pending) = pending.take()
                    {
                        let _ = pending.result.send(Ok(result));
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                    if pending.as_ref().is_some_and(|pending| Instant::now() >= pending.deadline) {
                        let pending = pending.take().expect("checked above");
                        self.core.abandon();
                        let _ = pending.result.send(Err(ClientError::Deadline(pending.timeout)));
                    }
                }
            }
            self.flush();
        }
        self.bus.shutdown().await;
    }

    fn handle_frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let verified = match self.endpoint.open(frame) {
            Ok(verified) => verified,
            Err(rejection) => {
                tracing::debug!(client = %self.id, %rejection, "rejected frame");
                return None;
            }
        };
        match verified.into_parts() {
            (NodeId::Replica(replica), Message::Reply(reply)) => self
                .core
                .handle_reply(replica, reply)
                .map(|accepted| accepted.result),
            _ => None,
        }
    }

    fn flush(&mut self) {
        for (destination, request) in self.core.poll_send() {
            let message = Message::Request(request);
            let targets: Vec<ReplicaId> = match destination {
                Destination::Replica(replica) => vec![replica],
                Destination::AllReplicas => (0..self.replica_count).map(ReplicaId).collect(),
            };
            for target in targets {
                let to = NodeId::Replica(target);
                if let Some(frame) = self.endpoint.seal(to, &message) {
                    self.bus.send(to, Bytes::from(frame));
                }
            }
        }
    }
}
