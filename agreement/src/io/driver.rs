//! The replica driver: a [`Replica`] with its endpoint, bus and storage. It opens incoming
//! frames (dropping and counting what fails), feeds the core, and carries out the core's
//! outputs in order: persist, then send. It reads no clock and spawns no task, so the real
//! node and the simulator run exactly the same code around the core.
//!
//! Persist, then send, with group commit: while a vote the core recorded (a record it
//! must not forget once what follows from it is sent) is not durable yet, every frame is
//! held back, in order, instead of going to the bus, each with the storage position it
//! waits for. The host syncs and sends ([`ReplicaDriver::sync_and_send_held`]): the node
//! at the end of every turn, the simulator a moment after a step that persisted.
//!
//! The router's retained orders hold nothing back: an order is derived from a committed
//! batch whose records 2f+1 replicas synced before they voted, so a replica that lost the
//! order record derives it again. A stable execution checkpoint does hold back what
//! follows it (the notices telling execution replicas, which then drop what came before
//! it): a replica that forgot it after a power cut would name an older checkpoint to a
//! joining replica, one the execution replicas may no longer serve.

use crate::core::persist::Record;
use crate::core::{Output, Replica};
use crate::io::storage::Storage;
use crate::liaison::detect::{Alarm, Detector, DetectorConfig};
use crate::liaison::membership::{ExecutionGroups, MembershipTable};
use crate::liaison::orders::{OrderRestoreError, OrderRouter, RetainedOrder};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use zz_protocol::bus::MessageBus;
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::messages::{AppOrder, ExecutionCheckpoint, Message, Order, Reply};
use zz_protocol::{
    ClientId, Digest, Endpoint, ExecutionId, FrameCounters, NodeId, ReplicaId, Seq, Time, View,
};

/// Frames held back for a sync at most; a turn producing more syncs early rather than
/// grow the queue (the node's turns, of at most 256 frames, stay far below it).
pub const HELD_FRAMES_MAX: usize = 65_536;

/// What the driver hands up to whoever consumes ordered batches.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Order(Order),
    /// One app's share of the last [`Delivery::Order`], in that app's sequence.
    AppOrder(AppOrder),
    /// Sequence numbers up to this one were skipped by a state transfer.
    Skipped(Seq),
    /// The last [`Delivery::Order`]'s batch made this the app's stable execution checkpoint.
    ExecutionStable(ExecutionCheckpoint),
}

/// A replica core with its I/O seams. See the module documentation.
pub struct ReplicaDriver<B, S> {
    replica: Replica,
    endpoint: Endpoint,
    bus: B,
    storage: S,
    /// Sends each app's orders to its execution replicas; apps without any are answered
    /// by the agreement replicas themselves (the null service). It owns the membership
    /// table, which the detector is handed with every call.
    orders: OrderRouter,
    /// Watches the execution replicas' reports and raises alarms for the activator.
    detector: Detector,
    counters: FrameCounters,
    deliveries: Vec<Delivery>,
    /// Frames waiting for the records they follow from to be durable, in sending order,
    /// each with the storage position it waits for.
    held: VecDeque<(u64, NodeId, Bytes)>,
    /// The storage position just after the core's last record: frames sent before it is
    /// durable are held.
    votes_through: u64,
    /// The storage position known durable (cached from the storage).
    durable: u64,
    /// The batches the storage holds whole (since it was last rewritten), by digest: an
    /// order of one is recorded by reference ([`Record::AppOrderOfBatch`]).
    batches_stored: HashSet<Digest>,
    /// The batch the last [`Output::Order`] committed, if the storage holds it: the orders
    /// split from it come right after.
    batch_of_orders: Option<(Seq, Digest)>,
}

impl<B: MessageBus, S: Storage> ReplicaDriver<B, S> {
    pub fn new(replica: Replica, endpoint: Endpoint, bus: B, storage: S) -> Self {
        assert_eq!(endpoint.id(), NodeId::Replica(replica.id()));
        let durable = storage.durable();
        ReplicaDriver {
            votes_through: durable,
            durable,
            batches_stored: HashSet::new(),
            batch_of_orders: None,
            replica,
            endpoint,
            bus,
            storage,
            orders: OrderRouter::default(),
            detector: Detector::new(
                DetectorConfig {
                    weak_quorum: 1,
                    silence_micros: 1,
                    resend_micros: 1,
                },
                &MembershipTable::default(),
            ),
            counters: FrameCounters::default(),
            deliveries: Vec::new(),
            held: VecDeque::new(),
        }
    }

