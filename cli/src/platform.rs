//! `zz init`, `zz up`, `zz down`, `zz status`: a local platform of agreement processes on
//! 127.0.0.1, described by a cluster directory.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use zz_agreement::node::{NodeStatus, status_path};
use zz_protocol::config::{CLUSTER_FILE, ClusterConfig, InitOptions, init_cluster};
use zz_protocol::{ProtocolParams, ReplicaId};

/// How long `zz up` waits for every replica to report in.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The cluster directory to create.
    #[arg(long)]
    pub dir: PathBuf,
    /// Faults tolerated: 3f+1 agreement replicas.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
    pub f: u64,
    /// Replica i listens on 127.0.0.1:(base-port + i).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Client ids to provision (0..clients).
    #[arg(long, default_value_t = 256)]
    pub clients: u64,
}

pub fn init(args: &InitArgs) -> Result<ClusterConfig> {
    let options = InitOptions {
        f: args.f as usize,
        base_port: args.base_port,
        clients: args.clients,
        apps: Vec::new(),
        params: ProtocolParams::default(),
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

fn pid_path(dir: &Path, id: ReplicaId) -> PathBuf {
    dir.join("run").join(format!("replica-{}.pid", id.0))
}

/// Start every agreement replica of the cluster as a child process.
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
    if let Some(running) = running_replicas(dir, &config).first() {
        bail!(
            "{}: replica {} is already running (pid {}); run `zz down --dir {}` first",
            dir.display(),
            running.0,
            running.1,
            dir.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for replica in &config.replicas {
        let _ = std::fs::remove_file(status_path(dir, replica.id));
        let log_path = dir
            .join("logs")
            .join(format!("replica-{}.log", replica.id.0));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = std::process::Command::new(&exe);
        command
            .args(["node", "agreement", "--cluster"])
            .arg(dir)
            .args(["--id", &replica.id.0.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: a Ctrl-C meant for `zz up` reaches the replicas only
        // through `zz up`'s orderly shutdown.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context("cannot start a replica process")?;
        std::fs::write(pid_path(dir, replica.id), child.id().to_string())?;
        children.push(child);
    }
    wait_ready(dir, &config, started).await?;
    print_status(dir, &config)?;
    if args.detach {
        println!(
            "platform running; stop it with: zz down --dir {}",
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
        let missing: Vec<u32> = config
            .replicas
            .iter()
            .filter(|replica| !status_path(dir, replica.id).exists())
            .map(|replica| replica.id.0)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = stop(dir, config);
            bail!(
                "replicas {missing:?} did not start within {READY_TIMEOUT:?}; see {}/logs/",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
}

/// (replica, pid) of every replica whose recorded process is alive.
fn running_replicas(dir: &Path, config: &ClusterConfig) -> Vec<(u32, u32)> {
    config
        .replicas
        .iter()
        .filter_map(|replica| {
            let pid: u32 = std::fs::read_to_string(pid_path(dir, replica.id))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            process_alive(pid).then_some((replica.id.0, pid))
        })
        .collect()
}

fn stop(dir: &Path, config: &ClusterConfig) -> Result<usize> {
    let running = running_replicas(dir, config);
    for (_, pid) in &running {
        // SIGTERM: the node writes its status and closes its connections.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !running_replicas(dir, config).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (_, pid) in running_replicas(dir, config) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    for replica in &config.replicas {
        let _ = std::fs::remove_file(pid_path(dir, replica.id));
    }
    Ok(running.len())
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

pub fn read_status(dir: &Path, id: ReplicaId) -> Option<NodeStatus> {
    let bytes = std::fs::read(status_path(dir, id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The status table; written in one go, and a closed pipe (`| head`) is not an error.
pub fn print_status(dir: &Path, config: &ClusterConfig) -> Result<()> {
    use std::fmt::Write as _;
    let mut table = String::new();
    let running: Vec<u32> = running_replicas(dir, config)
        .iter()
        .map(|(id, _)| *id)
        .collect();
    writeln!(
        table,
        "{:<10} {:<22} {:<8} {:>8} {:>6} {:>9} {:>9} {:>9}",
        "node", "address", "state", "pid", "view", "executed", "stable", "rejected"
    )?;
    for replica in &config.replicas {
        let status = read_status(dir, replica.id);
        let state = match (&status, running.contains(&replica.id.0)) {
            (_, false) => "stopped",
            (Some(status), true) if !status.normal => "changing",
            (Some(status), true) if status.primary => "primary",
            (_, true) => "backup",
        };
        let (pid, view, executed, stable, rejected) = match &status {
            Some(s) => (
                s.pid.to_string(),
                s.view.to_string(),
                s.last_executed.to_string(),
                s.stable.to_string(),
                s.rejected.values().sum::<u64>().to_string(),
            ),
            None => Default::default(),
        };
        writeln!(
            table,
            "{:<10} {:<22} {:<8} {:>8} {:>6} {:>9} {:>9} {:>9}",
            format!("replica {}", replica.id.0),
            replica.address,
            state,
            pid,
            view,
            executed,
            stable,
            rejected
        )?;
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes());
    Ok(())
}

pub fn status(args: &DirArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    print_status(&args.dir, &config)
}
