//! What a replica counts, for logs, status and metrics: the messages it dropped, by
//! reason, and its progress.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why the core dropped a verified message. Shown (and serialized) in kebab case, as in
/// status files: `StaleView` is `stale-view`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// A message this replica signed or sent itself, echoed back.
    FromSelf,
    /// An execution replica's report or an activator's notice, which the driver takes.
    ExecutionReport,
    /// A client sent a message only replicas send.
    ClientSentReplicaMessage,
    /// A kind of message the ordering core never takes.
    UnexpectedKind,
    /// A request older than the one last ordered for its client.
    StaleRequest,
    /// A request from a new client while [`super::WAITING_CLIENTS_MAX`] are waiting.
    WaitingTableFull,
    /// For a view beyond the next one, or past the sender's share of the buffer.
    FutureView,
    /// For a view this replica has left.
    StaleView,
    /// For a sequence number outside the watermarks.
    OutsideWindow,
    /// A pre-prepare at or below the sequence numbers the new-view message covered.
    BelowNewViewRange,
    /// A pre-prepare whose timestamp is too far from this replica's clock.
    BadNondet,
    /// A vote or pre-prepare this replica already has.
    Duplicate,
    /// A pre-prepare with another digest than the one accepted for its (view, seq).
    ConflictingPrePrepare,
    /// A prepare from the primary of its view, which sends a pre-prepare instead.
    PrepareFromPrimary,
    /// A checkpoint vote at a sequence number that is not a checkpoint's.
    CheckpointOffInterval,
    /// A new-view message whose re-proposals are not the ones its view changes give.
    NewViewMismatch,
    /// A fetch whose range is empty.
    BadFetchRange,
    /// A proposal for a sequence number whose re-proposal this replica does not await.
    UnsolicitedProposal,
    /// A proposal whose batch does not hash to the awaited re-proposal's digest.
    ProposalDigest,
}

impl DropReason {
    /// The reason's name in status files and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::FromSelf => "from-self",
            DropReason::ExecutionReport => "execution-report",
            DropReason::ClientSentReplicaMessage => "client-sent-replica-message",
            DropReason::UnexpectedKind => "unexpected-kind",
            DropReason::StaleRequest => "stale-request",
            DropReason::WaitingTableFull => "waiting-table-full",
            DropReason::FutureView => "future-view",
            DropReason::StaleView => "stale-view",
            DropReason::OutsideWindow => "outside-window",
            DropReason::BelowNewViewRange => "below-new-view-range",
            DropReason::BadNondet => "bad-nondet",
            DropReason::Duplicate => "duplicate",
            DropReason::ConflictingPrePrepare => "conflicting-pre-prepare",
            DropReason::PrepareFromPrimary => "prepare-from-primary",
            DropReason::CheckpointOffInterval => "checkpoint-off-interval",
            DropReason::NewViewMismatch => "new-view-mismatch",
            DropReason::BadFetchRange => "bad-fetch-range",
            DropReason::UnsolicitedProposal => "unsolicited-proposal",
            DropReason::ProposalDigest => "proposal-digest",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why messages were dropped, by reason; for logs, status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped: BTreeMap<DropReason, u64>,
    pub view_changes_started: u64,
    pub batches_ordered: u64,
    pub requests_ordered: u64,
    pub checkpoints_stable: u64,
    pub state_transfers: u64,
    /// New views not re-sent to a peer that had one from this replica within a view-change
    /// timeout.
    pub new_views_withheld: u64,
    /// Fetched batch bodies not kept: their sender had its share of memory here already.
    pub fetched_bodies_refused: u64,
    /// Answers to fetch requests not sent: the asker had its share of this status
    /// interval's answers already.
    pub fetch_answers_withheld: u64,
    /// Batches of a new view's re-proposals that this replica lacked and fetched by digest.
    pub proposals_fetched: u64,
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    /// Every reason, to check them all.
    const ALL: [DropReason; 19] = [
        DropReason::FromSelf,
        DropReason::ExecutionReport,
        DropReason::ClientSentReplicaMessage,
        DropReason::UnexpectedKind,
        DropReason::StaleRequest,
        DropReason::WaitingTableFull,
        DropReason::FutureView,
        DropReason::StaleView,
        DropReason::OutsideWindow,
        DropReason::BelowNewViewRange,
        DropReason::BadNondet,
        DropReason::Duplicate,
        DropReason::ConflictingPrePrepare,
        DropReason::PrepareFromPrimary,
        DropReason::CheckpointOffInterval,
        DropReason::NewViewMismatch,
        DropReason::BadFetchRange,
        DropReason::UnsolicitedProposal,
        DropReason::ProposalDigest,
    ];

    /// The kebab case of a variant's name, as `#[serde(rename_all = "kebab-case")]`
    /// spells it.
    fn kebab_case(variant: &str) -> String {
        let mut name = String::new();
        for (index, letter) in variant.chars().enumerate() {
            if letter.is_ascii_uppercase() && index > 0 {
                name.push('-');
            }
            name.push(letter.to_ascii_lowercase());
        }
        name
    }

    /// A reason shows with the name serde gives it, so a status file reads the same
    /// whichever of the two wrote it.
    #[test]
    fn a_reason_displays_as_serde_names_it() {
        for reason in ALL {
            assert_eq!(reason.to_string(), kebab_case(&format!("{reason:?}")));
        }
    }
}
