//! The async client over QUIC. A [`ClientPool`] speaks for a range of client ids over one
//! connection per replica (so replies to many clients travel together); a task owns one
//! [`ClientCore`] per id and answers [`Client::invoke`] calls, one at a time per client.

use crate::core::{Accepted, ClientCore, Destination, Voters};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use zz_protocol::bus::MessageBus;
use zz_protocol::config::{ClusterConfig, ConfigError, client_range_keys, load_client_file};
use zz_protocol::crypto::NodeKeys;
use zz_protocol::envelope::peek_message;
use zz_protocol::messages::{Message, Request};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::{AppId, ClientId, Endpoint, NodeId, Time};

/// How long a client waits for f+1 matching replies before it asks every replica.
pub const RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`Client::invoke`] waits for a result by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How often the pool checks retransmission timers and deadlines.
const TICK: Duration = Duration::from_millis(20);
/// Invocations queued per pool at most before callers wait.
const COMMANDS_QUEUED_MAX: usize = 4096;

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
    #[error(
        "client file {name:?} holds {held} client ids; clients {wanted:?} of it were asked for \
         (zz client add NAME --ids N makes a larger one)"
    )]
    NotInFile {
        name: String,
        held: usize,
        wanted: std::ops::Range<usize>,
    },
}

struct Invoke {
    client: ClientId,
    app: AppId,
    op: Vec<u8>,
    deadline: Duration,
    result: oneshot::Sender<Result<Accepted, ClientError>>,
}

/// Clients `first..first + count` of a cluster, sharing one connection per replica.
pub struct ClientPool {
    first: ClientId,
    count: u32,
    commands: mpsc::Sender<Invoke>,
}

/// One client of a pool. Its requests are ordered one at a time (PBFT's clients have one
/// outstanding request); use several clients for concurrency.
#[derive(Clone)]
pub struct Client {
    id: ClientId,
    commands: mpsc::Sender<Invoke>,
}

impl ClientPool {
    /// Connect clients `first..first + count` to the cluster in `dir`, with keys derived from
    /// the operator's `keys/clients.toml`. Must be called inside a tokio runtime.
    pub fn connect(dir: &Path, first: ClientId, count: u32) -> Result<ClientPool, ClientError> {
        let cluster = ClusterConfig::load(dir)?;
        let last = first.0.saturating_add(u64::from(count));
        if count == 0 || last > cluster.clients {
            let client = ClientId(last.saturating_sub(1).max(first.0));
            let clients = cluster.clients;
            return Err(ConfigError::UnknownClient { client, clients }.into());
        }
        let keys = client_range_keys(dir, &cluster, first, count)?;
        ClientPool::connect_with(dir, cluster, keys)
    }

    /// Connect `count` clients of the key file `clients/<name>.toml` (`zz client add`),
    /// which holds their keys and no one else's, from its `offset`-th id on (a process
    /// speaks only for the ids it uses: a node routes a client's replies to the last
    /// connection that said hello for it). Must be called inside a tokio runtime.
    pub fn connect_as(
        dir: &Path,
        name: &str,
        offset: u32,
        count: u32,
    ) -> Result<ClientPool, ClientError> {
        let cluster = ClusterConfig::load(dir)?;
        let mut keys = load_client_file(dir, &cluster, name)?;
        let held = keys.len();
        let wanted = offset as usize..offset as usize + count as usize;
        if count == 0 || wanted.end > held {
            return Err(ClientError::NotInFile {
                name: name.to_string(),
                held,
                wanted,
            });
        }
        keys.truncate(wanted.end);
        keys.drain(..wanted.start);
        ClientPool::connect_with(dir, cluster, keys)
    }

    /// The pool's first client id.
    pub fn first(&self) -> ClientId {
        self.first
    }

