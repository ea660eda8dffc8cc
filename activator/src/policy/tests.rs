use super::*;
use zz_protocol::Seq;
use zz_protocol::messages::{FaultReason, WakeReason};

const APP: AppId = AppId(0);
const E0: ExecutionId = ExecutionId(0);
const E1: ExecutionId = ExecutionId(1);
const E2: ExecutionId = ExecutionId(2);
const E3: ExecutionId = ExecutionId(3);
const QUIET: u64 = 10_000_000;
const GRACE: u64 = 4_000_000;

fn member(id: ExecutionId, host: &str, state: MemberState) -> Member {
    Member {
        id,
        host: host.to_string(),
        state,
    }
}

fn config() -> PolicyConfig {
    PolicyConfig {
        f: 1,
        replica_count: 4,
        quiet_micros: QUIET,
        announce_micros: 1_000_000,
        join_grace_micros: GRACE,
    }
}

/// f = 1: E0 and E1 active on hosts a and b; standbys E2 on host a and E3 on host c.
fn policy() -> Policy {
    let members = vec![
        member(E0, "a", MemberState::Active),
        member(E1, "b", MemberState::Active),
        member(E2, "a", MemberState::Standby),
        member(E3, "c", MemberState::Standby),
    ];
    Policy::new(config(), BTreeMap::from([(APP, members)]))
}

fn wake(epoch: u64) -> Wake {
    Wake {
        app: APP,
        epoch,
        seq: Seq(5),
        reason: WakeReason::RepliesDiffer,
    }
}

fn faulty(epoch: u64, member: ExecutionId) -> Faulty {
    Faulty {
        app: APP,
        epoch,
        member,
        seq: Seq(5),
        reason: FaultReason::WrongReplies,
    }
}

fn thawed(commands: &[Command]) -> Vec<ExecutionId> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::Thaw(member) => Some(*member),
            _ => None,
        })
        .collect()
}

fn last_membership(commands: &[Command]) -> Option<Membership> {
    commands.iter().rev().find_map(|command| match command {
        Command::Announce(membership) => Some(membership.clone()),
        _ => None,
    })
}

#[test]
fn f_wakes_change_nothing_and_f_plus_1_thaw_a_standby_on_another_host_once() {
    let mut policy = policy();
    policy.handle_wake(Time(1), ReplicaId(0), wake(0));
    policy.handle_wake(Time(1), ReplicaId(0), wake(0));
    policy.handle_wake(Time(1), ReplicaId(9), wake(0));
    policy.handle_wake(Time(1), ReplicaId(1), wake(7));
    assert!(
        policy.take_commands().is_empty(),
        "one replica, twice, is not f+1"
    );
    policy.handle_wake(Time(2), ReplicaId(2), wake(0));
    let commands = policy.take_commands();
    assert_eq!(
        thawed(&commands),
        vec![E3],
        "host c is free; host a runs E0"
    );
    let membership = last_membership(&commands).unwrap();
    assert_eq!((membership.epoch, membership.active), (1, vec![E0, E1, E3]));
    // Late wakes of epoch 0 are stale.
    policy.handle_wake(Time(3), ReplicaId(3), wake(0));
    policy.handle_wake(Time(3), ReplicaId(1), wake(0));
    assert!(thawed(&policy.take_commands()).is_empty());
}

#[test]
fn f_plus_1_faulty_reports_destroy_and_refill_then_quiet_pauses_the_extra() {
    let mut policy = policy();
    policy.handle_wake(Time(0), ReplicaId(0), wake(0));
    policy.handle_wake(Time(0), ReplicaId(1), wake(0));
    policy.take_commands();
    policy.handle_faulty(Time(1), ReplicaId(0), faulty(1, E1));
    policy.handle_faulty(Time(1), ReplicaId(0), faulty(1, E1));
    assert!(policy.take_commands().is_empty());
    policy.handle_faulty(Time(2), ReplicaId(3), faulty(1, E1));
    let commands = policy.take_commands();
    assert!(commands.contains(&Command::Destroy(E1)));
    assert!(commands.contains(&Command::StartStandby(E1)));
    let membership = last_membership(&commands).unwrap();
    assert_eq!((membership.epoch, membership.active), (2, vec![E0, E3]));
    policy.handle_ready(Time(3), APP, E1);
    assert_eq!(policy.status()[&APP].members[1].state, MemberState::Standby);
    // Back at f+1 active: nothing to pause.
    policy.handle_tick(Time(2 + QUIET));
    assert!(
        !policy
            .take_commands()
            .iter()
            .any(|c| matches!(c, Command::Pause(_)))
    );
}

