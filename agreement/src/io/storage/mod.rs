//! Where a replica's [`Record`]s go: memory (simulator, tests) or an append-only file
//! ([`FileStorage`], in the format of the `format` module).
//!
//! An append is not durable yet; [`Storage::sync`] makes every record appended so far
//! durable at once. The driver holds back whatever the records vouch for until then and
//! syncs once per turn, so one fsync covers every record of a turn (group commit). The
//! file marks each sync point, so that reading after a power cut drops only what was
//! never synced, and refuses a file whose synced records are damaged.

mod file;
mod format;

pub use file::{FileStorage, StorageError};
pub use format::{Corruption, FORMAT_VERSION, FormatError};

use crate::core::persist::Record;

/// Durable storage for a replica's records. A storage that cannot write or sync panics
/// (naming what it could not write): a replica that cannot persist its votes must not go
/// on voting.
pub trait Storage {
    /// Add one record after the others; durable once [`Storage::sync`] returns.
    fn append(&mut self, record: &Record);
    /// Make every record appended so far durable.
    fn sync(&mut self);
    /// Whether a record was appended since the last sync.
    fn has_unsynced(&self) -> bool;
    /// Replace every record with `records`, durably by the time it returns.
    fn replace(&mut self, records: &[Record]);
    /// `records` say all that matters now; the storage may replace what it holds with them,
    /// or keep appending if rewriting costs more than it saves (the fold of the longer log
    /// gives the same replica).
    fn compact(&mut self, records: &[Record]) {
        self.replace(records);
    }
}

/// Records kept in memory, as a disk would keep them: those synced survive a simulated
/// crash ([`MemoryStorage::lose_unsynced`]), those appended after the last sync do not.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    records: Vec<Record>,
    /// The first `synced_count` records are durable.
    synced_count: usize,
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
        self.records.truncate(self.synced_count);
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, record: &Record) {
        self.records.push(record.clone());
    }
    fn sync(&mut self) {
        self.synced_count = self.records.len();
    }
    fn has_unsynced(&self) -> bool {
        self.synced_count < self.records.len()
    }
    fn replace(&mut self, records: &[Record]) {
        self.records = records.to_vec();
        self.synced_count = self.records.len();
    }
}

#[cfg(test)]
mod power_cut_tests;
#[cfg(test)]
mod tests;
