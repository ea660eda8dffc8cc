//! What the activator asks of the platform it runs on: start, pause, thaw and destroy
//! execution replicas. The policy never knows which backend runs; [`process`] runs
//! replicas as local processes (frozen through the cgroup freezer, else SIGSTOP).

pub mod docker;
pub mod process;

use std::collections::BTreeMap;
use zz_protocol::ExecutionId;

/// Why a backend could not carry out a command.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{member}: cannot {action}: {source}")]
    Io {
        member: ExecutionId,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{member}: not running")]
    NotRunning { member: ExecutionId },
}

/// How a backend shows one replica in the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// The process id (process backend).
    pub pid: Option<u32>,
    /// The container id (container backends).
    #[serde(default)]
    pub container: Option<String>,
    /// "running", "paused", "starting", "exited".
    pub state: String,
}

/// Starts, pauses, thaws and destroys execution replicas. Calls return once the command is
/// carried out, except `start`: a started replica is reported by
/// [`Backend::poll_started`] once it has loaded (and, for a standby, been paused).
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The name `zz status` shows ("process", "docker").
    fn name(&self) -> &'static str;

    /// Start `member` from the clean binary or image. A standby is paused as soon as it
    /// has loaded.
    async fn start(&mut self, member: ExecutionId, standby: bool) -> Result<(), BackendError>;

    /// Members whose start completed since the last call (loaded; paused if standbys).
    async fn poll_started(&mut self) -> Vec<ExecutionId>;

    /// Pause a running member, keeping its memory.
    async fn pause(&mut self, member: ExecutionId) -> Result<(), BackendError>;

    /// Resume a paused member and tell it to join from the stable checkpoint.
    async fn thaw(&mut self, member: ExecutionId) -> Result<(), BackendError>;

    /// Stop `member` for good and remove what it left (a destroyed replica's memory is not
    /// trusted again).
    async fn destroy(&mut self, member: ExecutionId) -> Result<(), BackendError>;

    /// Each member's instance, for the status.
    fn instances(&self) -> BTreeMap<ExecutionId, Instance>;
}
