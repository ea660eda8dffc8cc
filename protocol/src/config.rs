//! Cluster configuration: the public `cluster.toml` every node reads and the secret key files
//! under `keys/`, their types, reading and validation. Writing a fresh cluster directory
//! (`zz init`) is `zz_cluster::init_cluster`'s job.
//!
//! A cluster directory looks like this (all paths relative to it):
//!
//! ```text
//! cluster.toml               public: protocol parameters, replicas, apps, execution
//!                            replicas, client count
//! certs/replica-<i>.pem      public: replica i's self-signed TLS certificate (pinned by dialers)
//! certs/execution-<i>.pem    public: execution replica i's self-signed TLS certificate
//! keys/<node>/               secret: one node's folder, owner-only; a container mounts its own
//! keys/replica-<i>/keys.toml secret: replica i's signing key, client master and pairwise keys
//!                            (with every other replica and every execution replica)
//! keys/replica-<i>/tls.key.pem       secret: replica i's TLS private key
//! keys/execution-<i>/keys.toml       secret: execution replica i's client master and its
//!                            pairwise key with each agreement replica (it signs nothing)
//! keys/execution-<i>/tls.key.pem     secret: execution replica i's TLS private key
//! certs/activator.pem        public: the activator's TLS certificate
//! keys/activator/keys.toml   secret: the activator's pairwise key with each agreement replica
//! certs/clients.toml         public: every client id's request-verifying key
//! keys/clients.toml          secret: every replica's and execution replica's client master
//!                            and the clients' signing master (provisions all clients)
//! clients/<name>.toml        secret: one client's keys, for a range of ids (its own only)
//! ```
//!
//! Calling protocol: `zz_cluster::init_cluster` once; then each node calls [`ClusterConfig::load`] and
//! [`load_replica_keys`], [`load_execution_keys`] or [`load_client_keys`] (or the
//! [`endpoint_for_replica`], [`endpoint_for_execution`] and [`endpoint_for_client`]
//! shortcuts). Loading validates everything it reads, and every error
//! names the file and the field at fault, e.g. `cluster.toml: replicas[2].address: duplicate
//! address 127.0.0.1:7002`.

mod activator;
mod client_file;
mod execution;
#[cfg(test)]
mod execution_tests;
mod keys;
#[cfg(test)]
pub(crate) mod tests;

pub use activator::{
    ACTIVATOR_KEYS_FILE, ActivatorConfig, ActivatorKeyFile, LOCAL_ACTIVATOR, activator_key_file,
    endpoint_for_activator, load_activator_tls_key,
};
pub use client_file::{
    CLIENT_NAME_BYTES_MAX, CLIENTS_ALLOCATED_FILE, CLIENTS_DIR, ClientFile, DEFAULT_CLIENT,
    OwnClientKeys, client_file_path, list_client_files, load_client_file, next_client_ids,
    read_client_file, valid_client_name,
};
pub use execution::{
    ExecutionReplicaConfig, HOST_LABEL_BYTES_MAX, endpoint_for_execution, execution_keys_file,
};
pub use keys::{
    ClientKeyFile, ClientPublicFile, ExecutionKeyFile, ExecutionPeerKey, PeerKey, ReplicaKeyFile,
    client_range_keys, load_client_keys, load_client_verifying_keys, load_execution_keys,
    load_execution_tls_key, load_replica_keys, load_tls_key,
};

use crate::crypto::{Ed25519VerifyingKey, ReplicaVerifyingKeys};
use crate::envelope::Endpoint;
use crate::ids::{AppId, ClientId, ExecutionId, ReplicaId};
use crate::params::ProtocolParams;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The public configuration file, relative to the cluster directory.
pub const CLUSTER_FILE: &str = "cluster.toml";
/// The secret file provisioning clients, relative to the cluster directory.
pub const CLIENT_KEYS_FILE: &str = "keys/clients.toml";
/// The public file of every client's request-verifying key, relative to the cluster
/// directory.
pub const CLIENT_PUBLIC_FILE: &str = "certs/clients.toml";
/// Bytes in an app name at most; names end up in paths, URLs and log lines.
pub const APP_NAME_BYTES_MAX: usize = 64;

