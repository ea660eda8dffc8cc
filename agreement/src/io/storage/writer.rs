//! [`FileStorage`]: a record file written and synced by a thread of its own, so that the
//! replica goes on with its inputs while a sync runs. The replica hands it jobs in order
//! (append these records and sync; rewrite the file whole) and learns from the shared
//! progress how far records are durable; an optional callback tells the host when a job
//! is done, so it can send what waited for it.

use super::Storage;
use super::file::{RecordFile, StorageError};
use crate::core::persist::Record;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A record file is rewritten (compacted) only once this much was appended since the last
/// rewrite: compacting at every stable checkpoint would rewrite the whole window each time.
const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

/// Called on the writer thread each time more records are durable. It must not block.
pub type DurableCallback = Box<dyn Fn() + Send>;

/// Records in an append-only file, written by a thread of its own. See the module
/// documentation.
pub struct FileStorage {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    /// Records appended and not handed to the writer yet.
    pending: Vec<Record>,
    appended: u64,
    /// The position the last job handed to the writer reaches.
    handed: u64,
    writer: Option<JoinHandle<()>>,
}

enum Job {
    /// Append the records and sync; then every position before `through` is durable.
    Append { records: Vec<Record>, through: u64 },
    /// Rewrite the file with the records (they say all that matters of every record
    /// before `through`).
    Replace { records: Vec<Record>, through: u64 },
}

struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
    on_durable: Mutex<Option<DurableCallback>>,
}

#[derive(Default)]
struct Progress {
    durable: u64,
    appended_bytes: u64,
    /// Why the writer stopped: nothing after it becomes durable.
    failure: Option<String>,
}

impl FileStorage {
    /// Open (creating if needed) the record file at `path` and read back its records (see
    /// [`RecordFile::open`] for what is forgiven and what is an error), and start its
    /// writer thread.
    pub fn open(path: &Path) -> Result<(FileStorage, Vec<Record>), StorageError> {
        let (file, records) = RecordFile::open(path)?;
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress {
                appended_bytes: file.appended_bytes(),
                ..Progress::default()
            }),
            changed: Condvar::new(),
            on_durable: Mutex::new(None),
        });
        let (jobs, incoming) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("record-writer".into())
            .spawn(move || write_jobs(file, incoming, &writer_shared))
            .map_err(|source| StorageError::Io {
                path: path.display().to_string(),
                source,
            })?;
        let storage = FileStorage {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            shared,
            pending: Vec::new(),
            appended: 0,
            handed: 0,
            writer: Some(writer),
        };
        Ok((storage, records))
    }

    /// Write an empty record file (the header alone) at `path`, durably, replacing any
    /// file there: what a new cluster's replica starts from.
    pub fn create_empty(path: &Path) -> std::io::Result<()> {
        RecordFile::create_empty(path)
    }

    /// Call `callback` (on the writer thread) each time more records become durable.
    pub fn on_durable(&self, callback: DurableCallback) {
        *lock(&self.shared.on_durable) = Some(callback);
    }

    fn hand(&mut self, job: Job) {
        self.handed = self.appended;
        let jobs = self
            .jobs
            .as_ref()
            .expect("the writer runs while the storage lives");
        if jobs.send(job).is_err() {
            // The writer stopped on a failure; `progress` says which.
            self.wait_durable();
        }
    }

    /// Wait until every position appended is durable.
    fn wait_durable(&self) {
        let mut progress = lock(&self.shared.progress);
        loop {
            if let Some(failure) = &progress.failure {
                panic!("{failure}");
            }
            if progress.durable >= self.appended {
                return;
            }
            progress = (self.shared.changed.wait(progress)).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        let progress = lock(&self.shared.progress);
        // A replica that cannot persist its votes must not go on voting.
        if let Some(failure) = &progress.failure {
            panic!("{failure}");
        }
        progress
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
        self.progress().durable
    }

    fn start_sync(&mut self) {
        if !self.pending.is_empty() && self.handed <= self.durable() {
            let records = std::mem::take(&mut self.pending);
            let through = self.appended;
            self.hand(Job::Append { records, through });
        }
    }

    fn sync(&mut self) {
        if !self.pending.is_empty() {
            let records = std::mem::take(&mut self.pending);
            let through = self.appended;
            self.hand(Job::Append { records, through });
        }
        self.wait_durable();
    }

    fn replace(&mut self, records: Vec<Record>) {
        // The records say all that the pending ones said.
        self.pending.clear();
        let through = self.appended;
        self.hand(Job::Replace { records, through });
        self.wait_durable();
    }

    fn compact(&mut self, records: Vec<Record>) -> bool {
        let rewrite = self.progress().appended_bytes >= COMPACT_AFTER_BYTES;
        if rewrite {
            self.replace(records);
        }
        rewrite
    }
}

impl Drop for FileStorage {
    /// The writer finishes the jobs handed to it (records still pending are not written:
    /// the host syncs before it stops, if it stops cleanly).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.path)
            .field("appended", &self.appended)
            .field("handed", &self.handed)
            .finish_non_exhaustive()
    }
}

/// The writer thread: carry out jobs in order until the storage is dropped or a write
/// fails.
fn write_jobs(mut file: RecordFile, jobs: mpsc::Receiver<Job>, shared: &Shared) {
    let _stops_on_panic = FailsOnPanic(shared);
    for job in jobs {
        let (result, through, what) = match job {
            Job::Append { records, through } => {
                let result = file.append(&records).and_then(|()| file.sync());
                (result, through, "append to")
            }
            Job::Replace { records, through } => (file.replace(&records), through, "rewrite"),
        };
        let mut progress = lock(&shared.progress);
        match result {
            Ok(()) => {
                progress.durable = through;
                progress.appended_bytes = file.appended_bytes();
            }
            Err(error) => {
                let failure = format!("cannot {what} {}: {error}", file.path().display());
                tracing::error!(%failure, "record file write failed: the replica stops");
                progress.failure = Some(failure);
            }
        }
        let failed = progress.failure.is_some();
        drop(progress);
        shared.changed.notify_all();
        if let Some(callback) = lock(&shared.on_durable).as_ref() {
            callback();
        }
        if failed {
            return;
        }
    }
}

/// Marks the writer failed if it panics, so that the replica waiting on it stops with a
/// reason instead of waiting forever.
struct FailsOnPanic<'a>(&'a Shared);

impl Drop for FailsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut progress = lock(&self.0.progress);
            progress
                .failure
                .get_or_insert_with(|| "the record writer panicked".into());
            drop(progress);
            self.0.changed.notify_all();
        }
    }
}

/// A poisoned lock still holds consistent progress (it is updated in one assignment).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_that_panics_leaves_a_failure_for_the_waiting_replica() {
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            on_durable: Mutex::new(None),
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::spawn(move || {
            let _guard = FailsOnPanic(&writer_shared);
            panic!("a bug in the writer");
        });
        assert!(writer.join().is_err());
        let failure = lock(&shared.progress).failure.clone();
        assert_eq!(failure.as_deref(), Some("the record writer panicked"));
    }
}
