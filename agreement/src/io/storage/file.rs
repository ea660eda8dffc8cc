//! The record file itself (see the `format` module): opened and read back, records
//! appended, synced with `fdatasync`, or rewritten whole. The writer thread (the `writer`
//! module) owns it while the replica runs.

use super::format::{self, FormatError, HEADER_BYTES};
use crate::core::persist::Record;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
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
///
/// The file is kept longer than its records, by zeros written ahead in chunks, so that an
/// append and its sync write data only: a sync that must also write the file's new size
/// (and allocate blocks) costs several more disk requests, for every sync. Zeros after the
/// last record read as unwritten space, the end of the log.
pub(super) struct RecordFile {
    path: PathBuf,
    file: File,
    /// Where the next record goes: the end of the last one.
    end: u64,
    /// The file's length: zeros from `end` on.
    allocated: u64,
    /// Bytes appended since the file was last rewritten.
    appended_bytes: u64,
}

/// Zeros are written ahead of the records this many bytes at a time.
const ALLOCATE_AHEAD_BYTES: u64 = 4 * 1024 * 1024;

impl RecordFile {
    /// Open (creating if needed) the record file at `path` and read back its records. A
    /// torn last record, from a crash in the middle of a write, is cut off; a file this zz
    /// cannot read (another format, or damaged before its last record) is an error. An
    /// empty file is taken as an empty log: there is nothing in it to lose.
    pub(super) fn open(path: &Path) -> Result<(RecordFile, Vec<Record>), StorageError> {
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
            write_durably(path, &RecordFile::encode(&[])).map_err(io_error)?;
            let storage = RecordFile::reopen(path, HEADER_BYTES as u64, 0).map_err(io_error)?;
            return Ok((storage, Vec::new()));
        }
        let contents = format::decode_file(&bytes).map_err(|problem| StorageError::Unreadable {
            path: path.display().to_string(),
            problem,
        })?;
        let valid_bytes = contents.valid_bytes as u64;
        let appended_bytes = valid_bytes - HEADER_BYTES as u64;
        let mut storage = RecordFile::reopen(path, valid_bytes, appended_bytes).map_err(io_error)?;
        if contents.valid_bytes < bytes.len() {
            // Cut the torn record (or the zeros written ahead) off before anything is
            // appended after it.
            let tail = &bytes[contents.valid_bytes..];
            if tail.iter().any(|byte| *byte != 0) {
                let torn_bytes = tail.len();
                tracing::warn!(path = %path.display(), torn_bytes, "dropped a torn last record");
            }
            storage.file.set_len(valid_bytes).map_err(io_error)?;
            storage.allocated = valid_bytes;
        }
        // What was read may have reached only the page cache before a kill (appended, not
        // yet synced); the restored replica sends votes again from it, so it must be on
        // disk first, or a power cut after the restart could make it forget them.
        storage.file.sync_data().map_err(io_error)?;
        Ok((storage, contents.records))
    }

    /// The file at `path`, its records ending at `end`.
    fn reopen(path: &Path, end: u64, appended_bytes: u64) -> std::io::Result<RecordFile> {
        let file = OpenOptions::new().write(true).open(path)?;
        let allocated = file.metadata()?.len();
        Ok(RecordFile {
            path: path.to_path_buf(),
            file,
            end,
            allocated,
            appended_bytes,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended since the file was last rewritten.
    pub(super) fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Append `records` with one write; durable after [`RecordFile::sync`].
    pub(super) fn append(&mut self, records: &[Record]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            format::encode_record(record, &mut bytes);
        }
        let new_end = self.end + bytes.len() as u64;
        if new_end > self.allocated {
            let allocated = new_end.next_multiple_of(ALLOCATE_AHEAD_BYTES);
            let zeros = vec![0u8; (allocated - self.allocated) as usize];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.allocated = allocated;
        }
        self.file.write_all_at(&bytes, self.end)?;
        self.end = new_end;
        self.appended_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Make every record appended so far durable. After a failed fdatasync the kernel may
    /// have dropped the dirty pages: retrying could report success for data never
    /// written, so a failure is for good (the caller stops).
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Replace every record with `records`, durably.
    pub(super) fn replace(&mut self, records: &[Record]) -> std::io::Result<()> {
        let bytes = RecordFile::encode(records);
        write_durably(&self.path, &bytes)?;
        *self = RecordFile::reopen(&self.path, bytes.len() as u64, 0)?;
        Ok(())
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
