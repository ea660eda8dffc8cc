//! Writing a fresh cluster directory (`zz init`): every secret is drawn here, once.

use crate::dir::ClusterDir;
use rand::RngExt as _;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use zz_protocol::config::{
    ACTIVATOR_KEYS_FILE, ActivatorConfig, AppConfig, CLIENT_KEYS_FILE, CLIENT_PUBLIC_FILE,
    CLUSTER_FILE, ClientKeyFile, ClientPublicFile, ClusterConfig, ConfigError, DEFAULT_CLIENT,
    ExecutionKeyFile, ExecutionPeerKey, ExecutionReplicaConfig, PeerKey, ReplicaConfig,
    ReplicaKeyFile, StateFetch, TLS_KEY_FILE_NAME, activator_key_file, execution_keys_file,
    hex_encode, node_secrets_dir, replica_keys_file,
};
use zz_protocol::crypto::{SessionKey, client_signing_key, signing_key_from_bytes};
use zz_protocol::{AppId, ClientId, ExecutionId, ProtocolParams, ReplicaId};

#[cfg(test)]
mod tests;

/// What [`init_cluster`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// Faults tolerated; overrides `params.f`. The cluster gets 3f+1 replicas.
    pub f: usize,
    /// Replica i listens on 127.0.0.1:(base_port + i), execution replica i on
    /// 127.0.0.1:(base_port + n + i) where n = 3f+1.
    pub base_port: u16,
    /// Client ids to provision: 0..clients.
    pub clients: u64,
    /// App names, given ids 0.. in this order.
    pub apps: Vec<String>,
    /// Active execution replicas per app; 0 means f+1 (the least a client can vote with).
    pub executions_per_app: usize,
    /// Paused standby execution replicas per app, on top of the active ones.
    pub standbys_per_app: usize,
    /// Spare standby slots per app (provisioned, started only when a pool grows).
    pub spare_slots_per_app: usize,
    /// The activator's quiet period: how long after the last alarm woken replicas are
    /// paused again.
    pub quiet_ms: u64,
    /// How every app's woken replicas get their state.
    pub state_fetch: StateFetch,
    /// Megabytes the kv app starts with.
    pub kv_preload_mb: u64,
    /// Every app's state hashes into 2^bucket_bits buckets (None: the default).
    pub bucket_bits: Option<u8>,
    /// The remaining protocol parameters.
    pub params: ProtocolParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            f: 1,
            base_port: 7000,
            clients: 16,
            apps: Vec::new(),
            executions_per_app: 0,
            standbys_per_app: 0,
            spare_slots_per_app: 0,
            quiet_ms: 10_000,
            state_fetch: StateFetch::Lazy,
            kv_preload_mb: 0,
            bucket_bits: None,
            params: ProtocolParams::default(),
        }
    }
}

const CLUSTER_FILE_HEADER: &str = "\
# zz cluster configuration, written by `zz init`. Public: every node and client reads it.
# Secrets (signing keys, session keys, TLS private keys) live in keys/<node>/, owner-only, one folder per node.
";

const CLIENT_PUBLIC_FILE_HEADER: &str = "\
# zz clients' request-verifying keys, written by `zz init`. Public: client i signs its
# requests with the key matching verifying_keys[i].
";

const KEY_FILE_HEADER: &str = "\
# zz secret keys, written by `zz init`. Anyone who reads this file can act as its owner.
";

fn random_key(rng: &mut rand::rngs::ThreadRng) -> [u8; 32] {
    rng.random()
}

/// Write `contents` to `path`. Secrets are created owner-only (0600) so that they are never,
/// even briefly, readable by others.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        if secret {
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|source| ConfigError::io(path, source))?;
        if secret {
            // `mode` only applies to a new file; a leftover file keeps its old mode otherwise.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|source| ConfigError::io(path, source))?;
        }
        file.write_all(contents)
            .map_err(|source| ConfigError::io(path, source))
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        let mut file = options
            .open(path)
            .map_err(|source| ConfigError::io(path, source))?;
        file.write_all(contents)
            .map_err(|source| ConfigError::io(path, source))
    }
}

