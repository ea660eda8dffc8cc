//! The batches a new view re-proposes, fetched by digest. A new view names its
//! re-proposals by digest, as the prepared certificates they come from do, so that it
//! fits in a frame whatever the batches weigh (PBFT does the same). A replica that enters
//! the view without one of those batches asks its peers for it and takes the first copy
//! that hashes to the digest. 2f+1 replicas accepted that batch in an earlier view, and
//! each keeps the batches of the latest views' pre-prepares and of its prepared
//! certificate (persisted too); a new primary leaves out, when it can, a view change
//! whose certificate names a batch it cannot find (see `check_view_change_quorum`).

use super::{DropReason, Replica};
use crate::core::persist::Record;
use std::collections::BTreeMap;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{Batch, FetchProposals, Message, PrePrepareHeader, Proposal};
use zz_protocol::{Digest, ReplicaId, Seq, Time};

/// Answers to fetch requests one peer gets per status interval, at most, as a share of the
/// frame limit (one answer always goes out, so a full batch can still be fetched).
const ANSWER_BYTES_FRAME_SHARE: usize = 2;

/// This view's re-proposals whose batch is not here yet, and what each peer was sent in
/// answer to its fetch requests lately.
#[derive(Default)]
pub(super) struct AwaitedProposals {
    /// By sequence number; only for the view this replica is in.
    pub(super) awaited: BTreeMap<Seq, Signed<PrePrepareHeader>>,
    /// Per peer: when its current status interval of answers began, and the bytes sent in it.
    pub(super) answered: BTreeMap<ReplicaId, (Time, usize)>,
}

impl Replica {
    /// Whether [`Self::local_batch`] would find the batch (without copying it). A sequence
    /// number at or below the stable checkpoint needs none.
    pub(super) fn holds_batch(&self, seq: Seq, digest: Digest) -> bool {
        seq <= self.low_watermark()
            || digest == Batch::null().digest()
            || (self.slots.get(&seq)).is_some_and(|slot| slot.batch_with(digest).is_some())
            || (self.catch_up.fetched.get(&seq))
                .is_some_and(|offers| offers.bodies.contains_key(&digest))
    }

    /// A batch with `digest` at `seq` that this replica holds: the null batch, one of the
    /// slot's, or a body fetched while catching up.
    fn local_batch(&self, seq: Seq, digest: Digest) -> Option<Batch> {
        let null = Batch::null();
        if digest == null.digest() {
            return Some(null);
        }
        if let Some(batch) = self
            .slots
            .get(&seq)
            .and_then(|slot| slot.batch_with(digest))
        {
            return Some(batch.clone());
        }
        let offers = self.catch_up.fetched.get(&seq)?;
        offers
            .bodies
            .get(&digest)
            .map(|(_, _, batch)| batch.clone())
    }

    /// Take a re-proposal of the new view just entered as its pre-prepare for `seq`, or
    /// await its batch.
    pub(super) fn take_re_proposal(&mut self, pre_prepare: Signed<PrePrepareHeader>) {
        let header = pre_prepare.body;
        match self.local_batch(header.seq, header.digest) {
            Some(batch) => self.accept_re_proposal(pre_prepare, batch),
            None => {
                self.proposals.awaited.insert(header.seq, pre_prepare);
            }
        }
    }

    /// The primary records its own re-proposal; a backup accepts it like any pre-prepare.
    fn accept_re_proposal(&mut self, pre_prepare: Signed<PrePrepareHeader>, batch: Batch) {
        debug_assert_eq!(pre_prepare.body.digest, batch.digest());
        let (view, seq) = (pre_prepare.body.view, pre_prepare.body.seq);
        if self.primary_of(view) != self.config.id {
            return self.accept_pre_prepare(pre_prepare, batch);
        }
        let slot = self.slots.entry(seq).or_default();
        slot.enter_view(view);
        if slot.pre_prepare.is_some() {
            return;
        }
        slot.pre_prepare = Some((pre_prepare.clone(), batch.clone()));
        self.persist(Record::Accepted { pre_prepare, batch });
        self.check_prepared(seq);
    }

