//! The activator as a simulated node: the real sans-IO [`Policy`] behind an activator
//! endpoint, fed the agreement replicas' `Wake` and `Faulty` alarms, a tick and the
//! backend's readiness reports, and a simulated backend that carries out its commands
//! (thaw, pause, destroy, start a standby, announce a membership). The checker's alarm
//! ledger sees every alarm that reached it and every command before it is carried out.

use super::super::scenario::Scenario;
use super::super::violation::Violation;
use super::super::world::{Event, World};
use super::executions::bad_buckets;
use super::fresh_execution_driver;
use bytes::Bytes;
use std::collections::BTreeSet;
use zz_activator::policy::{Command, Member, MemberState, Policy, PolicyConfig};
use zz_agreement::orders::ExecutionGroups;
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::messages::Message;
use zz_protocol::{AppId, Endpoint, ExecutionId, NodeId, ReplicaId};

/// How often the activator's policy gets a tick.
const ACTIVATOR_TICK_MICROS: u64 = 50_000;

/// The activator node: the real policy behind its endpoint.
pub(crate) struct SimActivator {
    pub(crate) policy: Policy,
    endpoint: Endpoint,
    /// Members the policy holds active, as its commands said (the checker's own view).
    active: BTreeSet<ExecutionId>,
}

impl SimActivator {
    /// The policy over every app's pool: its first f+1 members active, the rest standbys.
    pub(crate) fn new(
        scenario: &Scenario,
        groups: &ExecutionGroups,
        initial_active: &ExecutionGroups,
        endpoint: Endpoint,
    ) -> SimActivator {
        let f = scenario.params.f;
        let active_size = f + 1;
        let policy_config = PolicyConfig {
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
        SimActivator {
            policy: Policy::new(policy_config, pools),
            endpoint,
            active: initial_active.values().flatten().copied().collect(),
        }
    }
}

impl World {
    /// The backend finished starting `execution` as a standby: the policy hears of it if
    /// that instance still exists.
    pub(crate) fn standby_ready(
        &mut self,
        execution: ExecutionId,
        instance: u64,
    ) -> Result<(), Violation> {
        let sim = &self.executions[execution.0 as usize];
        if sim.instance == instance && sim.driver.is_some() {
            let app = sim.app;
            self.activator.policy.handle_ready(self.now, app, execution);
            self.carry_out_commands()?;
        }
        Ok(())
    }

    /// The policy's tick, then the next one is scheduled.
    pub(crate) fn activator_tick(&mut self) -> Result<(), Violation> {
        self.activator.policy.handle_tick(self.now);
        self.carry_out_commands()?;
        let next = self.now.saturating_add_micros(ACTIVATOR_TICK_MICROS);
        self.schedule(next, Event::ActivatorTick);
        Ok(())
    }

    /// An alarm for the activator: recorded in the checker's ledger, then fed to the policy,
    /// whose commands are carried out.
    pub(crate) fn deliver_to_activator(&mut self, frame: &[u8]) -> Result<(), Violation> {
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
                (self.checker.ledger).record_wake(from, &wake, epoch)?;
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
                (self.checker.ledger).record_faulty(from, &faulty, epoch, member_active)?;
                activator.policy.handle_faulty(now, from, faulty);
            }
            _ => return Ok(()),
        }
        self.carry_out_commands()
    }

    /// The simulated backend: carry out the policy's commands, in order, once the checker
    /// has seen that each thaw and destroy has an f+1 quorum of alarms behind it.
    fn carry_out_commands(&mut self) -> Result<(), Violation> {
        let commands = self.activator.policy.take_commands();
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
}
