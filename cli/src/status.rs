//! `zz status`: every node's role, app, state, process (pid or container) and progress, the activator's view
//! of each app's members (active, paused standby, starting), and its latest events.

use crate::containers::ContainerView;
use crate::platform::{Node, activator_status, read_json, running};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use zz_activator::docker::short_id;
use zz_activator::freezer;
use zz_activator::node::{ActivatorStatus, Event};
use zz_activator::policy::MemberState;
use zz_agreement::io::node::NodeStatus;
use zz_execution::node::ExecutionStatus;
use zz_protocol::config::ClusterConfig;

/// Events the table shows at most (the JSON form has all the activator keeps).
const EVENTS_SHOWN_MAX: usize = 12;

/// One row of the status table, also its JSON form.
#[derive(serde::Serialize)]
struct Row {
    node: String,
    role: &'static str,
    app: Option<String>,
    address: String,
    state: &'static str,
    pid: Option<u32>,
    /// The container's short id (Docker platforms).
    container: Option<String>,
    view: Option<u64>,
    executed: Option<u64>,
    checkpoint: Option<u64>,
    /// An injected fault the node shows (`zz inject`), if any.
    fault: Option<String>,
    rejected: u64,
}

/// What `zz status --json` prints.
#[derive(serde::Serialize)]
struct Report {
    nodes: Vec<Row>,
    events: Vec<Event>,
    /// The HTTP gateway's base URL, while it runs.
    gateway: Option<String>,
}

/// The gateway's URL, if it runs.
fn gateway_url(dir: &Path) -> Option<String> {
    let pid = crate::gateway::running_pid(dir)?;
    let status = crate::gateway::status(dir).filter(|status| status.pid == pid)?;
    Some(status.url)
}

fn member_state(activator: Option<&ActivatorStatus>, id: u32) -> Option<MemberState> {
    (activator?.pools.iter())
        .flat_map(|pool| &pool.members)
        .find(|member| member.id == id)
        .map(|member| member.state)
}

/// How a node runs: its process, or its container.
#[derive(Clone, Default)]
struct Running {
    pid: Option<u32>,
    container: Option<String>,
    alive: bool,
    paused: bool,
}

fn rows(dir: &Path, config: &ClusterConfig, containers: Option<&ContainerView>) -> Vec<Row> {
    let alive = running(dir, config);
    let pid_of = |node: Node| alive.iter().find(|(n, _)| *n == node).map(|(_, pid)| *pid);
    let how = |node: Node| -> Running {
        if let Some(pid) = pid_of(node) {
            return Running {
                pid: Some(pid),
                container: None,
                alive: true,
                paused: freezer::is_paused(pid),
            };
        }
        let Some(container) = containers.and_then(|view| view.get(&node.name())) else {
            return Running::default();
        };
        Running {
            pid: None,
            container: Some(short_id(&container.id).to_string()),
            alive: matches!(container.state.as_str(), "running" | "paused"),
            paused: container.state == "paused",
        }
    };
    let activator = activator_status(dir);
    let mut rows = Vec::new();
    for replica in &config.replicas {
        let node = Node::Replica(replica.id);
        let status: Option<NodeStatus> = read_json(&node.status_path(dir));
        let run = how(node);
        let state = match &status {
            _ if !run.alive => "stopped",
            Some(s) if !s.normal => "changing",
            Some(s) if s.primary => "primary",
            _ => "backup",
        };
        rows.push(Row {
            node: node.name(),
            role: "agreement",
            app: None,
            address: replica.address.to_string(),
            state,
            pid: run.pid,
            container: run.container,
            view: status.as_ref().map(|s| s.view),
            executed: status.as_ref().map(|s| s.last_executed),
            checkpoint: status.as_ref().map(|s| s.stable),
            fault: status.as_ref().and_then(|s| s.fault.clone()),
            rejected: status.as_ref().map_or(0, |s| s.rejected.values().sum()),
        });
    }
    for execution in &config.executions {
        let node = Node::Execution(execution.id);
        let run = how(node);
        let membership = member_state(activator.as_ref(), execution.id.0);
        // A spare slot with nothing running is capacity, not a node.
        let spare = membership.map_or(execution.spare, |state| state == MemberState::Spare);
        if spare && !run.alive {
            continue;
        }
        let status: Option<ExecutionStatus> = read_json(&node.status_path(dir));
        let role = match membership {
            Some(MemberState::Active) => "execution",
            Some(_) => "standby",
            None if execution.standby => "standby",
            None => "execution",
        };
        let state = match membership {
            _ if !run.alive => "stopped",
            Some(MemberState::Starting) => "starting",
            _ if run.paused => "paused",
            _ => "active",
        };
        let app = config
            .apps
            .iter()
            .find(|app| app.id == execution.app)
            .map(|app| app.name.clone());
        rows.push(Row {
            node: node.name(),
            role,
            app,
            address: execution.address.to_string(),
            state,
            pid: run.pid,
            container: run.container,
            view: None,
            executed: status.as_ref().map(|s| s.last_executed),
            checkpoint: status.as_ref().and_then(|s| s.last_checkpoint),
            fault: status.as_ref().and_then(|s| s.fault.clone()),
            rejected: status.as_ref().map_or(0, |s| s.rejected.values().sum()),
        });
    }
    if let Some(activator_config) = &config.activator {
        let pid = pid_of(Node::Activator);
        rows.push(Row {
            node: Node::Activator.name(),
            role: "activator",
            app: None,
            address: activator_config.address.to_string(),
            state: if pid.is_some() { "running" } else { "stopped" },
            pid,
            container: None,
            view: None,
            executed: None,
            checkpoint: None,
            fault: None,
            rejected: activator.as_ref().map_or(0, |s| s.rejected.values().sum()),
        });
    }
    rows
}

