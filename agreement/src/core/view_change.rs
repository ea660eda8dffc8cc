//! View changes (PBFT section 4.4, with signed view-change and new-view messages as in the
//! 1999 paper): leaving a view, electing the next primary's proposals, entering the view.

use super::{DropReason, Replica, VIEW_CHANGE_BACKOFF_EXPONENT_MAX};
use crate::core::persist::Record;
use std::collections::{BTreeMap, VecDeque};
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{
    Batch, CheckpointCertificate, Message, NewView, PrePrepareHeader, PreparedCertificate,
    ViewChange,
};
use zz_protocol::{Digest, ReplicaId, Seq, Time, View};

/// What a replica knows of view changes: the latest one from each replica, the timers,
/// the new view it entered, and messages for views it has not entered yet.
pub(super) struct ViewChangeState {
    /// The latest view change from each replica.
    pub(super) received: BTreeMap<ReplicaId, Signed<ViewChange>>,
    /// While changing view with a quorum of view changes: when to give up on the new primary.
    pub(super) new_view_deadline: Option<Time>,
    /// Consecutive view changes without reaching a normal view, for the timer's backoff.
    pub(super) attempts: u32,
    /// The new-view message of the current view, re-sent to replicas that missed it.
    pub(super) last_new_view: Option<Signed<NewView>>,
    /// Pre-prepares for sequence numbers at or below this came in the new-view message;
    /// the primary may not propose them again in this view (PBFT section 4.4).
    pub(super) new_view_floor: Seq,
    /// When this replica's view change is next resent, while the view is not entered.
    pub(super) resend_at: Time,
    /// Messages for views this replica has not entered yet, kept until it enters them.
    /// Each with its sender and its encoded size.
    pub(super) future: VecDeque<(ReplicaId, usize, Message)>,
    /// To whom the current new view was re-sent, and when: a new view is large, and a
    /// stale status or view change that costs a peer little must not buy it one each time.
    pub(super) new_view_resent: BTreeMap<ReplicaId, (View, Time)>,
    /// As the next primary: when 2f+1 view changes for the target view were first here.
    pub(super) quorum_at: Option<Time>,
}

impl ViewChangeState {
    pub(super) fn new(now: Time) -> ViewChangeState {
        ViewChangeState {
            received: BTreeMap::new(),
            new_view_deadline: None,
            attempts: 0,
            last_new_view: None,
            new_view_floor: Seq(0),
            resend_at: now,
            future: VecDeque::new(),
            new_view_resent: BTreeMap::new(),
            quorum_at: None,
        }
    }
}

/// O, as every replica computes it from the same 2f+1 view changes: the highest stable
/// checkpoint among them, and for each sequence number above it up to the highest one
/// prepared anywhere, the digest prepared in the highest view, or the null batch's.
pub(super) fn compute_new_view_entries(
    view_changes: &[Signed<ViewChange>],
) -> (CheckpointCertificate, Vec<(Seq, Digest)>) {
    let stable = view_changes
        .iter()
        .map(|view_change| &view_change.body.stable)
        .max_by_key(|certificate| certificate.seq)
        .expect("a new view rests on 2f+1 view changes")
        .clone();
    let mut best: BTreeMap<Seq, &PreparedCertificate> = BTreeMap::new();
    for view_change in view_changes {
        for certificate in &view_change.body.prepared {
            if certificate.seq() <= stable.seq {
                continue;
            }
            let better = best
                .get(&certificate.seq())
                .is_none_or(|current| certificate.view() > current.view());
            if better {
                best.insert(certificate.seq(), certificate);
            }
        }
    }
    let max_seq = best.keys().next_back().copied().unwrap_or(stable.seq);
    let null = Batch::null().digest();
    let entries = (stable.seq.0 + 1..=max_seq.0)
        .map(|seq| {
            let digest = (best.get(&Seq(seq))).map_or(null, |certificate| certificate.digest());
            (Seq(seq), digest)
        })
        .collect();
    (stable, entries)
}

