//! Many seeds at a time: run a range of seeds on worker threads, and summarise what the
//! runs showed of activation.

use super::{SimOptions, SimOutcome, SimStats, run};

/// What a sweep shows of activation: in how many seeds each thing happened at least once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivationSummary {
    pub seeds: usize,
    pub violations: usize,
    pub seeds_with_execution_faults: usize,
    pub seeds_woken: usize,
    pub seeds_destroyed: usize,
    /// Seeds where a replica destroyed was really faulty.
    pub seeds_faulty_replaced: usize,
    pub seeds_paused: usize,
    pub seeds_buckets_fetched: usize,
    pub seeds_bad_buckets: usize,
    pub seeds_false_alarms: usize,
    /// Seeds with a Byzantine client that attacked, and its attacks in all.
    pub seeds_byzantine_client: usize,
    pub byzantine_client_attacks: u64,
    pub standbys_woken: u64,
    pub replicas_destroyed: u64,
    pub faulty_replaced: u64,
    pub buckets_fetched: u64,
    pub bad_buckets: u64,
    pub results_checked: u64,
    /// Seeds where a replica fetched a new view's batch by digest, and such batches.
    pub seeds_proposals_fetched: usize,
    pub proposals_fetched: u64,
    /// Seeds where a greedy asker was refused answers over its share.
    pub seeds_fetch_answers_withheld: usize,
    /// Seeds whose clients sent requests of the largest size allowed.
    pub seeds_large_requests: usize,
    /// Seeds with Byzantine agreement replicas.
    pub seeds_byzantine_replicas: usize,
    /// Seeds with at least one view change.
    pub seeds_view_changes: usize,
    /// Seeds whose activator crashed and restarted.
    pub seeds_activator_restarts: usize,
}

impl ActivationSummary {
    pub fn of(outcomes: &[SimOutcome]) -> ActivationSummary {
        let count = |holds: &dyn Fn(&SimStats) -> bool| {
            outcomes
                .iter()
                .filter(|outcome| holds(&outcome.stats))
                .count()
        };
        let sum = |value: &dyn Fn(&SimStats) -> u64| {
            outcomes.iter().map(|outcome| value(&outcome.stats)).sum()
        };
        ActivationSummary {
            seeds: outcomes.len(),
            violations: outcomes.iter().filter(|o| o.violation.is_some()).count(),
            seeds_with_execution_faults: count(&|s| s.execution_faults_injected > 0),
            seeds_woken: count(&|s| s.standbys_woken > 0),
            seeds_destroyed: count(&|s| s.replicas_destroyed > 0),
            seeds_faulty_replaced: count(&|s| s.faulty_replaced > 0),
            seeds_paused: count(&|s| s.standbys_paused > 0),
            seeds_buckets_fetched: count(&|s| s.buckets_fetched > 0),
            seeds_bad_buckets: count(&|s| s.bad_buckets > 0),
            seeds_false_alarms: count(&|s| s.false_alarms_sent > 0),
            seeds_byzantine_client: count(&|s| s.byzantine_client_attacks > 0),
            byzantine_client_attacks: sum(&|s| s.byzantine_client_attacks),
            standbys_woken: sum(&|s| s.standbys_woken),
            replicas_destroyed: sum(&|s| s.replicas_destroyed),
            faulty_replaced: sum(&|s| s.faulty_replaced),
            buckets_fetched: sum(&|s| s.buckets_fetched),
            bad_buckets: sum(&|s| s.bad_buckets),
            results_checked: sum(&|s| s.results_checked),
            seeds_proposals_fetched: count(&|s| s.proposals_fetched > 0),
            proposals_fetched: sum(&|s| s.proposals_fetched),
            seeds_fetch_answers_withheld: count(&|s| s.fetch_answers_withheld > 0),
            seeds_large_requests: count(&|s| s.large_requests),
            seeds_byzantine_replicas: count(&|s| s.byzantine_replicas > 0),
            seeds_view_changes: count(&|s| s.view_changes > 0),
            seeds_activator_restarts: count(&|s| s.activator_restarts > 0),
        }
    }
}

impl std::fmt::Display for ActivationSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "of {} seeds: {} with execution faults, {} woke standbys ({} thaws), {} destroyed \
             replicas ({}; {} seeds replaced a faulty one, {} replicas), {} paused extras, \
             {} fetched buckets ({}), {} refused bad buckets ({}), {} had false alarms, {} a Byzantine client \
             ({} attacks), {} fetched new views' batches by digest ({}), {} withheld fetch \
             answers, {} large requests, {} Byzantine replicas, {} view changes, {} restarted \
             the activator; {} client results checked",
            self.seeds,
            self.seeds_with_execution_faults,
            self.seeds_woken,
            self.standbys_woken,
            self.seeds_destroyed,
            self.replicas_destroyed,
            self.seeds_faulty_replaced,
            self.faulty_replaced,
            self.seeds_paused,
            self.seeds_buckets_fetched,
            self.buckets_fetched,
            self.seeds_bad_buckets,
            self.bad_buckets,
            self.seeds_false_alarms,
            self.seeds_byzantine_client,
            self.byzantine_client_attacks,
            self.seeds_proposals_fetched,
            self.proposals_fetched,
            self.seeds_fetch_answers_withheld,
            self.seeds_large_requests,
            self.seeds_byzantine_replicas,
            self.seeds_view_changes,
            self.seeds_activator_restarts,
            self.results_checked,
        )
    }
}

/// Run seeds `first..first + count` on `jobs` threads; outcomes come back in seed order.
pub fn sweep(first: u64, count: u64, f: usize, jobs: usize) -> Vec<SimOutcome> {
    let jobs = jobs.clamp(1, 64) as u64;
    let mut outcomes: Vec<SimOutcome> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                scope.spawn(move || {
                    (first..first + count)
                        .filter(|seed| (seed - first) % jobs == worker)
                        .map(|seed| run(SimOptions { seed, f }))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("simulation threads catch panics"))
            .collect()
    });
    outcomes.sort_by_key(|outcome| outcome.seed);
    outcomes
}
