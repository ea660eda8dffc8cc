//! The host's HTTP gateway as a node of the platform: `zz node gateway`, which `zz up`
//! starts after the rest, with client ids of its own (`clients/gateway.toml`).

use anyhow::{Context, Result, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use zz_cluster::ClusterDir;
use zz_gateway::{GATEWAY_CLIENT, GATEWAY_CLIENT_IDS};
use zz_protocol::config::ClusterConfig;

/// How long `zz up` waits for the gateway to say where it serves.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What the gateway writes once it listens: `run/gateway/status.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GatewayStatus {
    /// Its base URL, e.g. `http://127.0.0.1:41231`.
    pub url: String,
    pub pid: u32,
}

/// The gateway's status, if it wrote one.
pub fn status(dir: &Path) -> Option<GatewayStatus> {
    crate::platform::read_json(&ClusterDir::new(dir).gateway_status_path())
}

/// Run the gateway of the platform in `dir` until SIGTERM or Ctrl-C.
pub async fn run(dir: &Path) -> Result<()> {
    let config = ClusterConfig::load(dir)?;
    let address = (config.gateway.as_ref())
        .and_then(|gateway| gateway.address)
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let queued_max = (config.gateway.as_ref())
        .and_then(|gateway| gateway.queued_max)
        .unwrap_or(zz_gateway::QUEUED_MAX);
    // Connected before it says where it serves: a gateway that cannot speak to the
    // platform must not look ready.
    let loopback_only = address.ip().is_loopback();
    let router = zz_gateway::connect(dir, GATEWAY_CLIENT, queued_max, loopback_only)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("the gateway cannot listen on {address}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let files = ClusterDir::new(dir);
    let status_path = files.gateway_status_path();
    if let Some(parent) = status_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = GatewayStatus {
        url: url.clone(),
        pid: std::process::id(),
    };
    std::fs::write(&status_path, serde_json::to_vec_pretty(&status)?)
        .with_context(|| format!("cannot write {}", status_path.display()))?;
    tracing::info!(%url, "gateway serving");
    zz_gateway::serve(listener, router, crate::shutdown_signal()).await?;
    let _ = std::fs::remove_file(&status_path);
    tracing::info!("gateway stopped");
    Ok(())
}

/// Give the gateway its client key file if it has none: an eighth of the platform's client
/// ids, between 1 and [`GATEWAY_CLIENT_IDS`], or as many as are still free.
pub fn provision(dir: &Path) -> Result<()> {
    let path = dir.join(zz_protocol::config::client_file_path(GATEWAY_CLIENT));
    if path.exists() {
        return Ok(());
    }
    let clients = ClusterConfig::load(dir)?.clients;
    let mut ids = (clients / 8).clamp(1, GATEWAY_CLIENT_IDS);
    loop {
        match zz_cluster::add_client(dir, GATEWAY_CLIENT, ids) {
            Ok(_) => return Ok(()),
            Err(zz_cluster::AddClientError::NoFreeIds { .. }) if ids > 1 => ids /= 2,
            Err(error) => {
                return Err(error).context("cannot give the gateway client ids of its own");
            }
        }
    }
}

/// Start the gateway as a child of `zz up` and wait until it serves; its URL. None, with
/// a warning, when it can have no client ids (every one was handed out): the platform
/// runs without it rather than not at all.
pub async fn start(dir: &Path) -> Result<Option<(std::process::Child, String)>> {
    if let Err(error) = provision(dir) {
        println!("no gateway: {error:#}");
        return Ok(None);
    }
    let files = ClusterDir::new(dir);
    let _ = std::fs::remove_file(files.gateway_status_path());
    let log_path = files.gateway_log_path();
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["node", "gateway", "--cluster"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the gateway")?;
    std::fs::write(files.gateway_pid_path(), child.id().to_string())?;
    let started = Instant::now();
    loop {
        if let Some(status) = status(dir).filter(|status| status.pid == child.id()) {
            return Ok(Some((child, status.url)));
        }
        if let Some(exit) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log.lines().rev().find(|line| !line.trim().is_empty());
            bail!(
                "the gateway exited at start-up ({exit}); the last line of {}: {}",
                log_path.display(),
                last.unwrap_or("(nothing)")
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("the gateway did not start within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's pid, if its process is alive and is the gateway of the platform in `dir`
/// (`zz node gateway --cluster DIR`: a pid file outlives a SIGKILL, and its pid may be
/// reused).
pub fn running_pid(dir: &Path) -> Option<u32> {
    let files = ClusterDir::new(dir);
    let pid: u32 = std::fs::read_to_string(files.gateway_pid_path())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_gateway = cmdline.split(|byte| *byte == 0).nth(2) == Some(b"gateway");
    (is_gateway && crate::platform::is_node_of(dir, pid)).then_some(pid)
}