pub(crate) fn create_dir(path: &Path, secret: bool) -> Result<(), ConfigError> {
    std::fs::create_dir_all(path).map_err(|source| ConfigError::io(path, source))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| ConfigError::io(path, source))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

fn to_toml<T: serde::Serialize>(path: &Path, value: &T) -> Result<String, ConfigError> {
    toml::to_string_pretty(value).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("cannot encode: {error}"),
    })
}

/// Every secret of a new cluster, drawn once.
struct Secrets {
    /// Indexed by replica id.
    signing_seeds: Vec<[u8; 32]>,
    /// Indexed by replica id.
    client_masters: Vec<[u8; 32]>,
    /// Indexed by execution id.
    execution_client_masters: Vec<[u8; 32]>,
    /// One per unordered pair of replicas, keyed (lower id, higher id); each goes into both
    /// replicas' files.
    pair_keys: BTreeMap<(usize, usize), [u8; 32]>,
    /// One per (replica, execution replica); each goes into both nodes' files.
    execution_keys: BTreeMap<(usize, usize), [u8; 32]>,
    /// Between two execution replicas (low id, high id).
    execution_pair_keys: BTreeMap<(usize, usize), [u8; 32]>,
    /// Between the activator and each replica.
    activator_keys: Vec<[u8; 32]>,
    /// Every client's request-signing key is derived from it.
    client_signing_master: [u8; 32],
}

impl Secrets {
    fn draw(replica_count: usize, execution_count: usize) -> Secrets {
        let mut rng = rand::rng();
        let mut keys =
            |count: usize| -> Vec<[u8; 32]> { (0..count).map(|_| random_key(&mut rng)).collect() };
        let signing_seeds = keys(replica_count);
        let client_masters = keys(replica_count);
        let execution_client_masters = keys(execution_count);
        let mut pair_keys = BTreeMap::new();
        for low in 0..replica_count {
            for high in low + 1..replica_count {
                pair_keys.insert((low, high), random_key(&mut rng));
            }
        }
        let mut execution_keys = BTreeMap::new();
        for replica in 0..replica_count {
            for execution in 0..execution_count {
                execution_keys.insert((replica, execution), random_key(&mut rng));
            }
        }
        let mut execution_pair_keys = BTreeMap::new();
        for low in 0..execution_count {
            for high in low + 1..execution_count {
                execution_pair_keys.insert((low, high), random_key(&mut rng));
            }
        }
        let activator_keys = (0..replica_count).map(|_| random_key(&mut rng)).collect();
        Secrets {
            client_signing_master: random_key(&mut rng),
            execution_pair_keys,
            activator_keys,
            signing_seeds,
            client_masters,
            execution_client_masters,
            pair_keys,
            execution_keys,
        }
    }
}

/// The `[[executions]]` entries init writes: for each app in order, `active_per_app` active
/// then `standbys_per_app` standby replicas, then `spare_slots_per_app` spare slots, ids consecutive across apps, listening after
/// the agreement replicas. Host labels differ within an app so that its replicas count as
/// distinct failure domains.
fn plan_executions(
    options: &InitOptions,
    active_per_app: usize,
    replica_count: usize,
) -> Vec<ExecutionReplicaConfig> {
    let standby_end = active_per_app + options.standbys_per_app;
    let per_app = standby_end + options.spare_slots_per_app;
    let mut executions = Vec::with_capacity(options.apps.len() * per_app);
    for app in 0..options.apps.len() {
        for slot in 0..per_app {
            let index = executions.len();
            // Fits: init checked that every node's port lies in 1..=65535.
            let port = usize::from(options.base_port) + replica_count + index;
            executions.push(ExecutionReplicaConfig {
                id: ExecutionId(index as u32),
                app: AppId(app as u32),
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, port as u16)),
                certificate: PathBuf::from(format!("certs/execution-{index}.pem")),
                host: format!("local-{slot}"),
                standby: slot >= active_per_app,
                spare: slot >= standby_end,
            });
        }
    }
    executions
}

