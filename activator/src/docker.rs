//! The Docker Engine as zz uses it, through its API (bollard): one platform per cluster
//! directory, described by `docker.json` there (its network, subnet and image); every
//! container and network zz creates carries the platform's labels, so `zz down` removes
//! exactly those. Nodes run from the `FROM scratch` image of the zz binary
//! ([`image`]). Each mounts only its own folders of the cluster directory, at their host
//! paths, so that status, fault and state files live where the host's `zz` commands look
//! for them ([`ClusterDir::node_mounts`]).

pub mod image;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkConnectRequest,
    NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zz_cluster::ClusterDir;
use zz_protocol::NodeId;

/// How long the engine may take to answer a ping before zz calls it absent.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Labels on everything zz creates.
pub const LABEL_PLATFORM: &str = "zz.platform";
pub const LABEL_NODE: &str = "zz.node";
pub const LABEL_ROLE: &str = "zz.role";
pub const LABEL_APP: &str = "zz.app";
pub const LABEL_HOST: &str = "zz.host";

/// What went wrong talking to the engine; each names the problem and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "no Docker engine answers ({detail}); start one (or point DOCKER_HOST at it), or use \
         `--backend process`"
    )]
    NoEngine { detail: String },
    #[error("the Docker engine refused to {action}: {detail}")]
    Refused { action: String, detail: String },
    #[error("{0}")]
    Image(String),
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
}

impl DockerError {
    pub fn refused(
        action: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let action = action.into();
        move |error| DockerError::Refused {
            action,
            detail: engine_message(&error),
        }
    }
}

/// The engine's own message for an error it answered, else bollard's description.
fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether the engine answered "no such container/network".
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connect to the local engine and agree on an API version it speaks.
pub async fn connect() -> Result<Docker, DockerError> {
    let no_engine = |detail: String| DockerError::NoEngine { detail };
    let docker = Docker::connect_with_local_defaults().map_err(|e| no_engine(e.to_string()))?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Err(_) => return Err(no_engine(format!("no answer within {PING_TIMEOUT:?}"))),
        Ok(Err(error)) => return Err(no_engine(engine_message(&error))),
        Ok(Ok(_)) => {}
    }
    docker
        .negotiate_version()
        .await
        .map_err(|e| no_engine(e.to_string()))
}

/// The user a node's container runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContainerUser {
    pub uid: u32,
    pub gid: u32,
}

/// First uid of agreement replicas' containers, when the host runs zz as root: far above
/// login users (1000..60000) and the usual subordinate ranges (from 100000), so that no
/// real user owns a node's folders.
pub const REPLICA_UID_BASE: u32 = 1_900_000_000;
/// First uid of execution replicas' containers, when the host runs zz as root.
pub const EXECUTION_UID_BASE: u32 = REPLICA_UID_BASE + 100_000;

/// The user `node`'s container runs as: a uid of its own when zz runs as root (its folders
/// are handed to it), else the host's own user, which is unprivileged already and owns
/// the folders.
pub fn container_user(node: NodeId) -> ContainerUser {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid != 0 {
        return ContainerUser { uid, gid };
    }
    let own = match node {
        NodeId::Replica(id) => REPLICA_UID_BASE + id.0.min(99_999),
        NodeId::Execution(id) => EXECUTION_UID_BASE + id.0.min(99_999),
        NodeId::Activator(_) | NodeId::Client(_) => unreachable!("only replicas run in containers"),
    };
    ContainerUser { uid: own, gid: own }
}

/// Processes and threads in one node's container at most.
const CONTAINER_PIDS_MAX: i64 = 512;