    /// How many clients the pool speaks for.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn connect_with(
        dir: &Path,
        cluster: ClusterConfig,
        keys: Vec<NodeKeys>,
    ) -> Result<ClientPool, ClientError> {
        zz_protocol::quic::install_crypto_provider();
        let Some(NodeId::Client(first)) = keys.first().map(|keys| keys.id) else {
            return Err(ConfigError::UnknownClient {
                client: ClientId(0),
                clients: 0,
            }
            .into());
        };
        let count = keys.len() as u32;
        let endpoints: Vec<Endpoint> = (keys.iter().cloned())
            .map(|keys| {
                Endpoint::new(keys, cluster.verifying_keys(), cluster.protocol.clone())
                    .with_clients_provisioned(cluster.clients)
            })
            .collect();
        let (bus, inbox) = QuicBus::start_client_host_with(dir, &cluster, keys)?;
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let retransmit_micros = RETRANSMIT_TIMEOUT.as_micros() as u64;
        // An app with execution replicas is answered by them; the rest by the agreement
        // replicas themselves.
        let voters = Voters {
            groups: cluster
                .execution_groups()
                .into_iter()
                .map(|(app, members)| {
                    let members = members.into_iter().map(NodeId::Execution).collect();
                    (app, members)
                })
                .collect(),
            ..Voters::agreement_only(cluster.replica_count())
        };
        let clients = endpoints
            .into_iter()
            .map(|endpoint| ClientState {
                // Today the agreement replicas answer every request themselves.
                core: ClientCore::new(cluster.protocol.f, retransmit_micros, voters.clone()),
                endpoint,
                pending: None,
                queued: VecDeque::new(),
                last_timestamp: 0,
            })
            .collect();
        let task = PoolTask {
            first,
            clients,
            bus,
            replica_count: cluster.replica_count() as u32,
            started: Instant::now(),
        };
        tokio::spawn(task.run(receiver, inbox));
        Ok(ClientPool {
            first,
            count,
            commands,
        })
    }

    /// The pool's `index`-th client.
    pub fn client(&self, index: u32) -> Client {
        assert!(
            index < self.count,
            "client {index} of a pool of {}",
            self.count
        );
        Client {
            id: ClientId(self.first.0 + index as u64),
            commands: self.commands.clone(),
        }
    }
}

impl Client {
    /// Connect client `id` alone (a pool of one).
    pub fn connect(dir: &Path, id: ClientId) -> Result<Client, ClientError> {
        Ok(ClientPool::connect(dir, id, 1)?.client(0))
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
        let accepted = self.invoke_vouched(app, op, deadline).await?;
        Ok(accepted.result)
    }

    /// Like [`Client::invoke_with_deadline`], with who vouched for the result.
    pub async fn invoke_vouched(
        &self,
        app: AppId,
        op: Vec<u8>,
        deadline: Duration,
    ) -> Result<Accepted, ClientError> {
        let (result, receiver) = oneshot::channel();
        let invoke = Invoke {
            client: self.id,
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

struct Pending {
    deadline: Instant,
    timeout: Duration,
    result: oneshot::Sender<Result<Accepted, ClientError>>,
}

struct ClientState {
    core: ClientCore,
    endpoint: Endpoint,
    pending: Option<Pending>,
    queued: VecDeque<Invoke>,
    last_timestamp: u64,
}

struct PoolTask {
    first: ClientId,
    clients: Vec<ClientState>,
    bus: QuicBus,
    replica_count: u32,
    started: Instant,
}

impl PoolTask {
    fn now(&self) -> Time {
        Time(self.started.elapsed().as_micros() as u64)
    }

    fn index(&self, client: ClientId) -> Option<usize> {
        let index = client.0.checked_sub(self.first.0)? as usize;
        (index < self.clients.len()).then_some(index)
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Invoke>,
        mut inbox: zz_protocol::bus::Inbox,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(invoke) = command else { break };
                    self.handle_invoke(invoke);
                }
                frame = inbox.recv() => {
                    let Some(frame) = frame else { break };
                    self.handle_frame(&frame);
                }
                _ = tick.tick() => self.handle_tick(),
            }
        }
        self.bus.shutdown().await;
    }

