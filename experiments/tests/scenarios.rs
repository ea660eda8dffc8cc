//! Scenario tests: each pins one fault on the simulator (a crashed primary, an equivocating
//! primary, lying backups, forged frames, a partition, crashes under loss) and leaves the
//! rest controlled, then runs a dozen seeds so that no single lucky draw passes. Every run
//! must keep the simulator's invariants and accept every client request; each test then
//! checks, in the run's statistics, that its fault really happened and mattered.
//!
//! A failing seed replays with
//! `cargo test -p zz-experiments --test scenarios <test name> -- --nocapture`.

use std::ops::Range;
use zz_agreement::core::DropReason;
use zz_cluster::Fault;
use zz_experiments::sim::byzantine::Behaviours;
use zz_experiments::sim::rng::SimRng;
use zz_experiments::sim::scenario::{ExecutionFaultPlan, Scenario};
use zz_experiments::sim::{SimOutcome, SimStats, run_scenario};
use zz_protocol::{AppId, ReplicaId};

/// Seeds each scenario runs by default.
const SEEDS_DEFAULT: u64 = 12;

/// Seeds `0..SEEDS_DEFAULT`, or `0..N` with `ZZ_SCENARIO_SEEDS=N` for a deeper search.
fn seeds() -> Range<u64> {
    let count = std::env::var("ZZ_SCENARIO_SEEDS")
        .ok()
        .map(|count| count.parse().expect("ZZ_SCENARIO_SEEDS is a seed count"))
        .unwrap_or(SEEDS_DEFAULT);
    0..count
}

/// One seed's scenario and what came of it.
struct Run {
    scenario: Scenario,
    outcome: SimOutcome,
}

impl Run {
    fn stats(&self) -> &SimStats {
        &self.outcome.stats
    }

    fn all_requests_accepted(&self) -> bool {
        self.stats().requests_accepted == self.scenario.clients * self.scenario.requests_per_client
    }
}

/// The seed's generated scenario with every fault removed: no loss, no duplicates, no
/// partitions, no crashes, no Byzantine replicas, no faulty execution replicas. Parameters, delays and the workload stay
/// as the seed drew them. The generator comes back too, to draw the pinned fault from.
fn calm(seed: u64, f: usize) -> (Scenario, SimRng) {
    let mut rng = SimRng::new(seed);
    let mut scenario = Scenario::generate(&mut rng, f);
    scenario.drop_per_mille = 0;
    scenario.duplicate_per_mille = 0;
    scenario.partitions.clear();
    scenario.crashes.clear();
    scenario.cluster_crash = None;
    scenario.byzantine.clear();
    scenario.execution_faults.clear();
    scenario.byzantine_client_every_micros = None;
    (scenario, rng)
}

/// A backup of view 0, drawn from the generator.
fn some_backup(rng: &mut SimRng, scenario: &Scenario) -> ReplicaId {
    let replica_count = scenario.params.replica_count() as u64;
    ReplicaId(rng.range(1, replica_count - 1) as u32)
}

/// Run `build(seed)` for every seed; fail with each violation, its seed and its scenario.
fn run_seeds(test: &str, seeds: Range<u64>, build: impl Fn(u64) -> Scenario) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for seed in seeds {
        let scenario = build(seed);
        let outcome = run_scenario(seed, scenario.clone());
        println!("{test} seed {seed}: {}", outcome.stats);
        if let Some(violation) = &outcome.violation {
            failures.push(format!(
                "seed {seed}: {violation}\n  scenario: {scenario:?}"
            ));
        }
        runs.push(Run { scenario, outcome });
    }
    assert!(
        failures.is_empty(),
        "{test}: {} of {} seeds broke an invariant \
         (replay: cargo test -p zz-experiments --test scenarios {test} -- --nocapture)\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
    runs
}

/// Fail, naming the seeds, unless `holds` is true of every run.
fn assert_each(runs: &[Run], what: &str, holds: impl Fn(&Run) -> bool) {
    let failing: Vec<String> = runs
        .iter()
        .filter(|run| !holds(run))
        .map(|run| format!("seed {}: {}", run.outcome.seed, run.stats()))
        .collect();
    assert!(
        failing.is_empty(),
        "expected {what} in every seed; it did not hold in:\n{}",
        failing.join("\n")
    );
}