#[test]
fn a_false_alarm_is_undone_after_the_quiet_period() {
    let mut policy = policy();
    policy.handle_wake(Time(0), ReplicaId(0), wake(0));
    policy.handle_wake(Time(0), ReplicaId(1), wake(0));
    policy.take_commands();
    policy.handle_tick(Time(QUIET - 1));
    assert!(
        !policy
            .take_commands()
            .iter()
            .any(|c| matches!(c, Command::Pause(_)))
    );
    policy.handle_tick(Time(QUIET));
    let commands = policy.take_commands();
    assert!(commands.contains(&Command::Pause(E3)));
    let membership = last_membership(&commands).unwrap();
    assert_eq!((membership.epoch, membership.active), (2, vec![E0, E1]));
}

#[test]
fn a_crash_leaving_too_few_active_wakes_a_standby_when_one_is_ready() {
    let mut policy = policy();
    // E2 and E3 are used up: E3 woken, then E2 woken for a second alarm.
    // Each alarm after the last thawed standbys' join grace.
    for epoch in 0..2 {
        policy.handle_wake(Time(epoch * GRACE), ReplicaId(0), wake(epoch));
        policy.handle_wake(Time(epoch * GRACE), ReplicaId(1), wake(epoch));
    }
    assert_eq!(thawed(&policy.take_commands()), vec![E3, E2]);
    // A third alarm finds no standby.
    policy.handle_wake(Time(2 * GRACE), ReplicaId(0), wake(2));
    policy.handle_wake(Time(2 * GRACE), ReplicaId(1), wake(2));
    assert!(thawed(&policy.take_commands()).is_empty());
    assert!(
        policy
            .events()
            .any(|(_, e)| matches!(e, PolicyEvent::NoStandbyReady { .. }))
    );
    // Reports make E0 faulty: destroyed, restarted; once ready it is woken.
    policy.handle_faulty(Time(2 * GRACE + 1), ReplicaId(0), faulty(2, E0));
    policy.handle_faulty(Time(2 * GRACE + 1), ReplicaId(1), faulty(2, E0));
    policy.take_commands();
    policy.handle_ready(Time(2 * GRACE + 2), APP, E0);
    assert_eq!(thawed(&policy.take_commands()), vec![E0]);
}

#[test]
fn memberships_are_announced_again_periodically() {
    let mut policy = policy();
    policy.handle_tick(Time(0));
    assert_eq!(last_membership(&policy.take_commands()).unwrap().epoch, 0);
    policy.handle_tick(Time(500_000));
    assert!(policy.take_commands().is_empty());
    policy.handle_tick(Time(1_000_000));
    assert!(last_membership(&policy.take_commands()).is_some());
}

/// `zz scale`: a pool grows into spare slots and shrinks by destroying standbys; asking
/// for more than the slots is refused and changes nothing.
#[test]
fn scale_grows_into_spares_shrinks_and_refuses_beyond_the_slots() {
    let members = vec![
        member(E0, "a", MemberState::Active),
        member(E1, "b", MemberState::Active),
        member(E2, "c", MemberState::Standby),
        member(E3, "d", MemberState::Spare),
    ];
    let mut policy = Policy::new(config(), BTreeMap::from([(APP, members)]));
    let now = Time(1);
    assert!(policy.handle_scale(now, APP, 3).is_err());
    assert!(policy.take_commands().is_empty());
    assert!(policy.handle_scale(now, AppId(9), 1).is_err());
    policy.handle_scale(now, APP, 2).unwrap();
    assert_eq!(policy.take_commands(), vec![Command::StartStandby(E3)]);
    policy.handle_ready(now, APP, E3);
    policy.handle_scale(now, APP, 0).unwrap();
    assert_eq!(
        policy.take_commands(),
        vec![Command::Destroy(E2), Command::Destroy(E3)]
    );
    let states: Vec<MemberState> = policy.status()[&APP]
        .members
        .iter()
        .map(|m| m.state)
        .collect();
    use MemberState::*;
    assert_eq!(states, vec![Active, Active, Spare, Spare]);
    // With no standby left, a wake finds none and waits for one.
    for replica in 0..2 {
        policy.handle_wake(now, ReplicaId(replica), wake(0));
    }
    assert!(thawed(&policy.take_commands()).is_empty());
    policy.handle_scale(now, APP, 1).unwrap();
    assert_eq!(policy.take_commands(), vec![Command::StartStandby(E2)]);
    policy.handle_ready(now, APP, E2);
    assert_eq!(thawed(&policy.take_commands()), vec![E2]);
}

