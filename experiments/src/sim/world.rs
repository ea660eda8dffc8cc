//! The world of one run: every simulated node, the virtual clock and the event queue.
//! The run loop pops the earliest event, jumps the clock to it and dispatches it to the
//! node it concerns; the nodes' handlers (in `nodes`) route what the node sends
//! and let the checker see what it did. The run ends when the liveness phase is over, or
//! once the network has healed and every client is done.

use super::byzantine::Byzantine;
use super::checker::Checker;
use super::network::SimBus;
use super::nodes::{
    APPS, SimActivator, SimByzantineClient, SimClient, SimExecution, SimReplica, bad_buckets,
    fresh_execution_driver, voters,
};
use super::rng::SimRng;
use super::scenario::Scenario;
use super::stats::SimStats;
use super::violation::{BoundViolation, Violation};
use bytes::Bytes;
use std::collections::BTreeMap;
use zz_activator::policy::MemberState;
use zz_agreement::ReplicaConfig;
use zz_agreement::io::storage::MemoryStorage;
use zz_agreement::liaison::membership::ExecutionGroups;
use zz_client::ClientCore;
use zz_cluster::Fault;
use zz_protocol::{AppId, ClientId, Endpoint, ExecutionId, NodeId, ReplicaId, Time};

/// Events one run may process at most; more means something spins.
const EVENTS_MAX: u64 = 5_000_000;
/// Wall-clock milliseconds at virtual time zero (any fixed value works).
const WALL_CLOCK_AT_ZERO_MS: u64 = 1_800_000_000_000;

#[derive(Debug)]
pub(crate) enum Event {
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
    /// Sync the replica's records and send what it held for them, if `generation` is still
    /// its latest.
    ReplicaSync {
        replica: ReplicaId,
        generation: u64,
    },
    Crash(ReplicaId),
    Restart(ReplicaId),
    /// The Byzantine client's next attack.
    ByzantineClientTimer,
    /// Every agreement replica crashes at once, or restarts.
    CrashCluster,
    RestartCluster,
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
    /// An execution replica's driver timeout, if `generation` is still its latest.
    ExecutionTimer {
        execution: ExecutionId,
        generation: u64,
    },
    ActivatorTimer {
        generation: u64,
    },
    /// The activator crashes, or restarts from its saved record.
    CrashActivator,
    RestartActivator,
}

pub(crate) struct World {
    pub(crate) scenario: Scenario,
    pub(crate) rng: SimRng,
    /// When replicas sync their records: a stream of its own, so that the other draws keep
    /// their order whatever the syncs do.
    pub(crate) sync_rng: SimRng,
    pub(crate) now: Time,
    queue: BTreeMap<(Time, u64), Event>,
    event_counter: u64,
    pub(crate) healed: bool,
    pub(crate) replicas: Vec<SimReplica>,
    pub(crate) executions: Vec<SimExecution>,
    /// Every configured member of each app, standbys included.
    pub(crate) groups: ExecutionGroups,
    /// The members active at epoch 0 (the first f+1 of each app).
    pub(crate) initial_active: ExecutionGroups,
    pub(crate) activator: SimActivator,
    pub(crate) checker: Checker,
    /// Bad buckets counted by drivers since destroyed.
    pub(crate) bad_buckets_of_destroyed: u64,
    pub(crate) clients: Vec<SimClient>,
    /// The scenario's Byzantine client, if it has one.
    pub(crate) byzantine_client: Option<SimByzantineClient>,
    /// The last frame a correct client sent, for the Byzantine client to replay.
    pub(crate) last_client_frame: Option<(NodeId, NodeId, Bytes)>,
    pub(crate) stats: SimStats,
}

