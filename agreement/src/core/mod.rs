//! The sans-IO PBFT replica (Castro & Liskov, OSDI 1999; TOCS 2002).
//!
//! Calling protocol: build a [`Replica`] with [`Replica::new`] (or [`Replica::restore`] from
//! the records it persisted), then feed it verified messages with
//! [`Replica::handle_message`] and timer expiries with [`Replica::handle_timeout`]. After each
//! call, drain [`Replica::poll_output`] and carry the outputs out *in order*: a
//! [`Output::Persist`] must be durable before any later output is sent, because later
//! messages are derived from it. Then ask [`Replica::poll_timeout`] when to call
//! `handle_timeout` next. The replica never reads a clock, draws randomness or touches the
//! network: time comes in as `now`, randomness from the seed in its configuration.

mod catch_up;
mod normal;
pub mod persist;
mod slot;
pub mod view_change;

use persist::Record;
use slot::Slot;
use std::collections::{BTreeMap, VecDeque};
use zz_protocol::crypto::{Ed25519SigningKey, Signed};
use zz_protocol::messages::{
    AppHead, AppOrder, AuthenticatedRequest, CheckpointCertificate, CheckpointState, Message,
    NewView, Order, Status, ViewChange,
};
use zz_protocol::validate::genesis_checkpoint;
use zz_protocol::{
    AppId, ClientId, Digest, NodeId, ProtocolParams, ReplicaId, Seq, Time, Verified, View,
};

/// Messages for views this replica has not entered yet, kept until it enters them.
pub const FUTURE_MESSAGES_MAX: usize = 1024;
/// Distinct clients with a request waiting to be ordered, at most.
pub const WAITING_CLIENTS_MAX: usize = 65_536;
/// The longest the view-change timeout grows to, as a power of two of the base timeout.
pub const VIEW_CHANGE_BACKOFF_EXPONENT_MAX: u32 = 6;

/// What a replica needs to know about itself.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub id: ReplicaId,
    pub params: ProtocolParams,
    pub signing_key: Ed25519SigningKey,
    /// Wall-clock milliseconds (UNIX epoch) at `Time(0)`; the primary proposes
    /// `wall_clock_at_zero_ms + now` as a batch's timestamp.
    pub wall_clock_at_zero_ms: u64,
    /// Seeds the random seeds the primary proposes with batches.
    pub seed: u64,
}

/// Work for the driver, in the order it must be done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send to one replica.
    Send { to: ReplicaId, message: Message },
    /// Send to every other replica.
    Broadcast(Message),
    /// Make this record durable before carrying out any later output.
    Persist(Record),
    /// Replace everything persisted so far with these records (after a stable checkpoint).
    Compact(Vec<Record>),
    /// A committed batch; emitted strictly in sequence order, each sequence number once.
    Order(Order),
    /// The same batch's requests for one app, numbered in that app's own gap-free
    /// sequence; emitted right after the batch's [`Output::Order`], one per app in it.
    AppOrder(AppOrder),
    /// The replica jumped to a checkpoint: sequence numbers up to `to` will never be ordered
    /// here; whoever consumes orders must fetch that state elsewhere. `apps` is where each
    /// app's orders stood at that checkpoint (certified with it).
    Skipped { to: Seq, apps: Vec<AppHead> },
    /// A client retransmitted the request that was ordered last for it.
    AlreadyOrdered {
        app: AppId,
        client: ClientId,
        timestamp: u64,
    },
}

/// Why messages were dropped, by reason; for logs, status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped: BTreeMap<&'static str, u64>,
    pub view_changes_started: u64,
    pub batches_ordered: u64,
    pub requests_ordered: u64,
    pub checkpoints_stable: u64,
    pub state_transfers: u64,
}

/// A request known to this replica and not ordered yet.
#[derive(Clone, Debug)]
struct Waiting {
    request: AuthenticatedRequest,
    since: Time,
    proposed: bool,
}

/// The execution-side state of the agreement replica: what its checkpoints cover.
#[derive(Clone, Debug, Default)]
struct ExecState {
    seq: Seq,
    chain: Digest,
    last_timestamp_ms: u64,
    clients: BTreeMap<ClientId, u64>,
    /// Each app's own gap-free sequence: the last number its orders reached, and the
    /// hash chain over its orders up to it.
    apps: BTreeMap<AppId, (Seq, Digest)>,
}

