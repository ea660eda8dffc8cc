//! The execution node: one execution replica's driver in the node harness (QUIC, the
//! clock, injected faults, the status file). What is its own: SIGUSR1, on which a thawed
//! replica joins from the stable checkpoint; its state store (`state/execution-<i>.redb`,
//! see [`crate::durable`]), restored from at start and written by a thread whose commits
//! come back through the side channel; and what its status file shows.

use crate::app::App;
use crate::core::{ExecutionConfig, ExecutionReplica};
use crate::driver::ExecutionDriver;
use crate::durable::CheckpointSaved;
use crate::durable::startup::{LostState, open_durable};
use crate::durable::writer::DiskSink;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tokio::sync::mpsc;
use zz_cluster::Fault;
use zz_cluster::fault_bus::FaultyBus;
use zz_cluster::harness::{Harness, NodeError, NodeLoop, StatusContext};
use zz_cluster::status_file::{reasons, unix_ms};
use zz_protocol::config::endpoint_for_execution;
use zz_protocol::quic::QuicBus;
use zz_protocol::{ExecutionId, NodeId, Seq, Time};
use zz_state_fetch::{ObjectStore, StateParams};

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
    /// The checkpoint this replica restored from its state store at start, if any.
    #[serde(default)]
    pub restored_from: Option<u64>,
    /// Buckets of that checkpoint refused because their objects failed their leaf (fetched
    /// from peers instead).
    #[serde(default)]
    pub disk_buckets_refused: u64,
    /// State stores found damaged at start and moved aside (the state was fetched instead).
    #[serde(default)]
    pub disk_stores_set_aside: u64,
    /// Why a replica that started active fetched the agreed state rather than restoring
    /// it: its store was `missing` or `empty` (and the app past its first stable
    /// checkpoint), `damaged` (moved aside), or its checkpoint matched no root
    /// (`root-mismatch`). None when it restored, or started with the app.
    #[serde(default)]
    pub lost_state: Option<String>,
    /// The stable checkpoint the replica last started over from, its state fetched from
    /// peers (a woken standby, or a replica whose own state was lost or behind).
    #[serde(default)]
    pub started_from_stable: Option<u64>,
    /// Milliseconds reading and checking the restored checkpoint took.
    #[serde(default)]
    pub restore_ms: Option<u64>,
    /// The latest checkpoint in the state store (written, or restored from).
    #[serde(default)]
    pub last_durable: Option<u64>,
    /// Checkpoint writes that failed.
    #[serde(default)]
    pub checkpoint_save_failures: u64,
    /// Checkpoints not written because the state was still being fetched; their reports
    /// waited for the first checkpoint written whole.
    #[serde(default)]
    pub checkpoints_awaiting_state: u64,
    pub dropped: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub updated_unix_ms: u64,
}

/// Why an execution replica could not start, beyond what every node kind meets.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("execution replica {id} is not in the cluster configuration")]
    Unknown { id: ExecutionId },
    #[error("bucket_bits: {problem}")]
    BucketBits { problem: String },
}

/// Inputs of the node's own: the activator woke it (SIGUSR1, after thawing it), or the
/// writer thread committed a checkpoint.
enum Side {
    Woken,
    CheckpointSaved(CheckpointSaved),
}

/// What the state store held at start, for a replica that started active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum StoreAtStart {
    /// A standby: its store is not read.
    #[default]
    NotRead,
    /// No file.
    Missing,
    /// A file without a checkpoint.
    Empty,
    Restored,
    /// Moved aside.
    Damaged,
    RootMismatch,
}

/// How the replica started from its state store.
#[derive(Clone, Copy, Debug, Default)]
struct DiskStart {
    found: StoreAtStart,
    restored_from: Option<Seq>,
    buckets_refused: u64,
    stores_set_aside: u64,
    restore_ms: Option<u64>,
}

/// Side inputs queued at most; the writer sends one per commit.
const SIDE_INPUTS_MAX: usize = 16;

struct ExecutionNode {
    id: ExecutionId,
    driver: ExecutionDriver<FaultyBus<QuicBus>, DiskSink>,
    disk: DiskStart,
}

