//! What the activator shows `zz status` (`run/activator.json`), and the events it keeps:
//! the policy's decisions and what the backend did of them.

use crate::backend::Instance;
use crate::policy::{MemberState, PolicyEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zz_protocol::ExecutionId;

/// One execution replica as the activator sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u32,
    pub host: String,
    pub state: MemberState,
    pub instance: Option<Instance>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolStatus {
    pub app: u32,
    pub name: String,
    pub epoch: u64,
    pub members: Vec<MemberStatus>,
}

/// A backend command, as events name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendAction {
    Start,
    Thaw,
    Pause,
    Destroy,
}

impl BackendAction {
    /// The past tense events use ("thawed").
    fn done(self) -> &'static str {
        match self {
            BackendAction::Start => "started",
            BackendAction::Thaw => "thawed",
            BackendAction::Pause => "paused",
            BackendAction::Destroy => "destroyed",
        }
    }
}

/// What the backend did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BackendEvent {
    /// A started replica has loaded (and, for a standby, been paused).
    Ready { app: String, member: ExecutionId },
    Done {
        backend: String,
        action: BackendAction,
        member: ExecutionId,
        took_ms: f64,
    },
    Failed {
        action: BackendAction,
        member: ExecutionId,
        error: String,
    },
}

impl fmt::Display for BackendEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendEvent::Ready { app, member } => {
                write!(f, "{app}: execution-{} is ready", member.0)
            }
            BackendEvent::Done {
                backend,
                action,
                member,
                took_ms,
            } => write!(
                f,
                "{backend} backend {} execution-{} in {took_ms:.1} ms",
                action.done(),
                member.0
            ),
            BackendEvent::Failed { action, error, .. } => write!(f, "{}: {error}", action.done()),
        }
    }
}

/// An event of either kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActivatorEvent {
    Policy(PolicyEvent),
    Backend(BackendEvent),
}

impl fmt::Display for ActivatorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivatorEvent::Policy(event) => event.fmt(f),
            ActivatorEvent::Backend(event) => event.fmt(f),
        }
    }
}

/// Something that happened, for `zz status`: the typed event and its text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub unix_ms: u64,
    pub text: String,
    /// None only in a status file an older activator wrote.
    #[serde(default)]
    pub event: Option<ActivatorEvent>,
}

/// What `run/activator.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivatorStatus {
    pub pid: u32,
    pub backend: String,
    pub pools: Vec<PoolStatus>,
    /// The policy's and the backend's events, oldest first.
    pub events: Vec<Event>,
    pub wakes_received: u64,
    pub faulty_received: u64,
    /// Backend commands that failed.
    pub commands_failed: u64,
    /// Records of who is active that could not be saved (their announcements waited).
    #[serde(default)]
    pub record_save_failures: u64,
    /// Frames rejected before the policy (decode, MAC, sender), by reason.
    pub rejected: BTreeMap<String, u64>,
    pub updated_unix_ms: u64,
}
