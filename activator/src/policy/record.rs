//! What of the policy must outlive the activator: per app, the membership epoch, which
//! members are active (and in which order they were woken), and which slots hold a
//! replica. The driver persists [`Policy::record`] whenever it changed, before it carries
//! out or announces anything derived from it, so no agreement replica ever sees an epoch
//! a restarted activator could forget, and a replica destroyed as faulty never comes back
//! as active. [`Policy::restore`] starts a policy from it, before anything runs.

use super::{MemberState, Policy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::{AppId, ExecutionId};

/// Every app's pool, in app id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolsRecord {
    pub apps: Vec<PoolRecord>,
}

/// One app's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub app: AppId,
    /// The epoch of the last membership announced (or about to be).
    pub epoch: u64,
    /// Every configured slot, in id order.
    pub slots: Vec<SlotRecord>,
    /// Active members that were woken, oldest first: the newest are paused first after a
    /// quiet period.
    pub woken: Vec<ExecutionId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub id: ExecutionId,
    pub role: SlotRole,
}

/// What a slot holds, as a restart should start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotRole {
    /// A member of the active set: restarted active, from its own store.
    Active,
    /// A standby, loaded or still starting (a destroyed member's fresh replacement too):
    /// restarted as a paused standby that loads nothing.
    Standby,
    /// No replica (a pool shrunk, or never grown into): nothing is started.
    Spare,
}

impl SlotRole {
    fn of(state: MemberState) -> SlotRole {
        match state {
            MemberState::Active => SlotRole::Active,
            MemberState::Standby | MemberState::Starting => SlotRole::Standby,
            MemberState::Spare => SlotRole::Spare,
        }
    }

    /// The state a restarted activator gives the slot: standbys are to be started.
    fn restarted(self) -> MemberState {
        match self {
            SlotRole::Active => MemberState::Active,
            SlotRole::Standby => MemberState::Starting,
            SlotRole::Spare => MemberState::Spare,
        }
    }
}

/// Why a record cannot be restored into the configured pools: it was written for another
/// configuration, or it contradicts itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordMismatch {
    #[error(
        "it has pools of apps [{}], the configuration of apps [{}]",
        listed(recorded),
        listed(configured)
    )]
    Apps {
        recorded: Vec<AppId>,
        configured: Vec<AppId>,
    },
    #[error(
        "its {app} has slots [{}], the configuration [{}]",
        listed(recorded),
        listed(configured)
    )]
    Slots {
        app: AppId,
        recorded: Vec<ExecutionId>,
        configured: Vec<ExecutionId>,
    },
    #[error("its {app} lists {member} as woken, but not as active (or twice)")]
    WokenNotActive { app: AppId, member: ExecutionId },
}

/// Ids as the messages name them: "e0, e1".
fn listed(ids: &[impl std::fmt::Display]) -> String {
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    names.join(", ")
}

impl PoolsRecord {
    /// Whether the record fits `configured`, each app's slots in id order: the same apps,
    /// the same slots, and only active members woken, once each.
    pub fn check(
        &self,
        configured: &BTreeMap<AppId, Vec<ExecutionId>>,
    ) -> Result<(), RecordMismatch> {
        let recorded: Vec<AppId> = self.apps.iter().map(|pool| pool.app).collect();
        let apps: Vec<AppId> = configured.keys().copied().collect();
        if recorded != apps {
            return Err(RecordMismatch::Apps {
                recorded,
                configured: apps,
            });
        }
        for pool in &self.apps {
            check_pool(pool, &configured[&pool.app])?;
        }
        Ok(())
    }
}

impl Policy {
    /// The durable part of the policy's state (see the module documentation).
    pub fn record(&self) -> PoolsRecord {
        let apps = (self.apps.iter())
            .map(|(app, pool)| PoolRecord {
                app: *app,
                epoch: pool.epoch,
                slots: (pool.members.values())
                    .map(|member| SlotRecord {
                        id: member.id,
                        role: SlotRole::of(member.state),
                    })
                    .collect(),
                // Woken members are active; the filter keeps a record that restores.
                woken: (pool.woken.iter().copied())
                    .filter(|id| pool.members[id].state == MemberState::Active)
                    .collect(),
            })
            .collect();
        PoolsRecord { apps }
    }

    /// Take each app's epoch, active set and pool from `record`, which a policy over the
    /// same configured slots wrote; standby slots are to be started again (Starting).
    /// Called before any input, for an activator that starts with nothing running. On a
    /// mismatch nothing changes.
    pub fn restore(&mut self, record: &PoolsRecord) -> Result<(), RecordMismatch> {
        assert!(self.commands.is_empty(), "restore before any input");
        let configured = (self.apps.iter())
            .map(|(app, pool)| (*app, pool.members.keys().copied().collect()))
            .collect();
        record.check(&configured)?;
        for recorded in &record.apps {
            let pool = self.apps.get_mut(&recorded.app).expect("checked above");
            pool.epoch = recorded.epoch;
            for slot in &recorded.slots {
                let member = pool.members.get_mut(&slot.id).expect("checked above");
                member.state = slot.role.restarted();
            }
            pool.woken = recorded.woken.clone();
        }
        Ok(())
    }
}

/// `pool` names exactly the `configured` slots, and only active members as woken, once.
fn check_pool(pool: &PoolRecord, configured: &[ExecutionId]) -> Result<(), RecordMismatch> {
    let recorded: Vec<ExecutionId> = pool.slots.iter().map(|slot| slot.id).collect();
    if recorded != configured {
        return Err(RecordMismatch::Slots {
            app: pool.app,
            recorded,
            configured: configured.to_vec(),
        });
    }
    let active: BTreeSet<ExecutionId> = (pool.slots.iter())
        .filter(|slot| slot.role == SlotRole::Active)
        .map(|slot| slot.id)
        .collect();
    let mut seen = BTreeSet::new();
    for member in &pool.woken {
        if !active.contains(member) || !seen.insert(*member) {
            return Err(RecordMismatch::WokenNotActive {
                app: pool.app,
                member: *member,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
