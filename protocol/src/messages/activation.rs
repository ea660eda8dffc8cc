//! Messages of on-demand activation: agreement replicas tell the activator to wake
//! standbys (`Wake`) and which replicas misbehaved (`Faulty`); the activator tells them
//! which replicas are active (`Membership`); a woken execution replica asks agreement
//! replicas where to start (`Join`, `FetchOrders`) and other execution replicas for state
//! (`FetchBucket`, `BucketData`).

use crate::ids::{AppId, ExecutionId, Seq};
use serde::{Deserialize, Serialize};

/// Why an agreement replica asks for standbys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WakeReason {
    /// The active replicas reported different reply digests for one sequence number.
    RepliesDiffer,
    /// An active replica reported nothing for a sequence number past the timeout.
    Silence,
    /// A client retransmitted a request that was already ordered: it did not get f+1
    /// matching replies.
    ClientRetransmit,
    /// The active replicas reported different state roots at a checkpoint.
    RootsDiffer,
}

impl WakeReason {
    pub fn name(self) -> &'static str {
        match self {
            WakeReason::RepliesDiffer => "replies-differ",
            WakeReason::Silence => "silence",
            WakeReason::ClientRetransmit => "client-retransmit",
            WakeReason::RootsDiffer => "roots-differ",
        }
    }
}

/// From an agreement replica to the activators: wake standbys of `app`. The activator acts
/// on f+1 matching (app, epoch) wakes from distinct agreement replicas, once per epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    pub app: AppId,
    /// The membership epoch the sender saw: a wake for an older epoch is stale.
    pub epoch: u64,
    /// Where the sender noticed the trouble.
    pub seq: Seq,
    pub reason: WakeReason,
}

/// Why an agreement replica reports an execution replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultReason {
    /// Its reply digest differed from the one f+1 replicas agreed on.
    WrongReplies,
    /// Its state root differed from the one f+1 replicas agreed on.
    WrongRoot,
    /// It reported nothing while f+1 others agreed, past the timeout.
    Silent,
}

impl FaultReason {
    pub fn name(self) -> &'static str {
        match self {
            FaultReason::WrongReplies => "wrong-replies",
            FaultReason::WrongRoot => "wrong-root",
            FaultReason::Silent => "silent",
        }
    }
}

/// From an agreement replica to the activators: `member` of `app` misbehaved. The
/// activator destroys a member on f+1 matching (app, epoch, member) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faulty {
    pub app: AppId,
    pub epoch: u64,
    pub member: ExecutionId,
    pub seq: Seq,
    pub reason: FaultReason,
}

/// From the activator to agreement replicas: the execution replicas of `app` that are
/// active from `epoch` on. It decides where orders go and whose silence counts, never
/// what is correct: stable checkpoints and client replies need f+1 matching replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub app: AppId,
    pub epoch: u64,
    pub active: Vec<ExecutionId>,
}

/// From a woken execution replica to agreement replicas: tell me the app's latest stable
/// checkpoint. Each answers with an `ExecutionStable` notice (sequence 0 when there is
/// none yet); the replica starts from one that f+1 agreement replicas sent alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub app: AppId,
}

/// From an execution replica to agreement replicas: send me the app's orders after
/// `after` (those retained since the last stable checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOrders {
    pub app: AppId,
    pub after: Seq,
}

/// From an execution replica to another: one bucket of the state at checkpoint `seq`, with
/// its Merkle proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchBucket {
    pub app: AppId,
    pub seq: Seq,
    pub bucket: u32,
}

/// The answer to a [`FetchBucket`]: the encoded proof (state-fetch's `BucketProof`), or
/// None when the server no longer keeps that checkpoint. The receiver trusts nothing in
/// it: the proof is checked against the root f+1 agreement replicas vouched for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketData {
    pub app: AppId,
    pub seq: Seq,
    pub bucket: u32,
    #[serde(with = "serde_bytes")]
    pub proof: Option<Vec<u8>>,
}
