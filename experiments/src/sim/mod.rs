//! The deterministic simulator. One `u64` seed decides everything: protocol parameters,
//! message delays, drops, duplicates, partitions, crashes and restarts, and which replicas
//! are Byzantine and how they lie. Real agreement drivers (core, frame sealing and opening,
//! persistence) run on a virtual network with a virtual clock that jumps to the next event.
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
//! gap-free; stable checkpoints agree; execution replicas report equal replies digests and
//! equal state roots at equal sequence numbers (correct ones, woken standbys included);
//! a client accepts only what a correct replica ordered, with the result correct execution
//! replicas gave; every thaw and destroy the activator carries out is backed by f+1
//! matching alarms from distinct agreement replicas. At the end every client request must
//! be accepted.

pub mod activation;
pub mod byzantine;
pub mod rng;
pub mod scenario;

use activation::AlarmLedger;
use bytes::Bytes;
use byzantine::Byzantine;
use rng::SimRng;
use scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use zz_activator::policy::{Command, Member, MemberState, Policy, PolicyConfig};
use zz_agreement::core::DropReason;
use zz_agreement::io::storage::MemoryStorage;
use zz_agreement::liaison::membership::ExecutionGroups;
use zz_agreement::{Delivery, ReplicaDriver};
use zz_agreement::{Replica, ReplicaConfig};
use zz_client::{ClientCore, Destination};
use zz_cluster::Fault;
use zz_execution::{ExecOutput, ExecutionConfig, ExecutionDriver, ExecutionReplica};
use zz_protocol::bus::MessageBus;
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::envelope::peek_message;
use zz_protocol::messages::{Message, Request};
use zz_protocol::{
    AppId, ClientId, Digest, Endpoint, ExecutionId, NodeId, RejectReason, ReplicaId, Seq, Time,
};
use zz_state_fetch::{ObjectStore, StateParams};

/// Apps in every simulated cluster: app 0 runs kv, app 1 runs null; each has f+1
/// active execution replicas and the scenario's standbys.
const APPS: [&str; scenario::APP_COUNT as usize] = ["kv", "null"];
/// Merkle buckets of a simulated app's state (small, so checkpoints stay cheap).
const SIM_BUCKET_BITS: u8 = 4;

/// Events one run may process at most; more means something spins.
const EVENTS_MAX: u64 = 5_000_000;
/// Wall-clock milliseconds at virtual time zero (any fixed value works).
const WALL_CLOCK_AT_ZERO_MS: u64 = 1_800_000_000_000;
/// How often running execution replicas send bucket fetches (as the node does).
const FETCH_INTERVAL_MICROS: u64 = 10_000;
/// How long a bucket fetch waits before the next replica is asked (as the node does).
const FETCH_RETRY_MICROS: u64 = 200_000;
/// How often the activator's policy gets a tick.
const ACTIVATOR_TICK_MICROS: u64 = 50_000;

/// Which run to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub f: usize,
}

/// What happened in one run.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub events: u64,
    pub requests_accepted: u64,
    pub batches_ordered_max: u64,
    pub view_changes: u64,
    pub state_transfers: u64,
    pub frames_rejected: u64,
    pub frames_lost: u64,
    /// Messages the cores dropped after authentication (stale, duplicate, out of window..),
    /// by reason, summed over the replicas running at the end.
    pub messages_dropped: BTreeMap<DropReason, u64>,
    /// Frames of their cores' that Byzantine replicas rewrote, forged, withheld or sent
    /// with a replay.
    pub byzantine_frames_altered: u64,
    pub byzantine_replicas: usize,
    pub crashes: usize,
    /// Crashed replicas brought back from their persisted records.
    pub restarts: u64,
    /// Execution checkpoints (app, seq) whose roots the checker compared.
    pub execution_checkpoints: u64,
    /// Per-app orders from correct replicas that the checker compared.
    pub app_orders_checked: u64,
    pub end_micros: u64,
    /// Execution faults the scenario planned, and how many hit a running instance.
    pub execution_faults_planned: usize,
    pub execution_faults_injected: u64,
    /// Alarms the activator opened.
    pub wakes_received: u64,
    pub faulty_received: u64,
    /// Of those, alarms from correct agreement replicas.
    pub alarms_from_correct: u64,
    /// False alarms Byzantine agreement replicas sent the activator.
    pub false_alarms_sent: u64,
    /// Commands the activator carried out.
    pub standbys_woken: u64,
    pub replicas_destroyed: u64,
    /// Destroyed replicas that really were faulty (an injected fault or a crash).
    pub faulty_replaced: u64,
    pub standbys_started: u64,
    pub standbys_paused: u64,
    /// Buckets execution replicas installed (each verified against the pinned root).
    pub buckets_fetched: u64,
    /// Fetched buckets refused because their proof failed.
    pub bad_buckets: u64,
    /// Results accepted by clients that the checker compared with correct replicas' ones.
    pub results_checked: u64,
    /// Active members of each app at the end, in the activator's view.
    pub active_at_end: Vec<usize>,
}

/// The result of one seed: a violation, or none.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub f: usize,
    pub violation: Option<String>,
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
        let mut world = World::new(options.seed, scenario);
        let violation = world.run().err().map(|violation| {
            // A stalled app: say whether the agreement replicas lack an order (or a join
            // checkpoint) an execution replica needs.
            match world.order_shortage() {
                Some(shortage) if violation.starts_with("liveness") => {
                    format!("{violation}\n  orders: {shortage}")
                }
                _ => violation,
            }
        });
        (violation, world.stats)
    });
    let (violation, stats) = match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            (Some(format!("panic: {message}")), SimStats::default())
        }
    };
    SimOutcome {
        seed: options.seed,
        f: options.f,
        violation,
        stats,
    }
}

/// The simulator's implementation of the message bus: frames wait in an outbox until the
/// world routes them through the faulty network.
#[derive(Clone, Default)]
struct SimBus {
    outbox: Arc<Mutex<Vec<(NodeId, Bytes)>>>,
}

