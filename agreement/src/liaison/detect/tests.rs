use super::*;
use crate::liaison::membership::ExecutionGroups;

const APP: AppId = AppId(0);
const E0: ExecutionId = ExecutionId(0);
const E1: ExecutionId = ExecutionId(1);
const E2: ExecutionId = ExecutionId(2);
const ROUTED: Seq = Seq(1000);
const SILENCE: u64 = 1_000_000;
const RESEND: u64 = 500_000;

/// A detector with the membership table it judges by, as the driver holds them (the
/// table in the order router): each call hands the detector the table.
struct Watched {
    detector: Detector,
    membership: MembershipTable,
}

impl Watched {
    /// The activator's notice; returns whether it changed the membership.
    fn handle_membership(
        &mut self,
        now: Time,
        app: AppId,
        epoch: u64,
        active: &[ExecutionId],
    ) -> bool {
        let Some(previously_active) = self.membership.handle_notice(app, epoch, active) else {
            return false;
        };
        (self.detector).handle_membership_change(now, app, &previously_active, &self.membership);
        true
    }

    fn handle_executed(
        &mut self,
        now: Time,
        from: ExecutionId,
        app: AppId,
        seq: Seq,
        digest: Digest,
        routed: Seq,
    ) {
        (self.detector).handle_executed(now, from, app, seq, digest, routed, &self.membership);
    }

    fn handle_root(
        &mut self,
        now: Time,
        from: ExecutionId,
        app: AppId,
        seq: Seq,
        root: Digest,
        routed: Seq,
    ) {
        (self.detector).handle_root(now, from, app, seq, root, routed, &self.membership);
    }

    fn handle_client_retransmit(&mut self, now: Time, app: AppId, seq: Seq) {
        self.client_retransmits(now, ClientId(1), app, seq);
    }

    fn client_retransmits(&mut self, now: Time, client: ClientId, app: AppId, seq: Seq) {
        (self.detector).handle_client_retransmit(now, client, app, seq, &self.membership);
    }

    fn handle_tick(&mut self, now: Time) {
        self.detector.handle_tick(now, &self.membership);
    }

    fn take_alarms(&mut self) -> Vec<Alarm> {
        self.detector.take_alarms()
    }

    fn table(&self, app: AppId, kind: Kind) -> &BTreeMap<Seq, Reports> {
        self.detector.table(app, kind)
    }

    /// Why the wake standing for `app` was raised, if one stands.
    fn wake_pending(&self, app: AppId) -> Option<WakeReason> {
        self.detector.apps[&app].wake.map(|(wake, _)| wake.reason)
    }
}

fn detector() -> Watched {
    let groups = ExecutionGroups::from([(APP, vec![E0, E1, E2])]);
    let active = ExecutionGroups::from([(APP, vec![E0, E1])]);
    let config = DetectorConfig {
        weak_quorum: 2,
        silence_micros: SILENCE,
        resend_micros: RESEND,
    };
    let membership = MembershipTable::new(groups, &active);
    let detector = Detector::new(config, &membership);
    Watched {
        detector,
        membership,
    }
}

fn digest(byte: u8) -> Digest {
    Digest([byte; 32])
}

fn executed(detector: &mut Watched, at: u64, from: ExecutionId, seq: u64, byte: u8) {
    detector.handle_executed(Time(at), from, APP, Seq(seq), digest(byte), ROUTED);
}

fn wakes(alarms: &[Alarm]) -> Vec<WakeReason> {
    alarms
        .iter()
        .filter_map(|alarm| match alarm {
            Alarm::Wake(wake) => Some(wake.reason),
            Alarm::Faulty(_) => None,
        })
        .collect()
}

fn faulty(alarms: &[Alarm]) -> Vec<(ExecutionId, FaultReason)> {
    alarms
        .iter()
        .filter_map(|alarm| match alarm {
            Alarm::Faulty(faulty) => Some((faulty.member, faulty.reason)),
            Alarm::Wake(_) => None,
        })
        .collect()
}

#[test]
fn matching_reports_raise_nothing() {
    let mut detector = detector();
    for seq in 1..=50 {
        executed(&mut detector, seq, E0, seq, 7);
        executed(&mut detector, seq, E1, seq, 7);
    }
    detector.handle_tick(Time(10 * SILENCE));
    assert!(detector.take_alarms().is_empty());
    assert!(
        detector.table(APP, Kind::Replies).is_empty(),
        "settled entries are dropped"
    );
}

