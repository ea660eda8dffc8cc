//! [`FileStorage`]: the record file behind the [`Storage`] trait. Records appended wait in
//! memory; a sync writes them all with one write and one `fdatasync`, on the caller's
//! thread (group commit: the node syncs once per turn, for every record of the turn). The
//! node waits for each sync anyway, before it sends what the records vouch for, so a thread
//! of the file's own would only add two context switches to every sync.

use super::Storage;
use super::file::{RecordFile, StorageError};
use crate::core::persist::Record;
use std::path::Path;

/// A record file is rewritten (compacted) only once this much was appended since the last
/// rewrite: compacting at every stable checkpoint would rewrite the whole window each time.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

/// Records in an append-only file. See the module documentation.
pub struct FileStorage {
    file: RecordFile,
    /// Records appended and not written yet.
    pending: Vec<Record>,
    appended: u64,
    durable: u64,
}

impl FileStorage {
    /// Open the record file at `path` and read back its records (see [`RecordFile::open`]
    /// for what is forgiven and what is an error).
    pub fn open(path: &Path) -> Result<(FileStorage, Vec<Record>), StorageError> {
        let (file, records) = RecordFile::open(path)?;
        let storage = FileStorage {
            file,
            pending: Vec::new(),
            appended: 0,
            durable: 0,
        };
        Ok((storage, records))
    }

    /// Write an empty record file (the header alone) at `path`, durably, replacing any
    /// file there: what a new cluster's replica starts from.
    pub fn create_empty(path: &Path) -> std::io::Result<()> {
        RecordFile::create_empty(path)
    }

    /// A replica that cannot persist its votes must not go on voting; after a failed
    /// `fdatasync` the kernel may have dropped the pages, so there is no retrying either.
    fn stop_on_failure(&self, what: &str, result: std::io::Result<()>) {
        if let Err(error) = result {
            let failure = format!("cannot {what} {}: {error}", self.file.path().display());
            tracing::error!(%failure, "record file write failed: the replica stops");
            panic!("{failure}");
        }
    }
}

impl Storage for FileStorage {
    fn append(&mut self, record: Record) {
        self.pending.push(record);
        self.appended += 1;
    }

    fn appended(&self) -> u64 {
        self.appended
    }

    fn durable(&self) -> u64 {
        self.durable
    }

    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let result = (self.file.append(&self.pending)).and_then(|()| self.file.sync());
        self.stop_on_failure("append to", result);
        self.pending.clear();
        self.durable = self.appended;
    }

    fn replace(&mut self, records: Vec<Record>) {
        // The records say all that the pending ones said.
        self.pending.clear();
        let result = self.file.replace(&records);
        self.stop_on_failure("rewrite", result);
        self.durable = self.appended;
    }

    fn compact(&mut self, records: Vec<Record>) -> bool {
        let rewrite = self.file.appended_bytes() >= COMPACT_AFTER_BYTES;
        if rewrite {
            self.replace(records);
        }
        rewrite
    }
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.file.path())
            .field("appended", &self.appended)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}
