//! Simulated execution replicas: the real execution driver on the simulated bus, which a
//! planned fault can turn mute, lying or crashed, and the activator can pause, thaw,
//! destroy and start afresh. Each running driver gets its timeouts when it asks for them
//! ([`ExecutionDriver::poll_timeout`]), as in the node.

use super::super::network::SimBus;
use super::super::scenario::Scenario;
use super::super::violation::Violation;
use super::super::world::{Event, World};
use super::APPS;
use zz_cluster::Fault;
use zz_execution::{ExecutionConfig, ExecutionDriver, ExecutionReplica};
use zz_protocol::{AppId, Endpoint, ExecutionId, NodeId, RejectReason, Seq, Time};
use zz_state_fetch::{ObjectStore, StateParams};

/// Merkle buckets of a simulated app's state (small, so checkpoints stay cheap).
const SIM_BUCKET_BITS: u8 = 4;

pub(crate) struct SimExecution {
    pub(crate) app: AppId,
    pub(crate) endpoint: Endpoint,
    pub(crate) bus: SimBus,
    /// The app's other members: where buckets are fetched from.
    pub(crate) peers: Vec<ExecutionId>,
    /// None once destroyed, until a fresh standby is started in its place.
    pub(crate) driver: Option<ExecutionDriver<SimBus>>,
    /// A paused (frozen) replica handles nothing and sends nothing; frames to it are lost.
    pub(crate) paused: bool,
    /// A crashed replica stops for good (until destroyed and started afresh).
    pub(crate) crashed: bool,
    /// Bumped by every destroy: a fault or readiness for an old instance does not apply.
    pub(crate) instance: u64,
    /// The driver's timeout scheduled last, and its generation (a later one replaces it).
    pub(crate) timer: Option<(Time, u64)>,
    /// Generations handed out so far: only ever grows, so a stale event never matches.
    pub(crate) timer_generation: u64,
}

impl SimExecution {
    pub(crate) fn running(&self) -> bool {
        self.driver.is_some() && !self.paused && !self.crashed
    }

    /// Correct: running its honest driver (a fault changes only what it sends).
    pub(crate) fn correct(&self) -> bool {
        !self.crashed
            && self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.fault() == Fault::Honest)
    }

    pub(crate) fn faulty(&self) -> bool {
        self.crashed
            || self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.fault() != Fault::Honest)
    }
}

/// A fresh execution replica of `app` (empty state, sequence 0), as the clean image starts.
pub(crate) fn fresh_execution_driver(
    scenario: &Scenario,
    app: AppId,
    endpoint: Endpoint,
    bus: SimBus,
    peers: Vec<ExecutionId>,
) -> ExecutionDriver<SimBus> {
    let replica_count = scenario.params.replica_count();
    let config = ExecutionConfig::for_app(app, &scenario.params);
    let state = StateParams::new(SIM_BUCKET_BITS).expect("valid bucket bits");
    let program = zz_apps::app_by_name(APPS[app.0 as usize]).expect("known app");
    let replica = ExecutionReplica::new(config, program, ObjectStore::new(state), Seq(0));
    ExecutionDriver::new(replica, endpoint, bus, replica_count as u32).with_peers(peers)
}

/// Fetched buckets a driver refused because their proof failed.
pub(crate) fn bad_buckets(driver: &ExecutionDriver<SimBus>) -> u64 {
    driver
        .counters()
        .rejected
        .get(&RejectReason::BadBucket)
        .copied()
        .unwrap_or(0)
}

impl World {
    pub(crate) fn deliver_to_execution(
        &mut self,
        execution: ExecutionId,
        frame: &[u8],
    ) -> Result<(), Violation> {
        let sim = &mut self.executions[execution.0 as usize];
        if !sim.running() {
            // Frozen, crashed or destroyed: the frame is lost.
            return Ok(());
        }
        let driver = sim.driver.as_mut().expect("running");
        let missing_before = driver.replica().store().missing_count();
        driver.handle_frame(self.now, frame);
        let missing_after = driver.replica().store().missing_count();
        self.stats.buckets_fetched += missing_before.saturating_sub(missing_after) as u64;
        self.after_execution_step(execution)
    }

    /// The planned fault hits `execution` if `instance` still runs (and has not crashed).
    pub(crate) fn inject_execution_fault(
        &mut self,
        execution: ExecutionId,
        instance: u64,
        fault: Fault,
    ) {
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

    /// `execution`'s driver timeout, unless a later one replaced it or the replica is not
    /// running (frozen, crashed or destroyed: its time does not pass).
    pub(crate) fn execution_timer(
        &mut self,
        execution: ExecutionId,
        generation: u64,
    ) -> Result<(), Violation> {
        let sim = &mut self.executions[execution.0 as usize];
        if sim.timer.is_none_or(|(_, latest)| latest != generation) {
            return Ok(());
        }
        sim.timer = None;
        if !sim.running() {
            return Ok(());
        }
        sim.driver
            .as_mut()
            .expect("running")
            .handle_timeout(self.now);
        self.after_execution_step(execution)
    }

    /// Schedule `execution`'s next driver timeout, if it asks for a new one.
    pub(crate) fn reschedule_execution(&mut self, execution: ExecutionId) {
        let sim = &mut self.executions[execution.0 as usize];
        let Some(at) = sim.driver.as_ref().and_then(|driver| driver.poll_timeout()) else {
            return;
        };
        let at = at.max(self.now);
        if sim.timer.is_some_and(|(scheduled, _)| scheduled == at) {
            return;
        }
        sim.timer_generation += 1;
        let generation = sim.timer_generation;
        sim.timer = Some((at, generation));
        self.schedule(
            at,
            Event::ExecutionTimer {
                execution,
                generation,
            },
        );
    }

    /// Correct execution replicas (woken standbys included) must agree on every replies
    /// digest and every state root they report at equal sequence numbers, and on every
    /// result they reply to a client.
    pub(crate) fn after_execution_step(&mut self, id: ExecutionId) -> Result<(), Violation> {
        let sim = &mut self.executions[id.0 as usize];
        let app = sim.app;
        let correct = sim.correct();
        let Some(driver) = sim.driver.as_mut() else {
            return Ok(());
        };
        let reports = driver.take_reports();
        let frames = sim.bus.drain();
        if correct {
            self.checker.check_replies(id, &frames)?;
            (self.checker).check_reports(id, app, reports, &mut self.stats)?;
        }
        for (to, frame) in frames {
            self.route(NodeId::Execution(id), to, frame);
        }
        self.reschedule_execution(id);
        Ok(())
    }
}