/// Wakes that find every standby already active leave a wish for one more; it lapses with
/// the quiet period, and the extra members are paused again (the app is not stuck above
/// f+1 active).
#[test]
fn a_wish_for_a_standby_lapses_when_all_is_quiet() {
    let mut policy = policy();
    for epoch in 0..3u64 {
        for replica in 0..2 {
            policy.handle_wake(Time(epoch * GRACE + 1), ReplicaId(replica), wake(epoch));
        }
    }
    let commands = policy.take_commands();
    assert_eq!(thawed(&commands), vec![E3, E2], "other hosts first");
    assert!(
        policy
            .events()
            .any(|(_, e)| matches!(e, PolicyEvent::NoStandbyReady { .. }))
    );
    policy.handle_tick(Time(2 * GRACE + QUIET + 10));
    let paused: Vec<Command> = (policy.take_commands().into_iter())
        .filter(|command| matches!(command, Command::Pause(_)))
        .collect();
    assert_eq!(paused, vec![Command::Pause(E2), Command::Pause(E3)]);
}

/// Standbys just thawed are still joining: wakes within their grace thaw no more (they
/// keep the app from counting as quiet), and once the grace is over they may.
#[test]
fn wakes_during_the_join_grace_thaw_no_more_standbys() {
    let mut policy = policy();
    for replica in 0..2 {
        policy.handle_wake(Time(0), ReplicaId(replica), wake(0));
    }
    assert_eq!(thawed(&policy.take_commands()), vec![E3]);
    for replica in 0..2 {
        policy.handle_wake(Time(GRACE - 1), ReplicaId(replica), wake(1));
    }
    assert!(thawed(&policy.take_commands()).is_empty());
    // Resent after the grace, the same wakes thaw the next standby.
    policy.handle_wake(Time(GRACE), ReplicaId(0), wake(1));
    assert_eq!(thawed(&policy.take_commands()), vec![E2]);
    // The quiet period runs from the last wake, not the first.
    policy.handle_tick(Time(GRACE - 1 + QUIET));
    let pauses = |commands: Vec<Command>| {
        commands
            .into_iter()
            .filter(|c| matches!(c, Command::Pause(_)))
            .count()
    };
    assert_eq!(pauses(policy.take_commands()), 0);
    policy.handle_tick(Time(GRACE + QUIET));
    assert_eq!(pauses(policy.take_commands()), 2);
}

/// Events and answers name apps as operators do.
#[test]
fn events_and_answers_name_the_app() {
    let mut policy = policy().with_app_names(BTreeMap::from([(APP, "kv".to_string())]));
    for replica in 0..2 {
        policy.handle_wake(Time(0), ReplicaId(replica), wake(0));
    }
    assert!(policy.events().any(
        |(_, e)| matches!(e, PolicyEvent::Woke { app, members } if app == "kv" && members[0] == E3)
    ));
    let refused = policy.handle_scale(Time(1), APP, 9).unwrap_err();
    assert!(
        matches!(&refused, ScaleRefusal::TooFewSlots { app, .. } if app == "kv"),
        "{refused}"
    );
    assert!(refused.to_string().starts_with("kv has "), "{refused}");
}

/// A faulty report that leaves f active: the thaw of a standby comes before the destroy
/// and restart of the faulty one, which a container backend takes long to carry out.
#[test]
fn the_thaw_of_a_replacement_goes_before_the_destroy() {
    let mut policy = policy();
    policy.take_commands();
    for replica in 0..2 {
        policy.handle_faulty(Time(1), ReplicaId(replica), faulty(0, E0));
    }
    let commands = policy.take_commands();
    assert!(
        matches!(commands.first(), Some(Command::Thaw(_))),
        "{commands:?}"
    );
    let destroy = commands
        .iter()
        .position(|c| matches!(c, Command::Destroy(E0)));
    let restart = commands
        .iter()
        .position(|c| matches!(c, Command::StartStandby(E0)));
    assert!(destroy.is_some() && destroy < restart, "{commands:?}");
}
