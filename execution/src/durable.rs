//! Durable checkpoints: an execution replica's state survives `zz down`, a crash of every
//! process, or a power cut (DESIGN.md, "Durability").
//!
//! Each checkpoint the replica computes is handed to a [`CheckpointSink`]; its report
//! (`ExecutionCheckpoint`) goes to the agreement replicas only once the sink says it is
//! durable. A checkpoint becomes stable only when every active replica reported it, so a
//! stable checkpoint is on every active replica's disk, and the agreement replicas may
//! drop the orders before it. Replies are not held: the orders they answer are durable on
//! the agreement replicas, and a restarted replica executes them again.
//!
//! The node's sink is [`writer::DiskSink`]: a thread that writes each checkpoint into the
//! replica's [`disk::DiskStore`], one redb write transaction per checkpoint, holding only
//! what changed since the last checkpoint written ([`Snapshot::delta_since`]), and what
//! that overwrote, so that the checkpoints written after the latest stable one can be
//! rebuilt at restart too: a checkpoint is written before it can become stable, so
//! fetchers may be pinned to one older than the last written. The sink hears of each
//! newer stable checkpoint ([`CheckpointSink::stable`]) and drops what is older. The
//! simulator and tests use [`MemoryCheckpoints`], which is durable at once.
//!
//! On start the node opens the store ([`startup`]): a checkpoint found there is rebuilt and
//! checked against its root ([`zz_state_fetch::Restorer`]), as is each older checkpoint
//! kept since the stable one; buckets that fail are fetched from peers; the replica
//! resumes after the checkpoint.

mod commit;
pub mod disk;
pub mod startup;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
mod undo;
pub mod writer;

use zz_protocol::Seq;
use zz_state_fetch::Snapshot;

/// What [`CheckpointSink::save`] did with a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saving {
    /// Durable on return: report it now.
    Saved,
    /// Being written: report it once [`CheckpointSaved`] comes back for it or a later one.
    InProgress,
    /// It cannot be written: the state misses buckets whose leaves it does not know (a
    /// woken replica still fetching). Its report waits for the first checkpoint written
    /// whole once the fetch completes, which vouches for it.
    Unwritable,
}

/// Where an execution replica's checkpoints become durable. The driver calls
/// [`save`](Self::save) for each checkpoint, in sequence order; a sink that answers
/// [`Saving::InProgress`] later hands the driver a [`CheckpointSaved`]
/// ([`ExecutionDriver::handle_checkpoint_saved`](crate::ExecutionDriver::handle_checkpoint_saved)).
/// Snapshots are copy-on-write, so keeping one is cheap.
pub trait CheckpointSink {
    fn save(&mut self, snapshot: &Snapshot) -> Saving;

    /// Checkpoint `seq` is stable (f+1 agreement replicas said so): no fetcher is pinned
    /// to an older one any more, so what the sink keeps of older ones may go. Called with
    /// ascending `seq`.
    fn stable(&mut self, seq: Seq);
}

/// A sink's answer for checkpoint `seq`, which covers every checkpoint before it too (a
/// sink may skip a checkpoint when a newer one is already waiting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSaved {
    pub seq: Seq,
    /// What the write cost, or why it failed (nothing was written then).
    pub result: Result<WriteStats, String>,
}

/// What one checkpoint's write put on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub objects_put: u64,
    pub objects_deleted: u64,
    /// Key and value bytes of the objects put.
    pub object_bytes: u64,
    pub leaves_written: u64,
    /// Undo records kept for the checkpoint before it, and dropped (older than stable).
    pub undo_records_written: u64,
    pub undo_records_deleted: u64,
}

/// A sink durable at once, in memory: it keeps the last checkpoint saved (what a restart
/// would find). For the simulator and tests.
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpoints {
    last: Option<Snapshot>,
    saved_count: u64,
    stable: Option<Seq>,
}

impl MemoryCheckpoints {
    pub fn last_saved(&self) -> Option<&Snapshot> {
        self.last.as_ref()
    }

    /// The latest checkpoint the sink heard is stable.
    pub fn stable_seq(&self) -> Option<Seq> {
        self.stable
    }

    pub fn saved_count(&self) -> u64 {
        self.saved_count
    }
}

impl CheckpointSink for MemoryCheckpoints {
    fn save(&mut self, snapshot: &Snapshot) -> Saving {
        self.last = Some(snapshot.clone());
        self.saved_count += 1;
        Saving::Saved
    }

    fn stable(&mut self, seq: Seq) {
        self.stable = Some(seq);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod undo_tests;
