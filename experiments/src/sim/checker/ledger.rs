//! The alarm ledger: every alarm that reached the activator, kept apart from its policy,
//! so that the checker can tell whether each thaw and destroy it carried out had f+1
//! distinct agreement replicas behind it.

use super::super::violation::{BoundViolation, SafetyViolation};
use std::collections::{BTreeMap, BTreeSet};
use zz_activator::policy::Command;
use zz_protocol::messages::{Faulty, Wake};
use zz_protocol::{AppId, ExecutionId, ReplicaId};

/// Alarm senders recorded at most (distinct (app, epoch) and (app, epoch, member) keys);
/// more means something spins, since false alarms name a handful of epochs only.
pub const LEDGER_KEYS_MAX: usize = 100_000;

/// Every alarm that reached the activator while the epoch it names was the app's current
/// one (the only alarms the policy may count), by sender. Each f+1 quorum of them grants
/// one licence; every activation (one call's thaws for an app) and every destroy must use
/// up one.
#[derive(Debug)]
pub struct AlarmLedger {
    /// f+1.
    quorum: usize,
    /// Upper bound on standbys thawed by one activation: f.
    thaws_per_activation_max: usize,
    wakes: BTreeMap<(AppId, u64), BTreeSet<ReplicaId>>,
    faulty: BTreeMap<(AppId, u64, ExecutionId), BTreeSet<ReplicaId>>,
    activation_licences: BTreeMap<AppId, u64>,
    activations: BTreeMap<AppId, u64>,
    destroy_licences: BTreeMap<ExecutionId, u64>,
    destroys: BTreeMap<ExecutionId, u64>,
    /// Alarms that named another epoch than the current one (or an inactive member).
    pub stale: u64,
}

impl AlarmLedger {
    pub fn new(f: usize) -> AlarmLedger {
        AlarmLedger {
            quorum: f + 1,
            thaws_per_activation_max: f,
            wakes: BTreeMap::new(),
            faulty: BTreeMap::new(),
            activation_licences: BTreeMap::new(),
            activations: BTreeMap::new(),
            destroy_licences: BTreeMap::new(),
            destroys: BTreeMap::new(),
            stale: 0,
        }
    }

    fn check_bounded(&self) -> Result<(), BoundViolation> {
        let keys = self.wakes.len() + self.faulty.len();
        if keys > LEDGER_KEYS_MAX {
            return Err(BoundViolation::LedgerKeys {
                keys,
                limit: LEDGER_KEYS_MAX,
            });
        }
        Ok(())
    }

    /// A `Wake` from `from` reached the activator while the app was at `current_epoch`.
    pub fn record_wake(
        &mut self,
        from: ReplicaId,
        wake: &Wake,
        current_epoch: Option<u64>,
    ) -> Result<(), BoundViolation> {
        if current_epoch != Some(wake.epoch) {
            self.stale += 1;
            return Ok(());
        }
        let senders = self.wakes.entry((wake.app, wake.epoch)).or_default();
        if senders.insert(from) && senders.len() == self.quorum {
            *self.activation_licences.entry(wake.app).or_default() += 1;
        }
        self.check_bounded()
    }

    /// A `Faulty` from `from` reached the activator while the app was at `current_epoch`
    /// and the member named was (`member_active`) or was not active.
    pub fn record_faulty(
        &mut self,
        from: ReplicaId,
        faulty: &Faulty,
        current_epoch: Option<u64>,
        member_active: bool,
    ) -> Result<(), BoundViolation> {
        if current_epoch != Some(faulty.epoch) || !member_active {
            self.stale += 1;
            return Ok(());
        }
        let key = (faulty.app, faulty.epoch, faulty.member);
        let senders = self.faulty.entry(key).or_default();
        if senders.insert(from) && senders.len() == self.quorum {
            // A destroy, and an activation if too few members are left to answer.
            *self.destroy_licences.entry(faulty.member).or_default() += 1;
            *self.activation_licences.entry(faulty.app).or_default() += 1;
        }
        self.check_bounded()
    }