#[test]
fn differing_replies_wake_once_per_epoch_and_resend_until_the_epoch_changes() {
    let mut detector = detector();
    executed(&mut detector, 0, E0, 1, 1);
    executed(&mut detector, 0, E1, 1, 2);
    executed(&mut detector, 0, E0, 2, 1);
    executed(&mut detector, 0, E1, 2, 2);
    assert_eq!(
        wakes(&detector.take_alarms()),
        vec![WakeReason::RepliesDiffer]
    );
    detector.handle_tick(Time(100_000));
    assert!(
        detector.take_alarms().is_empty(),
        "not resent before the interval"
    );
    detector.handle_tick(Time(600_000));
    assert_eq!(
        wakes(&detector.take_alarms()),
        vec![WakeReason::RepliesDiffer]
    );
    assert!(detector.handle_membership(Time(700_000), APP, 1, &[E0, E1, E2]));
    assert!(
        !detector.handle_membership(Time(700_000), APP, 1, &[E0]),
        "same epoch"
    );
    detector.handle_tick(Time(800_000));
    assert!(wakes(&detector.take_alarms()).is_empty());
}

#[test]
fn a_silent_member_wakes_standbys_then_is_reported_once_others_agree() {
    let mut detector = detector();
    executed(&mut detector, 0, E0, 1, 1);
    detector.handle_tick(Time(SILENCE - 1));
    assert!(detector.take_alarms().is_empty());
    detector.handle_tick(Time(SILENCE));
    assert_eq!(wakes(&detector.take_alarms()), vec![WakeReason::Silence]);
    // The woken E2 joins and agrees with E0; E1 stays silent.
    detector.handle_membership(Time(SILENCE + 1), APP, 1, &[E0, E1, E2]);
    executed(&mut detector, SILENCE + 2, E2, 1, 1);
    assert!(
        faulty(&detector.take_alarms()).is_empty(),
        "E1 gets its timeout"
    );
    detector.handle_tick(Time(2 * SILENCE + 2));
    assert_eq!(
        faulty(&detector.take_alarms()),
        vec![(E1, FaultReason::Silent)]
    );
}

#[test]
fn the_member_against_the_f_plus_1_agreed_digest_is_reported() {
    let mut detector = detector();
    detector.handle_membership(Time(0), APP, 1, &[E0, E1, E2]);
    executed(&mut detector, 1, E0, 1, 1);
    executed(&mut detector, 1, E1, 1, 9);
    executed(&mut detector, 1, E2, 1, 1);
    let alarms = detector.take_alarms();
    assert_eq!(faulty(&alarms), vec![(E1, FaultReason::WrongReplies)]);
    let Alarm::Faulty(report) = alarms
        .iter()
        .find(|alarm| matches!(alarm, Alarm::Faulty(_)))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(report.epoch, 1);
    // Roots too.
    detector.handle_root(Time(2), E0, APP, Seq(64), digest(3), ROUTED);
    detector.handle_root(Time(2), E1, APP, Seq(64), digest(3), ROUTED);
    detector.handle_root(Time(2), E2, APP, Seq(64), digest(4), ROUTED);
    assert_eq!(
        faulty(&detector.take_alarms()),
        vec![(E2, FaultReason::WrongRoot)]
    );
}

#[test]
fn reports_from_inactive_members_beyond_routed_or_already_settled_are_ignored() {
    let mut detector = detector();
    executed(&mut detector, 0, E2, 1, 5);
    let far = Seq(ROUTED.0 + REPORTS_AHEAD_MAX + 1);
    detector.handle_executed(Time(0), E0, APP, far, digest(1), ROUTED);
    detector.handle_executed(Time(0), ExecutionId(9), APP, Seq(1), digest(1), ROUTED);
    detector.handle_tick(Time(10 * SILENCE));
    assert!(detector.take_alarms().is_empty());
    executed(&mut detector, 0, E0, 3, 1);
    executed(&mut detector, 0, E1, 3, 1);
    // E2 becomes active and replays sequence 3, long settled: not judged.
    detector.handle_membership(Time(1), APP, 1, &[E0, E1, E2]);
    executed(&mut detector, 2, E2, 3, 1);
    detector.handle_tick(Time(10 * SILENCE));
    assert!(detector.take_alarms().is_empty());
}

/// An agreement replica that lags behind the execution replicas keeps their reports about
/// sequence numbers it has not routed yet: a replica that reported early is not silent.
#[test]
fn reports_just_ahead_of_a_lagging_replica_count() {
    let mut detector = detector();
    let ahead = Seq(ROUTED.0 + 3);
    detector.handle_executed(Time(0), E0, APP, ahead, digest(1), ROUTED);
    detector.handle_executed(Time(5), E1, APP, ahead, digest(1), ahead);
    detector.handle_tick(Time(10 * SILENCE));
    assert!(detector.take_alarms().is_empty());
}