    /// Send each app's orders to its execution replicas: `groups` holds every configured
    /// member, `active` those active at the start (epoch 0).
    pub fn with_execution_groups(
        mut self,
        groups: ExecutionGroups,
        active: ExecutionGroups,
    ) -> Self {
        let params = self.replica.params();
        let weak_quorum = params.weak_quorum();
        let config = DetectorConfig {
            weak_quorum,
            silence_micros: params.execution_silence_ms * 1000,
            resend_micros: params.view_change_timeout_ms * 1000,
        };
        self.orders = OrderRouter::new(groups, active, weak_quorum);
        self.detector = Detector::new(config, self.orders.membership());
        // A restored replica ordered up to its stable checkpoint before a restart emptied
        // its router; it recovers the orders it still needs from its peers.
        let heads: Vec<_> = self.replica.app_heads().collect();
        for head in heads {
            self.orders.jumped_to(head);
        }
        self
    }

    /// After a restart, right after [`ReplicaDriver::with_execution_groups`]: the router
    /// starts from the stable execution checkpoints `records` (the ones the replica was
    /// restored from) hold, and takes back the orders after them up to the restored
    /// checkpoint's heads. Orders that contradict the checkpoint the core restored (a log
    /// not written consistently) are an error: the replica must not serve from it.
    pub fn with_restored_orders(mut self, records: &[Record]) -> Result<Self, OrderRestoreError> {
        let mut batches = HashMap::new();
        for record in records {
            if let Record::ExecutionStable(checkpoint) = record {
                self.orders.restore_stable(*checkpoint);
            }
            batches.extend(record.batches());
        }
        let mut orders = Vec::new();
        for record in records {
            match record {
                Record::AppOrder {
                    order,
                    chain_before,
                } => orders.push(RetainedOrder {
                    order: order.clone(),
                    chain_before: *chain_before,
                }),
                Record::AppOrderOfBatch {
                    app,
                    seq,
                    agreement_seq,
                    nondet,
                    batch,
                    chain_before,
                } => {
                    let Some(batch) = batches.get(batch) else {
                        return Err(OrderRestoreError::BatchMissing {
                            app: *app,
                            seq: *seq,
                            batch: *batch,
                        });
                    };
                    let requests = (batch.requests.iter())
                        .filter(|request| request.request.app == *app)
                        .cloned()
                        .collect();
                    let order = AppOrder {
                        app: *app,
                        seq: *seq,
                        agreement_seq: *agreement_seq,
                        nondet: *nondet,
                        requests,
                    };
                    orders.push(RetainedOrder {
                        order,
                        chain_before: *chain_before,
                    });
                }
                _ => {}
            }
        }
        self.batches_stored = batches.into_keys().collect();
        self.orders.restore_orders(orders)?;
        Ok(self)
    }

    /// Append what the router must find again after a restart (checkpoints that became
    /// stable, orders it retained); before sending anything that follows from them.
    fn persist_router_records(&mut self) {
        for checkpoint in self.orders.take_newly_stable() {
            self.storage.append(Record::ExecutionStable(checkpoint));
            self.votes_through = self.storage.appended();
        }
        for retained in self.orders.take_newly_retained() {
            let order = retained.order;
            let record = match self.batch_of_orders {
                Some((seq, batch)) if seq == order.agreement_seq => Record::AppOrderOfBatch {
                    app: order.app,
                    seq: order.seq,
                    agreement_seq: order.agreement_seq,
                    nondet: order.nondet,
                    batch,
                    chain_before: retained.chain_before,
                },
                _ => Record::AppOrder {
                    order,
                    chain_before: retained.chain_before,
                },
            };
            self.storage.append(record);
        }
    }

