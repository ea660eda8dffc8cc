//! `zz up --backend docker`: the platform in containers. Agreement and execution replicas
//! run as containers of the zz image on one user-defined bridge network per platform,
//! each at its own address; the activator runs on the host (it is the host's replica
//! control daemon and drives the engine through its API), listening on the network's
//! gateway address; clients (`zz kv`, `zz bench`) dial the containers from the host.
//! `zz down` removes every container and the network this platform created, and nothing
//! else: they all carry its `zz.platform` label.

use crate::platform::{self, Node, UpArgs, nodes};
use anyhow::{Context, Result, bail};
use bollard::Docker;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Instant;
use zz_activator::docker::image::ensure_image;
use zz_activator::docker::{self, DockerPlatform, NodeContainer, node_address, place_platform};
use zz_cluster::{ClusterDir, save_cluster_config};
use zz_protocol::config::ClusterConfig;

/// Each node's container, by node name ("replica-0"), for `zz status`.
pub type ContainerView = BTreeMap<String, NodeContainer>;

/// The containers of the platform in `dir`, if it is a Docker platform; `None` for a
/// process platform. An engine that does not answer shows as no containers.
pub async fn view(dir: &Path) -> Result<Option<ContainerView>> {
    let Some(platform) = DockerPlatform::load(dir)? else {
        return Ok(None);
    };
    let Ok(docker) = docker::connect().await else {
        return Ok(Some(ContainerView::new()));
    };
    let containers = platform.containers(&docker).await.unwrap_or_default();
    Ok(Some(
        (containers.into_iter())
            .map(|container| (container.node.clone(), container))
            .collect(),
    ))
}

/// Whether `dir` holds a platform placed on Docker.
pub fn is_docker(dir: &Path) -> bool {
    DockerPlatform::path(dir).exists()
}

/// Give every node an address on the platform network, keeping its port: agreement
/// replica i gets node address i, execution replicas follow, the activator listens on the
/// gateway.
fn place_addresses(config: &mut ClusterConfig, platform: &DockerPlatform) -> Result<()> {
    let at = |index: usize, port: u16| -> Result<SocketAddr> {
        let ip = node_address(&platform.subnet, index)
            .with_context(|| format!("{} nodes do not fit in {}", index + 1, platform.subnet))?;
        Ok(SocketAddr::new(IpAddr::V4(ip), port))
    };
    let replicas = config.replicas.len();
    for (index, replica) in config.replicas.iter_mut().enumerate() {
        replica.address = at(index, replica.address.port())?;
    }
    for (index, execution) in config.executions.iter_mut().enumerate() {
        execution.address = at(replicas + index, execution.address.port())?;
    }
    if let Some(activator) = &mut config.activator {
        activator.address = SocketAddr::new(IpAddr::V4(platform.gateway), activator.address.port());
    }
    Ok(())
}

fn ip_of(address: SocketAddr) -> Result<std::net::Ipv4Addr> {
    match address.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => bail!("{address}: the docker backend places nodes on IPv4 addresses"),
    }
}

/// Start agreement replica `node`'s container.
async fn run_replica(
    docker: &Docker,
    platform: &DockerPlatform,
    config: &ClusterConfig,
    node: Node,
) -> Result<String> {
    let Node::Replica(id) = node else {
        unreachable!("only agreement replicas are started here")
    };
    let replica = (config.replicas.iter())
        .find(|replica| replica.id == id)
        .context("a configured replica")?;
    let name = node.name();
    let args = platform.node_args("agreement", id.0);
    let labels = platform.labels(&name, "agreement", None, None);
    let id = platform
        .run_node(docker, node.id(), args, ip_of(replica.address)?, labels)
        .await?;
    Ok(id)
}

