//! The process backend: each execution replica is a `zz node execution` child process.
//! Standbys are started, left to load, then frozen (cgroup freezer where writable, else
//! SIGSTOP); a thaw resumes them and sends SIGUSR1, on which the node joins from the
//! stable checkpoint. The files it keeps (`run/<node>.pid`, `.paused`) are the ones
//! `zz status` and `zz down` read.

use super::{Backend, BackendError, Instance};
use crate::freezer::{self, Pause};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use zz_cluster::dir::process_alive;
use zz_cluster::{ClusterDir, node_name};
use zz_protocol::{ExecutionId, NodeId};

/// `zz node execution --start-as`: whether the replica loads its store and executes
/// (active) or loads nothing and waits to be woken (standby). The activator, not the
/// configuration, decides: a woken standby stays active across a restart.
pub fn start_as(standby: bool) -> &'static str {
    if standby { "standby" } else { "active" }
}

struct Process {
    child: Child,
    pause: Option<Pause>,
    /// Started and not reported by `poll_started` yet; true for a standby still loading.
    starting: bool,
    standby: bool,
}

/// See the module documentation.
pub struct ProcessBackend {
    dir: ClusterDir,
    exe: PathBuf,
    processes: BTreeMap<ExecutionId, Process>,
}

fn name(member: ExecutionId) -> String {
    node_name(NodeId::Execution(member))
}

fn io(member: ExecutionId, action: &'static str) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io {
        member,
        action,
        source,
    }
}

impl ProcessBackend {
    /// Replicas of the platform in `dir`, run as `exe node execution --cluster dir --id N`.
    pub fn new(dir: &Path, exe: &Path) -> ProcessBackend {
        ProcessBackend {
            dir: ClusterDir::new(dir),
            exe: exe.to_path_buf(),
            processes: BTreeMap::new(),
        }
    }

    fn status_path(&self, member: ExecutionId) -> PathBuf {
        self.dir.status_path(NodeId::Execution(member))
    }

    fn process(&mut self, member: ExecutionId) -> Result<&mut Process, BackendError> {
        self.processes
            .get_mut(&member)
            .ok_or(BackendError::NotRunning { member })
    }

    fn freeze(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        let cgroup = freezer::cgroup_name(self.dir.path(), &name(member));
        let pause_file = self.dir.pause_path(NodeId::Execution(member));
        let process = self.process(member)?;
        let pause = freezer::pause(process.child.id(), &cgroup).map_err(io(member, "pause"))?;
        std::fs::write(pause_file, pause.describe()).map_err(io(member, "record the pause"))?;
        process.pause = Some(pause);
        Ok(())
    }

    /// Reap children that exited on their own (crashed or killed by `zz inject`).
    fn reap(&mut self) {
        for process in self.processes.values_mut() {
            let _ = process.child.try_wait();
        }
    }
}

impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn start(&mut self, member: ExecutionId, standby: bool) -> Result<(), BackendError> {
        // A fresh replica owes nothing to its predecessor: no status, pause or fault.
        for stale in [
            self.status_path(member),
            self.dir.pause_path(NodeId::Execution(member)),
            self.dir.fault_path(NodeId::Execution(member)),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.log_path(NodeId::Execution(member)))
            .map_err(io(member, "open its log"))?;
        let mut command = std::process::Command::new(&self.exe);
        command
            .args(["node", "execution", "--id", &member.0.to_string()])
            .args(["--start-as", start_as(standby)])
            .arg("--cluster")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io(member, "open its log"))?)
            .stderr(log);
        // Its own process group: a Ctrl-C at a terminal reaches replicas only through
        // `zz up`'s orderly shutdown.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(io(member, "start"))?;
        std::fs::write(
            self.dir.pid_path(NodeId::Execution(member)),
            child.id().to_string(),
        )
        .map_err(io(member, "record its pid"))?;
        tracing::info!(%member, pid = child.id(), standby, "started");
        let process = Process {
            child,
            pause: None,
            starting: true,
            standby,
        };
        self.processes.insert(member, process);
        Ok(())
    }

    async fn poll_started(&mut self) -> Vec<ExecutionId> {
        self.reap();
        let loaded: Vec<ExecutionId> = (self.processes.iter())
            .filter(|(member, process)| process.starting && self.status_path(**member).exists())
            .map(|(member, _)| *member)
            .collect();
        let mut started = Vec::new();
        for member in loaded {
            let process = self.processes.get_mut(&member).expect("listed");
            process.starting = false;
            if process.standby
                && let Err(error) = self.freeze(member)
            {
                tracing::warn!(%error, "a standby could not be paused");
                continue;
            }
            started.push(member);
        }
        started
    }

    async fn pause(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        if self.process(member)?.pause.is_some() {
            return Ok(());
        }
        self.freeze(member)
    }

    async fn thaw(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        let pause_file = self.dir.pause_path(NodeId::Execution(member));
        let process = self.process(member)?;
        let pid = process.child.id();
        if let Some(pause) = process.pause.take() {
            freezer::resume(pid, &pause).map_err(io(member, "resume"))?;
        }
        let _ = std::fs::remove_file(pause_file);
        // The node joins from the stable checkpoint on SIGUSR1.
        freezer::signal(pid, "USR1").map_err(io(member, "signal"))
    }

    async fn destroy(&mut self, member: ExecutionId) -> Result<(), BackendError> {
        let node = name(member);
        if let Some(mut process) = self.processes.remove(&member) {
            let pid = process.child.id();
            // A frozen process handles no signal, not even SIGKILL, until it is thawed.
            if let Some(pause) = &process.pause {
                let _ = freezer::resume(pid, pause);
            }
            let _ = process.child.kill();
            let _ = process.child.wait();
            tracing::info!(%member, pid, "destroyed");
        }
        // Its state store goes too: a replacement woken and restarted before it wrote a
        // checkpoint of its own must not load the destroyed one's.
        for file in [
            self.dir.pid_path(NodeId::Execution(member)),
            self.dir.pause_path(NodeId::Execution(member)),
            self.dir.fault_path(NodeId::Execution(member)),
            self.dir.execution_store_path(member),
        ] {
            let _ = std::fs::remove_file(file);
        }
        freezer::forget(&freezer::cgroup_name(self.dir.path(), &node));
        Ok(())
    }

    fn instances(&self) -> BTreeMap<ExecutionId, Instance> {
        (self.processes.iter())
            .map(|(member, process)| {
                let pid = process.child.id();
                let state = if !process_alive(pid) {
                    "exited"
                } else if process.starting {
                    "starting"
                } else if process.pause.is_some() {
                    "paused"
                } else {
                    "running"
                };
                let instance = Instance {
                    pid: Some(pid),
                    container: None,
                    state: state.to_string(),
                };
                (*member, instance)
            })
            .collect()
    }
}
