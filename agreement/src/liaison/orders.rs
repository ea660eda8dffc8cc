//! Per-app orders on their way to execution replicas. Each app with an execution group gets
//! its orders sent to every active member (the activator's last membership notice says
//! who). The orders since the app's last stable execution checkpoint are retained, and a
//! member that reports (through `Executed`) being behind, or asks (`FetchOrders`, as a
//! woken replica does), gets the missing ones again, so a lost order costs a resend
//! rather than a stuck replica.
//!
//! The router judges a checkpoint stable when at least f+1 members reported the same root
//! (so a correct one vouches for it, whatever the activator says) and every active member
//! did, except those joining (they asked where to start and start from a stable
//! checkpoint, needing no order before it). A judgement is only this replica's vote: the
//! core orders f+1 votes alike (see its `stability` module), and only then is the
//! checkpoint stable ([`OrderRouter::agreed_stable`]): the orders before it are dropped,
//! and a woken replica starts from it. Replicas learn of reports and wakes at different
//! points, so their judgements may differ; what is ordered does not.
//!
//! An agreement replica that jumped past some orders (state transfer) or forgot them
//! (restart) recovers them from its peers (see the `recovery` module): each app's orders
//! form a hash chain whose head the PBFT checkpoint certifies, so one peer's copy can be
//! checked on its own. Until it holds every order after the stable checkpoint it names,
//! it names none to a joining replica.
//!
//! The retained orders, with the chain before each, and the stable checkpoints are what the
//! driver persists for the router (see the `restore` module): a router restarted with
//! every peer (a whole cluster restarting) takes them back from disk.

mod recovery;
mod restore;

pub use restore::OrderRestoreError;

use super::membership::{ExecutionGroups, MembershipTable};
use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::messages::{AppHead, AppOrder, Executed, ExecutionCheckpoint};
use zz_protocol::{AppId, Digest, ExecutionId, ReplicaId, Seq, Time};

/// Orders retained per app for resending, at most (the oldest go first, even if no
/// checkpoint after them is stable yet).
pub const ORDERS_RETAINED_MAX: usize = 4096;
/// Orders resent to one execution replica per resend round, at most.
pub const ORDERS_RESENT_PER_ROUND_MAX: usize = 64;
/// Chain values kept per app, at most: one per retained order, the one before the
/// oldest, and the anchors jumps left above gaps not recovered yet.
pub const CHAINS_KEPT_MAX: usize = 2 * ORDERS_RETAINED_MAX;

const _: () = assert!(CHAINS_KEPT_MAX > ORDERS_RETAINED_MAX);

/// What a membership notice changed: the members active before it, and the checkpoint
/// judged stable through the change, to vote for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    pub previously_active: BTreeSet<ExecutionId>,
    pub vote: Option<ExecutionCheckpoint>,
}

/// An order retained for resending, with the app's order chain before it (what a peer or
/// a restarted replica needs to check it and the ones after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedOrder {
    pub order: AppOrder,
    pub chain_before: Digest,
}

/// Routes, retains and resends per-app orders. See the module documentation.
#[derive(Default)]
pub struct OrderRouter {
    /// Each app's members, and the active ones: where orders go.
    membership: MembershipTable,
    /// f+1: members that must report a root alike for it to be stable.
    weak_quorum: usize,
    retained: BTreeMap<AppId, BTreeMap<Seq, RetainedOrder>>,
    /// The last sequence number each execution replica reported executing.
    progress: BTreeMap<ExecutionId, Seq>,
    /// Roots reported per app and sequence number, by member, until stable.
    checkpoints: BTreeMap<AppId, BTreeMap<Seq, BTreeMap<ExecutionId, Digest>>>,
    /// Each app's last stable execution checkpoint.
    stable: BTreeMap<AppId, (Seq, Digest)>,
    /// Each app's highest routed order.
    routed: BTreeMap<AppId, Seq>,
    /// Per app, the order chain after each sequence number where it is known for sure:
    /// computed over orders routed or recovered here, or certified by a PBFT checkpoint
    /// (an anchor a jump left). Seq 0's chain, the zero digest, is implied.
    chains: BTreeMap<AppId, BTreeMap<Seq, Digest>>,
    /// Per app, the stable execution checkpoint each peer claimed in its last answer.
    claims: BTreeMap<AppId, BTreeMap<ReplicaId, (Seq, Digest)>>,
    /// Checkpoints that became stable since the driver last took them, to persist.
    newly_stable: Vec<ExecutionCheckpoint>,
    /// Active members that asked to join and have reported no checkpoint since.
    joining: BTreeSet<ExecutionId>,
    /// Orders retained since the driver last took them, to persist.
    newly_retained: Vec<RetainedOrder>,
    next_resend_at: Time,
    next_recovery_at: Time,
}

