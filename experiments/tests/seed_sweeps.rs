//! Seed sweeps: the simulator's randomised runs, many seeds at a time. Each seed draws its
//! own parameters, network faults, crashes, partitions and Byzantine replicas; a run passes
//! when the checkers saw no safety violation and every client request was accepted after
//! healing. A failure names the seeds and the command that replays each one.

use zz_experiments::sim::{SimOutcome, sweep};

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

/// Run `count` seeds from `first` with `f` and fail with every violation found.
fn assert_sweep_clean(first: u64, count: u64, f: usize) {
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
    println!(
        "f={f}: {count} seeds in {:.1}s, {violations} violations, {requests} requests accepted, \
         {view_changes} view changes",
        elapsed.as_secs_f64()
    );
    assert_eq!(
        violations,
        0,
        "{violations} of {count} seeds with f={f} broke an invariant:\n{}",
        describe_violations(&outcomes)
    );
}

#[test]
fn safety_and_liveness_hold_across_500_seeds_with_f1() {
    // Goal: 500 random fault schedules on a 4-replica cluster break no invariant and lose
    // no request.
    assert_sweep_clean(0, 500, 1);
}

#[test]
fn safety_and_liveness_hold_across_100_seeds_with_f2() {
    // Goal: 100 random fault schedules on a 7-replica cluster, with up to two Byzantine
    // replicas, break no invariant and lose no request.
    assert_sweep_clean(0, 100, 2);
}
