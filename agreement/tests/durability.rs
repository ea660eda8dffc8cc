//! Durability of the agreement replicas, driver by driver over an in-memory network: what
//! a driver sends waits for the records it follows from to be synced (group commit), and
//! a cluster whose every replica restarts at once, from its synced records alone, still
//! holds each app's orders after the app's stable execution checkpoint (issue 11: nothing
//! acknowledged is ever lost).

use std::collections::BTreeMap;
use std::sync::Arc;
use zz_agreement::core::persist::Record;
use zz_agreement::io::storage::{MemoryStorage, Storage};
use zz_agreement::liaison::membership::ExecutionGroups;
use zz_agreement::liaison::orders::OrderRestoreError;
use zz_agreement::{Replica, ReplicaConfig, ReplicaDriver};
use zz_protocol::bus::{Inbox, MemoryBus, MemoryNetwork, MessageBus};
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::messages::{AppOrder, ExecutionCheckpoint, FetchOrders, Message, Request};
use zz_protocol::{
    AppId, ClientId, Digest, ExecutionId, NodeId, ProtocolParams, ReplicaId, Seq, Time,
};

const APP: AppId = AppId(0);
const MEMBERS: [ExecutionId; 2] = [ExecutionId(0), ExecutionId(1)];
const CLIENT: ClientId = ClientId(1);
/// The root both execution replicas report at the app's checkpoint.
const ROOT: Digest = Digest([7; 32]);
const WALL_CLOCK_AT_ZERO_MS: u64 = 1_800_000_000_000;
/// Rounds of frame passing one pump may take at most; more means something spins.
const PUMP_ROUNDS_MAX: usize = 1000;

type Driver = ReplicaDriver<MemoryBus, MemoryStorage>;

fn params() -> ProtocolParams {
    ProtocolParams {
        checkpoint_interval: 2,
        window: 8,
        ..ProtocolParams::default()
    }
}

fn groups() -> ExecutionGroups {
    BTreeMap::from([(APP, MEMBERS.to_vec())])
}