impl World {
    pub(crate) fn new(seed: u64, scenario: Scenario) -> World {
        let mut rng = SimRng::new(seed).fork();
        let f = scenario.params.f;
        let active_size = f + 1;
        let group_size = (active_size + scenario.standbys_per_app) as u32;
        let execution_count = APPS.len() as u32 * group_size;
        let keys = zz_protocol::derived_keys::DerivedKeys::new(seed, &scenario.params)
            .with_executions(execution_count)
            // The Byzantine client's id is provisioned too; the one after it is not.
            .with_clients(scenario.clients + 1);
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
                let endpoint = Endpoint::new(node_keys, verifying.clone(), scenario.params.clone())
                    .with_client_verifying_keys(keys.client_verifying_keys())
                    .with_clients_provisioned(scenario.clients + 1)
                    .with_apps_hosted((0..APPS.len() as u32).map(AppId));
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
                    sync_scheduled: false,
                    sync_generation: 0,
                    crash_when_unsynced: false,
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
                    timer: None,
                    timer_generation: 0,
                }
            })
            .collect();
        let activator = SimActivator::new(
            &scenario,
            &groups,
            &initial_active,
            keys.activator_endpoint(),
            WALL_CLOCK_AT_ZERO_MS,
        );
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
        let byzantine_client = (scenario.byzantine_client_every_micros).map(|every_micros| {
            let endpoint = |id: u64| {
                Endpoint::new(
                    keys.client(ClientId(id)),
                    verifying.clone(),
                    scenario.params.clone(),
                )
            };
            SimByzantineClient {
                endpoint: endpoint(scenario.clients),
                unprovisioned: endpoint(scenario.clients + 1),
                every_micros,
                next_timestamp: 0,
                sent: Default::default(),
            }
        });
        let stats = SimStats {
            byzantine_replicas: scenario.byzantine.len(),
            large_requests: scenario.large_requests,
            crashes: scenario.crashes.len(),
            execution_faults_planned: scenario.execution_faults.len(),
            ..SimStats::default()
        };
        World {
            checker: Checker::new(f, replica_count as usize),
            scenario,
            rng,
            sync_rng: SimRng::new(!seed).fork(),
            now: Time(0),
            queue: BTreeMap::new(),
            event_counter: 0,
            healed: false,
            replicas,
            executions,
            groups,
            initial_active,
            activator,
            bad_buckets_of_destroyed: 0,
            clients,
            byzantine_client,
            last_client_frame: None,
            stats,
        }
    }

    pub(crate) fn schedule(&mut self, at: Time, event: Event) {
        self.event_counter += 1;
        self.queue.insert((at, self.event_counter), event);
    }

    /// The run loop: plan the scenario's events, then step through the queue until the
    /// liveness phase ends, and check liveness.
    pub(crate) fn run(&mut self) -> Result<(), Violation> {
        for index in 0..self.replicas.len() {
            self.start_replica(ReplicaId(index as u32), None)?;
        }
        for client in 0..self.clients.len() {
            self.reschedule_client(ClientId(client as u64));
        }
        for (at, restart, replica) in self.scenario.crashes.clone() {
            self.schedule(Time(at), Event::Crash(replica));
            self.schedule(Time(restart), Event::Restart(replica));
        }
        if let Some((at, restart)) = self.scenario.cluster_crash {
            self.schedule(Time(at), Event::CrashCluster);
            self.schedule(Time(restart), Event::RestartCluster);
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
        for index in 0..self.executions.len() {
            self.reschedule_execution(ExecutionId(index as u32));
        }
        self.schedule(Time(0), Event::ActivatorTimer { generation: 0 });
        if let Some((at, restart)) = self.scenario.activator_restart {
            self.schedule(Time(at), Event::CrashActivator);
            self.schedule(Time(restart), Event::RestartActivator);
        }
        if let Some(attacker) = &self.byzantine_client {
            // The first attack comes one interval after the start.
            self.schedule(Time(attacker.every_micros), Event::ByzantineClientTimer);
        }
        let deadline = Time(self.scenario.safety_micros + self.scenario.liveness_micros);
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > deadline {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            if self.stats.events > EVENTS_MAX {
                return Err(BoundViolation::Events { limit: EVENTS_MAX }.into());
            }
            self.step(event)?;
            if self.healed && self.clients_done() {
                break;
            }
        }
        self.stats.end_micros = self.now.0;
        self.finish()
    }

    /// Step dispatch: hand one event to the node it concerns.
    fn step(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Deliver { from, to, frame } => match to {
                NodeId::Replica(replica) => self.deliver_to_replica(replica, &frame)?,
                NodeId::Client(client) => self.deliver_to_client(from, client, &frame)?,
                NodeId::Execution(execution) => self.deliver_to_execution(execution, &frame)?,
                NodeId::Activator(_) => self.deliver_to_activator(&frame)?,
            },
            Event::ReplicaTimer {
                replica,
                generation,
            } => self.replica_timer(replica, generation)?,
            Event::ClientTimer { client, generation } => self.client_timer(client, generation),
            Event::ReplicaSync {
                replica,
                generation,
            } => self.replica_sync(replica, generation)?,
            Event::Crash(replica) => self.planned_crash(replica),
            Event::Restart(replica) => self.restart(replica)?,
            Event::ByzantineClientTimer => self.byzantine_client_timer(),
            Event::CrashCluster => {
                if !self.healed {
                    self.stats.cluster_crashes += 1;
                }
                for index in 0..self.replicas.len() {
                    self.crash(ReplicaId(index as u32));
                }
            }
            Event::RestartCluster => {
                for index in 0..self.replicas.len() {
                    self.restart(ReplicaId(index as u32))?;
                }
            }
            Event::ExecutionFault {
                execution,
                instance,
                fault,
            } => self.inject_execution_fault(execution, instance, fault),
            Event::StandbyReady {
                execution,
                instance,
            } => self.standby_ready(execution, instance),
            Event::ExecutionTimer {
                execution,
                generation,
            } => self.execution_timer(execution, generation)?,
            Event::ActivatorTimer { generation } => self.activator_timeout(generation)?,
            Event::CrashActivator => self.crash_activator(),
            Event::RestartActivator => self.restart_activator()?,
            Event::Heal => {
                self.healed = true;
                for index in 0..self.replicas.len() {
                    self.restart(ReplicaId(index as u32))?;
                }
            }
        }
        Ok(())
    }

    fn clients_done(&self) -> bool {
        self.clients
            .iter()
            .all(|client| client.remaining == 0 && !client.core.is_busy())
    }

    /// Gather the end-of-run counters, then the liveness check: after healing, every
    /// request of every client was accepted.
    fn finish(&mut self) -> Result<(), Violation> {
        self.stats.byzantine_client_attacks = self.byzantine_client_attacks();
        for replica in &self.replicas {
            if let Some(driver) = &replica.driver {
                let counters = driver.replica().counters();
                self.stats.view_changes += counters.view_changes_started;
                self.stats.state_transfers += counters.state_transfers;
                self.stats.proposals_fetched += counters.proposals_fetched;
                self.stats.fetch_answers_withheld += counters.fetch_answers_withheld;
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
        self.stats.active_at_end = (self.activator.driver.policy().status().values())
            .map(|pool| {
                (pool.members.iter())
                    .filter(|member| member.state == MemberState::Active)
                    .count()
            })
            .collect();
        for (index, client) in self.clients.iter().enumerate() {
            if client.remaining > 0 || client.core.is_busy() {
                return Err(Violation::Liveness {
                    client: ClientId(index as u64),
                    requests_left: client.remaining,
                    last_timestamp: client.next_timestamp - 1,
                    outstanding: client.core.is_busy(),
                    liveness_micros: self.scenario.liveness_micros,
                    replicas: self.describe_replicas(),
                    executions: self.describe_executions(),
                    // A stalled app: whether the agreement replicas lack an order (or a
                    // join checkpoint) an execution replica needs.
                    shortage: self.order_shortage(),
                });
            }
        }
        Ok(())
    }
}
