//! The activator node (`zz node activator`): the host's replica control daemon. It runs
//! the [`ActivatorDriver`] in the node harness (QUIC, the clock, the status file
//! `run/activator.json`); what is its own is the control socket `zz scale` talks to,
//! whose requests reach the driver through the harness's side channel.

use crate::backend::Backend;
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::driver::{ActivatorDriver, ActivatorSetup};
use crate::policy::{Member, MemberState, PolicyConfig, PoolsRecord};
use crate::pools_file::{PoolsFile, PoolsFileError};
use std::collections::BTreeMap;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};
use zz_cluster::ClusterDir;
use zz_cluster::harness::{Harness, NodeError, NodeLoop, StatusContext};
use zz_protocol::config::{ClusterConfig, LOCAL_ACTIVATOR, endpoint_for_activator};
use zz_protocol::quic::QuicBus;
use zz_protocol::{AppId, ExecutionId, NodeId, Time};

pub use crate::status::{ActivatorStatus, Event, MemberStatus, PoolStatus};

/// Control requests waiting for the main loop at most.
const CONTROL_QUEUE_MAX: usize = 16;

/// A control request and where its answer goes.
type Control = (ControlRequest, oneshot::Sender<ControlAnswer>);

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

/// The activator's record in the cluster directory `dir` (`state/activator.pools`),
/// checked against `cluster`; None on the platform's first start. `zz up` reads it too, to
/// refuse a record the activator would refuse before starting anything.
pub fn read_record(
    dir: &ClusterDir,
    cluster: &ClusterConfig,
) -> Result<Option<PoolsRecord>, PoolsFileError> {
    let path = dir.activator_pools_path();
    let Some(record) = PoolsFile::new(&path).load()? else {
        return Ok(None);
    };
    let configured = (configured_members(cluster).into_iter())
        .map(|(app, members)| {
            let mut ids: Vec<ExecutionId> = members.iter().map(|member| member.id).collect();
            ids.sort();
            (app, ids)
        })
        .collect();
    record
        .check(&configured)
        .map_err(|mismatch| PoolsFileError::Mismatch {
            path,
            problem: mismatch.to_string(),
        })?;
    Ok(Some(record))
}

/// Accept control connections and hand each request to the main loop.
fn serve_control(listener: tokio::net::UnixListener, requests: mpsc::Sender<Control>) {
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

struct ActivatorNode<B, C> {
    driver: ActivatorDriver<QuicBus, B, PoolsFile>,
    clock: C,
}

impl<B: Backend, C: Fn() -> Time + Copy> NodeLoop for ActivatorNode<B, C> {
    type Status = ActivatorStatus;
    type Side = Control;

    fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.driver.handle_frame(now, frame);
    }

    fn poll_timeout(&self) -> Option<Time> {
        Some(self.driver.poll_timeout())
    }

    async fn handle_timeout(&mut self, now: Time) {
        self.driver.handle_timeout(now).await;
    }

    fn handle_side(&mut self, now: Time, (request, reply): Control) {
        let _ = reply.send(self.driver.handle_control(now, request));
    }

    async fn end_turn(&mut self, _now: Time) {
        self.driver.carry_out(self.clock).await;
    }

    fn status(&self, context: &StatusContext) -> ActivatorStatus {
        self.driver.status(context.pid, context.unix_ms)
    }
}

/// Run the activator of the cluster in `dir` with `backend` until `shutdown`. It starts
/// the execution replicas as its record (`state/activator.pools`) has them, or as
/// configured on the platform's first start: actives running, standbys paused, spare
/// slots not at all; it leaves them running when it stops (`zz down` stops them). A
/// record it cannot read, or one of another configuration, stops it at start-up.
pub async fn run_activator_node<B: Backend>(
    dir: &Path,
    backend: B,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let harness = Harness::new(dir, NodeId::Activator(LOCAL_ACTIVATOR))?;
    let (cluster, endpoint) = endpoint_for_activator(dir)?;
    let record = read_record(harness.dir(), &cluster).map_err(NodeError::start)?;
    let pools_file = PoolsFile::new(harness.dir().activator_pools_path());
    let settings = cluster
        .activator
        .clone()
        .expect("endpoint_for_activator checked it");
    let setup = ActivatorSetup {
        policy: PolicyConfig {
            f: cluster.protocol.f,
            replica_count: cluster.replica_count(),
            quiet_micros: settings.quiet_ms * 1000,
            announce_micros: settings.announce_ms * 1000,
            join_grace_micros: cluster.protocol.newcomer_grace_micros(),
        },
        pools: configured_members(&cluster),
        app_names: (cluster.apps.iter())
            .map(|app| (app.id, app.name.clone()))
            .collect(),
        wall_clock_at_zero_ms: harness.wall_clock_at_zero_ms(),
    };
    let (bus, inbox) = harness.start_plain_bus(&cluster)?;
    tracing::info!(address = %bus.local_addr(), backend = backend.name(), "activator started");
    let clock = harness.clock();
    let mut driver =
        ActivatorDriver::new(setup, endpoint, bus, backend).with_pool_store(pools_file);
    if let Some(record) = record {
        (driver.restore(&record)).expect("read_record checked it against this configuration");
        tracing::info!("started from the activator's record of who is active");
    }
    let socket_path = harness.dir().activator_socket();
    let _ = std::fs::remove_file(&socket_path);
    let listener = tokio::net::UnixListener::bind(&socket_path)
        .map_err(NodeError::io(socket_path.display()))?;
    let (control_sender, control_requests) = mpsc::channel(CONTROL_QUEUE_MAX);
    serve_control(listener, control_sender);
    driver.start_members(clock).await;
    let mut node = ActivatorNode { driver, clock };
    let result = harness
        .run(&mut node, inbox, Some(control_requests), shutdown)
        .await;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("activator stopped");
    result
}
