//! Injected faults: the one type for how a node misbehaves on purpose. `zz inject` writes it
//! to the node's `control/<node>/fault` (a folder only the host writes) and signals the node, which reads it and shows it (mute
//! and slow on its bus, wrong replies and state in the execution driver); the simulator
//! draws it from its seed. Each side may act on part of it only: a real crash is a killed
//! process, so no node ever reads one from its file.

use crate::dir::ClusterDir;
use serde::{Deserialize, Serialize};
use std::fmt;
use zz_protocol::NodeId;

/// The delay `slow` adds when none is given.
pub const SLOW_DELAY_MS_DEFAULT: u64 = 200;

/// How a node misbehaves; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    #[default]
    Honest,
    /// Stops for good: it handles and sends nothing any more.
    Crash,
    /// Sends nothing at all (it still receives and executes).
    Mute,
    /// Delays every message it sends by this long.
    Slow { delay_ms: u64 },
    /// An execution replica answers clients with wrong results and reports the digest of
    /// those wrong replies.
    CorruptReply,
    /// An execution replica serves altered buckets to fetchers and reports wrong
    /// checkpoint roots.
    CorruptState,
}

impl Fault {
    /// Every fault once, `slow` with its default delay.
    pub const ALL: [Fault; 6] = [
        Fault::Honest,
        Fault::Crash,
        Fault::Mute,
        Fault::Slow {
            delay_ms: SLOW_DELAY_MS_DEFAULT,
        },
        Fault::CorruptReply,
        Fault::CorruptState,
    ];

    /// The name `zz inject` takes and status files show.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Honest => "honest",
            Fault::Crash => "crash",
            Fault::Mute => "mute",
            Fault::Slow { .. } => "slow",
            Fault::CorruptReply => "corrupt-reply",
            Fault::CorruptState => "corrupt-state",
        }
    }

    /// Whether only an execution replica can show it: an agreement replica has no replies
    /// or app state to corrupt.
    pub fn is_execution_only(self) -> bool {
        matches!(self, Fault::CorruptReply | Fault::CorruptState)
    }

    /// The fault written for `node`, honest when there is none or it cannot be read. A
    /// crash is never shown from a file (a real crash is a killed process): honest too.
    pub fn read(dir: &ClusterDir, node: NodeId) -> Fault {
        let fault = std::fs::read(dir.fault_path(node))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        match fault {
            Fault::Crash => Fault::Honest,
            fault => fault,
        }
    }

    /// Write this fault for `node` to show; honest removes the file.
    pub fn write(self, dir: &ClusterDir, node: NodeId) -> std::io::Result<()> {
        let path = dir.fault_path(node);
        if self == Fault::Honest {
            return match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        }
        let json = serde_json::to_vec(&self).map_err(std::io::Error::other)?;
        std::fs::create_dir_all(dir.node_control_dir(node))?;
        std::fs::write(&path, json)?;
        // Readable by the node's own user in a container whatever the umask; written by
        // the host alone.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Parses [`Fault::name`]; `slow` gets [`SLOW_DELAY_MS_DEFAULT`] (`zz inject` takes the
/// delay as `--delay-ms`).
impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(name: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
                format!("unknown fault {name:?}; try one of {}", names.join(", "))
            })
    }
}

/// The signal `zz inject` sends after writing a node's fault file (SIGUSR2), so that the
/// node shows the fault at once rather than at its next status tick.
pub fn fault_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::ExecutionId;

    #[test]
    fn names_parse_back_and_unknown_names_are_refused() {
        for fault in Fault::ALL {
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
        }
        assert_eq!(
            "slow".parse::<Fault>(),
            Ok(Fault::Slow {
                delay_ms: SLOW_DELAY_MS_DEFAULT
            })
        );
        let error = "bogus".parse::<Fault>().unwrap_err();
        assert!(error.contains("corrupt-reply"), "{error}");
    }

    #[test]
    fn a_written_fault_reads_back_and_honest_removes_the_file() {
        let path = std::env::temp_dir().join(format!("zz-fault-test-{}", std::process::id()));
        let dir = ClusterDir::new(&path);
        std::fs::create_dir_all(dir.run_dir()).unwrap();
        let node = NodeId::Execution(ExecutionId(1));
        assert_eq!(Fault::read(&dir, node), Fault::Honest);
        let slow = Fault::Slow { delay_ms: 900 };
        slow.write(&dir, node).unwrap();
        assert_eq!(Fault::read(&dir, node), slow);
        Fault::Honest.write(&dir, node).unwrap();
        assert!(!dir.fault_path(node).exists());
        Fault::Honest.write(&dir, node).unwrap();
        std::fs::remove_dir_all(&path).unwrap();
    }
}
