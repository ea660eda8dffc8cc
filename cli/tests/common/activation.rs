//! Watching the activator of a running platform: its status file, its events, its view
//! of each member, and waiting for a step of activation to happen.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use zz_activator::node::ActivatorStatus;
use zz_activator::policy::{MemberState, PolicyEvent};
use zz_activator::status::ActivatorEvent;
use zz_cluster::ClusterDir;
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::messages::FaultReason;
use zz_protocol::{ExecutionId, NodeId};

pub fn activator(dir: &Path) -> ActivatorStatus {
    let path = ClusterDir::new(dir).status_path(NodeId::Activator(LOCAL_ACTIVATOR));
    serde_json::from_slice(&std::fs::read(path).expect("activator status")).expect("json")
}

/// Each member's state, by member id.
pub fn states(dir: &Path) -> BTreeMap<u32, MemberState> {
    (activator(dir).pools.into_iter())
        .flat_map(|pool| pool.members)
        .map(|member| (member.id, member.state))
        .collect()
}

/// Whether the activator's events hold one that `holds`.
pub fn has_event(dir: &Path, holds: impl Fn(&PolicyEvent) -> bool) -> bool {
    (activator(dir).events.iter()).any(|event| match &event.event {
        Some(ActivatorEvent::Policy(event)) => holds(event),
        Some(ActivatorEvent::Backend(_)) | None => false,
    })
}

/// The policy woke execution replica `member`.
pub fn woke(member: u32) -> impl Fn(&PolicyEvent) -> bool {
    move |event| matches!(event, PolicyEvent::Woke { members, .. } if members.contains(&ExecutionId(member)))
}

/// The policy paused execution replica `member` again after a quiet period.
pub fn paused_again(member: u32) -> impl Fn(&PolicyEvent) -> bool {
    move |event| matches!(event, PolicyEvent::Paused { members, .. } if members.contains(&ExecutionId(member)))
}

/// f+1 agreement replicas reported execution replica `member` faulty (for `reason`, or
/// any reason when None); with `member` None, any member.
pub fn faulty(member: Option<u32>, reason: Option<FaultReason>) -> impl Fn(&PolicyEvent) -> bool {
    move |event| match event {
        PolicyEvent::Faulty {
            member: reported,
            reason: why,
            ..
        } => {
            member.is_none_or(|member| *reported == ExecutionId(member))
                && reason.is_none_or(|reason| *why == reason)
        }
        _ => false,
    }
}

/// Wait up to `timeout` until `done` holds, or fail naming `what` with the activator's
/// events.
pub fn wait_for(dir: &Path, timeout: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            let events: Vec<String> = activator(dir).events.into_iter().map(|e| e.text).collect();
            panic!("{what} did not happen; activator events: {events:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replace the default execution silence timeout in `cluster.toml` (the time after which
/// a replica that reports nothing counts as faulty).
pub fn set_silence_ms(dir: &Path, silence_ms: u64) {
    let cluster = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&cluster).unwrap();
    let text = text.replace(
        "execution_silence_ms = 1000",
        &format!("execution_silence_ms = {silence_ms}"),
    );
    std::fs::write(&cluster, text).unwrap();
}
