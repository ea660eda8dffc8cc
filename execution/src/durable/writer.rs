//! The node's checkpoint sink: a thread that owns the [`DiskStore`] and commits
//! checkpoints into it, so a commit's fsync never stalls the event loop.
//!
//! The thread holds the last snapshot written (what the file holds) as the base of the
//! next write's delta. Checkpoints that fall due while a write is under way wait, and the
//! next transaction writes them all, each as a delta on the one before, so every
//! checkpoint can be rebuilt at restart (a skipped one could be the stable one fetchers
//! are pinned to). At most [`PENDING_CHECKPOINTS_MAX`] wait (snapshots share unchanged
//! buckets, so each costs what changed); past that the oldest waiting is skipped, its
//! changes covered by the next one's delta. A newer stable checkpoint is recorded, and
//! the undo before it dropped, with the next write, or alone when the writer stops. Each
//! commit is reported through `notify`, which the node feeds back to its driver.

use super::disk::DiskStore;
use super::{CheckpointSaved, CheckpointSink, Saving};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use zz_protocol::Seq;
use zz_state_fetch::Snapshot;

/// Checkpoints waiting for the writer at most.
pub const PENDING_CHECKPOINTS_MAX: usize = 16;

/// What the node and the writer thread share.
#[derive(Default)]
struct Mailbox {
    /// The checkpoints to write next, ascending.
    waiting: Vec<Snapshot>,
    /// The latest stable checkpoint not recorded yet.
    stable: Option<Seq>,
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
        let mut guard = lock(mailbox);
        if guard.waiting.len() >= PENDING_CHECKPOINTS_MAX {
            let skipped = guard.waiting.remove(0);
            tracing::warn!(seq = %skipped.seq(), "the disk lags: a checkpoint waiting for the writer is skipped (the next one's write covers it)");
        }
        guard.waiting.push(snapshot.clone());
        drop(guard);
        wake.notify_one();
        Saving::InProgress
    }

    fn stable(&mut self, seq: Seq) {
        let (mailbox, wake) = &*self.shared;
        lock(mailbox).stable = Some(seq);
        wake.notify_one();
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
        let (waiting, stable) = {
            let mut guard = lock(mailbox);
            loop {
                if !guard.waiting.is_empty() {
                    break (std::mem::take(&mut guard.waiting), guard.stable.take());
                }
                if guard.stopping {
                    if let Some(stable) = guard.stable.take()
                        && let Err(error) = disk.record_stable(stable)
                    {
                        tracing::warn!(%stable, %error, "stable checkpoint not recorded");
                    }
                    return;
                }
                guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        };
        let last = waiting.last().expect("at least one waits").clone();
        let chain: Vec<&Snapshot> = waiting.iter().collect();
        let result = disk.write_chain(&chain, base.as_ref(), stable);
        match &result {
            Ok(_) => base = Some(last.clone()),
            Err(error) => {
                tracing::error!(seq = %last.seq(), %error, "checkpoint not written");
                // Not recorded: the next write tries again.
                let mut guard = lock(mailbox);
                guard.stable = guard.stable.max(stable);
            }
        }
        notify(CheckpointSaved {
            seq: last.seq(),
            result: result.map_err(|error| error.to_string()),
        });
    }
}