impl OrderRouter {
    /// A router for `groups` (every configured member per app), with `active` the members
    /// that receive orders until told otherwise.
    pub fn new(
        groups: ExecutionGroups,
        active: ExecutionGroups,
        weak_quorum: usize,
    ) -> OrderRouter {
        assert!(weak_quorum >= 1);
        OrderRouter {
            membership: MembershipTable::new(groups, &active),
            weak_quorum,
            ..OrderRouter::default()
        }
    }

    /// Who runs which app, and who is active: the table the detector judges by too.
    pub fn membership(&self) -> &MembershipTable {
        &self.membership
    }

    /// The activator's membership notice for `app` (see
    /// [`MembershipTable::handle_notice`]). When it changed the active members, pending
    /// checkpoints are judged again against the new set.
    pub fn handle_membership(
        &mut self,
        app: AppId,
        epoch: u64,
        active: &[ExecutionId],
    ) -> Option<MembershipChange> {
        let previously_active = self.membership.handle_notice(app, epoch, active)?;
        let membership = &self.membership;
        (self.joining).retain(|member| {
            !membership.is_member(*member, app) || membership.active(app).contains(member)
        });
        let vote = self.judge_pending_checkpoints(app);
        Some(MembershipChange {
            previously_active,
            vote,
        })
    }

    /// The latest pending checkpoint of `app` judged stable now, if any.
    fn judge_pending_checkpoints(&mut self, app: AppId) -> Option<ExecutionCheckpoint> {
        let pending: Vec<Seq> = self
            .checkpoints
            .get(&app)
            .map(|tracked| tracked.keys().rev().copied().collect())
            .unwrap_or_default();
        pending.into_iter().find_map(|seq| self.judge(app, seq))
    }

    /// Active member `from` of `app` asks where to start (`Join`): it no longer holds back
    /// the app's checkpoints until it reports one. Returns a pending checkpoint judged
    /// stable through it, to vote for.
    pub fn handle_join(&mut self, from: ExecutionId, app: AppId) -> Option<ExecutionCheckpoint> {
        if !self.membership.active(app).contains(&from) || !self.joining.insert(from) {
            return None;
        }
        self.judge_pending_checkpoints(app)
    }

    /// The app's highest routed sequence number.
    pub fn routed(&self, app: AppId) -> Seq {
        self.routed.get(&app).copied().unwrap_or_default()
    }

    /// This replica's orders of `head.app` jumped to `head` without routing the ones
    /// before it: a state transfer, or a restart that emptied the router. `head` must come
    /// from a certified PBFT checkpoint. The orders up to it were ordered by others, so
    /// execution reports up to it are judged; the ones missing here are recovered from
    /// peers and checked against `head.chain`.
    pub fn jumped_to(&mut self, head: AppHead) {
        if !self.membership.has_group(head.app) {
            return;
        }
        if head.seq > self.routed(head.app) {
            self.routed.insert(head.app, head.seq);
            let chains = self.chains.entry(head.app).or_default();
            chains.insert(head.seq, head.chain);
            while chains.len() > CHAINS_KEPT_MAX {
                chains.pop_first();
            }
        }
        // The app's certificate may have been ordered in the skipped range even when none
        // of its orders was (an idle app).
        if let Some((seq, root)) = head.stable {
            let checkpoint = ExecutionCheckpoint {
                app: head.app,
                seq,
                root,
            };
            self.agreed_stable(checkpoint);
        }
    }

    /// After a restart: `checkpoint` was stable here before (persisted). The orders after
    /// it that the replica does not order again are recovered from peers.
    pub fn restore_stable(&mut self, checkpoint: ExecutionCheckpoint) {
        let app = checkpoint.app;
        let own = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        if self.membership.has_group(app) && checkpoint.seq > own {
            self.make_stable(app, checkpoint.seq, checkpoint.root);
            self.newly_stable.clear();
        }
    }

