//! What the execution core counts: executed batches and requests, resent replies, and
//! dropped inputs by [`DropReason`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why the core dropped an input from an agreement replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// From an agreement replica outside the cluster.
    UnknownReplica,
    /// For another app.
    OtherApp,
    /// At or below what was executed already.
    Stale,
    /// Too far ahead of the next sequence number.
    OutsideWindow,
    /// A second copy from the same agreement replica.
    Duplicate,
    /// Its sender's orders waiting here weigh their share of memory already
    /// ([`super::ORDER_BYTES_PER_SENDER`]).
    SenderBytesFull,
    BadStableNotice,
    /// f+1 named a stable checkpoint whose root differs from this replica's own.
    DivergedFromStable,
    /// f+1 named a stable checkpoint this replica keeps no snapshot of.
    StableSnapshotNotKept,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::UnknownReplica => "unknown-replica",
            DropReason::OtherApp => "other-app",
            DropReason::Stale => "stale",
            DropReason::OutsideWindow => "outside-window",
            DropReason::Duplicate => "duplicate",
            DropReason::SenderBytesFull => "sender-bytes-full",
            DropReason::BadStableNotice => "bad-stable-notice",
            DropReason::DivergedFromStable => "diverged-from-stable",
            DropReason::StableSnapshotNotKept => "stable-snapshot-not-kept",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Dropped inputs, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecCounters {
    pub dropped: BTreeMap<DropReason, u64>,
    pub batches_executed: u64,
    pub requests_executed: u64,
    pub replies_resent: u64,
}
