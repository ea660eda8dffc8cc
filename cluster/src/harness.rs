//! The node harness: the loop every node kind (agreement replica, execution replica,
//! activator) runs in, so that each kind is only its driver and what it shows. The harness
//! owns what they share: the clock, the QUIC bus (with the fault bus around it), a budget
//! of frames per turn, the driver's timeout, `zz inject`'s faults (read from the node's
//! fault file on SIGUSR2 and at every status tick), the status file, and shutdown.
//!
//! Calling protocol: [`Harness::new`], then [`Harness::start_bus`] (or
//! [`Harness::start_plain_bus`]) to build the node's driver around the bus, then
//! [`Harness::run`] with the node, its inbox and an optional side channel of inputs only
//! that kind has (a wake signal, control requests).

use crate::dir::ClusterDir;
use crate::fault::{Fault, fault_signal};
use crate::fault_bus::{FaultSwitch, FaultyBus};
use crate::status_file::{unix_ms, write_json};
use serde::Serialize;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zz_protocol::bus::Inbox;
use zz_protocol::config::{ClusterConfig, ConfigError};
use zz_protocol::quic::{QuicBus, QuicError};
use zz_protocol::{NodeId, Time};

/// Frames handled in one go before the node looks at its timers again.
pub const FRAMES_PER_TURN_MAX: usize = 256;
/// Frames handled in one go, at most, while the node holds output back until its turn
/// ends (records waiting for their group commit): every held frame waits for the rest of
/// the turn, so a long turn adds its length to every hop of the protocol.
pub const FRAMES_PER_HOLDING_TURN_MAX: usize = 16;
/// How often a node rewrites its status file (and rereads its fault file).
pub const STATUS_FILE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a node with no timeout sleeps before it looks again.
const IDLE_WAKE_UP: Duration = Duration::from_secs(1);

/// Why a node could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A node kind's own start-up problem (its key file, its records, its place in the
    /// configuration), as that kind types it.
    #[error(transparent)]
    Start(Box<dyn std::error::Error + Send + Sync>),
}

impl NodeError {
    /// A node kind's own start-up problem.
    pub fn start(error: impl std::error::Error + Send + Sync + 'static) -> NodeError {
        NodeError::Start(Box::new(error))
    }

