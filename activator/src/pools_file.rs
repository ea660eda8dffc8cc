//! The activator's record file (`state/activator.pools`): the policy's [`PoolsRecord`]
//! (each app's epoch, active set and pool), kept so that a restart of the whole platform
//! starts from who was active, not from the configuration.
//!
//! The file is a header line, `zz-activator-pools <format> <sha256 of the body>`, then the
//! body, the record as JSON. It is small and rewritten whole on each membership change (a
//! rare event), so it is written to a temporary file, fsynced, renamed over the old one and
//! the directory fsynced: a crash leaves the old record or the new one, never a mix. JSON
//! rather than an embedded store: operators can read it, and it needs no second database
//! beside each execution replica's. The checksum catches a damaged or hand-edited body.
//!
//! [`PoolStore`] is what the driver persists through; [`PoolsFile`] is the file, and
//! [`Unpersisted`] keeps nothing (the simulator, which never restarts the activator).

use crate::policy::PoolsRecord;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first word of the file.
const MAGIC: &str = "zz-activator-pools";
/// The format this activator writes and reads.
pub const POOLS_FORMAT: u32 = 1;
/// Bytes of a record file at most (a few hundred per app in practice).
pub const POOLS_FILE_BYTES_MAX: usize = 1 << 20;

/// Why the record file could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PoolsFileError {
    #[error("{path}: cannot read the activator's record: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write the activator's record: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not an activator record ({problem}); remove it to start from the \
         configuration"
    )]
    Damaged { path: PathBuf, problem: String },
    #[error(
        "{path}: activator record format {found}, this zz reads format {POOLS_FORMAT}; \
         remove it to start from the configuration"
    )]
    Format { path: PathBuf, found: u32 },
    #[error(
        "{path}: the activator's record does not fit the configuration: {problem}; remove \
         it to start from the configuration"
    )]
    Mismatch { path: PathBuf, problem: String },
}

/// Where the driver persists the policy's record (see the module documentation).
pub trait PoolStore {
    /// Make `record` durable; once this returns Ok, a restart reads it back.
    fn save(&mut self, record: &PoolsRecord) -> Result<(), PoolsFileError>;
}

/// Keeps nothing: for an activator that is never restarted (the simulator).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unpersisted;

impl PoolStore for Unpersisted {
    fn save(&mut self, _record: &PoolsRecord) -> Result<(), PoolsFileError> {
        Ok(())
    }
}

/// The record file at a path.
#[derive(Clone, Debug)]
pub struct PoolsFile {
    path: PathBuf,
}

impl PoolsFile {
    pub fn new(path: impl Into<PathBuf>) -> PoolsFile {
        PoolsFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record, or None when there is no file (a platform's first start).
    pub fn load(&self) -> Result<Option<PoolsRecord>, PoolsFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PoolsFileError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        decode(&self.path, &bytes).map(Some)
    }
}

impl PoolStore for PoolsFile {
    fn save(&mut self, record: &PoolsRecord) -> Result<(), PoolsFileError> {
        let write = |source| PoolsFileError::Write {
            path: self.path.clone(),
            source,
        };
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary).map_err(write)?;
        file.write_all(&encode(record)).map_err(write)?;
        file.sync_all().map_err(write)?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(write)?;
        // The rename is durable only once the directory is.
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write)
    }
}

/// The file's bytes for `record`.
pub fn encode(record: &PoolsRecord) -> Vec<u8> {
    let body = serde_json::to_vec_pretty(record).expect("a record encodes");
    let digest = hex(&Sha256::digest(&body));
    let mut bytes = format!("{MAGIC} {POOLS_FORMAT} {digest}\n").into_bytes();
    bytes.extend_from_slice(&body);
    bytes.push(b'\n');
    bytes
}

/// The record in `bytes`, read from `path` (named in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<PoolsRecord, PoolsFileError> {
    let damaged = |problem: &str| PoolsFileError::Damaged {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if bytes.len() > POOLS_FILE_BYTES_MAX {
        return Err(damaged(&format!(
            "{} bytes, more than {POOLS_FILE_BYTES_MAX}",
            bytes.len()
        )));
    }
    let newline =
        (bytes.iter().position(|byte| *byte == b'\n')).ok_or_else(|| damaged("no header line"))?;
    let (header, body) = (&bytes[..newline], &bytes[newline + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| damaged("a header that is not text"))?;
    let words: Vec<&str> = header.split(' ').collect();
    let [magic, format, digest] = words[..] else {
        return Err(damaged("a header of other than three words"));
    };
    if magic != MAGIC {
        return Err(damaged(&format!("it starts with {magic:?}, not {MAGIC:?}")));
    }
    let found: u32 = (format.parse()).map_err(|_| damaged("a format that is not a number"))?;
    if found != POOLS_FORMAT {
        return Err(PoolsFileError::Format {
            path: path.to_path_buf(),
            found,
        });
    }
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if hex(&Sha256::digest(body)) != digest {
        return Err(damaged("its checksum does not match: torn or altered"));
    }
    serde_json::from_slice(body).map_err(|error| damaged(&format!("bad JSON: {error}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests;