    /// The router's state as records, for a compacted log: each app's stable execution
    /// checkpoint and the orders retained after it.
    fn router_records(&self) -> impl Iterator<Item = Record> + '_ {
        let stable = self.orders.stable_checkpoints().into_iter();
        let orders = self
            .orders
            .retained_orders()
            .map(|retained| Record::AppOrder {
                order: retained.order.clone(),
                chain_before: retained.chain_before,
            });
        stable.map(Record::ExecutionStable).chain(orders)
    }

    /// Send the held frames whose records are durable now, in order.
    fn send_durable(&mut self) {
        self.durable = self.storage.durable();
        while let Some((through, _, _)) = self.held.front()
            && *through <= self.durable
        {
            let (_, to, frame) = self.held.pop_front().expect("a front frame");
            self.bus.send(to, frame);
        }
    }

    /// If a vote (or a stable execution checkpoint) waits to be durable, sync every record
    /// appended so far; then send every held frame, in order. Records nothing waits for
    /// (retained orders) are left for the next sync: a replica that loses them in a crash
    /// derives them again, and the sync of any later vote covers them, so the turns that
    /// only execute cost no sync.
    pub fn sync_and_send_held(&mut self) {
        if self.votes_through > self.durable {
            self.storage.sync();
        }
        self.send_durable();
        assert!(
            self.held.is_empty(),
            "every held frame waits for a record appended"
        );
    }

    /// Sync every record appended so far and send every held frame: before a clean stop.
    pub fn sync_all(&mut self) {
        self.storage.sync();
        self.sync_and_send_held();
    }

    /// Frames held back until their records are durable.
    pub fn held_frame_count(&self) -> usize {
        self.held.len()
    }

    /// Whether records wait to be synced or frames to be sent: the host owes a call to
    /// [`ReplicaDriver::sync_and_send_held`].
    pub fn awaits_sync(&self) -> bool {
        self.votes_through > self.durable || !self.held.is_empty()
    }

    /// Whether frames are held, or will be: what is sent now waits for a sync.
    pub fn holds_frames(&self) -> bool {
        !self.held.is_empty() || self.votes_through > self.durable
    }

    /// Divergence detection.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }
    pub fn counters(&self) -> &FrameCounters {
        &self.counters
    }
    pub fn storage(&self) -> &S {
        &self.storage
    }
    pub fn bus(&self) -> &B {
        &self.bus
    }
    /// Per-app orders on their way to execution replicas.
    pub fn orders(&self) -> &OrderRouter {
        &self.orders
    }

    /// Open one incoming frame and feed it to the core, unless it is the liaison's.
    pub fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.counters.frames_received += 1;
        match self.endpoint.open(frame) {
            Ok(verified) => {
                if !self.handle_liaison_message(now, verified.from(), verified.message()) {
                    self.replica.handle_message(now, verified);
                }
            }
            Err(rejection) => {
                tracing::debug!(replica = %self.replica.id(), %rejection, "rejected frame");
                self.counters.count_rejection(rejection.reason());
            }
        }
        self.flush(now);
    }

    /// The liaison's messages (execution replicas' reports and requests, the activator's
    /// notices, order recovery between agreement replicas), carried out here; returns
    /// false for any other message, which is the core's.
    fn handle_liaison_message(&mut self, now: Time, from: NodeId, message: &Message) -> bool {
        match (from, message) {
            (NodeId::Execution(from), Message::Executed(executed)) => {
                let routed = self.orders.routed(executed.app);
                self.detector.handle_executed(
                    now,
                    from,
                    executed.app,
                    executed.seq,
                    executed.replies,
                    routed,
                    self.orders.membership(),
                );
                self.orders.handle_executed(from, *executed)
            }
            (NodeId::Execution(from), Message::ExecutionCheckpoint(checkpoint)) => {
                let routed = self.orders.routed(checkpoint.app);
                self.detector.handle_root(
                    now,
                    from,
                    checkpoint.app,
                    checkpoint.seq,
                    checkpoint.root,
                    routed,
                    self.orders.membership(),
                );
                let vote = self.orders.handle_checkpoint(from, *checkpoint);
                self.vote_stable(now, vote);
            }
            (NodeId::Activator(_), Message::Membership(membership)) => {
                let app = membership.app;
                let change =
                    (self.orders).handle_membership(app, membership.epoch, &membership.active);
                if let Some(change) = change {
                    tracing::info!(replica = %self.replica.id(), %app, epoch = membership.epoch, active = ?membership.active, "membership");
                    self.detector.handle_membership_change(
                        now,
                        app,
                        &change.previously_active,
                        self.orders.membership(),
                    );
                    self.vote_stable(now, change.vote);
                }
            }
            (NodeId::Execution(from), Message::Join(join)) => {
                let vote = self.orders.handle_join(from, join.app);
                self.vote_stable(now, vote);
                if self.orders.membership().is_member(from, join.app)
                    && let Some((seq, root)) = self.orders.join_checkpoint(join.app)
                {
                    let notice = ExecutionCheckpoint {
                        app: join.app,
                        seq,
                        root,
                    };
                    self.send(NodeId::Execution(from), &Message::ExecutionStable(notice));
                }
            }
            (NodeId::Replica(from), Message::FetchChainedOrders(fetch)) => {
                // Half a frame, as for fetched batches, so the answer always fits.
                let bytes_max = self.replica.params().frame_bytes_max / 2;
                if let Some(answer) = self.orders.chained_orders(*fetch, bytes_max) {
                    self.send(NodeId::Replica(from), &Message::ChainedOrders(answer));
                }
            }
            (NodeId::Replica(from), Message::ChainedOrders(answer)) => {
                let next = self.orders.handle_chained_orders(from, answer);
                self.persist_router_records();
                // Recovered orders let this replica name its stable checkpoint to joiners,
                // so they are synced this turn, not left for a vote that may never come.
                self.votes_through = self.storage.appended();
                if let Some(next) = next {
                    self.send(NodeId::Replica(from), &Message::FetchChainedOrders(next));
                }
            }
            (NodeId::Execution(from), Message::FetchOrders(fetch)) => {
                // Asking for orders before the stable checkpoint: they may be gone here
                // and elsewhere, so name the checkpoint to start over from (the member
                // does on f+1 matching notices).
                if let Some((seq, root)) = self.orders.stable_checkpoint(fetch.app)
                    && fetch.after < seq
                    && self.orders.membership().is_member(from, fetch.app)
                {
                    let notice = ExecutionCheckpoint {
                        app: fetch.app,
                        seq,
                        root,
                    };
                    self.send(NodeId::Execution(from), &Message::ExecutionStable(notice));
                }
                for (member, order) in self.orders.fetch_orders(from, fetch.app, fetch.after) {
                    self.send(NodeId::Execution(member), &Message::AppOrder(order));
                }
            }
            _ => return false,
        }
        true
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.replica.handle_timeout(now);
        let interval = self.replica.params().status_interval_ms * 1000;
        let resends = self.orders.resend(now, interval);
        for (member, order) in resends.orders {
            self.send(NodeId::Execution(member), &Message::AppOrder(order));
        }
        self.tell_stable(resends.stable_notices);
        for fetch in self.orders.poll_recovery(now, interval) {
            self.broadcast(&Message::FetchChainedOrders(fetch));
        }
        self.detector.handle_tick(now, self.orders.membership());
        self.flush(now);
    }

    /// The router judged a checkpoint stable: the core votes for it, to have it ordered.
    fn vote_stable(&mut self, now: Time, vote: Option<ExecutionCheckpoint>) {
        if let Some(checkpoint) = vote {
            self.replica.vote_stable(now, checkpoint);
        }
    }

    /// Tell each execution replica the stable checkpoint of its app paired with it.
    fn tell_stable(
        &mut self,
        notices: impl IntoIterator<Item = (ExecutionId, ExecutionCheckpoint)>,
    ) {
        for (member, checkpoint) in notices {
            self.send(
                NodeId::Execution(member),
                &Message::ExecutionStable(checkpoint),
            );
        }
    }

    /// The detector's alarms go to the activator.
    fn send_alarms(&mut self) {
        let to = NodeId::Activator(LOCAL_ACTIVATOR);
        for alarm in self.detector.take_alarms() {
            let message = match alarm {
                Alarm::Wake(wake) => Message::Wake(wake),
                Alarm::Faulty(faulty) => Message::Faulty(faulty),
            };
            self.send(to, &message);
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.replica.poll_timeout()
    }

    /// Ordered batches and skips since the last call, in order.
    pub fn take_deliveries(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.deliveries)
    }

    fn flush(&mut self, now: Time) {
        while let Some(output) = self.replica.poll_output() {
            match output {
                Output::Persist(record) => {
                    (self.batches_stored).extend(record.batches().into_iter().map(|(d, _)| d));
                    self.storage.append(record);
                    self.votes_through = self.storage.appended();
                }
                Output::Compact(mut records) => {
                    // The core's records say nothing of the router's checkpoints and orders.
                    records.extend(self.router_records());
                    let batches: HashSet<Digest> = (records.iter())
                        .flat_map(|record| record.batches().into_iter().map(|(d, _)| d))
                        .collect();
                    if self.storage.compact(records) {
                        self.batches_stored = batches;
                        self.batch_of_orders = None;
                    }
                    self.send_durable();
                }
                Output::Send { to, message } => self.send(NodeId::Replica(to), &message),
                Output::Broadcast(message) => self.broadcast(&message),
                Output::Order { order, digest } => {
                    self.batch_of_orders =
                        (self.batches_stored.contains(&digest)).then_some((order.seq, digest));
                    self.reply_for_order(&order);
                    self.deliveries.push(Delivery::Order(order));
                }
                Output::AppOrder(order) => {
                    let sends = self.orders.route(order.clone());
                    self.persist_router_records();
                    for (member, order) in sends {
                        self.send(NodeId::Execution(member), &Message::AppOrder(order));
                    }
                    self.deliveries.push(Delivery::AppOrder(order));
                }
                Output::ExecutionStable(checkpoint) => {
                    let told = self.orders.agreed_stable(checkpoint);
                    self.persist_router_records();
                    self.tell_stable(told);
                    self.deliveries.push(Delivery::ExecutionStable(checkpoint));
                }
                Output::Skipped { to, apps } => {
                    // The per-app sequences jumped with the state: orders up to them were
                    // ordered, only not here; the router recovers them from peers.
                    for head in apps {
                        self.orders.jumped_to(head);
                    }
                    self.persist_router_records();
                    self.deliveries.push(Delivery::Skipped(to))
                }
                Output::AlreadyOrdered {
                    app,
                    client,
                    timestamp,
                } => {
                    // An app with execution replicas answers retransmissions itself; that
                    // the client asks again means it lacks f+1 matching replies.
                    if self.orders.membership().has_group(app) {
                        let routed = self.orders.routed(app);
                        let membership = self.orders.membership();
                        self.detector
                            .handle_client_retransmit(now, client, app, routed, membership);
                    } else {
                        let view = self.replica.view();
                        self.reply(view, client, timestamp);
                    }
                }
            }
        }
        self.send_alarms();
    }

    fn send(&mut self, to: NodeId, message: &Message) {
        if let Some(frame) = self.endpoint.seal(to, message) {
            self.transmit(to, Bytes::from(frame));
        }
    }

    fn broadcast(&mut self, message: &Message) {
        let frame = Bytes::from(self.endpoint.seal_multicast(message));
        let me = self.replica.id();
        for replica in 0..self.replica.params().replica_count() as u32 {
            if ReplicaId(replica) != me {
                self.transmit(NodeId::Replica(ReplicaId(replica)), frame.clone());
            }
        }
    }

    /// To the bus, unless a vote is not durable yet (the frame may follow from it) or
    /// frames are held already (they go first): then held until it is.
    fn transmit(&mut self, to: NodeId, frame: Bytes) {
        if self.held.is_empty() && self.votes_through <= self.durable {
            self.bus.send(to, frame);
            return;
        }
        self.held.push_back((self.votes_through, to, frame));
        if self.held.len() >= HELD_FRAMES_MAX {
            self.sync_and_send_held();
        }
    }

    fn reply_for_order(&mut self, order: &Order) {
        for request in &order.batch.requests {
            self.reply(
                order.view,
                request.request.client,
                request.request.timestamp,
            );
        }
    }

    fn reply(&mut self, view: View, client: ClientId, timestamp: u64) {
        let reply = Reply {
            view,
            client,
            timestamp,
            result: Vec::new(),
        };
        self.send(NodeId::Client(client), &Message::Reply(reply));
    }
}