impl SimBus {
    fn drain(&self) -> Vec<(NodeId, Bytes)> {
        std::mem::take(&mut *self.outbox.lock().expect("sim outbox"))
    }
}

impl MessageBus for SimBus {
    fn send(&self, to: NodeId, frame: Bytes) {
        self.outbox.lock().expect("sim outbox").push((to, frame));
    }
    fn dropped_frames(&self) -> u64 {
        0
    }
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        frame: Bytes,
    },
    ReplicaTimer {
        replica: ReplicaId,
        generation: u64,
    },
    ClientTimer {
        client: ClientId,
        generation: u64,
    },
    Crash(ReplicaId),
    Restart(ReplicaId),
    Heal,
    /// The planned fault hits execution replica `execution` if `instance` still runs.
    ExecutionFault {
        execution: ExecutionId,
        instance: u64,
        fault: Fault,
    },
    /// The backend finished starting this instance as a standby.
    StandbyReady {
        execution: ExecutionId,
        instance: u64,
    },
    FetchTick,
    ActivatorTick,
}

struct SimReplica {
    config: ReplicaConfig,
    endpoint: Endpoint,
    bus: SimBus,
    driver: Option<ReplicaDriver<SimBus, MemoryStorage>>,
    /// Survives crashes, as a disk would.
    storage: MemoryStorage,
    byzantine: Option<Byzantine>,
    timer_generation: u64,
    last_delivered: Seq,
    /// The last order delivered per app; empty after a state transfer.
    last_app_delivered: BTreeMap<AppId, Seq>,
}

struct SimExecution {
    app: AppId,
    endpoint: Endpoint,
    bus: SimBus,
    /// The app's other members: where buckets are fetched from.
    peers: Vec<ExecutionId>,
    /// None once destroyed, until a fresh standby is started in its place.
    driver: Option<ExecutionDriver<SimBus>>,
    /// A paused (frozen) replica handles nothing and sends nothing; frames to it are lost.
    paused: bool,
    /// A crashed replica stops for good (until destroyed and started afresh).
    crashed: bool,
    /// Bumped by every destroy: a fault or readiness for an old instance does not apply.
    instance: u64,
}

impl SimExecution {
    fn running(&self) -> bool {
        self.driver.is_some() && !self.paused && !self.crashed
    }

    /// Correct: running its honest driver (a fault changes only what it sends).
    fn correct(&self) -> bool {
        !self.crashed
            && self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.fault() == Fault::Honest)
    }

    fn faulty(&self) -> bool {
        self.crashed
            || self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.fault() != Fault::Honest)
    }
}

/// The activator node: the real policy behind its endpoint, and the checker's ledger of
/// what reached it.
struct SimActivator {
    policy: Policy,
    endpoint: Endpoint,
    ledger: AlarmLedger,
    /// Members the policy holds active, as its commands said (the checker's own view).
    active: BTreeSet<ExecutionId>,
}

struct SimClient {
    core: ClientCore,
    endpoint: Endpoint,
    next_timestamp: u64,
    remaining: u64,
    next_submit_at: Option<Time>,
    timer_generation: u64,
}

struct World {
    scenario: Scenario,
    rng: SimRng,
    now: Time,
    queue: BTreeMap<(Time, u64), Event>,
    event_counter: u64,
    healed: bool,
    replicas: Vec<SimReplica>,
    executions: Vec<SimExecution>,
    /// Every configured member of each app, standbys included.
    groups: ExecutionGroups,
    /// The members active at epoch 0 (the first f+1 of each app).
    initial_active: ExecutionGroups,
    activator: SimActivator,
    /// (client, timestamp) -> the result correct execution replicas replied.
    correct_results: BTreeMap<(ClientId, u64), Vec<u8>>,
    /// Bad buckets counted by drivers since destroyed.
    bad_buckets_of_destroyed: u64,
    clients: Vec<SimClient>,
    /// (app, seq) -> replies digest the first execution replica reported.
    executed: BTreeMap<(AppId, Seq), Digest>,
    /// (app, seq) -> state root the first execution replica reported.
    execution_roots: BTreeMap<(AppId, Seq), Digest>,
    /// seq -> (digest, first correct replica that ordered it)
    committed: BTreeMap<Seq, (Digest, ReplicaId)>,
    /// (app, app seq) -> (order digest, first correct replica that ordered it)
    app_committed: BTreeMap<(AppId, Seq), (Digest, ReplicaId)>,
    /// (client, timestamp) ordered by some correct replica.
    ordered_requests: BTreeSet<(ClientId, u64)>,
    stable_digests: BTreeMap<Seq, Digest>,
    stats: SimStats,
}