impl Replica {
    /// Leave the current view for `target`: stop taking part in the normal case and
    /// multicast VIEW-CHANGE(target, stable checkpoint, prepared certificates).
    pub(super) fn start_view_change(&mut self, target: View) {
        if target <= self.view {
            return;
        }
        tracing::info!(replica = %self.config.id, from = %self.view, to = %target, "view change");
        self.view = target;
        self.normal = false;
        self.proposals.awaited.clear();
        self.view_change.quorum_at = None;
        // Armed now, not only once 2f+1 view changes arrive: replicas that missed each
        // other's view changes still move on (with backoff) instead of waiting forever.
        let timeout = self.view_change_timeout_micros();
        self.view_change.new_view_deadline = Some(self.now.saturating_add_micros(timeout));
        self.view_change.attempts = self.view_change.attempts.saturating_add(1);
        self.counters.view_changes_started += 1;
        self.persist(Record::View {
            view: target,
            normal: false,
        });
        let view_change = self.make_view_change(target);
        self.view_change
            .received
            .insert(self.config.id, view_change.clone());
        self.view_change.resend_at = self
            .now
            .saturating_add_micros(self.config.params.view_change_timeout_ms * 1000 / 2);
        self.broadcast(Message::ViewChange(view_change));
        self.check_view_change_quorum();
    }

    /// VIEW-CHANGE(target, stable checkpoint with proof, prepared certificates above it).
    pub(super) fn make_view_change(&self, target: View) -> Signed<ViewChange> {
        let (low, high) = (self.low_watermark(), self.high_watermark());
        let prepared = self
            .slots
            .range(low.next()..=high)
            .filter_map(|(_, slot)| slot.prepared_certificate.as_ref())
            .map(|(certificate, _)| certificate.clone())
            .filter(|certificate| certificate.view() < target)
            .collect();
        self.sign(ViewChange {
            new_view: target,
            stable: self.checkpoints.stable.clone(),
            prepared,
        })
    }

    /// Show `peer` the new view of the current view, which it missed: once per view, and
    /// again only after a view-change timeout (the first copy may have been lost).
    pub(super) fn resend_new_view(&mut self, peer: ReplicaId) {
        let Some(new_view) = self.view_change.last_new_view.clone() else {
            return;
        };
        let view = new_view.body.view;
        let pause = self
            .config
            .params
            .view_change_timeout_ms
            .saturating_mul(1_000);
        let recent = (self.view_change.new_view_resent.get(&peer))
            .is_some_and(|&(sent, at)| sent == view && self.now < at.saturating_add_micros(pause));
        if recent {
            self.counters.new_views_withheld += 1;
            return;
        }
        self.view_change
            .new_view_resent
            .insert(peer, (view, self.now));
        self.send(peer, Message::NewView(new_view));
    }

    pub(super) fn handle_view_change(&mut self, view_change: Signed<ViewChange>) {
        let sender = view_change.signer;
        let target = view_change.body.new_view;
        if target < self.view || (target == self.view && self.normal) {
            // The sender missed the new view we are in: show it again.
            if target == self.view {
                self.resend_new_view(sender);
            }
            return self.drop_message(DropReason::StaleView);
        }
        let newer = self
            .view_change
            .received
            .get(&sender)
            .is_none_or(|existing| existing.body.new_view < target);
        if !newer {
            return self.drop_message(DropReason::Duplicate);
        }
        self.view_change.received.insert(sender, view_change);
        self.join_view_change_if_needed();
        self.check_view_change_quorum();
    }

    /// Liveness rule of section 4.5.2: f+1 replicas asking for views above ours means at
    /// least one correct replica does; join the smallest such view.
    fn join_view_change_if_needed(&mut self) {
        let me = self.config.id;
        let mut above: Vec<View> = self
            .view_change
            .received
            .iter()
            .filter(|(replica, _)| **replica != me)
            .map(|(_, view_change)| view_change.body.new_view)
            .filter(|view| *view > self.view)
            .collect();
        if above.len() >= self.config.params.weak_quorum() {
            above.sort();
            self.start_view_change(above[0]);
        }
    }

