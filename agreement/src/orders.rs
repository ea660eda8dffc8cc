//! Per-app orders on their way to execution replicas. Each app with an execution group gets
//! its orders sent to every active member (the activator's last membership notice says
//! who). The orders since the app's last stable execution checkpoint are retained, and a
//! member that reports (through `Executed`) being behind, or asks (`FetchOrders`, as a
//! woken replica does), gets the missing ones again, so a lost order costs a resend
//! rather than a stuck replica.
//!
//! A checkpoint is stable when at least f+1 members reported the same root (so a correct
//! one vouches for it, whatever the activator says) and every active member did: the
//! orders before it are then dropped, and a woken replica starts from it.

use std::collections::BTreeMap;
use zz_protocol::messages::{AppOrder, Executed, ExecutionCheckpoint};
use zz_protocol::{AppId, Digest, ExecutionId, Seq, Time};

/// Orders retained per app for resending, at most (the oldest go first, even if no
/// checkpoint after them is stable yet).
pub const ORDERS_RETAINED_MAX: usize = 4096;
/// Orders resent to one execution replica per resend round, at most.
pub const ORDERS_RESENT_PER_ROUND_MAX: usize = 64;

/// Which execution replicas run which app.
pub type ExecutionGroups = BTreeMap<AppId, Vec<ExecutionId>>;