/// Four agreement replicas (f = 1), the app's two execution replicas and a client, all on
/// one in-memory network; only the replicas run a driver, the others are played by the test.
struct Cluster {
    keys: DerivedKeys,
    network: Arc<MemoryNetwork>,
    drivers: Vec<Driver>,
    inboxes: Vec<Inbox>,
    execution_buses: Vec<MemoryBus>,
    execution_inboxes: Vec<Inbox>,
    client_bus: MemoryBus,
    _client_inbox: Inbox,
    now: Time,
    next_timestamp: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let keys = DerivedKeys::new(11, &params()).with_executions(MEMBERS.len() as u32);
        let network = MemoryNetwork::new();
        let (client_bus, client_inbox) = network.join(NodeId::Client(CLIENT));
        let (execution_buses, execution_inboxes) = MEMBERS
            .iter()
            .map(|member| network.join(NodeId::Execution(*member)))
            .unzip();
        let mut cluster = Cluster {
            keys,
            network,
            drivers: Vec::new(),
            inboxes: Vec::new(),
            execution_buses,
            execution_inboxes,
            client_bus,
            _client_inbox: client_inbox,
            now: Time(0),
            next_timestamp: 1,
        };
        for id in 0..params().replica_count() as u32 {
            let replica = Replica::new(cluster.config(ReplicaId(id)), cluster.now);
            let (driver, inbox) = cluster.driver(replica, MemoryStorage::default());
            cluster.drivers.push(driver);
            cluster.inboxes.push(inbox);
        }
        cluster
    }

    fn config(&self, id: ReplicaId) -> ReplicaConfig {
        ReplicaConfig {
            id,
            params: params(),
            signing_key: self.keys.replica(id).signing_key.expect("replicas sign"),
            wall_clock_at_zero_ms: WALL_CLOCK_AT_ZERO_MS,
            seed: u64::from(id.0),
        }
    }

    /// A driver for `replica` on a fresh inbox (replacing any earlier one of that id).
    fn driver(&self, replica: Replica, storage: MemoryStorage) -> (Driver, Inbox) {
        let id = replica.id();
        let (bus, inbox) = self.network.join(NodeId::Replica(id));
        let endpoint = self.keys.replica_endpoint(id);
        let driver = ReplicaDriver::new(replica, endpoint, bus, storage)
            .with_execution_groups(groups(), groups());
        (driver, inbox)
    }

    /// Every replica restarts at once from what its storage synced.
    fn restart_all(&mut self) -> Vec<Result<(), OrderRestoreError>> {
        let mut results = Vec::new();
        for index in 0..self.drivers.len() {
            let id = ReplicaId(index as u32);
            let mut storage = self.drivers[index].storage().clone();
            storage.lose_unsynced();
            let records = storage.records().to_vec();
            let replica = Replica::restore(self.config(id), records.clone(), self.now);
            let (driver, inbox) = self.driver(replica, storage);
            match driver.with_restored_orders(&records) {
                Ok(driver) => {
                    self.drivers[index] = driver;
                    self.inboxes[index] = inbox;
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        results
    }

    /// The client's next request, to every replica.
    fn request(&mut self) {
        let client = self.keys.client_endpoint(CLIENT);
        let request = client.authenticate_request(Request {
            app: APP,
            client: CLIENT,
            timestamp: self.next_timestamp,
            op: self.next_timestamp.to_le_bytes().to_vec(),
        });
        self.next_timestamp += 1;
        for id in 0..self.drivers.len() as u32 {
            let to = NodeId::Replica(ReplicaId(id));
            let frame = client.seal(to, &Message::Request(request.clone())).unwrap();
            self.client_bus.send(to, frame.into());
        }
    }

    /// Execution replica `member` sends `message` to every agreement replica.
    fn execution_sends(&mut self, member: usize, message: &Message) {
        let endpoint = self.keys.execution_endpoint(MEMBERS[member]);
        for id in 0..self.drivers.len() as u32 {
            let to = NodeId::Replica(ReplicaId(id));
            let frame = endpoint.seal(to, message).unwrap();
            self.execution_buses[member].send(to, frame.into());
        }
    }

    /// Pass frames between the replicas, each syncing at the end of its turn, until quiet.
    fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS_MAX {
            let mut moved = false;
            for (driver, inbox) in self.drivers.iter_mut().zip(&mut self.inboxes) {
                while let Ok(frame) = inbox.try_recv() {
                    driver.handle_frame(self.now, &frame);
                    moved = true;
                }
                driver.sync_and_send_held();
            }
            if !moved {
                return;
            }
        }
        panic!("frames still moving after {PUMP_ROUNDS_MAX} rounds");
    }

    /// Let `millis` pass: every replica's timers fire, then frames settle.
    fn tick(&mut self, millis: u64) {
        self.now = self.now.saturating_add_micros(millis * 1000);
        for driver in &mut self.drivers {
            driver.handle_timeout(self.now);
            driver.sync_and_send_held();
        }
        self.pump();
    }

    /// The app orders execution replica `member` received since the last call, by sender.
    fn orders_received(&mut self, member: usize) -> Vec<(NodeId, AppOrder)> {
        let endpoint = self.keys.execution_endpoint(MEMBERS[member]);
        let mut orders = Vec::new();
        while let Ok(frame) = self.execution_inboxes[member].try_recv() {
            if let Ok(verified) = endpoint.open(&frame)
                && let Message::AppOrder(order) = verified.message()
            {
                orders.push((verified.from(), order.clone()));
            }
        }
        orders
    }
}

/// Order `count` requests, one at a time.
fn order_requests(cluster: &mut Cluster, count: usize) {
    for _ in 0..count {
        cluster.request();
        cluster.pump();
    }
}

/// Both execution replicas report `ROOT` at app seq `seq`: a stable execution checkpoint.
fn report_checkpoint(cluster: &mut Cluster, seq: u64) {
    let checkpoint = ExecutionCheckpoint {
        app: APP,
        seq: Seq(seq),
        root: ROOT,
    };
    for member in 0..MEMBERS.len() {
        cluster.execution_sends(member, &Message::ExecutionCheckpoint(checkpoint));
    }
    cluster.pump();
}

#[test]
fn frames_wait_for_the_sync_of_the_records_they_follow_from() {
    // Goal: the primary's pre-prepare leaves only once its Accepted record is synced, and
    // one sync covers the turn: until then the frame is held, and nothing reaches the bus.
    let mut cluster = Cluster::new();
    cluster.request();
    let frame = cluster.inboxes[0]
        .try_recv()
        .expect("the request reached the primary");
    for backup in 1..4 {
        // The client's copies of the request, which the backups do not read here.
        while cluster.inboxes[backup].try_recv().is_ok() {}
    }
    let primary = &mut cluster.drivers[0];
    primary.handle_frame(cluster.now, &frame);
    assert!(
        primary.storage().has_unsynced(),
        "the pre-prepare was recorded"
    );
    assert!(primary.awaits_sync());
    assert!(
        primary.held_frame_count() >= 3,
        "one pre-prepare per backup, held"
    );
    assert!(
        cluster.inboxes[1].try_recv().is_err(),
        "nothing sent before the sync"
    );
    let records = primary.storage().records().len();
    cluster.drivers[0].sync_and_send_held();
    let primary = &cluster.drivers[0];
    assert!(!primary.awaits_sync());
    assert_eq!(primary.storage().synced_records().len(), records);
    for backup in 1..4 {
        let frame = cluster.inboxes[backup]
            .try_recv()
            .expect("sent after the sync");
        let verified = cluster
            .keys
            .replica_endpoint(ReplicaId(backup as u32))
            .open(&frame);
        assert!(matches!(
            verified.unwrap().message(),
            Message::PrePrepare { .. }
        ));
    }
}

/// Orders app seqs 1..=5 in batches 1, 2 and 4..=6 (batch 3 orders the certificate that
/// makes the app's execution checkpoint at 2 stable; PBFT checkpoint stable at 6, so the
/// app's head is 5 there), then app seq 6 committed after the PBFT checkpoint, and a last
/// request that reaches the primary but is never synced.
fn cluster_before_a_power_cut() -> Cluster {
    let mut cluster = Cluster::new();
    order_requests(&mut cluster, 2);
    report_checkpoint(&mut cluster, 2);
    order_requests(&mut cluster, 4);
    for driver in &cluster.drivers {
        assert_eq!(driver.replica().stable_seq(), Seq(6));
        assert_eq!(driver.orders().stable_checkpoint(APP), Some((Seq(2), ROOT)));
        assert_eq!(driver.orders().routed(APP), Seq(6));
    }
    // The primary records a pre-prepare for the last request, and crashes before the sync.
    cluster.request();
    let frame = cluster.inboxes[0].try_recv().unwrap();
    cluster.drivers[0].handle_frame(cluster.now, &frame);
    assert!(cluster.drivers[0].storage().has_unsynced());
    cluster
}

#[test]
fn a_whole_cluster_restart_keeps_the_orders_after_the_stable_execution_checkpoint() {
    // Goal: all four replicas restart at once from their synced records (no peer has
    // anything to recover from). Each router takes back the app's orders after its stable
    // execution checkpoint up to the restored PBFT checkpoint's head, names that checkpoint
    // to a joining execution replica, and sends it those orders; the slot committed after
    // the checkpoint commits again from the restored votes, and ordering goes on.
    let mut cluster = cluster_before_a_power_cut();
    for result in cluster.restart_all() {
        result.expect("a consistent log restores");
    }
    for driver in &cluster.drivers {
        let orders = driver.orders();
        assert_eq!(driver.replica().stable_seq(), Seq(6));
        assert_eq!(orders.stable_checkpoint(APP), Some((Seq(2), ROOT)));
        assert_eq!(orders.routed(APP), Seq(5), "up to the restored head");
        assert!((3..=5).all(|seq| orders.retains(APP, Seq(seq))));
        assert!(orders.holds_all_after_stable(APP));
        assert_eq!(orders.join_checkpoint(APP), Some((Seq(2), ROOT)));
    }

    // A woken execution replica starting from the checkpoint gets orders 3..=5 from each.
    cluster.orders_received(0);
    let fetch = FetchOrders {
        app: APP,
        after: Seq(2),
    };
    cluster.execution_sends(0, &Message::FetchOrders(fetch));
    cluster.pump();
    let mut by_seq: BTreeMap<Seq, Vec<NodeId>> = BTreeMap::new();
    for (from, order) in cluster.orders_received(0) {
        by_seq.entry(order.seq).or_default().push(from);
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (3..=5).map(Seq).collect::<Vec<_>>()
    );
    assert!(by_seq.values().all(|senders| senders.len() == 4));

    // Retransmission of the restored votes commits app seq 6 again; then a new request.
    cluster.tick(params().status_interval_ms);
    for driver in &cluster.drivers {
        assert_eq!(driver.orders().routed(APP), Seq(6));
    }
    order_requests(&mut cluster, 1);
    cluster.tick(params().status_interval_ms);
    for driver in &cluster.drivers {
        assert!(driver.orders().routed(APP) >= Seq(7), "ordering goes on");
        assert!(driver.orders().holds_all_after_stable(APP));
    }
}

#[test]
fn orders_on_disk_that_contradict_the_certified_head_refuse_to_start() {
    // Goal: a log whose order at the head does not chain to what the restored PBFT
    // checkpoint certifies is not one the replica wrote consistently: restoring it is an
    // error, never a replica that serves from it.
    let cluster = cluster_before_a_power_cut();
    let mut storage = cluster.drivers[1].storage().clone();
    storage.lose_unsynced();
    let mut records = storage.records().to_vec();
    let mut tampered = 0;
    for record in &mut records {
        match record {
            Record::AppOrder { order, .. } if order.seq == Seq(5) => {
                order.nondet.seed ^= 1;
                tampered += 1;
            }
            Record::AppOrderOfBatch { seq, nondet, .. } if *seq == Seq(5) => {
                nondet.seed ^= 1;
                tampered += 1;
            }
            _ => {}
        }
    }
    assert!(tampered > 0, "the order is on disk");
    storage.replace(records.clone());
    let replica = Replica::restore(cluster.config(ReplicaId(1)), records.clone(), cluster.now);
    let (driver, _inbox) = cluster.driver(replica, storage);
    let error = driver
        .with_restored_orders(&records)
        .err()
        .expect("refused");
    assert!(
        matches!(
            error,
            OrderRestoreError::HeadChainMismatch {
                app: APP,
                seq: Seq(5),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("refusing to serve"));
}

#[test]
fn orders_are_recorded_by_reference_to_their_batch_and_a_missing_batch_refuses_to_start() {
    // Goal: an order whose batch is on disk already is recorded without its requests (they
    // are most of its bytes), restored from that batch; a log without the batch is not
    // one the replica wrote, and restoring it is an error.
    let cluster = cluster_before_a_power_cut();
    let mut storage = cluster.drivers[1].storage().clone();
    storage.lose_unsynced();
    let records = storage.records().to_vec();
    let references = (records.iter())
        .filter(|record| matches!(record, Record::AppOrderOfBatch { .. }))
        .count();
    assert!(references > 0, "orders of stored batches go by reference");
    let without_batches: Vec<Record> = (records.iter())
        .filter(|record| record.batches().is_empty())
        .cloned()
        .collect();
    let replica = Replica::restore(cluster.config(ReplicaId(1)), records.clone(), cluster.now);
    let (driver, _inbox) = cluster.driver(replica, storage.clone());
    let error = driver
        .with_restored_orders(&without_batches)
        .err()
        .expect("refused");
    assert!(
        matches!(error, OrderRestoreError::BatchMissing { app: APP, .. }),
        "{error}"
    );
}
