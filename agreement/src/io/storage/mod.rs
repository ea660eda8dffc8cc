//! Where a replica's [`Record`]s go: memory (simulator, tests) or an append-only file
//! ([`FileStorage`], in the format of the `format` module).
//!
//! An append is not durable yet. Records become durable in the order they were appended,
//! by [`Storage::sync`], which makes every record appended so far durable before it
//! returns. Positions count records appended since the storage was opened:
//! [`Storage::appended`] and [`Storage::durable`]. The driver holds back whatever the
//! records vouch for until they are durable; one sync covers every record of a turn
//! (group commit).
//! The file marks each sync point, so that reading after a power cut drops only what was
//! never synced, and refuses a file whose synced records are damaged.

mod direct;
mod file;
mod file_storage;
mod format;

pub use file::StorageError;
pub use file_storage::FileStorage;
pub use format::{Corruption, FORMAT_VERSION, FormatError};

use crate::core::persist::Record;

/// Durable storage for a replica's records. A storage that cannot write or sync panics
/// (naming what it could not write): a replica that cannot persist its votes must not go
/// on voting.
pub trait Storage {
    /// Add one record after the others; durable once a sync of it completed.
    fn append(&mut self, record: Record);
    /// Records appended so far: the position just after the last one.
    fn appended(&self) -> u64;
    /// Records durable so far: every record before this position survives a crash.
    fn durable(&self) -> u64;
    /// Make every record appended so far durable before returning.
    fn sync(&mut self);
    /// Replace every record with `records` (which say all that matters of the records so
    /// far), durably by the time it returns: every position appended is then durable.
    fn replace(&mut self, records: Vec<Record>);
    /// `records` say all that matters now; the storage may replace what it holds with them,
    /// or keep appending if rewriting costs more than it saves (the fold of the longer log
    /// gives the same replica). Whether it replaced them.
    fn compact(&mut self, records: Vec<Record>) -> bool {
        self.replace(records);
        true
    }
    /// Whether a record appended is not durable yet.
    fn has_unsynced(&self) -> bool {
        self.durable() < self.appended()
    }
}

/// Records kept in memory, as a disk would keep them: those synced survive a simulated
/// crash ([`MemoryStorage::lose_unsynced`]), those appended after the last sync do not.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    records: Vec<Record>,
    /// The first `synced_count` records are durable.
    synced_count: usize,
    /// Records appended since the storage was made (positions go on across replaces).
    appended: u64,
}

impl MemoryStorage {
    /// Every record, synced or not.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The records a crash now would leave.
    pub fn synced_records(&self) -> &[Record] {
        &self.records[..self.synced_count]
    }

    /// A crash: the records appended since the last sync are gone.
    pub fn lose_unsynced(&mut self) {
        let lost = self.records.len() - self.synced_count;
        self.records.truncate(self.synced_count);
        self.appended -= lost as u64;
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, record: Record) {
        self.records.push(record);
        self.appended += 1;
    }
    fn appended(&self) -> u64 {
        self.appended
    }
    fn durable(&self) -> u64 {
        self.appended - (self.records.len() - self.synced_count) as u64
    }
    fn sync(&mut self) {
        self.synced_count = self.records.len();
    }
    fn replace(&mut self, records: Vec<Record>) {
        self.records = records;
        self.synced_count = self.records.len();
    }
}

#[cfg(test)]
mod power_cut_tests;
#[cfg(test)]
mod tests;
