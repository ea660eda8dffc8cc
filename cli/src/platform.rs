//! `zz init`, `zz up`, `zz down`, `zz status`: a local platform on 127.0.0.1 described by a
//! cluster directory: 3f+1 agreement processes, and per app f+1 active execution
//! processes plus paused standbys.

use crate::freeze::{self, Pause};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use zz_agreement::node::{NodeStatus, status_path};
use zz_execution::node::{ExecutionStatus, execution_status_path};
use zz_protocol::config::{CLUSTER_FILE, ClusterConfig, InitOptions, init_cluster};
use zz_protocol::{ExecutionId, ProtocolParams, ReplicaId};

/// How long `zz up` waits for every process to report in.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The cluster directory to create.
    #[arg(long)]
    pub dir: PathBuf,
    /// Faults tolerated: 3f+1 agreement replicas, f+1 active execution replicas per app.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub f: u64,
    /// The apps to host, comma-separated (kv, bank, null).
    #[arg(long, value_delimiter = ',', default_value = "kv,bank")]
    pub apps: Vec<String>,
    /// Paused standby execution replicas per app.
    #[arg(long, default_value_t = 1)]
    pub standbys: usize,
    /// Replica i listens on 127.0.0.1:(base-port + i); execution replicas follow.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Client ids to provision (0..clients).
    #[arg(long, default_value_t = 256)]
    pub clients: u64,
}

pub fn init(args: &InitArgs) -> Result<ClusterConfig> {
    for app in &args.apps {
        if zz_apps::app_by_name(app).is_none() {
            bail!(
                "--apps: unknown app {app:?}; zz hosts {}",
                zz_apps::APP_NAMES.join(", ")
            );
        }
    }
    let options = InitOptions {
        f: args.f as usize,
        base_port: args.base_port,
        clients: args.clients,
        apps: args.apps.clone(),
        params: ProtocolParams::default(),
        executions_per_app: 0,
        standbys_per_app: args.standbys,
    };
    let config = init_cluster(&args.dir, options)?;
    Ok(config)
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// Start the processes and return instead of staying in the foreground.
    #[arg(long)]
    pub detach: bool,
}

/// One process of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Replica(ReplicaId),
    Execution(ExecutionId),
}

impl Node {
    fn name(self) -> String {
        match self {
            Node::Replica(id) => format!("replica-{}", id.0),
            Node::Execution(id) => format!("execution-{}", id.0),
        }
    }

    fn pid_path(self, dir: &Path) -> PathBuf {
        dir.join("run").join(format!("{}.pid", self.name()))
    }

    fn status_path(self, dir: &Path) -> PathBuf {
        match self {
            Node::Replica(id) => status_path(dir, id),
            Node::Execution(id) => execution_status_path(dir, id),
        }
    }

    fn pause_path(self, dir: &Path) -> PathBuf {
        dir.join("run").join(format!("{}.paused", self.name()))
    }

    /// The freezer cgroup name: unique per platform directory and node.
    fn cgroup_name(self, dir: &Path) -> String {
        let platform = zz_protocol::Digest::of(&[dir.to_string_lossy().as_bytes()]);
        format!("zz-{platform}-{}", self.name())
    }

    fn command_args(self) -> Vec<String> {
        let (kind, id) = match self {
            Node::Replica(id) => ("agreement", id.0),
            Node::Execution(id) => ("execution", id.0),
        };
        vec!["node".into(), kind.into(), "--id".into(), id.to_string()]
    }

