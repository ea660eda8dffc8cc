//! What a run can find wrong: a broken safety check, a client left waiting after healing,
//! a bound the simulator keeps exceeded, or a panic inside a core. Each kind carries the
//! values involved; `Display` gives the line people (and failing tests) read.

use std::fmt;
use zz_protocol::{AppId, ClientId, Digest, ExecutionId, ReplicaId, Seq, View};

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A checker saw two correct nodes disagree, or a node do what it must not.
    Safety(SafetyViolation),
    /// After healing, a client still had requests to go when the run ended.
    Liveness {
        client: ClientId,
        requests_left: u64,
        /// The client's last timestamp, and whether it is still outstanding.
        last_timestamp: u64,
        outstanding: bool,
        /// How long the healed network had to serve it.
        liveness_micros: u64,
        /// One line per agreement replica, then per execution replica, pool and
        /// activator event, as the run ended.
        replicas: String,
        executions: String,
        /// Why an app stalled, if the agreement replicas lack what it needs.
        shortage: Option<OrderShortage>,
    },
    /// A bound the simulator keeps on its own work was exceeded: something spins.
    Bound(BoundViolation),
    /// A core (or the simulator) broke an assertion.
    Panic { message: String },
}

impl From<SafetyViolation> for Violation {
    fn from(violation: SafetyViolation) -> Violation {
        Violation::Safety(violation)
    }
}

impl From<BoundViolation> for Violation {
    fn from(violation: BoundViolation) -> Violation {
        Violation::Bound(violation)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Safety(violation) => write!(f, "{violation}"),
            Violation::Liveness {
                client,
                requests_left,
                last_timestamp,
                outstanding,
                liveness_micros,
                replicas,
                executions,
                shortage,
            } => {
                write!(
                    f,
                    "liveness: client {client} still has {requests_left} requests to go \
                     (timestamp {last_timestamp} outstanding: {outstanding}) {:.1}s after \
                     healing\n{replicas}\n{executions}",
                    *liveness_micros as f64 / 1e6,
                )?;
                if let Some(shortage) = shortage {
                    write!(f, "\n  orders: {shortage}")?;
                }
                Ok(())
            }
            Violation::Bound(violation) => write!(f, "{violation}"),
            Violation::Panic { message } => write!(f, "panic: {message}"),
        }
    }
}

/// Which of an execution replica's reports two replicas disagree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// The digest of the replies to one executed order.
    Replies,
    /// The state root at an execution checkpoint.
    StateRoots,
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportKind::Replies => "replies",
            ReportKind::StateRoots => "state roots",
        })
    }
}

/// Which of an agreement replica's votes it contradicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VoteKind {
    /// As the primary: the pre-prepare it proposed.
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
}

impl fmt::Display for VoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteKind::PrePrepare => "pre-prepare",
            VoteKind::Prepare => "prepare",
            VoteKind::Commit => "commit",
            VoteKind::Checkpoint => "checkpoint vote",
        })
    }
}