/// `zz up --backend docker`.
pub async fn up(args: &UpArgs) -> Result<()> {
    let docker = docker::connect().await?;
    let dir = std::path::absolute(&args.init.dir)
        .with_context(|| format!("{}: not a usable path", args.init.dir.display()))?;
    // The image first: when it cannot be built, nothing has been created.
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let (image, built) = ensure_image(&docker, &exe).await?;
    if built {
        println!("built image {image} from {}", exe.display());
    }
    if let Some(existing) = DockerPlatform::load(&dir)? {
        let running = existing.containers(&docker).await?;
        if let Some(container) = running.iter().find(|c| c.state != "exited") {
            bail!(
                "{}: {} is already {} (container {}); run `zz down --dir {}` first",
                dir.display(),
                container.node,
                container.state,
                docker::short_id(&container.id),
                dir.display()
            );
        }
    }
    // The network before the directory: when the engine refuses it, nothing is written.
    let mut platform = place_platform(&docker, &dir, &image).await?;
    platform.cold_standbys = args.cold_standbys;
    let mut config = match configure(args, &dir) {
        Ok(config) => config,
        Err(error) => {
            let _ = docker::remove_network(&docker, &platform).await;
            return Err(error);
        }
    };
    let started = start(&docker, &platform, &mut config).await;
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            // Nothing half-made stays behind.
            let _ = teardown(&docker, &platform, &config).await;
            return Err(error);
        }
    };
    let view = view(&dir).await?;
    crate::status::print_status(&dir, &config, view.as_ref())?;
    if args.detach {
        println!(
            "platform running in containers on network {} ({}); try `zz kv --dir {1} put hello \
             world`, stop it with `zz down --dir {1}`",
            platform.network,
            dir.display()
        );
        return Ok(());
    }
    println!("platform running in containers; Ctrl-C or SIGTERM stops it");
    crate::shutdown_signal().await;
    let removed = teardown(&docker, &platform, &config).await?;
    let mut activator = started;
    let _ = activator.wait();
    println!(
        "platform stopped; removed {removed} containers and network {}",
        platform.network
    );
    Ok(())
}

/// The cluster configuration in `dir`, written by `zz init` if there is none; refused if
/// processes of the platform still run.
fn configure(args: &UpArgs, dir: &Path) -> Result<ClusterConfig> {
    let config = if ClusterDir::new(dir).cluster_file().exists() {
        ClusterConfig::load(dir)?
    } else {
        let mut init = args.init.clone();
        init.dir = dir.to_path_buf();
        platform::init(&init)?
    };
    if let Some((node, pid)) = platform::running(dir, &config).first() {
        bail!(
            "{}: {} is already running (pid {pid}); run `zz down --dir {}` first",
            dir.display(),
            node.name(),
            dir.display()
        );
    }
    Ok(config)
}

/// Place the nodes, start the agreement replicas' containers and the activator, and wait
/// until every node reported in. Returns the activator's process.
async fn start(
    docker: &Docker,
    platform: &DockerPlatform,
    config: &mut ClusterConfig,
) -> Result<std::process::Child> {
    let dir = platform.dir.clone();
    place_addresses(config, platform)?;
    save_cluster_config(&dir, config)?;
    platform.save()?;
    let files = ClusterDir::new(&dir);
    for sub in files.working_dirs() {
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("cannot create {}", sub.display()))?;
    }
    // A record of who was active that the activator would refuse stops it here.
    zz_activator::node::read_record(&files, config)?;
    let begun = Instant::now();
    for node in nodes(config) {
        for stale in [
            files.pause_path(node.id()),
            files.fault_path(node.id()),
            files.pid_path(node.id()),
            files.status_path(node.id()),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        if let Node::Replica(_) = node {
            run_replica(docker, platform, config, node).await?;
        }
    }
    let activator = platform::spawn_with(&dir, Node::Activator, &["--backend", "docker"])?;
    // The agreement replicas run in containers, not as children: their logs are Docker's.
    platform::wait_ready(&dir, config, begun, &mut [])
        .await
        .map_err(|error| {
            let logs = platform.container_name("NODE");
            anyhow::anyhow!("{error}; see `docker logs {logs}`")
        })?;
    Ok(activator)
}

/// Stop the activator, remove this platform's containers and its network; returns how
/// many containers were removed.
async fn teardown(
    docker: &Docker,
    platform: &DockerPlatform,
    config: &ClusterConfig,
) -> Result<usize> {
    // The activator first, so that it starts nothing more.
    platform::stop(&platform.dir, config)?;
    let containers = platform.containers(docker).await?;
    for container in &containers {
        platform.remove_container(docker, &container.id).await?;
    }
    docker::remove_network(docker, platform).await?;
    Ok(containers.len())
}

