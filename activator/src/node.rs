//! The activator node (`zz node activator`): the host's replica control daemon. It starts
//! the host's execution replicas through a [`Backend`], listens over QUIC for agreement
//! replicas' `Wake` and `Faulty` alarms, feeds them to the [`Policy`], carries out its
//! commands, announces memberships, answers `zz scale` on its control socket and writes
//! `run/activator.json` for `zz status`. It owns the I/O; the policy decides.

use crate::backend::Backend;
use crate::control::{self, ControlAnswer, ControlRequest};
use crate::driver::{ActivatorDriver, ActivatorSetup};
use crate::policy::{Member, MemberState, PolicyConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use zz_protocol::config::{ClusterConfig, ConfigError, LOCAL_ACTIVATOR, endpoint_for_activator};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::run_dir::ACTIVATOR_SOCKET;
use zz_protocol::status_file::{unix_ms, write_json};
use zz_protocol::{AppId, NodeId, Time};

pub use crate::status::{ActivatorStatus, Event, MemberStatus, PoolStatus};

/// Frames handled in one go before the node looks at its timers again.
const FRAMES_PER_TURN_MAX: usize = 256;
/// How often the node rewrites its status file.
const STATUS_FILE_INTERVAL: Duration = Duration::from_millis(250);
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

/// Where the activator writes its status inside the cluster directory.
pub fn activator_status_path(dir: &Path) -> PathBuf {
    dir.join("run").join("activator.json")
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
        wall_clock_at_zero_ms: unix_ms(),
    };
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir).map_err(io_error(&run_dir))?;
    let socket_path = dir.join(ACTIVATOR_SOCKET);
    let _ = std::fs::remove_file(&socket_path);
    let listener = tokio::net::UnixListener::bind(&socket_path).map_err(io_error(&socket_path))?;
    let (control_sender, mut control_requests) = mpsc::channel(CONTROL_QUEUE_MAX);
    serve_control(listener, control_sender);
    let (bus, mut inbox) = QuicBus::start_node(dir, &cluster, NodeId::Activator(LOCAL_ACTIVATOR))?;
    tracing::info!(address = %bus.local_addr(), backend = backend.name(), "activator started");
    let started = Instant::now();
    let now = || Time(started.elapsed().as_micros() as u64);
    let mut driver = ActivatorDriver::new(setup, endpoint, bus, backend);
    driver.start_members(now).await;
    let status_path = activator_status_path(dir);
    let write_status = |driver: &ActivatorDriver<QuicBus, B>| {
        write_json(&status_path, &driver.status(std::process::id(), unix_ms()))
    };
    let mut status_tick = tokio::time::interval(STATUS_FILE_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        let deadline = started + Duration::from_micros(driver.poll_timeout().as_micros());
        tokio::select! {
            frame = inbox.recv() => {
                let Some(frame) = frame else { break };
                driver.handle_frame(now(), &frame);
                for _ in 1..FRAMES_PER_TURN_MAX {
                    let Ok(frame) = inbox.try_recv() else { break };
                    driver.handle_frame(now(), &frame);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => driver.handle_timeout(now()).await,
            Some((request, reply)) = control_requests.recv() => {
                let answer = driver.handle_control(now(), request);
                let _ = reply.send(answer);
            }
            _ = status_tick.tick() => {
                if let Err(error) = write_status(&driver) {
                    tracing::warn!(%error, "cannot write status file");
                }
            }
            () = &mut shutdown => break,
        }
        driver.carry_out(now).await;
    }
    let _ = write_status(&driver);
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("activator stopped");
    Ok(())
}
