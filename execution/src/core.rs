//! The sans-IO execution replica. It executes an app's sequence number only after f+1
//! matching orders from distinct agreement replicas (at least one of them correct), strictly
//! in sequence order; answers each request once (a retransmission gets the cached reply);
//! reports a digest of each batch's replies; and every K sequence numbers reports its
//! state's Merkle root.
//!
//! Calling protocol: feed orders with [`ExecutionReplica::handle_order`]; after each call
//! drain [`ExecutionReplica::poll_output`] and send what it says. If an output is
//! [`ExecOutput::NeedBucket`], execution is parked until the driver installs that bucket
//! with [`ExecutionReplica::install_bucket`].

use crate::app::{App, CLIENT_KEY_PREFIX, ExecContext, StateAccess};
use std::collections::{BTreeMap, VecDeque};
use zz_protocol::messages::{AppOrder, Executed, ExecutionCheckpoint, Reply};
use zz_protocol::{AppId, ClientId, Digest, ReplicaId, Seq, View};
use zz_state_fetch::{BucketIndex, BucketProof, NotFetched, ObjectStore, StateError};

mod counters;

pub use counters::{DropReason, ExecCounters};

/// What an execution replica needs to know.
#[derive(Clone, Debug)]
pub struct ExecutionConfig {
    pub app: AppId,
    /// The agreement cluster's f: an order is trusted once f+1 agreement replicas send it.
    pub f: usize,
    /// Agreement replicas in the cluster (3f+1); orders from others are dropped.
    pub agreement_replicas: usize,
    /// K: a state root every K sequence numbers.
    pub checkpoint_interval: u64,
    /// Orders buffered ahead of the next sequence number at most.
    pub window: u64,
    /// Bytes of buffered orders from one agreement replica at most.
    pub bytes_per_sender: usize,
}

/// How many agreement windows of an app's orders an execution replica buffers ahead of
/// execution: slack, so that orders arriving ahead of a replica that lags briefly are
/// kept rather than dropped and fetched again.
pub const ORDER_WINDOWS_BUFFERED: u64 = 4;

/// Bytes of orders waiting to run that one agreement replica may have here at most (at
/// least one full batch more, [`order_bytes_per_sender`]; the next order to run always
/// fits, on top of it): a Byzantine one could otherwise
/// fill the window with the largest batches. An order dropped for it is fetched again
/// once execution catches up.
pub const ORDER_BYTES_PER_SENDER: usize = 64 * 1024 * 1024;

/// See [`ORDER_BYTES_PER_SENDER`].
pub fn order_bytes_per_sender(params: &zz_protocol::ProtocolParams) -> usize {
    ORDER_BYTES_PER_SENDER.max(params.batch_bytes_max().saturating_add(1024 * 1024))
}

/// What an order weighs here, roughly its encoded size.
fn order_bytes(order: &AppOrder) -> usize {
    zz_protocol::messages::requests_weight(&order.requests)
}

