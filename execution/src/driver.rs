//! The execution driver: an [`ExecutionReplica`] with its endpoint and bus. It opens
//! incoming frames (dropping and counting what fails), feeds orders to the core, answers
//! clients' retransmissions from the reply cache, and sends the core's outputs: replies to
//! clients, reports to every agreement replica. A woken replica joins through it (restart
//! from the stable checkpoint f+1 agreement replicas name) and fetches buckets from the
//! app's other replicas, lazily and in the background. No clock, no tasks: time comes in
//! as an argument, so the node and the simulator run the same code.

use crate::core::{ExecOutput, ExecutionReplica};
use crate::fault::FaultyOutputs as _;
use bytes::Bytes;
use std::collections::BTreeMap;
use zz_cluster::Fault;
use zz_protocol::bus::MessageBus;
use zz_protocol::messages::{
    BucketData, ExecutionCheckpoint, FetchBucket, FetchOrders, Join, Message,
};
use zz_protocol::{
    Digest, Endpoint, ExecutionId, FrameCounters, NodeId, RejectReason, ReplicaId, Seq, Time,
};
use zz_state_fetch::{BucketIndex, BucketProof};

/// See the module documentation.
pub struct ExecutionDriver<B> {
    replica: ExecutionReplica,
    endpoint: Endpoint,
    bus: B,
    agreement_replicas: u32,
    counters: FrameCounters,
    /// Executed and checkpoint reports since the last [`ExecutionDriver::take_reports`].
    reports: Vec<ExecOutput>,
    /// Buckets the core is waiting for (the lazy fetch path drains these).
    needed: Vec<BucketIndex>,
    /// While joining (woken): the stable checkpoints agreement replicas answered, by
    /// replica. None when not joining.
    joining: Option<BTreeMap<ReplicaId, (Seq, Digest)>>,
    /// When the last `Join` went out, and when joining started, as the periodic call saw
    /// them (None until its first call after [`ExecutionDriver::join`]).
    join_sent_at: Option<Time>,
    join_started_at: Option<Time>,
    /// The last executed sequence number seen by the periodic call, and since when.
    progress_seen: (Seq, Time),
    /// The app's other execution replicas: where buckets are fetched from.
    peers: Vec<ExecutionId>,
    /// Buckets asked for and not installed yet: how many asks so far (which peer is next)
    /// and when the last one went out.
    fetches: BTreeMap<BucketIndex, Fetch>,
    /// Per peer, asks in a row it left unanswered or answered wrongly: fetches go to the
    /// peers that answer (a paused, crashed or lying one soon gets none).
    peer_misses: BTreeMap<ExecutionId, u32>,
    /// The snapshots fetchers ask for (leased in the store), by checkpoint.
    leases: BTreeMap<Seq, Lease>,
    /// An injected fault (honest unless an operator or the simulator says otherwise).
    fault: Fault,
}

/// One bucket asked for and not installed yet.
#[derive(Clone, Copy, Debug)]
struct Fetch {
    asks: usize,
    sent_at: Time,
    peer: ExecutionId,
}

/// A snapshot kept for fetchers: when they last asked, and whether one asked since the
/// last tick.
#[derive(Clone, Copy, Debug)]
struct Lease {
    renewed_at: Option<Time>,
    asked: bool,
}

/// How long a snapshot stays leased after the last fetch from it.
pub const LEASE_MICROS: u64 = 10_000_000;
/// Snapshots leased at once at most (woken replicas joining from different checkpoints).
pub const LEASES_MAX: usize = 4;

/// Misses counted per peer at most (a peer back from a pause starts over soon enough).
const PEER_MISSES_MAX: u32 = 64;

