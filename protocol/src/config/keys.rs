//! The secret key files under `keys/`, and the [`NodeKeys`] they load into.
//!
//! `keys/replica-<i>/keys.toml` holds what replica i alone knows: its Ed25519 signing key, its
//! client master (from which it derives any client's key), one pairwise session key per
//! other replica and per execution replica, and the path of its TLS private key.
//! `keys/execution-<i>/keys.toml` holds the same for execution replica i, less the signing key
//! (an execution replica's word counts through f+1 matching copies, never a signature):
//! its client master and one pairwise key per agreement replica. `keys/clients.toml` holds
//! every replica's and execution replica's client master, indexed by id, so that a client
//! process can derive its keys with each of them, and the master each client's signing key
//! is derived from. Whoever reads `clients.toml` can act as any client: it is the
//! provisioning secret of a local platform, not something to hand to an untrusted client
//! (which should instead be given only the keys derived for its own id). The clients'
//! verifying keys are public, in `certs/clients.toml`.

use super::execution::execution_keys_file;
use super::{
    CLIENT_KEYS_FILE, CLIENT_PUBLIC_FILE, ClusterConfig, ConfigError, decode_verifying_key,
    hex_decode_32, read_toml,
};
use crate::crypto::{
    ClientVerifyingKeys, NodeKeys, SessionKey, client_key, client_signing_key,
    signing_key_from_bytes,
};
use crate::ids::{ClientId, ExecutionId, NodeId, ReplicaId};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The contents of `keys/replica-<i>/keys.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaKeyFile {
    /// Whose keys these are; must match the file name.
    pub replica: ReplicaId,
    /// Hex of the 32-byte Ed25519 signing key seed.
    pub signing_key: String,
    /// Hex of the 32-byte client master.
    pub client_master: String,
    /// The PEM TLS private key, relative to the cluster directory.
    pub tls_key: PathBuf,
    /// One `[[peers]]` entry per other replica.
    pub peers: Vec<PeerKey>,
    /// One `[[execution_peers]]` entry per execution replica; absent from files written
    /// before execution replicas were configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub execution_peers: Vec<ExecutionPeerKey>,
    /// Hex of the key shared with the activator; absent when the cluster has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activator_key: Option<String>,
}

/// The contents of `keys/execution-<i>/keys.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionKeyFile {
    /// Whose keys these are; must match the file name.
    pub execution: ExecutionId,
    /// Hex of the 32-byte client master.
    pub client_master: String,
    /// The PEM TLS private key, relative to the cluster directory.
    pub tls_key: PathBuf,
    /// One `[[peers]]` entry per agreement replica.
    pub peers: Vec<PeerKey>,
    /// One `[[execution_peers]]` entry per other execution replica of the same app (for
    /// state transfer between them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub execution_peers: Vec<ExecutionPeerKey>,
}

/// The session key a replica shares with one execution replica.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionPeerKey {
    pub execution: ExecutionId,
    /// Hex of the 32-byte pairwise key; the execution replica's file holds the same key.
    pub key: String,
}

/// The session key shared with one (agreement) replica.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerKey {
    pub replica: ReplicaId,
    /// Hex of the 32-byte pairwise key; the peer's file holds the same key for this replica.
    pub key: String,
}

/// The contents of `keys/clients.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKeyFile {
    /// Hex of each replica's 32-byte client master, indexed by replica id.
    pub client_masters: Vec<String>,
    /// Hex of each execution replica's 32-byte client master, indexed by execution id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub execution_client_masters: Vec<String>,
    /// Hex of the 32-byte master every client's request-signing key is derived from.
    pub signing_master: String,
}

/// The contents of `certs/clients.toml`: public, read by every agreement replica.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPublicFile {
    /// Hex of client i's 32-byte Ed25519 request-verifying key, for i in 0..clients.
    pub verifying_keys: Vec<String>,
}