    /// Ask every peer for the batches still awaited: on entering the view, then once per
    /// status interval until they come (or the sequence number is executed or left behind).
    pub(super) fn ask_for_awaited_proposals(&mut self) {
        let (view, normal, executed) = (self.view, self.normal, self.exec.seq);
        let (low, high) = (self.low_watermark(), self.high_watermark());
        self.proposals.awaited.retain(|seq, header| {
            normal && header.body.view == view && *seq > executed.max(low) && *seq <= high
        });
        if self.proposals.awaited.is_empty() {
            return;
        }
        let wanted = (self.proposals.awaited.iter())
            .map(|(seq, header)| (*seq, header.body.digest))
            .collect();
        self.broadcast(Message::FetchProposals(FetchProposals { wanted }));
    }

    /// Send `sender` the batches it asks for that this replica holds, within its share of
    /// answers for this status interval (checked before anything is copied).
    pub(super) fn handle_fetch_proposals(&mut self, sender: ReplicaId, fetch: FetchProposals) {
        for (seq, digest) in fetch.wanted {
            if !self.in_window(seq) {
                continue;
            }
            let weight = match self
                .slots
                .get(&seq)
                .and_then(|slot| slot.batch_with(digest))
            {
                Some(batch) => batch.weight(),
                None => continue,
            };
            if !self.answer_allowed(sender, weight) {
                self.counters.fetch_answers_withheld += 1;
                return;
            }
            if let Some(batch) = self.local_batch(seq, digest) {
                self.send(sender, Message::Proposal(Proposal { seq, batch }));
            }
        }
    }

    /// Whether `bytes` more of answers to `peer` fit its share of this status interval's
    /// answers; if so, they are counted against it. A fetch request costs its sender
    /// little and its answer may weigh a frame: without this, one Byzantine replica could
    /// keep every other one busy sending.
    pub(super) fn answer_allowed(&mut self, peer: ReplicaId, bytes: usize) -> bool {
        let budget = self.config.params.frame_bytes_max / ANSWER_BYTES_FRAME_SHARE;
        let used = self.answered_this_interval(peer);
        if *used > 0 && used.saturating_add(bytes) > budget {
            return false;
        }
        *used = used.saturating_add(bytes);
        true
    }

    /// Whether `peer` has used its whole share of answers for this status interval: then
    /// its request is refused before anything is looked up or encoded for it.
    pub(super) fn answers_spent(&mut self, peer: ReplicaId) -> bool {
        let budget = self.config.params.frame_bytes_max / ANSWER_BYTES_FRAME_SHARE;
        *self.answered_this_interval(peer) >= budget
    }

    fn answered_this_interval(&mut self, peer: ReplicaId) -> &mut usize {
        let interval = self.config.params.status_interval_ms.saturating_mul(1000);
        let now = self.now;
        let (since, used) = self.proposals.answered.entry(peer).or_insert((now, 0));
        if now.saturating_sub(*since) >= interval {
            (*since, *used) = (now, 0);
        }
        used
    }

    /// A pre-prepare at or below the new view's floor is a copy of one of its re-proposals
    /// (the primary retransmits them, batch and all): it brings an awaited batch too.
    pub(super) fn take_re_proposal_copy(
        &mut self,
        pre_prepare: &Signed<PrePrepareHeader>,
        batch: &Batch,
    ) -> bool {
        let seq = pre_prepare.body.seq;
        if self.proposals.awaited.get(&seq) != Some(pre_prepare) {
            return false;
        }
        let Some(pre_prepare) = self.proposals.awaited.remove(&seq) else {
            return false;
        };
        // The boundary checked that the batch hashes to the signed digest.
        self.counters.proposals_fetched += 1;
        self.accept_re_proposal(pre_prepare, batch.clone());
        true
    }

    /// A batch asked for: kept only if it hashes to the digest awaited at its sequence
    /// number.
    pub(super) fn handle_proposal(&mut self, proposal: Proposal) {
        let Some(awaited) = self.proposals.awaited.get(&proposal.seq) else {
            return self.drop_message(DropReason::UnsolicitedProposal);
        };
        debug_assert!(self.in_window(proposal.seq), "pruned as the window moves");
        if !self.normal || awaited.body.view != self.view {
            return self.drop_message(DropReason::UnsolicitedProposal);
        }
        if proposal.batch.digest() != awaited.body.digest {
            return self.drop_message(DropReason::ProposalDigest);
        }
        let Some(pre_prepare) = self.proposals.awaited.remove(&proposal.seq) else {
            return;
        };
        self.counters.proposals_fetched += 1;
        self.accept_re_proposal(pre_prepare, proposal.batch);
    }
}
