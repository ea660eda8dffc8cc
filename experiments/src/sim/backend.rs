//! The simulated activator backend. The real [`ActivatorDriver`] runs in the simulator
//! with it: every command completes at once and is recorded, and the world then carries
//! it out on the simulated execution replicas (and the checker checks it). Started
//! standbys become ready when the world says so, as a real backend reports them once
//! they have loaded.
//!
//! [`ActivatorDriver`]: zz_activator::driver::ActivatorDriver

use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use zz_activator::backend::{Backend, BackendError, Instance};
use zz_activator::policy::Command;
use zz_protocol::ExecutionId;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SimBackend {
    /// Commands carried out since the last [`SimBackend::take_log`], in order.
    log: Vec<Command>,
    /// Started standbys that finished loading, not yet reported.
    ready: Vec<ExecutionId>,
}

impl SimBackend {
    /// The commands carried out since the last call, in order.
    pub fn take_log(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.log)
    }

    /// A standby the world started has loaded: report it at the driver's next tick.
    pub fn standby_ready(&mut self, member: ExecutionId) {
        self.ready.push(member);
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn start(&mut self, member: ExecutionId, standby: bool) -> Result<(), BackendError> {
        // The world starts every replica of the configuration itself; only fresh standbys
        // come through here (in a destroyed one's place, or a restarted activator's
        // standbys). A restarted activator's active members run on: the simulator models
        // a backend that adopts them. The real backends do not restart an activator alone:
        // `zz up` starts the activator with the whole platform, its members stopped.
        if standby {
            self.log.push(Command::StartStandby(member));
        }
        Ok(())
    }

    async fn poll_started(&mut self) -> Vec<ExecutionId> {
        match self.ready.is_empty() {
            true => Vec::new(),
            false => vec![self.ready.remove(0)],
        }
    }

    async fn pause(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        self.log.push(Command::Pause(member));
        Ok(())
    }

    async fn thaw(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        self.log.push(Command::Thaw(member));
        Ok(())
    }

    async fn destroy(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        self.log.push(Command::Destroy(member));
        Ok(())
    }

    fn instances(&self) -> BTreeMap<ExecutionId, Instance> {
        BTreeMap::new()
    }
}

/// Run one of the activator driver's futures to its end. With the simulated backend none
/// ever waits, so one poll finishes it.
pub fn complete<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the simulated backend never waits"),
    }
}
