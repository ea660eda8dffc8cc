//! The deterministic simulator. One `u64` seed decides everything: protocol parameters,
//! message delays, drops, duplicates, partitions, crashes and restarts, and which replicas
//! are Byzantine and how they lie. Real agreement drivers (core, frame sealing and opening,
//! persistence) run on a virtual network with a virtual clock that jumps to the next event.
//!
//! Each cluster hosts two apps (kv and null), each with f+1 execution replicas that get
//! their app's orders from the agreement replicas and answer the clients; clients accept a
//! result only when f+1 of their app's execution replicas vouch for it.
//!
//! A run has a safety phase, with faults, then a liveness phase on a healed network
//! (crashed replicas restarted; Byzantine replicas go on lying). After every step the
//! checker verifies: no two correct replicas order different batches at one sequence
//! number, or different requests at one app sequence number; each correct replica orders
//! gap-free; stable checkpoints agree; execution replicas report equal replies digests and
//! equal state roots at equal sequence numbers; a client accepts only what a correct
//! replica ordered. At the end every client request must be accepted.

pub mod byzantine;
pub mod rng;
pub mod scenario;

use bytes::Bytes;
use byzantine::Byzantine;
use rng::SimRng;
use scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use zz_agreement::driver::{Delivery, ReplicaDriver};
use zz_agreement::orders::ExecutionGroups;
use zz_agreement::storage::MemoryStorage;
use zz_agreement::{Replica, ReplicaConfig};
use zz_client::{ClientCore, Destination};
use zz_execution::{ExecOutput, ExecutionConfig, ExecutionDriver, ExecutionReplica};
use zz_protocol::bus::MessageBus;
use zz_protocol::messages::{Message, Request};
use zz_protocol::{AppId, ClientId, Digest, Endpoint, ExecutionId, NodeId, ReplicaId, Seq, Time};
use zz_state_fetch::{ObjectStore, StateParams};

/// Apps in every simulated cluster: app 0 runs kv, app 1 runs null; each has f+1
/// execution replicas.
const APPS: [&str; 2] = ["kv", "null"];
/// Merkle buckets of a simulated app's state (small, so checkpoints stay cheap).
const SIM_BUCKET_BITS: u8 = 4;

/// Events one run may process at most; more means something spins.
const EVENTS_MAX: u64 = 5_000_000;
/// Wall-clock milliseconds at virtual time zero (any fixed value works).
const WALL_CLOCK_AT_ZERO_MS: u64 = 1_800_000_000_000;

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
    pub messages_dropped: BTreeMap<&'static str, u64>,
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
        let violation = world.run().err();
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
    bus: SimBus,
    driver: ExecutionDriver<SimBus>,
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
    groups: ExecutionGroups,
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
        let group_size = (f + 1) as u32;
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
                let byzantine = scenario
                    .byzantine
                    .get(&id)
                    .map(|behaviours| Byzantine::new(id, behaviours.clone(), endpoint.clone()));
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
            .flat_map(|(app, members)| members.iter().map(move |member| (*app, *member)))
            .map(|(app, member)| {
                let config = ExecutionConfig {
                    app,
                    f,
                    agreement_replicas: replica_count as usize,
                    checkpoint_interval: scenario.params.checkpoint_interval,
                    window: scenario.params.window * 4,
                };
                let state = StateParams::new(SIM_BUCKET_BITS).expect("valid bucket bits");
                let program = zz_apps::app_by_name(APPS[app.0 as usize]).expect("known app");
                let replica =
                    ExecutionReplica::new(config, program, ObjectStore::new(state), Seq(0));
                let bus = SimBus::default();
                let endpoint = keys.execution_endpoint(member);
                let driver = ExecutionDriver::new(replica, endpoint, bus.clone(), replica_count);
                SimExecution { app, bus, driver }
            })
            .collect();
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
                    *self.stats.messages_dropped.entry(reason).or_default() += count;
                }
            }
        }
        for (index, client) in self.clients.iter().enumerate() {
            if client.remaining > 0 || client.core.is_busy() {
                return Err(format!(
                    "liveness: client c{index} still has {} requests to go (timestamp {} outstanding: {}) {:.1}s after healing\n{}",
                    client.remaining,
                    client.next_timestamp - 1,
                    client.core.is_busy(),
                    self.scenario.liveness_micros as f64 / 1e6,
                    self.describe_replicas()
                ));
            }
        }
        Ok(())
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
                    format!(
                        "  r{index} ({role}): {} {}, executed {}, stable {}, waiting {}, dropped {:?}, rejected {:?}",
                        replica.view(),
                        if replica.is_normal() {
                            "normal"
                        } else {
                            "changing"
                        },
                        replica.last_executed(),
                        replica.stable_seq(),
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
                    self.executions[execution.0 as usize]
                        .driver
                        .handle_frame(&frame);
                    self.after_execution_step(execution)?;
                }
                // The simulator runs no activator yet: alarms for it are dropped.
                NodeId::Activator(_) => {}
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
            Event::Heal => {
                self.healed = true;
                for index in 0..self.replicas.len() {
                    self.restart(ReplicaId(index as u32));
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
        records: Option<Vec<zz_agreement::persist::Record>>,
    ) {
        let now = self.now;
        let sim = &mut self.replicas[id.index()];
        let replica = match records {
            Some(records) => Replica::restore(sim.config.clone(), records, now),
            None => Replica::new(sim.config.clone(), now),
        };
        sim.last_delivered = replica.last_executed();
        sim.last_app_delivered.clear();
        let storage = std::mem::take(&mut sim.storage);
        sim.driver = Some(
            ReplicaDriver::new(replica, sim.endpoint.clone(), sim.bus.clone(), storage)
                .with_execution_groups(self.groups.clone(), self.groups.clone()),
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

    /// Execution replicas (all correct here) must agree on every replies digest and every
    /// state root they report at equal sequence numbers.
    fn after_execution_step(&mut self, id: ExecutionId) -> Result<(), String> {
        let sim = &mut self.executions[id.0 as usize];
        let app = sim.app;
        let reports = sim.driver.take_reports();
        let frames = sim.bus.drain();
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
