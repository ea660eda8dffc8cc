//! The driver's side of durable checkpoints: each checkpoint goes to the sink, and its
//! report leaves only once the sink says it (or a later checkpoint) is durable; a replica
//! restored from disk asks for the orders after its checkpoint.

use super::ExecutionDriver;
use crate::durable::{CheckpointSaved, CheckpointSink, Saving};
use crate::fault::FaultyOutputs as _;
use zz_protocol::bus::MessageBus;
use zz_protocol::messages::{ExecutionCheckpoint, FetchOrders, Message};
use zz_protocol::{Seq, Time};

/// Checkpoint reports kept waiting for their write at most. More wait only while writes
/// keep failing; the oldest then go unsent (never durable, and later ones supersede them).
pub const UNSAVED_REPORTS_MAX: usize = 64;

/// How the driver's checkpoints became durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurabilityCounters {
    /// Writes the sink completed.
    pub checkpoints_saved: u64,
    /// Writes that failed (their reports wait for a later write that succeeds).
    pub save_failures: u64,
    /// Checkpoints that could not be written (the state was still being fetched): their
    /// reports wait for the first checkpoint written whole after the fetch.
    pub checkpoints_awaiting_state: u64,
    /// The latest checkpoint known durable.
    pub last_saved: Option<Seq>,
}

impl<B: MessageBus, S: CheckpointSink> ExecutionDriver<B, S> {
    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn durability(&self) -> &DurabilityCounters {
        &self.durability
    }

    /// Checkpoint reports waiting for their checkpoint to be durable.
    pub fn unsaved_reports(&self) -> usize {
        self.unsaved.len()
    }

    /// Start executing after what the replica's state store held (a restored checkpoint,
    /// or nothing: sequence 0): ask every agreement replica for the orders after it. If a
    /// newer checkpoint is stable by now, f+1 of them say so, and the replica starts over
    /// from that one.
    pub fn resume(&mut self, now: Time) {
        let after = self.replica.last_executed();
        tracing::info!(app = %self.replica.app(), %after, "resuming after what the state store held");
        self.note_progress(now);
        let fetch = Message::FetchOrders(FetchOrders {
            app: self.replica.app(),
            after,
        });
        self.broadcast(&fetch);
        self.fetch(now);
    }

    /// The sink's answer for a checkpoint it was writing: on success the reports of that
    /// checkpoint and every earlier one leave.
    pub fn handle_checkpoint_saved(&mut self, saved: CheckpointSaved) {
        match saved.result {
            Ok(stats) => {
                tracing::debug!(app = %self.replica.app(), seq = %saved.seq, ?stats, "checkpoint durable");
                self.note_saved(saved.seq);
            }
            Err(problem) => {
                tracing::warn!(app = %self.replica.app(), seq = %saved.seq, %problem, "checkpoint not durable: its report waits for a later write");
                self.durability.save_failures += 1;
            }
        }
    }

    /// Hand checkpoint `checkpoint` to the sink, and report it once durable.
    pub(super) fn save_checkpoint(&mut self, checkpoint: ExecutionCheckpoint) {
        let saving = match self.replica.store().snapshot(checkpoint.seq) {
            Some(snapshot) => self.sink.save(snapshot),
            // A later checkpoint of the same call already pushed this snapshot out; the
            // later one's write covers this one.
            None => Saving::InProgress,
        };
        if self.unsaved.len() >= UNSAVED_REPORTS_MAX {
            self.unsaved.pop_front();
        }
        self.unsaved.push_back(checkpoint);
        match saving {
            Saving::Saved => self.note_saved(checkpoint.seq),
            Saving::InProgress => {}
            Saving::Unwritable => {
                // Reported now, it could become stable with this replica's disk lacking
                // it, and the orders before it could go from the agreement replicas; so
                // it waits for the first checkpoint written whole once the fetch is done.
                self.durability.checkpoints_awaiting_state += 1;
            }
        }
    }

    fn note_saved(&mut self, seq: Seq) {
        self.durability.checkpoints_saved += 1;
        self.durability.last_saved = self.durability.last_saved.max(Some(seq));
        self.release_reports(seq);
    }

    /// Send the reports of checkpoints up to `seq`.
    fn release_reports(&mut self, seq: Seq) {
        while let Some(checkpoint) = self.unsaved.front().copied() {
            if checkpoint.seq > seq {
                break;
            }
            self.unsaved.pop_front();
            let reported = self.fault.checkpoint(checkpoint);
            self.broadcast(&Message::ExecutionCheckpoint(reported));
            self.last_reports.checkpoint(checkpoint);
        }
    }
}
