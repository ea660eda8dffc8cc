//! Pausing and resuming standby processes: through the cgroup v1 freezer where it is
//! writable (the whole process tree stops at once and the kernel reports it frozen), and
//! with SIGSTOP/SIGCONT elsewhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const FREEZER_ROOT: &str = "/sys/fs/cgroup/freezer";
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

    /// The pause `describe` wrote for the process whose cgroup is `cgroup_name`.
    pub fn from_description(description: &str, cgroup_name: &str) -> Pause {
        match description.trim() {
            "cgroup freezer" => Pause::Freezer(Path::new(FREEZER_ROOT).join(cgroup_name)),
            _ => Pause::Signal,
        }
    }
}

/// The freezer cgroup name of node `node` (e.g. "execution-3") of the platform in `dir`:
/// unique per platform directory and node.
pub fn cgroup_name(dir: &Path, node: &str) -> String {
    let platform = zz_protocol::Digest::of(&[dir.to_string_lossy().as_bytes()]);
    format!("zz-{platform}-{node}")
}

/// Send signal `name` (e.g. "CONT", "USR1", "KILL") to process `pid`.
pub fn signal(pid: u32, name: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -{name} {pid} failed")))
    }
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
pub fn pause(pid: u32, name: &str) -> std::io::Result<Pause> {
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
pub fn resume(pid: u32, pause: &Pause) -> std::io::Result<()> {
    match pause {
        Pause::Freezer(cgroup) => std::fs::write(cgroup.join("freezer.state"), "THAWED"),
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
