//! Records in a file (see the `format` module), appended as they come and made durable
//! with one `fdatasync` per [`Storage::sync`].

use super::Storage;
use super::format::{self, FormatError, HEADER_BYTES};
use crate::core::persist::Record;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// A record file that could not be opened or read back.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Unreadable { path: String, problem: FormatError },
}

/// Records in an append-only file. See the module documentation.
pub struct FileStorage {
    path: PathBuf,
    file: File,
    /// Bytes appended since the file was last rewritten.
    appended_bytes: u64,
    /// Whether an append reached the file after the last sync.
    unsynced: bool,
}

/// A record file is rewritten (compacted) only once this much was appended since the last
/// rewrite: compacting at every stable checkpoint would rewrite the whole window each time.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

impl FileStorage {
    /// Open (creating if needed) the record file at `path` and read back its records. A
    /// torn last record, from a crash in the middle of a write, is cut off; a file this zz
    /// cannot read (another format, or damaged before its last record) is an error. An
    /// empty file is taken as an empty log: there is nothing in it to lose.
    pub fn open(path: &Path) -> Result<(FileStorage, Vec<Record>), StorageError> {
        let io_error = |source| StorageError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io_error(error)),
        };
        if bytes.is_empty() {
            write_durably(path, &FileStorage::encode(&[])).map_err(io_error)?;
            let storage = FileStorage::reopen(path, 0).map_err(io_error)?;
            return Ok((storage, Vec::new()));
        }
        let contents = format::decode_file(&bytes).map_err(|problem| StorageError::Unreadable {
            path: path.display().to_string(),
            problem,
        })?;
        let storage = FileStorage::reopen(path, (contents.valid_bytes - HEADER_BYTES) as u64)
            .map_err(io_error)?;
        if contents.valid_bytes < bytes.len() {
            // Cut the torn record off before anything is appended after it.
            let torn_bytes = bytes.len() - contents.valid_bytes;
            tracing::warn!(path = %path.display(), torn_bytes, "dropped a torn last record");
            storage
                .file
                .set_len(contents.valid_bytes as u64)
                .map_err(io_error)?;
        }
        // What was read may have reached only the page cache before a kill (appended, not
        // yet synced); the restored replica sends votes again from it, so it must be on
        // disk first, or a power cut after the restart could make it forget them.
        storage.file.sync_data().map_err(io_error)?;
        Ok((storage, contents.records))
    }

    fn reopen(path: &Path, appended_bytes: u64) -> std::io::Result<FileStorage> {
        Ok(FileStorage {
            path: path.to_path_buf(),
            file: OpenOptions::new().append(true).open(path)?,
            appended_bytes,
            unsynced: false,
        })
    }

    /// A whole file: the header, then `records`.
    fn encode(records: &[Record]) -> Vec<u8> {
        let mut bytes = format::header().to_vec();
        for record in records {
            format::encode_record(record, &mut bytes);
        }
        bytes
    }
}

/// Write `bytes` as the file at `path`, atomically and durably: a temporary file, synced,
/// renamed over `path`, and the directory synced so the rename survives a power loss.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()
}

impl Storage for FileStorage {
    fn append(&mut self, record: &Record) {
        let mut bytes = Vec::new();
        format::encode_record(record, &mut bytes);
        self.appended_bytes += bytes.len() as u64;
        self.unsynced = true;
        // A replica that cannot persist its votes must not go on voting.
        self.file
            .write_all(&bytes)
            .unwrap_or_else(|error| panic!("cannot append to {}: {error}", self.path.display()));
    }

    fn sync(&mut self) {
        if !self.unsynced {
            return;
        }
        // After a failed fdatasync the kernel may have dropped the dirty pages: retrying
        // could report success for data never written, so the replica stops instead.
        self.file
            .sync_data()
            .unwrap_or_else(|error| panic!("cannot sync {}: {error}", self.path.display()));
        self.unsynced = false;
    }

    fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    fn replace(&mut self, records: &[Record]) {
        let result = write_durably(&self.path, &FileStorage::encode(records))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        match result {
            Ok(file) => {
                self.file = file;
                self.appended_bytes = 0;
                self.unsynced = false;
            }
            Err(error) => panic!("cannot rewrite {}: {error}", self.path.display()),
        }
    }

    fn compact(&mut self, records: &[Record]) {
        if self.appended_bytes >= COMPACT_AFTER_BYTES {
            self.replace(records);
        }
    }
}
