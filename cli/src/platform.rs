//! `zz init`, `zz up`, `zz down`: a local platform on 127.0.0.1 described by a cluster
//! directory: 3f+1 agreement processes and the host's activator, which starts per app f+1
//! active execution processes plus paused standbys, and wakes and replaces them. With
//! `--backend docker` the replicas are containers instead ([`crate::containers`]).

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use zz_activator::freezer::{self, Pause};
use zz_activator::node::ActivatorStatus;
use zz_activator::policy::MemberState;
use zz_cluster::dir::process_alive;
use zz_cluster::{ClusterDir, InitOptions, init_cluster, node_name};
use zz_protocol::config::ClusterConfig;
use zz_protocol::{ExecutionId, NodeId, ProtocolParams, ReplicaId};

/// How long `zz up` waits for every process to report in.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Args, Clone, Debug)]
pub struct InitArgs {
    /// The cluster directory to create.
    #[arg(long)]
    pub dir: PathBuf,
    /// Faults tolerated: 3f+1 agreement replicas, f+1 active execution replicas per app.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub f: u64,
    /// The apps to host, comma-separated: KIND (kv, bank, null), or KIND:NAME for another
    /// instance of one kind (`kv,kv:cache,bank`), each with its own execution group.
    #[arg(long, value_delimiter = ',', default_value = "kv,bank")]
    pub apps: Vec<String>,
    /// Paused standby execution replicas per app.
    #[arg(long, default_value_t = 1)]
    pub standbys: usize,
    /// Spare standby slots per app, which `zz scale` can grow the pool into.
    #[arg(long, default_value_t = 2)]
    pub spare_slots: usize,
    /// How long an app must be free of alarms before replicas woken for it are paused
    /// again (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    pub quiet_ms: u64,
    /// How woken replicas get their state: lazy (serve at once, fetch buckets as requests
    /// touch them) or eager (fetch the whole state first; a baseline for benchmarks).
    #[arg(long, default_value = "lazy", value_parser = ["lazy", "eager"])]
    pub state_fetch: String,
    /// Megabytes of data the kv app starts with (built by every replica; for benchmarks).
    #[arg(long, default_value_t = 0)]
    pub kv_preload_mb: u64,
    /// Each app's state hashes into 2^N buckets, the unit of lazy fetch (default 10).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub bucket_bits: Option<u8>,
    /// Replica i listens on 127.0.0.1:(base-port + i); execution replicas follow.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Client ids to provision (0..clients).
    #[arg(long, default_value_t = 256)]
    pub clients: u64,
}

