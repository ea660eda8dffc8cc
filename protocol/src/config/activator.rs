//! The activator in the cluster configuration: its `[activator]` entry (address and
//! certificate) and its key file `keys/activator/keys.toml`, with one pairwise key per
//! agreement replica. The activator is trusted like a host's replica control daemon: its
//! failure may stop activation, never safety, so it holds no signing key and no client
//! master.

use super::keys::{PeerKey, every_replica_key, read_tls_key};
use super::{CLUSTER_FILE, ClusterConfig, ConfigError, read_certificate, read_toml};
use crate::crypto::NodeKeys;
use crate::envelope::Endpoint;
use crate::ids::{ActivatorId, NodeId, ReplicaId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The activator's key file, relative to the cluster directory.
pub const ACTIVATOR_KEYS_FILE: &str = "keys/activator/keys.toml";
/// The one activator of a local platform (one host).
pub const LOCAL_ACTIVATOR: ActivatorId = ActivatorId(0);

/// The `[activator]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivatorConfig {
    /// Where the activator listens for QUIC connections from agreement replicas.
    pub address: SocketAddr,
    /// The PEM self-signed TLS certificate, relative to the cluster directory.
    pub certificate: PathBuf,
    /// How long an app must be free of alarms before the replicas woken for it are paused
    /// again and it is back to f+1 active.
    #[serde(default = "default_quiet_ms")]
    pub quiet_ms: u64,
    /// How often the activator announces each app's membership again.
    #[serde(default = "default_announce_ms")]
    pub announce_ms: u64,
}

fn default_quiet_ms() -> u64 {
    10_000
}

fn default_announce_ms() -> u64 {
    1_000
}

/// The contents of `keys/activator/keys.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivatorKeyFile {
    /// The PEM TLS private key, relative to the cluster directory.
    pub tls_key: PathBuf,
    /// One `[[peers]]` entry per agreement replica.
    pub peers: Vec<PeerKey>,
}

fn no_activator(dir: &Path) -> ConfigError {
    ConfigError::invalid(
        &dir.join(CLUSTER_FILE),
        "activator",
        "missing: this cluster has no activator (written by an older `zz init`?)",
    )
}

impl ClusterConfig {
    /// The activator's pinned TLS certificate, in DER.
    pub fn load_activator_certificate(
        &self,
        dir: &Path,
    ) -> Result<CertificateDer<'static>, ConfigError> {
        let activator = self.activator.as_ref().ok_or_else(|| no_activator(dir))?;
        read_certificate(&dir.join(&activator.certificate)).map_err(|problem| {
            ConfigError::invalid(&dir.join(CLUSTER_FILE), "activator.certificate", problem)
        })
    }
}

fn read_activator_file(dir: &Path) -> Result<(PathBuf, ActivatorKeyFile), ConfigError> {
    let path = dir.join(ACTIVATOR_KEYS_FILE);
    let file: ActivatorKeyFile = read_toml(&path)?;
    Ok((path, file))
}

/// The activator's keys: exactly one per agreement replica.
pub(crate) fn activator_keys(dir: &Path, config: &ClusterConfig) -> Result<NodeKeys, ConfigError> {
    if config.activator.is_none() {
        return Err(no_activator(dir));
    }
    let (path, file) = read_activator_file(dir)?;
    let peer_keys = every_replica_key(&path, config, &file.peers)?;
    Ok(NodeKeys {
        id: NodeId::Activator(LOCAL_ACTIVATOR),
        peer_keys,
        client_master: None,
        signing_key: None,
    })
}

/// The activator's TLS private key.
pub fn load_activator_tls_key(dir: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let (path, file) = read_activator_file(dir)?;
    read_tls_key(dir, &path, &file.tls_key)
}

/// The activator's configuration and endpoint.
pub fn endpoint_for_activator(dir: &Path) -> Result<(ClusterConfig, Endpoint), ConfigError> {
    let config = ClusterConfig::load(dir)?;
    let keys = activator_keys(dir, &config)?;
    let endpoint = Endpoint::new(keys, config.verifying_keys(), config.protocol.clone())
        .with_clients_provisioned(config.clients);
    Ok((config, endpoint))
}

/// The key file for an activator sharing `keys[i]` with replica i.
pub fn activator_key_file(tls_key: PathBuf, keys: &[String]) -> ActivatorKeyFile {
    ActivatorKeyFile {
        tls_key,
        peers: keys
            .iter()
            .enumerate()
            .map(|(index, key)| PeerKey {
                replica: ReplicaId(index as u32),
                key: key.clone(),
            })
            .collect(),
    }
}