    /// The commands of one policy call, before they are carried out: each thaw and destroy
    /// must be backed by an unused f+1 quorum.
    pub fn check_commands(
        &mut self,
        commands: &[Command],
        app_of: impl Fn(ExecutionId) -> AppId,
    ) -> Result<(), SafetyViolation> {
        let mut thaws: BTreeMap<AppId, Vec<ExecutionId>> = BTreeMap::new();
        for command in commands {
            match command {
                Command::Thaw(member) => thaws.entry(app_of(*member)).or_default().push(*member),
                Command::Destroy(member) => {
                    let destroys = self.destroys.entry(*member).or_default();
                    *destroys += 1;
                    let licences = self.destroy_licences.get(member).copied().unwrap_or(0);
                    if *destroys > licences {
                        return Err(SafetyViolation::DestroyWithoutQuorum {
                            member: *member,
                            destroys: *destroys,
                            licences,
                        });
                    }
                }
                Command::Pause(_) | Command::StartStandby(_) | Command::Announce(_) => {}
            }
        }
        for (app, members) in thaws {
            if members.len() > self.thaws_per_activation_max {
                return Err(SafetyViolation::ThawsOverF { app, members });
            }
            let activations = self.activations.entry(app).or_default();
            *activations += 1;
            let licences = self.activation_licences.get(&app).copied().unwrap_or(0);
            if *activations > licences {
                return Err(SafetyViolation::ThawWithoutQuorum {
                    app,
                    members,
                    activation: *activations,
                    licences,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::Seq;
    use zz_protocol::messages::{FaultReason, Membership, WakeReason};

    fn wake(epoch: u64) -> Wake {
        Wake {
            app: AppId(0),
            epoch,
            seq: Seq(1),
            reason: WakeReason::Silence,
        }
    }

    #[test]
    fn a_thaw_needs_f_plus_1_distinct_senders_of_the_current_epoch_and_uses_them_up() {
        let mut ledger = AlarmLedger::new(1);
        let app_of = |_| AppId(0);
        let thaw = [Command::Thaw(ExecutionId(2))];
        ledger.record_wake(ReplicaId(0), &wake(0), Some(0)).unwrap();
        ledger.record_wake(ReplicaId(0), &wake(0), Some(0)).unwrap();
        // Named another epoch than the current one: the policy cannot count it.
        ledger.record_wake(ReplicaId(1), &wake(1), Some(0)).unwrap();
        assert!(ledger.check_commands(&thaw, app_of).is_err());
        let mut ledger = AlarmLedger::new(1);
        ledger.record_wake(ReplicaId(0), &wake(0), Some(0)).unwrap();
        ledger.record_wake(ReplicaId(1), &wake(0), Some(0)).unwrap();
        let announce = Command::Announce(Membership {
            app: AppId(0),
            epoch: 1,
            active: vec![],
        });
        assert!(ledger.check_commands(&[announce], app_of).is_ok());
        assert!(ledger.check_commands(&thaw, app_of).is_ok());
        assert!(
            ledger.check_commands(&thaw, app_of).is_err(),
            "one quorum, one activation"
        );
    }

    #[test]
    fn a_destroy_needs_f_plus_1_faulty_reports_on_that_active_member() {
        let mut ledger = AlarmLedger::new(1);
        let faulty = |member| Faulty {
            app: AppId(0),
            epoch: 0,
            member: ExecutionId(member),
            seq: Seq(1),
            reason: FaultReason::Silent,
        };
        let app_of = |_| AppId(0);
        ledger
            .record_faulty(ReplicaId(0), &faulty(1), Some(0), true)
            .unwrap();
        ledger
            .record_faulty(ReplicaId(1), &faulty(0), Some(0), true)
            .unwrap();
        ledger
            .record_faulty(ReplicaId(2), &faulty(1), Some(0), false)
            .unwrap();
        let destroy = [Command::Destroy(ExecutionId(1))];
        assert!(
            ledger.check_commands(&destroy, app_of).is_err(),
            "one report on e1 while active, one about another member, one while inactive"
        );
        let mut ledger = AlarmLedger::new(1);
        ledger
            .record_faulty(ReplicaId(0), &faulty(1), Some(0), true)
            .unwrap();
        ledger
            .record_faulty(ReplicaId(3), &faulty(1), Some(0), true)
            .unwrap();
        assert!(ledger.check_commands(&destroy, app_of).is_ok());
        assert!(
            ledger.check_commands(&destroy, app_of).is_err(),
            "one quorum, one destroy"
        );
    }
}