    fn handle_invoke(&mut self, invoke: Invoke) {
        let Some(index) = self.index(invoke.client) else {
            let _ = invoke.result.send(Err(ClientError::Closed));
            return;
        };
        let client = &mut self.clients[index];
        if client.pending.is_some() {
            client.queued.push_back(invoke);
        } else {
            self.submit(index, invoke);
        }
    }

    fn submit(&mut self, index: usize, invoke: Invoke) {
        let now = self.now();
        let id = ClientId(self.first.0 + index as u64);
        let client = &mut self.clients[index];
        // Timestamps must grow across restarts of the same client id, or replicas would
        // take new requests for old ones: start from the wall clock.
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros() as u64);
        client.last_timestamp = wall.max(client.last_timestamp + 1);
        let request = Request {
            app: invoke.app,
            client: id,
            timestamp: client.last_timestamp,
            op: invoke.op,
        };
        let request = client.endpoint.authenticate_request(request);
        client.core.submit(now, request);
        client.pending = Some(Pending {
            deadline: Instant::now() + invoke.deadline,
            timeout: invoke.deadline,
            result: invoke.result,
        });
        self.flush(index);
    }

    /// Replies are sealed for one client each: find which before checking the MAC.
    fn handle_frame(&mut self, frame: &[u8]) {
        let addressee = peek_message(frame).and_then(|message| match message {
            Message::Reply(reply) => self.index(reply.client),
            _ => None,
        });
        let Some(index) = addressee else {
            tracing::debug!("dropped a frame that is no reply to a client of this pool");
            return;
        };
        let client = &mut self.clients[index];
        let verified = match client.endpoint.open(frame) {
            Ok(verified) => verified,
            Err(rejection) => {
                tracing::debug!(%rejection, "rejected frame");
                return;
            }
        };
        let (from, Message::Reply(reply)) = verified.into_parts() else {
            return;
        };
        if let Some(accepted) = client.core.handle_reply(from, reply)
            && let Some(pending) = client.pending.take()
        {
            let _ = pending.result.send(Ok(accepted));
            if let Some(next) = client.queued.pop_front() {
                self.submit(index, next);
            }
        }
    }

    fn handle_tick(&mut self) {
        let now = self.now();
        let instant = Instant::now();
        for index in 0..self.clients.len() {
            let client = &mut self.clients[index];
            if client.pending.is_none() {
                continue;
            }
            client.core.handle_timeout(now);
            if client
                .pending
                .as_ref()
                .is_some_and(|pending| instant >= pending.deadline)
            {
                let pending = client.pending.take().expect("checked above");
                client.core.abandon();
                let _ = pending
                    .result
                    .send(Err(ClientError::Deadline(pending.timeout)));
                if let Some(next) = client.queued.pop_front() {
                    self.submit(index, next);
                }
            }
            self.flush(index);
        }
    }

    fn flush(&mut self, index: usize) {
        let client = &mut self.clients[index];
        for (destination, request) in client.core.poll_send() {
            // A retransmission goes to every agreement replica and to the app's execution
            // replicas, which answer it from their reply caches.
            let executions: Vec<NodeId> = match destination {
                Destination::Replica(_) => Vec::new(),
                Destination::AllReplicas => (client.core.voters())
                    .for_app(request.request.app)
                    .iter()
                    .copied()
                    .filter(|node| matches!(node, NodeId::Execution(_)))
                    .collect(),
            };
            let targets = (destination.replicas(self.replica_count))
                .map(NodeId::Replica)
                .chain(executions);
            let message = Message::Request(request);
            for to in targets {
                if let Some(frame) = client.endpoint.seal(to, &message) {
                    self.bus.send(to, Bytes::from(frame));
                }
            }
        }
    }
}