#[test]
fn normal_case_f1_orders_every_request_without_a_view_change() {
    // Goal: with no faults the normal case (PBFT section 4.2) orders every request in
    // view 0, never suspecting the primary.
    let runs = run_seeds(
        "normal_case_f1_orders_every_request_without_a_view_change",
        seeds(),
        |seed| calm(seed, 1).0,
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "no view change", |run| run.stats().view_changes == 0);
    assert_each(&runs, "no state transfer", |run| {
        run.stats().state_transfers == 0
    });
    assert_each(&runs, "no rejected frame", |run| {
        run.stats().frames_rejected == 0
    });
    assert_each(&runs, "no standby woken", |run| {
        run.stats().standbys_woken == 0
    });
    assert_each(&runs, "per-app orders checked", |run| {
        run.stats().app_orders_checked > 0
    });
}

#[test]
fn a_byzantine_client_changes_no_view_and_stalls_no_correct_client_f1() {
    // Goal: a client with valid keys that spoils some replicas' MAC slots (the primary's
    // too), spoils its signature, names apps and ids that do not exist, replays a correct
    // client's frames and floods requests makes no view change and delays no correct
    // client for good; what it spoiled is refused and counted.
    let test = "a_byzantine_client_changes_no_view_and_stalls_no_correct_client_f1";
    let runs = run_seeds(test, seeds(), |seed| {
        let (mut scenario, mut rng) = calm(seed, 1);
        scenario.byzantine_client_every_micros = Some(rng.range(5_000, 40_000));
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "no view change", |run| run.stats().view_changes == 0);
    assert_each(&runs, "attacks sent", |run| {
        run.stats().byzantine_client_attacks > 10
    });
    assert_each(&runs, "spoiled requests refused", |run| {
        run.stats().frames_rejected > 0
    });
}

#[test]
fn a_primary_spoiling_request_signatures_is_replaced_and_no_correct_primary_proposes_them_f1() {
    // Goal: a Byzantine primary that spoils its batched requests' signatures and every MAC
    // slot but replica 1's gets its batches refused by the other backups; replica 1, which
    // accepted them on its slot, does not propose them once it is primary (it may not have
    // checked their signatures), and every correct client's request is still accepted.
    let test =
        "a_primary_spoiling_request_signatures_is_replaced_and_no_correct_primary_proposes_them_f1";
    let runs = run_seeds(test, seeds(), |seed| {
        let (mut scenario, _) = calm(seed, 1);
        let spoiler = Behaviours {
            spoil_signatures: 1000,
            ..Behaviours::default()
        };
        scenario.byzantine.insert(ReplicaId(0), spoiler);
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "a view change", |run| run.stats().view_changes > 0);
    assert_each(&runs, "spoiled batches refused", |run| {
        run.stats().frames_rejected > 0
    });
}

#[test]
fn view_change_primary_crashes_f1() {
    // Goal: when the primary of view 0 crashes early and stays down for the whole safety
    // phase, the backups' timers expire and they move to a new view (PBFT section 4.4) in
    // which every request is still ordered.
    let runs = run_seeds("view_change_primary_crashes_f1", seeds(), |seed| {
        let (mut scenario, mut rng) = calm(seed, 1);
        let crash_at = rng.range(10_000, 300_000);
        scenario.crashes = vec![(crash_at, scenario.safety_micros, ReplicaId(0))];
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "a view change", |run| run.stats().view_changes > 0);
}

#[test]
fn view_change_primary_equivocates_f1() {
    // Goal: a primary that sends different batches for one (view, seq) to different backups
    // gets no batch prepared by a quorum, so the backups replace it by a view change (PBFT
    // section 4.4) and order every request without disagreeing.
    let runs = run_seeds("view_change_primary_equivocates_f1", seeds(), |seed| {
        let (mut scenario, _) = calm(seed, 1);
        let equivocate = Behaviours {
            equivocate: 1000,
            ..Default::default()
        };
        scenario.byzantine.insert(ReplicaId(0), equivocate);
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "an equivocation", |run| {
        run.stats().byzantine_frames_altered > 0
    });
    assert_each(&runs, "a view change", |run| run.stats().view_changes > 0);
}

/// A backup that votes for random digests in prepares and commits, and signs false
/// checkpoint digests, on every message.
fn conflicting_voter() -> Behaviours {
    Behaviours {
        conflicting_votes: 1000,
        false_checkpoint: 1000,
        ..Default::default()
    }
}

#[test]
fn byzantine_backup_sends_conflicting_votes_and_false_checkpoints_f1() {
    // Goal: one backup's conflicting prepares and commits and false checkpoint digests never
    // make a quorum (PBFT sections 4.2 and 4.3), so the correct replicas agree, their stable
    // checkpoints match, and every request is ordered.
    let runs = run_seeds(
        "byzantine_backup_sends_conflicting_votes_and_false_checkpoints_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            let liar = some_backup(&mut rng, &scenario);
            scenario.byzantine.insert(liar, conflicting_voter());
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "lies told", |run| {
        run.stats().byzantine_frames_altered > 0
    });
}

#[test]
fn two_byzantine_backups_send_conflicting_votes_and_false_checkpoints_f2() {
    // Goal: with f=2, two backups lying in prepares, commits and checkpoints together still
    // fall short of a quorum (PBFT sections 4.2 and 4.3), so the five correct replicas agree
    // and order every request.
    let runs = run_seeds(
        "two_byzantine_backups_send_conflicting_votes_and_false_checkpoints_f2",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 2);
            while scenario.byzantine.len() < 2 {
                let liar = some_backup(&mut rng, &scenario);
                scenario.byzantine.insert(liar, conflicting_voter());
            }
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "lies told", |run| {
        run.stats().byzantine_frames_altered > 0
    });
}

#[test]
fn forged_macs_absurd_views_and_replays_are_dropped_and_counted_f1() {
    // Goal: frames with forged MACs are rejected at the boundary and messages for absurd
    // views or replayed from the past are dropped by the core (PBFT section 4.2's acceptance
    // checks), each counted, without costing safety or liveness.
    let runs = run_seeds(
        "forged_macs_absurd_views_and_replays_are_dropped_and_counted_f1",
        seeds(),
        |seed| {
            let (mut scenario, _) = calm(seed, 1);
            // Any replica, the primary of view 0 included.
            let forger = ReplicaId((seed % scenario.params.replica_count() as u64) as u32);
            let behaviours = Behaviours {
                forge_mac: 300,
                absurd: 200,
                replay: 200,
                ..Default::default()
            };
            scenario.byzantine.insert(forger, behaviours);
            scenario
        },
    );
    let dropped = |run: &Run, reason: DropReason| {
        run.stats()
            .messages_dropped
            .get(&reason)
            .copied()
            .unwrap_or(0)
    };
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "forged frames rejected", |run| {
        run.stats().frames_rejected > 0
    });
    assert_each(&runs, "absurd views dropped", |run| {
        dropped(run, DropReason::FutureView) > 0
    });
    // A replayed message is a duplicate, from a view left behind, or below the window by
    // now; the last also happens without faults, the first two do not (see the normal case).
    assert_each(&runs, "replays dropped", |run| {
        dropped(run, DropReason::Duplicate)
            + dropped(run, DropReason::StaleView)
            + dropped(run, DropReason::OutsideWindow)
            > 0
    });
    let replays_recognised: u64 = runs
        .iter()
        .map(|run| dropped(run, DropReason::Duplicate) + dropped(run, DropReason::StaleView))
        .sum();
    assert!(
        replays_recognised > 0,
        "replays dropped as duplicate or stale"
    );
}

#[test]
fn partitioned_replica_catches_up_by_state_transfer_f1() {
    // Goal: a backup cut off for most of the safety phase, while the others move several
    // checkpoints past its window, catches up after the partition heals by fetching a stable
    // checkpoint's state (PBFT section 4.3).
    let runs = run_seeds(
        "partitioned_replica_catches_up_by_state_transfer_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            scenario.params.checkpoint_interval = 2;
            scenario.params.window = 4;
            scenario.params.pipeline_max = scenario.params.pipeline_max.min(4);
            scenario.params.batch_size_max = 2;
            scenario.clients = 3;
            scenario.requests_per_client = 20;
            scenario.safety_micros = 6_000_000;
            let isolated = some_backup(&mut rng, &scenario);
            // Healed a second before the safety phase ends, so it catches up while the
            // workload may still be running.
            scenario.partitions = vec![(100_000, 5_000_000, vec![isolated])];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "the others several checkpoints ahead", |run| {
        run.stats().batches_ordered_max >= 2 * run.scenario.params.window
    });
    assert_each(&runs, "a state transfer", |run| {
        run.stats().state_transfers > 0
    });
}

#[test]
fn correct_replicas_restart_from_persisted_records_under_heavy_drops_f1() {
    // Goal: two correct replicas (the primary possibly among them) crash one after the other
    // while a fifth of all frames is lost, and each comes back from the records it persisted
    // before sending anything derived from them, without a safety violation, and every
    // request is still ordered.
    let runs = run_seeds(
        "correct_replicas_restart_from_persisted_records_under_heavy_drops_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            scenario.drop_per_mille = 200;
            scenario.duplicate_per_mille = 30;
            scenario.safety_micros = 6_000_000;
            let replica_count = scenario.params.replica_count() as u64;
            let first = ReplicaId(rng.range(0, replica_count - 1) as u32);
            let second = ReplicaId(
                ((first.0 as u64 + rng.range(1, replica_count - 1)) % replica_count) as u32,
            );
            let first_at = rng.range(200_000, 1_500_000);
            let first_restart = first_at + rng.range(300_000, 1_500_000);
            let second_at = first_restart + rng.range(200_000, 1_000_000);
            let second_restart = second_at + rng.range(300_000, 1_500_000);
            scenario.crashes = vec![
                (first_at, first_restart, first),
                (second_at, second_restart, second),
            ];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "heavy loss", |run| run.stats().frames_lost > 0);
    assert_each(&runs, "two restarts from persisted records", |run| {
        run.stats().restarts == 2
    });
}

#[test]
fn hidden_prepared_certificates_with_primary_crash_stay_safe_f1() {
    // Goal: when the primary crashes and one of the three remaining replicas leaves its
    // prepared certificates out of its view changes, the two correct view changes in any
    // quorum still carry every batch that may have committed (PBFT section 4.4), so the new
    // view re-proposes it and no correct replicas disagree.
    let runs = run_seeds(
        "hidden_prepared_certificates_with_primary_crash_stay_safe_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            // A long checkpoint interval keeps every executed batch's prepared certificate
            // in the view changes, so there is something to hide; enough requests that the
            // workload outlasts the primary.
            scenario.params.checkpoint_interval = 16;
            scenario.params.window = 32;
            scenario.clients = scenario.clients.max(2);
            scenario.requests_per_client = 40;
            let hider = some_backup(&mut rng, &scenario);
            let hide = Behaviours {
                hide_certificates: 1000,
                ..Default::default()
            };
            scenario.byzantine.insert(hider, hide);
            let crash_at = rng.range(200_000, 500_000);
            scenario.crashes = vec![(crash_at, scenario.safety_micros, ReplicaId(0))];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "a view change", |run| run.stats().view_changes > 0);
    assert_each(&runs, "view changes rewritten by the hider", |run| {
        run.stats().byzantine_frames_altered > 0
    });
}

#[test]
fn restarted_backups_keep_their_votes_against_an_equivocating_primary_f1() {
    // Goal: backups that crash and come back while the primary equivocates still refuse a
    // second digest for a (view, seq) they accepted before the crash, because the pre-prepare
    // and prepared certificate they persisted come back with them (PBFT section 4.2).
    let runs = run_seeds(
        "restarted_backups_keep_their_votes_against_an_equivocating_primary_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            let equivocate = Behaviours {
                equivocate: 1000,
                ..Default::default()
            };
            scenario.byzantine.insert(ReplicaId(0), equivocate);
            let safety_micros = scenario.safety_micros;
            scenario.crashes = (0..4)
                .map(|_| {
                    let backup = some_backup(&mut rng, &scenario);
                    let at = rng.range(0, safety_micros - 200_000);
                    let restart = (at + rng.range(50_000, 1_000_000)).min(safety_micros);
                    (at, restart, backup)
                })
                .collect();
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "restarts from persisted records", |run| {
        run.stats().restarts > 0
    });
    // Not a view change in every seed: a restarted replica's counters start again at zero.
    assert_each(&runs, "an equivocation", |run| {
        run.stats().byzantine_frames_altered > 0
    });
}

#[test]
fn the_whole_agreement_cluster_restarts_from_synced_records_and_a_standby_joins_f1() {
    // Goal: every agreement replica crashes at once under load (a power cut, or zz down and
    // zz up), losing what it appended and had not synced yet and the frames held for it, and
    // restarts from its records alone: no peer holds an order the others lost. The routers
    // take back the orders after each app's stable execution checkpoint from disk, and when
    // an active execution replica then crashes, the woken standby joins from the checkpoint
    // they name and gets those orders. Every request is accepted, and no replica contradicts
    // a vote it sent before the crash.
    let runs = run_seeds(
        "the_whole_agreement_cluster_restarts_from_synced_records_and_a_standby_joins_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            scenario.clients = scenario.clients.max(2);
            scenario.requests_per_client = scenario.requests_per_client.max(20);
            let at = rng.range(100_000, 400_000);
            let restart = at + rng.range(10_000, 300_000);
            scenario.cluster_crash = Some((at, restart));
            let member_index = rng.range(0, 1) as usize;
            let fault_at = restart + rng.range(50_000, 300_000);
            scenario.execution_faults = vec![execution_fault(member_index, fault_at, Fault::Crash)];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "one crash of the whole cluster", |run| {
        run.stats().cluster_crashes == 1 && run.stats().restarts >= 4
    });
    assert_each(&runs, "a standby woken after the restart", |run| {
        run.stats().standbys_woken > 0
    });
    // Orders are taken back from disk only where the restored PBFT checkpoint is ahead of
    // the app's stable execution checkpoint (the ones after it are ordered again), and
    // records are lost only where the crash fell between an append and its sync: in some
    // seeds, not all.
    let restored = runs.iter().filter(|run| run.stats().orders_restored > 0);
    assert!(
        restored.count() > 0,
        "orders taken back from disk in some seed"
    );
    let lost = runs
        .iter()
        .filter(|run| run.stats().unsynced_records_lost > 0);
    assert!(
        lost.count() > 0,
        "a crash between an append and its sync in some seed"
    );
}

/// App 0 (kv): client 0 always uses it, so every seed gives it traffic.
const KV: AppId = AppId(0);

/// `fault` on member `member_index` of app 0 at `at_micros`.
fn execution_fault(member_index: usize, at_micros: u64, fault: Fault) -> ExecutionFaultPlan {
    ExecutionFaultPlan {
        app: KV,
        member_index,
        at_micros,
        fault,
    }
}

/// One active replica of app 0 (f=1) turns faulty early, the way `fault` says; the rest is
/// calm. Every request must still be accepted, with correct results only, because a
/// standby is woken and the faulty replica destroyed and replaced.
fn one_faulty_active_f1(test: &str, fault: Fault) -> Vec<Run> {
    let runs = run_seeds(test, seeds(), |seed| {
        let (mut scenario, mut rng) = calm(seed, 1);
        let member_index = rng.range(0, 1) as usize;
        let at = rng.range(0, 300_000);
        scenario.execution_faults = vec![execution_fault(member_index, at, fault)];
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "the fault injected", |run| {
        run.stats().execution_faults_injected == 1
    });
    assert_each(&runs, "a standby woken", |run| {
        run.stats().standbys_woken > 0
    });
    assert_each(&runs, "the faulty replica destroyed and replaced", |run| {
        run.stats().faulty_replaced == 1 && run.stats().standbys_started >= 1
    });
    assert_each(
        &runs,
        "client results checked against correct replicas",
        |run| run.stats().results_checked > 0,
    );
    runs
}

#[test]
fn corrupt_replies_from_one_active_replica_wake_a_standby_that_replaces_it_f1() {
    // Goal: an active execution replica that answers clients with wrong results (and reports
    // their digest) makes the replies differ; f+1 agreement replicas ask for a standby
    // (ZZ section 4), the woken one agrees with the correct active, the liar is reported by
    // f+1 and destroyed, and clients never accept a wrong result.
    one_faulty_active_f1(
        "corrupt_replies_from_one_active_replica_wake_a_standby_that_replaces_it_f1",
        Fault::CorruptReply,
    );
}

#[test]
fn a_crashed_active_replica_is_replaced_by_a_woken_standby_f1() {
    // Goal: when an active execution replica stops for good, its silence wakes a standby,
    // and once the standby and the other active agree, the silent one is destroyed and a
    // fresh standby started in its place.
    one_faulty_active_f1(
        "a_crashed_active_replica_is_replaced_by_a_woken_standby_f1",
        Fault::Crash,
    );
}

#[test]
fn a_mute_active_replica_is_replaced_by_a_woken_standby_f1() {
    // Goal: an active replica that executes but sends nothing (no replies, no reports) is
    // treated like a silent one: a standby is woken, the mute one destroyed and replaced.
    one_faulty_active_f1(
        "a_mute_active_replica_is_replaced_by_a_woken_standby_f1",
        Fault::Mute,
    );
}

#[test]
fn a_woken_standby_refuses_corrupt_buckets_and_fetches_them_elsewhere_f1() {
    // Goal: the active replica a woken standby asks first for state (its first peer)
    // serves altered buckets and reports wrong roots; the standby refuses every bucket whose
    // proof fails against the agreed root, fetches it from the next replica, and ends up
    // with the state the correct replicas have (equal roots), so every request is served.
    let runs = run_seeds(
        "a_woken_standby_refuses_corrupt_buckets_and_fetches_them_elsewhere_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            // Frequent checkpoints and enough kv traffic that a checkpoint with state is
            // stable before the fault, so the woken standby starts from a pinned one.
            scenario.params.checkpoint_interval = 2;
            scenario.params.window = 8;
            scenario.clients = scenario.clients.max(2);
            scenario.requests_per_client = 30;
            let at = rng.range(800_000, 1_200_000);
            let fault = Fault::CorruptState;
            // Member 0 is every standby's first peer.
            scenario.execution_faults = vec![execution_fault(0, at, fault)];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "a standby woken", |run| {
        run.stats().standbys_woken > 0
    });
    assert_each(&runs, "bad buckets refused", |run| {
        run.stats().bad_buckets > 0
    });
    assert_each(&runs, "buckets fetched elsewhere", |run| {
        run.stats().buckets_fetched > 0
    });
    assert_each(&runs, "the lying replica replaced", |run| {
        run.stats().faulty_replaced == 1
    });
}

/// f Byzantine agreement replicas that send a false Wake or Faulty with every frame, and
/// otherwise follow the protocol; nothing else goes wrong.
fn false_alarms_alone(test: &str, f: usize) {
    let runs = run_seeds(test, seeds(), |seed| {
        let (mut scenario, mut rng) = calm(seed, f);
        while scenario.byzantine.len() < f {
            let liar = ReplicaId(rng.range(0, scenario.params.replica_count() as u64 - 1) as u32);
            let behaviours = Behaviours {
                false_alarms: 1000,
                ..Default::default()
            };
            scenario.byzantine.insert(liar, behaviours);
        }
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "false alarms reached the activator", |run| {
        run.stats().false_alarms_sent > 0
            && run.stats().wakes_received + run.stats().faulty_received > 0
    });
    // A correct replica may raise a genuine alarm now and then (a client retransmits
    // before its reply came): with the liars' copies that makes f+1, which is allowed.
    // Where no correct replica raised one, nothing may be woken or destroyed.
    let alone: Vec<&Run> = runs
        .iter()
        .filter(|run| run.stats().alarms_from_correct == 0)
        .collect();
    assert!(
        alone.len() * 2 > runs.len(),
        "most seeds see false alarms only ({} of {})",
        alone.len(),
        runs.len()
    );
    for run in alone {
        let stats = run.stats();
        assert!(
            stats.standbys_woken == 0 && stats.replicas_destroyed == 0,
            "seed {}: false alarms alone woke or destroyed replicas: {}",
            run.outcome.seed,
            stats
        );
    }
}

#[test]
fn false_wakes_and_faulty_reports_from_one_byzantine_replica_change_nothing_f1() {
    // Goal: one Byzantine agreement replica's validly authenticated but false Wake and
    // Faulty alarms, for random apps, epochs and members, never make an f+1 quorum, so the
    // activator wakes and destroys nothing (ZZ: f faulty agreement replicas cannot make the
    // platform burn resources).
    false_alarms_alone(
        "false_wakes_and_faulty_reports_from_one_byzantine_replica_change_nothing_f1",
        1,
    );
}

#[test]
fn false_wakes_and_faulty_reports_from_two_byzantine_replicas_change_nothing_f2() {
    // Goal: with f=2, two Byzantine agreement replicas sending false alarms together still
    // fall short of the f+1 = 3 the activator needs.
    false_alarms_alone(
        "false_wakes_and_faulty_reports_from_two_byzantine_replicas_change_nothing_f2",
        2,
    );
}

#[test]
fn a_quiet_period_returns_the_app_to_f_plus_1_active_f2() {
    // Goal: with f=2 a wake thaws two standbys; once the faulty replica is destroyed one
    // extra member is left active, and after the quiet period the activator pauses it, so
    // the app is back to f+1 active members (ZZ section 4).
    let runs = run_seeds(
        "a_quiet_period_returns_the_app_to_f_plus_1_active_f2",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 2);
            scenario.standbys_per_app = scenario.standbys_per_app.max(2);
            scenario.quiet_micros = 1_000_000;
            scenario.safety_micros = scenario.safety_micros.max(6_000_000);
            let member_index = rng.range(0, 2) as usize;
            let at = rng.range(0, 300_000);
            let fault = Fault::CorruptReply;
            scenario.execution_faults = vec![execution_fault(member_index, at, fault)];
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "two standbys woken", |run| {
        run.stats().standbys_woken >= 2
    });
    assert_each(&runs, "the faulty replica replaced", |run| {
        run.stats().faulty_replaced == 1
    });
    assert_each(&runs, "an extra member paused", |run| {
        run.stats().standbys_paused > 0
    });
    assert_each(&runs, "f+1 active at the end", |run| {
        run.stats().active_at_end == vec![3, 3]
    });
}

/// Requests of the largest size allowed, a primary that crashes, and lossy links, at `f`:
/// the view change and the new view must fit in a frame whatever the batches weigh.
fn largest_requests_with_primary_crash(test: &str, f: usize, seeds: Range<u64>) {
    // Goal: view changes and new views name batches by digest (PBFT section 4.4), so with
    // 64 KiB requests, where the batches a view change covers weigh more than a frame, a
    // crashed primary is still replaced; replicas lacking a re-proposed batch fetch it.
    let runs = run_seeds(test, seeds, |seed| {
        let (mut scenario, mut rng) = calm(seed, f);
        scenario.large_requests = true;
        scenario.params.request_bytes_max = 64 * 1024;
        scenario.params.batch_size_max = 8;
        scenario.params.checkpoint_interval = 16;
        scenario.params.window = 64;
        scenario.clients = scenario.clients.max(3);
        scenario.requests_per_client = 20;
        scenario.drop_per_mille = 30;
        let crash_at = rng.range(200_000, 500_000);
        scenario.crashes = vec![(crash_at, scenario.safety_micros, ReplicaId(0))];
        let covered = scenario.params.window as usize * scenario.params.batch_bytes_max();
        assert!(covered > 4 * scenario.params.frame_bytes_max);
        scenario
    });
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "a view change", |run| run.stats().view_changes > 0);
}

#[test]
fn the_largest_requests_survive_a_primary_crash_f1() {
    largest_requests_with_primary_crash("the_largest_requests_survive_a_primary_crash_f1", 1, 0..6);
}

#[test]
fn the_largest_requests_survive_a_primary_crash_f2() {
    largest_requests_with_primary_crash("the_largest_requests_survive_a_primary_crash_f2", 2, 0..4);
}

#[test]
fn the_largest_requests_survive_a_primary_crash_f3() {
    largest_requests_with_primary_crash("the_largest_requests_survive_a_primary_crash_f3", 3, 0..3);
}

#[test]
fn an_activator_that_restarts_around_a_fault_still_wakes_and_replaces_f1() {
    // Goal: the activator crashes just before an active replica starts lying and restarts
    // a moment later from its saved record (epochs, who is active); the alarms it missed
    // are raised again, it wakes a standby and replaces the liar, and every request is
    // accepted. Its standbys are started afresh in their slots, as the node does.
    let runs = run_seeds(
        "an_activator_that_restarts_around_a_fault_still_wakes_and_replaces_f1",
        seeds(),
        |seed| {
            let (mut scenario, mut rng) = calm(seed, 1);
            let member_index = rng.range(0, 1) as usize;
            let at = rng.range(50_000, 300_000);
            let fault = Fault::CorruptReply;
            scenario.execution_faults = vec![execution_fault(member_index, at, fault)];
            let restart = at + rng.range(100_000, 1_500_000);
            scenario.activator_restart = Some((at - 20_000, restart));
            scenario.safety_micros = scenario.safety_micros.max(restart + 1_000_000);
            scenario
        },
    );
    assert_each(&runs, "every request accepted", Run::all_requests_accepted);
    assert_each(&runs, "one activator restart", |run| {
        run.stats().activator_restarts == 1
    });
    assert_each(&runs, "a standby woken", |run| {
        run.stats().standbys_woken > 0
    });
    assert_each(&runs, "the liar replaced", |run| {
        run.stats().faulty_replaced == 1
    });
}