pub fn init(args: &InitArgs) -> Result<ClusterConfig> {
    for spec in &args.apps {
        let (kind, _) = zz_protocol::config::parse_app_spec(spec);
        if zz_apps::app_by_name(kind).is_none() {
            bail!(
                "--apps: unknown app kind {kind:?} in {spec:?}; zz hosts {} (KIND, or \
                 KIND:NAME for another instance of one)",
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
        spare_slots_per_app: args.spare_slots,
        quiet_ms: args.quiet_ms,
        kv_preload_mb: args.kv_preload_mb,
        bucket_bits: args.bucket_bits,
        state_fetch: match args.state_fetch.as_str() {
            "eager" => zz_protocol::config::StateFetch::Eager,
            _ => zz_protocol::config::StateFetch::Lazy,
        },
    };
    let config = init_cluster(
        &args.dir,
        options,
        zz_agreement::io::node::create_record_files,
    )?;
    Ok(config)
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub init: InitArgs,
    /// Start the processes and return instead of staying in the foreground.
    #[arg(long)]
    pub detach: bool,
    /// Where replicas run: local processes, or containers of the Docker engine (one
    /// network per platform; the image is built from this zz binary when needed).
    #[arg(long, value_enum, default_value_t = BackendKind::Process)]
    pub backend: BackendKind,
    /// With `--backend docker`: create no standby containers until they are woken, so
    /// every wake creates and starts one (the baseline paused standbys improve on).
    #[arg(long)]
    pub cold_standbys: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Process,
    Docker,
}

/// One process of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Replica(ReplicaId),
    Execution(ExecutionId),
    Activator,
}

impl Node {
    pub fn id(self) -> NodeId {
        match self {
            Node::Replica(id) => NodeId::Replica(id),
            Node::Execution(id) => NodeId::Execution(id),
            Node::Activator => NodeId::Activator(zz_protocol::config::LOCAL_ACTIVATOR),
        }
    }

    pub fn name(self) -> String {
        node_name(self.id())
    }

    /// The node named `name` as `zz status` shows it ("replica-2", "execution-3").
    pub fn parse(config: &ClusterConfig, name: &str) -> Option<Node> {
        nodes(config).into_iter().find(|node| node.name() == name)
    }

    pub fn status_path(self, dir: &Path) -> PathBuf {
        ClusterDir::new(dir).status_path(self.id())
    }

    pub fn pid(self, dir: &Path) -> Option<u32> {
        ClusterDir::new(dir).read_pid(self.id())
    }
}

/// Every node of the platform, spare slots included.
pub fn nodes(config: &ClusterConfig) -> Vec<Node> {
    let replicas = config
        .replicas
        .iter()
        .map(|replica| Node::Replica(replica.id));
    let executions = config
        .executions
        .iter()
        .map(|execution| Node::Execution(execution.id));
    replicas
        .chain(executions)
        .chain([Node::Activator])
        .collect()
}

/// Start agreement replica `node` or the activator as a child of `zz`, logging to its log
/// file, and record its pid.
pub fn spawn(dir: &Path, node: Node) -> Result<std::process::Child> {
    spawn_with(dir, node, &[])
}

/// [`spawn`] with more arguments for the node.
pub fn spawn_with(dir: &Path, node: Node, extra: &[&str]) -> Result<std::process::Child> {
    let name = node.name();
    let files = ClusterDir::new(dir);
    let _ = std::fs::remove_file(files.status_path(node.id()));
    let log_path = files.log_path(node.id());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let mut command = std::process::Command::new(&exe);
    match node {
        Node::Replica(id) => command.args(["node", "agreement", "--id", &id.0.to_string()]),
        Node::Activator => command.args(["node", "activator"]),
        Node::Execution(_) => unreachable!("the activator starts execution replicas"),
    };
    command
        .args(extra)
        .arg("--cluster")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a Ctrl-C meant for `zz up` reaches the nodes only through
    // `zz up`'s orderly shutdown.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    std::fs::write(files.pid_path(node.id()), child.id().to_string())?;
    Ok(child)
}

/// Start the agreement replicas and the activator (which starts the execution replicas
/// and pauses the standbys); return once every node reported in and every standby is
/// paused.
pub async fn up(args: &UpArgs) -> Result<()> {
    let dir = &args.init.dir;
    if args.backend == BackendKind::Docker {
        return crate::containers::up(args).await;
    }
    if args.cold_standbys {
        bail!("--cold-standbys: only the docker backend has cold standbys (add --backend docker)");
    }
    if crate::containers::is_docker(dir) {
        bail!(
            "{0}: its nodes were placed on a Docker network by `zz up --backend docker`; start \
             it that way again, or use another directory",
            dir.display()
        );
    }
    let files = ClusterDir::new(dir);
    let config = if files.cluster_file().exists() {
        ClusterConfig::load(dir)?
    } else {
        init(&args.init)?
    };
    for sub in files.working_dirs() {
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("cannot create {}", sub.display()))?;
    }
    // Who was active comes from the activator's record: one it would refuse stops `zz
    // up` before anything starts.
    zz_activator::node::read_record(&files, &config)?;
    stop_orphans(dir, &config)?;
    if let Some((node, pid)) = running(dir, &config).first() {
        bail!(
            "{}: {} is already running (pid {pid}); run `zz down --dir {}` first",
            dir.display(),
            node.name(),
            dir.display()
        );
    }
    let started = Instant::now();
    let mut children = Vec::new();
    for node in nodes(&config) {
        for stale in [
            files.pause_path(node.id()),
            files.fault_path(node.id()),
            files.status_path(node.id()),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        if !matches!(node, Node::Execution(_)) {
            // Each run's log starts empty.
            let _ = std::fs::remove_file(files.log_path(node.id()));
            children.push((node, spawn(dir, node)?));
        }
    }
    if let Err(error) = wait_ready(dir, &config, started, &mut children).await {
        let _ = stop(dir, &config);
        return Err(error.context(format!("see {}/logs/", dir.display())));
    }
    let gateway = match crate::gateway::start(dir).await {
        Ok(gateway) => gateway,
        Err(error) => {
            let _ = stop(dir, &config);
            return Err(error.context(format!("see {}/logs/gateway.log", dir.display())));
        }
    };
    // With the gateway's URL.
    crate::status::print_status(dir, &config, None)?;
    if args.detach {
        println!(
            "platform running; try `zz kv --dir {0} put hello world`, stop it with `zz down --dir {0}`",
            dir.display()
        );
        return Ok(());
    }
    println!("platform running; Ctrl-C or SIGTERM stops it");
    crate::shutdown_signal().await;
    stop(dir, &config)?;
    for (_, mut child) in children {
        let _ = child.wait();
    }
    if let Some((mut gateway, _)) = gateway {
        let _ = gateway.wait();
    }
    println!("platform stopped");
    Ok(())
}

/// The activator's status, if it wrote one.
pub fn activator_status(dir: &Path) -> Option<ActivatorStatus> {
    read_json(&Node::Activator.status_path(dir))
}

/// A status file a node wrote (see [`zz_cluster::status_file::read_node_json`]).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    zz_cluster::status_file::read_node_json(path)
}

