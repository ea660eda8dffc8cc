//! The files a running platform keeps in its cluster directory, per node: `run/<node>.pid`
//! (its process), `run/<node>.json` (its status), `run/<node>.paused` (how it was paused),
//! `run/<node>.fault` (a fault injected by `zz inject`) and `logs/<node>.log`. One module
//! names them so that `zz up`, the activator's process backend, `zz inject` and the nodes
//! agree.

use crate::ids::{ExecutionId, NodeId, ReplicaId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The activator's status file name stem.
pub const ACTIVATOR_NODE: &str = "activator";
/// The activator's control socket (`zz scale` talks to it), relative to the directory.
pub const ACTIVATOR_SOCKET: &str = "run/activator.sock";

/// The name a node goes by in file names, logs and `zz status`.
pub fn node_name(node: NodeId) -> String {
    match node {
        NodeId::Replica(ReplicaId(id)) => format!("replica-{id}"),
        NodeId::Execution(ExecutionId(id)) => format!("execution-{id}"),
        NodeId::Activator(_) => ACTIVATOR_NODE.to_string(),
        NodeId::Client(client) => format!("client-{}", client.0),
    }
}

pub fn pid_path(dir: &Path, node: &str) -> PathBuf {
    dir.join("run").join(format!("{node}.pid"))
}

pub fn pause_path(dir: &Path, node: &str) -> PathBuf {
    dir.join("run").join(format!("{node}.paused"))
}

pub fn fault_path(dir: &Path, node: &str) -> PathBuf {
    dir.join("run").join(format!("{node}.fault"))
}

pub fn log_path(dir: &Path, node: &str) -> PathBuf {
    dir.join("logs").join(format!("{node}.log"))
}

/// The process id recorded for `node`, if any.
pub fn read_pid(dir: &Path, node: &str) -> Option<u32> {
    std::fs::read_to_string(pid_path(dir, node))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// The signal `zz inject` sends after writing a node's fault file (SIGUSR2), so that the
/// node shows the fault at once rather than at its next status tick.
pub fn fault_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
}

/// A fault `zz inject` asks a running node to show, written to `run/<node>.fault`; the
/// node reads it on SIGUSR2 and at every status tick. No file means honest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InjectedFault {
    #[default]
    Honest,
    /// Drop every outgoing message.
    Mute,
    /// Delay every outgoing message by this long.
    Slow { delay_ms: u64 },
    /// An execution replica answers clients wrongly (and reports those wrong replies).
    CorruptReply,
    /// An execution replica serves wrong buckets and reports wrong checkpoint roots.
    CorruptState,
}

impl InjectedFault {
    /// The fault written for `node`, honest when there is none or it cannot be read.
    pub fn read(dir: &Path, node: &str) -> InjectedFault {
        std::fs::read(fault_path(dir, node))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn name(self) -> &'static str {
        match self {
            InjectedFault::Honest => "honest",
            InjectedFault::Mute => "mute",
            InjectedFault::Slow { .. } => "slow",
            InjectedFault::CorruptReply => "corrupt-reply",
            InjectedFault::CorruptState => "corrupt-state",
        }
    }
}