/// The cluster's public configuration: the contents of `cluster.toml`.
///
/// Field order matters for the TOML writer: plain values before tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The directory's format ([`CLUSTER_FORMAT`]): a directory written by an older zz holds
    /// state files this one cannot read, so it is refused by name rather than overwritten.
    pub format: u32,
    /// Client ids provisioned: clients 0..clients may connect.
    pub clients: u64,
    /// The `[protocol]` table; parameters left out take their defaults.
    pub protocol: ProtocolParams,
    /// The 3f+1 agreement replicas, one `[[replicas]]` entry each; sorted by id once loaded.
    pub replicas: Vec<ReplicaConfig>,
    /// The hosted applications, one `[[apps]]` entry each.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The execution replicas of every app, one `[[executions]]` entry each; sorted by id
    /// once loaded. Left out of the file when there are none, as in files written before
    /// execution replicas were configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<ExecutionReplicaConfig>,
    /// The host's activator, which wakes standbys; absent in clusters without standbys
    /// management.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activator: Option<ActivatorConfig>,
    /// The host's HTTP gateway; absent: it listens on a port of the system's choosing on
    /// 127.0.0.1 (`zz up` and `zz status` show where).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayConfig>,
}

/// The `[gateway]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens for HTTP; absent: a port of the system's choosing on
    /// 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Requests that may wait for one of the gateway's client ids at most; more are
    /// answered 503. Absent: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_max: Option<usize>,
}

/// One `[[replicas]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    pub id: ReplicaId,
    /// Where the replica listens for QUIC connections.
    pub address: SocketAddr,
    /// Hex of the replica's 32-byte Ed25519 public key.
    pub verifying_key: String,
    /// The PEM self-signed TLS certificate, relative to the cluster directory; dialers pin it.
    pub certificate: PathBuf,
}

/// One `[[apps]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: AppId,
    /// Non-empty, `[a-z0-9-]` only.
    pub name: String,
    /// What the app is (kv, bank, ...), when its name is not that: several instances of
    /// one kind, each with its own name, execution group and standby pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How a woken replica of this app gets the state of the checkpoint it joins from.
    #[serde(default, skip_serializing_if = "StateFetch::is_lazy")]
    pub state_fetch: StateFetch,
    /// Megabytes of data the app starts with (kv only: a deterministic data set every
    /// replica builds instead of ordering every write; for benchmarks).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preload_mb: u64,
    /// The app's state hashes into 2^bucket_bits buckets, the unit of lazy fetch: finer
    /// buckets let a woken replica fetch less before it serves. Absent: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_bits: Option<u8>,
}

impl AppConfig {
    /// What the app is: its kind, or its name when it has none.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(&self.name)
    }
}

/// One `--apps` entry: `KIND` (an app named after its kind) or `KIND:NAME`. Its kind
/// and name.
pub fn parse_app_spec(spec: &str) -> (&str, &str) {
    spec.split_once(':').unwrap_or((spec, spec))
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// How a woken execution replica gets its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateFetch {
    /// Serve at once, fetching each bucket when a request touches it (and the rest in
    /// the background): ZZ's on-demand fetch.
    #[default]
    Lazy,
    /// Fetch the whole state before executing anything: the baseline ZZ improves on.
    Eager,
}

impl StateFetch {
    pub fn is_lazy(&self) -> bool {
        *self == StateFetch::Lazy
    }
}

