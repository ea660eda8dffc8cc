//! Client key files: `zz client add NAME` gives a client (a person, a service, a benchmark)
//! a range of client ids of its own and a file holding only their keys.

use crate::init::{create_dir, write_key_file};
use std::path::{Path, PathBuf};
use zz_protocol::ClientId;
use zz_protocol::config::{
    CLIENT_NAME_BYTES_MAX, CLIENTS_ALLOCATED_FILE, CLIENTS_DIR, ClientFile, ClusterConfig,
    ConfigError, client_file_path, client_range_keys, list_client_files, next_client_ids,
    valid_client_name,
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
        "no {count} consecutive client ids are left below {clients} (cluster.toml's clients): \
         ids are never given twice, a deleted client's included"
    )]
    NoFreeIds { count: u64, clients: u64 },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Write `clients/<name>.toml` for the cluster in `dir`: the next `count` client ids never
/// given to any client, with their keys (derived from `keys/clients.toml`, which
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
    let _lock = lock_allocation(dir)?;
    let path = dir.join(client_file_path(name));
    if path.exists() {
        return Err(AddClientError::Exists {
            name: name.to_string(),
            path,
        });
    }
    let files = list_client_files(dir)?;
    let allocated = read_allocated(dir)?;
    let first = next_client_ids(&files, allocated, config.clients, count).ok_or(
        AddClientError::NoFreeIds {
            count,
            clients: config.clients,
        },
    )?;
    let count = u32::try_from(count).map_err(|_| AddClientError::NoFreeIds {
        count,
        clients: config.clients,
    })?;
    let file = write_client_file(dir, &config, name, first, count)?;
    Ok((file, path))
}

/// Held while client ids are given out: two `zz client add` at once would otherwise read
/// the same high-water mark and give the same ids (the same keys) to two clients.
struct AllocationLock(#[allow(dead_code)] std::fs::File);

fn lock_allocation(dir: &Path) -> Result<AllocationLock, ConfigError> {
    use std::os::fd::AsRawFd;
    create_dir(&dir.join(CLIENTS_DIR), true)?;
    let path = dir.join(CLIENTS_DIR).join(".lock");
    let file = (std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true))
    .open(&path)
    .map_err(|source| ConfigError::io(&path, source))?;
    // SAFETY: flock on a descriptor this function owns; it is released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(ConfigError::io(&path, std::io::Error::last_os_error()));
    }
    Ok(AllocationLock(file))
}

/// The end of every client id range ever given out (0 when none was recorded).
fn read_allocated(dir: &Path) -> Result<u64, ConfigError> {
    let path = dir.join(CLIENTS_ALLOCATED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            let problem = format!("{:?} is not a client id", text.trim());
            ConfigError::invalid(&path, "allocated", problem)
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(ConfigError::io(&path, source)),
    }
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
    // The high-water mark first: a crash between the two leaves ids unused, never reused.
    let allocated = read_allocated(dir)?.max(file.ids().end);
    let mark = dir.join(CLIENTS_ALLOCATED_FILE);
    std::fs::write(&mark, format!("{allocated}\n"))
        .map_err(|source| ConfigError::io(&mark, source))?;
    write_key_file(&dir.join(client_file_path(name)), &file)?;
    Ok(file)
}