    /// With 2f+1 view changes for our target: the new primary sends NEW-VIEW; everyone
    /// else starts the timer within which that must arrive.
    ///
    /// The primary prefers view changes whose every certificate names a batch it holds: a
    /// Byzantine replica can show a certificate (2f+1 signatures, valid) for a batch no
    /// correct replica kept, and a new view resting on it would stall that sequence number.
    /// Such a view change is left out when 2f+1 others are here; the primary waits for them
    /// a quarter of the view-change timeout at most, or until every replica's is here.
    pub(super) fn check_view_change_quorum(&mut self) {
        if self.normal {
            return;
        }
        let target = self.view;
        let matching: Vec<Signed<ViewChange>> = self
            .view_change
            .received
            .values()
            .filter(|view_change| view_change.body.new_view == target)
            .cloned()
            .collect();
        if matching.len() < self.config.params.quorum() {
            return;
        }
        if self.view_change.new_view_deadline.is_none() {
            let timeout = self.view_change_timeout_micros();
            self.view_change.new_view_deadline = Some(self.now.saturating_add_micros(timeout));
        }
        if self.primary_of(target) != self.config.id {
            return;
        }
        let quorum_at = *self.view_change.quorum_at.get_or_insert(self.now);
        let served: Vec<Signed<ViewChange>> = (matching.iter())
            .filter(|view_change| self.lacked_batches(view_change) == 0)
            .cloned()
            .collect();
        let grace = self.config.params.view_change_timeout_ms * 1000 / 4;
        let waited = self.now >= quorum_at.saturating_add_micros(grace);
        let everyone = matching.len() == self.config.params.replica_count();
        if served.len() >= self.config.params.quorum() {
            self.send_new_view(served);
        } else if waited || everyone {
            self.send_new_view(matching);
        }
    }

    /// How many of the certificates in `view_change` name a batch this replica lacks.
    fn lacked_batches(&self, view_change: &Signed<ViewChange>) -> usize {
        (view_change.body.prepared.iter())
            .filter(|certificate| !self.holds_batch(certificate.seq(), certificate.digest()))
            .count()
    }

    fn send_new_view(&mut self, mut view_changes: Vec<Signed<ViewChange>>) {
        // Those whose batches are here first, then its own, then by replica id: any 2f+1
        // would do for safety.
        let me = self.config.id;
        let mut keyed: Vec<_> = (view_changes.drain(..))
            .map(|view_change| {
                let key = (
                    self.lacked_batches(&view_change),
                    view_change.signer != me,
                    view_change.signer,
                );
                (key, view_change)
            })
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        view_changes = keyed
            .into_iter()
            .map(|(_, view_change)| view_change)
            .collect();
        view_changes.truncate(self.config.params.quorum());
        let view = self.view;
        let (_, computed) = compute_new_view_entries(&view_changes);
        let entries = computed
            .into_iter()
            .map(|(seq, digest)| self.sign(PrePrepareHeader { view, seq, digest }))
            .collect();
        let new_view = self.sign(NewView {
            view,
            view_changes,
            entries,
        });
        self.install_new_view(new_view.clone());
        self.broadcast(Message::NewView(new_view));
    }

    pub(super) fn handle_new_view(&mut self, new_view: Signed<NewView>) {
        let view = new_view.body.view;
        if view < self.view || (view == self.view && self.normal) {
            return self.drop_message(DropReason::StaleView);
        }
        let (_, expected) = compute_new_view_entries(&new_view.body.view_changes);
        let matches = expected.len() == new_view.body.entries.len()
            && expected
                .iter()
                .zip(&new_view.body.entries)
                .all(|((seq, digest), entry)| {
                    entry.body.seq == *seq && entry.body.digest == *digest
                });
        if !matches {
            return self.drop_message(DropReason::NewViewMismatch);
        }
        self.install_new_view(new_view);
    }