/// `zz down` of a Docker platform.
pub async fn down(dir: &Path, config: &ClusterConfig) -> Result<String> {
    let platform = DockerPlatform::load(dir)?.context("not a Docker platform")?;
    let docker = docker::connect().await?;
    let removed = teardown(&docker, &platform, config).await?;
    Ok(format!(
        "removed {removed} containers and network {}",
        platform.network
    ))
}

/// `zz image build`: the image of this zz binary.
pub async fn build_image() -> Result<String> {
    let docker = docker::connect().await?;
    let exe = std::env::current_exe().context("cannot find the zz binary")?;
    let (image, built) = ensure_image(&docker, &exe).await?;
    Ok(match built {
        true => format!("built image {image} from {}", exe.display()),
        false => format!("image {image} is up to date with {}", exe.display()),
    })
}

/// What `zz inject` does to a container.
pub enum ContainerFault {
    Kill,
    Partition,
    /// Reconnect it if it was cut off, and start it again if it is an agreement replica
    /// that was killed.
    Heal,
    /// Tell the node to read its fault file again.
    Signal,
}

/// Carry out `fault` on `node`'s container; returns what was done.
pub async fn inject(
    dir: &Path,
    config: &ClusterConfig,
    node: Node,
    fault: ContainerFault,
) -> Result<String> {
    let platform = DockerPlatform::load(dir)?.context("not a Docker platform")?;
    let docker = docker::connect().await?;
    let name = node.name();
    let containers = platform.containers(&docker).await?;
    let container = containers.iter().find(|c| c.node == name);
    let address = match node {
        Node::Replica(id) => config
            .replicas
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.address),
        Node::Execution(id) => config.execution(id).map(|e| e.address),
        Node::Activator => None,
    };
    let Some(container) = container else {
        bail!("{name} has no container; the activator replaces removed execution replicas");
    };
    let short = docker::short_id(&container.id).to_string();
    match fault {
        ContainerFault::Kill => {
            platform.signal(&docker, &name, "SIGKILL").await?;
            Ok(format!("{name}: killed container {short}"))
        }
        ContainerFault::Partition => {
            platform.disconnect(&docker, &name).await?;
            Ok(format!(
                "{name}: container {short} cut off network {}",
                platform.network
            ))
        }
        ContainerFault::Signal => {
            if container.state != "running" {
                bail!(
                    "{name}: container {short} is {}, not running",
                    container.state
                );
            }
            platform.signal(&docker, &name, "SIGUSR2").await?;
            Ok(format!("{name}: told container {short}"))
        }
        ContainerFault::Heal => {
            let mut done = Vec::new();
            let attached = connected(&docker, &platform, &container.id).await?;
            if !attached {
                let ip = ip_of(address.context("a configured node")?)?;
                platform.reconnect(&docker, &name, ip).await?;
                done.push(format!("reconnected to network {}", platform.network));
            }
            match (container.state.as_str(), node) {
                ("running", _) => {
                    platform.signal(&docker, &name, "SIGUSR2").await?;
                    done.push("healed".to_string());
                }
                ("exited", Node::Replica(_)) => {
                    docker.start_container(&container.id, None).await.map_err(
                        docker::DockerError::refused(format!("start container {short}")),
                    )?;
                    done.push("restarted from its records".to_string());
                }
                (state, _) if done.is_empty() => {
                    bail!(
                        "{name}: container {short} is {state}; the activator replaces failed execution replicas"
                    )
                }
                _ => {}
            }
            Ok(format!("{name}: {} (container {short})", done.join(", ")))
        }
    }
}

/// Whether a container is attached to the platform network.
async fn connected(docker: &Docker, platform: &DockerPlatform, id: &str) -> Result<bool> {
    let inspected =
        docker
            .inspect_container(id, None)
            .await
            .map_err(docker::DockerError::refused(format!(
                "inspect container {}",
                docker::short_id(id)
            )))?;
    Ok((inspected
        .network_settings
        .and_then(|settings| settings.networks))
    .is_some_and(|networks| networks.contains_key(&platform.network)))
}