/// Draw a self-signed TLS certificate and its key; write the certificate (public) and the
/// key (secret). `rcgen_error` turns a generation failure into the node's error.
fn write_tls_identity(
    dir: &Path,
    certificate: &Path,
    tls_key: &Path,
    rcgen_error: impl FnOnce(String) -> ConfigError,
) -> Result<(), ConfigError> {
    // Dialers pin the certificate itself, so the names only need to satisfy TLS.
    let names = vec!["localhost".to_string(), Ipv4Addr::LOCALHOST.to_string()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|error| rcgen_error(error.to_string()))?;
    write_file(
        &dir.join(certificate),
        certified.cert.pem().as_bytes(),
        false,
    )?;
    write_file(
        &dir.join(tls_key),
        certified.signing_key.serialize_pem().as_bytes(),
        true,
    )
}

/// Write `value` as a secret key file, under the warning header.
pub(crate) fn write_key_file<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), ConfigError> {
    let text = format!("{KEY_FILE_HEADER}\n{}", to_toml(path, value)?);
    write_file(path, text.as_bytes(), true)
}

/// Create a new cluster in `dir`: draw every secret, write the certificates, the key files
/// and `cluster.toml`, and return the configuration as loaded back from disk.
///
/// Each app in `options.apps` gets `executions_per_app` (f+1 when 0) active and
/// `standbys_per_app` standby execution replicas. Every replica shares a fresh random key
/// with every other replica and with every execution replica.
///
/// `write_state` then writes what the nodes start from into `state/` (created for it): the
/// agreement replicas' empty record files, in a format this crate leaves to theirs.
///
/// Refuses if `dir/cluster.toml` exists, so an existing cluster's keys are never replaced.
/// `cluster.toml` is written last: a directory without it holds no usable cluster, and a
/// failed init can be retried.
pub fn init_cluster(
    dir: &Path,
    options: InitOptions,
    write_state: impl FnOnce(&ClusterDir, &ClusterConfig) -> Result<(), ConfigError>,
) -> Result<ClusterConfig, ConfigError> {
    let cluster_path = dir.join(CLUSTER_FILE);
    if cluster_path.exists() {
        return Err(ConfigError::AlreadyExists { path: cluster_path });
    }
    let protocol = ProtocolParams {
        f: options.f,
        ..options.params.clone()
    };
    let replica_count = protocol.replica_count();
    let active_per_app = match options.executions_per_app {
        0 => protocol.weak_quorum(),
        count => count,
    };
    if active_per_app < protocol.weak_quorum() {
        let problem = format!(
            "{active_per_app} active execution replicas per app are too few: a client needs \
             f + 1 = {} matching replies",
            protocol.weak_quorum()
        );
        return Err(ConfigError::invalid(
            &cluster_path,
            "executions_per_app",
            problem,
        ));
    }
    // Counted in u128 so that no option, however large, overflows before it is refused.
    let execution_count_wide = options.apps.len() as u128
        * (active_per_app as u128
            + options.standbys_per_app as u128
            + options.spare_slots_per_app as u128);
    let last_port = u128::from(options.base_port) + replica_count as u128 + execution_count_wide;
    if options.base_port == 0 || last_port > u128::from(u16::MAX) {
        let problem = format!(
            "{replica_count} replicas and {execution_count_wide} execution replicas need ports \
             {}..={last_port}, which must lie in 1..=65535",
            options.base_port
        );
        return Err(ConfigError::invalid(&cluster_path, "base_port", problem));
    }
    let executions = plan_executions(&options, active_per_app, replica_count);
    // The activator listens on the port after the last execution replica's (checked above).
    let activator_port = last_port;
    let secrets = Secrets::draw(replica_count, executions.len());

    let replicas: Vec<ReplicaConfig> = (0..replica_count)
        .map(|index| ReplicaConfig {
            id: ReplicaId(index as u32),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, options.base_port + index as u16)),
            verifying_key: hex_encode(
                signing_key_from_bytes(secrets.signing_seeds[index])
                    .verifying_key()
                    .as_bytes(),
            ),
            certificate: PathBuf::from(format!("certs/replica-{index}.pem")),
        })
        .collect();
    let config = ClusterConfig {
        format: zz_protocol::config::CLUSTER_FORMAT,
        clients: options.clients,
        protocol,
        replicas,
        apps: options
            .apps
            .iter()
            .enumerate()
            .map(|(index, spec)| (index, zz_protocol::config::parse_app_spec(spec)))
            .map(|(index, (kind, name))| AppConfig {
                id: AppId(index as u32),
                name: name.to_string(),
                kind: (kind != name).then(|| kind.to_string()),
                state_fetch: options.state_fetch,
                preload_mb: if kind == "kv" {
                    options.kv_preload_mb
                } else {
                    0
                },
                bucket_bits: options.bucket_bits,
            })
            .collect(),
        activator: Some(ActivatorConfig {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, activator_port as u16)),
            certificate: PathBuf::from("certs/activator.pem"),
            quiet_ms: options.quiet_ms,
            announce_ms: 1_000,
        }),
        executions,
        gateway: None,
    };
    // Reject a bad option before anything is written.
    config.validate_contents(dir)?;

    create_dir(dir, false)?;
    create_dir(&dir.join("certs"), false)?;
    create_dir(&dir.join("keys"), true)?;
    write_replica_files(dir, &config, &secrets)?;
    write_execution_files(dir, &config, &secrets)?;
    write_activator_files(dir, &config, &secrets)?;
    let client_file = ClientKeyFile {
        client_masters: secrets
            .client_masters
            .iter()
            .map(|m| hex_encode(m))
            .collect(),
        execution_client_masters: secrets
            .execution_client_masters
            .iter()
            .map(|master| hex_encode(master))
            .collect(),
        signing_master: hex_encode(&secrets.client_signing_master),
    };
    write_key_file(&dir.join(CLIENT_KEYS_FILE), &client_file)?;
    write_client_public_file(dir, &config, &secrets)?;
    let files = ClusterDir::new(dir);
    create_dir(&files.state_dir(), false)?;
    write_state(&files, &config)?;

    let text = format!(
        "{CLUSTER_FILE_HEADER}\n{}",
        to_toml(&cluster_path, &config)?
    );
    write_file(&cluster_path, text.as_bytes(), false)?;
    // Half the ids at most, so `zz client add` has some to give.
    let default_ids = config.clients.div_ceil(2).min(DEFAULT_CLIENT_IDS) as u32;
    crate::clients::write_client_file(dir, &config, DEFAULT_CLIENT, ClientId(0), default_ids)?;
    ClusterConfig::load(dir)
}