/// What is wrong with a configuration or key file. Each message names the file, and for a
/// bad value the field inside it, so an operator can go straight to it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading, writing or creating a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not TOML, or does not match its schema (missing or unknown field, wrong type).
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A value breaks a rule; `field` is its path inside the file, e.g. `replicas[2].address`.
    #[error("{}: {field}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
    /// The directory was written by another zz, whose state files this one cannot read.
    #[error(
        "{}: written by {written} (this zz reads format {CLUSTER_FORMAT}); its state files cannot be read here: move {} aside (or back it up) and run `zz up --dir {}` to create a new platform",
        path.display(),
        dir.display(),
        dir.display()
    )]
    OtherFormat {
        path: PathBuf,
        dir: PathBuf,
        /// "an older zz (no format)" or "format N".
        written: String,
    },
    /// `zz_cluster::init_cluster` found a cluster already there and will not overwrite its keys.
    #[error("{}: already exists; refusing to overwrite an existing cluster", path.display())]
    AlreadyExists { path: PathBuf },
    /// A replica id outside the configured cluster.
    #[error("replica {replica} is not in the cluster of {replica_count} replicas")]
    UnknownReplica {
        replica: ReplicaId,
        replica_count: usize,
    },
    /// A client id at or above the configured `clients`.
    #[error("client {client} is not provisioned: cluster.toml has clients = {clients}")]
    UnknownClient { client: ClientId, clients: u64 },
    /// Generating a TLS certificate failed.
    #[error("generating the TLS certificate of replica {replica}: {problem}")]
    Certificate { replica: ReplicaId, problem: String },
    /// An execution replica id outside the configured `[[executions]]`.
    #[error(
        "execution replica {execution} is not in the cluster of {execution_count} execution replicas"
    )]
    UnknownExecution {
        execution: ExecutionId,
        execution_count: usize,
    },
    /// Generating an execution replica's TLS certificate failed.
    #[error("generating the TLS certificate of execution replica {execution}: {problem}")]
    ExecutionCertificate {
        execution: ExecutionId,
        problem: String,
    },
}

impl ConfigError {
    pub fn io(path: &Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn invalid(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The cluster directory format this zz writes and reads: 2 since agreement records are
/// framed with a header and checksums and execution replicas keep their state on disk; 3
/// since clients sign their requests (`certs/clients.toml`, a signing master in
/// `keys/clients.toml`); 4 since each node's files sit in folders of its own; 5 since view
/// changes and new views name batches by digest (agreement records of format 4 cannot be
/// read).
pub const CLUSTER_FORMAT: u32 = 5;

/// Refuse a `cluster.toml` of another format before reading it as this one's.
fn check_format(dir: &Path) -> Result<(), ConfigError> {
    let path = dir.join(CLUSTER_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::io(&path, source))?;
    // A file that is not TOML at all gets the parser's error, with its position, later.
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return Ok(());
    };
    let written = match table.get("format") {
        None => "an older zz (no format)".to_string(),
        Some(toml::Value::Integer(format)) if *format == i64::from(CLUSTER_FORMAT) => {
            return Ok(());
        }
        Some(format) => format!("format {format}"),
    };
    Err(ConfigError::OtherFormat {
        path,
        dir: dir.to_path_buf(),
        written,
    })
}

/// Read and parse a TOML file; a parse error carries the file, line and column.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::io(path, source))?;
    toml::from_str(&text).map_err(|error| {
        let position = match error.span() {
            Some(span) => {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
                let column = before
                    .iter()
                    .rev()
                    .take_while(|&&byte| byte != b'\n')
                    .count()
                    + 1;
                format!("line {line}, column {column}: ")
            }
            None => String::new(),
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("{position}{}", error.message().trim_end()),
        }
    })
}

/// Lower-case hex of `bytes`, as key files hold keys.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// 32 bytes from 64 hex digits; the error says what is wrong, for a [`ConfigError::Invalid`].
pub(crate) fn hex_decode_32(text: &str) -> Result<[u8; 32], String> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (32 bytes), got {} characters",
            digits.len()
        ));
    }
    let mut bytes = [0u8; 32];
    for (index, pair) in digits.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16);
        let low = (pair[1] as char).to_digit(16);
        match (high, low) {
            (Some(high), Some(low)) => bytes[index] = (high * 16 + low) as u8,
            _ => return Err(format!("not hex at character {}", 2 * index)),
        }
    }
    Ok(bytes)
}

pub(crate) fn decode_verifying_key(text: &str) -> Result<Ed25519VerifyingKey, String> {
    let bytes = hex_decode_32(text)?;
    Ed25519VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "not a valid Ed25519 public key".to_string())
}

fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= APP_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// Replica `replica`'s key file, relative to the cluster directory.
pub fn replica_keys_file(replica: ReplicaId) -> PathBuf {
    node_secrets_dir(&format!("replica-{}", replica.0)).join(KEYS_FILE_NAME)
}