impl ExecState {
    fn snapshot(&self) -> CheckpointState {
        CheckpointState {
            seq: self.seq,
            chain: self.chain,
            last_timestamp_ms: self.last_timestamp_ms,
            clients: self.clients.iter().map(|(c, t)| (*c, *t)).collect(),
            apps: (self.apps.iter())
                .map(|(app, (seq, chain))| AppHead {
                    app: *app,
                    seq: *seq,
                    chain: *chain,
                })
                .collect(),
        }
    }

    fn from_snapshot(state: &CheckpointState) -> ExecState {
        ExecState {
            seq: state.seq,
            chain: state.chain,
            last_timestamp_ms: state.last_timestamp_ms,
            clients: state.clients.iter().copied().collect(),
            apps: (state.apps.iter())
                .map(|head| (head.app, (head.seq, head.chain)))
                .collect(),
        }
    }
}

/// A PBFT agreement replica. See the module documentation for the calling protocol.
pub struct Replica {
    config: ReplicaConfig,
    now: Time,
    /// The view this replica is in, or is changing to when `normal` is false.
    view: View,
    normal: bool,
    /// The latest stable checkpoint: h = stable.seq, H = h + L.
    stable: CheckpointCertificate,
    stable_state: CheckpointState,
    slots: BTreeMap<Seq, Slot>,
    exec: ExecState,
    /// This replica's own checkpoint states above the stable one.
    own_checkpoints: BTreeMap<Seq, CheckpointState>,
    checkpoint_votes: BTreeMap<Seq, BTreeMap<ReplicaId, Signed<zz_protocol::messages::Checkpoint>>>,
    /// Primary only: the next sequence number to propose.
    next_seq: Seq,
    waiting: BTreeMap<ClientId, Waiting>,
    /// Primary only: the order in which waiting requests arrived, for fairness.
    arrivals: VecDeque<(ClientId, u64)>,
    /// The latest view change from each replica.
    view_changes: BTreeMap<ReplicaId, Signed<ViewChange>>,
    /// While changing view with a quorum of view changes: when to give up on the new primary.
    new_view_deadline: Option<Time>,
    /// Consecutive view changes without reaching a normal view, for the timer's backoff.
    view_change_attempts: u32,
    /// The new-view message of the current view, re-sent to replicas that missed it.
    last_new_view: Option<Signed<NewView>>,
    future: VecDeque<(ReplicaId, Message)>,
    /// Pre-prepares for sequence numbers at or below this came in the new-view message;
    /// the primary may not propose them again in this view (PBFT section 4.4).
    new_view_floor: Seq,
    peer_status: BTreeMap<ReplicaId, Status>,
    /// Committed batches offered by peers during catch-up: seq -> replica -> (digest, batch).
    fetched: BTreeMap<Seq, BTreeMap<ReplicaId, (Digest, zz_protocol::messages::Batch)>>,
    last_fetch_at: Option<Time>,
    view_change_resend_at: Time,
    next_status_at: Time,
    rng_state: u64,
    outputs: VecDeque<Output>,
    counters: Counters,
}

impl Replica {
    /// A replica at the genesis checkpoint, in view 0.
    pub fn new(config: ReplicaConfig, now: Time) -> Replica {
        config
            .params
            .validate()
            .expect("protocol parameters are validated on load");
        assert!(config.id.index() < config.params.replica_count());
        let genesis = genesis_checkpoint();
        let rng_state = config.seed ^ 0x9e37_79b9_7f4a_7c15;
        Replica {
            now,
            view: View(0),
            normal: true,
            stable: CheckpointCertificate {
                seq: Seq(0),
                digest: genesis.digest(),
                votes: Vec::new(),
            },
            exec: ExecState::from_snapshot(&genesis),
            stable_state: genesis,
            slots: BTreeMap::new(),
            own_checkpoints: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            next_seq: Seq(1),
            waiting: BTreeMap::new(),
            arrivals: VecDeque::new(),
            view_changes: BTreeMap::new(),
            new_view_deadline: None,
            view_change_attempts: 0,
            last_new_view: None,
            future: VecDeque::new(),
            new_view_floor: Seq(0),
            peer_status: BTreeMap::new(),
            fetched: BTreeMap::new(),
            last_fetch_at: None,
            view_change_resend_at: now,
            next_status_at: now,
            rng_state,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            config,
        }
    }