#[test]
fn a_client_retransmit_wakes_standbys() {
    let mut detector = detector();
    detector.handle_client_retransmit(Time(5), APP, Seq(3));
    let alarms = detector.take_alarms();
    assert_eq!(wakes(&alarms), vec![WakeReason::ClientRetransmit]);
    detector.handle_client_retransmit(Time(6), APP, Seq(3));
    assert!(detector.take_alarms().is_empty(), "one wake per epoch");
}

/// Once every active member reported the sequence number a client retransmitted alike,
/// its wake is over: resent forever, it would keep the app from ever going quiet.
#[test]
fn a_client_retransmit_wake_stops_once_its_sequence_number_settles() {
    let mut detector = detector();
    detector.handle_client_retransmit(Time(0), APP, Seq(3));
    assert_eq!(wakes(&detector.take_alarms()).len(), 1);
    detector.handle_tick(Time(RESEND));
    assert_eq!(
        wakes(&detector.take_alarms()).len(),
        1,
        "resent while standing"
    );
    executed(&mut detector, RESEND + 1, E0, 3, 1);
    executed(&mut detector, RESEND + 1, E1, 3, 1);
    detector.handle_tick(Time(3 * RESEND));
    assert!(detector.take_alarms().is_empty(), "settled: no resend");
    assert_eq!(detector.wake_pending(APP), None);
    detector.client_retransmits(Time(3 * RESEND + 1), ClientId(2), APP, Seq(4));
    assert_eq!(
        wakes(&detector.take_alarms()).len(),
        1,
        "a new trouble wakes again"
    );
}

/// One client's retransmissions wake an app at most once per `CLIENT_WAKE_INTERVALS`
/// resend intervals, however often it retransmits (a Byzantine client retransmitting
/// forever would otherwise thaw standbys again after every quiet period).
#[test]
fn one_clients_retransmissions_wake_at_most_once_per_span() {
    let mut detector = detector();
    let span = RESEND * CLIENT_WAKE_INTERVALS;
    detector.handle_client_retransmit(Time(0), APP, Seq(3));
    assert_eq!(wakes(&detector.take_alarms()).len(), 1);
    executed(&mut detector, 1, E0, 3, 1);
    executed(&mut detector, 1, E1, 3, 1);
    detector.handle_tick(Time(RESEND));
    assert_eq!(detector.wake_pending(APP), None, "settled");
    detector.handle_client_retransmit(Time(2 * RESEND), APP, Seq(3));
    assert!(
        detector.take_alarms().is_empty(),
        "the same client, too soon"
    );
    detector.handle_client_retransmit(Time(span), APP, Seq(3));
    assert_eq!(wakes(&detector.take_alarms()).len(), 1, "after the span");
}

#[test]
fn a_member_that_reported_a_later_sequence_number_is_not_silent_about_an_earlier_one() {
    // Execution is gap-free: a lost report, or a woken replica that started from a later
    // stable checkpoint, is no silence.
    let mut detector = detector();
    executed(&mut detector, 0, E0, 1, 1);
    // E1's report about s1 is lost; its report about s2 arrives.
    executed(&mut detector, 1, E0, 2, 2);
    executed(&mut detector, 1, E1, 2, 2);
    detector.handle_tick(Time(10 * SILENCE));
    assert!(detector.take_alarms().is_empty());
    assert!(
        detector.table(APP, Kind::Replies).is_empty(),
        "nothing is left to judge"
    );
}

/// A woken standby must join, replay and fetch before it reports: it is called silent
/// only after the newcomer grace, while a member that was active all along is not given
/// one.
#[test]
fn a_newcomer_gets_a_grace_before_its_silence_counts() {
    let mut detector = detector();
    detector.handle_membership(Time(0), APP, 1, &[E0, E1, E2]);
    executed(&mut detector, 1, E0, 1, 1);
    executed(&mut detector, 2, E1, 1, 1);
    detector.handle_tick(Time(2 * SILENCE));
    assert!(faulty(&detector.take_alarms()).is_empty(), "E2 is joining");
    detector.handle_tick(Time((NEWCOMER_GRACE_TIMEOUTS + 1) * SILENCE + 2));
    assert_eq!(
        faulty(&detector.take_alarms()),
        vec![(E2, FaultReason::Silent)]
    );
}
