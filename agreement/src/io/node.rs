//! The agreement node: one replica driver over QUIC in a tokio process. It owns every piece
//! of I/O the core does not: the clock, the sockets, the record file and the status file.

use crate::core::{Replica, ReplicaConfig};
use crate::io::driver::{Delivery, ReplicaDriver};
use crate::io::storage::{FileStorage, StorageError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zz_protocol::config::{ConfigError, endpoint_for_replica};
use zz_protocol::fault_bus::{FaultSwitch, FaultyBus};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::run_dir::{InjectedFault, node_name};
use zz_protocol::status_file::{reasons, unix_ms, write_json};
use zz_protocol::{NodeId, ReplicaId, Time};

/// Frames handled in one go before the node looks at its timers again.
const FRAMES_PER_TURN_MAX: usize = 256;
/// How often the node rewrites its status file.
const STATUS_FILE_INTERVAL: Duration = Duration::from_millis(250);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("replica {id} has no signing key in its key file")]
    NoSigningKey { id: ReplicaId },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where a replica keeps its record file and status file inside the cluster directory.
pub fn records_path(dir: &Path, id: ReplicaId) -> PathBuf {
    dir.join("state").join(format!("replica-{}.records", id.0))
}

pub fn status_path(dir: &Path, id: ReplicaId) -> PathBuf {
    dir.join("run").join(format!("replica-{}.json", id.0))
}

/// What `run/replica-<i>.json` holds: a replica's progress and counters, for `zz status`
/// and tests.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub id: u32,
    pub pid: u32,
    pub view: u64,
    pub normal: bool,
    pub primary: bool,
    pub last_executed: u64,
    pub stable: u64,
    pub waiting: usize,
    pub batches_ordered: u64,
    pub requests_ordered: u64,
    pub view_changes_started: u64,
    pub state_transfers: u64,
    pub frames_received: u64,
    /// Messages the core dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Frames rejected before the core (decode, MAC, signature, certificate), by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Frames the transport dropped (full queues, unreachable peers, an injected mute).
    pub transport_dropped: u64,
    /// The fault injected with `zz inject`, if any.
    #[serde(default)]
    pub fault: Option<String>,
    pub updated_unix_ms: u64,
}

type NodeDriver = ReplicaDriver<FaultyBus<QuicBus>, FileStorage>;

