//! Client key files: `zz client add NAME` gives a client (a person, a service, a benchmark)
//! a range of client ids of its own and a file holding only their keys.

use crate::init::{create_dir, write_key_file};
use std::path::{Path, PathBuf};
use zz_protocol::ClientId;
use zz_protocol::config::{
    CLIENT_NAME_BYTES_MAX, CLIENTS_DIR, ClientFile, ClusterConfig, ConfigError, client_file_path,
    client_range_keys, free_client_ids, list_client_files, valid_client_name,
};

/// Why a client could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddClientError {
    #[error("client name {0:?}: use 1..={CLIENT_NAME_BYTES_MAX} characters of [a-z0-9-]")]
    BadName(String),
    #[error("client {name:?} exists already ({path}); pick another name")]
    Exists { name: String, path: PathBuf },
    #[error("--ids must be at least 1")]
    NoIds,
    #[error(
        "no {count} consecutive client ids are free below {clients} (cluster.toml's clients); \
         every id is some client file's"
    )]
    NoFreeIds { count: u64, clients: u64 },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Write `clients/<name>.toml` for the cluster in `dir`: the lowest `count` consecutive client
/// ids no other client file holds, with their keys (derived from `keys/clients.toml`, which
/// only the operator reads). Returns what was written and where.
pub fn add_client(
    dir: &Path,
    name: &str,
    count: u64,
) -> Result<(ClientFile, PathBuf), AddClientError> {
    if !valid_client_name(name) {
        return Err(AddClientError::BadName(name.to_string()));
    }
    if count == 0 {
        return Err(AddClientError::NoIds);
    }
    let config = ClusterConfig::load(dir)?;
    let path = dir.join(client_file_path(name));
    if path.exists() {
        return Err(AddClientError::Exists {
            name: name.to_string(),
            path,
        });
    }
    let files = list_client_files(dir)?;
    let first =
        free_client_ids(&files, config.clients, count).ok_or(AddClientError::NoFreeIds {
            count,
            clients: config.clients,
        })?;
    let count = u32::try_from(count).map_err(|_| AddClientError::NoFreeIds {
        count,
        clients: config.clients,
    })?;
    let file = write_client_file(dir, &config, name, first, count)?;
    Ok((file, path))
}

/// Write `clients/<name>.toml` with the keys of ids `first..first + count`.
pub(crate) fn write_client_file(
    dir: &Path,
    config: &ClusterConfig,
    name: &str,
    first: ClientId,
    count: u32,
) -> Result<ClientFile, ConfigError> {
    let keys = client_range_keys(dir, config, first, count)?;
    let file = ClientFile::new(name, config, &keys);
    create_dir(&dir.join(CLIENTS_DIR), true)?;
    write_key_file(&dir.join(client_file_path(name)), &file)?;
    Ok(file)
}
