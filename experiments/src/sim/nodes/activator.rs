//! The activator as a simulated node: the real [`ActivatorDriver`] (policy, endpoint, bus)
//! with the simulated backend, fed the agreement replicas' `Wake` and `Faulty` alarms,
//! its timeouts and the backend's readiness reports, as the node feeds it. What the
//! backend was asked to do (thaw, pause, destroy, start a standby) the world then carries
//! out on the simulated execution replicas. The checker's alarm ledger sees every alarm
//! the driver handed its policy and every command the backend carried out.
//!
//! The world starts every configured replica itself (actives running, standbys loaded
//! and paused), so the driver's `start_members` is not called here.

use super::super::backend::{SimBackend, complete};
use super::super::network::SimBus;
use super::super::scenario::Scenario;
use super::super::violation::Violation;
use super::super::world::{Event, World};
use super::executions::bad_buckets;
use super::{APPS, fresh_execution_driver};
use std::collections::BTreeSet;
use zz_activator::driver::{ActivatorDriver, ActivatorSetup, Alarm};
use zz_activator::policy::{Command, Member, MemberState, PolicyConfig, PoolsRecord};
use zz_activator::pools_file::{PoolStore, PoolsFileError};
use zz_agreement::liaison::membership::ExecutionGroups;
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::{AppId, Endpoint, ExecutionId, NodeId};

/// The activator node: the real driver behind its endpoint, on its own bus, saving its
/// record to a store that survives its crashes.
pub(crate) struct SimActivator {
    pub(crate) driver: ActivatorDriver<SimBus, SimBackend, SimPoolStore>,
    bus: SimBus,
    /// Members the policy holds active, as its commands said (the checker's own view).
    active: BTreeSet<ExecutionId>,
    /// What a restart builds the driver from again.
    setup: ActivatorSetup,
    endpoint: Endpoint,
    store: SimPoolStore,
    /// Crashed and not restarted yet: frames to it are lost, its timer stopped.
    pub(crate) down: bool,
    /// Its timer chain; a restart starts a new one.
    pub(crate) timer_generation: u64,
}

/// The activator's record as last saved (synced at once, as the pools file is).
#[derive(Clone, Default)]
pub(crate) struct SimPoolStore(std::rc::Rc<std::cell::RefCell<Option<PoolsRecord>>>);

impl PoolStore for SimPoolStore {
    fn save(&mut self, record: &PoolsRecord) -> Result<(), PoolsFileError> {
        *self.0.borrow_mut() = Some(record.clone());
        Ok(())
    }
}

impl SimActivator {
    /// The driver over every app's pool: its first f+1 members active, the rest standbys.
    pub(crate) fn new(
        scenario: &Scenario,
        groups: &ExecutionGroups,
        initial_active: &ExecutionGroups,
        endpoint: Endpoint,
        wall_clock_at_zero_ms: u64,
    ) -> SimActivator {
        let f = scenario.params.f;
        let active_size = f + 1;
        let policy = PolicyConfig {
            f,
            replica_count: scenario.params.replica_count(),
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
        let app_names = (0..APPS.len() as u32)
            .map(|app| (AppId(app), APPS[app as usize].to_string()))
            .collect();
        let setup = ActivatorSetup {
            policy,
            pools,
            app_names,
            wall_clock_at_zero_ms,
        };
        let bus = SimBus::default();
        let store = SimPoolStore::default();
        let driver = ActivatorDriver::new(
            setup.clone(),
            endpoint.clone(),
            bus.clone(),
            SimBackend::default(),
        )
        .with_pool_store(store.clone());
        SimActivator {
            driver,
            bus,
            active: initial_active.values().flatten().copied().collect(),
            setup,
            endpoint,
            store,
            down: false,
            timer_generation: 0,
        }
    }
}

impl World {
    /// The backend finished starting `execution` as a standby: the driver hears of it at
    /// its next timeout, if that instance still exists.
    pub(crate) fn standby_ready(&mut self, execution: ExecutionId, instance: u64) {
        let sim = &self.executions[execution.0 as usize];
        if sim.instance == instance && sim.driver.is_some() {
            self.activator.driver.backend_mut().standby_ready(execution);
        }
    }

    /// The driver's timeout, then the next one is scheduled.
    pub(crate) fn activator_timeout(&mut self, generation: u64) -> Result<(), Violation> {
        if self.activator.down || generation != self.activator.timer_generation {
            return Ok(());
        }
        complete(self.activator.driver.handle_timeout(self.now));
        self.carry_out_commands()?;
        let next = self.activator.driver.poll_timeout().max(self.now);
        self.schedule(next, Event::ActivatorTimer { generation });
        Ok(())
    }