/// Make `node`'s folders, hand its own ones to `user`, and return the binds that mount
/// them at their host paths.
fn prepare_mounts(
    files: &ClusterDir,
    node: NodeId,
    user: ContainerUser,
) -> Result<Vec<String>, DockerError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |error: std::io::Error| file_error(Path::new(&path), error.to_string())
    };
    use std::os::unix::fs::PermissionsExt as _;
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
    };
    let control = files.node_control_dir(node);
    std::fs::create_dir_all(&control).map_err(io(&control))?;
    // Whatever the umask: what a node reads of the host's must be readable by its user,
    // and the folders above nodes' own ones list nothing to anyone but the host.
    for parent in [files.state_dir(), files.run_dir()] {
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        set_mode(&parent, 0o711)?;
    }
    set_mode(&files.path().join("control"), 0o711)?;
    set_mode(&control, 0o755)?;
    set_mode(&files.cluster_file(), 0o644)?;
    let certs = files.path().join("certs");
    set_mode(&certs, 0o755)?;
    for entry in std::fs::read_dir(&certs).map_err(io(&certs))? {
        let path = entry.map_err(io(&certs))?.path();
        set_mode(&path, 0o644)?;
    }
    let mut binds = Vec::new();
    for mount in files.node_mounts(node) {
        let own = mount.writable || mount.path == files.node_secrets_dir(node);
        if mount.writable {
            std::fs::create_dir_all(&mount.path).map_err(io(&mount.path))?;
        }
        if own {
            give_folder(&mount.path, user).map_err(io(&mount.path))?;
            set_mode(&mount.path, 0o700)?;
        }
        let mode = if mount.writable { "rw" } else { "ro" };
        let path = mount.path.display();
        binds.push(format!("{path}:{path}:{mode}"));
    }
    Ok(binds)
}

/// Give the folder `path` and the entries directly in it to `user`: the files the host
/// made there (the record file `zz init` writes, a process platform's files). Links are
/// not followed and nothing deeper is walked: below, only the node itself wrote.
fn give_folder(path: &Path, user: ContainerUser) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let give = |path: &Path| -> std::io::Result<()> {
        let metadata = std::fs::symlink_metadata(path)?;
        if metadata.uid() != user.uid || metadata.gid() != user.gid {
            std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))?;
        }
        Ok(())
    };
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return Err(std::io::Error::other("not a folder"));
    }
    give(path)?;
    for entry in std::fs::read_dir(path)? {
        give(&entry?.path())?;
    }
    Ok(())
}

/// One platform's place on the engine: `docker.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerPlatform {
    /// The label value and name prefix of everything this platform created ("zz-1a2b3c").
    pub platform: String,
    /// The cluster directory, absolute: mounted at the same path in every container.
    pub dir: PathBuf,
    /// The user-defined bridge network every node is on.
    pub network: String,
    /// Its IPv4 subnet ("10.213.7.0/24"); node i has the address .(2 + i).
    pub subnet: String,
    /// The host's address on the network, where the activator listens.
    pub gateway: Ipv4Addr,
    /// The image nodes run ("zz:1a2b3c4d5e6f").
    pub image: String,
    /// Standbys are not created until woken: each thaw creates and starts a container
    /// (the baseline that paused containers improve on, for benchmarks).
    #[serde(default)]
    pub cold_standbys: bool,
}

impl DockerPlatform {
    pub fn path(dir: &Path) -> PathBuf {
        zz_cluster::ClusterDir::new(dir).docker_platform_file()
    }

    /// The platform of the cluster in `dir`, if `zz up --backend docker` placed one.
    pub fn load(dir: &Path) -> Result<Option<DockerPlatform>, DockerError> {
        let path = DockerPlatform::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(file_error(&path, error.to_string())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| file_error(&path, error.to_string()))
    }

    pub fn save(&self) -> Result<(), DockerError> {
        let path = DockerPlatform::path(&self.dir);
        let text = serde_json::to_vec_pretty(self).expect("serializable");
        std::fs::write(&path, text).map_err(|error| file_error(&path, error.to_string()))
    }

    /// The arguments of `zz node ROLE --id ID --cluster DIR` in a container.
    pub fn node_args(&self, role: &str, id: u32) -> Vec<String> {
        let dir = self.dir.display().to_string();
        ["node", role, "--id", &id.to_string(), "--cluster", &dir]
            .map(String::from)
            .to_vec()
    }

    /// The container name of node `node` ("zz-1a2b3c-replica-0").
    pub fn container_name(&self, node: &str) -> String {
        format!("{}-{node}", self.platform)
    }

