//! The deterministic simulator. One `u64` seed decides everything: protocol parameters,
//! message delays, drops, duplicates, partitions, crashes and restarts (now and then of
//! the whole agreement cluster at once), and which replicas are Byzantine and how they lie.
//! Real agreement drivers (core, frame sealing and opening, persistence) run on a virtual
//! network with a virtual clock that jumps to the next event. Their storage is a disk that
//! loses, in a crash, what was appended and not synced yet; each replica syncs (and sends
//! what waited for the sync) a random moment after a step that persisted.
//!
//! Each cluster hosts two apps (kv and null), each with f+1 active execution replicas that
//! get their app's orders from the agreement replicas and answer the clients, and paused
//! standbys; clients accept a result only when f+1 of their app's execution replicas vouch
//! for it. The activator runs as a node too: the real policy, fed the agreement replicas'
//! `Wake` and `Faulty` alarms, thaws standbys (which then join from the stable checkpoint
//! and fetch verified buckets), destroys faulty replicas and starts fresh standbys in their
//! place, and pauses extra ones after a quiet period. Up to f execution replicas per app
//! turn faulty (mute, lying replies, lying state, crashed) and stay so: the platform must
//! heal itself by activation.
//!
//! A run has a safety phase, with faults, then a liveness phase on a healed network
//! (crashed replicas restarted; Byzantine replicas go on lying). After every step the
//! checker verifies: no two correct replicas order different batches at one sequence
//! number, or different requests at one app sequence number; each correct replica orders
//! gap-free; stable checkpoints agree; no correct replica sends a vote (pre-prepare,
//! prepare, commit, checkpoint) contradicting one it sent before, even across a restart;
//! execution replicas report equal replies digests and
//! equal state roots at equal sequence numbers (correct ones, woken standbys included);
//! a client accepts only what a correct replica ordered, with the result correct execution
//! replicas gave; every thaw and destroy the activator carries out is backed by f+1
//! matching alarms from distinct agreement replicas. At the end every client request must
//! be accepted.
//!
//! The parts: `world` holds the event queue and the run loop and dispatches each event to
//! the node it concerns; `network` is the faulty network between nodes; `nodes` the
//! simulated agreement replicas, execution replicas, clients and activator; `checker`
//! every safety check and the alarm ledger; `violation` what a failed run reports;
//! `report` what it prints of the world; `stats` what a run counted; `sweep` many seeds at
//! once.

pub mod backend;
pub mod byzantine;
mod checker;
mod network;
mod nodes;
mod report;
pub mod rng;
pub mod scenario;
mod stats;
mod sweep;
mod violation;
mod world;

pub use stats::SimStats;
pub use sweep::{ActivationSummary, sweep};
pub use violation::{
    BoundViolation, OrderShortage, ReportKind, SafetyViolation, Violation, VoteKind,
};

use rng::SimRng;
use scenario::Scenario;
use world::World;

/// Which run to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub f: usize,
}

/// The result of one seed: a violation, or none.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub f: usize,
    pub violation: Option<Violation>,
    pub stats: SimStats,
}

impl SimOutcome {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("zz sim --seed {} --f {}", self.seed, self.f)
    }
}

/// Run one seed. A panic inside a core (a broken assertion) is a violation too.
pub fn run(options: SimOptions) -> SimOutcome {
    let mut rng = SimRng::new(options.seed);
    let scenario = Scenario::generate(&mut rng, options.f);
    run_scenario(options.seed, scenario)
}

/// Run a given scenario; `seed` still decides delays, drops and every other draw. Tests
/// use this to pin a fault (a Byzantine primary, a crash) while the rest stays random.
pub fn run_scenario(seed: u64, scenario: Scenario) -> SimOutcome {
    let options = SimOptions {
        seed,
        f: scenario.params.f,
    };
    let result = std::panic::catch_unwind(move || {
        zz_protocol::crypto::remember_signature_checks(true);
        let mut world = World::new(options.seed, scenario);
        let violation = world.run().err();
        (violation, world.stats)
    });
    zz_protocol::crypto::remember_signature_checks(false);
    let (violation, stats) = match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            (Some(Violation::Panic { message }), SimStats::default())
        }
    };
    SimOutcome {
        seed: options.seed,
        f: options.f,
        violation,
        stats,
    }
}