    /// The instance in `member`'s slot goes (its bad buckets counted), frames for it with
    /// it; the slot holds nothing running until a fresh instance is started in it.
    fn retire_instance(&mut self, member: ExecutionId) {
        let sim = &mut self.executions[member.0 as usize];
        if let Some(driver) = sim.driver.take() {
            self.bad_buckets_of_destroyed += bad_buckets(&driver);
        }
        sim.bus.drain();
        sim.paused = true;
        sim.crashed = false;
        sim.instance += 1;
    }

    /// The activator process dies: what it held in memory (alarms, timers, pending
    /// announcements) is gone; its saved record stays.
    pub(crate) fn crash_activator(&mut self) {
        self.activator.down = true;
        self.activator.bus.drain();
        self.stats.activator_restarts += 1;
    }

    /// The activator comes back from its saved record as the node does (epochs, who is
    /// active, who was woken), its standbys started afresh (each replaces the paused
    /// instance in its slot). Unlike the node, which starts only with the whole platform,
    /// it comes back while the rest runs on: its active members are adopted as they run.
    pub(crate) fn restart_activator(&mut self) -> Result<(), Violation> {
        let activator = &mut self.activator;
        let mut driver = ActivatorDriver::new(
            activator.setup.clone(),
            activator.endpoint.clone(),
            activator.bus.clone(),
            SimBackend::default(),
        )
        .with_pool_store(activator.store.clone());
        let record = activator.store.0.borrow().clone();
        if let Some(record) = &record {
            (driver.restore(record)).expect("the record was saved for this configuration");
        }
        let restarted_standbys: Vec<ExecutionId> = (driver.policy().status().into_values())
            .flat_map(|pool| pool.members)
            .filter(|member| member.state == MemberState::Starting)
            .map(|member| member.id)
            .collect();
        activator.driver = driver;
        activator.down = false;
        activator.timer_generation += 1;
        for member in restarted_standbys {
            // The old instance goes; the backend's start puts a fresh one in its place.
            self.retire_instance(member);
        }
        let now = self.now;
        complete(self.activator.driver.start_members(|| now));
        self.carry_out_commands()?;
        let generation = self.activator.timer_generation;
        self.schedule(now, Event::ActivatorTimer { generation });
        Ok(())
    }

    /// A frame for the activator: an alarm the driver hands its policy is recorded in the
    /// checker's ledger (with the epoch its app was at), then the commands are carried out.
    pub(crate) fn deliver_to_activator(&mut self, frame: &[u8]) -> Result<(), Violation> {
        if self.activator.down {
            return Ok(());
        }
        let Some(received) = self.activator.driver.handle_frame(self.now, frame) else {
            return Ok(());
        };
        if self.replicas[received.from.index()].byzantine.is_none() {
            self.stats.alarms_from_correct += 1;
        }
        match received.alarm {
            Alarm::Wake(wake) => {
                self.stats.wakes_received += 1;
                (self.checker.ledger).record_wake(received.from, &wake, received.epoch)?;
            }
            Alarm::Faulty(faulty) => {
                self.stats.faulty_received += 1;
                let member_active = self.activator.active.contains(&faulty.member)
                    && (self.groups.get(&faulty.app)).is_some_and(|g| g.contains(&faulty.member));
                (self.checker.ledger).record_faulty(
                    received.from,
                    &faulty,
                    received.epoch,
                    member_active,
                )?;
            }
        }
        self.carry_out_commands()
    }

    /// The driver carries out the policy's commands through the simulated backend; the
    /// checker checks that each thaw and destroy had an f+1 quorum of alarms behind it,
    /// and the world does what each command says to the simulated replicas. The
    /// membership notices the driver sent go out on the network.
    fn carry_out_commands(&mut self) -> Result<(), Violation> {
        let now = self.now;
        complete(self.activator.driver.carry_out(|| now));
        let commands = self.activator.driver.backend_mut().take_log();
        let executions = &self.executions;
        (self.checker.ledger)
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
                        sim.driver.as_mut().expect("running").join(now);
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
                    self.retire_instance(member);
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
                Command::Announce(_) => unreachable!("announcements go out on the bus"),
            }
        }
        let from = NodeId::Activator(LOCAL_ACTIVATOR);
        for (to, frame) in self.activator.bus.drain() {
            self.route(from, to, frame);
        }
        Ok(())
    }
}
