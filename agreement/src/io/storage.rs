//! Where a replica's [`Record`]s go: memory (simulator, tests) or an append-only file.

use crate::core::persist::Record;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Durable storage for a replica's records.
pub trait Storage {
    /// Add one record after the others.
    fn append(&mut self, record: &Record);
    /// Replace every record with `records`.
    fn replace(&mut self, records: &[Record]);
    /// `records` say all that matters now; the storage may replace what it holds with them,
    /// or keep appending if rewriting costs more than it saves (the fold of the longer log
    /// gives the same replica).
    fn compact(&mut self, records: &[Record]) {
        self.replace(records);
    }
}

/// Records kept in memory; the simulator keeps it across a simulated crash.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    pub records: Vec<Record>,
}

impl Storage for MemoryStorage {
    fn append(&mut self, record: &Record) {
        self.records.push(record.clone());
    }
    fn replace(&mut self, records: &[Record]) {
        self.records = records.to_vec();
    }
}

/// Records in a file: each a little-endian u32 length and its postcard encoding. Writes
/// reach the OS before the replica sends anything derived from them, so a killed process
/// loses nothing; they are not fsynced, so a power loss may (a deliberate trade for speed).
pub struct FileStorage {
    path: PathBuf,
    file: File,
    /// Bytes appended since the file was last rewritten.
    appended_bytes: u64,
}

/// A record file is rewritten (compacted) only once this much was appended since the last
/// rewrite: compacting at every stable checkpoint would rewrite the whole window each time.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

/// A record file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StorageError {
    pub path: String,
    pub source: std::io::Error,
}

/// Bytes one record may take at most on disk; a longer length marks a torn tail.
const RECORD_BYTES_MAX: u32 = 1 << 30;

impl FileStorage {
    /// Open (creating if needed) the record file at `path` and read back its records. A
    /// torn last record, from a crash in the middle of a write, is ignored.
    pub fn open(path: &Path) -> Result<(FileStorage, Vec<Record>), StorageError> {
        let error = |source| StorageError {
            path: path.display().to_string(),
            source,
        };
        let mut records = Vec::new();
        if path.exists() {
            let mut reader = BufReader::new(File::open(path).map_err(error)?);
            loop {
                let mut length = [0u8; 4];
                if reader.read_exact(&mut length).is_err() {
                    break;
                }
                let length = u32::from_le_bytes(length);
                if length > RECORD_BYTES_MAX {
                    break;
                }
                let mut bytes = vec![0u8; length as usize];
                if reader.read_exact(&mut bytes).is_err() {
                    break;
                }
                match postcard::from_bytes::<Record>(&bytes) {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
        }
        let mut storage = FileStorage {
            path: path.to_path_buf(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(error)?,
            appended_bytes: 0,
        };
        // Rewrite so that a torn tail is gone before anything is appended after it.
        storage.replace(&records);
        Ok((storage, records))
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for record in records {
            let encoded = postcard::to_stdvec(record).expect("encoding a record cannot fail");
            bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&encoded);
        }
        bytes
    }
}

impl Storage for FileStorage {
    fn append(&mut self, record: &Record) {
        let bytes = FileStorage::encode(std::slice::from_ref(record));
        self.appended_bytes += bytes.len() as u64;
        // A replica that cannot persist its votes must not go on voting.
        self.file
            .write_all(&bytes)
            .unwrap_or_else(|error| panic!("cannot append to {}: {error}", self.path.display()));
    }

    fn replace(&mut self, records: &[Record]) {
        let temporary = self.path.with_extension("tmp");
        let result = std::fs::write(&temporary, FileStorage::encode(records))
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .and_then(|()| OpenOptions::new().append(true).open(&self.path));
        match result {
            Ok(file) => {
                self.file = file;
                self.appended_bytes = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::View;

    /// A record file reads back what was appended; a torn last record (a crash in the middle
    /// of a write) is dropped, and appending continues after the last whole record.
    #[test]
    fn a_record_file_survives_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("zz-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replica.records");
        let _ = std::fs::remove_file(&path);
        let view = |v| Record::View {
            view: View(v),
            normal: true,
        };
        {
            let (mut storage, records) = FileStorage::open(&path).unwrap();
            assert!(records.is_empty());
            storage.append(&view(1));
            storage.append(&view(2));
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        std::fs::write(&path, bytes).unwrap();
        {
            let (mut storage, records) = FileStorage::open(&path).unwrap();
            assert_eq!(records, vec![view(1), view(2)]);
            storage.append(&view(3));
        }
        let (_, records) = FileStorage::open(&path).unwrap();
        assert_eq!(records, vec![view(1), view(2), view(3)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