/// One safety check that failed, with what it compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafetyViolation {
    /// Two correct replicas ordered different batches at one sequence number.
    BatchesDiffer {
        first: ReplicaId,
        first_digest: Digest,
        replica: ReplicaId,
        digest: Digest,
        seq: Seq,
    },
    /// Two correct replicas ordered different requests at one app sequence number.
    AppOrdersDiffer {
        first: ReplicaId,
        first_digest: Digest,
        replica: ReplicaId,
        digest: Digest,
        app: AppId,
        seq: Seq,
    },
    /// A correct replica ordered a batch that does not follow its last one.
    OrderGap {
        replica: ReplicaId,
        seq: Seq,
        last: Seq,
    },
    /// A correct replica ordered an app's order that does not follow its last one.
    AppOrderGap {
        replica: ReplicaId,
        app: AppId,
        seq: Seq,
        last: Seq,
    },
    /// A correct replica sent a vote with another digest than one it sent before for the
    /// same (view, seq) (checkpoint votes: the same seq, `view` 0): typically after a
    /// restart that lost the record of the first.
    OwnVoteContradicted {
        replica: ReplicaId,
        kind: VoteKind,
        view: View,
        seq: Seq,
        first_digest: Digest,
        digest: Digest,
    },
    /// A correct replica restarted without a vote it had sent in the view it restarted in
    /// (the record vouching for it was lost, so the vote left before it was synced).
    SentVoteForgotten {
        replica: ReplicaId,
        kind: VoteKind,
        view: View,
        seq: Seq,
        digest: Digest,
    },
    /// A correct replica holds a stable checkpoint other replicas hold with another digest.
    StableCheckpointsDiffer {
        replica: ReplicaId,
        seq: Seq,
        digest: Digest,
        others_digest: Digest,
    },
    /// A correct agreement replica made an app's execution checkpoint stable with another
    /// root, or after another batch, than a correct one before it did, or with a root no
    /// correct execution replica reported.
    ExecutionStableDiffers {
        replica: ReplicaId,
        app: AppId,
        seq: Seq,
        problem: &'static str,
    },
    /// A correct execution replica reported another digest than one before it.
    ExecutionReportsDiffer {
        execution: ExecutionId,
        app: AppId,
        seq: Seq,
        kind: ReportKind,
        first_digest: Digest,
        digest: Digest,
    },
    /// A correct execution replica replied another result than one before it.
    RepliesDiffer {
        execution: ExecutionId,
        client: ClientId,
        timestamp: u64,
        first_result: Vec<u8>,
        result: Vec<u8>,
    },
    /// A client accepted a request no correct replica ordered.
    AcceptedUnordered { client: ClientId, timestamp: u64 },
    /// A client accepted a result no correct execution replica gave.
    AcceptedWrongResult {
        client: ClientId,
        timestamp: u64,
        result: Vec<u8>,
        correct_result: Option<Vec<u8>>,
    },
    /// The activator destroyed a member more often than f+1 Faulty reports allowed.
    DestroyWithoutQuorum {
        member: ExecutionId,
        destroys: u64,
        licences: u64,
    },
    /// The activator thawed more than f standbys of an app at once.
    ThawsOverF {
        app: AppId,
        members: Vec<ExecutionId>,
    },
    /// The activator thawed standbys more often than f+1 alarms allowed.
    ThawWithoutQuorum {
        app: AppId,
        members: Vec<ExecutionId>,
        activation: u64,
        licences: u64,
    },
}

impl fmt::Display for SafetyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafetyViolation::BatchesDiffer {
                first,
                replica,
                seq,
                ..
            } => write!(
                f,
                "safety: {first} and {replica} ordered different batches at {seq}"
            ),
            SafetyViolation::AppOrdersDiffer {
                first,
                replica,
                app,
                seq,
                ..
            } => write!(
                f,
                "safety: {first} and {replica} ordered different requests at {seq} of {app}"
            ),
            SafetyViolation::OrderGap { replica, seq, last } => {
                write!(f, "gap: {replica} ordered {seq} after {last}")
            }
            SafetyViolation::AppOrderGap {
                replica,
                app,
                seq,
                last,
            } => write!(f, "gap: {replica} ordered {seq} of {app} after {last}"),
            SafetyViolation::OwnVoteContradicted {
                replica,
                kind,
                view,
                seq,
                first_digest,
                digest,
            } => write!(
                f,
                "safety: correct {replica} sent a {kind} for {seq} in {view} with digest \
                 {digest:?} after one with {first_digest:?}"
            ),
            SafetyViolation::SentVoteForgotten {
                replica,
                kind,
                view,
                seq,
                digest,
            } => write!(
                f,
                "safety: correct {replica} restarted without the {kind} it sent for {seq} in \
                 {view} (digest {digest:?}): it left before its record was synced"
            ),
            SafetyViolation::ExecutionStableDiffers {
                replica,
                app,
                seq,
                problem,
            } => write!(
                f,
                "safety: {replica} made checkpoint {seq} of {app} stable {problem}"
            ),
            SafetyViolation::StableCheckpointsDiffer { replica, seq, .. } => write!(
                f,
                "safety: {replica} holds stable checkpoint {seq} with a digest other replicas \
                 do not"
            ),
            SafetyViolation::ExecutionReportsDiffer {
                execution,
                app,
                seq,
                kind,
                ..
            } => write!(
                f,
                "execution: {execution} reports different {kind} at {seq} of {app}"
            ),
            SafetyViolation::RepliesDiffer {
                execution,
                client,
                timestamp,
                ..
            } => write!(
                f,
                "execution: correct {execution} replied to {client}'s request {timestamp} \
                 with another result than a correct replica before it"
            ),
            SafetyViolation::AcceptedUnordered { client, timestamp } => write!(
                f,
                "client {client} accepted timestamp {timestamp} that no correct replica ordered"
            ),
            SafetyViolation::AcceptedWrongResult {
                client, timestamp, ..
            } => write!(
                f,
                "client {client} accepted a result for timestamp {timestamp} that no correct \
                 execution replica gave"
            ),
            SafetyViolation::DestroyWithoutQuorum {
                member,
                destroys,
                licences,
            } => write!(
                f,
                "activation: {member} destroyed ({destroys} times) with only {licences} f+1 \
                 quorums of Faulty reports for it"
            ),
            SafetyViolation::ThawsOverF { app, members } => {
                write!(
                    f,
                    "activation: {app} thawed {members:?} at once, more than f"
                )
            }
            SafetyViolation::ThawWithoutQuorum {
                app,
                members,
                activation,
                licences,
            } => write!(
                f,
                "activation: {app} thawed {members:?} (activation {activation}) with only \
                 {licences} f+1 quorums of Wake or Faulty alarms"
            ),
        }
    }
}

