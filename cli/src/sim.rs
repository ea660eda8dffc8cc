//! `zz sim`: run the deterministic simulator over many seeds.

use clap::Args;
use zz_experiments::sim::{self, SimOptions};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// How many seeds to run, starting at --first-seed.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// Replay exactly this seed (overrides --seeds).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The first seed when running many.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Faults tolerated: the cluster has 3f+1 replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub f: u64,
    /// Threads to run seeds on (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print one line per seed.
    #[arg(long)]
    pub verbose: bool,
}

/// Returns the number of violations.
pub fn run(args: &SimArgs) -> u64 {
    // Cores assert their invariants; the simulator reports a broken one as a violation,
    // so keep the default panic output for replays only.
    if args.seed.is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    if let Some(seed) = args.seed {
        let mut rng = sim::rng::SimRng::new(seed);
        let scenario = sim::scenario::Scenario::generate(&mut rng, args.f as usize);
        println!("{scenario:#?}");
    }
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let outcomes = match args.seed {
        Some(seed) => vec![sim::run(SimOptions {
            seed,
            f: args.f as usize,
        })],
        None => sim::sweep(args.first_seed, args.seeds, args.f as usize, jobs),
    };
    let mut violations = 0u64;
    for outcome in &outcomes {
        let seed = outcome.seed;
        if args.verbose || args.seed.is_some() {
            println!("seed {seed}: {}", outcome.stats);
        }
        if let Some(violation) = &outcome.violation {
            violations += 1;
            println!("violation at seed {seed}: {violation}");
            println!("  replay: {}", outcome.replay_command());
        }
    }
    println!("activation {}", sim::ActivationSummary::of(&outcomes));
    println!("seeds: {}, violations: {violations}", outcomes.len());
    violations
}
