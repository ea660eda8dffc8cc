//! The execution node: one execution replica over QUIC in a tokio process, with its status
//! file. It owns the I/O the core does not: sockets, the clock, files.

use crate::app::App;
use crate::core::{ExecutionConfig, ExecutionReplica};
use crate::driver::ExecutionDriver;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use zz_cluster::fault_bus::{FaultSwitch, FaultyBus};
use zz_cluster::status_file::{reasons, unix_ms, write_json};
use zz_cluster::{ClusterDir, Fault};
use zz_protocol::config::{ConfigError, endpoint_for_execution};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::{ExecutionId, NodeId, Seq, Time};
use zz_state_fetch::{ObjectStore, StateParams};

/// Frames handled in one go before the node looks at its timers again.
const FRAMES_PER_TURN_MAX: usize = 256;
/// How often the node sends bucket fetches (lazy and background).
const FETCH_INTERVAL: Duration = Duration::from_millis(10);
/// How long a bucket fetch waits for an answer before the next replica is asked.
const FETCH_RETRY: Duration = Duration::from_millis(200);
/// How often the node rewrites its status file.
const STATUS_FILE_INTERVAL: Duration = Duration::from_millis(250);

/// Why an execution node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionNodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("bucket_bits: {problem}")]
    State { problem: String },
    #[error("execution replica {id} is not in the cluster configuration")]
    Unknown { id: ExecutionId },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What `run/execution-<i>.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutionStatus {
    pub id: u32,
    pub app: u32,
    pub pid: u32,
    pub last_executed: u64,
    pub last_checkpoint: Option<u64>,
    /// The last checkpoint f+1 agreement replicas said every active replica agreed on.
    pub last_stable: Option<u64>,
    pub requests_executed: u64,
    pub replies_resent: u64,
    /// Waiting for f+1 agreement replicas to name the stable checkpoint to start from.
    #[serde(default)]
    pub joining: bool,
    /// Buckets of the pinned checkpoint not fetched yet (0 once the state is whole).
    #[serde(default)]
    pub missing_buckets: usize,
    /// The fault injected with `zz inject`, if any.
    #[serde(default)]
    pub fault: Option<String>,
    pub dropped: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub updated_unix_ms: u64,
}

fn write_status<B: zz_protocol::bus::MessageBus>(
    dir: &Path,
    id: ExecutionId,
    driver: &ExecutionDriver<B>,
    fault: Fault,
) -> Result<(), ExecutionNodeError> {
    let replica = driver.replica();
    let counters = replica.counters();
    let status = ExecutionStatus {
        id: id.0,
        app: replica.app().0,
        pid: std::process::id(),
        last_executed: replica.last_executed().0,
        last_checkpoint: replica.store().last_checkpoint().map(|(seq, _)| seq.0),
        last_stable: replica.store().latest_stable().map(|seq| seq.0),
        requests_executed: counters.requests_executed,
        replies_resent: counters.replies_resent,
        joining: driver.is_joining(),
        missing_buckets: replica.store().missing_count(),
        fault: (fault != Fault::Honest).then(|| fault.to_string()),
        dropped: reasons(&counters.dropped),
        rejected: reasons(&driver.counters().rejected),
        updated_unix_ms: unix_ms(),
    };
    let path = ClusterDir::new(dir).status_path(NodeId::Execution(id));
    write_json(&path, &status).map_err(|source| ExecutionNodeError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Show the fault `zz inject` wrote for this node, if it changed: mute and slow on the
/// bus, wrong replies and state in the driver.
fn apply_fault<B: zz_protocol::bus::MessageBus>(
    dir: &Path,
    id: ExecutionId,
    driver: &mut ExecutionDriver<B>,
    switch: &FaultSwitch,
    current: &mut Fault,
) {
    let fault = Fault::read(&ClusterDir::new(dir), NodeId::Execution(id));
    if fault == *current {
        return;
    }
    tracing::warn!(execution = %id, fault = fault.name(), "injected fault");
    *current = fault;
    switch.set_fault(fault);
    driver.set_fault(match fault {
        Fault::CorruptReply | Fault::CorruptState => fault,
        _ => Fault::Honest,
    });
}

/// Run execution replica `id` of the cluster in `dir`, executing `app` from `genesis`
/// (the empty state when None), until `shutdown`.
pub async fn run_execution_node(
    dir: &Path,
    id: ExecutionId,
    app: Box<dyn App>,
    genesis: Option<crate::core::Genesis>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ExecutionNodeError> {
    zz_protocol::quic::install_crypto_provider();
    let (cluster, endpoint) = endpoint_for_execution(dir, id)?;
    let member = cluster
        .execution(id)
        .ok_or(ExecutionNodeError::Unknown { id })?;
    let run_dir = ClusterDir::new(dir).run_dir();
    std::fs::create_dir_all(&run_dir).map_err(|source| ExecutionNodeError::Io {
        path: run_dir.display().to_string(),
        source,
    })?;
    let config = ExecutionConfig {
        app: member.app,
        f: cluster.protocol.f,
        agreement_replicas: cluster.replica_count(),
        checkpoint_interval: cluster.protocol.checkpoint_interval,
        window: cluster.protocol.window * 4,
    };
    let app_config = cluster.apps.iter().find(|app| app.id == member.app);
    let params = match app_config.and_then(|app| app.bucket_bits) {
        None => StateParams::default(),
        Some(bits) => StateParams::new(bits).map_err(|error| ExecutionNodeError::State {
            problem: error.to_string(),
        })?,
    };
    let store = ObjectStore::new(params);
    let eager = (cluster.apps.iter())
        .find(|app| app.id == member.app)
        .is_some_and(|app| app.state_fetch == zz_protocol::config::StateFetch::Eager);
    let mut replica =
        ExecutionReplica::new(config, app, store, Seq(0)).fetching_whole_state_first(eager);
    if let Some(genesis) = genesis {
        // A standby builds it only if it ever restarts before the first checkpoint.
        replica = replica.with_genesis(genesis, !member.standby);
    }
    let (bus, mut inbox) = QuicBus::start_node(dir, &cluster, NodeId::Execution(id))?;
    tracing::info!(execution = %id, app = %member.app, address = %bus.local_addr(), "execution replica started");
    let bus = FaultyBus::new(bus);
    let switch = bus.switch();
    let mut fault = Fault::Honest;
    let peers = (cluster.executions_of(member.app).into_iter())
        .filter(|peer| *peer != id)
        .collect();
    let mut driver = ExecutionDriver::new(replica, endpoint, bus, cluster.replica_count() as u32)
        .with_peers(peers);
    let mut status_tick = tokio::time::interval(STATUS_FILE_INTERVAL);
    let mut fetch_tick = tokio::time::interval(FETCH_INTERVAL);
    // The activator sends SIGUSR1 when it wakes this replica (after thawing it): it then
    // joins from the latest stable checkpoint rather than from whatever it held.
    let mut woken = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|source| ExecutionNodeError::Io {
        path: "SIGUSR1 handler".into(),
        source,
    })?;
    // `zz inject` sends SIGUSR2 after writing the fault file, so the fault shows at once.
    let mut injected =
        zz_cluster::fault::fault_signal().map_err(|source| ExecutionNodeError::Io {
            path: "SIGUSR2 handler".into(),
            source,
        })?;
    apply_fault(dir, id, &mut driver, &switch, &mut fault);
    let started = std::time::Instant::now();
    let now = || Time(started.elapsed().as_micros() as u64);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(()) = woken.recv() => {
                tracing::info!(execution = %id, "woken: joining from the stable checkpoint");
                driver.join();
            }
            _ = fetch_tick.tick() => {
                driver.fetch_buckets(now(), FETCH_RETRY.as_micros() as u64);
            }
            frame = inbox.recv() => {
                let Some(frame) = frame else { break };
                driver.handle_frame(&frame);
                for _ in 1..FRAMES_PER_TURN_MAX {
                    let Ok(frame) = inbox.try_recv() else { break };
                    driver.handle_frame(&frame);
                }
                // Reports go to the agreement replicas as they are made; here they are
                // only drained so they do not pile up.
                driver.take_reports();
                // Ask at once for buckets execution now waits on, and keep the
                // background pipeline full between ticks (answers free room).
                driver.fetch_buckets(now(), FETCH_RETRY.as_micros() as u64);
            }
            Some(()) = injected.recv() => apply_fault(dir, id, &mut driver, &switch, &mut fault),
            _ = status_tick.tick() => {
                apply_fault(dir, id, &mut driver, &switch, &mut fault);
                if let Err(error) = write_status(dir, id, &driver, fault) {
                    tracing::warn!(%error, "cannot write status file");
                }
            }
            () = &mut shutdown => break,
        }
    }
    let _ = write_status(dir, id, &driver, fault);
    tracing::info!(execution = %id, "execution replica stopped");
    Ok(())
}
