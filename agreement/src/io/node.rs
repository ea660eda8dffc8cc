//! The agreement node: one replica driver in the node harness (QUIC, the clock, injected
//! faults, the status file). What is its own: the record file it restores from and
//! appends to (every record of a turn written and synced at the end of the turn, before
//! what the turn sent leaves), and what its status file shows.

use crate::core::{Replica, ReplicaConfig};
use crate::io::driver::{Delivery, ReplicaDriver};
use crate::io::storage::FileStorage;
use crate::liaison::orders::OrderRestoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use zz_cluster::ClusterDir;
use zz_cluster::fault_bus::FaultyBus;
use zz_cluster::harness::{Harness, NodeError, NodeLoop, StatusContext};
use zz_cluster::status_file::reasons;
use zz_protocol::config::{ClusterConfig, ConfigError, endpoint_for_replica};
use zz_protocol::quic::QuicBus;
use zz_protocol::{NodeId, ReplicaId, Time};

/// What `run/replica-<i>/status.json` holds: a replica's progress and counters, for `zz status`
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

/// Why an agreement replica could not start, beyond what every node kind meets.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("replica {id} has no signing key in its key file")]
    NoSigningKey { id: ReplicaId },
    #[error("{path}: {source}")]
    InconsistentOrders {
        path: String,
        source: OrderRestoreError,
    },
}

type NodeDriver = ReplicaDriver<FaultyBus<QuicBus>, FileStorage>;

struct AgreementNode {
    id: ReplicaId,
    driver: NodeDriver,
}

impl NodeLoop for AgreementNode {
    type Status = NodeStatus;
    type Side = ();

    fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.driver.handle_frame(now, frame);
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.driver.poll_timeout()
    }

    async fn handle_timeout(&mut self, now: Time) {
        self.driver.handle_timeout(now);
    }

    fn holds_output(&self) -> bool {
        self.driver.holds_frames()
    }

    async fn end_turn(&mut self, _now: Time) {
        // One sync for every record of the turn, waited for: on this kind of machine a
        // sync costs CPU more than time, and syncing in the background while the turns go
        // on measured no faster (more, smaller syncs); then what the records vouch for
        // goes out. The sync runs on this thread: handing it to another costs two
        // context switches a sync, for no overlap.
        self.driver.sync_and_send_held();
        for delivery in self.driver.take_deliveries() {
            match delivery {
                // The driver already sent each app's share to its execution replicas.
                Delivery::Order(_) | Delivery::AppOrder(_) => {}
                Delivery::ExecutionStable(checkpoint) => {
                    let (app, seq) = (checkpoint.app, checkpoint.seq);
                    tracing::debug!(replica = %self.id, %app, %seq, "execution checkpoint stable");
                }
                Delivery::Skipped(to) => {
                    tracing::info!(replica = %self.id, %to, "skipped to checkpoint")
                }
            }
        }
    }

    fn status(&self, context: &StatusContext) -> NodeStatus {
        let driver = &self.driver;
        let replica = driver.replica();
        let counters = replica.counters();
        NodeStatus {
            id: replica.id().0,
            pid: context.pid,
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
            dropped: reasons(&counters.dropped),
            rejected: reasons(&driver.counters().rejected),
            transport_dropped: zz_protocol::bus::MessageBus::dropped_frames(driver.bus()),
            fault: context.fault_name(),
            updated_unix_ms: context.unix_ms,
        }
    }
}

/// What a new cluster's agreement replicas start from (`zz init` writes it, through
/// `zz_cluster::init_cluster`): an empty record file each. From then on a missing record
/// file means lost votes, and the replica refuses to start without it.
pub fn create_record_files(files: &ClusterDir, config: &ClusterConfig) -> Result<(), ConfigError> {
    for replica in &config.replicas {
        let path = files.records_path(replica.id);
        let folder = files.node_state_dir(zz_protocol::NodeId::Replica(replica.id));
        std::fs::create_dir_all(&folder).map_err(|source| ConfigError::io(&folder, source))?;
        FileStorage::create_empty(&path).map_err(|source| ConfigError::io(&path, source))?;
    }
    Ok(())
}

/// Run replica `id` of the cluster in `dir` until `shutdown` completes. A replica that
/// finds records from an earlier run restores itself from them; one whose record file is
/// missing refuses to start (see [`create_record_files`]).
pub async fn run_agreement_node(
    dir: &Path,
    id: ReplicaId,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut harness = Harness::new(dir, NodeId::Replica(id))?;
    let (cluster, endpoint) = endpoint_for_replica(dir, id)?;
    let signing_key = (endpoint.keys().signing_key.clone())
        .ok_or_else(|| NodeError::start(StartError::NoSigningKey { id }))?;
    let state_dir = harness.dir().node_state_dir(NodeId::Replica(id));
    std::fs::create_dir_all(&state_dir).map_err(NodeError::io(state_dir.display()))?;
    let records_path = harness.dir().records_path(id);
    let (storage, records) = FileStorage::open(&records_path).map_err(NodeError::start)?;
    let config = ReplicaConfig {
        id,
        params: cluster.protocol.clone(),
        signing_key,
        wall_clock_at_zero_ms: harness.wall_clock_at_zero_ms(),
        seed: harness.wall_clock_at_zero_ms() ^ ((std::process::id() as u64) << 32),
    };
    let restored = !records.is_empty();
    let replica = match restored {
        true => Replica::restore(config, records.clone(), harness.now()),
        false => Replica::new(config, harness.now()),
    };
    let (bus, inbox) = harness.start_bus(&cluster)?;
    tracing::info!(
        replica = %id,
        address = %bus.inner().local_addr(),
        restored,
        view = %replica.view(),
        stable = %replica.stable_seq(),
        "agreement replica started"
    );
    let driver = ReplicaDriver::new(replica, endpoint, bus, storage)
        .with_execution_groups(cluster.execution_groups(), cluster.active_groups())
        .with_restored_orders(&records)
        .map_err(|source| {
            NodeError::start(StartError::InconsistentOrders {
                path: records_path.display().to_string(),
                source,
            })
        })?;
    let mut node = AgreementNode { id, driver };
    let run = harness.run(&mut node, inbox, None, shutdown).await;
    // What the last turns appended is durable before the process goes, however it ends.
    node.driver.sync_all();
    run?;
    tracing::info!(replica = %id, "agreement replica stopped");
    Ok(())
}