/// Whether the activator reports every member ready: none still starting.
fn pools_ready(dir: &Path) -> bool {
    activator_status(dir).is_some_and(|status| {
        (status.pools.iter())
            .flat_map(|pool| &pool.members)
            .all(|member| member.state != MemberState::Starting)
    })
}

/// Wait until every node (but spare slots) wrote its status and no standby is still
/// starting; an error names the nodes missing, or the first of `children` (the processes
/// started here) that exited, with the last line of its log: why it could not start.
pub async fn wait_ready(
    dir: &Path,
    config: &ClusterConfig,
    started: Instant,
    children: &mut [(Node, std::process::Child)],
) -> Result<()> {
    loop {
        if let Some(exited) = exited_child(dir, children) {
            bail!(exited);
        }
        // A cold standby (docker `--cold-standbys`) has no container until woken; a slot
        // the activator's record holds spare (a pool shrunk) runs nothing either.
        let members: Vec<_> = (activator_status(dir).into_iter())
            .flat_map(|status| status.pools)
            .flat_map(|pool| pool.members)
            .collect();
        let idle: Vec<u32> = (members.iter())
            .filter(|member| {
                let cold = member.instance.as_ref().is_some_and(|i| i.state == "cold");
                cold || member.state == MemberState::Spare
            })
            .map(|member| member.id)
            .collect();
        let spare = |node: &Node| match node {
            Node::Execution(id) => {
                let configured_spare = config.execution(*id).is_some_and(|e| e.spare);
                (configured_spare && members.is_empty()) || idle.contains(&id.0)
            }
            _ => false,
        };
        let mut missing: Vec<String> = nodes(config)
            .into_iter()
            .filter(|node| !spare(node) && !node.status_path(dir).exists())
            .map(Node::name)
            .collect();
        if missing.is_empty() {
            if pools_ready(dir) {
                return Ok(());
            }
            missing.push("the paused standbys".to_string());
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "{} did not start within {READY_TIMEOUT:?}",
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first of `children` that exited, described with the last line of its log.
fn exited_child(dir: &Path, children: &mut [(Node, std::process::Child)]) -> Option<String> {
    let (node, status) = children.iter_mut().find_map(|(node, child)| {
        let status = child.try_wait().ok().flatten()?;
        Some((*node, status))
    })?;
    let log = ClusterDir::new(dir).log_path(node.id());
    let last_line = std::fs::read_to_string(&log)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(nothing)".to_string());
    Some(format!(
        "{} exited at start-up ({status}); the last line of {}: {last_line}",
        node.name(),
        log.display()
    ))
}

/// Every node whose recorded process is alive, with its pid.
pub fn running(dir: &Path, config: &ClusterConfig) -> Vec<(Node, u32)> {
    nodes(config)
        .into_iter()
        .filter_map(|node| {
            let pid = node.pid(dir)?;
            is_node_of(dir, pid).then_some((node, pid))
        })
        .collect()
}

/// Whether `pid` is alive and runs a node of the platform in `dir` (`zz node ...
/// --cluster DIR`): after a power cut the pid files remain, and a pid may since name a
/// process that has nothing to do with this platform.
pub fn is_node_of(dir: &Path, pid: u32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if !process_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    let is_node = args.get(1).is_some_and(|arg| *arg == b"node");
    let cluster =
        (args.iter().position(|arg| *arg == b"--cluster")).and_then(|at| args.get(at + 1));
    let Some(cluster) = cluster.filter(|_| is_node) else {
        return false;
    };
    // A relative directory is relative to the node's working directory.
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let cluster = cwd.join(std::ffi::OsStr::from_bytes(cluster));
    match (cluster.canonicalize(), dir.canonicalize()) {
        (Ok(cluster), Ok(dir)) => cluster == dir,
        _ => false,
    }
}

/// Execution replicas left behind by a platform whose agreement replicas and activator are
/// all gone (killed, or a crash): a frozen standby survives a SIGKILL until it is thawed.
/// Nothing drives them any more, so `zz up` stops them rather than refusing to start.
fn stop_orphans(dir: &Path, config: &ClusterConfig) -> Result<()> {
    let alive = running(dir, config);
    let gateway = crate::gateway::running_pid(dir);
    let driven = (alive.iter()).any(|(node, _)| !matches!(node, Node::Execution(_)));
    if driven || (alive.is_empty() && gateway.is_none()) {
        return Ok(());
    }
    for (node, pid) in &alive {
        println!(
            "{} (pid {pid}) was left behind by a platform that is gone; stopping it",
            node.name()
        );
    }
    if let Some(pid) = gateway {
        println!("the gateway (pid {pid}) was left behind by a platform that is gone; stopping it");
    }
    stop(dir, config)?;
    Ok(())
}

/// Stop every process of the platform: the activator first, so that it starts nothing
/// more; paused processes are resumed so they can handle their SIGTERM.
pub fn stop(dir: &Path, config: &ClusterConfig) -> Result<usize> {
    // The gateway first: it takes no new request once the nodes go.
    let gateway = crate::gateway::running_pid(dir);
    if let Some(pid) = gateway {
        let _ = freezer::signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(ClusterDir::new(dir).gateway_pid_path());
    let alive = running(dir, config);
    let activator_first = (alive.iter()).filter(|(node, _)| *node == Node::Activator);
    let others = (alive.iter()).filter(|(node, _)| *node != Node::Activator);
    for (node, pid) in activator_first.chain(others) {
        resume_if_paused(dir, *node, *pid);
        // SIGTERM: the node writes its status and closes its connections.
        let _ = freezer::signal(*pid, "TERM");
        if *node == Node::Activator {
            let deadline = Instant::now() + Duration::from_secs(2);
            while process_alive(*pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !running(dir, config).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid) in running(dir, config) {
        let _ = freezer::signal(pid, "KILL");
    }
    let files = ClusterDir::new(dir);
    for node in nodes(config) {
        let _ = std::fs::remove_file(files.pid_path(node.id()));
        let _ = std::fs::remove_file(files.pause_path(node.id()));
        let _ = std::fs::remove_file(files.fault_path(node.id()));
        freezer::forget(&freezer::cgroup_name(dir, &node.name()));
    }
    // A node the activator had just spawned when it was stopped may not have written its
    // pid file: find the rest by their command lines (thawed above), or they would outlive
    // the platform and hold its ports.
    let strays = stray_nodes(dir);
    for pid in &strays {
        let _ = freezer::signal(*pid, "CONT");
        let _ = freezer::signal(*pid, "KILL");
    }
    Ok(alive.len() + strays.len() + usize::from(gateway.is_some()))
}

/// Every live process running a node of the platform in `dir`, by its command line.
fn stray_nodes(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    (entries.flatten())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && is_node_of(dir, *pid))
        .collect()
}

/// Resume `node` if a pause was recorded for it.
pub fn resume_if_paused(dir: &Path, node: Node, pid: u32) {
    let name = node.name();
    if let Ok(description) = std::fs::read_to_string(ClusterDir::new(dir).pause_path(node.id())) {
        let pause = Pause::from_description(&description, &freezer::cgroup_name(dir, &name));
        let _ = freezer::resume(pid, &pause);
    }
}

#[derive(Args, Debug)]
pub struct DirArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
}

pub async fn down(args: &DirArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    if crate::containers::is_docker(&args.dir) {
        println!("{}", crate::containers::down(&args.dir, &config).await?);
        return Ok(());
    }
    let stopped = stop(&args.dir, &config)?;
    println!("stopped {stopped} processes");
    Ok(())
}