/// The folder of one node's secrets, relative to the cluster directory: `keys/<node>/`
/// (owner-only). A container mounts its own folder and nothing else of `keys/`.
pub fn node_secrets_dir(node: &str) -> PathBuf {
    PathBuf::from("keys").join(node)
}

/// A node's key file, in its secrets folder.
pub const KEYS_FILE_NAME: &str = "keys.toml";
/// A node's TLS private key, in its secrets folder.
pub const TLS_KEY_FILE_NAME: &str = "tls.key.pem";

impl ClusterConfig {
    /// Read `dir/cluster.toml` and validate it (see [`ClusterConfig::validate`]). The
    /// replicas and execution replicas come back sorted by id, so
    /// `replicas[i].id == ReplicaId(i)` and `executions[i].id == ExecutionId(i)`.
    pub fn load(dir: &Path) -> Result<ClusterConfig, ConfigError> {
        check_format(dir)?;
        let mut config: ClusterConfig = read_toml(&dir.join(CLUSTER_FILE))?;
        config.validate(dir)?;
        config.replicas.sort_by_key(|replica| replica.id);
        config.executions.sort_by_key(|execution| execution.id);
        Ok(config)
    }

    /// Check every rule: the protocol parameters; exactly 3f+1 replicas with ids 0..n, each
    /// once; distinct, dialable addresses; verifying keys that decode; certificate files that
    /// hold a PEM certificate; unique app ids and names of `[a-z0-9-]`; at least one client;
    /// and the `[[executions]]` rules (ids 0..m, apps that exist, addresses no other node
    /// uses, host labels, f+1 active replicas per app that has any).
    pub fn validate(&self, dir: &Path) -> Result<(), ConfigError> {
        self.validate_contents(dir)?;
        let path = dir.join(CLUSTER_FILE);
        for (index, replica) in self.replicas.iter().enumerate() {
            let cert_path = dir.join(&replica.certificate);
            if let Err(problem) = read_certificate(&cert_path) {
                let field = format!("replicas[{index}].certificate");
                return Err(ConfigError::invalid(&path, field, problem));
            }
        }
        self.validate_execution_certificates(dir, &path)
    }

    /// Every rule that needs no other file; `zz_cluster::init_cluster` checks these before
    /// writing.
    pub fn validate_contents(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(CLUSTER_FILE);
        self.protocol.validate().map_err(|error| {
            ConfigError::invalid(&path, format!("protocol.{}", error.field), error.problem)
        })?;
        if self.clients == 0 {
            return Err(ConfigError::invalid(&path, "clients", "must be at least 1"));
        }
        let replica_count = self.protocol.replica_count();
        if self.replicas.len() != replica_count {
            let problem = format!(
                "f = {} needs exactly {replica_count} replicas, found {}",
                self.protocol.f,
                self.replicas.len()
            );
            return Err(ConfigError::invalid(&path, "replicas", problem));
        }
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (index, replica) in self.replicas.iter().enumerate() {
            let field = |name: &str| format!("replicas[{index}].{name}");
            if replica.id.index() >= replica_count {
                let problem = format!("{} is outside 0..{replica_count}", replica.id.0);
                return Err(ConfigError::invalid(&path, field("id"), problem));
            }
            if !ids.insert(replica.id) {
                let problem = format!("duplicate id {}", replica.id.0);
                return Err(ConfigError::invalid(&path, field("id"), problem));
            }
            if replica.address.port() == 0 || replica.address.ip().is_unspecified() {
                let problem = format!("{} is not an address one can dial", replica.address);
                return Err(ConfigError::invalid(&path, field("address"), problem));
            }
            if !addresses.insert(replica.address) {
                let problem = format!("duplicate address {}", replica.address);
                return Err(ConfigError::invalid(&path, field("address"), problem));
            }
            decode_verifying_key(&replica.verifying_key)
                .map_err(|problem| ConfigError::invalid(&path, field("verifying_key"), problem))?;
        }
        let mut app_ids = BTreeSet::new();
        let mut app_names = BTreeSet::new();
        for (index, app) in self.apps.iter().enumerate() {
            if app.id == AppId::ORDERING_ONLY {
                let problem = format!("{} is reserved for ordering only", app.id.0);
                return Err(ConfigError::invalid(
                    &path,
                    format!("apps[{index}].id"),
                    problem,
                ));
            }
            if !app_ids.insert(app.id) {
                let problem = format!("duplicate id {}", app.id.0);
                return Err(ConfigError::invalid(
                    &path,
                    format!("apps[{index}].id"),
                    problem,
                ));
            }
            let field = format!("apps[{index}].name");
            if !valid_app_name(&app.name) {
                let problem = format!(
                    "{:?} must be 1..={APP_NAME_BYTES_MAX} characters of [a-z0-9-]",
                    app.name
                );
                return Err(ConfigError::invalid(&path, field, problem));
            }
            if !app_names.insert(app.name.as_str()) {
                let problem = format!("duplicate name {:?}", app.name);
                return Err(ConfigError::invalid(&path, field, problem));
            }
        }
        self.validate_executions(&path)
    }

