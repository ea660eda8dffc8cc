//! The execution driver: an [`ExecutionReplica`] with its endpoint and bus. It opens
//! incoming frames (dropping and counting what fails), feeds orders to the core, answers
//! clients' retransmissions from the reply cache, and sends the core's outputs: replies to
//! clients, reports to every agreement replica. A woken replica joins through it
//! ([`Joining`]: restart from the stable checkpoint f+1 agreement replicas name) and
//! fetches buckets from the app's other replicas, lazily and in the background
//! ([`BucketFetcher`]); it leases the snapshots fetchers ask it for ([`Leases`]).
//!
//! Each checkpoint goes to its [`CheckpointSink`] before its report leaves: the report is
//! sent once the sink says the checkpoint is durable (persist before sending; replies are
//! not held). See [`crate::durable`].
//!
//! Calling protocol: [`ExecutionDriver::handle_frame`] for every frame,
//! [`ExecutionDriver::join`] when woken, [`ExecutionDriver::resume`] once after starting
//! from a checkpoint restored from disk, [`ExecutionDriver::handle_checkpoint_saved`]
//! whenever the sink reports a write, and [`ExecutionDriver::handle_timeout`] whenever
//! [`ExecutionDriver::poll_timeout`] is reached (ask it again after every call). No clock,
//! no tasks: time comes in as an argument, so the node and the simulator run the same
//! code on the same schedule.

use crate::core::{ExecOutput, ExecutionReplica};
use crate::durable::{CheckpointSink, MemoryCheckpoints};
use crate::fault::FaultyOutputs as _;
use crate::fetcher::{BucketFetcher, Wanted};
use crate::join::{JoinStep, Joining};
use crate::leases::Leases;
use crate::reports::LastReports;
use bytes::Bytes;
use zz_cluster::Fault;
use zz_protocol::bus::MessageBus;
use zz_protocol::messages::{
    BucketData, ExecutionCheckpoint, FetchBucket, FetchOrders, Join, Message,
};
use zz_protocol::{
    Digest, Endpoint, ExecutionId, FrameCounters, NodeId, RejectReason, ReplicaId, Seq, Time,
};
use zz_state_fetch::{BucketIndex, BucketProof};

/// How long a replica holding orders it cannot execute yet (copies from fewer than f+1
/// agreement replicas, or a gap before them) waits without progress before it asks for
/// the orders after what it executed.
pub const ORDERS_RETRY_MICROS: u64 = 200_000;

mod durability;

pub use durability::DurabilityCounters;

/// See the module documentation. `S` is where checkpoints become durable: in memory
/// unless [`ExecutionDriver::with_checkpoint_sink`] says otherwise.
pub struct ExecutionDriver<B, S = MemoryCheckpoints> {
    replica: ExecutionReplica,
    endpoint: Endpoint,
    bus: B,
    agreement_replicas: u32,
    counters: FrameCounters,
    /// Executed and checkpoint reports since the last [`ExecutionDriver::take_reports`].
    reports: Vec<ExecOutput>,
    /// Buckets the core is waiting for, asked for at the end of the call that found them.
    needed: Vec<BucketIndex>,
    /// While woken and not yet restarted from a stable checkpoint.
    join: Option<Joining>,
    /// The last executed sequence number the driver saw, and when it first saw it (or
    /// last asked for orders after it).
    progress: (Seq, Time),
    fetcher: BucketFetcher,
    leases: Leases,
    /// An injected fault (honest unless an operator or the simulator says otherwise).
    fault: Fault,
    sink: S,
    /// Checkpoint reports waiting for their checkpoint to be durable, in sequence order.
    unsaved: std::collections::VecDeque<ExecutionCheckpoint>,
    durability: DurabilityCounters,
    /// The stable checkpoint the replica last started over from, if it did.
    started_from: Option<Seq>,
    /// The last reports, sent again while execution is idle.
    last_reports: LastReports,
}

impl<B: MessageBus> ExecutionDriver<B> {
    pub fn new(
        replica: ExecutionReplica,
        endpoint: Endpoint,
        bus: B,
        agreement_replicas: u32,
    ) -> Self {
        assert!(matches!(endpoint.id(), NodeId::Execution(_)));
        ExecutionDriver {
            replica,
            endpoint,
            bus,
            agreement_replicas,
            counters: FrameCounters::default(),
            reports: Vec::new(),
            needed: Vec::new(),
            join: None,
            progress: (Seq(0), Time(0)),
            fetcher: BucketFetcher::default(),
            leases: Leases::default(),
            fault: Fault::Honest,
            sink: MemoryCheckpoints::default(),
            unsaved: std::collections::VecDeque::new(),
            durability: DurabilityCounters::default(),
            started_from: None,
            last_reports: LastReports::default(),
        }
    }
}

