//! Records in a file (see the `format` module), appended as they come and made durable
//! with one `fdatasync` per [`Storage::sync`].

use super::Storage;
use super::format::{self, FileId, FormatError, HEADER_BYTES};
use crate::core::persist::Record;
use rand::RngExt as _;
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
    #[error(
        "{path}: the record file is missing, and a replica started without it would forget \
         the votes it sent: restore it from a backup, or, if no more than f replicas \
         (protocol.f in cluster.toml) lost theirs, create it empty (`: > {path}`), accepting \
         that this replica counts among the f faulty ones until it has caught up"
    )]
    Missing { path: String },
}

/// Records in an append-only file. See the module documentation.
pub struct FileStorage {
    path: PathBuf,
    file: File,
    file_id: FileId,
    /// Bytes in the file: where the next append lands.
    file_bytes: u64,
    /// Bytes appended since the file was last written whole.
    appended_bytes: u64,
    /// Whether an append reached the file after the last sync.
    unsynced: bool,
    /// What one append writes, kept so that appending allocates nothing.
    buffer: Vec<u8>,
}

/// A record file is rewritten (compacted) only once this much was appended since the last
/// rewrite: compacting at every stable checkpoint would rewrite the whole window each time.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

impl FileStorage {
    /// Open the record file at `path` and read back its records. A torn tail (what was
    /// appended after the last sync, lost in a crash or a power cut) is cut off; a file
    /// this zz cannot read (another format, or synced records damaged) is an error, and so
    /// is a missing file: a replica that already voted must not start as if it never had.
    /// An empty file (an operator's deliberate fresh start) is taken as an empty log.
    pub fn open(path: &Path) -> Result<(FileStorage, Vec<Record>), StorageError> {
        let io_error = |source| StorageError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(StorageError::Missing {
                    path: path.display().to_string(),
                });
            }
            Err(error) => return Err(io_error(error)),
        };
        if bytes.is_empty() {
            let storage = FileStorage::write_whole(path, &[]).map_err(io_error)?;
            return Ok((storage, Vec::new()));
        }
        let contents = format::decode_file(&bytes).map_err(|problem| StorageError::Unreadable {
            path: path.display().to_string(),
            problem,
        })?;
        if contents.valid_bytes < bytes.len() {
            let torn_bytes = bytes.len() - contents.valid_bytes;
            tracing::warn!(path = %path.display(), torn_bytes, "dropped a torn tail");
            // Rewritten whole, under a new file id, rather than cut in place: then within
            // one file id the file only ever grows, so no stale byte past the cut (should
            // the file system show one again) passes a check.
            let storage = FileStorage::write_whole(path, &contents.records).map_err(io_error)?;
            return Ok((storage, contents.records));
        }
        let file_bytes = bytes.len() as u64;
        let storage = FileStorage::reopen(path, contents.file_id, file_bytes).map_err(io_error)?;
        // What was read may have reached only the page cache before a kill (appended, not
        // yet synced); the restored replica sends votes again from it, so it must be on
        // disk first, or a power cut after the restart could make it forget them.
        storage.file.sync_data().map_err(io_error)?;
        Ok((storage, contents.records))
    }

    /// Write an empty record file (the header alone) at `path`, durably, replacing any
    /// file there: what a new cluster's replica starts from.
    pub fn create_empty(path: &Path) -> std::io::Result<()> {
        FileStorage::write_whole(path, &[]).map(drop)
    }

    /// Write `records` as the whole file at `path`, under a new file id, durably; open it
    /// for appending.
    fn write_whole(path: &Path, records: &[Record]) -> std::io::Result<FileStorage> {
        let file_id = FileId(rand::rng().random());
        let mut bytes = format::header(file_id).to_vec();
        for record in records {
            format::encode_record(record, file_id, &mut bytes);
        }
        write_durably(path, &bytes)?;
        let mut storage = FileStorage::reopen(path, file_id, bytes.len() as u64)?;
        storage.appended_bytes = 0;
        Ok(storage)
    }

    /// The file at `path`, of `file_bytes` bytes, open for appending; every record in it
    /// counts as appended since the last rewrite (when that was is not known).
    fn reopen(path: &Path, file_id: FileId, file_bytes: u64) -> std::io::Result<FileStorage> {
        Ok(FileStorage {
            path: path.to_path_buf(),
            file: OpenOptions::new().append(true).open(path)?,
            file_id,
            file_bytes,
            appended_bytes: file_bytes - HEADER_BYTES as u64,
            unsynced: false,
            buffer: Vec::new(),
        })
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
        self.buffer.clear();
        if !self.unsynced {
            // The first append since the file was last durable says how far it was, in the
            // same write: a reader finding this marker past damage knows the damage was
            // synced, not a torn tail.
            format::encode_sync_marker(self.file_bytes, self.file_id, &mut self.buffer);
        }
        format::encode_record(record, self.file_id, &mut self.buffer);
        self.file_bytes += self.buffer.len() as u64;
        self.appended_bytes += self.buffer.len() as u64;
        self.unsynced = true;
        // A replica that cannot persist its votes must not go on voting.
        self.file
            .write_all(&self.buffer)
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
        match FileStorage::write_whole(&self.path, records) {
            Ok(storage) => *self = storage,
            Err(error) => panic!("cannot rewrite {}: {error}", self.path.display()),
        }
    }

    fn compact(&mut self, records: &[Record]) {
        if self.appended_bytes >= COMPACT_AFTER_BYTES {
            self.replace(records);
        }
    }
}