fn write_status(dir: &Path, driver: &NodeDriver, fault: InjectedFault) -> Result<(), NodeError> {
    let replica = driver.replica();
    let counters = replica.counters();
    let status = NodeStatus {
        id: replica.id().0,
        pid: std::process::id(),
        view: replica.view().0,
        normal: replica.is_normal(),
        primary: replica.is_primary(),
        last_executed: replica.last_executed().0,
        stable: replica.stable_seq().0,
        waiting: replica.waiting_count(),
        batches_ordered: counters.batches_ordered,
        requests_ordered: counters.requests_ordered,
        view_changes_started: counters.view_changes_started,
        state_transfers: counters.state_transfers,
        frames_received: driver.counters().frames_received,
        dropped: (counters.dropped.iter())
            .map(|(reason, count)| (reason.to_string(), *count))
            .collect(),
        rejected: reasons(&driver.counters().rejected),
        transport_dropped: zz_protocol::bus::MessageBus::dropped_frames(driver.bus()),
        fault: (fault != InjectedFault::Honest).then(|| fault.name().to_string()),
        updated_unix_ms: unix_ms(),
    };
    let path = status_path(dir, replica.id());
    write_json(&path, &status).map_err(|source| NodeError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn create_dir(path: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(path).map_err(|source| NodeError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Show the fault `zz inject` wrote for this replica (mute or slow), if it changed.
fn apply_fault(dir: &Path, id: ReplicaId, switch: &FaultSwitch, current: &mut InjectedFault) {
    let fault = InjectedFault::read(dir, &node_name(NodeId::Replica(id)));
    if fault != *current {
        tracing::warn!(replica = %id, fault = fault.name(), "injected fault");
        *current = fault;
        switch.set_fault(fault);
    }
}

/// Run replica `id` of the cluster in `dir` until `shutdown` completes. A replica that
/// finds records from an earlier run restores itself from them.
pub async fn run_agreement_node(
    dir: &Path,
    id: ReplicaId,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    zz_protocol::quic::install_crypto_provider();
    let (cluster, endpoint) = endpoint_for_replica(dir, id)?;
    let signing_key = endpoint
        .keys()
        .signing_key
        .clone()
        .ok_or(NodeError::NoSigningKey { id })?;
    create_dir(&dir.join("state"))?;
    create_dir(&dir.join("run"))?;
    let (storage, records) = FileStorage::open(&records_path(dir, id))?;
    let started = Instant::now();
    let config = ReplicaConfig {
        id,
        params: cluster.protocol.clone(),
        signing_key,
        wall_clock_at_zero_ms: unix_ms(),
        seed: unix_ms() ^ ((std::process::id() as u64) << 32),
    };
    let now = || Time(started.elapsed().as_micros() as u64);
    let restored = !records.is_empty();
    let replica = if restored {
        Replica::restore(config, records.clone(), now())
    } else {
        Replica::new(config, now())
    };
    let (bus, mut inbox) = QuicBus::start_node(dir, &cluster, NodeId::Replica(id))?;
    tracing::info!(
        replica = %id,
        address = %bus.local_addr(),
        restored,
        view = %replica.view(),
        stable = %replica.stable_seq(),
        "agreement replica started"
    );
    let bus = FaultyBus::new(bus);
    let switch = bus.switch();
    let mut fault = InjectedFault::Honest;
    apply_fault(dir, id, &switch, &mut fault);
    // `zz inject` sends SIGUSR2 after writing the fault file, so the fault shows at once.
    let mut injected = zz_protocol::run_dir::fault_signal().map_err(|source| NodeError::Io {
        path: "SIGUSR2 handler".into(),
        source,
    })?;
    let mut driver = ReplicaDriver::new(replica, endpoint, bus, storage)
        .with_execution_groups(cluster.execution_groups(), cluster.active_groups())
        .with_restored_orders(&records);
    let mut status_tick = tokio::time::interval(STATUS_FILE_INTERVAL);
    let mut ordered_since_log = 0u64;
    tokio::pin!(shutdown);
    loop {
        let deadline = driver
            .poll_timeout()
            .map(|at| started + Duration::from_micros(at.as_micros()))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            frame = inbox.recv() => {
                let Some(frame) = frame else { break };
                driver.handle_frame(now(), &frame);
                for _ in 1..FRAMES_PER_TURN_MAX {
                    let Ok(frame) = inbox.try_recv() else { break };
                    driver.handle_frame(now(), &frame);
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => driver.handle_timeout(now()),
            Some(()) = injected.recv() => apply_fault(dir, id, &switch, &mut fault),
            _ = status_tick.tick() => {
                apply_fault(dir, id, &switch, &mut fault);
                if let Err(error) = write_status(dir, &driver, fault) {
                    tracing::warn!(%error, "cannot write status file");
                }
                if ordered_since_log > 0 {
                    tracing::debug!(
                        replica = %id,
                        batches = ordered_since_log,
                        last_executed = %driver.replica().last_executed(),
                        "ordered"
                    );
                    ordered_since_log = 0;
                }
            }
            () = &mut shutdown => break,
        }
        for delivery in driver.take_deliveries() {
            match delivery {
                Delivery::Order(_) => ordered_since_log += 1,
                // The driver already sent it to the app's execution replicas.
                Delivery::AppOrder(_) => {}
                Delivery::Skipped(to) => {
                    tracing::info!(replica = %id, %to, "skipped to checkpoint")
                }
            }
        }
    }
    let _ = write_status(dir, &driver, fault);
    tracing::info!(replica = %id, "agreement replica stopped");
    Ok(())
}