    /// Labels of a node's container.
    pub fn labels(
        &self,
        node: &str,
        role: &str,
        app: Option<&str>,
        host: Option<&str>,
    ) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_PLATFORM.to_string(), self.platform.clone()),
            (LABEL_NODE.to_string(), node.to_string()),
            (LABEL_ROLE.to_string(), role.to_string()),
        ]);
        if let Some(app) = app {
            labels.insert(LABEL_APP.to_string(), app.to_string());
        }
        if let Some(host) = host {
            labels.insert(LABEL_HOST.to_string(), host.to_string());
        }
        labels
    }

    /// Create and start a container running `zz <args>` at `address` on the platform
    /// network; returns its id. A container left by an earlier run under the same name
    /// is removed first.
    ///
    /// The container sees only what [`ClusterDir::node_mounts`] names for `node`, and runs
    /// as an unprivileged user with no capabilities: an intruder in it holds this node's
    /// keys, and no other node's key or fault file.
    pub async fn run_node(
        &self,
        docker: &Docker,
        node: NodeId,
        args: Vec<String>,
        address: Ipv4Addr,
        labels: HashMap<String, String>,
    ) -> Result<String, DockerError> {
        let name = self.container_name(&zz_cluster::node_name(node));
        self.remove_container(docker, &name).await?;
        let files = ClusterDir::new(&self.dir);
        let user = container_user(node);
        let binds = prepare_mounts(&files, node, user)?;
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(address.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = std::env::var("RUST_LOG")
            .map(|filter| vec![format!("RUST_LOG={filter}")])
            .unwrap_or_default();
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(args),
            env: Some(env),
            labels: Some(labels),
            user: Some(format!("{}:{}", user.uid, user.gid)),
            host_config: Some(HostConfig {
                binds: Some(binds),
                network_mode: Some(self.network.clone()),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                readonly_rootfs: Some(true),
                // One intruder may not starve the host of processes or fill its disk
                // with logs (memory and CPU are left to the operator: apps differ).
                pids_limit: Some(CONTAINER_PIDS_MAX),
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".to_string()),
                    config: Some(HashMap::from([
                        ("max-size".to_string(), "16m".to_string()),
                        ("max-file".to_string(), "2".to_string()),
                    ])),
                }),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(DockerError::refused(format!("create container {name}")))?;
        if let Err(error) = docker.start_container(&created.id, None).await {
            // Nothing half-made stays behind.
            let _ = self.remove_container(docker, &created.id).await;
            return Err(DockerError::refused(format!("start container {name}"))(
                error,
            ));
        }
        Ok(created.id)
    }

    /// Remove a container, running or not; an absent one is fine.
    pub async fn remove_container(&self, docker: &Docker, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(name, Some(options)).await {
            Err(error) if !is_not_found(&error) => Err(DockerError::refused(format!(
                "remove container {name}"
            ))(error)),
            _ => Ok(()),
        }
    }

    /// Send `signal` ("SIGUSR1", "SIGKILL") to a node's container.
    pub async fn signal(
        &self,
        docker: &Docker,
        node: &str,
        signal: &str,
    ) -> Result<(), DockerError> {
        let name = self.container_name(node);
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        docker
            .kill_container(&name, Some(options))
            .await
            .map_err(DockerError::refused(format!("signal {name} with {signal}")))
    }

    /// Cut a node's container off the platform network (a partition).
    pub async fn disconnect(&self, docker: &Docker, node: &str) -> Result<(), DockerError> {
        let name = self.container_name(node);
        let request = NetworkDisconnectRequest {
            container: name.clone(),
            force: Some(true),
        };
        docker
            .disconnect_network(&self.network, request)
            .await
            .map_err(DockerError::refused(format!(
                "disconnect {name} from {}",
                self.network
            )))
    }

    /// Put a node's container back on the network at its address.
    pub async fn reconnect(
        &self,
        docker: &Docker,
        node: &str,
        address: Ipv4Addr,
    ) -> Result<(), DockerError> {
        let name = self.container_name(node);
        let request = NetworkConnectRequest {
            container: name.clone(),
            endpoint_config: Some(EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(address.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        docker
            .connect_network(&self.network, request)
            .await
            .map_err(DockerError::refused(format!(
                "connect {name} to {}",
                self.network
            )))
    }

    /// Every container of this platform: (node label, id, state).
    pub async fn containers(&self, docker: &Docker) -> Result<Vec<NodeContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_PLATFORM}={}", self.platform)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = docker
            .list_containers(Some(options))
            .await
            .map_err(DockerError::refused("list containers"))?;
        Ok(listed
            .into_iter()
            .map(|summary| NodeContainer {
                node: (summary.labels.as_ref())
                    .and_then(|labels| labels.get(LABEL_NODE).cloned())
                    .unwrap_or_default(),
                id: summary.id.unwrap_or_default(),
                state: summary
                    .state
                    .map(|state| state.to_string())
                    .unwrap_or_default(),
            })
            .collect())
    }
}

/// Subnets tried for a platform network: 10.213.N.0/24, starting at an N drawn from the
/// platform name so that two platforms rarely try the same one first.
const SUBNET_PREFIX: [u8; 2] = [10, 213];

/// The platform name of the cluster in `dir` (absolute): "zz-" and 6 hex digits of the
/// path's hash, so the same directory always gets the same name.
pub fn platform_name(dir: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hex: String = digest[..3]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("zz-{hex}")
}

/// An IPv4 subnet "a.b.c.d/n" as (first address, prefix length).
fn parse_subnet(subnet: &str) -> Option<(u32, u32)> {
    let (address, bits) = subnet.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|bits| *bits <= 32)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some((u32::from(address) & mask, bits))
}

