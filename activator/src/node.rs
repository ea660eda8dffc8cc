//! The activator node (`zz node activator`): the host's replica control daemon. It starts
//! the host's execution replicas through a [`Backend`], listens over QUIC for agreement
//! replicas' `Wake` and `Faulty` alarms, feeds them to the [`Policy`], carries out its
//! commands, announces memberships, answers `zz scale` on its control socket and writes
//! `run/activator.json` for `zz status`. It owns the I/O; the policy decides.

use crate::backend::{Backend, Instance};
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::policy::{Command, Member, MemberState, Policy, PolicyConfig};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use zz_cluster::ClusterDir;
use zz_cluster::status_file::{reasons, unix_ms, write_json};
use zz_protocol::bus::MessageBus;
use zz_protocol::config::{ClusterConfig, ConfigError, LOCAL_ACTIVATOR, endpoint_for_activator};
use zz_protocol::messages::Message;
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::{AppId, Endpoint, ExecutionId, NodeId, RejectReason, ReplicaId, Time};

/// Frames handled in one go before the node looks at its timers again.
const FRAMES_PER_TURN_MAX: usize = 256;
/// How often the policy's timers run and the backend is asked which starts completed.
const TICK_INTERVAL: Duration = Duration::from_millis(20);
/// How often the node rewrites its status file.
const STATUS_FILE_INTERVAL: Duration = Duration::from_millis(250);
/// Backend events kept for the status, at most.
const BACKEND_EVENTS_MAX: usize = 64;
/// Control requests waiting for the main loop at most.
const CONTROL_QUEUE_MAX: usize = 16;

/// Why the activator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivatorNodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One execution replica as the activator sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u32,
    pub host: String,
    pub state: MemberState,
    pub instance: Option<Instance>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolStatus {
    pub app: u32,
    pub name: String,
    pub epoch: u64,
    pub members: Vec<MemberStatus>,
}

/// Something that happened, for `zz status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub unix_ms: u64,
    pub text: String,
}

/// What `run/activator.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivatorStatus {
    pub pid: u32,
    pub backend: String,
    pub pools: Vec<PoolStatus>,
    /// The policy's and the backend's events, oldest first.
    pub events: Vec<Event>,
    pub wakes_received: u64,
    pub faulty_received: u64,
    /// Backend commands that failed.
    pub commands_failed: u64,
    /// Frames rejected before the policy (decode, MAC, sender), by reason.
    pub rejected: BTreeMap<String, u64>,
    pub updated_unix_ms: u64,
}

struct Activator<B> {
    cluster: ClusterConfig,
    policy: Policy,
    backend: B,
    endpoint: Endpoint,
    bus: QuicBus,
    started: Instant,
    started_unix_ms: u64,
    backend_events: VecDeque<Event>,
    wakes_received: u64,
    faulty_received: u64,
    commands_failed: u64,
    rejected: BTreeMap<RejectReason, u64>,
}

impl<B: Backend> Activator<B> {
    fn now(&self) -> Time {
        Time(self.started.elapsed().as_micros() as u64)
    }

    fn backend_event(&mut self, text: String) {
        tracing::info!("{text}");
        self.backend_events.push_back(Event {
            unix_ms: unix_ms(),
            text,
        });
        while self.backend_events.len() > BACKEND_EVENTS_MAX {
            self.backend_events.pop_front();
        }
    }

    fn app_of(&self, member: ExecutionId) -> Option<AppId> {
        self.cluster.execution(member).map(|e| e.app)
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let now = self.now();
        match self.endpoint.open(frame) {
            Ok(verified) => match verified.into_parts() {
                (NodeId::Replica(from), Message::Wake(wake)) => {
                    self.wakes_received += 1;
                    self.policy.handle_wake(now, from, wake);
                }
                (NodeId::Replica(from), Message::Faulty(faulty)) => {
                    self.faulty_received += 1;
                    self.policy.handle_faulty(now, from, faulty);
                }
                _ => {
                    *self
                        .rejected
                        .entry(RejectReason::UnexpectedKind)
                        .or_default() += 1
                }
            },
            Err(rejection) => {
                tracing::debug!(%rejection, "rejected frame");
                *self.rejected.entry(rejection.reason()).or_default() += 1;
            }
        }
    }

    async fn handle_tick(&mut self) {
        for member in self.backend.poll_started().await {
            if let Some(app) = self.app_of(member) {
                let name = (self.cluster.apps.iter())
                    .find(|config| config.id == app)
                    .map_or_else(|| app.to_string(), |config| config.name.clone());
                self.backend_event(format!("{name}: execution-{} is ready", member.0));
                let now = self.now();
                self.policy.handle_ready(now, app, member);
            }
        }
        let now = self.now();
        self.policy.handle_tick(now);
    }

