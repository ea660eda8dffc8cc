//! Seed sweeps: the simulator's randomised runs, many seeds at a time. Each seed draws its
//! own parameters, network faults, crashes, partitions and Byzantine replicas; a run passes
//! when the checkers saw no safety violation and every client request was accepted after
//! healing. A failure names the seeds and the command that replays each one. The sweeps
//! also count how often activation happened, so that a change that silently stopped
//! waking standbys or replacing faulty replicas fails here too.

use zz_experiments::sim::rng::SimRng;
use zz_experiments::sim::scenario::{REQUEST_BYTES, Scenario};
use zz_experiments::sim::{ActivationSummary, SimOutcome, run_scenario, sweep};

/// One thread per test: cargo already runs the two sweeps side by side.
const JOBS: usize = 1;

/// Every violation of `outcomes`, one per line, with the command that replays it.
fn describe_violations(outcomes: &[SimOutcome]) -> String {
    outcomes
        .iter()
        .filter_map(|outcome| {
            outcome.violation.as_ref().map(|violation| {
                format!(
                    "seed {}: {violation}\n  replay: {}",
                    outcome.seed,
                    outcome.replay_command()
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `count` seeds from `first` with `f`, fail with every violation found, and return
/// what the sweep showed of activation.
fn assert_sweep_clean(first: u64, count: u64, f: usize) -> ActivationSummary {
    let started = std::time::Instant::now();
    let outcomes = sweep(first, count, f, JOBS);
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len() as u64, count, "one outcome per seed");
    let violations = outcomes
        .iter()
        .filter(|outcome| outcome.violation.is_some())
        .count();
    let requests: u64 = outcomes.iter().map(|o| o.stats.requests_accepted).sum();
    let view_changes: u64 = outcomes.iter().map(|o| o.stats.view_changes).sum();
    let activation = ActivationSummary::of(&outcomes);
    println!(
        "f={f}: {count} seeds in {:.1}s, {violations} violations, {requests} requests accepted, \
         {view_changes} view changes; activation {activation}",
        elapsed.as_secs_f64()
    );
    assert_eq!(
        violations,
        0,
        "{violations} of {count} seeds with f={f} broke an invariant:\n{}",
        describe_violations(&outcomes)
    );
    activation
}

/// Fail unless `what` happened in at least `min` seeds of the sweep.
fn assert_seeds_at_least(what: &str, seeds: usize, min: usize, activation: &ActivationSummary) {
    assert!(
        seeds >= min,
        "{what} in {seeds} seeds, expected at least {min}: {activation}"
    );
}

#[test]
fn safety_and_liveness_hold_across_200_seeds_with_f1() {
    // Goal: 200 random fault schedules on a 4-replica cluster break no invariant and lose
    // no request; activation really happens: standbys are woken, faulty execution replicas
    // destroyed and replaced, buckets fetched and bad ones refused; and half the seeds have
    // a Byzantine client attacking. The bounds sit well below what was measured over 500
    // seeds (70% woke standbys, 32% replaced a faulty replica, 53% fetched buckets, 1%
    // refused bad ones) so that only a real loss of activation trips them. Deeper sweeps
    // run with `zz sim` on a release build.
    let activation = assert_sweep_clean(0, 200, 1);
    assert_seeds_at_least("standbys woken", activation.seeds_woken, 100, &activation);
    let replaced = activation.seeds_faulty_replaced;
    assert_seeds_at_least("faulty replicas replaced", replaced, 40, &activation);
    let fetched = activation.seeds_buckets_fetched;
    assert_seeds_at_least("buckets fetched", fetched, 60, &activation);
    let refused = activation.seeds_bad_buckets;
    assert_seeds_at_least("bad buckets refused", refused, 1, &activation);
    let attacked = activation.seeds_byzantine_client;
    assert_seeds_at_least("a Byzantine client attacking", attacked, 66, &activation);
    assert_drawn_faults_happen(&activation, 200);
}

/// The faults every sweep draws besides activation's, in a share of its `seeds` well below
/// what they are drawn with (a quarter of the seeds send the largest requests, 30% restart
/// the activator; a quarter of f=1 seeds fetched a new view's batch over 2,000 seeds):
/// large requests, activator restarts, and replicas that lacked a re-proposed batch.
fn assert_drawn_faults_happen(activation: &ActivationSummary, seeds: usize) {
    let large = activation.seeds_large_requests;
    assert_seeds_at_least("the largest requests", large, seeds / 8, activation);
    let restarts = activation.seeds_activator_restarts;
    assert_seeds_at_least("activator restarts", restarts, seeds / 6, activation);
    let fetched = activation.seeds_proposals_fetched;
    assert_seeds_at_least(
        "re-proposed batches fetched",
        fetched,
        seeds / 10,
        activation,
    );
}

#[test]
fn safety_and_liveness_hold_across_60_seeds_with_f2() {
    // Goal: 60 random fault schedules on a 7-replica cluster, with up to two Byzantine
    // agreement replicas and two faulty execution replicas per app, break no invariant and
    // lose no request; standbys are woken and faulty replicas replaced (measured over 100
    // seeds: 67 and 38).
    let activation = assert_sweep_clean(0, 60, 2);
    assert_seeds_at_least("standbys woken", activation.seeds_woken, 24, &activation);
    let replaced = activation.seeds_faulty_replaced;
    assert_seeds_at_least("faulty replicas replaced", replaced, 12, &activation);
    let attacked = activation.seeds_byzantine_client;
    assert_seeds_at_least("a Byzantine client attacking", attacked, 15, &activation);
    assert_drawn_faults_happen(&activation, 60);
}

#[test]
fn a_replica_that_lost_the_stable_notice_still_serves_joiners_pinned_to_it() {
    // Goal: the seed that stalled kv for good (found by a 20,000-seed sweep) ends with
    // every request accepted. A partition cut three agreement replicas off while they made
    // s18 stable, so e0 never heard of it, ran on to s37 and dropped s18's snapshot; the
    // woken standby and the replaced replica, both pinned to s18, then found no replica
    // serving it. Now agreement replicas name the stable checkpoint to every active member
    // each status interval, not only to those behind it.
    let seed = 35682;
    let outcome = run_scenario(seed, Scenario::generate(&mut SimRng::new(seed), 1));
    assert!(
        outcome.violation.is_none(),
        "{}\n  replay: {}",
        outcome
            .violation
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        outcome.replay_command()
    );
    let stats = &outcome.stats;
    assert!(
        stats.standbys_woken > 0,
        "the seed no longer wakes standbys"
    );
    assert!(
        stats.replicas_destroyed > 0,
        "the seed no longer replaces a replica"
    );
    assert!(stats.buckets_fetched > 0, "the joiners no longer fetch");
}

#[test]
fn seeds_where_agreement_replicas_lost_orders_to_state_transfer_and_restarts_heal() {
    // Goal: the seeds that used to stall an app for good (issue 4) now end with every
    // request accepted. In each, correct agreement replicas state-transferred past a range
    // of an app's orders or restarted with an empty order router, and a woken standby then
    // needed those orders (or a checkpoint named alike by f+1 of them to join from).
    // They are pinned as drawn before seeds got a Byzantine client (whose attacks draw from
    // the network's generator and so change every later delay) and primaries that spoil
    // signatures. Seed 41 at f=2 no longer
    // transfers state since primaries propose one request per client at a time; 42 does
    // (58 state transfers, 6 standbys woken, orders restored).
    for (seed, f) in [(140, 1), (479, 1), (42, 2)] {
        let mut scenario = Scenario::generate(&mut SimRng::new(seed), f);
        scenario.byzantine_client_every_micros = None;
        scenario.large_requests = false;
        scenario.params.request_bytes_max = REQUEST_BYTES;
        scenario.activator_restart = None;
        for behaviours in scenario.byzantine.values_mut() {
            behaviours.spoil_signatures = 0;
            behaviours.greedy_fetch = 0;
        }
        let outcome = run_scenario(seed, scenario);
        assert!(
            outcome.violation.is_none(),
            "seed {seed}: {}\n  replay: {}",
            outcome
                .violation
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            outcome.replay_command()
        );
        let stats = &outcome.stats;
        assert!(
            stats.state_transfers > 0,
            "seed {seed} no longer transfers state"
        );
        assert!(
            stats.standbys_woken > 0,
            "seed {seed} no longer wakes standbys"
        );
    }
}
