//! Writing a fresh cluster directory: every secret is drawn here, once.

use super::keys::{ClientKeyFile, PeerKey, ReplicaKeyFile};
use super::{
    AppConfig, CLIENT_KEYS_FILE, CLUSTER_FILE, ClusterConfig, ConfigError, ReplicaConfig,
    hex_encode, replica_keys_file,
};
use crate::crypto::signing_key_from_bytes;
use crate::ids::{AppId, ReplicaId};
use crate::params::ProtocolParams;
use rand::RngExt as _;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// What [`init_cluster`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// Faults tolerated; overrides `params.f`. The cluster gets 3f+1 replicas.
    pub f: usize,
    /// Replica i listens on 127.0.0.1:(base_port + i).
    pub base_port: u16,
    /// Client ids to provision: 0..clients.
    pub clients: u64,
    /// App names, given ids 0.. in this order.
    pub apps: Vec<String>,
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
            params: ProtocolParams::default(),
        }
    }
}

const CLUSTER_FILE_HEADER: &str = "\
# zz cluster configuration, written by `zz init`. Public: every node and client reads it.
# Secrets (signing keys, session keys, TLS private keys) live in keys/, readable by owner only.
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

fn create_dir(path: &Path, secret: bool) -> Result<(), ConfigError> {
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

/// Create a new cluster in `dir`: draw every secret, write the certificates, the key files
/// and `cluster.toml`, and return the configuration as loaded back from disk.
///
/// Refuses if `dir/cluster.toml` exists, so an existing cluster's keys are never replaced.
/// `cluster.toml` is written last: a directory without it holds no usable cluster, and a
/// failed init can be retried.
pub fn init_cluster(dir: &Path, options: InitOptions) -> Result<ClusterConfig, ConfigError> {
    let cluster_path = dir.join(CLUSTER_FILE);
    if cluster_path.exists() {
        return Err(ConfigError::AlreadyExists { path: cluster_path });
    }
    let protocol = ProtocolParams {
        f: options.f,
        ..options.params
    };
    let replica_count = protocol.replica_count();
    let last_port = u32::from(options.base_port) + replica_count as u32 - 1;
    if options.base_port == 0 || last_port > u32::from(u16::MAX) {
        let problem = format!(
            "{} replicas need ports {}..={last_port}, which must lie in 1..=65535",
            replica_count, options.base_port
        );
        return Err(ConfigError::invalid(&cluster_path, "base_port", problem));
    }

    let mut rng = rand::rng();
    let signing_seeds: Vec<[u8; 32]> = (0..replica_count).map(|_| random_key(&mut rng)).collect();
    let client_masters: Vec<[u8; 32]> = (0..replica_count).map(|_| random_key(&mut rng)).collect();
    // One key per unordered pair, written into both replicas' files.
    let mut pair_keys = BTreeMap::new();
    for low in 0..replica_count {
        for high in low + 1..replica_count {
            pair_keys.insert((low, high), random_key(&mut rng));
        }
    }

    let replicas: Vec<ReplicaConfig> = (0..replica_count)
        .map(|index| ReplicaConfig {
            id: ReplicaId(index as u32),
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, options.base_port + index as u16)),
            verifying_key: hex_encode(
                signing_key_from_bytes(signing_seeds[index])
                    .verifying_key()
                    .as_bytes(),
            ),
            certificate: PathBuf::from(format!("certs/replica-{index}.pem")),
        })
        .collect();
    let config = ClusterConfig {
        clients: options.clients,
        protocol,
        replicas,
        apps: options
            .apps
            .iter()
            .enumerate()
            .map(|(index, name)| AppConfig {
                id: AppId(index as u32),
                name: name.clone(),
            })
            .collect(),
    };
    // Reject a bad option before anything is written.
    config.validate_contents(dir)?;

    create_dir(dir, false)?;
    create_dir(&dir.join("certs"), false)?;
    create_dir(&dir.join("keys"), true)?;
    for (index, replica) in config.replicas.iter().enumerate() {
        // Dialers pin the certificate itself, so the names only need to satisfy TLS.
        let names = vec!["localhost".to_string(), Ipv4Addr::LOCALHOST.to_string()];
        let certified = rcgen::generate_simple_self_signed(names).map_err(|error| {
            ConfigError::Certificate {
                replica: replica.id,
                problem: error.to_string(),
            }
        })?;
        write_file(
            &dir.join(&replica.certificate),
            certified.cert.pem().as_bytes(),
            false,
        )?;
        let tls_key = PathBuf::from(format!("keys/replica-{index}.key.pem"));
        write_file(
            &dir.join(&tls_key),
            certified.signing_key.serialize_pem().as_bytes(),
            true,
        )?;

        let peers = (0..replica_count)
            .filter(|&peer| peer != index)
            .map(|peer| PeerKey {
                replica: ReplicaId(peer as u32),
                key: hex_encode(&pair_keys[&(index.min(peer), index.max(peer))]),
            })
            .collect();
        let key_file = ReplicaKeyFile {
            replica: replica.id,
            signing_key: hex_encode(&signing_seeds[index]),
            client_master: hex_encode(&client_masters[index]),
            tls_key,
            peers,
        };
        let path = dir.join(replica_keys_file(replica.id));
        let text = format!("{KEY_FILE_HEADER}\n{}", to_toml(&path, &key_file)?);
        write_file(&path, text.as_bytes(), true)?;
    }
    let clients_path = dir.join(CLIENT_KEYS_FILE);
    let client_file = ClientKeyFile {
        client_masters: client_masters
            .iter()
            .map(|master| hex_encode(master))
            .collect(),
    };
    let text = format!(
        "{KEY_FILE_HEADER}\n{}",
        to_toml(&clients_path, &client_file)?
    );
    write_file(&clients_path, text.as_bytes(), true)?;

    let text = format!(
        "{CLUSTER_FILE_HEADER}\n{}",
        to_toml(&cluster_path, &config)?
    );
    write_file(&cluster_path, text.as_bytes(), false)?;
    ClusterConfig::load(dir)
}