    fn pid(self, dir: &Path) -> Option<u32> {
        std::fs::read_to_string(self.pid_path(dir))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn nodes(config: &ClusterConfig) -> Vec<Node> {
    let replicas = config
        .replicas
        .iter()
        .map(|replica| Node::Replica(replica.id));
    let executions = config
        .executions
        .iter()
        .map(|execution| Node::Execution(execution.id));
    replicas.chain(executions).collect()
}

fn is_standby(config: &ClusterConfig, node: Node) -> bool {
    match node {
        Node::Execution(id) => config.execution(id).is_some_and(|e| e.standby),
        Node::Replica(_) => false,
    }
}

/// Start every process of the platform; pause the standbys once they are ready.
pub async fn up(args: &UpArgs) -> Result<()> {
    let dir = &args.init.dir;
    let config = if dir.join(CLUSTER_FILE).exists() {
        ClusterConfig::load(dir)?
    } else {
        init(&args.init)?
    };
    for sub in ["run", "logs", "state"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    if let Some((node, pid)) = running(dir, &config).first() {
        bail!(
            "{}: {} is already running (pid {pid}); run `zz down --dir {}` first",
            dir.display(),
            node.name(),
            dir.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for node in nodes(&config) {
        let _ = std::fs::remove_file(node.status_path(dir));
        let _ = std::fs::remove_file(node.pause_path(dir));
        let log_path = dir.join("logs").join(format!("{}.log", node.name()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = std::process::Command::new(&exe);
        command
            .args(node.command_args())
            .arg("--cluster")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: a Ctrl-C meant for `zz up` reaches the nodes only
        // through `zz up`'s orderly shutdown.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", node.name()))?;
        std::fs::write(node.pid_path(dir), child.id().to_string())?;
        children.push(child);
    }
    wait_ready(dir, &config, started).await?;
    for node in nodes(&config)
        .into_iter()
        .filter(|n| is_standby(&config, *n))
    {
        let pid = node.pid(dir).context("a standby without a pid")?;
        let pause = freeze::pause(pid, &node.cgroup_name(dir))
            .with_context(|| format!("cannot pause {}", node.name()))?;
        std::fs::write(node.pause_path(dir), pause.describe())?;
    }
    print_status(dir, &config)?;
    if args.detach {
        println!(
            "platform running; try `zz kv --dir {0} put hello world`, stop it with `zz down --dir {0}`",
            dir.display()
        );
        return Ok(());
    }
    println!("platform running; Ctrl-C stops it");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    stop(dir, &config)?;
    for mut child in children {
        let _ = child.wait();
    }
    println!("platform stopped");
    Ok(())
}

async fn wait_ready(dir: &Path, config: &ClusterConfig, started: Instant) -> Result<()> {
    loop {
        let missing: Vec<String> = nodes(config)
            .into_iter()
            .filter(|node| !node.status_path(dir).exists())
            .map(Node::name)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = stop(dir, config);
            bail!(
                "{} did not start within {READY_TIMEOUT:?}; see {}/logs/",
                missing.join(", "),
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// Every node whose recorded process is alive, with its pid.
fn running(dir: &Path, config: &ClusterConfig) -> Vec<(Node, u32)> {
    nodes(config)
        .into_iter()
        .filter_map(|node| {
            let pid = node.pid(dir)?;
            process_alive(pid).then_some((node, pid))
        })
        .collect()
}

fn kill(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

fn stop(dir: &Path, config: &ClusterConfig) -> Result<usize> {
    let alive = running(dir, config);
    for (node, pid) in &alive {
        // A paused process must run again to handle its SIGTERM.
        if let Ok(kind) = std::fs::read_to_string(node.pause_path(dir)) {
            let pause = match kind.as_str() {
                "cgroup freezer" => {
                    Pause::Freezer(Path::new("/sys/fs/cgroup/freezer").join(node.cgroup_name(dir)))
                }
                _ => Pause::Signal,
            };
            let _ = freeze::resume(*pid, &pause);
        }
        // SIGTERM: the node writes its status and closes its connections.
        kill(*pid, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !running(dir, config).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid) in running(dir, config) {
        kill(pid, "KILL");
    }
    for node in nodes(config) {
        let _ = std::fs::remove_file(node.pid_path(dir));
        let _ = std::fs::remove_file(node.pause_path(dir));
        freeze::forget(&node.cgroup_name(dir));
    }
    Ok(alive.len())
}

#[derive(Args, Debug)]
pub struct DirArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn down(args: &DirArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    let stopped = stop(&args.dir, &config)?;
    println!("stopped {stopped} processes");
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// One row of the status table, also its JSON form.
#[derive(serde::Serialize)]
struct Row {
    node: String,
    role: &'static str,
    app: Option<String>,
    address: String,
    state: &'static str,
    pid: Option<u32>,
    view: Option<u64>,
    executed: Option<u64>,
    checkpoint: Option<u64>,
    rejected: u64,
}

fn rows(dir: &Path, config: &ClusterConfig) -> Vec<Row> {
    let alive = running(dir, config);
    let pid_of = |node: Node| alive.iter().find(|(n, _)| *n == node).map(|(_, pid)| *pid);
    let mut rows = Vec::new();
    for replica in &config.replicas {
        let node = Node::Replica(replica.id);
        let status: Option<NodeStatus> = read_json(&node.status_path(dir));
        let pid = pid_of(node);
        let state = match (&status, pid) {
            (_, None) => "stopped",
            (Some(s), Some(_)) if !s.normal => "changing",
            (Some(s), Some(_)) if s.primary => "primary",
            (_, Some(_)) => "backup",
        };
        rows.push(Row {
            node: node.name(),
            role: "agreement",
            app: None,
            address: replica.address.to_string(),
            state,
            pid,
            view: status.as_ref().map(|s| s.view),
            executed: status.as_ref().map(|s| s.last_executed),
            checkpoint: status.as_ref().map(|s| s.stable),
            rejected: status.as_ref().map_or(0, |s| s.rejected.values().sum()),
        });
    }
    for execution in &config.executions {
        let node = Node::Execution(execution.id);
        let status: Option<ExecutionStatus> = read_json(&node.status_path(dir));
        let pid = pid_of(node);
        let state = match pid {
            None => "stopped",
            Some(pid) if freeze::is_paused(pid) => "paused",
            Some(_) => "active",
        };
        let app = config
            .apps
            .iter()
            .find(|app| app.id == execution.app)
            .map(|app| app.name.clone());
        rows.push(Row {
            node: node.name(),
            role: if execution.standby {
                "standby"
            } else {
                "execution"
            },
            app,
            address: execution.address.to_string(),
            state,
            pid,
            view: None,
            executed: status.as_ref().map(|s| s.last_executed),
            checkpoint: status.as_ref().and_then(|s| s.last_checkpoint),
            rejected: status.as_ref().map_or(0, |s| s.rejected.values().sum()),
        });
    }
    rows
}

/// The status table; written in one go, and a closed pipe (`| head`) is not an error.
pub fn print_status(dir: &Path, config: &ClusterConfig) -> Result<()> {
    use std::fmt::Write as _;
    let show = |value: Option<u64>| value.map_or(String::from("-"), |v| v.to_string());
    let mut table = String::new();
    writeln!(
        table,
        "{:<13} {:<10} {:<6} {:<16} {:<9} {:>8} {:>5} {:>9} {:>10} {:>8}",
        "node",
        "role",
        "app",
        "address",
        "state",
        "pid",
        "view",
        "executed",
        "checkpoint",
        "rejected"
    )?;
    for row in rows(dir, config) {
        writeln!(
            table,
            "{:<13} {:<10} {:<6} {:<16} {:<9} {:>8} {:>5} {:>9} {:>10} {:>8}",
            row.node,
            row.role,
            row.app.as_deref().unwrap_or("-"),
            row.address,
            row.state,
            row.pid.map_or(String::from("-"), |pid| pid.to_string()),
            show(row.view),
            show(row.executed),
            show(row.checkpoint),
            row.rejected
        )?;
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes());
    Ok(())
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn status(args: &StatusArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    if args.json {
        let json = serde_json::to_string_pretty(&rows(&args.dir, &config))?;
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{json}\n").as_bytes());
        return Ok(());
    }
    print_status(&args.dir, &config)
}