    /// n = 3f+1.
    pub fn replica_count(&self) -> usize {
        self.protocol.replica_count()
    }

    /// Replica `id`'s entry. Expects a loaded configuration (sorted by id).
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaConfig> {
        self.replicas
            .get(id.index())
            .filter(|replica| replica.id == id)
    }

    /// The app called `name`.
    pub fn app_by_name(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// Every replica's Ed25519 public key, indexed by replica id.
    ///
    /// Panics if a key does not decode or the replicas are not sorted: call it on a
    /// configuration [`ClusterConfig::load`] returned, which checked both.
    pub fn verifying_keys(&self) -> ReplicaVerifyingKeys {
        let keys = self
            .replicas
            .iter()
            .enumerate()
            .map(|(index, replica)| {
                assert_eq!(replica.id.index(), index, "replicas must be sorted by id");
                decode_verifying_key(&replica.verifying_key).expect("a validated verifying key")
            })
            .collect();
        ReplicaVerifyingKeys(keys)
    }

    /// Replica `id`'s pinned TLS certificate, in DER.
    pub fn load_certificate(
        &self,
        dir: &Path,
        id: ReplicaId,
    ) -> Result<CertificateDer<'static>, ConfigError> {
        let replica = self.replica(id).ok_or(ConfigError::UnknownReplica {
            replica: id,
            replica_count: self.replica_count(),
        })?;
        let path = dir.join(&replica.certificate);
        read_certificate(&path).map_err(|problem| {
            let field = format!("replicas[{}].certificate", id.0);
            ConfigError::invalid(&dir.join(CLUSTER_FILE), field, problem)
        })
    }
}

/// The one certificate in a PEM file; the error is a problem description naming the file.
fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    CertificateDer::from_pem_slice(&pem)
        .map_err(|error| format!("{}: no PEM certificate: {error}", path.display()))
}

/// Replica `id`'s configuration and endpoint (its keys and everyone's public keys).
pub fn endpoint_for_replica(
    dir: &Path,
    id: ReplicaId,
) -> Result<(ClusterConfig, Endpoint), ConfigError> {
    let config = ClusterConfig::load(dir)?;
    let keys = keys::replica_keys(dir, &config, id)?;
    let clients = load_client_verifying_keys(dir, &config)?;
    let endpoint = Endpoint::new(keys, config.verifying_keys(), config.protocol.clone())
        .with_clients_provisioned(config.clients)
        .with_client_verifying_keys(clients)
        .with_apps_hosted(config.apps.iter().map(|app| app.id));
    Ok((config, endpoint))
}

/// Client `id`'s configuration and endpoint.
pub fn endpoint_for_client(
    dir: &Path,
    id: ClientId,
) -> Result<(ClusterConfig, Endpoint), ConfigError> {
    let config = ClusterConfig::load(dir)?;
    let keys = keys::client_keys(dir, &config, id)?;
    let endpoint = Endpoint::new(keys, config.verifying_keys(), config.protocol.clone())
        .with_clients_provisioned(config.clients);
    Ok((config, endpoint))
}
