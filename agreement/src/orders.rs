//! Per-app orders on their way to execution replicas. Each app with an execution group gets
//! its orders sent to every member; the last orders are retained, and a member that reports
//! (through `Executed`) being behind gets the missing ones again, so a lost order costs a
//! resend rather than a stuck replica.

use std::collections::BTreeMap;
use zz_protocol::messages::{AppOrder, Executed};
use zz_protocol::{AppId, ExecutionId, Seq, Time};

/// Orders retained per app for resending, at most (the oldest go first).
pub const ORDERS_RETAINED_MAX: usize = 1024;
/// Orders resent to one execution replica per resend round, at most.
pub const ORDERS_RESENT_PER_ROUND_MAX: usize = 64;

/// Which execution replicas run which app.
pub type ExecutionGroups = BTreeMap<AppId, Vec<ExecutionId>>;

/// Routes, retains and resends per-app orders. See the module documentation.
#[derive(Default)]
pub struct OrderRouter {
    groups: ExecutionGroups,
    /// Execution replica -> its app.
    members: BTreeMap<ExecutionId, AppId>,
    retained: BTreeMap<AppId, BTreeMap<Seq, AppOrder>>,
    /// The last sequence number each execution replica reported executing.
    progress: BTreeMap<ExecutionId, Seq>,
    next_resend_at: Time,
}

impl OrderRouter {
    pub fn new(groups: ExecutionGroups) -> OrderRouter {
        let members = groups
            .iter()
            .flat_map(|(app, members)| members.iter().map(move |member| (*member, *app)))
            .collect();
        OrderRouter {
            groups,
            members,
            ..OrderRouter::default()
        }
    }

    /// Whether `app` has execution replicas (otherwise agreement replicas answer clients).
    pub fn has_group(&self, app: AppId) -> bool {
        self.groups.contains_key(&app)
    }

    /// Where `order` goes; it is retained for resending.
    pub fn route(&mut self, order: AppOrder) -> Vec<(ExecutionId, AppOrder)> {
        let Some(members) = self.groups.get(&order.app) else {
            return Vec::new();
        };
        let sends = members
            .iter()
            .map(|member| (*member, order.clone()))
            .collect();
        let retained = self.retained.entry(order.app).or_default();
        retained.insert(order.seq, order);
        while retained.len() > ORDERS_RETAINED_MAX {
            retained.pop_first();
        }
        sends
    }

    /// An execution replica's report; only its own app's reports count.
    pub fn handle_executed(&mut self, from: ExecutionId, executed: Executed) {
        if self.members.get(&from) == Some(&executed.app) {
            let progress = self.progress.entry(from).or_default();
            *progress = (*progress).max(executed.seq);
        }
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
            let done = self.progress.get(member).copied().unwrap_or_default();
            let behind = retained
                .range(done.next()..)
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
        let mut router = OrderRouter::new(groups);
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
}
