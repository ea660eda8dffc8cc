//! A client's own key file, `clients/<name>.toml`: the keys of a range of client ids and
//! nothing else, so a client process can be handed it without being able to act as any other
//! client or forge anyone's replies (`keys/clients.toml`, which provisions every client,
//! stays with the operator). `zz client add NAME` writes one; `zz init` writes `default`.

use super::keys::key_at;
use super::{CLIENT_PUBLIC_FILE, ClusterConfig, ConfigError, hex_encode, read_toml};
use crate::crypto::{NodeKeys, SessionKey, signing_key_from_bytes};
use crate::ids::{ClientId, ExecutionId, NodeId, ReplicaId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where client key files live, relative to the cluster directory.
pub const CLIENTS_DIR: &str = "clients";
/// The client key file `zz init` writes and `zz kv`, `zz bank` and `zz bench` use unless told
/// otherwise.
pub const DEFAULT_CLIENT: &str = "default";
/// Bytes in a client name at most.
pub const CLIENT_NAME_BYTES_MAX: usize = 64;

/// The contents of `clients/<name>.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Must match the file name.
    pub name: String,
    /// The first client id of the range; the others follow.
    pub first: ClientId,
    /// One `[[clients]]` entry per id, in order.
    pub clients: Vec<OwnClientKeys>,
}

/// The keys of one client id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnClientKeys {
    /// Hex of the 32-byte Ed25519 seed it signs requests with.
    pub signing_key: String,
    /// Hex of the key it shares with each agreement replica, indexed by replica id.
    pub replica_keys: Vec<String>,
    /// Hex of the key it shares with each execution replica, indexed by execution id.
    pub execution_keys: Vec<String>,
}

/// `clients/<name>.toml`, relative to the cluster directory.
pub fn client_file_path(name: &str) -> PathBuf {
    PathBuf::from(CLIENTS_DIR).join(format!("{name}.toml"))
}

/// Non-empty, at most [`CLIENT_NAME_BYTES_MAX`] bytes of `[a-z0-9-]`: it names a file.
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLIENT_NAME_BYTES_MAX
        && (name.bytes())
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

impl ClientFile {
    /// The file for `keys` (consecutive client ids, as [`super::client_range_keys`] gives
    /// them).
    pub fn new(name: &str, config: &ClusterConfig, keys: &[NodeKeys]) -> ClientFile {
        let first = match keys.first().map(|keys| keys.id) {
            Some(NodeId::Client(first)) => first,
            _ => ClientId(0),
        };
        let hex_of = |keys: &NodeKeys, node: NodeId| {
            let key = keys.peer_keys.get(&node).expect("a client key per node");
            hex_encode(&key.0)
        };
        let clients = (keys.iter())
            .map(|keys| OwnClientKeys {
                signing_key: hex_encode(
                    &keys.signing_key.as_ref().expect("clients sign").to_bytes(),
                ),
                replica_keys: (0..config.replica_count() as u32)
                    .map(|replica| hex_of(keys, NodeId::Replica(ReplicaId(replica))))
                    .collect(),
                execution_keys: (0..config.execution_count() as u32)
                    .map(|execution| hex_of(keys, NodeId::Execution(ExecutionId(execution))))
                    .collect(),
            })
            .collect();
        ClientFile {
            name: name.to_string(),
            first,
            clients,
        }
    }

    /// The ids this file speaks for.
    pub fn ids(&self) -> std::ops::Range<u64> {
        self.first.0..self.first.0.saturating_add(self.clients.len() as u64)
    }
}

/// Read `clients/<name>.toml` of the cluster in `dir`, checked against its configuration.
pub fn read_client_file(dir: &Path, name: &str) -> Result<ClientFile, ConfigError> {
    let path = dir.join(client_file_path(name));
    if !valid_client_name(name) {
        let problem =
            format!("client name {name:?} must be 1..={CLIENT_NAME_BYTES_MAX} of [a-z0-9-]");
        return Err(ConfigError::invalid(&path, "name", problem));
    }
    let file: ClientFile = read_toml(&path)?;
    if file.name != name {
        let problem = format!("names {:?}, not the file's name {name:?}", file.name);
        return Err(ConfigError::invalid(&path, "name", problem));
    }
    Ok(file)
}