impl World {
    fn new(seed: u64, scenario: Scenario) -> World {
        let mut rng = SimRng::new(seed).fork();
        let f = scenario.params.f;
        let active_size = f + 1;
        let group_size = (active_size + scenario.standbys_per_app) as u32;
        let execution_count = APPS.len() as u32 * group_size;
        let keys = zz_protocol::derived_keys::DerivedKeys::new(seed, &scenario.params)
            .with_executions(execution_count);
        let groups: ExecutionGroups = (0..APPS.len() as u32)
            .map(|app| {
                let members = (0..group_size)
                    .map(|i| ExecutionId(app * group_size + i))
                    .collect();
                (AppId(app), members)
            })
            .collect();
        let initial_active: ExecutionGroups = groups
            .iter()
            .map(|(app, members)| (*app, members[..active_size].to_vec()))
            .collect();
        let verifying = keys.verifying_keys();
        let replica_count = scenario.params.replica_count() as u32;
        let replicas = (0..replica_count)
            .map(ReplicaId)
            .map(|id| {
                let node_keys = keys.replica(id);
                let config = ReplicaConfig {
                    id,
                    params: scenario.params.clone(),
                    signing_key: node_keys.signing_key.clone().expect("replicas sign"),
                    wall_clock_at_zero_ms: WALL_CLOCK_AT_ZERO_MS,
                    seed: rng.next_u64(),
                };
                let endpoint = Endpoint::new(node_keys, verifying.clone(), scenario.params.clone());
                let byzantine = scenario.byzantine.get(&id).map(|behaviours| {
                    Byzantine::new(id, behaviours.clone(), endpoint.clone())
                        .with_groups(groups.clone())
                });
                SimReplica {
                    config,
                    endpoint,
                    bus: SimBus::default(),
                    driver: None,
                    storage: MemoryStorage::default(),
                    byzantine,
                    timer_generation: 0,
                    last_delivered: Seq(0),
                    last_app_delivered: BTreeMap::new(),
                }
            })
            .collect();
        let executions = groups
            .iter()
            .flat_map(|(app, members)| {
                (members.iter().enumerate()).map(move |(index, member)| (*app, index, *member))
            })
            .map(|(app, index, member)| {
                let bus = SimBus::default();
                let endpoint = keys.execution_endpoint(member);
                let peers: Vec<ExecutionId> = (groups[&app].iter().copied())
                    .filter(|peer| *peer != member)
                    .collect();
                let driver = fresh_execution_driver(
                    &scenario,
                    app,
                    endpoint.clone(),
                    bus.clone(),
                    peers.clone(),
                );
                SimExecution {
                    app,
                    endpoint,
                    bus,
                    peers,
                    driver: Some(driver),
                    // Standbys start loaded and paused.
                    paused: index >= active_size,
                    crashed: false,
                    instance: 0,
                }
            })
            .collect();
        let policy_config = PolicyConfig {
            f,
            replica_count: replica_count as usize,
            quiet_micros: scenario.quiet_micros,
            announce_micros: scenario.announce_micros,
            join_grace_micros: scenario.params.newcomer_grace_micros(),
        };
        let pools = groups
            .iter()
            .map(|(app, members)| {
                let members = (members.iter().enumerate())
                    .map(|(index, id)| Member {
                        id: *id,
                        // Fewer hosts than members, so that the policy's preference for a
                        // standby on a host no active member runs on matters.
                        host: format!("host{}", index % (active_size + 1)),
                        state: if index < active_size {
                            MemberState::Active
                        } else {
                            MemberState::Standby
                        },
                    })
                    .collect();
                (*app, members)
            })
            .collect();
        let activator = SimActivator {
            policy: Policy::new(policy_config, pools),
            endpoint: keys.activator_endpoint(),
            ledger: AlarmLedger::new(f),
            active: initial_active.values().flatten().copied().collect(),
        };
        let clients = (0..scenario.clients)
            .map(|client| SimClient {
                // Only an app's execution replicas vote on its results.
                core: ClientCore::new(
                    f,
                    scenario.client_retransmit_micros,
                    voters(replica_count as usize, &groups),
                ),
                endpoint: Endpoint::new(
                    keys.client(ClientId(client)),
                    verifying.clone(),
                    scenario.params.clone(),
                ),
                next_timestamp: 1,
                remaining: scenario.requests_per_client,
                next_submit_at: Some(Time(rng.range(0, 100_000))),
                timer_generation: 0,
            })
            .collect();
        let stats = SimStats {
            byzantine_replicas: scenario.byzantine.len(),
            crashes: scenario.crashes.len(),
            execution_faults_planned: scenario.execution_faults.len(),
            ..SimStats::default()
        };
        World {
            scenario,
            rng,
            now: Time(0),
            queue: BTreeMap::new(),
            event_counter: 0,
            healed: false,
            replicas,
            executions,
            groups,
            initial_active,
            activator,
            correct_results: BTreeMap::new(),
            bad_buckets_of_destroyed: 0,
            clients,
            executed: BTreeMap::new(),
            execution_roots: BTreeMap::new(),
            committed: BTreeMap::new(),
            app_committed: BTreeMap::new(),
            ordered_requests: BTreeSet::new(),
            stable_digests: BTreeMap::new(),
            stats,
        }
    }

    fn schedule(&mut self, at: Time, event: Event) {
        self.event_counter += 1;
        self.queue.insert((at, self.event_counter), event);
    }

    fn run(&mut self) -> Result<(), String> {
        for index in 0..self.replicas.len() {
            self.start_replica(ReplicaId(index as u32), None);
        }
        for client in 0..self.clients.len() {
            self.reschedule_client(ClientId(client as u64));
        }
        for (at, restart, replica) in self.scenario.crashes.clone() {
            self.schedule(Time(at), Event::Crash(replica));
            self.schedule(Time(restart), Event::Restart(replica));
        }
        self.schedule(Time(self.scenario.safety_micros), Event::Heal);
        for plan in self.scenario.execution_faults.clone() {
            let execution = self.groups[&plan.app][plan.member_index];
            let event = Event::ExecutionFault {
                execution,
                instance: 0,
                fault: plan.fault,
            };
            self.schedule(Time(plan.at_micros), event);
        }
        self.schedule(Time(FETCH_INTERVAL_MICROS), Event::FetchTick);
        self.schedule(Time(0), Event::ActivatorTick);
        let deadline = Time(self.scenario.safety_micros + self.scenario.liveness_micros);
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > deadline {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            if self.stats.events > EVENTS_MAX {
                return Err(format!("more than {EVENTS_MAX} events: something spins"));
            }
            self.step(event)?;
            if self.healed && self.clients_done() {
                break;
            }
        }
        self.stats.end_micros = self.now.0;
        self.finish()
    }

    fn clients_done(&self) -> bool {
        self.clients
            .iter()
            .all(|client| client.remaining == 0 && !client.core.is_busy())
    }

