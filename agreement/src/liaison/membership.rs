//! Which execution replicas run which app, and which of them are active: the one table
//! the order router and the detector share. The configured members never change; the
//! active ones change with the activator's membership notices, each of a newer epoch.
//! The order router owns the table (orders go to the active members); the detector is
//! handed it by reference, so there is no second copy to keep in step.

use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::{AppId, ExecutionId};

/// Which execution replicas run which app.
pub type ExecutionGroups = BTreeMap<AppId, Vec<ExecutionId>>;

/// No members: the active set of an app without execution replicas.
static NO_MEMBERS: BTreeSet<ExecutionId> = BTreeSet::new();

/// One app's execution replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AppMembers {
    /// Every configured member, standbys included, in configuration order.
    members: Vec<ExecutionId>,
    /// The members orders go to and whose reports are judged.
    active: BTreeSet<ExecutionId>,
    /// The epoch of the activator's last notice that changed `active`; 0 before any.
    epoch: u64,
}

/// Every app's execution replicas. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipTable {
    apps: BTreeMap<AppId, AppMembers>,
    /// Execution replica -> its app.
    app_of: BTreeMap<ExecutionId, AppId>,
}

impl MembershipTable {
    /// The table for `groups` (every configured member per app), with `active` the
    /// members active at epoch 0, as configured.
    pub fn new(groups: ExecutionGroups, active: &ExecutionGroups) -> MembershipTable {
        let app_of = groups
            .iter()
            .flat_map(|(app, members)| members.iter().map(move |member| (*member, *app)))
            .collect();
        let apps = groups
            .into_iter()
            .map(|(app, members)| {
                let active = active.get(&app).into_iter().flatten().copied().collect();
                let members = AppMembers {
                    members,
                    active,
                    epoch: 0,
                };
                (app, members)
            })
            .collect();
        MembershipTable { apps, app_of }
    }

    /// The activator's word on who is active in `app`. Only a newer epoch counts, and
    /// members outside the app's group are ignored. Returns the members that were active
    /// before, if the notice changed anything.
    pub fn handle_notice(
        &mut self,
        app: AppId,
        epoch: u64,
        active: &[ExecutionId],
    ) -> Option<BTreeSet<ExecutionId>> {
        let entry = self.apps.get_mut(&app)?;
        if epoch <= entry.epoch {
            return None;
        }
        entry.epoch = epoch;
        let active = (active.iter().copied())
            .filter(|member| entry.members.contains(member))
            .collect();
        Some(std::mem::replace(&mut entry.active, active))
    }

    /// The apps with execution replicas, in id order.
    pub fn apps(&self) -> impl Iterator<Item = AppId> + '_ {
        self.apps.keys().copied()
    }

    /// Whether `app` has execution replicas (otherwise agreement replicas answer clients).
    pub fn has_group(&self, app: AppId) -> bool {
        self.apps.contains_key(&app)
    }

    /// Whether `member` runs `app`.
    pub fn is_member(&self, member: ExecutionId, app: AppId) -> bool {
        self.app_of.get(&member) == Some(&app)
    }

    /// Every configured member with its app, in member id order.
    pub fn members_by_id(&self) -> impl Iterator<Item = (ExecutionId, AppId)> + '_ {
        self.app_of.iter().map(|(member, app)| (*member, *app))
    }

    /// Every configured member of `app`, in configuration order.
    pub fn members(&self, app: AppId) -> &[ExecutionId] {
        self.apps.get(&app).map_or(&[], |entry| &entry.members)
    }

    /// The app's active members.
    pub fn active(&self, app: AppId) -> &BTreeSet<ExecutionId> {
        self.apps
            .get(&app)
            .map_or(&NO_MEMBERS, |entry| &entry.active)
    }

    /// The app's membership epoch: that of the last notice that counted, 0 before any.
    pub fn epoch(&self, app: AppId) -> u64 {
        self.apps.get(&app).map_or(0, |entry| entry.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notice counts once per newer epoch, and only for the app's own members.
    #[test]
    fn only_a_newer_epoch_changes_the_active_members_within_the_group() {
        let groups = ExecutionGroups::from([(AppId(0), vec![ExecutionId(0), ExecutionId(1)])]);
        let active = ExecutionGroups::from([(AppId(0), vec![ExecutionId(0)])]);
        let mut table = MembershipTable::new(groups, &active);
        let notice = [ExecutionId(1), ExecutionId(7)];
        let before = table.handle_notice(AppId(0), 1, &notice);
        assert_eq!(before, Some(BTreeSet::from([ExecutionId(0)])));
        assert_eq!(table.active(AppId(0)), &BTreeSet::from([ExecutionId(1)]));
        assert_eq!(table.handle_notice(AppId(0), 1, &[]), None, "same epoch");
        assert_eq!(table.handle_notice(AppId(3), 2, &[]), None, "no such app");
        assert_eq!(table.epoch(AppId(0)), 1);
        assert!(table.is_member(ExecutionId(0), AppId(0)));
        assert!(!table.is_member(ExecutionId(7), AppId(0)));
    }
}