impl ExecutionNode {
    /// See [`ExecutionStatus::lost_state`]. A missing or empty store counts only once the
    /// replica started from a stable checkpoint: on a new platform every store is empty.
    fn lost_state(&self) -> Option<&'static str> {
        let fetched = self.driver.started_from().is_some_and(|seq| seq > Seq(0));
        match self.disk.found {
            StoreAtStart::Missing if fetched => Some("missing"),
            StoreAtStart::Empty if fetched => Some("empty"),
            StoreAtStart::Damaged => Some("damaged"),
            StoreAtStart::RootMismatch => Some("root-mismatch"),
            _ => None,
        }
    }
}

impl NodeLoop for ExecutionNode {
    type Status = ExecutionStatus;
    type Side = Side;

    fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.driver.handle_frame(now, frame);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.driver.poll_timeout()
    }

    async fn handle_timeout(&mut self, now: Time) {
        self.driver.handle_timeout(now);
    }

    /// Woken: join from the latest stable checkpoint rather than from whatever it held.
    fn handle_side(&mut self, now: Time, input: Side) {
        match input {
            Side::Woken => {
                tracing::info!(execution = %self.id, "woken: joining from the stable checkpoint");
                self.driver.join(now);
            }
            Side::CheckpointSaved(saved) => self.driver.handle_checkpoint_saved(saved),
        }
    }

    /// Wrong replies and state show in the driver; mute and slow on the bus.
    fn handle_fault(&mut self, fault: Fault) {
        let shown = match fault.is_execution_only() {
            true => fault,
            false => Fault::Honest,
        };
        self.driver.set_fault(shown);
    }

    async fn end_turn(&mut self, _now: Time) {
        // Reports go to the agreement replicas as they are made; here they are only
        // drained so they do not pile up.
        self.driver.take_reports();
    }

    fn status(&self, context: &StatusContext) -> ExecutionStatus {
        let replica = self.driver.replica();
        let counters = replica.counters();
        ExecutionStatus {
            id: self.id.0,
            app: replica.app().0,
            pid: context.pid,
            last_executed: replica.last_executed().0,
            last_checkpoint: replica.store().last_checkpoint().map(|(seq, _)| seq.0),
            last_stable: replica.store().latest_stable().map(|seq| seq.0),
            requests_executed: counters.requests_executed,
            replies_resent: counters.replies_resent,
            joining: self.driver.is_joining(),
            missing_buckets: replica.store().missing_count(),
            fault: context.fault_name(),
            restored_from: self.disk.restored_from.map(|seq| seq.0),
            disk_buckets_refused: self.disk.buckets_refused,
            disk_stores_set_aside: self.disk.stores_set_aside,
            lost_state: self.lost_state().map(str::to_string),
            started_from_stable: self.driver.started_from().map(|seq| seq.0),
            restore_ms: self.disk.restore_ms,
            last_durable: (self.driver.durability().last_saved)
                .or(self.disk.restored_from)
                .map(|seq| seq.0),
            checkpoint_save_failures: self.driver.durability().save_failures,
            checkpoints_awaiting_state: self.driver.durability().checkpoints_awaiting_state,
            dropped: reasons(&counters.dropped),
            rejected: reasons(&self.driver.counters().rejected),
            updated_unix_ms: context.unix_ms,
        }
    }
}