/// Whether two subnets share an address.
fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let shorter = a.1.min(b.1);
    let mask = u32::MAX.checked_shl(32 - shorter).unwrap_or(0);
    a.0 & mask == b.0 & mask
}

/// The gateway's address in the platform subnet: its first host address.
pub fn gateway_address(subnet: &str) -> Option<Ipv4Addr> {
    let (base, bits) = parse_subnet(subnet)?;
    (bits <= 30).then(|| Ipv4Addr::from(base + 1))
}

/// The address of node `index` in the platform subnet (the gateway is .1).
pub fn node_address(subnet: &str, index: usize) -> Option<Ipv4Addr> {
    let (base, bits) = parse_subnet(subnet)?;
    let host = u32::try_from(index).ok()?.checked_add(2)?;
    let size = 1u64 << (32 - bits);
    // The last address is the broadcast address.
    (u64::from(host) < size - 1).then(|| Ipv4Addr::from(base + host))
}

/// Create the platform's network on a free subnet (or reuse it if it exists with its
/// labels), and describe the platform.
pub async fn place_platform(
    docker: &Docker,
    dir: &Path,
    image: &str,
) -> Result<DockerPlatform, DockerError> {
    use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
    let platform = platform_name(dir);
    let describe = |subnet: String, gateway: Ipv4Addr| DockerPlatform {
        platform: platform.clone(),
        dir: dir.to_path_buf(),
        network: platform.clone(),
        subnet,
        gateway,
        image: image.to_string(),
        cold_standbys: false,
    };
    let networks = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(DockerError::refused("list networks"))?;
    let subnets_of = |network: &bollard::models::Network| -> Vec<String> {
        (network.ipam.iter())
            .flat_map(|ipam| ipam.config.iter().flatten())
            .filter_map(|config| config.subnet.clone())
            .collect()
    };
    if let Some(existing) = networks
        .iter()
        .find(|network| network.name.as_deref() == Some(platform.as_str()))
    {
        let ours = (existing.labels.as_ref())
            .and_then(|labels| labels.get(LABEL_PLATFORM))
            .is_some_and(|label| *label == platform);
        let subnet = subnets_of(existing).into_iter().next();
        return match (ours, subnet) {
            (true, Some(subnet)) => {
                let gateway = gateway_address(&subnet).ok_or_else(|| DockerError::Refused {
                    action: format!("reuse network {platform}"),
                    detail: format!("its subnet {subnet} is not an IPv4 subnet"),
                })?;
                Ok(describe(subnet, gateway))
            }
            _ => Err(DockerError::Refused {
                action: format!("create network {platform}"),
                detail: "a network of that name exists and zz did not create it; remove it or                          use another cluster directory"
                    .to_string(),
            }),
        };
    }
    let taken: Vec<(u32, u32)> = (networks.iter())
        .flat_map(subnets_of)
        .filter_map(|subnet| parse_subnet(&subnet))
        .collect();
    let start = usize::from(
        platform.as_bytes()[3..]
            .iter()
            .fold(0u8, |a, b| a.wrapping_add(*b)),
    );
    for offset in 0..=255usize {
        let third = ((start + offset) % 256) as u8;
        let [a, b] = SUBNET_PREFIX;
        let subnet = format!("{a}.{b}.{third}.0/24");
        let parsed = parse_subnet(&subnet).expect("well formed");
        if taken.iter().any(|other| overlaps(*other, parsed)) {
            continue;
        }
        let gateway = Ipv4Addr::new(a, b, third, 1);
        let request = NetworkCreateRequest {
            name: platform.clone(),
            driver: Some("bridge".to_string()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.clone()),
                    gateway: Some(gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(
                LABEL_PLATFORM.to_string(),
                platform.clone(),
            )])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => return Ok(describe(subnet, gateway)),
            // Taken by something the listing did not show (another host's route): next.
            Err(error) if engine_message(&error).contains("overlap") => continue,
            Err(error) => {
                return Err(DockerError::refused(format!("create network {platform}"))(
                    error,
                ));
            }
        }
    }
    Err(DockerError::Refused {
        action: format!("create network {platform}"),
        detail: "every subnet 10.213.0.0/24 to 10.213.255.0/24 is in use".to_string(),
    })
}