    fn handle_control(&mut self, request: ControlRequest) -> ControlAnswer {
        match request {
            ControlRequest::Scale { app, standbys } => {
                let Some(config) = self.cluster.apps.iter().find(|a| a.name == app) else {
                    let names: Vec<&str> =
                        self.cluster.apps.iter().map(|a| a.name.as_str()).collect();
                    return ControlAnswer::Refused(format!(
                        "no app named {app:?}; this platform hosts {}",
                        names.join(", ")
                    ));
                };
                let now = self.now();
                match self.policy.handle_scale(now, config.id, standbys) {
                    Ok(text) => ControlAnswer::Done(text),
                    Err(text) => ControlAnswer::Refused(text),
                }
            }
        }
    }

    /// Carry out the policy's commands in order.
    async fn carry_out(&mut self) {
        for command in self.policy.take_commands() {
            let begun = Instant::now();
            let (action, result) = match command {
                Command::Announce(membership) => {
                    self.announce(&Message::Membership(membership));
                    continue;
                }
                Command::Thaw(member) => ("thawed", member, self.backend.thaw(member).await),
                Command::Pause(member) => ("paused", member, self.backend.pause(member).await),
                Command::Destroy(member) => {
                    ("destroyed", member, self.backend.destroy(member).await)
                }
                Command::StartStandby(member) => {
                    ("started", member, self.backend.start(member, true).await)
                }
            }
            .into_action();
            match result {
                Ok(member) => {
                    let took = begun.elapsed().as_secs_f64() * 1000.0;
                    let name = self.backend.name();
                    self.backend_event(format!(
                        "{name} backend {action} execution-{} in {took:.1} ms",
                        member.0
                    ));
                }
                Err(error) => {
                    self.commands_failed += 1;
                    self.backend_event(format!("{action}: {error}"));
                }
            }
        }
    }

    /// A membership notice to every agreement replica.
    fn announce(&mut self, message: &Message) {
        for replica in 0..self.cluster.replica_count() as u32 {
            let to = NodeId::Replica(ReplicaId(replica));
            if let Some(frame) = self.endpoint.seal(to, message) {
                self.bus.send(to, Bytes::from(frame));
            }
        }
    }

    fn status(&self) -> ActivatorStatus {
        let instances = self.backend.instances();
        let names: BTreeMap<AppId, String> = (self.cluster.apps.iter())
            .map(|a| (a.id, a.name.clone()))
            .collect();
        let pools = (self.policy.status().into_iter())
            .map(|(app, pool)| PoolStatus {
                app: app.0,
                name: names.get(&app).cloned().unwrap_or_default(),
                epoch: pool.epoch,
                members: (pool.members.into_iter())
                    .map(|member| MemberStatus {
                        id: member.id.0,
                        instance: instances.get(&member.id).cloned(),
                        host: member.host,
                        state: member.state,
                    })
                    .collect(),
            })
            .collect();
        let mut events: Vec<Event> = (self.policy.events())
            .map(|(at, text)| Event {
                unix_ms: self.started_unix_ms + at.as_millis(),
                text: text.to_string(),
            })
            .chain(self.backend_events.iter().cloned())
            .collect();
        events.sort_by_key(|event| event.unix_ms);
        ActivatorStatus {
            pid: std::process::id(),
            backend: self.backend.name().to_string(),
            pools,
            events,
            wakes_received: self.wakes_received,
            faulty_received: self.faulty_received,
            commands_failed: self.commands_failed,
            rejected: reasons(&self.rejected),
            updated_unix_ms: unix_ms(),
        }
    }
}

