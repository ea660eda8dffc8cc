//! The node's checkpoint sink: a thread that owns the [`DiskStore`] and commits
//! checkpoints into it, so a commit's fsync never stalls the event loop.
//!
//! The thread holds the last snapshot written (what the file holds) as the base of the
//! next write's delta. One checkpoint waits at most: a newer one replaces it, so a disk
//! slower than checkpoints fall due writes the newest (its delta covers the skipped one)
//! and memory stays bounded. Each commit is reported through `notify`, which the node
//! feeds back to its driver.

use super::disk::DiskStore;
use super::{CheckpointSaved, CheckpointSink, Saving};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use zz_state_fetch::Snapshot;

/// What the node and the writer thread share.
#[derive(Default)]
struct Mailbox {
    /// The checkpoint to write next.
    waiting: Option<Snapshot>,
    stopping: bool,
}

type Shared = Arc<(Mutex<Mailbox>, Condvar)>;

/// See the module documentation.
pub struct DiskSink {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl DiskSink {
    /// Start the writer for `disk`, which holds `base` now (None: its content is
    /// unknown, so the first write rewrites every bucket). `notify` hears of every commit.
    pub fn start(
        disk: DiskStore,
        base: Option<Snapshot>,
        notify: impl Fn(CheckpointSaved) + Send + 'static,
    ) -> std::io::Result<DiskSink> {
        let shared: Shared = Arc::default();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".to_string())
            .spawn(move || write_loop(disk, base, &thread_shared, notify))?;
        Ok(DiskSink {
            shared,
            thread: Some(thread),
        })
    }

    /// Write what waits, then stop the thread.
    pub fn finish(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (mailbox, wake) = &*self.shared;
        lock(mailbox).stopping = true;
        wake.notify_one();
        if thread.join().is_err() {
            tracing::error!("the checkpoint writer panicked");
        }
    }
}

impl Drop for DiskSink {
    fn drop(&mut self) {
        self.finish();
    }
}

impl CheckpointSink for DiskSink {
    fn save(&mut self, snapshot: &Snapshot) -> Saving {
        if let Some(bucket) = snapshot.unknown_leaf() {
            tracing::debug!(seq = %snapshot.seq(), %bucket, "checkpoint not written: the state is still being fetched");
            return Saving::Unwritable;
        }
        let (mailbox, wake) = &*self.shared;
        lock(mailbox).waiting = Some(snapshot.clone());
        wake.notify_one();
        Saving::InProgress
    }
}

/// The mailbox holds plain data that stays consistent even if a holder panicked.
fn lock(mailbox: &Mutex<Mailbox>) -> std::sync::MutexGuard<'_, Mailbox> {
    mailbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_loop(
    mut disk: DiskStore,
    mut base: Option<Snapshot>,
    shared: &Shared,
    notify: impl Fn(CheckpointSaved),
) {
    let (mailbox, wake) = &**shared;
    loop {
        let snapshot = {
            let mut guard = lock(mailbox);
            loop {
                if let Some(snapshot) = guard.waiting.take() {
                    break snapshot;
                }
                if guard.stopping {
                    return;
                }
                guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        };
        let seq = snapshot.seq();
        let result = disk.write(&snapshot, base.as_ref());
        match &result {
            Ok(_) => base = Some(snapshot),
            Err(error) => tracing::error!(%seq, %error, "checkpoint not written"),
        }
        notify(CheckpointSaved {
            seq,
            result: result.map_err(|error| error.to_string()),
        });
    }
}