/// Client ids `zz init` gives the `default` client file at most, and half the provisioned
/// ones when fewer (`zz bench` runs this many clients at most with it).
pub const DEFAULT_CLIENT_IDS: u64 = 64;

/// Rewrite `cluster.toml` in `dir` with `config` (checked first), as a deployment does when
/// it gives nodes new addresses; keys and certificates stay.
pub fn save_cluster_config(dir: &Path, config: &ClusterConfig) -> Result<(), ConfigError> {
    config.validate_contents(dir)?;
    let cluster_path = dir.join(CLUSTER_FILE);
    let text = format!("{CLUSTER_FILE_HEADER}\n{}", to_toml(&cluster_path, config)?);
    write_file(&cluster_path, text.as_bytes(), false)
}

/// Every client id's request-verifying key, public, for the agreement replicas.
fn write_client_public_file(
    dir: &Path,
    config: &ClusterConfig,
    secrets: &Secrets,
) -> Result<(), ConfigError> {
    let master = SessionKey(secrets.client_signing_master);
    let public = ClientPublicFile {
        verifying_keys: (0..config.clients)
            .map(|client| {
                let key = client_signing_key(&master, ClientId(client)).verifying_key();
                hex_encode(key.as_bytes())
            })
            .collect(),
    };
    let path = dir.join(CLIENT_PUBLIC_FILE);
    let text = format!("{CLIENT_PUBLIC_FILE_HEADER}\n{}", to_toml(&path, &public)?);
    write_file(&path, text.as_bytes(), false)
}

