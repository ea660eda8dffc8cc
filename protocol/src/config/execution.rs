//! Execution replicas in the cluster configuration: the `[[executions]]` entries of
//! `cluster.toml`, their validation, and the look-ups nodes make on them.
//!
//! Each entry is one execution replica of one app, active or standby. Ids are numbered
//! across all apps (0..m), so one id space names every execution replica of the platform;
//! the app each replica runs, and whether it starts as a paused standby, come from here.

use super::{CLUSTER_FILE, ClusterConfig, ConfigError, keys, read_certificate};
use crate::envelope::Endpoint;
use crate::ids::{AppId, ExecutionId};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Bytes in a host label at most (the length of a DNS name, which a label often is).
pub const HOST_LABEL_BYTES_MAX: usize = 253;

/// One `[[executions]]` entry: an execution replica of one app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReplicaConfig {
    pub id: ExecutionId,
    /// The app this replica executes; must be one of the `[[apps]]`.
    pub app: AppId,
    /// Where the replica listens for QUIC connections (from agreement replicas and clients).
    pub address: SocketAddr,
    /// The PEM self-signed TLS certificate, relative to the cluster directory; dialers pin it.
    pub certificate: PathBuf,
    /// The failure domain the replica runs in (a machine, or a labelled group of
    /// containers). Placement keeps an app's replicas on distinct hosts.
    pub host: String,
    /// A standby starts paused and is woken only when the active replicas diverge or stall.
    pub standby: bool,
    /// A spare standby slot: provisioned (address, keys) but started only when the pool
    /// grows (`zz scale`). Always a standby.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spare: bool,
}

/// Execution replica `id`'s key file, relative to the cluster directory.
pub fn execution_keys_file(id: ExecutionId) -> PathBuf {
    super::node_secrets_dir(&format!("execution-{}", id.0)).join(super::KEYS_FILE_NAME)
}

fn valid_host_label(host: &str) -> bool {
    !host.trim().is_empty()
        && host.len() <= HOST_LABEL_BYTES_MAX
        && !host.chars().any(char::is_control)
}

impl ClusterConfig {
    /// The `[[executions]]` rules that need no other file: ids 0..m each once; apps that
    /// exist; distinct, dialable addresses that no agreement replica uses either; non-empty
    /// host labels; and at least f+1 active (non-standby) replicas for every app that has
    /// any execution replica, since a client needs f+1 matching replies.
    pub(super) fn validate_executions(&self, path: &Path) -> Result<(), ConfigError> {
        let count = self.executions.len();
        let app_ids: BTreeSet<AppId> = self.apps.iter().map(|app| app.id).collect();
        // Which field already claimed each address, so a collision names both.
        let mut addresses: BTreeMap<SocketAddr, String> = self
            .replicas
            .iter()
            .enumerate()
            .map(|(index, replica)| (replica.address, format!("replicas[{index}].address")))
            .collect();
        let mut ids = BTreeSet::new();
        let mut active: BTreeMap<AppId, usize> = BTreeMap::new();
        for (index, execution) in self.executions.iter().enumerate() {
            let field = |name: &str| format!("executions[{index}].{name}");
            let invalid =
                |name: &str, problem: String| ConfigError::invalid(path, field(name), problem);
            if execution.id.index() >= count {
                let problem = format!("{} is outside 0..{count}", execution.id.0);
                return Err(invalid("id", problem));
            }
            if !ids.insert(execution.id) {
                return Err(invalid("id", format!("duplicate id {}", execution.id.0)));
            }
            if !app_ids.contains(&execution.app) {
                let problem = format!("app {} is not one of the [[apps]]", execution.app.0);
                return Err(invalid("app", problem));
            }
            let address = execution.address;
            if address.port() == 0 || address.ip().is_unspecified() {
                let problem = format!("{address} is not an address one can dial");
                return Err(invalid("address", problem));
            }
            if let Some(other) = addresses.insert(address, field("address")) {
                let problem = format!("duplicate address {address}, also used by {other}");
                return Err(invalid("address", problem));
            }
            if !valid_host_label(&execution.host) {
                let problem = format!(
                    "{:?} must be 1..={HOST_LABEL_BYTES_MAX} bytes, not blank, no control characters",
                    execution.host
                );
                return Err(invalid("host", problem));
            }
            if execution.spare && !execution.standby {
                let problem = "a spare slot must be a standby (standby = true)".to_string();
                return Err(invalid("spare", problem));
            }
            *active.entry(execution.app).or_default() += usize::from(!execution.standby);
        }
        let needed = self.protocol.weak_quorum();
        for (app, active_count) in active {
            if active_count < needed {
                let name = self
                    .apps
                    .iter()
                    .find(|config| config.id == app)
                    .map_or("", |config| config.name.as_str());
                let problem = format!(
                    "app {} ({name:?}) has {active_count} active (standby = false) execution \
                     replicas, needs at least f + 1 = {needed}",
                    app.0
                );
                return Err(ConfigError::invalid(path, "executions", problem));
            }
        }
        Ok(())
    }