/// Background fetches in flight at most: few, so that the replicas serving them, and this
/// one, keep executing at full speed while the state is completed. Buckets execution
/// waits on are asked for at once on top (the core parks on one at a time).
pub const BACKGROUND_FETCHES_MAX: usize = 4;
/// Fetches in flight at most for a replica that executes nothing until the state is whole
/// (eager fetch): every bucket is one it waits on.
pub const EAGER_FETCHES_MAX: usize = 16;

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
            joining: None,
            join_sent_at: None,
            join_started_at: None,
            progress_seen: (Seq(0), Time(0)),
            peers: Vec::new(),
            fetches: BTreeMap::new(),
            peer_misses: BTreeMap::new(),
            leases: BTreeMap::new(),
            fault: Fault::Honest,
        }
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

    /// Buckets execution is parked on, since the last call.
    pub fn take_needed_buckets(&mut self) -> Vec<BucketIndex> {
        std::mem::take(&mut self.needed)
    }

    /// Fetch buckets from these execution replicas (the app's other members).
    pub fn with_peers(mut self, peers: Vec<ExecutionId>) -> Self {
        self.peers = peers;
        self
    }

    /// Lazy and background state fetch, called periodically. Buckets execution waits on
    /// are asked for first; then, while the store still misses buckets, more of them in
    /// the background, so the replica soon owns the whole state. An ask unanswered after
    /// `retry_micros` goes to the next peer.
    pub fn fetch_buckets(&mut self, now: Time, retry_micros: u64) {
        self.ask_again(now, retry_micros);
        self.renew_lease(now);
        let Some((seq, _)) = self.replica.store().pin() else {
            return;
        };
        if self.peers.is_empty() || self.replica.store().is_complete() {
            self.fetches.clear();
            return;
        }
        let waited_on = std::mem::take(&mut self.needed);
        let in_flight_max = match self.replica.fetches_whole_state_first() {
            true => EAGER_FETCHES_MAX,
            false => BACKGROUND_FETCHES_MAX,
        };
        let room = in_flight_max.saturating_sub(self.fetches.len());
        let background: Vec<BucketIndex> = self
            .replica
            .store()
            .missing_buckets()
            .filter(|bucket| !self.fetches.contains_key(bucket) && !waited_on.contains(bucket))
            .take(room)
            .collect();
        for bucket in waited_on.into_iter().chain(background) {
            let due = match self.fetches.get(&bucket) {
                None => true,
                Some(fetch) => now.saturating_sub(fetch.sent_at) >= retry_micros,
            };
            if due {
                self.ask(now, seq, bucket);
            }
        }
        let stale: Vec<(BucketIndex, ExecutionId)> = self
            .fetches
            .iter()
            .filter(|(_, fetch)| now.saturating_sub(fetch.sent_at) >= retry_micros)
            .map(|(bucket, fetch)| (*bucket, fetch.peer))
            .collect();
        for (bucket, peer) in stale {
            self.missed(peer);
            self.ask(now, seq, bucket);
        }
    }

    /// Joining and catching up hang on single messages the network may lose. While joining,
    /// `Join` goes out again every `retry_micros`. A replica holding orders it cannot
    /// execute yet (copies from fewer than f+1 agreement replicas, or a gap before them)
    /// that made no progress for `retry_micros` asks for the orders after what it executed.
    fn ask_again(&mut self, now: Time, retry_micros: u64) {
        if self.joining.is_some() {
            let started_at = *self.join_started_at.get_or_insert(now);
            if now.saturating_sub(started_at) >= retry_micros {
                // Some agreement replicas may never answer (down, or Byzantine).
                self.finish_join();
                if self.joining.is_none() {
                    return;
                }
            }
            match self.join_sent_at {
                Some(sent_at) if now.saturating_sub(sent_at) < retry_micros => {}
                Some(_) => {
                    self.join_sent_at = Some(now);
                    let join = Message::Join(Join {
                        app: self.replica.app(),
                    });
                    self.broadcast(&join);
                }
                None => self.join_sent_at = Some(now),
            }
            return;
        }
        let executed = self.replica.last_executed();
        if executed != self.progress_seen.0 {
            self.progress_seen = (executed, now);
            return;
        }
        if self.replica.waits_for_orders()
            && now.saturating_sub(self.progress_seen.1) >= retry_micros
        {
            self.progress_seen.1 = now;
            let fetch = Message::FetchOrders(FetchOrders {
                app: self.replica.app(),
                after: executed,
            });
            self.broadcast(&fetch);
        }
    }

    /// Keep the snapshots fetchers use for as long as they keep asking.
    fn renew_lease(&mut self, now: Time) {
        let before = self.leases.len();
        self.leases.retain(|_, lease| {
            if lease.asked {
                lease.asked = false;
                lease.renewed_at = Some(now);
            }
            lease
                .renewed_at
                .is_some_and(|at| now.saturating_sub(at) < LEASE_MICROS)
        });
        if self.leases.len() != before {
            let seqs = self.leases.keys().copied().collect();
            self.replica.store_mut().lease_snapshots(seqs);
        }
    }

    /// A fetcher asked for a bucket of checkpoint `seq`, which this replica keeps.
    fn leased(&mut self, seq: Seq) {
        if let Some(lease) = self.leases.get_mut(&seq) {
            lease.asked = true;
            return;
        }
        if self.leases.len() >= LEASES_MAX {
            // The oldest checkpoint goes: its fetchers are the furthest behind.
            self.leases.pop_first();
        }
        let lease = Lease {
            renewed_at: None,
            asked: true,
        };
        self.leases.insert(seq, lease);
        let seqs = self.leases.keys().copied().collect();
        self.replica.store_mut().lease_snapshots(seqs);
    }

    fn missed(&mut self, peer: ExecutionId) {
        let misses = self.peer_misses.entry(peer).or_default();
        *misses = (*misses + 1).min(PEER_MISSES_MAX);
    }

    /// Ask a peer for `bucket` of checkpoint `seq`: one with the fewest misses, spread by
    /// bucket among equals, and not the one asked last time for this bucket.
    fn ask(&mut self, now: Time, seq: Seq, bucket: BucketIndex) {
        let previous = self.fetches.get(&bucket).copied();
        let asks = previous.map_or(0, |fetch| fetch.asks);
        let count = self.peers.len();
        let peer = (0..count)
            .map(|offset| self.peers[(bucket.index() + asks + offset) % count])
            .filter(|peer| count == 1 || previous.is_none_or(|fetch| fetch.peer != *peer))
            .min_by_key(|peer| self.peer_misses.get(peer).copied().unwrap_or(0))
            .expect("fetches run only with peers");
        let fetch = Fetch {
            asks: asks + 1,
            sent_at: now,
            peer,
        };
        self.fetches.insert(bucket, fetch);
        let fetch = Message::FetchBucket(FetchBucket {
            app: self.replica.app(),
            seq,
            bucket: bucket.0,
        });
        self.send(NodeId::Execution(peer), &fetch);
    }

    /// Buckets asked for and not installed yet.
    pub fn fetches_in_flight(&self) -> usize {
        self.fetches.len()
    }

    /// Start joining, as a woken replica does: ask every agreement replica for the app's
    /// stable checkpoint. Once f+1 answer alike the replica restarts from it (its state
    /// pinned to that root) and asks for the orders after it.
    pub fn join(&mut self) {
        self.joining = Some(BTreeMap::new());
        self.join_sent_at = None;
        self.join_started_at = None;
        let join = Message::Join(Join {
            app: self.replica.app(),
        });
        self.broadcast(&join);
    }

    /// Whether the replica is still waiting for f+1 matching stable checkpoints.
    pub fn is_joining(&self) -> bool {
        self.joining.is_some()
    }

    /// An agreement replica's answer to [`join`](Self::join). Once 2f+1 answered (or,
    /// see [`ExecutionDriver::fetch_buckets`], a retry interval passed), the replica joins.
    fn handle_join_answer(&mut self, from: ReplicaId, checkpoint: ExecutionCheckpoint) {
        let params = self.endpoint.params();
        let answers_wanted = params.replica_count() - params.f;
        let Some(answers) = self.joining.as_mut() else {
            return;
        };
        if checkpoint.app != self.replica.app() {
            return self.reject(RejectReason::OtherApp);
        }
        answers.insert(from, (checkpoint.seq, checkpoint.root));
        if answers.len() >= answers_wanted {
            self.finish_join();
        }
    }

    /// Restart from the latest checkpoint that f+1 agreement replicas named alike (so a
    /// correct one vouches for it), if any. The latest, not the first to reach f+1: a
    /// replica that restarted or jumped by state transfer may name an older one, whose
    /// following orders the others no longer keep.
    fn finish_join(&mut self) {
        let weak_quorum = self.endpoint.params().weak_quorum();
        let Some(answers) = self.joining.as_ref() else {
            return;
        };
        let agreed = answers
            .values()
            .filter(|answer| {
                answers.values().filter(|other| other == answer).count() >= weak_quorum
            })
            .max_by_key(|(seq, _)| *seq)
            .copied();
        let Some((seq, root)) = agreed else {
            return;
        };
        self.joining = None;
        tracing::info!(app = %self.replica.app(), %seq, "joining from the stable checkpoint");
        self.start_from(seq, root);
    }

    /// Start over from the stable checkpoint `(seq, root)` f+1 agreement replicas vouched
    /// for, and ask for the orders after it.
    fn start_from(&mut self, seq: Seq, root: Digest) {
        self.replica.restart_from(seq, root);
        self.needed.clear();
        self.fetches.clear();
        let fetch = Message::FetchOrders(FetchOrders {
            app: self.replica.app(),
            after: seq,
        });
        self.broadcast(&fetch);
    }

    fn reject(&mut self, reason: RejectReason) {
        self.counters.count_rejection(reason);
    }

    pub fn handle_frame(&mut self, frame: &[u8]) {
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
                if self.joining.is_some() =>
            {
                self.handle_join_answer(from, checkpoint)
            }
            (NodeId::Replica(from), Message::ExecutionStable(checkpoint)) => {
                if let Some((seq, root)) = self.replica.handle_stable(from, checkpoint) {
                    tracing::info!(app = %self.replica.app(), %seq, executed = %self.replica.last_executed(), "behind a stable checkpoint: starting over from it");
                    self.start_from(seq, root);
                }
            }
            (NodeId::Execution(from), Message::FetchBucket(fetch)) => {
                let kept = fetch.app == self.replica.app()
                    && self.replica.store().snapshot(fetch.seq).is_some();
                if kept {
                    self.leased(fetch.seq);
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
                let installed = match proof {
                    Some(proof) if data.app == self.replica.app() && proof.index == bucket => {
                        match self.replica.install_bucket(proof) {
                            Ok(()) => true,
                            // A second answer to an ask that was retried: harmless.
                            Err(zz_state_fetch::StateError::BucketPresent { .. }) => {
                                self.reject(RejectReason::BucketAlreadyPresent);
                                true
                            }
                            Err(error) => {
                                tracing::debug!(app = %self.replica.app(), %error, "bucket refused");
                                self.reject(RejectReason::BadBucket);
                                false
                            }
                        }
                    }
                    _ => {
                        self.reject(RejectReason::BucketMissingOrUndecodable);
                        false
                    }
                };
                if installed {
                    self.fetches.remove(&bucket);
                    self.peer_misses.remove(&from);
                } else if let Some(fetch) = self.fetches.get_mut(&bucket) {
                    // Discard the answer; the next fetch round asks another replica (not
                    // at once: two bad answerers must not keep each other busy).
                    fetch.sent_at = Time(0);
                    self.missed(from);
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
                    self.reports.push(ExecOutput::Executed(executed));
                }
                ExecOutput::Checkpoint(checkpoint) => {
                    let reported = self.fault.checkpoint(checkpoint);
                    self.broadcast(&Message::ExecutionCheckpoint(reported));
                    self.reports.push(ExecOutput::Checkpoint(checkpoint));
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
mod tests;