/// Run execution replica `id` of the cluster in `dir`, executing `app` from `genesis`
/// (the empty state when None), until `shutdown`; as a `standby` (which the activator
/// decides, not the configuration) it loads nothing and waits to be woken.
pub async fn run_execution_node(
    dir: &Path,
    id: ExecutionId,
    app: Box<dyn App>,
    genesis: Option<crate::core::Genesis>,
    standby: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut harness = Harness::new(dir, NodeId::Execution(id))?;
    let (cluster, endpoint) = endpoint_for_execution(dir, id)?;
    let member =
        (cluster.execution(id)).ok_or_else(|| NodeError::start(StartError::Unknown { id }))?;
    let config = ExecutionConfig::for_app(member.app, &cluster.protocol);
    let app_config = cluster.apps.iter().find(|app| app.id == member.app);
    let params = match app_config.and_then(|app| app.bucket_bits) {
        None => StateParams::default(),
        Some(bits) => StateParams::new(bits).map_err(|error| {
            NodeError::start(StartError::BucketBits {
                problem: error.to_string(),
            })
        })?,
    };
    let eager =
        app_config.is_some_and(|app| app.state_fetch == zz_protocol::config::StateFetch::Eager);
    // A standby loads nothing: woken, it joins from the stable checkpoint anyway. A
    // member woken before a restart is started active, and loads its store like any.
    let state_dir = harness.dir().node_state_dir(NodeId::Execution(id));
    std::fs::create_dir_all(&state_dir).map_err(NodeError::io(state_dir.display()))?;
    let path = harness.dir().execution_store_path(id);
    let existed = path.exists();
    let durable = open_durable(&path, params, !standby, unix_ms()).map_err(NodeError::start)?;
    let mut disk = DiskStart::default();
    let joins = durable.lost.is_some() && !standby;
    if !standby {
        disk.found = match (&durable.lost, &durable.restored) {
            (Some(LostState::SetAside { .. }), _) => StoreAtStart::Damaged,
            (Some(LostState::RootMismatch(_)), _) => StoreAtStart::RootMismatch,
            (None, Some(_)) => StoreAtStart::Restored,
            (None, None) if existed => StoreAtStart::Empty,
            (None, None) => StoreAtStart::Missing,
        };
    }
    if let Some(LostState::SetAside { .. }) = &durable.lost {
        disk.stores_set_aside = 1;
    }
    if let Some(LostState::RootMismatch(_)) = &durable.lost {
        disk.buckets_refused = params.bucket_count() as u64;
    }
    let (store, executed, base) = match durable.restored {
        Some(restored) => {
            disk.restored_from = Some(restored.seq);
            disk.buckets_refused = restored.refused.len() as u64;
            disk.restore_ms = Some(restored.load_micros / 1000);
            let base = restored.store.snapshot(restored.seq).cloned();
            (restored.store, restored.seq, base)
        }
        None => (ObjectStore::new(params), Seq(0), None),
    };
    let mut replica =
        ExecutionReplica::new(config, app, store, executed).fetching_whole_state_first(eager);
    if let Some(genesis) = genesis {
        // Built now only by a replica that starts active from nothing; others keep it for
        // a restart before the first checkpoint.
        let apply_now = !standby && disk.restored_from.is_none() && !joins;
        replica = replica.with_genesis(genesis, apply_now);
    }
    let (bus, inbox) = harness.start_bus(&cluster)?;
    tracing::info!(execution = %id, app = %member.app, address = %bus.inner().local_addr(), "execution replica started");
    let peers = (cluster.executions_of(member.app).into_iter())
        .filter(|peer| *peer != id)
        .collect();
    let (side_inputs, side) = mpsc::channel(SIDE_INPUTS_MAX);
    let saved = side_inputs.clone();
    let notify = move |done: CheckpointSaved| {
        // The node has stopped when nobody receives: the commit happened all the same.
        let _ = saved.blocking_send(Side::CheckpointSaved(done));
    };
    let sink =
        DiskSink::start(durable.disk, base, notify).map_err(NodeError::io("checkpoint writer"))?;
    let mut driver = ExecutionDriver::new(replica, endpoint, bus, cluster.replica_count() as u32)
        .with_peers(peers)
        .with_checkpoint_sink(sink);
    if joins {
        driver.join(harness.now());
    } else if !standby {
        // Restored, or from genesis with a store that held no checkpoint: that is a new
        // platform, or a platform whose app ran on and this replica's store is lost. Asking
        // for the orders after what it holds tells them apart: if a checkpoint is stable
        // past it, f+1 agreement replicas name it and the replica starts over from it,
        // fetching the state; else the orders come and it replays them.
        driver.resume(harness.now());
    }
    // The activator sends SIGUSR1 when it wakes this replica (after thawing it).
    let mut woken = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(NodeError::io("SIGUSR1 handler"))?;
    tokio::spawn(async move {
        while woken.recv().await.is_some() {
            if side_inputs.send(Side::Woken).await.is_err() {
                break;
            }
        }
    });
    let mut node = ExecutionNode { id, driver, disk };
    harness.run(&mut node, inbox, Some(side), shutdown).await?;
    // The last checkpoint handed to the writer is committed before the process ends.
    node.driver.sink_mut().finish();
    tracing::info!(execution = %id, "execution replica stopped");
    Ok(())
}