/// Remove the platform's network; an absent one is fine.
pub async fn remove_network(docker: &Docker, platform: &DockerPlatform) -> Result<(), DockerError> {
    match docker.remove_network(&platform.network).await {
        Err(error) if !is_not_found(&error) => Err(DockerError::refused(format!(
            "remove network {}",
            platform.network
        ))(error)),
        _ => Ok(()),
    }
}

/// One container as `zz status` and `zz down` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContainer {
    pub node: String,
    pub id: String,
    pub state: String,
}

/// The short form of a container id, as `docker ps` shows it.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn file_error(path: &Path, detail: String) -> DockerError {
    DockerError::File {
        path: path.display().to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_when_they_share_an_address() {
        let a = parse_subnet("10.213.7.0/24").unwrap();
        assert!(overlaps(a, parse_subnet("10.213.0.0/16").unwrap()));
        assert!(overlaps(a, parse_subnet("10.213.7.128/25").unwrap()));
        assert!(!overlaps(a, parse_subnet("10.213.8.0/24").unwrap()));
        assert!(overlaps(a, parse_subnet("0.0.0.0/0").unwrap()));
        assert_eq!(parse_subnet("10.213.7.0/33"), None);
        assert_eq!(parse_subnet("nonsense"), None);
    }

    #[test]
    fn node_addresses_skip_the_gateway_and_stop_before_broadcast() {
        assert_eq!(
            node_address("10.213.7.0/24", 0),
            Some(Ipv4Addr::new(10, 213, 7, 2))
        );
        assert_eq!(
            node_address("10.213.7.0/24", 252),
            Some(Ipv4Addr::new(10, 213, 7, 254))
        );
        assert_eq!(node_address("10.213.7.0/24", 253), None);
        assert_eq!(
            gateway_address("10.213.7.0/24"),
            Some(Ipv4Addr::new(10, 213, 7, 1))
        );
        assert_eq!(gateway_address("10.213.7.0/31"), None);
    }

    #[test]
    fn a_directory_always_gets_the_same_platform_name() {
        let name = platform_name(Path::new("/tmp/zz"));
        assert_eq!(name, platform_name(Path::new("/tmp/zz")));
        assert_ne!(name, platform_name(Path::new("/tmp/zz2")));
        assert_eq!(name.len(), "zz-".len() + 6);
    }
}