impl ExecutionConfig {
    /// The configuration of an execution replica of `app` under the cluster's `params`.
    pub fn for_app(app: AppId, params: &zz_protocol::ProtocolParams) -> ExecutionConfig {
        ExecutionConfig {
            app,
            f: params.f,
            agreement_replicas: params.replica_count(),
            checkpoint_interval: params.checkpoint_interval,
            window: params.window * ORDER_WINDOWS_BUFFERED,
            bytes_per_sender: order_bytes_per_sender(params),
        }
    }
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecOutput {
    /// Send to the client that made the request.
    Reply(Reply),
    /// Send to every agreement replica.
    Executed(Executed),
    /// Send to every agreement replica.
    Checkpoint(ExecutionCheckpoint),
    /// Execution is parked until this bucket of the pinned checkpoint is installed.
    NeedBucket(BucketIndex),
}

/// A batch being executed: requests before `next_index` are applied.
struct InProgress {
    order: AppOrder,
    next_index: usize,
    replies: Digest,
}

/// One execution replica of one app. See the module documentation.
pub struct ExecutionReplica {
    config: ExecutionConfig,
    app: Box<dyn App>,
    store: ObjectStore,
    /// The next sequence number to execute.
    next_seq: Seq,
    /// Orders for sequence numbers from `next_seq` on: seq -> agreement replica -> order.
    orders: BTreeMap<Seq, BTreeMap<ReplicaId, AppOrder>>,
    /// Bytes of `orders` from each agreement replica.
    order_bytes: BTreeMap<ReplicaId, usize>,
    in_progress: Option<InProgress>,
    /// Notices that a checkpoint became stable: (seq, root) -> agreement replicas saying so.
    stable_notices: BTreeMap<(Seq, Digest), std::collections::BTreeSet<ReplicaId>>,
    outputs: VecDeque<ExecOutput>,
    counters: ExecCounters,
    /// Execute nothing while the state misses buckets (eager fetch, the baseline), rather
    /// than fetching each bucket when a request touches it.
    fetch_whole_state_first: bool,
    /// The app's initial state (a preloaded data set), applied to every fresh store.
    genesis: Option<Genesis>,
    /// An order beyond the window came since execution last progressed: the replica is
    /// far behind (a lost state store, a long pause), and must ask where to resume.
    behind_window: bool,
    /// The last checkpoint f+1 stable notices settled here: agreement replicas repeat it
    /// every status interval, and a repeat has nothing new to judge.
    judged_stable: Option<(Seq, Digest)>,
}

/// Fills a fresh store with an app's initial state; the same on every replica.
pub type Genesis = std::sync::Arc<dyn Fn(&mut ObjectStore) + Send + Sync>;

/// The reply cache entry for `client`: (timestamp, result) of its last executed request.
fn client_key(client: ClientId) -> Vec<u8> {
    let mut key = CLIENT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&client.0.to_be_bytes());
    key
}

fn encode_cached(timestamp: u64, result: &[u8]) -> Vec<u8> {
    let mut value = timestamp.to_le_bytes().to_vec();
    value.extend_from_slice(result);
    value
}

fn decode_cached(value: &[u8]) -> (u64, &[u8]) {
    assert!(
        value.len() >= 8,
        "reply cache entries are written by this module"
    );
    let (timestamp, result) = value.split_at(8);
    (
        u64::from_le_bytes(timestamp.try_into().expect("8 bytes")),
        result,
    )
}

impl ExecutionReplica {
    /// A replica with `store` as its state after `executed` (Seq(0) for a fresh app).
    pub fn new(
        config: ExecutionConfig,
        app: Box<dyn App>,
        store: ObjectStore,
        executed: Seq,
    ) -> Self {
        assert!(config.checkpoint_interval > 0 && config.window > 0);
        assert_eq!(config.agreement_replicas, 3 * config.f + 1);
        ExecutionReplica {
            config,
            app,
            store,
            next_seq: executed.next(),
            orders: BTreeMap::new(),
            order_bytes: BTreeMap::new(),
            in_progress: None,
            stable_notices: BTreeMap::new(),
            outputs: VecDeque::new(),
            counters: ExecCounters::default(),
            fetch_whole_state_first: false,
            genesis: None,
            behind_window: false,
            judged_stable: None,
        }
    }

    /// Start from `genesis` rather than the empty state, here (when `apply_now`: a replica
    /// that starts active) and whenever the replica restarts before any checkpoint.
    pub fn with_genesis(mut self, genesis: Genesis, apply_now: bool) -> Self {
        if apply_now {
            assert_eq!(
                self.next_seq,
                Seq(1),
                "genesis is the state before sequence 1"
            );
            genesis(&mut self.store);
        }
        self.genesis = Some(genesis);
        self
    }

    /// After a restart from a checkpoint, execute only once every bucket is installed.
    pub fn fetching_whole_state_first(mut self, eager: bool) -> Self {
        self.fetch_whole_state_first = eager;
        self
    }

    /// Whether this replica waits for the whole state before executing (eager fetch).
    pub fn fetches_whole_state_first(&self) -> bool {
        self.fetch_whole_state_first
    }