/// A backend command's outcome with the member it concerned.
trait IntoAction<E> {
    fn into_action(self) -> (&'static str, Result<ExecutionId, E>);
}

impl<E> IntoAction<E> for (&'static str, ExecutionId, Result<(), E>) {
    fn into_action(self) -> (&'static str, Result<ExecutionId, E>) {
        let (action, member, result) = self;
        (action, result.map(|()| member))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ActivatorNodeError + '_ {
    move |source| ActivatorNodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Each app's members as configured: active, standbys to start, spare slots.
fn configured_members(cluster: &ClusterConfig) -> BTreeMap<AppId, Vec<Member>> {
    let mut members: BTreeMap<AppId, Vec<Member>> = BTreeMap::new();
    for execution in &cluster.executions {
        let state = match (execution.standby, execution.spare) {
            (_, true) => MemberState::Spare,
            (true, false) => MemberState::Starting,
            (false, false) => MemberState::Active,
        };
        members.entry(execution.app).or_default().push(Member {
            id: execution.id,
            host: execution.host.clone(),
            state,
        });
    }
    members
}

/// Accept control connections and hand each request to the main loop.
fn serve_control(
    listener: tokio::net::UnixListener,
    requests: mpsc::Sender<(ControlRequest, oneshot::Sender<ControlAnswer>)>,
) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let answer = match control::read_request(&mut stream).await {
                    None => ControlAnswer::Refused("not a control request".into()),
                    Some(request) => {
                        let (reply, answer) = oneshot::channel();
                        if requests.send((request, reply)).await.is_err() {
                            return;
                        }
                        match answer.await {
                            Ok(answer) => answer,
                            Err(_) => return,
                        }
                    }
                };
                control::write_answer(&mut stream, &answer).await;
            });
        }
    });
}

/// Run the activator of the cluster in `dir` with `backend` until `shutdown`. It starts
/// every configured execution replica that is not a spare slot; it leaves them running
/// when it stops (`zz down` stops them).
pub async fn run_activator_node<B: Backend>(
    dir: &Path,
    backend: B,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ActivatorNodeError> {
    zz_protocol::quic::install_crypto_provider();
    let (cluster, endpoint) = endpoint_for_activator(dir)?;
    let settings = cluster
        .activator
        .clone()
        .expect("endpoint_for_activator checked it");
    let policy = Policy::new(
        PolicyConfig {
            f: cluster.protocol.f,
            replica_count: cluster.replica_count(),
            quiet_micros: settings.quiet_ms * 1000,
            announce_micros: settings.announce_ms * 1000,
            join_grace_micros: cluster.protocol.newcomer_grace_micros(),
        },
        configured_members(&cluster),
    )
    .with_app_names(
        (cluster.apps.iter())
            .map(|app| (app.id, app.name.clone()))
            .collect(),
    );
    let cluster_dir = ClusterDir::new(dir);
    let run_dir = cluster_dir.run_dir();
    std::fs::create_dir_all(&run_dir).map_err(io_error(&run_dir))?;
    let socket_path = cluster_dir.activator_socket();
    let _ = std::fs::remove_file(&socket_path);
    let listener = tokio::net::UnixListener::bind(&socket_path).map_err(io_error(&socket_path))?;
    let (control_sender, mut control_requests) = mpsc::channel(CONTROL_QUEUE_MAX);
    serve_control(listener, control_sender);
    let (bus, mut inbox) = QuicBus::start_node(dir, &cluster, NodeId::Activator(LOCAL_ACTIVATOR))?;
    tracing::info!(address = %bus.local_addr(), backend = backend.name(), "activator started");
    let mut activator = Activator {
        policy,
        backend,
        endpoint,
        bus,
        started: Instant::now(),
        started_unix_ms: unix_ms(),
        backend_events: VecDeque::new(),
        wakes_received: 0,
        faulty_received: 0,
        commands_failed: 0,
        rejected: BTreeMap::new(),
        cluster,
    };
    let to_start: Vec<(ExecutionId, bool)> = (activator.cluster.executions.iter())
        .filter(|execution| !execution.spare)
        .map(|execution| (execution.id, execution.standby))
        .collect();
    for (member, standby) in to_start {
        if let Err(error) = activator.backend.start(member, standby).await {
            activator.commands_failed += 1;
            activator.backend_event(format!("start: {error}"));
        }
    }
    let status_path = cluster_dir.status_path(NodeId::Activator(LOCAL_ACTIVATOR));
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    let mut status_tick = tokio::time::interval(STATUS_FILE_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            frame = inbox.recv() => {
                let Some(frame) = frame else { break };
                activator.handle_frame(&frame);
                for _ in 1..FRAMES_PER_TURN_MAX {
                    let Ok(frame) = inbox.try_recv() else { break };
                    activator.handle_frame(&frame);
                }
            }
            _ = tick.tick() => activator.handle_tick().await,
            Some((request, reply)) = control_requests.recv() => {
                let answer = activator.handle_control(request);
                let _ = reply.send(answer);
            }
            _ = status_tick.tick() => {
                if let Err(error) = write_json(&status_path, &activator.status()) {
                    tracing::warn!(%error, "cannot write status file");
                }
            }
            () = &mut shutdown => break,
        }
        activator.carry_out().await;
    }
    let _ = write_json(&status_path, &activator.status());
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("activator stopped");
    Ok(())
}