/// Each agreement replica's certificate, TLS key and key file.
fn write_replica_files(
    dir: &Path,
    config: &ClusterConfig,
    secrets: &Secrets,
) -> Result<(), ConfigError> {
    let replica_count = config.replica_count();
    for (index, replica) in config.replicas.iter().enumerate() {
        let secrets_dir = node_secrets_dir(&format!("replica-{index}"));
        create_dir(&dir.join(&secrets_dir), true)?;
        let tls_key = secrets_dir.join(TLS_KEY_FILE_NAME);
        write_tls_identity(dir, &replica.certificate, &tls_key, |problem| {
            ConfigError::Certificate {
                replica: replica.id,
                problem,
            }
        })?;
        let peers = (0..replica_count)
            .filter(|&peer| peer != index)
            .map(|peer| PeerKey {
                replica: ReplicaId(peer as u32),
                key: hex_encode(&secrets.pair_keys[&(index.min(peer), index.max(peer))]),
            })
            .collect();
        let execution_peers = (0..config.execution_count())
            .map(|execution| ExecutionPeerKey {
                execution: ExecutionId(execution as u32),
                key: hex_encode(&secrets.execution_keys[&(index, execution)]),
            })
            .collect();
        let key_file = ReplicaKeyFile {
            replica: replica.id,
            signing_key: hex_encode(&secrets.signing_seeds[index]),
            client_master: hex_encode(&secrets.client_masters[index]),
            tls_key,
            peers,
            execution_peers,
            activator_key: Some(hex_encode(&secrets.activator_keys[index])),
        };
        write_key_file(&dir.join(replica_keys_file(replica.id)), &key_file)?;
    }
    Ok(())
}

/// Each execution replica's certificate, TLS key and key file.
fn write_execution_files(
    dir: &Path,
    config: &ClusterConfig,
    secrets: &Secrets,
) -> Result<(), ConfigError> {
    for (index, execution) in config.executions.iter().enumerate() {
        let secrets_dir = node_secrets_dir(&format!("execution-{index}"));
        create_dir(&dir.join(&secrets_dir), true)?;
        let tls_key = secrets_dir.join(TLS_KEY_FILE_NAME);
        write_tls_identity(dir, &execution.certificate, &tls_key, |problem| {
            ConfigError::ExecutionCertificate {
                execution: execution.id,
                problem,
            }
        })?;
        let peers = (0..config.replica_count())
            .map(|replica| PeerKey {
                replica: ReplicaId(replica as u32),
                key: hex_encode(&secrets.execution_keys[&(replica, index)]),
            })
            .collect();
        let execution_peers = config
            .executions
            .iter()
            .filter(|peer| peer.app == execution.app && peer.id != execution.id)
            .map(|peer| {
                let other = peer.id.index();
                let pair = (index.min(other), index.max(other));
                ExecutionPeerKey {
                    execution: peer.id,
                    key: hex_encode(&secrets.execution_pair_keys[&pair]),
                }
            })
            .collect();
        let key_file = ExecutionKeyFile {
            execution: execution.id,
            client_master: hex_encode(&secrets.execution_client_masters[index]),
            tls_key,
            peers,
            execution_peers,
        };
        write_key_file(&dir.join(execution_keys_file(execution.id)), &key_file)?;
    }
    Ok(())
}

/// The activator's certificate, TLS key and key file.
fn write_activator_files(
    dir: &Path,
    config: &ClusterConfig,
    secrets: &Secrets,
) -> Result<(), ConfigError> {
    let Some(activator) = &config.activator else {
        return Ok(());
    };
    let secrets_dir = node_secrets_dir("activator");
    create_dir(&dir.join(&secrets_dir), true)?;
    let tls_key = secrets_dir.join(TLS_KEY_FILE_NAME);
    write_tls_identity(dir, &activator.certificate, &tls_key, |problem| {
        ConfigError::invalid(&dir.join(CLUSTER_FILE), "activator.certificate", problem)
    })?;
    let keys: Vec<String> = secrets
        .activator_keys
        .iter()
        .map(|k| hex_encode(k))
        .collect();
    let key_file = activator_key_file(tls_key, &keys);
    write_key_file(&dir.join(ACTIVATOR_KEYS_FILE), &key_file)
}