    /// The liveness check: after healing, every request of every client was accepted.
    fn finish(&mut self) -> Result<(), String> {
        for replica in &self.replicas {
            if let Some(driver) = &replica.driver {
                let counters = driver.replica().counters();
                self.stats.view_changes += counters.view_changes_started;
                self.stats.state_transfers += counters.state_transfers;
                self.stats.batches_ordered_max =
                    self.stats.batches_ordered_max.max(counters.batches_ordered);
                self.stats.frames_rejected += driver.counters().rejected.values().sum::<u64>();
                for (reason, count) in &counters.dropped {
                    *self.stats.messages_dropped.entry(*reason).or_default() += count;
                }
            }
        }
        for replica in &self.replicas {
            if let Some(byzantine) = &replica.byzantine {
                self.stats.false_alarms_sent += byzantine.false_alarms_sent;
            }
        }
        self.stats.bad_buckets = self.bad_buckets_of_destroyed
            + (self.executions.iter())
                .filter_map(|sim| sim.driver.as_ref())
                .map(bad_buckets)
                .sum::<u64>();
        self.stats.active_at_end = (self.activator.policy.status().values())
            .map(|pool| {
                (pool.members.iter())
                    .filter(|member| member.state == MemberState::Active)
                    .count()
            })
            .collect();
        for (index, client) in self.clients.iter().enumerate() {
            if client.remaining > 0 || client.core.is_busy() {
                return Err(format!(
                    "liveness: client c{index} still has {} requests to go (timestamp {} outstanding: {}) {:.1}s after healing\n{}\n{}",
                    client.remaining,
                    client.next_timestamp - 1,
                    client.core.is_busy(),
                    self.scenario.liveness_micros as f64 / 1e6,
                    self.describe_replicas(),
                    self.describe_executions()
                ));
            }
        }
        Ok(())
    }

    /// Why a stalled run's execution replica cannot go on, if the agreement replicas are
    /// the cause: an honest running one whose next order was routed, yet is retained by
    /// fewer than f+1 correct agreement replicas (so it can never get f+1 matching
    /// copies), or a joining one that fewer than f+1 of them name one checkpoint to.
    fn order_shortage(&self) -> Option<String> {
        let f = self.scenario.params.f;
        let correct: Vec<_> = (self.replicas.iter())
            .filter(|sim| sim.byzantine.is_none())
            .filter_map(|sim| sim.driver.as_ref())
            .collect();
        for (index, sim) in self.executions.iter().enumerate() {
            let Some(driver) = sim.driver.as_ref().filter(|_| sim.running()) else {
                continue;
            };
            if driver.fault() != Fault::Honest {
                continue;
            }
            if driver.is_joining() {
                // The same, seen at the join: no f+1 correct agreement replicas name one
                // checkpoint alike (they lack orders after theirs, or judged different ones
                // stable).
                let mut named: BTreeMap<_, usize> = BTreeMap::new();
                for d in &correct {
                    if let Some(checkpoint) = d.orders().join_checkpoint(sim.app) {
                        *named.entry(checkpoint).or_default() += 1;
                    }
                }
                let most = named.values().copied().max().unwrap_or(0);
                if most <= f {
                    return Some(format!(
                        "e{index} ({}) cannot join: at most {most} correct agreement replicas name one checkpoint alike",
                        sim.app
                    ));
                }
                continue;
            }
            let next = driver.replica().last_executed().next();
            let routed = correct.iter().map(|d| d.orders().routed(sim.app)).max();
            if routed.is_none_or(|routed| next > routed) {
                continue;
            }
            let holders = (correct.iter())
                .filter(|d| d.orders().retains(sim.app, next))
                .count();
            if holders <= f {
                return Some(format!(
                    "e{index} ({}) needs {next}, which only {holders} correct agreement replicas retain",
                    sim.app
                ));
            }
        }
        None
    }

    /// One line per replica, for violation reports.
    fn describe_replicas(&self) -> String {
        let mut lines = Vec::new();
        for (index, sim) in self.replicas.iter().enumerate() {
            let role = if sim.byzantine.is_some() {
                "byzantine"
            } else {
                "correct"
            };
            let line = match &sim.driver {
                None => format!("  r{index} ({role}): down"),
                Some(driver) => {
                    let replica = driver.replica();
                    let orders: Vec<String> = (0..scenario::APP_COUNT)
                        .map(AppId)
                        .map(|app| {
                            let router = driver.orders();
                            format!(
                                "{app} routed {} stable {:?} missing {:?} retained {}",
                                router.routed(app),
                                router.stable_checkpoint(app).map(|(seq, _)| seq),
                                router.highest_missing(app),
                                router.retained_count(app),
                            )
                        })
                        .collect();
                    format!(
                        "  r{index} ({role}): {} {}, executed {}, stable {}, orders [{}], waiting {}, dropped {:?}, rejected {:?}",
                        replica.view(),
                        if replica.is_normal() {
                            "normal"
                        } else {
                            "changing"
                        },
                        replica.last_executed(),
                        replica.stable_seq(),
                        orders.join("; "),
                        replica.waiting_count(),
                        replica.counters().dropped,
                        driver.counters().rejected,
                    )
                }
            };
            lines.push(line);
        }
        lines.join("\n")
    }

    /// One line per execution replica and per app's pool, for violation reports.
    fn describe_executions(&self) -> String {
        let mut lines = Vec::new();
        for (index, sim) in self.executions.iter().enumerate() {
            let run = match (&sim.driver, sim.crashed, sim.paused) {
                (None, _, _) => "destroyed",
                (Some(_), true, _) => "crashed",
                (Some(_), false, true) => "paused",
                (Some(_), false, false) => "running",
            };
            let line = match &sim.driver {
                None => format!("  e{index} ({}): {run}", sim.app),
                Some(driver) => format!(
                    "  e{index} ({}): {run}, {}, instance {}, executed {}, joining {}, missing buckets {}, dropped {:?}, rejected {:?}",
                    sim.app,
                    driver.fault().name(),
                    sim.instance,
                    driver.replica().last_executed(),
                    driver.is_joining(),
                    driver.replica().store().missing_count(),
                    driver.replica().counters().dropped,
                    driver.counters().rejected,
                ),
            };
            lines.push(line);
        }
        for (app, pool) in self.activator.policy.status() {
            let members: Vec<String> = (pool.members.iter())
                .map(|member| format!("{}:{:?}", member.id, member.state))
                .collect();
            lines.push(format!(
                "  activator {app}: epoch {}, {members:?}",
                pool.epoch
            ));
        }
        lines.extend(
            self.activator
                .policy
                .events()
                .map(|(at, event)| format!("  activator at {} ms: {event}", at.as_millis())),
        );
        lines.join("\n")
    }