    /// An I/O error about `path` (a file, or what was being set up).
    pub fn io(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> NodeError {
        move |source| NodeError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// What the harness tells a node writing its status.
#[derive(Clone, Copy, Debug)]
pub struct StatusContext {
    pub pid: u32,
    pub unix_ms: u64,
    /// The fault the node shows (honest unless `zz inject` said otherwise).
    pub fault: Fault,
}

impl StatusContext {
    /// The fault's name, or None when honest (how status files show it).
    pub fn fault_name(&self) -> Option<String> {
        (self.fault != Fault::Honest).then(|| self.fault.name().to_string())
    }
}

/// One node kind, as the harness drives it. Every method but the async ones returns at
/// once; the async ones wait only on the node's own I/O (the activator's backend).
#[allow(async_fn_in_trait)]
pub trait NodeLoop {
    /// What its status file holds.
    type Status: Serialize;
    /// Inputs only this kind has, from its side channel.
    type Side;

    fn handle_frame(&mut self, now: Time, frame: &[u8]);
    fn poll_timeout(&self) -> Option<Time>;
    async fn handle_timeout(&mut self, now: Time);
    fn handle_side(&mut self, now: Time, input: Self::Side) {
        let _ = (now, input);
    }
    /// A fault `zz inject` asked for, once it changed (the bus already shows mute and slow).
    fn handle_fault(&mut self, fault: Fault) {
        let _ = fault;
    }
    /// Whether the node holds output back until the end of the turn (so the turn should
    /// not grow past [`FRAMES_PER_HOLDING_TURN_MAX`] frames).
    fn holds_output(&self) -> bool {
        false
    }
    /// After every turn: carry out what the turn's inputs asked for.
    async fn end_turn(&mut self, now: Time) {
        let _ = now;
    }
    fn status(&self, context: &StatusContext) -> Self::Status;
}

/// See the module documentation.
pub struct Harness {
    dir: ClusterDir,
    node: NodeId,
    started: Instant,
    started_unix_ms: u64,
    switch: Option<FaultSwitch>,
}

impl Harness {
    /// A harness for `node` of the cluster in `dir`; installs the crypto provider.
    pub fn new(dir: &Path, node: NodeId) -> Result<Harness, NodeError> {
        zz_protocol::quic::install_crypto_provider();
        let dir = ClusterDir::new(dir);
        Ok(Harness {
            dir,
            node,
            started: Instant::now(),
            started_unix_ms: unix_ms(),
            switch: None,
        })
    }

    pub fn dir(&self) -> &ClusterDir {
        &self.dir
    }

    /// The time since the node started.
    pub fn now(&self) -> Time {
        Time(self.started.elapsed().as_micros() as u64)
    }

    /// A clock for drivers that time their own work.
    pub fn clock(&self) -> impl Fn() -> Time + Copy + use<> {
        let started = self.started;
        move || Time(started.elapsed().as_micros() as u64)
    }

    /// Wall-clock milliseconds at [`Time`] zero.
    pub fn wall_clock_at_zero_ms(&self) -> u64 {
        self.started_unix_ms
    }

    /// The node's QUIC bus, inside a fault bus that shows `zz inject`'s mute and slow.
    pub fn start_bus(
        &mut self,
        cluster: &ClusterConfig,
    ) -> Result<(FaultyBus<QuicBus>, Inbox), NodeError> {
        let (bus, inbox) = self.start_plain_bus(cluster)?;
        let bus = FaultyBus::new(bus);
        self.switch = Some(bus.switch());
        Ok((bus, inbox))
    }

    /// The node's QUIC bus, for a node that shows no bus faults (the activator).
    pub fn start_plain_bus(&self, cluster: &ClusterConfig) -> Result<(QuicBus, Inbox), NodeError> {
        Ok(QuicBus::start_node(self.dir.path(), cluster, self.node)?)
    }

    /// Run `node` until `shutdown` completes or the inbox closes; its status file is
    /// written a last time on the way out.
    pub async fn run<N: NodeLoop>(
        self,
        node: &mut N,
        mut inbox: Inbox,
        mut side: Option<mpsc::Receiver<N::Side>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        // `zz inject` sends SIGUSR2 after writing the fault file, so the fault shows at once.
        let mut injected = fault_signal().map_err(NodeError::io("SIGUSR2 handler"))?;
        let mut fault = Fault::Honest;
        self.apply_fault(node, &mut fault);
        let mut status_tick = tokio::time::interval(STATUS_FILE_INTERVAL);
        tokio::pin!(shutdown);
        loop {
            let deadline = (node.poll_timeout())
                .map(|at| self.started + Duration::from_micros(at.as_micros()))
                .unwrap_or_else(|| Instant::now() + IDLE_WAKE_UP);
            tokio::select! {
                frame = inbox.recv() => {
                    let Some(frame) = frame else { break };
                    node.handle_frame(self.now(), &frame);
                    for handled in 1..FRAMES_PER_TURN_MAX {
                        if handled >= FRAMES_PER_HOLDING_TURN_MAX && node.holds_output() {
                            break;
                        }
                        let Ok(frame) = inbox.try_recv() else { break };
                        node.handle_frame(self.now(), &frame);
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    node.handle_timeout(self.now()).await
                }
                Some(input) = next_side(&mut side) => node.handle_side(self.now(), input),
                Some(()) = injected.recv() => self.apply_fault(node, &mut fault),
                _ = status_tick.tick() => {
                    self.apply_fault(node, &mut fault);
                    if let Err(error) = self.write_status(node, fault) {
                        tracing::warn!(%error, "cannot write status file");
                    }
                }
                () = &mut shutdown => break,
            }
            node.end_turn(self.now()).await;
        }
        if let Err(error) = self.write_status(node, fault) {
            tracing::warn!(%error, "cannot write the last status file");
        }
        Ok(())
    }

    /// Show the fault `zz inject` wrote for this node, if it changed.
    fn apply_fault<N: NodeLoop>(&self, node: &mut N, current: &mut Fault) {
        let fault = Fault::read(&self.dir, self.node);
        if fault == *current {
            return;
        }
        tracing::warn!(node = %crate::node_name(self.node), %fault, "injected fault");
        *current = fault;
        if let Some(switch) = &self.switch {
            switch.set_fault(fault);
        }
        node.handle_fault(fault);
    }

    fn write_status<N: NodeLoop>(&self, node: &N, fault: Fault) -> Result<(), NodeError> {
        let context = StatusContext {
            pid: std::process::id(),
            unix_ms: unix_ms(),
            fault,
        };
        let path = self.dir.status_path(self.node);
        // A mount in a container; on the process backend it may be new.
        let own = self.dir.node_run_dir(self.node);
        std::fs::create_dir_all(&own).map_err(NodeError::io(own.display()))?;
        write_json(&path, &node.status(&context)).map_err(NodeError::io(path.display()))
    }
}

/// The next input of a side channel; never, without one.
async fn next_side<T>(side: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match side {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