    pub fn last_executed(&self) -> Seq {
        Seq(self.next_seq.0 - 1)
    }
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }
    pub fn store_mut(&mut self) -> &mut ObjectStore {
        &mut self.store
    }
    pub fn counters(&self) -> &ExecCounters {
        &self.counters
    }
    pub fn poll_output(&mut self) -> Option<ExecOutput> {
        self.outputs.pop_front()
    }

    fn drop_input(&mut self, reason: DropReason) {
        tracing::debug!(app = %self.config.app, %reason, "dropped order");
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    /// An order from agreement replica `from` (already authenticated).
    pub fn handle_order(&mut self, from: ReplicaId, order: AppOrder) {
        if from.index() >= self.config.agreement_replicas {
            return self.drop_input(DropReason::UnknownReplica);
        }
        if order.app != self.config.app {
            return self.drop_input(DropReason::OtherApp);
        }
        // The batch in progress runs from the copy it started with: later copies of it
        // are as stale as those of executed ones (kept, they would never be freed).
        let running = (self.in_progress.as_ref()).is_some_and(|batch| batch.order.seq == order.seq);
        if order.seq < self.next_seq || running {
            return self.drop_input(DropReason::Stale);
        }
        if order.seq.0 - self.next_seq.0 >= self.config.window {
            self.behind_window = true;
            return self.drop_input(DropReason::OutsideWindow);
        }
        if self
            .orders
            .get(&order.seq)
            .is_some_and(|copies| copies.contains_key(&from))
        {
            return self.drop_input(DropReason::Duplicate);
        }
        let size = order_bytes(&order);
        let held = self.order_bytes.entry(from).or_default();
        // The next order is always taken, or a sender whose share filled with later ones
        // while it was lost could never deliver it; one per sender, so still bounded.
        if order.seq != self.next_seq && held.saturating_add(size) > self.config.bytes_per_sender {
            self.behind_window = true;
            return self.drop_input(DropReason::SenderBytesFull);
        }
        *held += size;
        self.orders
            .entry(order.seq)
            .or_default()
            .insert(from, order);
        self.run();
    }

    /// The reply this replica gave `client`'s request `timestamp`, if that was the client's
    /// last executed request: how a client's retransmission is answered without ordering
    /// it again. None too while the client's reply cache bucket is not fetched yet.
    pub fn cached_reply(&self, client: ClientId, timestamp: u64) -> Option<Reply> {
        let value = self.store.get(&client_key(client)).ok()??;
        let (cached_timestamp, result) = decode_cached(value);
        (cached_timestamp == timestamp).then(|| Reply {
            view: View(0),
            client,
            timestamp,
            result: result.to_vec(),
        })
    }

    pub fn app(&self) -> AppId {
        self.config.app
    }

    /// Whether orders are buffered that cannot run yet (too few matching copies of the
    /// next one, or a gap before them), or came beyond the window since execution last
    /// progressed, while no bucket is awaited. The driver then asks for the orders after
    /// what it executed; if those are gone, f+1 agreement replicas name the stable
    /// checkpoint to start over from.
    pub fn waits_for_orders(&self) -> bool {
        self.in_progress.is_none() && (!self.orders.is_empty() || self.behind_window)
    }

    /// An agreement replica's notice that `checkpoint` became stable. On f+1 matching
    /// notices from distinct agreement replicas (one of them correct) the store keeps that
    /// snapshot as stable and drops older ones. Returns the checkpoint when f+1 vouch for
    /// one this replica has not executed to: it joined from an older one, and the orders
    /// it still needs may be gone from the agreement replicas, so it should start over
    /// from this one ([`ExecutionReplica::restart_from`]).
    pub fn handle_stable(
        &mut self,
        from: ReplicaId,
        checkpoint: ExecutionCheckpoint,
    ) -> Option<(Seq, Digest)> {
        if from.index() >= self.config.agreement_replicas || checkpoint.app != self.config.app {
            self.drop_input(DropReason::BadStableNotice);
            return None;
        }
        // Agreement replicas name the stable checkpoint every status interval, for members
        // that lost the notice: a repeat, or a lagging replica's older one, is expected.
        let latest = self.store.latest_stable().unwrap_or(Seq(0));
        let key = (checkpoint.seq, checkpoint.root);
        if checkpoint.seq <= latest || self.judged_stable == Some(key) {
            return None;
        }
        // One pending notice per agreement replica (its latest), so a Byzantine one cannot
        // crowd out the others' notices: the table holds at most one entry per replica.
        for senders in self.stable_notices.values_mut() {
            senders.remove(&from);
        }
        self.stable_notices.retain(|_, senders| !senders.is_empty());
        let senders = self.stable_notices.entry(key).or_default();
        senders.insert(from);
        if senders.len() <= self.config.f {
            return None;
        }
        self.judged_stable = Some(key);
        self.stable_notices
            .retain(|(seq, _), _| *seq > checkpoint.seq);
        match self
            .store
            .snapshot(checkpoint.seq)
            .map(|snapshot| snapshot.root())
        {
            Some(root) if root == checkpoint.root => {
                self.store
                    .mark_stable(checkpoint.seq)
                    .expect("a kept snapshot newer than the latest stable one");
            }
            Some(_) => {
                // The active replicas agreed on a root this replica did not compute: it
                // diverged. Detection and replacement act on that; it keeps its state.
                tracing::warn!(app = %self.config.app, seq = %checkpoint.seq, "state root differs from the stable one");
                self.drop_input(DropReason::DivergedFromStable);
            }
            // Every active replica reported this root, so one that has not reached it
            // was not active then: a newcomer behind the others.
            None if checkpoint.seq > self.last_executed() => {
                return Some((checkpoint.seq, checkpoint.root));
            }
            None => self.drop_input(DropReason::StableSnapshotNotKept),
        }
        None
    }

    /// Start over from the stable checkpoint `(seq, root)` that f+1 agreement replicas
    /// vouched for, as a woken replica does: the state becomes a store pinned to `root`
    /// (every bucket fetched lazily, each verified against it), and execution resumes at
    /// `seq + 1`. Sequence 0 means no checkpoint is stable yet: start from the initial state
    /// (empty, or the app's genesis).
    pub fn restart_from(&mut self, seq: Seq, root: Digest) {
        // What f+1 named before no longer holds for the new state: judge repeats afresh.
        self.judged_stable = None;
        let params = self.store.params();
        self.store = if seq == Seq(0) {
            let mut store = ObjectStore::new(params);
            if let Some(genesis) = &self.genesis {
                genesis(&mut store);
            }
            store
        } else {
            ObjectStore::pinned(params, seq, root)
        };
        self.next_seq = seq.next();
        self.orders.clear();
        self.order_bytes.clear();
        self.in_progress = None;
        self.stable_notices.clear();
        self.behind_window = false;
    }

    /// Install a fetched bucket (verified against the pinned root) and resume.
    pub fn install_bucket(&mut self, proof: BucketProof) -> Result<(), StateError> {
        self.store.install_bucket(proof)?;
        self.run();
        Ok(())
    }

    /// Execute whatever is ready: the batch in progress, then every next sequence number
    /// that f+1 agreement replicas sent the same order for.
    fn run(&mut self) {
        if self.fetch_whole_state_first && !self.store.is_complete() {
            // The driver's background fetch brings every bucket; installing the last one
            // runs this again.
            return;
        }
        loop {
            if self.in_progress.is_none() {
                let Some(order) = self.trusted_order(self.next_seq) else {
                    return;
                };
                self.forget_orders(self.next_seq);
                self.in_progress = Some(InProgress {
                    order,
                    next_index: 0,
                    replies: Digest::default(),
                });
            }
            if let Err(missing) = self.continue_batch() {
                self.outputs
                    .push_back(ExecOutput::NeedBucket(missing.bucket));
                return;
            }
        }
    }

    /// Drop the copies held for `seq`, releasing their senders' bytes.
    fn forget_orders(&mut self, seq: Seq) {
        for (from, order) in self.orders.remove(&seq).unwrap_or_default() {
            let held = self.order_bytes.get_mut(&from).expect("counted on arrival");
            *held -= order_bytes(&order);
        }
    }

    /// The order f+1 distinct agreement replicas agree on for `seq`, if any. Copies are
    /// compared whole rather than by digest: with at most 3f+1 copies that is cheaper than
    /// encoding and hashing each one (this runs for every copy that arrives), and exact.
    fn trusted_order(&self, seq: Seq) -> Option<AppOrder> {
        let copies: Vec<&AppOrder> = self.orders.get(&seq)?.values().collect();
        let alike = |order: &AppOrder| copies.iter().filter(|other| **other == order).count();
        (copies.iter())
            .find(|order| alike(order) > self.config.f)
            .map(|order| (*order).clone())
    }

    /// Execute the batch in progress from where it stopped; Err when a bucket is missing.
    fn continue_batch(&mut self) -> Result<(), NotFetched> {
        let progress = self.in_progress.as_ref().expect("a batch in progress");
        let order = progress.order.clone();
        for index in progress.next_index..order.requests.len() {
            let request = &order.requests[index].request;
            let key = client_key(request.client);
            let cached = self.store.get(&key)?.map(|value| {
                let (timestamp, result) = decode_cached(value);
                (timestamp, result.to_vec())
            });
            let result = match cached {
                Some((timestamp, result)) if timestamp == request.timestamp => {
                    self.counters.replies_resent += 1;
                    Some(result)
                }
                Some((timestamp, _)) if timestamp > request.timestamp => None,
                _ => {
                    let context = ExecContext {
                        app: order.app,
                        client: request.client,
                        timestamp_ms: order.nondet.timestamp_ms,
                        seed: request_seed(order.nondet.seed, order.seq, index),
                    };
                    let mut access = StateAccess::new(&self.store);
                    let result = self.app.execute(&context, &mut access, &request.op)?;
                    let mut writes = access.into_writes();
                    writes.push((key, Some(encode_cached(request.timestamp, &result))));
                    self.store.apply(writes)?;
                    self.counters.requests_executed += 1;
                    Some(result)
                }
            };
            let progress = self.in_progress.as_mut().expect("a batch in progress");
            progress.next_index = index + 1;
            if let Some(result) = result {
                progress.replies = Digest::of(&[
                    &progress.replies.0,
                    &request.client.0.to_le_bytes(),
                    &request.timestamp.to_le_bytes(),
                    &(result.len() as u64).to_le_bytes(),
                    &result,
                ]);
                self.outputs.push_back(ExecOutput::Reply(Reply {
                    view: View(0),
                    client: request.client,
                    timestamp: request.timestamp,
                    result,
                }));
            }
        }
        let progress = self.in_progress.take().expect("a batch in progress");
        let seq = progress.order.seq;
        assert_eq!(seq, self.next_seq, "execution is gap-free");
        self.next_seq = seq.next();
        self.behind_window = false;
        self.counters.batches_executed += 1;
        self.outputs.push_back(ExecOutput::Executed(Executed {
            app: self.config.app,
            seq,
            replies: progress.replies,
        }));
        if seq.0.is_multiple_of(self.config.checkpoint_interval) {
            let root = self.store.checkpoint(seq);
            self.outputs
                .push_back(ExecOutput::Checkpoint(ExecutionCheckpoint {
                    app: self.config.app,
                    seq,
                    root,
                }));
        }
        Ok(())
    }
}

/// Each request of a batch gets its own seed from the batch's agreed one.
fn request_seed(batch_seed: u64, seq: Seq, index: usize) -> u64 {
    let digest = Digest::of(&[
        b"zz request seed",
        &batch_seed.to_le_bytes(),
        &seq.0.to_le_bytes(),
        &(index as u64).to_le_bytes(),
    ]);
    u64::from_le_bytes(digest.0[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests;