/// Routes, retains and resends per-app orders. See the module documentation.
#[derive(Default)]
pub struct OrderRouter {
    groups: ExecutionGroups,
    /// Each app's active members: where orders go.
    active: ExecutionGroups,
    /// f+1: members that must report a root alike for it to be stable.
    weak_quorum: usize,
    /// Execution replica -> its app.
    members: BTreeMap<ExecutionId, AppId>,
    retained: BTreeMap<AppId, BTreeMap<Seq, AppOrder>>,
    /// The last sequence number each execution replica reported executing.
    progress: BTreeMap<ExecutionId, Seq>,
    /// Roots reported per app and sequence number, by member, until stable.
    checkpoints: BTreeMap<AppId, BTreeMap<Seq, BTreeMap<ExecutionId, Digest>>>,
    /// Each app's last stable execution checkpoint.
    stable: BTreeMap<AppId, (Seq, Digest)>,
    /// Each app's highest routed order.
    routed: BTreeMap<AppId, Seq>,
    /// Per app, the sequence number this replica had ordered to before a restart emptied
    /// the router: it no longer knows which checkpoint is stable, and the one it would name
    /// (none, or an old one) may be one whose following orders the others dropped since.
    /// It names no checkpoint below it to a joining replica.
    forgotten_until: BTreeMap<AppId, Seq>,
    next_resend_at: Time,
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
        let members = groups
            .iter()
            .flat_map(|(app, members)| members.iter().map(move |member| (*member, *app)))
            .collect();
        OrderRouter {
            groups,
            active,
            weak_quorum,
            members,
            ..OrderRouter::default()
        }
    }

    /// The app's active members from now on (members outside its group are ignored).
    /// Pending checkpoints are judged again against the new set; returns the members to
    /// tell of a checkpoint that became stable through the change.
    pub fn set_active(
        &mut self,
        app: AppId,
        active: &[ExecutionId],
    ) -> Vec<(ExecutionId, ExecutionCheckpoint)> {
        let Some(group) = self.groups.get(&app) else {
            return Vec::new();
        };
        let active: Vec<ExecutionId> = active
            .iter()
            .copied()
            .filter(|m| group.contains(m))
            .collect();
        self.active.insert(app, active);
        let pending: Vec<Seq> = self
            .checkpoints
            .get(&app)
            .map(|tracked| tracked.keys().rev().copied().collect())
            .unwrap_or_default();
        for seq in pending {
            let stable = self.try_stable(app, seq);
            if !stable.is_empty() {
                return stable;
            }
        }
        Vec::new()
    }

    /// The app's active members.
    pub fn active(&self, app: AppId) -> &[ExecutionId] {
        self.active.get(&app).map_or(&[], Vec::as_slice)
    }

    /// The app's highest routed sequence number.
    pub fn routed(&self, app: AppId) -> Seq {
        self.routed.get(&app).copied().unwrap_or_default()
    }

    /// A state transfer took this replica's per-app sequence of `app` to `seq`: the orders
    /// up to it were ordered by others, so execution reports up to it are judged. (The
    /// orders it skipped are a range others ordered and keep; its stable checkpoint is
    /// still the latest it knows, so it may still name it to a joining replica.)
    pub fn skipped_to(&mut self, app: AppId, seq: Seq) {
        if self.groups.contains_key(&app) {
            let routed = self.routed.entry(app).or_default();
            *routed = (*routed).max(seq);
        }
    }

    /// This replica restarted with an empty router after ordering `app` up to `seq`:
    /// reports up to it are judged, and it names no checkpoint below it to a joiner.
    pub fn forgot_up_to(&mut self, app: AppId, seq: Seq) {
        if self.groups.contains_key(&app) {
            self.skipped_to(app, seq);
            let forgotten = self.forgotten_until.entry(app).or_default();
            *forgotten = (*forgotten).max(seq);
        }
    }

    /// The checkpoint to name to a joining replica of `app`: the last stable one (Seq 0:
    /// none yet, start from the empty state), or None while it may be stale (see
    /// `forgotten_until`).
    pub fn join_checkpoint(&self, app: AppId) -> Option<(Seq, Digest)> {
        let stable = self
            .stable_checkpoint(app)
            .unwrap_or((Seq(0), Digest::default()));
        let forgotten = self.forgotten_until.get(&app).copied().unwrap_or_default();
        (stable.0 >= forgotten).then_some(stable)
    }

    /// Whether `member` runs `app`.
    pub fn is_member(&self, member: ExecutionId, app: AppId) -> bool {
        self.members.get(&member) == Some(&app)
    }

    /// A member asks for the orders after `after` (a woken replica starting from a stable
    /// checkpoint): its progress is set back to `after`, and the first orders go at once.
    pub fn fetch_orders(
        &mut self,
        from: ExecutionId,
        app: AppId,
        after: Seq,
    ) -> Vec<(ExecutionId, AppOrder)> {
        if !self.is_member(from, app) || after > self.routed(app) {
            return Vec::new();
        }
        self.progress.insert(from, after);
        let Some(retained) = self.retained.get(&app) else {
            return Vec::new();
        };
        retained
            .range(Seq(after.0.saturating_add(1))..)
            .take(ORDERS_RESENT_PER_ROUND_MAX)
            .map(|(_, order)| (from, order.clone()))
            .collect()
    }

    /// Whether `app` has execution replicas (otherwise agreement replicas answer clients).
    pub fn has_group(&self, app: AppId) -> bool {
        self.groups.contains_key(&app)
    }

    /// Where `order` goes; it is retained for resending.
    pub fn route(&mut self, order: AppOrder) -> Vec<(ExecutionId, AppOrder)> {
        if !self.groups.contains_key(&order.app) {
            return Vec::new();
        }
        let sends = self
            .active(order.app)
            .iter()
            .map(|member| (*member, order.clone()))
            .collect();
        let routed = self.routed.entry(order.app).or_default();
        *routed = (*routed).max(order.seq);
        let retained = self.retained.entry(order.app).or_default();
        retained.insert(order.seq, order);
        while retained.len() > ORDERS_RETAINED_MAX {
            retained.pop_first();
        }
        sends
    }

    /// An execution replica's report; only its own app's reports count.
    pub fn handle_executed(&mut self, from: ExecutionId, executed: Executed) {
        if self.members.get(&from) != Some(&executed.app) {
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
    /// the same root for a sequence number, that checkpoint is stable: orders up to it are
    /// no longer needed for replay and are dropped.
    /// Returns the members to tell when this report made the checkpoint stable.
    pub fn handle_checkpoint(
        &mut self,
        from: ExecutionId,
        checkpoint: ExecutionCheckpoint,
    ) -> Vec<ExecutionId> {
        let app = checkpoint.app;
        if self.members.get(&from) != Some(&app) {
            return Vec::new();
        }
        let stable_seq = self.stable.get(&app).map_or(Seq(0), |(seq, _)| *seq);
        let routed = self.routed.get(&app).copied().unwrap_or_default();
        // Only checkpoints of orders actually routed: a member cannot park claims far ahead.
        if checkpoint.seq <= stable_seq || checkpoint.seq > routed {
            return Vec::new();
        }
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
        self.try_stable(app, checkpoint.seq)
            .into_iter()
            .map(|(member, _)| member)
            .collect()
    }

    /// Whether checkpoint `seq` of `app` is now stable (f+1 members and every active one
    /// reported one root); if so, records it and returns whom to tell.
    fn try_stable(&mut self, app: AppId, seq: Seq) -> Vec<(ExecutionId, ExecutionCheckpoint)> {
        let Some(roots) = self.checkpoints.get(&app).and_then(|t| t.get(&seq)) else {
            return Vec::new();
        };
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for root in roots.values() {
            *counts.entry(*root).or_default() += 1;
        }
        let Some(root) = counts
            .into_iter()
            .find(|(_, count)| *count >= self.weak_quorum)
            .map(|(root, _)| root)
        else {
            return Vec::new();
        };
        let active = self.active(app);
        if !active.iter().all(|member| roots.get(member) == Some(&root)) {
            return Vec::new();
        }
        let checkpoint = ExecutionCheckpoint { app, seq, root };
        let told = self.groups[&app]
            .iter()
            .filter(|member| roots.contains_key(member) || active.contains(member))
            .map(|member| (*member, checkpoint))
            .collect();
        self.stable.insert(app, (seq, root));
        if let Some(tracked) = self.checkpoints.get_mut(&app) {
            tracked.retain(|s, _| *s > seq);
        }
        if let Some(retained) = self.retained.get_mut(&app) {
            retained.retain(|s, _| *s > seq);
        }
        told
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

    /// Orders to send again: for each member behind the latest retained order, the next
    /// ones after what it reported. At most once per `interval_micros`.
    pub fn resend(&mut self, now: Time, interval_micros: u64) -> Vec<(ExecutionId, AppOrder)> {
        if now < self.next_resend_at {
            return Vec::new();
        }
        self.next_resend_at = now.saturating_add_micros(interval_micros);
        let mut sends = Vec::new();
        for (member, app) in &self.members {
            let Some(retained) = self.retained.get(app) else {
                continue;
            };
            if !self.active(*app).contains(member) {
                continue;
            }
            let done = self.progress.get(member).copied().unwrap_or_default();
            let behind = retained
                .range(Seq(done.0.saturating_add(1))..)
                .take(ORDERS_RESENT_PER_ROUND_MAX)
                .map(|(_, order)| (*member, order.clone()));
            sends.extend(behind);
        }
        sends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::Digest;
    use zz_protocol::messages::NonDet;

    fn order(app: u32, seq: u64) -> AppOrder {
        AppOrder {
            app: AppId(app),
            seq: Seq(seq),
            agreement_seq: Seq(seq),
            nondet: NonDet::default(),
            requests: Vec::new(),
        }
    }

    #[test]
    fn orders_go_to_their_group_and_are_resent_to_members_behind() {
        let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
        let mut router = OrderRouter::new(groups.clone(), groups, 2);
        assert!(router.route(order(7, 1)).is_empty(), "app 7 has no group");
        assert_eq!(router.route(order(0, 1)).len(), 2);
        assert_eq!(router.route(order(0, 2)).len(), 2);
        let executed = |seq| Executed {
            app: AppId(0),
            seq: Seq(seq),
            replies: Digest::default(),
        };
        router.handle_executed(ExecutionId(0), executed(2));
        // A report about another app's sequence is ignored.
        router.handle_executed(
            ExecutionId(1),
            Executed {
                app: AppId(9),
                ..executed(2)
            },
        );
        let resent = router.resend(Time(0), 1000);
        let to: Vec<(u32, u64)> = resent.iter().map(|(e, o)| (e.0, o.seq.0)).collect();
        assert_eq!(to, vec![(1, 1), (1, 2)]);
        assert!(router.resend(Time(999), 1000).is_empty(), "rate limited");
    }

    /// A Byzantine member's reports (absurd sequence numbers, floods of checkpoints) are
    /// ignored or replace its own earlier ones; they never panic the agreement replica or
    /// stop resends to the others.
    #[test]
    fn a_lying_member_cannot_crash_the_router_or_block_the_others() {
        let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
        let mut router = OrderRouter::new(groups.clone(), groups, 2);
        for seq in 1..=3 {
            router.route(order(0, seq));
        }
        let liar = ExecutionId(0);
        router.handle_executed(
            liar,
            Executed {
                app: AppId(0),
                seq: Seq(u64::MAX),
                replies: Digest::default(),
            },
        );
        for seq in (1..100).map(|i| i * 1000) {
            let checkpoint = ExecutionCheckpoint {
                app: AppId(0),
                seq: Seq(seq),
                root: Digest([1; 32]),
            };
            assert!(router.handle_checkpoint(liar, checkpoint).is_empty());
        }
        let honest = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(2),
            root: Digest([2; 32]),
        };
        assert!(router.handle_checkpoint(ExecutionId(1), honest).is_empty());
        let resent = router.resend(Time(0), 1000);
        assert_eq!(
            resent.len(),
            6,
            "both members still get every retained order"
        );
    }

    /// A replica restarted with an empty router no longer knows the stable checkpoint: it
    /// names none to a joining replica until one at or past its restart point is stable,
    /// and judges reports up to that point. A state transfer only moves the latter.
    #[test]
    fn after_a_restart_the_router_names_no_checkpoint_below_it_to_a_joiner() {
        let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
        let mut router = OrderRouter::new(groups.clone(), groups, 2);
        assert_eq!(
            router.join_checkpoint(AppId(0)),
            Some((Seq(0), Digest::default())),
            "a fresh router holds every order from the first"
        );
        router.skipped_to(AppId(0), Seq(2));
        assert_eq!(router.routed(AppId(0)), Seq(2));
        assert_eq!(
            router.join_checkpoint(AppId(0)),
            Some((Seq(0), Digest::default()))
        );
        router.forgot_up_to(AppId(0), Seq(4));
        assert_eq!(router.routed(AppId(0)), Seq(4));
        assert_eq!(router.join_checkpoint(AppId(0)), None);
        let checkpoint = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(4),
            root: Digest([3; 32]),
        };
        router.handle_checkpoint(ExecutionId(0), checkpoint);
        router.handle_checkpoint(ExecutionId(1), checkpoint);
        assert_eq!(
            router.join_checkpoint(AppId(0)),
            Some((Seq(4), Digest([3; 32])))
        );
    }

    #[test]
    fn a_checkpoint_every_active_member_agrees_on_releases_the_orders_before_it() {
        let groups = BTreeMap::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
        let mut router = OrderRouter::new(groups.clone(), groups, 2);
        for seq in 1..=4 {
            router.route(order(0, seq));
        }
        let checkpoint = |seq, root: u8| ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(seq),
            root: Digest([root; 32]),
        };
        router.handle_checkpoint(ExecutionId(0), checkpoint(2, 1));
        router.handle_checkpoint(ExecutionId(1), checkpoint(2, 9));
        assert_eq!(router.stable_checkpoint(AppId(0)), None, "roots differ");
        assert_eq!(router.retained_count(AppId(0)), 4);
        router.handle_checkpoint(ExecutionId(0), checkpoint(4, 5));
        router.handle_checkpoint(ExecutionId(1), checkpoint(4, 5));
        assert_eq!(
            router.stable_checkpoint(AppId(0)),
            Some((Seq(4), Digest([5; 32])))
        );
        assert_eq!(router.retained_count(AppId(0)), 0);
    }
}
