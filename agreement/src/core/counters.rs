//! What a replica counts, for logs, status and metrics: the messages it dropped, by
//! reason, and its progress.

use std::collections::BTreeMap;

/// Why messages were dropped, by reason; for logs, status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped: BTreeMap<&'static str, u64>,
    pub view_changes_started: u64,
    pub batches_ordered: u64,
    pub requests_ordered: u64,
    pub checkpoints_stable: u64,
    pub state_transfers: u64,
}
