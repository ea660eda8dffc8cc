//! The record file itself (see the `format` module): opened and read back, records
//! appended (directly to the disk where possible, see the `direct` module), synced with
//! `fdatasync`, or rewritten whole. [`super::FileStorage`] owns it while the replica runs.

use super::direct::Appender;
use super::format::{self, FileId, FormatError, HEADER_BYTES};
use crate::core::persist::Record;
use rand::RngExt as _;
use std::fs::File;
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
pub(super) struct RecordFile {
    path: PathBuf,
    appender: Appender,
    file_id: FileId,
    /// Where the next append goes: the end of the last frame.
    end: u64,
    /// Bytes appended since the file was last written whole.
    appended_bytes: u64,
    /// What one append writes, kept so that appending allocates nothing.
    buffer: Vec<u8>,
}

impl RecordFile {
    /// Open the record file at `path` and read back its records. A torn tail (what was
    /// appended after the last sync, lost in a crash or a power cut) is cut off; a file
    /// this zz cannot read (another format, or synced records damaged) is an error, and so
    /// is a missing file: a replica that already voted must not start as if it never had.
    /// An empty file (an operator's deliberate fresh start) is taken as an empty log.
    pub(super) fn open(path: &Path) -> Result<(RecordFile, Vec<Record>), StorageError> {
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
            let storage = RecordFile::write_whole(path, &[]).map_err(io_error)?;
            return Ok((storage, Vec::new()));
        }
        let contents = format::decode_file(&bytes).map_err(|problem| StorageError::Unreadable {
            path: path.display().to_string(),
            problem,
        })?;
        let tail = &bytes[contents.valid_bytes..];
        if tail.iter().any(|byte| *byte != 0) {
            tracing::warn!(path = %path.display(), torn_bytes = tail.len(), "dropped a torn tail");
            // Rewritten whole, under a new file id, rather than cut in place: then within
            // one file id the file only ever grows, so no stale byte past the cut (should
            // the file system show one again) passes a check.
            let storage = RecordFile::write_whole(path, &contents.records).map_err(io_error)?;
            return Ok((storage, contents.records));
        }
        // Zeros after the last frame are space the file system allocated and never wrote:
        // appends go on over them, and no stale byte is left there to pass a check.
        let end = contents.valid_bytes as u64;
        let storage = RecordFile::reopen(path, contents.file_id, end).map_err(io_error)?;
        // What was read may have reached only the page cache before a kill (appended, not
        // yet synced); the restored replica sends votes again from it, so it must be on
        // disk first, or a power cut after the restart could make it forget them.
        storage.appender.sync().map_err(io_error)?;
        Ok((storage, contents.records))
    }

    /// Write an empty record file (the header alone) at `path`, durably, replacing any
    /// file there: what a new cluster's replica starts from.
    pub(super) fn create_empty(path: &Path) -> std::io::Result<()> {
        RecordFile::write_whole(path, &[]).map(drop)
    }

    /// Write `records` as the whole file at `path`, under a new file id, durably; open it
    /// for appending.
    fn write_whole(path: &Path, records: &[Record]) -> std::io::Result<RecordFile> {
        let file_id = FileId(rand::rng().random());
        let mut bytes = format::header(file_id).to_vec();
        for record in records {
            format::encode_record(record, file_id, &mut bytes);
        }
        write_durably(path, &bytes)?;
        let mut storage = RecordFile::reopen(path, file_id, bytes.len() as u64)?;
        storage.appended_bytes = 0;
        Ok(storage)
    }

    /// The file at `path`, its frames ending at `end`; every record in it counts as
    /// appended since the last rewrite (when that was is not known).
    fn reopen(path: &Path, file_id: FileId, end: u64) -> std::io::Result<RecordFile> {
        Ok(RecordFile {
            path: path.to_path_buf(),
            appender: Appender::open(path, end)?,
            file_id,
            end,
            appended_bytes: end - HEADER_BYTES as u64,
            buffer: Vec::new(),
        })
    }

    /// Where the next append goes.
    #[cfg(test)]
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended since the file was last rewritten.
    pub(super) fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Append `records` with one write, after a sync marker; durable after
    /// [`RecordFile::sync`]. Call once per sync: the marker says the file was durable up
    /// to where it starts, so a reader finding it past damage knows the damage was synced,
    /// not a torn tail.
    pub(super) fn append(&mut self, records: &[Record]) -> std::io::Result<()> {
        self.buffer.clear();
        format::encode_sync_marker(self.end, self.file_id, &mut self.buffer);
        for record in records {
            format::encode_record(record, self.file_id, &mut self.buffer);
        }
        self.appender.append(&self.buffer, self.end)?;
        self.end += self.buffer.len() as u64;
        self.appended_bytes += self.buffer.len() as u64;
        Ok(())
    }

    /// Make every record appended so far durable. After a failed fdatasync the kernel may
    /// have dropped the dirty pages: retrying could report success for data never
    /// written, so a failure is for good (the caller stops).
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        self.appender.sync()
    }

    /// Replace every record with `records`, durably.
    pub(super) fn replace(&mut self, records: &[Record]) -> std::io::Result<()> {
        *self = RecordFile::write_whole(&self.path, records)?;
        Ok(())
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
