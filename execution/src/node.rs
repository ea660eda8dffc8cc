//! The execution node: one execution replica's driver in the node harness (QUIC, the
//! clock, injected faults, the status file). What is its own: SIGUSR1, on which a thawed
//! replica joins from the stable checkpoint, and what its status file shows.

use crate::app::App;
use crate::core::{ExecutionConfig, ExecutionReplica};
use crate::driver::ExecutionDriver;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tokio::sync::mpsc;
use zz_cluster::Fault;
use zz_cluster::fault_bus::FaultyBus;
use zz_cluster::harness::{Harness, NodeError, NodeLoop, StatusContext};
use zz_cluster::status_file::reasons;
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

/// The activator woke this replica (SIGUSR1, after thawing it).
struct Woken;

struct ExecutionNode {
    id: ExecutionId,
    driver: ExecutionDriver<FaultyBus<QuicBus>>,
}

impl NodeLoop for ExecutionNode {
    type Status = ExecutionStatus;
    type Side = Woken;

    fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.driver.handle_frame(now, frame);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.driver.poll_timeout()
    }

    async fn handle_timeout(&mut self, now: Time) {
        self.driver.handle_timeout(now);
    }

    /// Join from the latest stable checkpoint rather than from whatever it held.
    fn handle_side(&mut self, now: Time, Woken: Woken) {
        tracing::info!(execution = %self.id, "woken: joining from the stable checkpoint");
        self.driver.join(now);
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
            dropped: reasons(&counters.dropped),
            rejected: reasons(&self.driver.counters().rejected),
            updated_unix_ms: context.unix_ms,
        }
    }
}

/// Run execution replica `id` of the cluster in `dir`, executing `app` from `genesis`
/// (the empty state when None), until `shutdown`.
pub async fn run_execution_node(
    dir: &Path,
    id: ExecutionId,
    app: Box<dyn App>,
    genesis: Option<crate::core::Genesis>,
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
    let store = ObjectStore::new(params);
    let mut replica =
        ExecutionReplica::new(config, app, store, Seq(0)).fetching_whole_state_first(eager);
    if let Some(genesis) = genesis {
        // A standby builds it only if it ever restarts before the first checkpoint.
        replica = replica.with_genesis(genesis, !member.standby);
    }
    let (bus, inbox) = harness.start_bus(&cluster)?;
    tracing::info!(execution = %id, app = %member.app, address = %bus.inner().local_addr(), "execution replica started");
    let peers = (cluster.executions_of(member.app).into_iter())
        .filter(|peer| *peer != id)
        .collect();
    let driver = ExecutionDriver::new(replica, endpoint, bus, cluster.replica_count() as u32)
        .with_peers(peers);
    // The activator sends SIGUSR1 when it wakes this replica (after thawing it).
    let mut woken = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(NodeError::io("SIGUSR1 handler"))?;
    let (wakes, side) = mpsc::channel(1);
    tokio::spawn(async move {
        while woken.recv().await.is_some() {
            if wakes.send(Woken).await.is_err() {
                break;
            }
        }
    });
    let mut node = ExecutionNode { id, driver };
    harness.run(&mut node, inbox, Some(side), shutdown).await?;
    tracing::info!(execution = %id, "execution replica stopped");
    Ok(())
}