    /// A replica rebuilt from the records it persisted before it stopped. It comes back
    /// with its votes, prepared certificates, view and stable checkpoint; what it had
    /// executed past that checkpoint it re-learns from its peers.
    pub fn restore(config: ReplicaConfig, records: Vec<Record>, now: Time) -> Replica {
        let mut replica = Replica::new(config, now);
        for record in records {
            replica.apply_record(record);
        }
        replica.next_seq = replica.stable.seq.next();
        replica.reapply_new_view();
        if !replica.normal {
            // It was changing view when it stopped: its view change is resent from here.
            let view_change = replica.make_view_change(replica.view);
            replica.view_changes.insert(replica.config.id, view_change);
        }
        replica.outputs.clear();
        replica
    }

    /// After a restore in a view entered through a new-view message: its re-proposals are
    /// this view's pre-prepares for those sequence numbers (even if the replica stopped
    /// before recording them), and nothing at or below them may be proposed or accepted
    /// again in this view.
    fn reapply_new_view(&mut self) {
        let Some(new_view) = self.last_new_view.clone() else {
            return;
        };
        if !self.normal || new_view.body.view != self.view {
            return;
        }
        let (stable, _) = view_change::compute_new_view_entries(&new_view.body.view_changes);
        let mut floor = stable.seq;
        for entry in &new_view.body.entries {
            let seq = entry.pre_prepare.body.seq;
            floor = floor.max(seq);
            if !self.in_window(seq) {
                continue;
            }
            let view = self.view;
            let slot = self.slots.entry(seq).or_default();
            let accepted_here = slot
                .pre_prepare
                .as_ref()
                .is_some_and(|(pre_prepare, _)| pre_prepare.body.view == view);
            if slot.view <= view && !accepted_here {
                slot.enter_view(view);
                slot.pre_prepare = Some((entry.pre_prepare.clone(), entry.batch.clone()));
            }
        }
        self.new_view_floor = floor;
        self.next_seq = self.next_seq.max(floor.next());
    }

    fn apply_record(&mut self, record: Record) {
        match record {
            Record::View { view, normal } => {
                if view >= self.view {
                    self.view = view;
                    self.normal = normal;
                }
            }
            Record::NewView(new_view) => {
                if new_view.body.view >= self.view {
                    self.last_new_view = Some(new_view);
                }
            }
            Record::Stable { certificate, state } => {
                if certificate.seq > self.stable.seq {
                    self.exec = ExecState::from_snapshot(&state);
                    self.stable_state = state;
                    self.stable = certificate;
                    let low = self.stable.seq;
                    self.slots.retain(|seq, _| *seq > low);
                }
            }
            Record::Accepted { pre_prepare, batch } => {
                let seq = pre_prepare.body.seq;
                if seq > self.stable.seq {
                    let slot = self.slots.entry(seq).or_default();
                    if pre_prepare.body.view >= slot.view {
                        slot.enter_view(pre_prepare.body.view);
                        slot.pre_prepare = Some((pre_prepare, batch));
                    }
                }
            }
            // The order router's, restored by the driver.
            Record::ExecutionStable(_) => {}
            Record::Prepared { prepares } => {
                let Some(first) = prepares.first() else {
                    return;
                };
                let (view, seq) = (first.body.view, first.body.seq);
                if let Some(slot) = self.slots.get_mut(&seq)
                    && slot.view == view
                    && let Some((pre_prepare, batch)) = slot.pre_prepare.clone()
                {
                    slot.prepared_certificate = Some(zz_protocol::messages::PreparedCertificate {
                        pre_prepare,
                        prepares,
                        batch,
                    });
                    slot.commit_sent = true;
                }
            }
        }
    }

