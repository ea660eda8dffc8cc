//! Simulated execution replicas: the real execution driver on the simulated bus, which a
//! planned fault can turn mute, lying or crashed, and the activator can pause, thaw,
//! destroy and start afresh. Running ones fetch missing buckets on a fixed tick, as the
//! node does.

use super::super::network::SimBus;
use super::super::scenario::{InjectedFault, Scenario};
use super::super::violation::Violation;
use super::super::world::{Event, World};
use super::APPS;
use zz_execution::{ExecutionConfig, ExecutionDriver, ExecutionFault, ExecutionReplica};
use zz_protocol::{AppId, Endpoint, ExecutionId, NodeId, Seq};
use zz_state_fetch::{ObjectStore, StateParams};

/// Merkle buckets of a simulated app's state (small, so checkpoints stay cheap).
const SIM_BUCKET_BITS: u8 = 4;
/// How often running execution replicas send bucket fetches (as the node does).
pub(crate) const FETCH_INTERVAL_MICROS: u64 = 10_000;
/// How long a bucket fetch waits before the next replica is asked (as the node does).
const FETCH_RETRY_MICROS: u64 = 200_000;

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
                .is_some_and(|driver| driver.fault() == ExecutionFault::Honest)
    }

    pub(crate) fn faulty(&self) -> bool {
        self.crashed
            || self
                .driver
                .as_ref()
                .is_some_and(|driver| driver.fault() != ExecutionFault::Honest)
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
pub(crate) fn bad_buckets(driver: &ExecutionDriver<SimBus>) -> u64 {
    driver
        .counters()
        .rejected
        .get("bad-bucket")
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
        driver.handle_frame(frame);
        let missing_after = driver.replica().store().missing_count();
        self.stats.buckets_fetched += missing_before.saturating_sub(missing_after) as u64;
        self.after_execution_step(execution)
    }

    /// The planned fault hits `execution` if `instance` still runs (and has not crashed).
    pub(crate) fn inject_execution_fault(
        &mut self,
        execution: ExecutionId,
        instance: u64,
        fault: InjectedFault,
    ) {
        let sim = &mut self.executions[execution.0 as usize];
        if sim.instance == instance
            && !sim.crashed
            && let Some(driver) = sim.driver.as_mut()
        {
            self.stats.execution_faults_injected += 1;
            match fault {
                InjectedFault::Crash => {
                    sim.crashed = true;
                    sim.bus.drain();
                }
                InjectedFault::Misbehave(fault) => driver.set_fault(fault),
            }
        }
    }

    /// The execution fetch tick: every running execution replica sends the bucket
    /// fetches it is due, then the next tick is scheduled.
    pub(crate) fn fetch_tick(&mut self) -> Result<(), Violation> {
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
        Ok(())
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
        Ok(())
    }
}