    /// Enter the view of `new_view`: adopt its checkpoint, accept its re-proposals, and
    /// resume the normal case.
    fn install_new_view(&mut self, new_view: Signed<NewView>) {
        let view = new_view.body.view;
        let is_primary = self.primary_of(view) == self.config.id;
        tracing::info!(replica = %self.config.id, %view, "entering view");
        self.view = view;
        self.normal = true;
        self.view_change.attempts = 0;
        self.view_change.new_view_deadline = None;
        // The new view first: a torn tail keeps a prefix of the records, and a replica
        // restored as normal in the view without its new view would accept pre-prepares
        // that contradict it (see `Replica::restore`).
        self.persist(Record::NewView(new_view.clone()));
        self.persist(Record::View { view, normal: true });
        self.view_change.last_new_view = Some(new_view.clone());
        let (stable, _) = compute_new_view_entries(&new_view.body.view_changes);
        self.adopt_stable_certificate(stable.clone());
        let mut floor = stable.seq;
        self.proposals.awaited.clear();
        for entry in &new_view.body.entries {
            floor = floor.max(entry.body.seq);
            if self.in_window(entry.body.seq) {
                self.take_re_proposal(entry.clone());
            }
        }
        self.view_change.new_view_floor = floor;
        if is_primary {
            self.proposer.next_seq = Seq(floor.0.max(self.exec.seq.0) + 1);
        }
        for slot in self.slots.values_mut() {
            if slot.view < view {
                slot.enter_view(view);
            }
        }
        // Every request still waiting gets a fresh timer, and the new primary proposes them;
        // so does every formable stability certificate.
        let now = self.now;
        self.stability.restart_timers(now);
        // Requests seen only in the old primary's pre-prepares are forgotten: this replica
        // may have checked only its own MAC slot of them, and the new primary must propose
        // only what every backup will accept. A client whose request was lost so
        // retransmits it to every replica, which check its signature.
        self.requests.waiting.retain(|_, waiting| waiting.verified);
        let mut arrivals: Vec<_> = self
            .requests
            .waiting
            .iter_mut()
            .map(|(client, waiting)| {
                waiting.since = now;
                waiting.proposed = false;
                (*client, waiting.request.request.timestamp)
            })
            .collect();
        arrivals.sort();
        self.requests.arrivals = if is_primary {
            arrivals.into()
        } else {
            Default::default()
        };
        self.requests.in_flight.clear();
        self.view_change
            .received
            .retain(|_, view_change| view_change.body.new_view > view);
        self.view_change.last_new_view = Some(new_view);
        self.view_change.new_view_resent.clear();
        let buffered: Vec<_> = self.view_change.future.drain(..).collect();
        for (sender, _, message) in buffered {
            self.handle_replica_message(sender, message);
        }
        self.ask_for_awaited_proposals();
    }

    /// The base view-change timeout, doubled for each consecutive failed attempt.
    pub(super) fn view_change_timeout_micros(&self) -> u64 {
        let exponent = self
            .view_change
            .attempts
            .min(VIEW_CHANGE_BACKOFF_EXPONENT_MAX);
        self.config.params.view_change_timeout_ms * 1000 * (1u64 << exponent)
    }

    pub(super) fn view_change_deadline(&self) -> Option<Time> {
        if !self.normal {
            return self.view_change.new_view_deadline;
        }
        if self.is_primary() {
            return None;
        }
        let oldest_request = (self.requests.waiting.values())
            .map(|waiting| waiting.since)
            .min();
        let oldest = match (oldest_request, self.stability.oldest_formable()) {
            (Some(request), Some(certificate)) => request.min(certificate),
            (request, certificate) => request.or(certificate)?,
        };
        Some(oldest.saturating_add_micros(self.view_change_timeout_micros()))
    }

    /// View changes get lost like any message; until the view is entered, resend ours
    /// (PBFT retransmits view-change messages the same way).
    pub(super) fn resend_view_change(&mut self) {
        if self.normal || self.now < self.view_change.resend_at {
            return;
        }
        let me = self.config.id;
        let Some(view_change) = self.view_change.received.get(&me).cloned() else {
            return;
        };
        if view_change.body.new_view == self.view {
            let interval = self.config.params.view_change_timeout_ms * 1000 / 2;
            self.view_change.resend_at = self.now.saturating_add_micros(interval);
            self.broadcast(Message::ViewChange(view_change));
        }
    }
}