impl<B: MessageBus, S: CheckpointSink> ExecutionDriver<B, S> {
    /// Make checkpoints durable through `sink` (before any checkpoint is made).
    pub fn with_checkpoint_sink<T: CheckpointSink>(self, sink: T) -> ExecutionDriver<B, T> {
        assert!(
            self.unsaved.is_empty(),
            "the sink is chosen before checkpoints"
        );
        ExecutionDriver {
            replica: self.replica,
            endpoint: self.endpoint,
            bus: self.bus,
            agreement_replicas: self.agreement_replicas,
            counters: self.counters,
            reports: self.reports,
            needed: self.needed,
            join: self.join,
            progress: self.progress,
            fetcher: self.fetcher,
            leases: self.leases,
            fault: self.fault,
            sink,
            unsaved: self.unsaved,
            durability: self.durability,
            started_from: self.started_from,
            last_reports: self.last_reports,
        }
    }

    /// Fetch buckets from these execution replicas (the app's other members).
    pub fn with_peers(mut self, peers: Vec<ExecutionId>) -> Self {
        self.fetcher = BucketFetcher::new(peers);
        self
    }

    /// Misbehave from now on as `fault` says (fault injection).
    pub fn set_fault(&mut self, fault: Fault) {
        self.fault = fault;
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    pub fn replica(&self) -> &ExecutionReplica {
        &self.replica
    }
    pub fn counters(&self) -> &FrameCounters {
        &self.counters
    }

    /// The Executed and checkpoint reports sent since the last call, in order.
    pub fn take_reports(&mut self) -> Vec<ExecOutput> {
        std::mem::take(&mut self.reports)
    }

    /// Buckets asked for and not installed yet.
    #[cfg(test)]
    pub(crate) fn fetches_in_flight(&self) -> usize {
        self.fetcher.in_flight()
    }

    /// Whether the replica is still waiting for f+1 matching stable checkpoints.
    pub fn is_joining(&self) -> bool {
        self.join.is_some()
    }

    /// The stable checkpoint the replica last started over from (joining, or told by f+1
    /// agreement replicas that it is behind one), its state fetched from peers.
    pub fn started_from(&self) -> Option<Seq> {
        self.started_from
    }

    /// Start joining, as a woken replica does: ask every agreement replica for the app's
    /// stable checkpoint. Once f+1 answer alike (see [`Joining`]) the replica restarts
    /// from it, its state pinned to that root, and asks for the orders after it.
    pub fn join(&mut self, now: Time) {
        self.join = Some(Joining::new(now));
        self.broadcast_join();
    }

    /// When [`ExecutionDriver::handle_timeout`] has work: a join to settle or resend,
    /// orders to ask for again, a lease to expire, a bucket ask due again.
    pub fn poll_timeout(&self) -> Option<Time> {
        let join = self.join.as_ref().map(Joining::poll_timeout);
        let orders = (self.join.is_none() && self.replica.waits_for_orders())
            .then(|| self.progress.1.saturating_add_micros(ORDERS_RETRY_MICROS));
        let fetch = self
            .fetching()
            .then(|| self.fetcher.poll_timeout())
            .flatten();
        let resend = self
            .join
            .is_none()
            .then(|| self.last_reports.poll_timeout());
        [
            join,
            orders,
            self.leases.poll_timeout(),
            fetch,
            resend.flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timed work. Joining and catching up hang on single messages the network may lose:
    /// a join settles or asks again, a replica with orders it cannot execute that made no
    /// progress for [`ORDERS_RETRY_MICROS`] asks for the orders after what it executed,
    /// and unanswered bucket asks go to another peer.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(join) = self.join.as_mut() {
            match join.handle_timeout(self.endpoint.params(), now) {
                JoinStep::Wait => {}
                JoinStep::AskAgain => self.broadcast_join(),
                JoinStep::StartFrom(seq, root) => {
                    self.join = None;
                    self.start_from(now, seq, root);
                }
            }
        } else if self.replica.waits_for_orders()
            && now.saturating_sub(self.progress.1) >= ORDERS_RETRY_MICROS
        {
            self.progress.1 = now;
            let fetch = Message::FetchOrders(FetchOrders {
                app: self.replica.app(),
                after: self.replica.last_executed(),
            });
            self.broadcast(&fetch);
        }
        if self.join.is_none()
            && let Some((executed, checkpoint)) = self.last_reports.due(now)
        {
            if let Some(executed) = executed {
                self.broadcast(&Message::Executed(self.fault.executed(executed)));
            }
            if let Some(checkpoint) = checkpoint {
                let reported = self.fault.checkpoint(checkpoint);
                self.broadcast(&Message::ExecutionCheckpoint(reported));
            }
        }
        if let Some(seqs) = self.leases.expire(now) {
            self.replica.store_mut().lease_snapshots(seqs);
        }
        self.fetch(now);
    }

    /// Note when execution last progressed. Orders that wait (copies from fewer than f+1
    /// agreement replicas, or a gap before them) are asked for again once execution has
    /// not progressed for [`ORDERS_RETRY_MICROS`]: right away when they come after an
    /// idle spell, since copies lost then are the likeliest reason for the wait.
    fn note_progress(&mut self, now: Time) {
        let executed = self.replica.last_executed();
        if executed != self.progress.0 {
            self.progress = (executed, now);
            self.last_reports.progressed(now);
        }
    }

    /// Whether buckets of a pinned checkpoint are still missing and a peer can serve them.
    fn fetching(&self) -> bool {
        let store = self.replica.store();
        store.pin().is_some() && !store.is_complete() && self.fetcher.has_peers()
    }

    /// Lazy and background state fetch: buckets execution waits on first, then, while the
    /// store still misses buckets, more of them in the background, so the replica soon
    /// owns the whole state; asks due again go to another peer.
    fn fetch(&mut self, now: Time) {
        let waited_on = std::mem::take(&mut self.needed);
        let Some((seq, _)) = self.replica.store().pin() else {
            return;
        };
        if !self.fetching() {
            self.fetcher.clear();
            return;
        }
        let store = self.replica.store();
        let wanted = Wanted {
            waited_on: &waited_on,
            missing: store.missing_buckets(),
            eager: self.replica.fetches_whole_state_first(),
        };
        let asks = self.fetcher.poll_asks(now, wanted);
        let app = self.replica.app();
        for (peer, bucket) in asks {
            let fetch = Message::FetchBucket(FetchBucket {
                app,
                seq,
                bucket: bucket.0,
            });
            self.send(NodeId::Execution(peer), &fetch);
        }
    }

    fn broadcast_join(&mut self) {
        let join = Message::Join(Join {
            app: self.replica.app(),
        });
        self.broadcast(&join);
    }

    /// An agreement replica's answer to [`join`](Self::join).
    fn handle_join_answer(&mut self, now: Time, from: ReplicaId, checkpoint: ExecutionCheckpoint) {
        if checkpoint.app != self.replica.app() {
            return self.reject(RejectReason::OtherApp);
        }
        let Some(join) = self.join.as_mut() else {
            return;
        };
        let params = self.endpoint.params();
        let named = (checkpoint.seq, checkpoint.root);
        if let Some((seq, root)) = join.handle_answer(params, now, from, named) {
            self.join = None;
            self.start_from(now, seq, root);
        }
    }

    /// Start over from the stable checkpoint `(seq, root)` f+1 agreement replicas vouched
    /// for, and ask for the orders after it.
    fn start_from(&mut self, now: Time, seq: Seq, root: Digest) {
        tracing::info!(app = %self.replica.app(), %seq, "starting from the stable checkpoint");
        self.replica.restart_from(seq, root);
        self.started_from = Some(seq);
        self.last_reports.clear();
        if seq > Seq(0) {
            self.sink.stable(seq);
        }
        self.needed.clear();
        self.fetcher.clear();
        self.note_progress(now);
        let fetch = Message::FetchOrders(FetchOrders {
            app: self.replica.app(),
            after: seq,
        });
        self.broadcast(&fetch);
    }

    fn reject(&mut self, reason: RejectReason) {
        self.counters.count_rejection(reason);
    }

    /// One frame from the network, at `now`.
    pub fn handle_frame(&mut self, now: Time, frame: &[u8]) {
        self.counters.frames_received += 1;
        let verified = match self.endpoint.open(frame) {
            Ok(verified) => verified,
            Err(rejection) => {
                tracing::debug!(app = %self.replica.app(), %rejection, "rejected frame");
                return self.reject(rejection.reason());
            }
        };
        match verified.into_parts() {
            (NodeId::Replica(from), Message::AppOrder(order)) => {
                self.replica.handle_order(from, order)
            }
            (NodeId::Replica(from), Message::ExecutionStable(checkpoint))
                if self.join.is_some() =>
            {
                self.handle_join_answer(now, from, checkpoint)
            }
            (NodeId::Replica(from), Message::ExecutionStable(checkpoint)) => {
                let stable_before = self.replica.store().latest_stable();
                let restart = self.replica.handle_stable(from, checkpoint);
                let stable = self.replica.store().latest_stable();
                if stable > stable_before
                    && let Some(stable) = stable
                {
                    self.sink.stable(stable);
                }
                if let Some((seq, root)) = restart {
                    tracing::info!(app = %self.replica.app(), %seq, executed = %self.replica.last_executed(), "behind a stable checkpoint: starting over from it");
                    self.start_from(now, seq, root);
                }
            }
            (NodeId::Execution(from), Message::FetchBucket(fetch)) => {
                let kept = fetch.app == self.replica.app()
                    && self.replica.store().snapshot(fetch.seq).is_some();
                if kept && let Some(seqs) = self.leases.asked(now, fetch.seq) {
                    self.replica.store_mut().lease_snapshots(seqs);
                }
                let proof = (fetch.app == self.replica.app())
                    .then(|| self.replica.store().snapshot(fetch.seq))
                    .flatten()
                    .and_then(|snapshot| snapshot.bucket_with_proof(BucketIndex(fetch.bucket)).ok())
                    .map(|proof| self.fault.bucket(proof))
                    .map(|proof| postcard::to_stdvec(&proof).expect("encoding cannot fail"));
                let answer = BucketData {
                    app: fetch.app,
                    seq: fetch.seq,
                    bucket: fetch.bucket,
                    proof,
                };
                self.send(NodeId::Execution(from), &Message::BucketData(answer));
            }
            (NodeId::Execution(from), Message::BucketData(data)) => {
                // Nothing in it is trusted: the proof must hold against the root this
                // replica was pinned to, or it is dropped and counted.
                let proof = data
                    .proof
                    .as_deref()
                    .and_then(|bytes| postcard::from_bytes::<BucketProof>(bytes).ok());
                let bucket = BucketIndex(data.bucket);
                if data.app != self.replica.app() {
                    self.reject(RejectReason::OtherApp);
                } else {
                    match proof {
                        Some(proof) if proof.index == bucket => {
                            match self.replica.install_bucket(proof) {
                                Ok(()) => self.fetcher.installed(bucket, from),
                                // A second answer to an ask that was retried: harmless, but
                                // unverified, so it earns the peer nothing.
                                Err(zz_state_fetch::StateError::BucketPresent { .. }) => {
                                    self.reject(RejectReason::BucketAlreadyPresent);
                                    self.fetcher.forget(bucket);
                                }
                                Err(error) => {
                                    tracing::debug!(app = %self.replica.app(), %error, "bucket refused");
                                    self.reject(RejectReason::BadBucket);
                                    self.fetcher.refused(now, bucket, from);
                                }
                            }
                        }
                        _ => {
                            self.reject(RejectReason::BucketMissingOrUndecodable);
                            self.fetcher.refused(now, bucket, from);
                        }
                    }
                }
            }
            (NodeId::Client(client), Message::Request(request)) => {
                let timestamp = request.request.timestamp;
                match self.replica.cached_reply(client, timestamp) {
                    Some(reply) => {
                        let reply = self.fault.reply(reply);
                        self.send(NodeId::Client(client), &Message::Reply(reply))
                    }
                    // Not executed yet (or long superseded): the order will bring it.
                    None => self.reject(RejectReason::RetransmissionNotCached),
                }
            }
            _ => self.reject(RejectReason::UnexpectedKind),
        }
        self.flush();
        self.note_progress(now);
        // Ask at once for buckets execution now waits on, and keep the background
        // pipeline full (answers free room).
        self.fetch(now);
    }

    fn flush(&mut self) {
        while let Some(output) = self.replica.poll_output() {
            match output {
                ExecOutput::Reply(reply) => {
                    let to = NodeId::Client(reply.client);
                    let reply = self.fault.reply(reply);
                    self.send(to, &Message::Reply(reply));
                }
                ExecOutput::Executed(executed) => {
                    self.broadcast(&Message::Executed(self.fault.executed(executed)));
                    self.last_reports.executed(executed);
                    self.reports.push(ExecOutput::Executed(executed));
                }
                ExecOutput::Checkpoint(checkpoint) => {
                    self.reports.push(ExecOutput::Checkpoint(checkpoint));
                    self.save_checkpoint(checkpoint);
                }
                ExecOutput::NeedBucket(bucket) => {
                    if !self.needed.contains(&bucket) {
                        self.needed.push(bucket);
                    }
                }
            }
        }
    }

    fn send(&mut self, to: NodeId, message: &Message) {
        if self.fault.sends_nothing() {
            return;
        }
        if let Some(frame) = self.endpoint.seal(to, message) {
            self.bus.send(to, Bytes::from(frame));
        }
    }

    /// To every agreement replica, with one authenticator.
    fn broadcast(&mut self, message: &Message) {
        if self.fault.sends_nothing() {
            return;
        }
        let frame = Bytes::from(self.endpoint.seal_multicast(message));
        for replica in 0..self.agreement_replicas {
            self.bus
                .send(NodeId::Replica(ReplicaId(replica)), frame.clone());
        }
    }
}

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod tests;
