//! The normal case (PBFT section 4.2): propose, pre-prepare, prepare, commit, execute in
//! order, and checkpoints with log truncation (section 4.3).

use super::{DropReason, Output, Replica};
use crate::core::persist::Record;
use std::collections::BTreeMap;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{
    AppOrder, AuthenticatedRequest, Batch, Commit, Message, NonDet, Order, PrePrepareHeader,
    Prepare, PreparedCertificate,
};
use zz_protocol::{AppId, Digest, ReplicaId, Seq, View};

/// What the primary proposes with: the next sequence number and the seeds of batches.
pub(super) struct Proposer {
    /// Primary only: the next sequence number to propose.
    pub(super) next_seq: Seq,
    /// The batch this replica last proposed in this run, and in which view.
    last_proposed: Option<(View, Seq)>,
    rng_state: u64,
}

impl Proposer {
    pub(super) fn new(seed: u64) -> Proposer {
        Proposer {
            next_seq: Seq(1),
            last_proposed: None,
            rng_state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub(super) fn next_random(&mut self) -> u64 {
        // splitmix64: the seed comes from the caller, so proposals replay deterministically.
        self.rng_state = self.rng_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Where a normal-case message stands relative to this replica's view.
pub(super) enum ViewFit {
    Current,
    Future,
    Stale,
}

impl Replica {
    pub(super) fn view_fit(&self, view: View) -> ViewFit {
        if view < self.view {
            ViewFit::Stale
        } else if view == self.view && self.normal {
            ViewFit::Current
        } else {
            ViewFit::Future
        }
    }

    /// Primary: close batches while the pipeline has room (so batches grow under load) and
    /// the high watermark allows. With a batch in flight already, another is closed only
    /// once a quarter of a full batch waits: every batch costs each replica signatures and
    /// syncs whatever its size, so on busy cores a few large batches order more requests
    /// than many small ones, while an idle pipeline still proposes a lone request at once.
    /// Only behind a batch of its own: a primary that restarted, or entered a view, with
    /// batches above what it executed goes on proposing while it catches up on them.
    pub(super) fn try_propose(&mut self) {
        if !self.normal || !self.is_primary() {
            return;
        }
        if self.proposer.next_seq <= self.exec.seq {
            self.proposer.next_seq = self.exec.seq.next();
        }
        // A restarted primary may already have proposed some sequence numbers in this view.
        while self
            .slots
            .get(&self.proposer.next_seq)
            .is_some_and(|slot| slot.view == self.view && slot.pre_prepare.is_some())
        {
            self.proposer.next_seq = self.proposer.next_seq.next();
        }
        loop {
            let in_flight = self.proposer.next_seq.0.saturating_sub(self.exec.seq.0 + 1);
            if in_flight >= self.config.params.pipeline_max
                || self.proposer.next_seq > self.high_watermark()
            {
                return;
            }
            let early_fill = self.config.params.batch_size_max.div_ceil(4);
            let behind_own_batch =
                self.proposer.last_proposed == Some((self.view, Seq(self.proposer.next_seq.0 - 1)));
            if in_flight > 0 && behind_own_batch && self.requests.arrivals.len() < early_fill {
                return;
            }
            let requests = self.take_proposable_requests();
            let stability = self.take_proposable_certificates();
            if requests.is_empty() && stability.is_empty() {
                return;
            }
            let nondet = NonDet {
                timestamp_ms: self.wall_clock_ms().max(self.exec.last_timestamp_ms),
                seed: self.proposer.next_random(),
            };
            let batch = Batch {
                requests,
                nondet,
                stability,
            };
            let seq = self.proposer.next_seq;
            self.proposer.next_seq = seq.next();
            self.proposer.last_proposed = Some((self.view, seq));
            self.propose(seq, batch);
        }
    }

    /// Assign `seq` to `batch` in the current view and multicast the pre-prepare.
    pub(super) fn propose(&mut self, seq: Seq, batch: Batch) {
        let view = self.view;
        let pre_prepare = self.sign(PrePrepareHeader {
            view,
            seq,
            digest: batch.digest(),
        });
        let slot = self.slots.entry(seq).or_default();
        slot.enter_view(view);
        assert!(
            slot.pre_prepare.is_none(),
            "primary proposes each (view, seq) once"
        );
        slot.pre_prepare = Some((pre_prepare.clone(), batch.clone()));
        slot.last_sent = self.now;
        self.persist(Record::Accepted {
            pre_prepare: pre_prepare.clone(),
            batch: batch.clone(),
        });
        self.broadcast(Message::PrePrepare { pre_prepare, batch });
        self.check_prepared(seq);
    }

    /// Keep a message for a view this replica has not entered yet (bounded per sender, in
    /// messages and in bytes: a pre-prepare carries a whole batch).
    pub(super) fn buffer_future(&mut self, sender: ReplicaId, view: View, message: Message) {
        let next_view_only = view <= self.view.next();
        let per_sender = super::FUTURE_MESSAGES_MAX / self.config.params.replica_count();
        let bytes_per_sender = super::future_bytes_per_sender(&self.config.params);
        let (count, bytes) = (self.view_change.future.iter())
            .filter(|(from, _, _)| *from == sender)
            .fold((0, 0), |(count, bytes), (_, size, _)| {
                (count + 1, bytes + size)
            });
        if !next_view_only || count >= per_sender {
            return self.drop_message(DropReason::FutureView);
        }
        // Measured only once the cheap checks pass: measuring encodes the message.
        let size = postcard::to_allocvec(&message).map_or(usize::MAX, |encoded| encoded.len());
        if bytes.saturating_add(size) <= bytes_per_sender {
            self.view_change.future.push_back((sender, size, message));
        } else {
            self.drop_message(DropReason::FutureView);
        }
    }

    /// PBFT section 4.2: accept a pre-prepare if it is for this view, inside the
    /// watermarks, and no other digest was accepted for (view, seq).
    pub(super) fn handle_pre_prepare(
        &mut self,
        sender: ReplicaId,
        pre_prepare: Signed<PrePrepareHeader>,
        batch: Batch,
    ) {
        let header = pre_prepare.body;
        match self.view_fit(header.view) {
            ViewFit::Stale => return self.drop_message(DropReason::StaleView),
            ViewFit::Future => {
                let message = Message::PrePrepare { pre_prepare, batch };
                return self.buffer_future(sender, header.view, message);
            }
            ViewFit::Current => {}
        }
        if !self.in_window(header.seq) {
            return self.drop_message(DropReason::OutsideWindow);
        }
        if header.seq <= self.view_change.new_view_floor {
            if self.take_re_proposal_copy(&pre_prepare, &batch) {
                return;
            }
            return self.drop_message(DropReason::BelowNewViewRange);
        }
        if !batch.is_null() && !self.nondet_acceptable(&batch.nondet) {
            return self.drop_message(DropReason::BadNondet);
        }
        self.accept_pre_prepare(pre_prepare, batch);
    }

    /// Backups check the primary's timestamp against their own clock (section 4.6).
    fn nondet_acceptable(&self, nondet: &NonDet) -> bool {
        let skew = self.config.params.timestamp_skew_max_ms;
        nondet.timestamp_ms.abs_diff(self.wall_clock_ms()) <= skew
    }

    /// Accept (view, seq, digest) unless another digest was accepted for it; send a prepare.
    pub(super) fn accept_pre_prepare(
        &mut self,
        pre_prepare: Signed<PrePrepareHeader>,
        batch: Batch,
    ) {
        let header = pre_prepare.body;
        let slot = self.slots.entry(header.seq).or_default();
        slot.enter_view(header.view);
        if let Some(digest) = slot.accepted_digest() {
            let reason = if digest == header.digest {
                DropReason::Duplicate
            } else {
                DropReason::ConflictingPrePrepare
            };
            return self.drop_message(reason);
        }
        slot.pre_prepare = Some((pre_prepare.clone(), batch.clone()));
        slot.last_sent = self.now;
        for request in &batch.requests {
            self.note_request_in_flight(request);
        }
        self.persist(Record::Accepted { pre_prepare, batch });
        let prepare = self.sign(Prepare {
            view: header.view,
            seq: header.seq,
            digest: header.digest,
        });
        let me = self.config.id;
        if let Some(slot) = self.slots.get_mut(&header.seq) {
            slot.prepares.insert(me, prepare.clone());
        }
        self.broadcast(Message::Prepare(prepare));
        self.check_prepared(header.seq);
    }

    pub(super) fn handle_prepare(&mut self, sender: ReplicaId, prepare: Signed<Prepare>) {
        let vote = prepare.body;
        match self.view_fit(vote.view) {
            ViewFit::Stale => return self.drop_message(DropReason::StaleView),
            ViewFit::Future => {
                return self.buffer_future(sender, vote.view, Message::Prepare(prepare));
            }
            ViewFit::Current => {}
        }
        if !self.in_window(vote.seq) {
            return self.drop_message(DropReason::OutsideWindow);
        }
        if sender == self.primary_of(vote.view) {
            return self.drop_message(DropReason::PrepareFromPrimary);
        }
        let slot = self.slots.entry(vote.seq).or_default();
        slot.enter_view(vote.view);
        if slot.prepares.contains_key(&sender) {
            return self.drop_message(DropReason::Duplicate);
        }
        slot.prepares.insert(sender, prepare);
        self.check_prepared(vote.seq);
    }

    /// prepared(v, s, d): the pre-prepare and 2f matching prepares from distinct backups
    /// (this replica's own included). Then multicast a commit.
    pub(super) fn check_prepared(&mut self, seq: Seq) {
        let quorum = 2 * self.config.params.f;
        let me = self.config.id;
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        if slot.commit_sent {
            return;
        }
        let Some((pre_prepare, batch)) = slot.pre_prepare.clone() else {
            return;
        };
        let primary = pre_prepare
            .body
            .view
            .primary(self.config.params.replica_count());
        let prepares = slot.matching_prepares(primary);
        if prepares.len() < quorum {
            return;
        }
        let header = pre_prepare.body;
        slot.commit_sent = true;
        let certificate = PreparedCertificate {
            pre_prepare,
            prepares: prepares.clone(),
        };
        slot.prepared_certificate = Some((certificate, batch));
        let commit = Commit {
            view: header.view,
            seq,
            digest: header.digest,
        };
        slot.commits.insert(me, commit);
        self.persist(Record::Prepared { prepares });
        self.broadcast(Message::Commit(commit));
        self.check_committed(seq);
    }

    pub(super) fn handle_commit(&mut self, sender: ReplicaId, commit: Commit) {
        match self.view_fit(commit.view) {
            ViewFit::Stale => return self.drop_message(DropReason::StaleView),
            ViewFit::Future => {
                return self.buffer_future(sender, commit.view, Message::Commit(commit));
            }
            ViewFit::Current => {}
        }
        if !self.in_window(commit.seq) {
            return self.drop_message(DropReason::OutsideWindow);
        }
        let slot = self.slots.entry(commit.seq).or_default();
        slot.enter_view(commit.view);
        if slot.commits.contains_key(&sender) {
            return self.drop_message(DropReason::Duplicate);
        }
        slot.commits.insert(sender, commit);
        self.check_committed(commit.seq);
    }

    /// committed-local(v, s, d): prepared here and 2f+1 matching commits (own included).
    pub(super) fn check_committed(&mut self, seq: Seq) {
        let quorum = self.config.params.quorum();
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        if !slot.commit_sent || slot.matching_commits() < quorum {
            return;
        }
        let Some((header, batch)) = slot.pre_prepare.as_ref() else {
            return;
        };
        match &slot.committed {
            Some((existing, _)) => assert_eq!(
                *existing, header.body.digest,
                "safety: {seq} committed with two digests at replica {}",
                self.config.id
            ),
            None => slot.committed = Some((header.body.digest, batch.clone())),
        }
    }

    /// Messages get lost: for slots of this view that have not committed here after a
    /// status interval, send this replica's part again (the pre-prepare from the primary,
    /// else its prepare, and its commit), so a lost message costs a retransmission rather
    /// than a view change.
    pub(super) fn retransmit_stalled_slots(&mut self) {
        if !self.normal {
            return;
        }
        let interval = self.config.params.status_interval_ms * 1000;
        let (me, view, now) = (self.config.id, self.view, self.now);
        let is_primary = self.is_primary();
        let first = self.exec.seq.next();
        let limit = self.config.params.pipeline_max as usize * 2;
        let mut resend = Vec::new();
        for slot in self
            .slots
            .range_mut(first..)
            .map(|(_, slot)| slot)
            .take(limit)
        {
            if slot.committed.is_some()
                || slot.view != view
                || now.saturating_sub(slot.last_sent) < interval
            {
                continue;
            }
            let Some((pre_prepare, batch)) = &slot.pre_prepare else {
                continue;
            };
            slot.last_sent = now;
            if is_primary {
                resend.push(Message::PrePrepare {
                    pre_prepare: pre_prepare.clone(),
                    batch: batch.clone(),
                });
            } else if let Some(prepare) = slot.prepares.get(&me) {
                resend.push(Message::Prepare(prepare.clone()));
            }
            if let Some(commit) = slot.commits.get(&me) {
                resend.push(Message::Commit(*commit));
            }
        }
        for message in resend {
            self.broadcast(message);
        }
    }

    /// Execute committed batches strictly in sequence order.
    pub(super) fn try_execute(&mut self) {
        loop {
            let seq = self.exec.seq.next();
            let Some(slot) = self.slots.get(&seq) else {
                return;
            };
            let Some((digest, batch)) = slot.committed.clone() else {
                return;
            };
            let view = slot.view;
            self.execute(seq, view, digest, batch);
        }
    }

    fn execute(&mut self, seq: Seq, view: View, digest: Digest, batch: Batch) {
        assert_eq!(seq, self.exec.seq.next(), "execution is gap-free");
        debug_assert_eq!(digest, batch.digest());
        self.exec.chain = Digest::of(&[&self.exec.chain.0, &seq.0.to_le_bytes(), &digest.0]);
        for request in &batch.requests {
            let client = request.request.client;
            let timestamp = request.request.timestamp;
            let app = request.request.app;
            let last = self.exec.clients.entry(client).or_insert((0, app));
            if timestamp > last.0 {
                *last = (timestamp, app);
                self.counters.requests_ordered += 1;
            }
            if self
                .requests
                .waiting
                .get(&client)
                .is_some_and(|waiting| waiting.request.request.timestamp <= timestamp)
            {
                self.requests.waiting.remove(&client);
            }
        }
        if !batch.is_null() {
            self.exec.last_timestamp_ms =
                self.exec.last_timestamp_ms.max(batch.nondet.timestamp_ms);
        }
        self.exec.seq = seq;
        self.counters.batches_ordered += 1;
        self.catch_up.fetched.remove(&seq);
        let app_orders = self.split_by_app(seq, &batch);
        let batch_stability = batch.stability.clone();
        self.outputs.push_back(Output::Order {
            order: Order { view, seq, batch },
            digest,
        });
        self.outputs
            .extend(app_orders.into_iter().map(Output::AppOrder));
        self.apply_stability(&batch_stability);
        if seq.0.is_multiple_of(self.config.params.checkpoint_interval) {
            self.take_checkpoint(seq);
        }
    }

    /// The batch's requests for each app, in batch order, as that app's next order: each
    /// execution group sees only its own traffic, with gap-free sequence numbers.
    fn split_by_app(&mut self, seq: Seq, batch: &Batch) -> Vec<AppOrder> {
        let mut by_app: BTreeMap<AppId, Vec<AuthenticatedRequest>> = BTreeMap::new();
        for request in &batch.requests {
            by_app
                .entry(request.request.app)
                .or_default()
                .push(request.clone());
        }
        let nondet = NonDet {
            timestamp_ms: self.exec.last_timestamp_ms,
            seed: batch.nondet.seed,
        };
        by_app
            .into_iter()
            .map(|(app, requests)| {
                let (app_seq, chain) = self.exec.apps.entry(app).or_default();
                *app_seq = app_seq.next();
                let order = AppOrder {
                    app,
                    seq: *app_seq,
                    agreement_seq: seq,
                    nondet,
                    requests,
                };
                *chain = order.chained(*chain);
                order
            })
            .collect()
    }
}