    /// Stable checkpoints to persist: those since the last call.
    pub fn take_newly_stable(&mut self) -> Vec<ExecutionCheckpoint> {
        std::mem::take(&mut self.newly_stable)
    }

    /// Orders to persist: those retained since the last call (routed, or recovered from
    /// peers), each with the chain before it.
    pub fn take_newly_retained(&mut self) -> Vec<RetainedOrder> {
        std::mem::take(&mut self.newly_retained)
    }

    /// Every retained order of every app, for a compacted log.
    pub fn retained_orders(&self) -> impl Iterator<Item = &RetainedOrder> + '_ {
        self.retained.values().flat_map(BTreeMap::values)
    }

    /// Each app's stable checkpoint, for a compacted log.
    pub fn stable_checkpoints(&self) -> Vec<ExecutionCheckpoint> {
        (self.stable.iter())
            .map(|(app, (seq, root))| ExecutionCheckpoint {
                app: *app,
                seq: *seq,
                root: *root,
            })
            .collect()
    }

    /// The checkpoint to name to a joining replica of `app`: the last stable one (Seq 0:
    /// none yet, start from the empty state), or None while this replica lacks some order
    /// after it (a joiner must find every one at f+1 agreement replicas).
    pub fn join_checkpoint(&self, app: AppId) -> Option<(Seq, Digest)> {
        let stable = self
            .stable_checkpoint(app)
            .unwrap_or((Seq(0), Digest::default()));
        self.holds_all_after_stable(app).then_some(stable)
    }

    /// Panics if a table exceeds its bound or the chain an order needs went missing. The
    /// simulator calls it after every step (with the cluster's `replicas`): whatever peers
    /// and execution replicas send, the router's memory stays bounded.
    pub fn assert_bounds(&self, replicas: usize) {
        assert!(
            self.retained
                .values()
                .all(|r| r.len() <= ORDERS_RETAINED_MAX)
        );
        assert!(self.chains.values().all(|c| c.len() <= CHAINS_KEPT_MAX));
        let configured = |app: &AppId| self.membership.has_group(*app);
        assert!(self.retained.keys().all(configured));
        assert!(self.chains.keys().all(configured));
        assert!(self.claims.keys().all(configured));
        assert!(self.claims.values().all(|claims| claims.len() < replicas));
        for (app, (seq, _)) in &self.stable {
            // The chain at the last routed order stays, or no order could follow.
            let routed = self.routed(*app);
            assert!(routed == Seq(0) || self.chain_at(*app, routed).is_some());
            assert!(
                self.checkpoints
                    .get(app)
                    .is_none_or(|t| t.keys().all(|s| s > seq))
            );
        }
    }

    /// A member asks for the orders after `after` (a woken replica starting from a stable
    /// checkpoint): its progress is set back to `after`, and the first orders go at once.
    pub fn fetch_orders(
        &mut self,
        from: ExecutionId,
        app: AppId,
        after: Seq,
    ) -> Vec<(ExecutionId, AppOrder)> {
        if !self.membership.is_member(from, app) || after > self.routed(app) {
            return Vec::new();
        }
        self.progress.insert(from, after);
        let Some(retained) = self.retained.get(&app) else {
            return Vec::new();
        };
        retained
            .range(Seq(after.0.saturating_add(1))..)
            .take(ORDERS_RESENT_PER_ROUND_MAX)
            .map(|(_, retained)| (from, retained.order.clone()))
            .collect()
    }

    /// Where `order` goes; it is retained for resending.
    pub fn route(&mut self, order: AppOrder) -> Vec<(ExecutionId, AppOrder)> {
        if !self.membership.has_group(order.app) {
            return Vec::new();
        }
        let sends = (self.membership.active(order.app).iter())
            .map(|member| (*member, order.clone()))
            .collect();
        let app = order.app;
        let routed = self.routed.entry(app).or_default();
        assert_eq!(
            order.seq,
            routed.next(),
            "the core orders each app gap-free, after any jump"
        );
        *routed = order.seq;
        let before = self.chain_at(app, Seq(order.seq.0 - 1));
        let before = before.expect("the chain at the last routed order is always kept");
        self.record_chain(app, order.seq, order.chained(before));
        // A restarted replica may order again up to a checkpoint it had seen stable.
        let stable = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        if order.seq > stable {
            self.retain(order, before);
        }
        sends
    }

    /// The order chain of `app` after `seq`, if known here.
    fn chain_at(&self, app: AppId, seq: Seq) -> Option<Digest> {
        if seq == Seq(0) {
            return Some(Digest::default());
        }
        self.chains.get(&app)?.get(&seq).copied()
    }

    fn record_chain(&mut self, app: AppId, seq: Seq, chain: Digest) {
        let chains = self.chains.entry(app).or_default();
        chains.insert(seq, chain);
        while chains.len() > CHAINS_KEPT_MAX {
            chains.pop_first();
        }
    }

    /// Keep `order` for resending (and persist it), the oldest going once over the bound.
    fn retain(&mut self, order: AppOrder, chain_before: Digest) {
        let retained = RetainedOrder {
            order,
            chain_before,
        };
        self.newly_retained.push(retained.clone());
        let app_retained = self.retained.entry(retained.order.app).or_default();
        app_retained.insert(retained.order.seq, retained);
        while app_retained.len() > ORDERS_RETAINED_MAX {
            app_retained.pop_first();
        }
    }

    /// An execution replica's report; only its own app's reports count.
    pub fn handle_executed(&mut self, from: ExecutionId, executed: Executed) {
        if !self.membership.is_member(from, executed.app) {
            return;
        }
        // A report beyond anything routed is a lie; it must not stop resends to others.
        let routed = self.routed.get(&executed.app).copied().unwrap_or_default();
        if executed.seq > routed {
            return;
        }
        let progress = self.progress.entry(from).or_default();
        *progress = (*progress).max(executed.seq);
    }

    /// An execution replica's checkpoint root. When every active member of the app reported
    /// the same root for a sequence number, this replica judges that checkpoint stable:
    /// returns it, to vote for.
    pub fn handle_checkpoint(
        &mut self,
        from: ExecutionId,
        checkpoint: ExecutionCheckpoint,
    ) -> Option<ExecutionCheckpoint> {
        let app = checkpoint.app;
        if !self.membership.is_member(from, app) {
            return None;
        }
        let stable_seq = self.stable.get(&app).map_or(Seq(0), |(seq, _)| *seq);
        let routed = self.routed.get(&app).copied().unwrap_or_default();
        // Only checkpoints of orders actually routed: a member cannot park claims far ahead.
        if checkpoint.seq <= stable_seq || checkpoint.seq > routed {
            return None;
        }
        // A report older than the member's pending one (replayed, or overtaken on the
        // way) must not replace it: that would hold the newer checkpoint back.
        let newer_pending = (self.checkpoints.get(&app)).is_some_and(|tracked| {
            (tracked.range(checkpoint.seq.next()..)).any(|(_, roots)| roots.contains_key(&from))
        });
        if newer_pending {
            return None;
        }
        self.joining.remove(&from);
        // A member reporting a checkpoint executed up to it (its Executed report may be lost).
        let progress = self.progress.entry(from).or_default();
        *progress = (*progress).max(checkpoint.seq);
        let tracked = self.checkpoints.entry(app).or_default();
        // One pending root per member: its latest report replaces its earlier ones, so
        // the table holds at most one entry per member.
        for roots in tracked.values_mut() {
            roots.remove(&from);
        }
        tracked.retain(|_, roots| !roots.is_empty());
        tracked
            .entry(checkpoint.seq)
            .or_default()
            .insert(from, checkpoint.root);
        self.judge(app, checkpoint.seq)
    }

    /// Whether this replica judges checkpoint `seq` of `app` stable now (f+1 members and
    /// every active one not joining reported one root).
    fn judge(&self, app: AppId, seq: Seq) -> Option<ExecutionCheckpoint> {
        let roots = self.checkpoints.get(&app)?.get(&seq)?;
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for root in roots.values() {
            *counts.entry(*root).or_default() += 1;
        }
        let root = counts
            .into_iter()
            .find(|(_, count)| *count >= self.weak_quorum)
            .map(|(root, _)| root)?;
        let active = self.membership.active(app);
        let settled = |member: &&ExecutionId| !self.joining.contains(*member);
        (active.iter().filter(settled))
            .all(|member| roots.get(member) == Some(&root))
            .then_some(ExecutionCheckpoint { app, seq, root })
    }

    /// The agreement ordered `checkpoint` as the app's stable one (or a certified PBFT
    /// checkpoint says it was): record it unless a later one is, and return whom to tell
    /// (the members that reported a root for it, and the active ones).
    pub fn agreed_stable(
        &mut self,
        checkpoint: ExecutionCheckpoint,
    ) -> Vec<(ExecutionId, ExecutionCheckpoint)> {
        let ExecutionCheckpoint { app, seq, root } = checkpoint;
        let own = self.stable_checkpoint(app).map_or(Seq(0), |(seq, _)| seq);
        if !self.membership.has_group(app) || seq <= own {
            return Vec::new();
        }
        let reported = self.checkpoints.get(&app).and_then(|t| t.get(&seq));
        let active = self.membership.active(app);
        let told = (self.membership.members(app).iter())
            .filter(|member| {
                reported.is_some_and(|roots| roots.contains_key(member)) || active.contains(member)
            })
            .map(|member| (*member, checkpoint))
            .collect();
        self.make_stable(app, seq, root);
        told
    }

    /// `(seq, root)` is the app's stable checkpoint from now on: the orders up to it are
    /// no longer needed for replay (the chain at `seq` stays, the anchor of what follows,
    /// and so does the one at the last routed order, below `seq` after a restart).
    fn make_stable(&mut self, app: AppId, seq: Seq, root: Digest) {
        self.stable.insert(app, (seq, root));
        self.newly_stable
            .push(ExecutionCheckpoint { app, seq, root });
        let chains_from = seq.min(self.routed(app));
        if let Some(tracked) = self.checkpoints.get_mut(&app) {
            tracked.retain(|s, _| *s > seq);
        }
        if let Some(retained) = self.retained.get_mut(&app) {
            retained.retain(|s, _| *s > seq);
        }
        if let Some(chains) = self.chains.get_mut(&app) {
            chains.retain(|s, _| *s >= chains_from);
        }
    }

    /// The app's last stable execution checkpoint.
    pub fn stable_checkpoint(&self, app: AppId) -> Option<(Seq, Digest)> {
        self.stable.get(&app).copied()
    }

    /// Whether the order for `seq` of `app` is retained (can be sent to a joiner).
    pub fn retains(&self, app: AppId, seq: Seq) -> bool {
        self.retained
            .get(&app)
            .is_some_and(|retained| retained.contains_key(&seq))
    }

    /// Orders retained for `app` (those after its last stable checkpoint, bounded).
    pub fn retained_count(&self, app: AppId) -> usize {
        self.retained.get(&app).map_or(0, BTreeMap::len)
    }

    /// What to send again, at most once per `interval_micros`: to each active member behind
    /// the latest retained order, the next orders after what it reported; and to each
    /// active member the stable checkpoint, as a join is answered (none while orders after
    /// it are missing here: a joiner takes the notice as an answer). A member behind it
    /// starts over from it once f+1 agreement replicas named it (the orders it lacks are
    /// dropped, so no resend can bring it up). A member past it may have lost the notice,
    /// and keeps that checkpoint's snapshot, which joiners fetch from, only once told.
    pub fn resend(&mut self, now: Time, interval_micros: u64) -> Resends {
        let mut resends = Resends::default();
        if now < self.next_resend_at {
            return resends;
        }
        self.next_resend_at = now.saturating_add_micros(interval_micros);
        for (member, app) in self.membership.members_by_id() {
            if !self.membership.active(app).contains(&member) {
                continue;
            }
            let done = self.progress.get(&member).copied().unwrap_or_default();
            if let Some((seq, root)) = self.join_checkpoint(app)
                && seq > Seq(0)
            {
                let checkpoint = ExecutionCheckpoint { app, seq, root };
                resends.stable_notices.push((member, checkpoint));
            }
            let Some(retained) = self.retained.get(&app) else {
                continue;
            };
            let behind = retained
                .range(Seq(done.0.saturating_add(1))..)
                .take(ORDERS_RESENT_PER_ROUND_MAX)
                .map(|(_, retained)| (member, retained.order.clone()));
            resends.orders.extend(behind);
        }
        resends
    }
}

/// What [`OrderRouter::resend`] sends again.
#[derive(Debug, Default)]
pub struct Resends {
    pub orders: Vec<(ExecutionId, AppOrder)>,
    pub stable_notices: Vec<(ExecutionId, ExecutionCheckpoint)>,
}

#[cfg(test)]
mod tests;
