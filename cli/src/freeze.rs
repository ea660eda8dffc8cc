//! Pausing and resuming standby processes: through the cgroup v1 freezer where it is
//! writable (the whole process tree stops at once and the kernel reports it frozen), and
//! with SIGSTOP/SIGCONT elsewhere.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FREEZER_ROOT: &str = "/sys/fs/cgroup/freezer";
/// How long freezing may take before it counts as failed.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a paused process was paused, so it can be resumed the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pause {
    Freezer(PathBuf),
    Signal,
}

impl Pause {
    pub fn describe(&self) -> &'static str {
        match self {
            Pause::Freezer(_) => "cgroup freezer",
            Pause::Signal => "SIGSTOP",
        }
    }
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// A freezer cgroup for `name` (e.g. "zz-<platform>-execution-3"), if the freezer is
/// writable here.
fn freezer_cgroup(name: &str) -> Option<PathBuf> {
    let root = Path::new(FREEZER_ROOT);
    if !root.join("cgroup.procs").exists() {
        return None;
    }
    let path = root.join(name);
    std::fs::create_dir_all(&path).ok()?;
    path.join("freezer.state").exists().then_some(path)
}

/// Pause process `pid`; `name` names its freezer cgroup.
pub fn pause(pid: u32, name: &str) -> Result<Pause> {
    if let Some(cgroup) = freezer_cgroup(name) {
        let frozen = std::fs::write(cgroup.join("cgroup.procs"), pid.to_string())
            .and_then(|()| std::fs::write(cgroup.join("freezer.state"), "FROZEN"));
        if frozen.is_ok() {
            let started = Instant::now();
            while started.elapsed() < FREEZE_TIMEOUT {
                let state =
                    std::fs::read_to_string(cgroup.join("freezer.state")).unwrap_or_default();
                if state.trim() == "FROZEN" {
                    return Ok(Pause::Freezer(cgroup));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        tracing::warn!(
            pid,
            "cgroup freezer did not freeze; falling back to SIGSTOP"
        );
    }
    signal(pid, "STOP")?;
    Ok(Pause::Signal)
}

/// Resume a process paused with [`pause`].
pub fn resume(pid: u32, pause: &Pause) -> Result<()> {
    match pause {
        Pause::Freezer(cgroup) => std::fs::write(cgroup.join("freezer.state"), "THAWED")
            .with_context(|| format!("cannot thaw {}", cgroup.display())),
        Pause::Signal => signal(pid, "CONT"),
    }
}

/// Remove a freezer cgroup left by a stopped process (best effort).
pub fn forget(name: &str) {
    let path = Path::new(FREEZER_ROOT).join(name);
    if path.exists() {
        let _ = std::fs::write(path.join("freezer.state"), "THAWED");
        let _ = std::fs::remove_dir(&path);
    }
}

/// Whether process `pid` is paused (stopped by a signal or frozen).
pub fn is_paused(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(") ")?.1.to_string();
            after_name.chars().next()
        })
        .is_some_and(|state| state == 'T' || state == 't')
        || frozen_by_cgroup(pid)
}

fn frozen_by_cgroup(pid: u32) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    cgroups
        .lines()
        .filter_map(|line| line.split_once(":freezer:"))
        .any(|(_, path)| {
            let state = Path::new(FREEZER_ROOT)
                .join(path.trim_start_matches('/'))
                .join("freezer.state");
            std::fs::read_to_string(state).is_ok_and(|state| state.trim() == "FROZEN")
        })
}