    fn step(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver { from, to, frame } => match to {
                NodeId::Replica(replica) => {
                    let now = self.now;
                    let Some(driver) = self.replicas[replica.index()].driver.as_mut() else {
                        return Ok(());
                    };
                    driver.handle_frame(now, &frame);
                    self.after_replica_step(replica)?;
                }
                NodeId::Client(client) => self.deliver_to_client(from, client, &frame)?,
                NodeId::Execution(execution) => {
                    let sim = &mut self.executions[execution.0 as usize];
                    if !sim.running() {
                        // Frozen, crashed or destroyed: the frame is lost.
                        return Ok(());
                    }
                    let driver = sim.driver.as_mut().expect("running");
                    let missing_before = driver.replica().store().missing_count();
                    driver.handle_frame(&frame);
                    let missing_after = driver.replica().store().missing_count();
                    self.stats.buckets_fetched +=
                        missing_before.saturating_sub(missing_after) as u64;
                    self.after_execution_step(execution)?;
                }
                NodeId::Activator(_) => self.deliver_to_activator(&frame)?,
            },
            Event::ReplicaTimer {
                replica,
                generation,
            } => {
                let now = self.now;
                let sim = &mut self.replicas[replica.index()];
                if sim.timer_generation == generation
                    && let Some(driver) = sim.driver.as_mut()
                {
                    driver.handle_timeout(now);
                    self.after_replica_step(replica)?;
                }
            }
            Event::ClientTimer { client, generation } => {
                if self.clients[client.0 as usize].timer_generation == generation {
                    self.client_timer(client);
                }
            }
            Event::Crash(replica) => {
                if !self.healed {
                    let sim = &mut self.replicas[replica.index()];
                    if let Some(driver) = sim.driver.take() {
                        sim.storage = driver.storage().clone();
                        sim.bus.drain();
                    }
                }
            }
            Event::Restart(replica) => self.restart(replica),
            Event::ExecutionFault {
                execution,
                instance,
                fault,
            } => {
                let sim = &mut self.executions[execution.0 as usize];
                if sim.instance == instance
                    && !sim.crashed
                    && let Some(driver) = sim.driver.as_mut()
                {
                    self.stats.execution_faults_injected += 1;
                    match fault {
                        Fault::Crash => {
                            sim.crashed = true;
                            sim.bus.drain();
                        }
                        fault => driver.set_fault(fault),
                    }
                }
            }
            Event::StandbyReady {
                execution,
                instance,
            } => {
                let sim = &self.executions[execution.0 as usize];
                if sim.instance == instance && sim.driver.is_some() {
                    let app = sim.app;
                    self.activator.policy.handle_ready(self.now, app, execution);
                    self.carry_out_commands()?;
                }
            }
            Event::FetchTick => {
                let now = self.now;
                for index in 0..self.executions.len() {
                    let sim = &mut self.executions[index];
                    if !sim.running() {
                        continue;
                    }
                    let driver = sim.driver.as_mut().expect("running");
                    driver.fetch_buckets(now, FETCH_RETRY_MICROS);
                    self.after_execution_step(ExecutionId(index as u32))?;
                }
                let next = now.saturating_add_micros(FETCH_INTERVAL_MICROS);
                self.schedule(next, Event::FetchTick);
            }
            Event::ActivatorTick => {
                self.activator.policy.handle_tick(self.now);
                self.carry_out_commands()?;
                let next = self.now.saturating_add_micros(ACTIVATOR_TICK_MICROS);
                self.schedule(next, Event::ActivatorTick);
            }
            Event::Heal => {
                self.healed = true;
                for index in 0..self.replicas.len() {
                    self.restart(ReplicaId(index as u32));
                }
            }
        }
        Ok(())
    }

    /// An alarm for the activator: recorded in the checker's ledger, then fed to the policy,
    /// whose commands are carried out.
    fn deliver_to_activator(&mut self, frame: &[u8]) -> Result<(), String> {
        let now = self.now;
        let activator = &mut self.activator;
        let Ok(verified) = activator.endpoint.open(frame) else {
            return Ok(());
        };
        let epoch_of = |policy: &Policy, app: AppId| policy.status().get(&app).map(|s| s.epoch);
        if let NodeId::Replica(from) = verified.from()
            && self.replicas[from.index()].byzantine.is_none()
            && matches!(verified.message(), Message::Wake(_) | Message::Faulty(_))
        {
            self.stats.alarms_from_correct += 1;
        }
        match verified.into_parts() {
            (NodeId::Replica(from), Message::Wake(wake)) => {
                self.stats.wakes_received += 1;
                let epoch = epoch_of(&activator.policy, wake.app);
                activator.ledger.record_wake(from, &wake, epoch);
                activator.policy.handle_wake(now, from, wake);
            }
            (NodeId::Replica(from), Message::Faulty(faulty)) => {
                self.stats.faulty_received += 1;
                let epoch = epoch_of(&activator.policy, faulty.app);
                let member_active = activator.active.contains(&faulty.member)
                    && self
                        .groups
                        .get(&faulty.app)
                        .is_some_and(|g| g.contains(&faulty.member));
                (activator.ledger).record_faulty(from, &faulty, epoch, member_active);
                activator.policy.handle_faulty(now, from, faulty);
            }
            _ => return Ok(()),
        }
        self.carry_out_commands()
    }

    /// The simulated backend: carry out the policy's commands, in order, once the checker
    /// has seen that each thaw and destroy has an f+1 quorum of alarms behind it.
    fn carry_out_commands(&mut self) -> Result<(), String> {
        let commands = self.activator.policy.take_commands();
        let executions = &self.executions;
        (self.activator.ledger)
            .check_commands(&commands, |member| executions[member.0 as usize].app)?;
        for command in commands {
            match command {
                Command::Thaw(member) => {
                    self.stats.standbys_woken += 1;
                    self.activator.active.insert(member);
                    let sim = &mut self.executions[member.0 as usize];
                    sim.paused = false;
                    // What SIGUSR1 does in the node: join from the stable checkpoint.
                    if sim.running() {
                        sim.driver.as_mut().expect("running").join();
                        self.after_execution_step(member)?;
                    }
                }
                Command::Pause(member) => {
                    self.stats.standbys_paused += 1;
                    self.activator.active.remove(&member);
                    self.executions[member.0 as usize].paused = true;
                }
                Command::Destroy(member) => {
                    self.stats.replicas_destroyed += 1;
                    self.activator.active.remove(&member);
                    let sim = &mut self.executions[member.0 as usize];
                    if sim.faulty() {
                        self.stats.faulty_replaced += 1;
                    }
                    if let Some(driver) = sim.driver.take() {
                        self.bad_buckets_of_destroyed += bad_buckets(&driver);
                    }
                    sim.bus.drain();
                    sim.paused = true;
                    sim.crashed = false;
                    sim.instance += 1;
                }
                Command::StartStandby(member) => {
                    self.stats.standbys_started += 1;
                    let sim = &mut self.executions[member.0 as usize];
                    // A fresh instance from the clean image: empty state, sequence 0.
                    sim.driver = Some(fresh_execution_driver(
                        &self.scenario,
                        sim.app,
                        sim.endpoint.clone(),
                        sim.bus.clone(),
                        sim.peers.clone(),
                    ));
                    sim.paused = true;
                    sim.crashed = false;
                    let event = Event::StandbyReady {
                        execution: member,
                        instance: sim.instance,
                    };
                    let (low, high) = self.scenario.standby_start_micros;
                    let at = self.now.saturating_add_micros(self.rng.range(low, high));
                    self.schedule(at, event);
                }
                Command::Announce(membership) => {
                    let message = Message::Membership(membership);
                    let replica_count = self.scenario.params.replica_count() as u32;
                    for replica in (0..replica_count).map(ReplicaId) {
                        let to = NodeId::Replica(replica);
                        if let Some(frame) = self.activator.endpoint.seal(to, &message) {
                            let from = NodeId::Activator(LOCAL_ACTIVATOR);
                            self.route(from, to, Bytes::from(frame));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn restart(&mut self, replica: ReplicaId) {
        if self.replicas[replica.index()].driver.is_none() {
            self.stats.restarts += 1;
            let records = self.replicas[replica.index()].storage.records.clone();
            self.start_replica(replica, Some(records));
        }
    }

    fn start_replica(
        &mut self,
        id: ReplicaId,
        records: Option<Vec<zz_agreement::core::persist::Record>>,
    ) {
        let now = self.now;
        let sim = &mut self.replicas[id.index()];
        let replica = match &records {
            Some(records) => Replica::restore(sim.config.clone(), records.clone(), now),
            None => Replica::new(sim.config.clone(), now),
        };
        let records = records.unwrap_or_default();
        sim.last_delivered = replica.last_executed();
        sim.last_app_delivered.clear();
        let storage = std::mem::take(&mut sim.storage);
        sim.driver = Some(
            ReplicaDriver::new(replica, sim.endpoint.clone(), sim.bus.clone(), storage)
                .with_execution_groups(self.groups.clone(), self.initial_active.clone())
                .with_restored_orders(&records),
        );
        self.reschedule_replica(id);
    }

    fn reschedule_replica(&mut self, id: ReplicaId) {
        let sim = &mut self.replicas[id.index()];
        let Some(deadline) = sim.driver.as_ref().and_then(|driver| driver.poll_timeout()) else {
            return;
        };
        sim.timer_generation += 1;
        let generation = sim.timer_generation;
        let at = deadline.max(self.now);
        self.schedule(
            at,
            Event::ReplicaTimer {
                replica: id,
                generation,
            },
        );
    }

    fn is_correct(&self, replica: ReplicaId) -> bool {
        self.replicas[replica.index()].byzantine.is_none()
    }

    fn after_replica_step(&mut self, id: ReplicaId) -> Result<(), String> {
        let correct = self.is_correct(id);
        let sim = &mut self.replicas[id.index()];
        let driver = sim.driver.as_mut().expect("a running replica");
        driver.replica().assert_bounds();
        driver
            .orders()
            .assert_bounds(driver.replica().params().replica_count());
        let deliveries = driver.take_deliveries();
        let stable = driver.replica().stable_checkpoint();
        let frames = sim.bus.drain();
        if correct {
            for delivery in deliveries {
                self.check_delivery(id, delivery)?;
            }
            self.check_stable(id, stable)?;
        }
        for (to, frame) in frames {
            self.route(NodeId::Replica(id), to, frame);
        }
        self.reschedule_replica(id);
        Ok(())
    }

    /// Correct execution replicas (woken standbys included) must agree on every replies
    /// digest and every state root they report at equal sequence numbers, and on every
    /// result they reply to a client.
    fn after_execution_step(&mut self, id: ExecutionId) -> Result<(), String> {
        let sim = &mut self.executions[id.0 as usize];
        let app = sim.app;
        let correct = sim.correct();
        let Some(driver) = sim.driver.as_mut() else {
            return Ok(());
        };
        let reports = driver.take_reports();
        let frames = sim.bus.drain();
        if !correct {
            for (to, frame) in frames {
                self.route(NodeId::Execution(id), to, frame);
            }
            return Ok(());
        }
        for (to, frame) in &frames {
            if let NodeId::Client(client) = to
                && let Some(Message::Reply(reply)) = peek_message(frame)
            {
                match self.correct_results.get(&(*client, reply.timestamp)) {
                    Some(result) if *result != reply.result => {
                        return Err(format!(
                            "execution: correct {id} replied to {client}'s request {} with \
                             another result than a correct replica before it",
                            reply.timestamp
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.correct_results
                            .insert((*client, reply.timestamp), reply.result);
                    }
                }
            }
        }
        for report in reports {
            let (table, seq, digest, what) = match report {
                ExecOutput::Executed(executed) => (
                    &mut self.executed,
                    executed.seq,
                    executed.replies,
                    "replies",
                ),
                ExecOutput::Checkpoint(checkpoint) => (
                    &mut self.execution_roots,
                    checkpoint.seq,
                    checkpoint.root,
                    "state roots",
                ),
                ExecOutput::Reply(_) | ExecOutput::NeedBucket(_) => continue,
            };
            match table.get(&(app, seq)) {
                Some(existing) if *existing != digest => {
                    return Err(format!(
                        "execution: {id} reports different {what} at {seq} of {app}"
                    ));
                }
                Some(_) => {}
                None => {
                    table.insert((app, seq), digest);
                    if what == "state roots" {
                        self.stats.execution_checkpoints += 1;
                    }
                }
            }
        }
        for (to, frame) in frames {
            self.route(NodeId::Execution(id), to, frame);
        }
        Ok(())
    }

    /// Safety: ordered batches agree across correct replicas, and each orders gap-free.
    fn check_delivery(&mut self, id: ReplicaId, delivery: Delivery) -> Result<(), String> {
        let sim = &mut self.replicas[id.index()];
        match delivery {
            Delivery::Skipped(to) => {
                sim.last_delivered = sim.last_delivered.max(to);
                // The per-app sequences jumped too, to numbers the state transfer carried.
                sim.last_app_delivered.clear();
            }
            Delivery::AppOrder(order) => {
                if let Some(last) = sim.last_app_delivered.get(&order.app)
                    && order.seq != last.next()
                {
                    return Err(format!(
                        "gap: {id} ordered {} of {} after {last}",
                        order.seq, order.app
                    ));
                }
                sim.last_app_delivered.insert(order.app, order.seq);
                self.stats.app_orders_checked += 1;
                let digest = order.digest();
                match self.app_committed.get(&(order.app, order.seq)) {
                    Some((existing, first)) if *existing != digest => {
                        return Err(format!(
                            "safety: {first} and {id} ordered different requests at {} of {}",
                            order.seq, order.app
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.app_committed
                            .insert((order.app, order.seq), (digest, id));
                    }
                }
            }
            Delivery::Order(order) => {
                if order.seq != sim.last_delivered.next() {
                    return Err(format!(
                        "gap: {id} ordered {} after {}",
                        order.seq, sim.last_delivered
                    ));
                }
                sim.last_delivered = order.seq;
                let digest = order.batch.digest();
                match self.committed.get(&order.seq) {
                    Some((existing, first)) if *existing != digest => {
                        return Err(format!(
                            "safety: {first} and {id} ordered different batches at {}",
                            order.seq
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(order.seq, (digest, id));
                    }
                }
                for request in &order.batch.requests {
                    let request = &request.request;
                    self.ordered_requests
                        .insert((request.client, request.timestamp));
                }
            }
        }
        Ok(())
    }

    fn check_stable(&mut self, id: ReplicaId, (seq, digest): (Seq, Digest)) -> Result<(), String> {
        match self.stable_digests.get(&seq) {
            Some(existing) if *existing != digest => Err(format!(
                "safety: {id} holds stable checkpoint {seq} with a digest other replicas do not"
            )),
            Some(_) => Ok(()),
            None => {
                self.stable_digests.insert(seq, digest);
                Ok(())
            }
        }
    }

    fn partitioned(&self, from: NodeId, to: NodeId) -> bool {
        let now = self.now.0;
        self.scenario
            .partitions
            .iter()
            .filter(|(start, end, _)| *start <= now && now < *end)
            .any(|(_, _, isolated)| {
                let side =
                    |node: NodeId| matches!(node, NodeId::Replica(r) if isolated.contains(&r));
                side(from) != side(to)
            })
    }

    /// The faulty network: Byzantine rewriting, partitions, drops, delays, duplicates.
    fn route(&mut self, from: NodeId, to: NodeId, frame: Bytes) {
        let frames = match from {
            NodeId::Replica(replica) => match self.replicas[replica.index()].byzantine.as_mut() {
                Some(byzantine) => {
                    let honest = (to, frame.clone());
                    let sent = byzantine.mutate(&mut self.rng, to, frame);
                    if sent.len() != 1 || sent[0] != honest {
                        self.stats.byzantine_frames_altered += 1;
                    }
                    sent
                }
                None => vec![(to, frame)],
            },
            NodeId::Client(_) | NodeId::Execution(_) | NodeId::Activator(_) => vec![(to, frame)],
        };
        for (to, frame) in frames {
            if !self.healed
                && (self.partitioned(from, to) || self.rng.chance(self.scenario.drop_per_mille))
            {
                self.stats.frames_lost += 1;
                continue;
            }
            let copies = if !self.healed && self.rng.chance(self.scenario.duplicate_per_mille) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.range(
                    self.scenario.delay_min_micros,
                    self.scenario.delay_max_micros,
                );
                let at = self.now.saturating_add_micros(delay);
                let frame = frame.clone();
                self.schedule(at, Event::Deliver { from, to, frame });
            }
        }
    }

    fn deliver_to_client(
        &mut self,
        from: NodeId,
        id: ClientId,
        frame: &[u8],
    ) -> Result<(), String> {
        let client = &mut self.clients[id.0 as usize];
        let Ok(verified) = client.endpoint.open(frame) else {
            return Ok(());
        };
        let (replier, Message::Reply(reply)) = verified.into_parts() else {
            return Ok(());
        };
        debug_assert_eq!(from, replier);
        if let Some(accepted) = client.core.handle_reply(replier, reply) {
            if !self.ordered_requests.contains(&(id, accepted.timestamp)) {
                return Err(format!(
                    "client {id} accepted timestamp {} that no correct replica ordered",
                    accepted.timestamp
                ));
            }
            // f+1 voted for it, so a correct execution replica sent it: it must be the
            // result correct replicas gave.
            if self.correct_results.get(&(id, accepted.timestamp)) != Some(&accepted.result) {
                return Err(format!(
                    "client {id} accepted a result for timestamp {} that no correct execution \
                     replica gave",
                    accepted.timestamp
                ));
            }
            self.stats.results_checked += 1;
            self.stats.requests_accepted += 1;
            let think = self.rng.range(0, 50_000);
            let client = &mut self.clients[id.0 as usize];
            if client.remaining > 0 {
                client.next_submit_at = Some(self.now.saturating_add_micros(think));
            }
        }
        self.reschedule_client(id);
        Ok(())
    }

    fn client_timer(&mut self, id: ClientId) {
        let now = self.now;
        let client = &mut self.clients[id.0 as usize];
        if let Some(at) = client.next_submit_at
            && now >= at
            && !client.core.is_busy()
            && client.remaining > 0
        {
            client.next_submit_at = None;
            client.remaining -= 1;
            let app = client_app(id);
            let timestamp = client.next_timestamp;
            let request = Request {
                app,
                client: id,
                timestamp,
                op: client_op(app, id, timestamp),
            };
            client.next_timestamp += 1;
            let request = client.endpoint.authenticate_request(request);
            client.core.submit(now, request);
        }
        client.core.handle_timeout(now);
        self.flush_client(id);
        self.reschedule_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        let client = &mut self.clients[id.0 as usize];
        let mut frames = Vec::new();
        let replica_count = self.scenario.params.replica_count() as u32;
        for (destination, request) in client.core.poll_send() {
            let targets: Vec<ReplicaId> = match destination {
                Destination::Replica(replica) => vec![replica],
                Destination::AllReplicas => (0..replica_count).map(ReplicaId).collect(),
            };
            // A retransmission also asks the app's execution replicas, which answer it
            // from their reply caches if they executed it already.
            let retransmission = targets.len() > 1;
            let executions: Vec<NodeId> = if retransmission {
                self.groups[&request.request.app]
                    .iter()
                    .map(|member| NodeId::Execution(*member))
                    .collect()
            } else {
                Vec::new()
            };
            let message = Message::Request(request);
            let destinations = targets.into_iter().map(NodeId::Replica).chain(executions);
            for to in destinations {
                if let Some(frame) = client.endpoint.seal(to, &message) {
                    frames.push((to, Bytes::from(frame)));
                }
            }
        }
        for (to, frame) in frames {
            self.route(NodeId::Client(id), to, frame);
        }
    }

    fn reschedule_client(&mut self, id: ClientId) {
        let client = &mut self.clients[id.0 as usize];
        let deadline = [client.next_submit_at, client.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = deadline {
            client.timer_generation += 1;
            let generation = client.timer_generation;
            let at = at.max(self.now);
            self.schedule(
                at,
                Event::ClientTimer {
                    client: id,
                    generation,
                },
            );
        }
    }
}

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
    pub standbys_woken: u64,
    pub replicas_destroyed: u64,
    pub faulty_replaced: u64,
    pub buckets_fetched: u64,
    pub bad_buckets: u64,
    pub results_checked: u64,
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
            standbys_woken: sum(&|s| s.standbys_woken),
            replicas_destroyed: sum(&|s| s.replicas_destroyed),
            faulty_replaced: sum(&|s| s.faulty_replaced),
            buckets_fetched: sum(&|s| s.buckets_fetched),
            bad_buckets: sum(&|s| s.bad_buckets),
            results_checked: sum(&|s| s.results_checked),
        }
    }
}

impl std::fmt::Display for ActivationSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "of {} seeds: {} with execution faults, {} woke standbys ({} thaws), {} destroyed \
             replicas ({}; {} seeds replaced a faulty one, {} replicas), {} paused extras, \
             {} fetched buckets ({}), {} refused bad buckets ({}), {} had false alarms; \
             {} client results checked",
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

/// A fresh execution replica of `app` (empty state, sequence 0), as the clean image starts.
fn fresh_execution_driver(
    scenario: &Scenario,
    app: AppId,
    endpoint: Endpoint,
    bus: SimBus,
    peers: Vec<ExecutionId>,
) -> ExecutionDriver<SimBus> {
    let replica_count = scenario.params.replica_count();
    let config = ExecutionConfig {
        app,
        f: scenario.params.f,
        agreement_replicas: replica_count,
        checkpoint_interval: scenario.params.checkpoint_interval,
        window: scenario.params.window * 4,
    };
    let state = StateParams::new(SIM_BUCKET_BITS).expect("valid bucket bits");
    let program = zz_apps::app_by_name(APPS[app.0 as usize]).expect("known app");
    let replica = ExecutionReplica::new(config, program, ObjectStore::new(state), Seq(0));
    ExecutionDriver::new(replica, endpoint, bus, replica_count as u32).with_peers(peers)
}

/// Fetched buckets a driver refused because their proof failed.
fn bad_buckets(driver: &ExecutionDriver<SimBus>) -> u64 {
    driver
        .counters()
        .rejected
        .get(&RejectReason::BadBucket)
        .copied()
        .unwrap_or(0)
}

/// Agreement replicas vote for nothing here: every app has execution replicas.
fn voters(replica_count: usize, groups: &ExecutionGroups) -> zz_client::Voters {
    zz_client::Voters {
        groups: groups
            .iter()
            .map(|(app, members)| {
                (
                    *app,
                    members.iter().map(|m| NodeId::Execution(*m)).collect(),
                )
            })
            .collect(),
        ..zz_client::Voters::agreement_only(replica_count)
    }
}

/// Which app a simulated client uses: both apps get traffic.
fn client_app(client: ClientId) -> AppId {
    AppId((client.0 % APPS.len() as u64) as u32)
}

/// A deterministic operation for `app`: kv clients write and read a few shared keys, so
/// results depend on the order of execution; null clients send a small payload.
fn client_op(app: AppId, client: ClientId, timestamp: u64) -> Vec<u8> {
    match APPS[app.0 as usize] {
        "kv" => {
            let key = format!("k{}", (client.0 + timestamp) % 3).into_bytes();
            let op = if timestamp.is_multiple_of(3) {
                zz_apps::kv::Op::Get { key }
            } else {
                zz_apps::kv::Op::Put {
                    key,
                    value: timestamp.to_le_bytes().to_vec(),
                }
            };
            zz_apps::kv::encode_op(&op)
        }
        _ => timestamp.to_le_bytes().to_vec(),
    }
}
