//! What the policy did and why, as operators read it in `zz status` and the status file:
//! [`PolicyEvent`] for its decisions, [`ScaleRefusal`] for a `zz scale` it cannot carry
//! out. Apps are named as operators name them ("kv"), members as `zz status` does.

use serde::{Deserialize, Serialize};
use std::fmt;
use zz_protocol::messages::{FaultReason, WakeReason};
use zz_protocol::{ExecutionId, Seq};

/// One decision of the policy, about the app named `app`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PolicyEvent {
    /// f+1 agreement replicas sent matching wakes; standbys are thawed.
    WakeQuorum {
        app: String,
        reason: WakeReason,
        seq: Seq,
    },
    /// f+1 agreement replicas reported `member` faulty: destroyed, a fresh standby starts.
    Faulty {
        app: String,
        member: ExecutionId,
        reason: FaultReason,
        seq: Seq,
    },
    /// A wake found no ready standby; one is woken as soon as it is ready.
    NoStandbyReady {
        app: String,
    },
    Woke {
        app: String,
        members: Vec<ExecutionId>,
    },
    /// A quiet period passed: the extra members are paused again.
    Paused {
        app: String,
        members: Vec<ExecutionId>,
    },
    /// `zz scale` grew the pool, starting these members in spare slots.
    PoolGrew {
        app: String,
        standbys: usize,
        started: Vec<ExecutionId>,
    },
    /// `zz scale` shrank the pool, destroying these standbys.
    PoolShrank {
        app: String,
        standbys: usize,
        removed: Vec<ExecutionId>,
    },
    PoolUnchanged {
        app: String,
        standbys: usize,
    },
    /// f+1 agreement replicas' alarms named epochs of at least `held`, past this
    /// activator's `behind`: its membership is announced again at `epoch`, past theirs.
    EpochBehind {
        app: String,
        behind: u64,
        held: u64,
        epoch: u64,
    },
}

impl fmt::Display for PolicyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyEvent::WakeQuorum { app, reason, seq } => write!(
                f,
                "{app}: f+1 agreement replicas ask for standbys ({}, {seq})",
                reason.name()
            ),
            PolicyEvent::Faulty {
                app,
                member,
                reason,
                seq,
            } => write!(
                f,
                "{app}: execution-{} is faulty ({}, {seq}): destroyed, a fresh standby starts \
                 in its place",
                member.0,
                reason.name()
            ),
            PolicyEvent::NoStandbyReady { app } => {
                write!(f, "{app}: no standby is ready; waking one as soon as it is")
            }
            PolicyEvent::Woke { app, members } => write!(f, "{app}: woke {}", Listed(members)),
            PolicyEvent::Paused { app, members } => {
                write!(f, "{app}: quiet; paused {} again", Listed(members))
            }
            PolicyEvent::PoolGrew {
                app,
                standbys,
                started,
            } => write!(
                f,
                "{app}: pool grows to {standbys} standbys: starting {}",
                Listed(started)
            ),
            PolicyEvent::PoolShrank {
                app,
                standbys,
                removed,
            } => write!(
                f,
                "{app}: pool shrinks to {standbys} standbys: removed {}",
                Listed(removed)
            ),
            PolicyEvent::PoolUnchanged { app, standbys } => {
                write!(f, "{app}: pool already has {standbys} standbys")
            }
            PolicyEvent::EpochBehind {
                app,
                behind,
                held,
                epoch,
            } => write!(
                f,
                "{app}: f+1 agreement replicas hold membership epoch {held}, past this \
                 activator's {behind} (its record is older): announcing its membership at \
                 epoch {epoch}"
            ),
        }
    }
}

/// Why `zz scale` could not change an app's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ScaleRefusal {
    #[error("{app} has no execution replicas")]
    NoExecutionReplicas { app: String },
    #[error(
        "{app} has {} standby slots ({in_use} in use, {spare} spare); `zz init --spare-slots` \
         provisions more",
        in_use + spare
    )]
    TooFewSlots {
        app: String,
        in_use: usize,
        spare: usize,
    },
}

/// Members as `zz status` names them: "execution-2, execution-3".
struct Listed<'a>(&'a [ExecutionId]);

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, member) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "execution-{}", member.0)?;
        }
        Ok(())
    }
}