/// The status table and the latest activator events; written in one go, and a closed
/// pipe (`| head`) is not an error.
pub fn print_status(
    dir: &Path,
    config: &ClusterConfig,
    containers: Option<&ContainerView>,
) -> Result<()> {
    use std::fmt::Write as _;
    let show = |value: Option<u64>| value.map_or(String::from("-"), |v| v.to_string());
    let mut table = String::new();
    writeln!(
        table,
        "{:<13} {:<10} {:<6} {:<19} {:<9} {:>12} {:>5} {:>9} {:>10} {:>8}  fault",
        "node",
        "role",
        "app",
        "address",
        "state",
        "process",
        "view",
        "executed",
        "checkpoint",
        "rejected",
    )?;
    for row in rows(dir, config, containers) {
        let process = match (&row.container, row.pid) {
            (Some(container), _) => container.clone(),
            (None, Some(pid)) => pid.to_string(),
            (None, None) => String::from("-"),
        };
        writeln!(
            table,
            "{:<13} {:<10} {:<6} {:<19} {:<9} {:>12} {:>5} {:>9} {:>10} {:>8}  {}",
            row.node,
            row.role,
            row.app.as_deref().unwrap_or("-"),
            row.address,
            row.state,
            process,
            show(row.view),
            show(row.executed),
            show(row.checkpoint),
            row.rejected,
            row.fault.as_deref().unwrap_or("-"),
        )?;
    }
    if let Some(url) = gateway_url(dir) {
        writeln!(table, "\ngateway: {url}")?;
    }
    let events = activator_status(dir).map(|s| s.events).unwrap_or_default();
    if !events.is_empty() {
        writeln!(table, "\nactivator events (latest last):")?;
        let skip = events.len().saturating_sub(EVENTS_SHOWN_MAX);
        for event in &events[skip..] {
            writeln!(table, "  {}  {}", clock(event.unix_ms), event.text)?;
        }
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes());
    Ok(())
}

/// UTC time of day with milliseconds, e.g. "08:41:07.123".
fn clock(unix_ms: u64) -> String {
    let ms_of_day = unix_ms % 86_400_000;
    let (hours, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    format!(
        "{hours:02}:{minutes:02}:{:02}.{:03}",
        rest / 1000,
        rest % 1000
    )
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Print JSON ({"nodes": [...], "events": [...]}) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn status(args: &StatusArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    let containers = crate::containers::view(&args.dir).await?;
    if args.json {
        let report = Report {
            nodes: rows(&args.dir, &config, containers.as_ref()),
            events: activator_status(&args.dir)
                .map(|s| s.events)
                .unwrap_or_default(),
            gateway: gateway_url(&args.dir),
        };
        let json = serde_json::to_string_pretty(&report)?;
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{json}\n").as_bytes());
        return Ok(());
    }
    print_status(&args.dir, &config, containers.as_ref())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_shows_utc_time_of_day() {
        assert_eq!(super::clock(0), "00:00:00.000");
        assert_eq!(super::clock(86_400_000 + 3_723_004), "01:02:03.004");
    }
}
