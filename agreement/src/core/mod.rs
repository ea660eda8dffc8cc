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
//!
//! The replica's state is grouped by the part of the protocol that owns it, each in its
//! submodule: the normal case and the proposer (`normal`, with `slot` for one sequence
//! number's votes), checkpoints and the executed state they cover (`checkpoint`), the
//! request queue (`requests`), view changes (`view_change`), catching up (`catch_up`),
//! the records it persists and restores from (`persist`, `durable`), and its counters.

mod catch_up;
mod checkpoint;
mod counters;
mod durable;
mod normal;
pub mod persist;
mod proposals;
mod requests;
mod slot;
mod stability;
mod view_change;

pub use counters::{Counters, DropReason};
pub use stability::STABLE_VOTES_KEPT_PER_REPLICA;

use catch_up::CatchUpState;
use checkpoint::{CheckpointLog, ExecState};
use normal::Proposer;
use persist::Record;
use proposals::AwaitedProposals;
use requests::RequestQueue;
use slot::Slot;
use stability::StabilityVotes;
use std::collections::{BTreeMap, VecDeque};
use view_change::ViewChangeState;
use zz_protocol::crypto::{Ed25519SigningKey, Signed};
use zz_protocol::messages::{AppHead, AppOrder, ExecutionCheckpoint, Message, Order, Status};
use zz_protocol::validate::genesis_checkpoint;
use zz_protocol::{
    AppId, ClientId, Digest, NodeId, ProtocolParams, ReplicaId, Seq, Time, Verified, View,
};

/// Messages for views this replica has not entered yet, kept until it enters them.
pub const FUTURE_MESSAGES_MAX: usize = 1024;
/// Bytes of future-view messages kept from one sender at least; more when one batch is
/// larger ([`future_bytes_per_sender`]).
pub const FUTURE_BYTES_PER_SENDER: usize = 16 * 1024 * 1024;

/// Bytes of future-view messages kept from one sender at most: enough for one full
/// pre-prepare, and never a sender's licence to fill memory.
pub fn future_bytes_per_sender(params: &ProtocolParams) -> usize {
    // Beyond the requests, a pre-prepare carries stability certificates and a header.
    FUTURE_BYTES_PER_SENDER.max(params.batch_bytes_max().saturating_add(1024 * 1024))
}

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
    /// A committed batch, with its digest; emitted strictly in sequence order, each
    /// sequence number once.
    Order { order: Order, digest: Digest },
    /// The same batch's requests for one app, numbered in that app's own gap-free
    /// sequence; emitted right after the batch's [`Output::Order`], one per app in it.
    AppOrder(AppOrder),
    /// The replica jumped to a checkpoint: sequence numbers up to `to` will never be ordered
    /// here; whoever consumes orders must fetch that state elsewhere. `apps` is where each
    /// app's orders stood at that checkpoint (certified with it).
    Skipped { to: Seq, apps: Vec<AppHead> },
    /// A certificate ordered in the last [`Output::Order`]'s batch made this the app's
    /// stable execution checkpoint; emitted after that batch's [`Output::AppOrder`]s.
    ExecutionStable(ExecutionCheckpoint),
    /// A client retransmitted the request that was ordered last for it.
    AlreadyOrdered {
        app: AppId,
        client: ClientId,
        timestamp: u64,
    },
}

