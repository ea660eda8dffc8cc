//! A policy restored from its record is the policy that wrote it: same epochs, same active
//! sets, destroyed slots refilled as standbys, spare slots left empty, woken members still
//! paused first; a record of another configuration is refused whole. And when alarms show
//! the agreement replicas past the policy's epoch, f+1 of them move it past theirs.

use super::super::*;
use zz_protocol::Seq;
use zz_protocol::messages::{FaultReason, WakeReason};

const APP: AppId = AppId(0);
const E: [ExecutionId; 4] = [
    ExecutionId(0),
    ExecutionId(1),
    ExecutionId(2),
    ExecutionId(3),
];
const QUIET: u64 = 10_000_000;

fn config() -> PolicyConfig {
    PolicyConfig {
        f: 1,
        replica_count: 4,
        quiet_micros: QUIET,
        announce_micros: 1_000_000,
        join_grace_micros: 1_000_000,
    }
}

/// f = 1 as an activator starts from the configuration: E0, E1 active, E2 a standby to
/// start, E3 a spare slot.
fn configured() -> Policy {
    let member = |index: usize, state| Member {
        id: E[index],
        host: format!("host{index}"),
        state,
    };
    let members = vec![
        member(0, MemberState::Active),
        member(1, MemberState::Active),
        member(2, MemberState::Starting),
        member(3, MemberState::Spare),
    ];
    Policy::new(config(), BTreeMap::from([(APP, members)]))
}

fn states(policy: &Policy) -> Vec<MemberState> {
    let status = policy.status();
    status[&APP].members.iter().map(|m| m.state).collect()
}

fn announced(commands: &[Command]) -> Vec<Membership> {
    (commands.iter())
        .filter_map(|command| match command {
            Command::Announce(membership) => Some(membership.clone()),
            _ => None,
        })
        .collect()
}

/// E1 lies: f+1 wakes thaw E2 (epoch 1), f+1 reports destroy E1 and start a fresh E1
/// (epoch 2). Members: E0, E2 active; E1 a standby; E3 spare.
fn after_a_replacement() -> Policy {
    let mut policy = configured();
    policy.handle_ready(Time(0), APP, E[2]);
    for from in [0, 1] {
        let wake = Wake {
            app: APP,
            epoch: 0,
            seq: Seq(9),
            reason: WakeReason::RepliesDiffer,
        };
        policy.handle_wake(Time(10), ReplicaId(from), wake);
    }
    for from in [0, 1] {
        let faulty = Faulty {
            app: APP,
            epoch: 1,
            member: E[1],
            seq: Seq(9),
            reason: FaultReason::WrongReplies,
        };
        policy.handle_faulty(Time(20), ReplicaId(from), faulty);
    }
    policy.handle_ready(Time(30), APP, E[1]);
    policy.take_commands();
    policy
}

#[test]
fn a_restored_policy_has_the_recorded_epoch_actives_and_pool() {
    let before = after_a_replacement();
    use MemberState::{Active, Spare, Standby, Starting};
    assert_eq!(states(&before), vec![Active, Standby, Active, Spare]);
    assert_eq!(before.epoch(APP), Some(2));
    let record = before.record();
    let mut restored = configured();
    restored.restore(&record).unwrap();
    assert_eq!(restored.epoch(APP), Some(2));
    // The replaced E1 is a standby to start again, not the active it was configured as.
    assert_eq!(states(&restored), vec![Active, Starting, Active, Spare]);
    assert_eq!(
        restored.record(),
        record,
        "restoring changes nothing recorded"
    );
    // Its first announcement names the recorded epoch and active set.
    restored.handle_tick(Time(0));
    let membership = Membership {
        app: APP,
        epoch: 2,
        active: vec![E[0], E[2]],
    };
    assert_eq!(announced(&restored.take_commands()), vec![membership]);
}

#[test]
fn a_restored_policy_pauses_its_woken_members_after_the_quiet_period() {
    let mut policy = configured();
    policy.handle_ready(Time(0), APP, E[2]);
    for from in [0, 1] {
        let wake = Wake {
            app: APP,
            epoch: 0,
            seq: Seq(9),
            reason: WakeReason::ClientRetransmit,
        };
        policy.handle_wake(Time(10), ReplicaId(from), wake);
    }
    let record = policy.record();
    assert_eq!(record.apps[0].woken, vec![E[2]]);
    let mut restored = configured();
    restored.restore(&record).unwrap();
    restored.handle_tick(Time(QUIET));
    let commands = restored.take_commands();
    assert!(commands.contains(&Command::Pause(E[2])), "{commands:?}");
    assert_eq!(restored.epoch(APP), Some(2));
}

#[test]
fn a_record_of_another_configuration_is_refused_and_changes_nothing() {
    let record = after_a_replacement().record();
    let mut other_app = record.clone();
    other_app.apps[0].app = AppId(4);
    let mut missing_slot = record.clone();
    missing_slot.apps[0].slots.pop();
    let mut woken_standby = record.clone();
    woken_standby.apps[0].woken = vec![E[1]];
    let mut woken_twice = record.clone();
    woken_twice.apps[0].woken = vec![E[2], E[2]];
    for (bad, expected) in [
        (other_app, "apps [app4]"),
        (
            missing_slot,
            "has slots [e0, e1, e2], the configuration [e0, e1, e2, e3]",
        ),
        (woken_standby, "lists e1 as woken"),
        (woken_twice, "lists e2 as woken"),
    ] {
        let mut policy = configured();
        let error = policy.restore(&bad).unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(policy.record(), configured().record(), "{error}");
    }
}

fn wake_at(epoch: u64) -> Wake {
    Wake {
        app: APP,
        epoch,
        seq: Seq(9),
        reason: WakeReason::Silence,
    }
}

#[test]
fn f_plus_1_alarms_past_the_policy_epoch_move_it_past_theirs_and_f_do_not() {
    // The record was lost: the activator starts at epoch 0 while the agreement replicas
    // hold epoch 6 (and a Byzantine one claims far more).
    let mut policy = configured();
    policy.handle_tick(Time(0));
    policy.take_commands();
    policy.handle_wake(Time(1), ReplicaId(3), wake_at(u64::MAX - 1));
    policy.handle_wake(Time(1), ReplicaId(3), wake_at(1_000));
    assert_eq!(policy.epoch(APP), Some(0), "f claims move nothing");
    assert_eq!(policy.take_commands(), vec![]);
    policy.handle_wake(Time(2), ReplicaId(0), wake_at(6));
    assert_eq!(
        policy.epoch(APP),
        Some(7),
        "past the epoch f+1 hold, not the liar's"
    );
    let membership = Membership {
        app: APP,
        epoch: 7,
        active: vec![E[0], E[1]],
    };
    assert_eq!(announced(&policy.take_commands()), vec![membership]);
    // No standby was thawed for alarms of an epoch the policy did not count; the
    // replicas' alarms at the new epoch count as usual.
    policy.handle_ready(Time(3), APP, E[2]);
    for from in [0, 1] {
        policy.handle_wake(Time(4), ReplicaId(from), wake_at(7));
    }
    assert!(policy.take_commands().contains(&Command::Thaw(E[2])));
}