    /// The certificate files of the `[[executions]]` hold a PEM certificate.
    pub(super) fn validate_execution_certificates(
        &self,
        dir: &Path,
        path: &Path,
    ) -> Result<(), ConfigError> {
        for (index, execution) in self.executions.iter().enumerate() {
            if let Err(problem) = read_certificate(&dir.join(&execution.certificate)) {
                let field = format!("executions[{index}].certificate");
                return Err(ConfigError::invalid(path, field, problem));
            }
        }
        Ok(())
    }

    /// m: execution replicas of all apps, standbys included.
    pub fn execution_count(&self) -> usize {
        self.executions.len()
    }

    /// Execution replica `id`'s entry. Expects a loaded configuration (sorted by id).
    pub fn execution(&self, id: ExecutionId) -> Option<&ExecutionReplicaConfig> {
        self.executions
            .get(id.index())
            .filter(|execution| execution.id == id)
    }

    /// Each app's execution replicas, standbys and spare slots included, in id order:
    /// every replica that may become active, so agreement replicas answer its joins and
    /// clients count its replies. Apps without execution replicas are left out.
    pub fn execution_groups(&self) -> BTreeMap<AppId, Vec<ExecutionId>> {
        let mut groups: BTreeMap<AppId, Vec<ExecutionId>> = BTreeMap::new();
        for execution in self.executions_by_id() {
            groups.entry(execution.app).or_default().push(execution.id);
        }
        groups
    }

    /// Every execution replica of `app`, standbys included, in id order.
    pub fn executions_of(&self, app: AppId) -> Vec<ExecutionId> {
        self.executions_by_id()
            .filter(|execution| execution.app == app)
            .map(|execution| execution.id)
            .collect()
    }

    /// Each app's execution replicas that start active (not standbys), by id.
    pub fn active_groups(&self) -> BTreeMap<AppId, Vec<ExecutionId>> {
        let mut groups: BTreeMap<AppId, Vec<ExecutionId>> = BTreeMap::new();
        for execution in self.executions_by_id().filter(|e| !e.standby) {
            groups.entry(execution.app).or_default().push(execution.id);
        }
        groups
    }

    /// The entries in id order, whether or not the configuration was loaded (sorted).
    fn executions_by_id(&self) -> impl Iterator<Item = &ExecutionReplicaConfig> {
        let mut sorted: Vec<&ExecutionReplicaConfig> = self.executions.iter().collect();
        sorted.sort_by_key(|execution| execution.id);
        sorted.into_iter()
    }

    /// Execution replica `id`'s pinned TLS certificate, in DER.
    pub fn load_execution_certificate(
        &self,
        dir: &Path,
        id: ExecutionId,
    ) -> Result<CertificateDer<'static>, ConfigError> {
        let execution = self.execution(id).ok_or(ConfigError::UnknownExecution {
            execution: id,
            execution_count: self.execution_count(),
        })?;
        read_certificate(&dir.join(&execution.certificate)).map_err(|problem| {
            let field = format!("executions[{}].certificate", id.0);
            ConfigError::invalid(&dir.join(CLUSTER_FILE), field, problem)
        })
    }
}

/// Execution replica `id`'s configuration and endpoint (its keys and the agreement
/// replicas' public keys).
pub fn endpoint_for_execution(
    dir: &Path,
    id: ExecutionId,
) -> Result<(ClusterConfig, Endpoint), ConfigError> {
    let config = ClusterConfig::load(dir)?;
    let keys = keys::execution_keys(dir, &config, id)?;
    let endpoint = Endpoint::new(keys, config.verifying_keys(), config.protocol.clone())
        .with_clients_provisioned(config.clients);
    Ok((config, endpoint))
}