/// A PBFT agreement replica. See the module documentation for the calling protocol.
pub struct Replica {
    config: ReplicaConfig,
    now: Time,
    /// The view this replica is in, or is changing to when `normal` is false.
    view: View,
    normal: bool,
    /// The message log: each sequence number's progress through the three phases, inside
    /// the watermarks.
    slots: BTreeMap<Seq, Slot>,
    /// What this replica executed: the state its checkpoints cover.
    exec: ExecState,
    /// The stable checkpoint (the low watermark) and the votes for later ones.
    checkpoints: CheckpointLog,
    /// Requests known here and not ordered yet.
    requests: RequestQueue,
    /// The primary's next sequence number and proposal seeds.
    proposer: Proposer,
    /// View changes received and sent, the new view, and messages for views ahead.
    view_change: ViewChangeState,
    /// What peers report, and batches fetched from them, for catching up.
    catch_up: CatchUpState,
    /// Batches of the current view's re-proposals still to fetch, and answers to peers.
    proposals: AwaitedProposals,
    /// Votes that execution checkpoints are stable, until one is ordered.
    stability: StabilityVotes,
    next_status_at: Time,
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
        Replica {
            now,
            view: View(0),
            normal: true,
            slots: BTreeMap::new(),
            exec: ExecState::from_snapshot(&genesis),
            checkpoints: CheckpointLog::at_genesis(genesis),
            requests: RequestQueue::default(),
            proposer: Proposer::new(config.seed),
            view_change: ViewChangeState::new(now),
            catch_up: CatchUpState::default(),
            proposals: AwaitedProposals::default(),
            stability: StabilityVotes::default(),
            next_status_at: now,
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
        let new_view_known = (replica.view_change.last_new_view.as_ref())
            .is_some_and(|new_view| new_view.body.view == replica.view);
        if replica.normal && replica.view > View(0) && !new_view_known {
            // Normal in a view without its new view (a log written by an older zz, which
            // recorded the view first): changing view again is safe, serving in it is not.
            replica.normal = false;
        }
        replica.proposer.next_seq = replica.checkpoints.stable.seq.next();
        replica.reapply_new_view();
        replica.restore_own_votes();
        if !replica.normal {
            // It was changing view when it stopped: its view change is resent from here.
            let view_change = replica.make_view_change(replica.view);
            replica
                .view_change
                .received
                .insert(replica.config.id, view_change);
        }
        replica.outputs.clear();
        replica
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
        self.checkpoints.stable.seq
    }
    /// Each app's last per-app sequence number ordered (or reached by a state transfer),
    /// with the app's order chain up to it.
    pub fn app_heads(&self) -> impl Iterator<Item = AppHead> + '_ {
        self.exec.app_heads()
    }
    /// The pre-prepare accepted (or, as primary, proposed) for `seq` in the view of its
    /// votes: (view, digest). For checkers: a restarted replica must still hold each one
    /// it voted for in its view.
    pub fn accepted_at(&self, seq: Seq) -> Option<(View, Digest)> {
        let slot = self.slots.get(&seq)?;
        let (pre_prepare, _) = slot.pre_prepare.as_ref()?;
        Some((pre_prepare.body.view, pre_prepare.body.digest))
    }
    /// The prepared certificate held for `seq`: (view, digest).
    pub fn prepared_at(&self, seq: Seq) -> Option<(View, Digest)> {
        let (certificate, _) = self.slots.get(&seq)?.prepared_certificate.as_ref()?;
        Some((certificate.view(), certificate.pre_prepare.body.digest))
    }
    /// The latest stable checkpoint: (seq, state digest).
    pub fn stable_checkpoint(&self) -> (Seq, Digest) {
        (self.checkpoints.stable.seq, self.checkpoints.stable.digest)
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn params(&self) -> &ProtocolParams {
        &self.config.params
    }
    /// Requests known here and not ordered yet.
    pub fn waiting_count(&self) -> usize {
        self.requests.waiting.len()
    }

    /// Panics if any log, table or buffer exceeds its bound. The simulator calls it after
    /// every step: whatever Byzantine replicas send, memory stays bounded.
    pub fn assert_bounds(&self) {
        let window = self.config.params.window;
        let (low, high) = (self.low_watermark(), self.high_watermark());
        assert!(self.slots.keys().all(|seq| *seq > low && *seq <= high));
        assert!(
            self.checkpoints
                .votes
                .keys()
                .all(|seq| *seq > low && *seq <= high)
        );
        assert!(
            self.catch_up
                .fetched
                .keys()
                .all(|seq| *seq > low && *seq <= high)
        );
        assert!(
            self.checkpoints.own.len() as u64
                <= window / self.config.params.checkpoint_interval + 1
        );
        let replicas = self.config.params.replica_count();
        assert!(self.view_change.received.len() <= replicas);
        assert!(self.catch_up.peer_status.len() < replicas);
        assert!(self.view_change.future.len() <= FUTURE_MESSAGES_MAX);
        for sender in (0..replicas as u32).map(ReplicaId) {
            let bytes: usize = (self.view_change.future.iter())
                .filter(|(from, _, _)| *from == sender)
                .map(|(_, size, _)| size)
                .sum();
            assert!(bytes <= future_bytes_per_sender(&self.config.params));
        }
        assert!(self.view_change.new_view_resent.len() < replicas);
        assert!(self.proposals.answered.len() < replicas);
        assert!(
            (self.proposals.awaited.keys()).all(|seq| *seq > low && *seq <= high),
            "re-proposals are awaited inside the watermarks only"
        );
        for sender in (0..replicas as u32).map(ReplicaId) {
            let bound = catch_up::fetched_bytes_per_sender(&self.config.params);
            assert!(self.catch_up.body_bytes_of(sender) <= bound);
        }
        for offers in self.catch_up.fetched.values() {
            assert!(offers.bodies.len() <= offers.digests.len());
        }
        assert!(self.requests.waiting.len() <= WAITING_CLIENTS_MAX);
        assert!(self.requests.arrivals.len() <= 2 * WAITING_CLIENTS_MAX + 1);
        assert!(self.exec.seq >= self.checkpoints.stable.seq && self.exec.seq <= high);
        for slot in self.slots.values() {
            assert!(slot.prepares.len() <= replicas && slot.commits.len() <= replicas);
            assert!(slot.earlier.len() <= slot::EARLIER_KEPT);
        }
        let apps = self.exec.apps.len();
        assert!(self.stability.entry_count() <= apps * replicas * STABLE_VOTES_KEPT_PER_REPLICA);
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
                self.drop_message(DropReason::FromSelf);
                return;
            }
            NodeId::Client(_) => None,
            NodeId::Execution(_) | NodeId::Activator(_) => {
                // Execution reports and the activator's notices are taken by the driver;
                // the ordering core itself never uses them.
                self.drop_message(DropReason::ExecutionReport);
                return;
            }
        };
        match (body, sender) {
            (Message::Request(request), _) => self.handle_request(from, request),
            (message, Some(sender)) => self.handle_replica_message(sender, message),
            (_, None) => self.drop_message(DropReason::ClientSentReplicaMessage),
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
            self.resend_stable_votes();
            self.ask_for_awaited_proposals();
            // A new primary waiting for better view changes gives up in time.
            self.check_view_change_quorum();
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
            Message::StableVote(vote) => self.handle_stable_vote(vote),
            Message::Commit(commit) => self.handle_commit(sender, commit),
            Message::Checkpoint(checkpoint) => self.handle_checkpoint(checkpoint),
            Message::ViewChange(view_change) => self.handle_view_change(view_change),
            Message::NewView(new_view) => self.handle_new_view(new_view),
            Message::Status(status) => self.handle_status(sender, status),
            Message::FetchBatches(fetch) => self.handle_fetch(sender, fetch),
            Message::Batches(batches) => self.handle_batches(sender, batches),
            Message::FetchProposals(fetch) => self.handle_fetch_proposals(sender, fetch),
            Message::Proposal(proposal) => self.handle_proposal(proposal),
            Message::Request(_)
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
            | Message::ChainedOrders(_) => self.drop_message(DropReason::UnexpectedKind),
        }
    }

    /// Work that may become possible after any event: execute, propose.
    fn after_event(&mut self) {
        self.try_execute();
        self.try_propose();
        self.track_formable_certificates();
    }

    fn primary_of(&self, view: View) -> ReplicaId {
        view.primary(self.config.params.replica_count())
    }

    fn low_watermark(&self) -> Seq {
        self.checkpoints.stable.seq
    }

    fn high_watermark(&self) -> Seq {
        Seq(self.checkpoints.stable.seq.0 + self.config.params.window)
    }

    fn in_window(&self, seq: Seq) -> bool {
        seq > self.low_watermark() && seq <= self.high_watermark()
    }

    fn drop_message(&mut self, reason: DropReason) {
        tracing::debug!(replica = %self.config.id, reason = reason.name(), "dropped message");
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

    fn wall_clock_ms(&self) -> u64 {
        self.config.wall_clock_at_zero_ms + self.now.as_millis()
    }

    fn broadcast_status(&mut self) {
        let status = Status {
            view: self.view,
            last_executed: self.exec.seq,
            stable: self.checkpoints.stable.seq,
        };
        self.broadcast(Message::Status(status));
    }

    fn sign<T: zz_protocol::crypto::SignedBody>(&self, body: T) -> Signed<T> {
        Signed::sign(body, self.config.id, &self.config.signing_key)
    }
}

#[cfg(test)]
mod proposal_tests;
#[cfg(test)]
mod stability_tests;
#[cfg(test)]
mod tests;