    pub fn id(&self) -> ReplicaId {
        self.config.id
    }
    pub fn view(&self) -> View {
        self.view
    }
    /// False while the replica is changing to [`Replica::view`].
    pub fn is_normal(&self) -> bool {
        self.normal
    }
    pub fn is_primary(&self) -> bool {
        self.primary_of(self.view) == self.config.id
    }
    pub fn last_executed(&self) -> Seq {
        self.exec.seq
    }
    pub fn stable_seq(&self) -> Seq {
        self.stable.seq
    }
    /// Each app's last per-app sequence number ordered (or reached by a state transfer),
    /// with the app's order chain up to it.
    pub fn app_heads(&self) -> impl Iterator<Item = AppHead> + '_ {
        (self.exec.apps.iter()).map(|(app, (seq, chain))| AppHead {
            app: *app,
            seq: *seq,
            chain: *chain,
        })
    }
    /// The latest stable checkpoint: (seq, state digest).
    pub fn stable_checkpoint(&self) -> (Seq, Digest) {
        (self.stable.seq, self.stable.digest)
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn params(&self) -> &ProtocolParams {
        &self.config.params
    }
    /// Requests known here and not ordered yet.
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Panics if any log, table or buffer exceeds its bound. The simulator calls it after
    /// every step: whatever Byzantine replicas send, memory stays bounded.
    pub fn assert_bounds(&self) {
        let window = self.config.params.window;
        let (low, high) = (self.low_watermark(), self.high_watermark());
        assert!(self.slots.keys().all(|seq| *seq > low && *seq <= high));
        assert!(
            self.checkpoint_votes
                .keys()
                .all(|seq| *seq > low && *seq <= high)
        );
        assert!(self.fetched.keys().all(|seq| *seq > low && *seq <= high));
        assert!(
            self.own_checkpoints.len() as u64
                <= window / self.config.params.checkpoint_interval + 1
        );
        let replicas = self.config.params.replica_count();
        assert!(self.view_changes.len() <= replicas);
        assert!(self.peer_status.len() < replicas);
        assert!(self.future.len() <= FUTURE_MESSAGES_MAX);
        assert!(self.waiting.len() <= WAITING_CLIENTS_MAX);
        assert!(self.arrivals.len() <= 2 * WAITING_CLIENTS_MAX + 1);
        assert!(self.exec.seq >= self.stable.seq && self.exec.seq <= high);
        for slot in self.slots.values() {
            assert!(slot.prepares.len() <= replicas && slot.commits.len() <= replicas);
        }
    }

    /// The next output to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Replica::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut deadline = self.next_status_at;
        if let Some(view_change) = self.view_change_deadline() {
            deadline = deadline.min(view_change);
        }
        Some(deadline)
    }

    /// Feed one verified message.
    pub fn handle_message(&mut self, now: Time, message: Verified) {
        self.now = self.now.max(now);
        let (from, body) = message.into_parts();
        let sender = match from {
            NodeId::Replica(replica) if replica != self.config.id => Some(replica),
            NodeId::Replica(_) => {
                self.drop_message("from-self");
                return;
            }
            NodeId::Client(_) => None,
            NodeId::Execution(_) | NodeId::Activator(_) => {
                // Execution reports and the activator's notices are taken by the driver;
                // the ordering core itself never uses them.
                self.drop_message("execution-report");
                return;
            }
        };
        match (body, sender) {
            (Message::Request(request), _) => self.handle_request(from, request),
            (message, Some(sender)) => self.handle_replica_message(sender, message),
            (_, None) => self.drop_message("client-sent-replica-message"),
        }
        self.after_event();
    }

    /// Timers: status reports, view-change and new-view timeouts.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        if self.now >= self.next_status_at {
            let interval = self.config.params.status_interval_ms * 1000;
            self.next_status_at = self.now.saturating_add_micros(interval);
            self.broadcast_status();
            self.resend_view_change();
            self.retransmit_stalled_slots();
            self.resend_checkpoint_votes();
        }
        if let Some(deadline) = self.view_change_deadline()
            && self.now >= deadline
        {
            let target = self.view.next();
            self.start_view_change(target);
        }
        self.after_event();
    }

    fn handle_replica_message(&mut self, sender: ReplicaId, message: Message) {
        match message {
            Message::PrePrepare { pre_prepare, batch } => {
                self.handle_pre_prepare(sender, pre_prepare, batch)
            }
            Message::Prepare(prepare) => self.handle_prepare(sender, prepare),
            Message::Commit(commit) => self.handle_commit(sender, commit),
            Message::Checkpoint(checkpoint) => self.handle_checkpoint(checkpoint),
            Message::ViewChange(view_change) => self.handle_view_change(view_change),
            Message::NewView(new_view) => self.handle_new_view(new_view),
            Message::Status(status) => self.handle_status(sender, status),
            Message::FetchBatches(fetch) => self.handle_fetch(sender, fetch),
            Message::Batches(batches) => self.handle_batches(sender, batches),
            Message::Request(_)
            | Message::Order(_)
            | Message::Reply(_)
            | Message::AppOrder(_)
            | Message::Executed(_)
            | Message::ExecutionCheckpoint(_)
            | Message::ExecutionStable(_)
            | Message::Wake(_)
            | Message::Faulty(_)
            | Message::Membership(_)
            | Message::Join(_)
            | Message::FetchOrders(_)
            | Message::FetchBucket(_)
            | Message::BucketData(_)
            | Message::FetchChainedOrders(_)
            | Message::ChainedOrders(_) => self.drop_message("unexpected-kind"),
        }
    }

    /// Work that may become possible after any event: execute, propose.
    fn after_event(&mut self) {
        self.try_execute();
        self.try_propose();
    }

    fn primary_of(&self, view: View) -> ReplicaId {
        view.primary(self.config.params.replica_count())
    }

    fn low_watermark(&self) -> Seq {
        self.stable.seq
    }

    fn high_watermark(&self) -> Seq {
        Seq(self.stable.seq.0 + self.config.params.window)
    }

    fn in_window(&self, seq: Seq) -> bool {
        seq > self.low_watermark() && seq <= self.high_watermark()
    }

    fn drop_message(&mut self, reason: &'static str) {
        tracing::debug!(replica = %self.config.id, reason, "dropped message");
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    fn broadcast(&mut self, message: Message) {
        self.outputs.push_back(Output::Broadcast(message));
    }

    fn send(&mut self, to: ReplicaId, message: Message) {
        if to != self.config.id {
            self.outputs.push_back(Output::Send { to, message });
        }
    }

    fn persist(&mut self, record: Record) {
        self.outputs.push_back(Output::Persist(record));
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: the seed comes from the caller, so proposals replay deterministically.
        self.rng_state = self.rng_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn wall_clock_ms(&self) -> u64 {
        self.config.wall_clock_at_zero_ms + self.now.as_millis()
    }

    /// The base view-change timeout, doubled for each consecutive failed attempt.
    fn view_change_timeout_micros(&self) -> u64 {
        let exponent = self
            .view_change_attempts
            .min(VIEW_CHANGE_BACKOFF_EXPONENT_MAX);
        self.config.params.view_change_timeout_ms * 1000 * (1u64 << exponent)
    }

    fn view_change_deadline(&self) -> Option<Time> {
        if !self.normal {
            return self.new_view_deadline;
        }
        if self.is_primary() {
            return None;
        }
        let oldest = self.waiting.values().map(|waiting| waiting.since).min()?;
        Some(oldest.saturating_add_micros(self.view_change_timeout_micros()))
    }

    /// PBFT section 4.1: a request with the timestamp last ordered for its client is a
    /// retransmission (answered again), an older one is ignored, a newer one is ordered.
    fn handle_request(&mut self, from: NodeId, request: AuthenticatedRequest) {
        let client = request.request.client;
        let timestamp = request.request.timestamp;
        let last = self.exec.clients.get(&client).copied();
        if let Some(last) = last
            && timestamp <= last
        {
            if timestamp == last {
                self.outputs.push_back(Output::AlreadyOrdered {
                    app: request.request.app,
                    client,
                    timestamp,
                });
            } else {
                self.drop_message("stale-request");
            }
            return;
        }
        let from_client = matches!(from, NodeId::Client(_));
        let known = self
            .waiting
            .get(&client)
            .is_some_and(|waiting| waiting.request.request.timestamp >= timestamp);
        if !known {
            if !self.remember_request(request.clone()) {
                return;
            }
            if self.is_primary() && self.normal {
                if self.arrivals.len() >= 2 * WAITING_CLIENTS_MAX {
                    // Clients that replaced their request left stale arrivals behind.
                    let waiting = &self.waiting;
                    self.arrivals.retain(|(client, timestamp)| {
                        waiting.get(client).is_some_and(|w| {
                            w.request.request.timestamp == *timestamp && !w.proposed
                        })
                    });
                }
                self.arrivals.push_back((client, timestamp));
            }
        }
        // A backup that hears from a client directly relays to the primary (section 4.4).
        if from_client && !self.is_primary() {
            let primary = self.primary_of(self.view);
            self.send(primary, Message::Request(request));
        }
    }

    /// Track a request until it is ordered. Returns false when the table is full.
    fn remember_request(&mut self, request: AuthenticatedRequest) -> bool {
        let client = request.request.client;
        if !self.waiting.contains_key(&client) && self.waiting.len() >= WAITING_CLIENTS_MAX {
            self.drop_message("waiting-table-full");
            return false;
        }
        let since = self.now;
        self.waiting.insert(
            client,
            Waiting {
                request,
                since,
                proposed: false,
            },
        );
        true
    }

    /// View changes get lost like any message; until the view is entered, resend ours
    /// (PBFT retransmits view-change messages the same way).
    fn resend_view_change(&mut self) {
        if self.normal || self.now < self.view_change_resend_at {
            return;
        }
        let me = self.config.id;
        let Some(view_change) = self.view_changes.get(&me).cloned() else {
            return;
        };
        if view_change.body.new_view == self.view {
            let interval = self.config.params.view_change_timeout_ms * 1000 / 2;
            self.view_change_resend_at = self.now.saturating_add_micros(interval);
            self.broadcast(Message::ViewChange(view_change));
        }
    }

    /// Checkpoint votes get lost too; until a checkpoint is stable, resend ours, or a
    /// window whose votes each missed someone would never move.
    fn resend_checkpoint_votes(&mut self) {
        let me = self.config.id;
        let votes: Vec<_> = self
            .checkpoint_votes
            .values()
            .filter_map(|votes| votes.get(&me).cloned())
            .collect();
        for vote in votes {
            self.broadcast(Message::Checkpoint(vote));
        }
    }

    fn broadcast_status(&mut self) {
        let status = Status {
            view: self.view,
            last_executed: self.exec.seq,
            stable: self.stable.seq,
        };
        self.broadcast(Message::Status(status));
    }

    /// Everything a restarted replica needs, as records; replaces the persisted log.
    fn durable_records(&self) -> Vec<Record> {
        let mut records = vec![
            Record::Stable {
                certificate: self.stable.clone(),
                state: self.stable_state.clone(),
            },
            Record::View {
                view: self.view,
                normal: self.normal,
            },
        ];
        if let Some(new_view) = &self.last_new_view {
            records.push(Record::NewView(new_view.clone()));
        }
        for slot in self.slots.values() {
            // The prepared certificate may be from an older view than the current votes.
            if let Some(cert) = &slot.prepared_certificate {
                records.push(Record::Accepted {
                    pre_prepare: cert.pre_prepare.clone(),
                    batch: cert.batch.clone(),
                });
                records.push(Record::Prepared {
                    prepares: cert.prepares.clone(),
                });
            }
            if let Some((pre_prepare, batch)) = &slot.pre_prepare {
                let already = slot
                    .prepared_certificate
                    .as_ref()
                    .is_some_and(|cert| cert.pre_prepare == *pre_prepare);
                if !already {
                    records.push(Record::Accepted {
                        pre_prepare: pre_prepare.clone(),
                        batch: batch.clone(),
                    });
                }
            }
        }
        records
    }

    fn sign<T: zz_protocol::crypto::SignedBody>(&self, body: T) -> Signed<T> {
        Signed::sign(body, self.config.id, &self.config.signing_key)
    }
}

#[cfg(test)]
mod tests;