/// The keys of every client id in `clients/<name>.toml`, in order, checked against the
/// configuration: ids provisioned, one key per node.
pub fn load_client_file(
    dir: &Path,
    config: &ClusterConfig,
    name: &str,
) -> Result<Vec<NodeKeys>, ConfigError> {
    let path = dir.join(client_file_path(name));
    let file = read_client_file(dir, name)?;
    if file.clients.is_empty() {
        return Err(ConfigError::invalid(&path, "clients", "holds no client"));
    }
    if file.ids().end > config.clients {
        return Err(ConfigError::UnknownClient {
            client: ClientId(file.ids().end - 1),
            clients: config.clients,
        });
    }
    let public = super::keys::load_client_verifying_keys(dir, config)?;
    let mut all = Vec::with_capacity(file.clients.len());
    for (index, own) in file.clients.iter().enumerate() {
        let field = |what: &str| format!("clients[{index}].{what}");
        let counts = [
            (
                "replica_keys",
                own.replica_keys.len(),
                config.replica_count(),
            ),
            (
                "execution_keys",
                own.execution_keys.len(),
                config.execution_count(),
            ),
        ];
        for (what, found, needed) in counts {
            if found != needed {
                let problem = format!("needs {needed} keys, found {found}");
                return Err(ConfigError::invalid(&path, field(what), problem));
            }
        }
        let mut peer_keys = std::collections::BTreeMap::new();
        for (replica, hex) in own.replica_keys.iter().enumerate() {
            let key = key_at(&path, &field(&format!("replica_keys[{replica}]")), hex)?;
            peer_keys.insert(NodeId::Replica(ReplicaId(replica as u32)), SessionKey(key));
        }
        for (execution, hex) in own.execution_keys.iter().enumerate() {
            let key = key_at(&path, &field(&format!("execution_keys[{execution}]")), hex)?;
            peer_keys.insert(
                NodeId::Execution(ExecutionId(execution as u32)),
                SessionKey(key),
            );
        }
        let signing =
            signing_key_from_bytes(key_at(&path, &field("signing_key"), &own.signing_key)?);
        let id = ClientId(file.first.0 + index as u64);
        // A key the replicas do not know would make every request fail its check, silently.
        if public.get(id) != Some(&signing.verifying_key()) {
            let problem = format!(
                "is not client {id}'s key in {CLIENT_PUBLIC_FILE} (a file of another cluster?)"
            );
            return Err(ConfigError::invalid(&path, field("signing_key"), problem));
        }
        all.push(NodeKeys {
            id: NodeId::Client(id),
            peer_keys,
            client_master: None,
            signing_key: Some(signing),
        });
    }
    Ok(all)
}

/// Every client key file of the cluster in `dir`, by name (for finding free ids).
pub fn list_client_files(dir: &Path) -> Result<Vec<ClientFile>, ConfigError> {
    let clients_dir = dir.join(CLIENTS_DIR);
    let entries = match std::fs::read_dir(&clients_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::io(&clients_dir, source)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::io(&clients_dir, source))?;
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|name| name.strip_suffix(".toml"))
        else {
            continue;
        };
        files.push(read_client_file(dir, name)?);
    }
    files.sort_by_key(|file| file.first);
    Ok(files)
}

/// Where the highest client id ever given out is kept, relative to the cluster directory.
pub const CLIENTS_ALLOCATED_FILE: &str = "clients/.allocated";

/// The first of `count` client ids never given to any client: above every file in `files`
/// and above `allocated` (the end of every range ever given, files deleted since
/// included), below `clients`. Ids are never given twice: a client's keys are a function of
/// its id, so a second holder could act as the first.
pub fn next_client_ids(
    files: &[ClientFile],
    allocated: u64,
    clients: u64,
    count: u64,
) -> Option<ClientId> {
    let start = (files.iter().map(|file| file.ids().end)).fold(allocated, u64::max);
    (start.checked_add(count)? <= clients).then_some(ClientId(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(first: u64, count: usize) -> ClientFile {
        let own = || OwnClientKeys {
            signing_key: String::new(),
            replica_keys: vec![],
            execution_keys: vec![],
        };
        ClientFile {
            name: format!("c{first}"),
            first: ClientId(first),
            clients: (0..count).map(|_| own()).collect(),
        }
    }

    #[test]
    fn ids_are_never_given_twice() {
        assert_eq!(next_client_ids(&[], 0, 10, 4), Some(ClientId(0)));
        let files = [file(0, 4), file(6, 2)];
        assert_eq!(next_client_ids(&files, 0, 20, 2), Some(ClientId(8)));
        // A deleted file's ids stay given.
        assert_eq!(next_client_ids(&files[..1], 8, 20, 2), Some(ClientId(8)));
        assert_eq!(next_client_ids(&files, 0, 10, 3), None);
        assert_eq!(next_client_ids(&files, 0, 11, 3), Some(ClientId(8)));
        assert_eq!(next_client_ids(&files, u64::MAX, u64::MAX, 1), None);
    }

    #[test]
    fn client_names_are_file_names() {
        assert!(valid_client_name("bench-2"));
        for bad in ["", "../keys", "A", "a b", &"x".repeat(65)] {
            assert!(!valid_client_name(bad), "{bad:?}");
        }
    }
}