/// Every provisioned client's request-verifying key, from `certs/clients.toml`; it must
/// hold one per client id of the configuration.
pub fn load_client_verifying_keys(
    dir: &Path,
    config: &ClusterConfig,
) -> Result<ClientVerifyingKeys, ConfigError> {
    let path = dir.join(CLIENT_PUBLIC_FILE);
    let file: ClientPublicFile = read_toml(&path)?;
    if file.verifying_keys.len() as u64 != config.clients {
        let problem = format!(
            "needs one key per client (cluster.toml has clients = {}), found {}",
            config.clients,
            file.verifying_keys.len()
        );
        return Err(ConfigError::invalid(&path, "verifying_keys", problem));
    }
    let keys = (file.verifying_keys.iter().enumerate())
        .map(|(index, hex)| {
            decode_verifying_key(hex).map_err(|problem| {
                ConfigError::invalid(&path, format!("verifying_keys[{index}]"), problem)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientVerifyingKeys::new(keys))
}

pub(crate) fn key_at(path: &Path, field: &str, hex: &str) -> Result<[u8; 32], ConfigError> {
    hex_decode_32(hex).map_err(|problem| ConfigError::invalid(path, field, problem))
}

fn check_replica(config: &ClusterConfig, id: ReplicaId) -> Result<(), ConfigError> {
    if id.index() >= config.replica_count() {
        return Err(ConfigError::UnknownReplica {
            replica: id,
            replica_count: config.replica_count(),
        });
    }
    Ok(())
}

fn read_replica_file(
    dir: &Path,
    config: &ClusterConfig,
    id: ReplicaId,
) -> Result<(PathBuf, ReplicaKeyFile), ConfigError> {
    check_replica(config, id)?;
    let path = dir.join(super::replica_keys_file(id));
    let file: ReplicaKeyFile = read_toml(&path)?;
    if file.replica != id {
        let problem = format!("file is for replica {}, expected {}", file.replica.0, id.0);
        return Err(ConfigError::invalid(&path, "replica", problem));
    }
    Ok((path, file))
}

/// Replica `id`'s secret keys, checked against `config`.
pub(crate) fn replica_keys(
    dir: &Path,
    config: &ClusterConfig,
    id: ReplicaId,
) -> Result<NodeKeys, ConfigError> {
    let (path, file) = read_replica_file(dir, config, id)?;
    let signing_key = signing_key_from_bytes(key_at(&path, "signing_key", &file.signing_key)?);
    // A key file from another cluster (or a stale one) would make every signature fail far
    // from the cause; catch it here.
    if config.verifying_keys().0[id.index()] != signing_key.verifying_key() {
        let problem = format!(
            "does not match replicas[{}].verifying_key in {}",
            id.0,
            super::CLUSTER_FILE
        );
        return Err(ConfigError::invalid(&path, "signing_key", problem));
    }
    let client_master = SessionKey(key_at(&path, "client_master", &file.client_master)?);
    let mut peer_keys = BTreeMap::new();
    for (index, peer) in file.peers.iter().enumerate() {
        let field = |name: &str| format!("peers[{index}].{name}");
        if peer.replica == id || peer.replica.index() >= config.replica_count() {
            let problem = format!("{} is not another replica of this cluster", peer.replica.0);
            return Err(ConfigError::invalid(&path, field("replica"), problem));
        }
        let key = SessionKey(key_at(&path, &field("key"), &peer.key)?);
        if peer_keys
            .insert(NodeId::Replica(peer.replica), key)
            .is_some()
        {
            let problem = format!("duplicate replica {}", peer.replica.0);
            return Err(ConfigError::invalid(&path, field("replica"), problem));
        }
    }
    if peer_keys.len() != config.replica_count() - 1 {
        let problem = format!(
            "needs a key for each of the {} other replicas, found {}",
            config.replica_count() - 1,
            peer_keys.len()
        );
        return Err(ConfigError::invalid(&path, "peers", problem));
    }
    let execution_count = config.execution_count();
    for (index, peer) in file.execution_peers.iter().enumerate() {
        let field = |name: &str| format!("execution_peers[{index}].{name}");
        if peer.execution.index() >= execution_count {
            let problem = format!(
                "{} is not an execution replica of this cluster (0..{execution_count})",
                peer.execution.0
            );
            return Err(ConfigError::invalid(&path, field("execution"), problem));
        }
        let key = SessionKey(key_at(&path, &field("key"), &peer.key)?);
        if peer_keys
            .insert(NodeId::Execution(peer.execution), key)
            .is_some()
        {
            let problem = format!("duplicate execution replica {}", peer.execution.0);
            return Err(ConfigError::invalid(&path, field("execution"), problem));
        }
    }
    if file.execution_peers.len() != execution_count {
        let problem = format!(
            "needs a key for each of the {execution_count} execution replicas, found {}",
            file.execution_peers.len()
        );
        return Err(ConfigError::invalid(&path, "execution_peers", problem));
    }
    match (&file.activator_key, &config.activator) {
        (Some(hex), Some(_)) => {
            let key = SessionKey(key_at(&path, "activator_key", hex)?);
            peer_keys.insert(NodeId::Activator(super::LOCAL_ACTIVATOR), key);
        }
        (None, Some(_)) => {
            let problem = "missing, but cluster.toml configures an activator";
            return Err(ConfigError::invalid(&path, "activator_key", problem));
        }
        (_, None) => {}
    }
    Ok(NodeKeys {
        id: NodeId::Replica(id),
        peer_keys,
        client_master: Some(client_master),
        signing_key: Some(signing_key),
    })
}

fn check_execution(config: &ClusterConfig, id: ExecutionId) -> Result<(), ConfigError> {
    if id.index() >= config.execution_count() {
        return Err(ConfigError::UnknownExecution {
            execution: id,
            execution_count: config.execution_count(),
        });
    }
    Ok(())
}

fn read_execution_file(
    dir: &Path,
    config: &ClusterConfig,
    id: ExecutionId,
) -> Result<(PathBuf, ExecutionKeyFile), ConfigError> {
    check_execution(config, id)?;
    let path = dir.join(execution_keys_file(id));
    let file: ExecutionKeyFile = read_toml(&path)?;
    if file.execution != id {
        let problem = format!(
            "file is for execution replica {}, expected {}",
            file.execution.0, id.0
        );
        return Err(ConfigError::invalid(&path, "execution", problem));
    }
    Ok((path, file))
}

/// The `[[peers]]` of a node that shares a key with every agreement replica (an execution
/// replica, the activator): exactly one valid key per replica.
pub(crate) fn every_replica_key(
    path: &Path,
    config: &ClusterConfig,
    peers: &[PeerKey],
) -> Result<BTreeMap<NodeId, SessionKey>, ConfigError> {
    let replica_count = config.replica_count();
    let mut peer_keys = BTreeMap::new();
    for (index, peer) in peers.iter().enumerate() {
        let field = |name: &str| format!("peers[{index}].{name}");
        if peer.replica.index() >= replica_count {
            let problem = format!(
                "{} is not a replica of this cluster (0..{replica_count})",
                peer.replica.0
            );
            return Err(ConfigError::invalid(path, field("replica"), problem));
        }
        let key = SessionKey(key_at(path, &field("key"), &peer.key)?);
        if peer_keys
            .insert(NodeId::Replica(peer.replica), key)
            .is_some()
        {
            let problem = format!("duplicate replica {}", peer.replica.0);
            return Err(ConfigError::invalid(path, field("replica"), problem));
        }
    }
    if peer_keys.len() != replica_count {
        let problem = format!(
            "needs a key for each of the {replica_count} replicas, found {}",
            peer_keys.len()
        );
        return Err(ConfigError::invalid(path, "peers", problem));
    }
    Ok(peer_keys)
}

/// Execution replica `id`'s secret keys, checked against `config`: its client master,
/// exactly one key per agreement replica, and one per other execution replica of its app.
/// It holds no signing key.
pub(crate) fn execution_keys(
    dir: &Path,
    config: &ClusterConfig,
    id: ExecutionId,
) -> Result<NodeKeys, ConfigError> {
    let (path, file) = read_execution_file(dir, config, id)?;
    let client_master = SessionKey(key_at(&path, "client_master", &file.client_master)?);
    let mut peer_keys = every_replica_key(&path, config, &file.peers)?;
    for (index, peer) in file.execution_peers.iter().enumerate() {
        let field = |name: &str| format!("execution_peers[{index}].{name}");
        let same_app =
            config.execution(peer.execution).map(|e| e.app) == config.execution(id).map(|e| e.app);
        if peer.execution == id || !same_app {
            let problem = format!(
                "{} is not another execution replica of the same app",
                peer.execution.0
            );
            return Err(ConfigError::invalid(&path, field("execution"), problem));
        }
        let key = SessionKey(key_at(&path, &field("key"), &peer.key)?);
        if peer_keys
            .insert(NodeId::Execution(peer.execution), key)
            .is_some()
        {
            let problem = format!("duplicate execution replica {}", peer.execution.0);
            return Err(ConfigError::invalid(&path, field("execution"), problem));
        }
    }
    Ok(NodeKeys {
        id: NodeId::Execution(id),
        peer_keys,
        client_master: Some(client_master),
        signing_key: None,
    })
}

/// Client `id`'s keys: one per replica and one per execution replica, each derived from
/// that node's client master.
pub(crate) fn client_keys(
    dir: &Path,
    config: &ClusterConfig,
    id: ClientId,
) -> Result<NodeKeys, ConfigError> {
    let mut keys = client_range_keys(dir, config, id, 1)?;
    Ok(keys.pop().expect("one client asked for"))
}

/// The keys of clients `first..first + count`, from one reading of the client key file.
/// Fails for an id at or above the configured number of clients.
pub fn client_range_keys(
    dir: &Path,
    config: &ClusterConfig,
    first: ClientId,
    count: u32,
) -> Result<Vec<NodeKeys>, ConfigError> {
    let end = first.0.saturating_add(u64::from(count));
    if end > config.clients {
        return Err(ConfigError::UnknownClient {
            client: ClientId(end - 1),
            clients: config.clients,
        });
    }
    let path = dir.join(CLIENT_KEYS_FILE);
    let file: ClientKeyFile = read_toml(&path)?;
    if file.client_masters.len() != config.replica_count() {
        let problem = format!(
            "needs one master per replica ({}), found {}",
            config.replica_count(),
            file.client_masters.len()
        );
        return Err(ConfigError::invalid(&path, "client_masters", problem));
    }
    if file.execution_client_masters.len() != config.execution_count() {
        let problem = format!(
            "needs one master per execution replica ({}), found {}",
            config.execution_count(),
            file.execution_client_masters.len()
        );
        return Err(ConfigError::invalid(
            &path,
            "execution_client_masters",
            problem,
        ));
    }
    let mut masters = Vec::new();
    for (index, hex) in file.client_masters.iter().enumerate() {
        let master = SessionKey(key_at(&path, &format!("client_masters[{index}]"), hex)?);
        masters.push((NodeId::Replica(ReplicaId(index as u32)), master));
    }
    for (index, hex) in file.execution_client_masters.iter().enumerate() {
        let field = format!("execution_client_masters[{index}]");
        let master = SessionKey(key_at(&path, &field, hex)?);
        masters.push((NodeId::Execution(ExecutionId(index as u32)), master));
    }
    let signing_master = SessionKey(key_at(&path, "signing_master", &file.signing_master)?);
    let keys_of = |id: ClientId| NodeKeys {
        id: NodeId::Client(id),
        peer_keys: (masters.iter())
            .map(|(node, master)| (*node, client_key(master, id)))
            .collect(),
        client_master: None,
        signing_key: Some(client_signing_key(&signing_master, id)),
    };
    Ok((first.0..end)
        .map(|client| keys_of(ClientId(client)))
        .collect())
}

/// Replica `id`'s secret keys from `dir/keys/replica-<id>/keys.toml`, checked against the
/// cluster's configuration (its signing key must match its published verifying key, and it
/// must hold a key for every other replica).
pub fn load_replica_keys(dir: &Path, id: ReplicaId) -> Result<NodeKeys, ConfigError> {
    let config = ClusterConfig::load(dir)?;
    replica_keys(dir, &config, id)
}

/// Execution replica `id`'s secret keys from `dir/keys/execution-<id>/keys.toml`, checked
/// against the cluster's configuration (it must hold a key for every agreement replica).
/// Execution replicas have no signing key.
pub fn load_execution_keys(dir: &Path, id: ExecutionId) -> Result<NodeKeys, ConfigError> {
    let config = ClusterConfig::load(dir)?;
    execution_keys(dir, &config, id)
}

/// Client `id`'s keys, derived from `dir/keys/clients.toml`. Fails for an id at or above the
/// configured number of clients.
pub fn load_client_keys(dir: &Path, id: ClientId) -> Result<NodeKeys, ConfigError> {
    let config = ClusterConfig::load(dir)?;
    client_keys(dir, &config, id)
}

/// Replica `id`'s TLS private key, from the path its key file names.
pub fn load_tls_key(
    dir: &Path,
    config: &ClusterConfig,
    id: ReplicaId,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let (path, file) = read_replica_file(dir, config, id)?;
    read_tls_key(dir, &path, &file.tls_key)
}

/// Execution replica `id`'s TLS private key, from the path its key file names.
pub fn load_execution_tls_key(
    dir: &Path,
    config: &ClusterConfig,
    id: ExecutionId,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let (path, file) = read_execution_file(dir, config, id)?;
    read_tls_key(dir, &path, &file.tls_key)
}

/// The PEM private key at `tls_key` (relative to `dir`), named by the key file `key_file`.
pub(crate) fn read_tls_key(
    dir: &Path,
    key_file: &Path,
    tls_key: &Path,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let key_path = dir.join(tls_key);
    let pem = std::fs::read(&key_path).map_err(|source| ConfigError::io(&key_path, source))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        let problem = format!("{}: no PEM private key: {error}", key_path.display());
        ConfigError::invalid(key_file, "tls_key", problem)
    })
}