/// A bound the simulator keeps on its own work, exceeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BoundViolation {
    /// The run processed more events than one run may.
    Events { limit: u64 },
    /// The alarm ledger holds more (app, epoch) and (app, epoch, member) keys than it may.
    LedgerKeys { keys: usize, limit: usize },
}

impl fmt::Display for BoundViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundViolation::Events { limit } => {
                write!(f, "more than {limit} events: something spins")
            }
            BoundViolation::LedgerKeys { keys, limit } => write!(
                f,
                "the alarm ledger grows without bound: {keys} keys, more than {limit}"
            ),
        }
    }
}

/// Why a stalled app's execution replica cannot go on, when the agreement replicas are the
/// cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderShortage {
    /// A joining replica: at most `most` correct agreement replicas name one checkpoint
    /// alike, fewer than f+1.
    CannotJoin {
        execution: ExecutionId,
        app: AppId,
        most: usize,
    },
    /// A running replica needs order `seq`, which only `holders` correct agreement
    /// replicas retain, fewer than f+1.
    OrderNotRetained {
        execution: ExecutionId,
        app: AppId,
        seq: Seq,
        holders: usize,
    },
}

impl fmt::Display for OrderShortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderShortage::CannotJoin {
                execution,
                app,
                most,
            } => write!(
                f,
                "{execution} ({app}) cannot join: at most {most} correct agreement replicas \
                 name one checkpoint alike"
            ),
            OrderShortage::OrderNotRetained {
                execution,
                app,
                seq,
                holders,
            } => write!(
                f,
                "{execution} ({app}) needs {seq}, which only {holders} correct agreement \
                 replicas retain"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_read_as_the_checks_word_them() {
        let gap = Violation::from(SafetyViolation::AppOrderGap {
            replica: ReplicaId(1),
            app: AppId(0),
            seq: Seq(5),
            last: Seq(3),
        });
        assert_eq!(gap.to_string(), "gap: r1 ordered s5 of app0 after s3");
        let thaws = SafetyViolation::ThawsOverF {
            app: AppId(1),
            members: vec![ExecutionId(4), ExecutionId(5)],
        };
        assert_eq!(
            thaws.to_string(),
            "activation: app1 thawed [ExecutionId(4), ExecutionId(5)] at once, more than f"
        );
        let contradicted = SafetyViolation::OwnVoteContradicted {
            replica: ReplicaId(2),
            kind: VoteKind::Prepare,
            view: View(1),
            seq: Seq(4),
            first_digest: Digest([1; 32]),
            digest: Digest([2; 32]),
        };
        assert_eq!(
            contradicted.to_string(),
            "safety: correct r2 sent a prepare for s4 in v1 with digest 02020202 after one \
             with 01010101"
        );
        let spins = Violation::from(BoundViolation::Events { limit: 10 });
        assert_eq!(spins.to_string(), "more than 10 events: something spins");
        let stalled = Violation::Liveness {
            client: ClientId(3),
            requests_left: 2,
            last_timestamp: 7,
            outstanding: true,
            liveness_micros: 20_000_000,
            replicas: "  r0".to_string(),
            executions: "  e0".to_string(),
            shortage: Some(OrderShortage::OrderNotRetained {
                execution: ExecutionId(2),
                app: AppId(0),
                seq: Seq(9),
                holders: 1,
            }),
        };
        assert_eq!(
            stalled.to_string(),
            "liveness: client c3 still has 2 requests to go (timestamp 7 outstanding: true) \
             20.0s after healing\n  r0\n  e0\n  orders: e2 (app0) needs s9, which only 1 \
             correct agreement replicas retain"
        );
    }
}
