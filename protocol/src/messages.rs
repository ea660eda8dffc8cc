//! Every message that crosses the network, and the certificates built from them.
//!
//! Normal-case messages are authenticated with MACs at the envelope level. The few messages
//! that must convince a third party (the pre-prepare header and prepares that make up a
//! prepared certificate, checkpoints, view changes and new views) are also signed: a MAC
//! proves nothing to anyone but its receiver (PBFT, OSDI 1999, section 4.4).

use crate::crypto::{Authenticator, Signature, Signed};
use crate::ids::{AppId, ClientId, Digest, Seq, View};
use serde::{Deserialize, Serialize};

mod activation;

pub use activation::{
    BucketData, FaultReason, Faulty, FetchBucket, FetchOrders, Join, Membership, Wake, WakeReason,
};

/// A client's operation, as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub app: AppId,
    pub client: ClientId,
    /// Grows with every new request of this client; a retransmission reuses it.
    pub timestamp: u64,
    #[serde(with = "serde_bytes")]
    pub op: Vec<u8>,
}

/// A request with the client's authenticator (one MAC per agreement replica, PBFT section
/// 4.4) and its signature. The MACs are the cheap check; the signature is what convinces
/// every replica alike, so that a client cannot make its request valid for some backups and
/// not others (see [`crate::crypto`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedRequest {
    pub request: Request,
    pub auth: Authenticator,
    pub signature: Signature,
}

impl AuthenticatedRequest {
    /// Roughly its encoded size, for the byte budgets of buffers and answers.
    pub fn weight(&self) -> usize {
        self.request.op.len() + 64 + 32 * self.auth.0.len()
    }
}

/// Roughly the encoded size of a batch or order of `requests`.
pub fn requests_weight(requests: &[AuthenticatedRequest]) -> usize {
    requests
        .iter()
        .map(AuthenticatedRequest::weight)
        .sum::<usize>()
        + 128
}

/// Non-deterministic inputs the primary proposes with a batch; backups check them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonDet {
    /// Milliseconds since the UNIX epoch; never decreases along the sequence.
    pub timestamp_ms: u64,
    pub seed: u64,
}

/// What one agreement instance orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub requests: Vec<AuthenticatedRequest>,
    pub nondet: NonDet,
    /// Execution checkpoints to make stable, each certified by f+1 agreement replicas:
    /// ordered like requests, so every correct replica makes the same checkpoint of an app
    /// stable at the same point of the sequence.
    pub stability: Vec<StabilityCertificate>,
}

impl Batch {
    /// The batch a new primary proposes for a sequence number nobody prepared (PBFT's null
    /// request); it orders nothing and changes no state.
    pub fn null() -> Batch {
        Batch::default()
    }

    pub fn is_null(&self) -> bool {
        self.requests.is_empty() && self.stability.is_empty()
    }

    pub fn digest(&self) -> Digest {
        self.digest_and_size().0
    }

    /// Roughly its encoded size, without encoding it (stability votes included), for
    /// budgets that must not cost an encoding to check.
    pub fn weight(&self) -> usize {
        let votes: usize = (self.stability.iter())
            .map(|certificate| 64 + 112 * certificate.votes.len())
            .sum();
        requests_weight(&self.requests) + votes
    }

    /// The digest and the encoded size, from one encoding.
    pub fn digest_and_size(&self) -> (Digest, usize) {
        let bytes = postcard::to_stdvec(self).expect("encoding a batch cannot fail");
        (Digest::of(&[b"zz batch", &bytes]), bytes.len())
    }
}

/// f+1 agreement replicas' signed votes that `checkpoint` (f+1 of the app's execution
/// replicas, and every active one not joining, reported its root) is stable: at least one
/// correct replica judged so. Ordered in a batch, it makes the checkpoint the app's stable
/// one at every replica alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StabilityCertificate {
    pub checkpoint: ExecutionCheckpoint,
    pub votes: Vec<Signed<ExecutionCheckpoint>>,
}

/// The signed part of a pre-prepare: it binds a digest to (view, seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepareHeader {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}

/// A backup's vote that it accepted the pre-prepare for (view, seq, digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}

/// A vote that (view, seq, digest) prepared at the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}

/// A replica's claim that its state after executing `seq` has digest `digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: Seq,
    pub digest: Digest,
}

/// 2f+1 matching signed checkpoints from distinct replicas: proof that `seq` is stable.
/// The genesis checkpoint (seq 0) needs no votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCertificate {
    pub seq: Seq,
    pub digest: Digest,
    pub votes: Vec<Signed<Checkpoint>>,
}

/// A signed pre-prepare and 2f matching signed prepares from distinct backups. It names
/// its batch by digest only, as PBFT's view changes do: a view change then fits in a frame
/// whatever the batches weigh, and a replica that lacks a batch fetches it by digest
/// ([`FetchProposals`]) from any peer, since the digest checks what comes back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCertificate {
    pub pre_prepare: Signed<PrePrepareHeader>,
    pub prepares: Vec<Signed<Prepare>>,
}

impl PreparedCertificate {
    pub fn view(&self) -> View {
        self.pre_prepare.body.view
    }
    pub fn seq(&self) -> Seq {
        self.pre_prepare.body.seq
    }
    pub fn digest(&self) -> Digest {
        self.pre_prepare.body.digest
    }
}

/// VIEW-CHANGE(v+1, stable checkpoint with proof, prepared certificates above it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub new_view: View,
    pub stable: CheckpointCertificate,
    /// At most one certificate per sequence number: the one from the highest view.
    pub prepared: Vec<PreparedCertificate>,
}

/// NEW-VIEW(v, the 2f+1 view changes it rests on, O).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view: View,
    pub view_changes: Vec<Signed<ViewChange>>,
    /// O: one pre-prepare signed by the new primary for every sequence number in
    /// (min-s, max-s], in order; by digest, like the certificates it comes from.
    pub entries: Vec<Signed<PrePrepareHeader>>,
}

/// A replica that entered a view without the batch of some of its re-proposals asks its
/// peers for them by (seq, digest); a window's worth at most.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchProposals {
    pub wanted: Vec<(Seq, Digest)>,
}

/// One batch asked for with [`FetchProposals`]; the asker keeps it only if it hashes to
/// a digest it still waits for at `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub seq: Seq,
    pub batch: Batch,
}

/// The agreement replica's own state at a checkpoint: where it is in the sequence, a hash
/// chain over every batch it ordered, and the last timestamp ordered for each client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub seq: Seq,
    pub chain: Digest,
    pub last_timestamp_ms: u64,
    /// Each client's last ordered request: its timestamp and the app it named, sorted by
    /// client id (a retransmission naming another app is not that request).
    pub clients: Vec<(ClientId, u64, AppId)>,
    /// Where each app's orders reached, sorted by app id.
    pub apps: Vec<AppHead>,
}

/// Where one app's own sequence of orders stands at an agreement checkpoint: its last
/// sequence number, and a hash chain over all its orders up to it. Certified with the
/// checkpoint, the chain lets a replica that jumped past those orders check any copy of
/// them it is sent, from a single peer (see [`AppOrder::chained`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHead {
    pub app: AppId,
    pub seq: Seq,
    pub chain: Digest,
    /// The app's stable execution checkpoint as ordered up to here, if any: (seq, root).
    pub stable: Option<(Seq, Digest)>,
}

impl CheckpointState {
    pub fn digest(&self) -> Digest {
        let bytes = postcard::to_stdvec(self).expect("encoding a checkpoint state cannot fail");
        Digest::of(&[b"zz checkpoint state", &bytes])
    }
}

/// Periodic progress report; a replica that sees f+1 peers ahead of it fetches what it missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub view: View,
    pub last_executed: Seq,
    pub stable: Seq,
}

/// A lagging replica asks for the committed batches in `from..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchBatches {
    pub from: Seq,
    pub to: Seq,
}

/// The answer to [`FetchBatches`]: the committed batches the responder still holds, and, when
/// the asker is behind the responder's stable checkpoint, that checkpoint with its proof and
/// state so the asker can jump to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batches {
    pub checkpoint: Option<(CheckpointCertificate, CheckpointState)>,
    pub entries: Vec<(Seq, Batch)>,
}

/// A committed batch, leaving agreement strictly in sequence order. Not a message: the
/// agreement driver hands it to its caller, and sends each app its share as an
/// [`AppOrder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub view: View,
    pub seq: Seq,
    pub batch: Batch,
}

/// The result of a request, sent to its client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The view the replier was in; tells the client who is primary. Not part of the vote.
    pub view: View,
    pub client: ClientId,
    pub timestamp: u64,
    #[serde(with = "serde_bytes")]
    pub result: Vec<u8>,
}

/// Everything that travels inside an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Request(AuthenticatedRequest),
    PrePrepare {
        pre_prepare: Signed<PrePrepareHeader>,
        batch: Batch,
    },
    Prepare(Signed<Prepare>),
    Commit(Commit),
    Checkpoint(Signed<Checkpoint>),
    ViewChange(Signed<ViewChange>),
    NewView(Signed<NewView>),
    Status(Status),
    FetchBatches(FetchBatches),
    Batches(Batches),
    Reply(Reply),
    AppOrder(AppOrder),
    Executed(Executed),
    ExecutionCheckpoint(ExecutionCheckpoint),
    /// From an agreement replica to an app's execution replicas: this checkpoint became
    /// stable (a certificate of it was ordered). On f+1 matching notices an
    /// execution replica keeps its snapshot as a stable one and drops older snapshots.
    ExecutionStable(ExecutionCheckpoint),
    /// Between agreement replicas: the sender judged this execution checkpoint stable and
    /// asks that it be ordered (f+1 such votes make a [`StabilityCertificate`]).
    StableVote(Signed<ExecutionCheckpoint>),
    Wake(Wake),
    Faulty(Faulty),
    Membership(Membership),
    Join(Join),
    FetchOrders(FetchOrders),
    FetchBucket(FetchBucket),
    BucketData(BucketData),
    FetchChainedOrders(FetchChainedOrders),
    ChainedOrders(ChainedOrders),
    FetchProposals(FetchProposals),
    Proposal(Proposal),
}

impl Message {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "request",
            Message::PrePrepare { .. } => "pre-prepare",
            Message::Prepare(_) => "prepare",
            Message::Commit(_) => "commit",
            Message::Checkpoint(_) => "checkpoint",
            Message::ViewChange(_) => "view-change",
            Message::NewView(_) => "new-view",
            Message::Status(_) => "status",
            Message::FetchBatches(_) => "fetch-batches",
            Message::Batches(_) => "batches",
            Message::Reply(_) => "reply",
            Message::AppOrder(_) => "app-order",
            Message::Executed(_) => "executed",
            Message::ExecutionCheckpoint(_) => "execution-checkpoint",
            Message::ExecutionStable(_) => "execution-stable",
            Message::StableVote(_) => "stable-vote",
            Message::Wake(_) => "wake",
            Message::Faulty(_) => "faulty",
            Message::Membership(_) => "membership",
            Message::Join(_) => "join",
            Message::FetchOrders(_) => "fetch-orders",
            Message::FetchBucket(_) => "fetch-bucket",
            Message::BucketData(_) => "bucket-data",
            Message::FetchChainedOrders(_) => "fetch-chained-orders",
            Message::ChainedOrders(_) => "chained-orders",
            Message::FetchProposals(_) => "fetch-proposals",
            Message::Proposal(_) => "proposal",
        }
    }
}

/// A committed batch of one app's requests, in that app's own gap-free sequence, so an
/// execution group never waits on another app's traffic. Agreement replicas send it to
/// the app's execution replicas, which act on f+1 matching copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOrder {
    pub app: AppId,
    /// The app's own sequence number.
    pub seq: Seq,
    /// The agreement sequence number the requests were committed at.
    pub agreement_seq: Seq,
    /// Never decreases along the app's sequence.
    pub nondet: NonDet,
    pub requests: Vec<AuthenticatedRequest>,
}

impl AppOrder {
    pub fn digest(&self) -> Digest {
        let bytes = postcard::to_stdvec(self).expect("encoding an order cannot fail");
        Digest::of(&[b"zz app order", &bytes])
    }

    /// The app's order chain after this order, given the chain before it (the chain of
    /// an app with no orders yet is the zero digest).
    pub fn chained(&self, before: Digest) -> Digest {
        Digest::of(&[b"zz app chain", &before.0, &self.digest().0])
    }
}

/// From one agreement replica to another that jumped past (state transfer) or forgot
/// (restart) some of an app's orders: send the orders it retains that end at `up_to`.
/// The asker knows the app's chain at `up_to`, so it can check what comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchChainedOrders {
    pub app: AppId,
    pub up_to: Seq,
}

/// The answer to [`FetchChainedOrders`]: consecutive orders of `app` ending at the asked
/// `up_to` (possibly none), with the app's chain before the first of them. Folding
/// [`AppOrder::chained`] over them from `chain_before` must give the asker's chain at
/// `up_to`, else the answer is forged. `stable` is the sender's last stable execution
/// checkpoint of the app, a claim the asker believes only when f+1 senders make it alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedOrders {
    pub app: AppId,
    pub chain_before: Digest,
    pub orders: Vec<AppOrder>,
    pub stable: Option<ExecutionCheckpoint>,
}

/// An execution replica's account of one app sequence number: a digest over the replies
/// it produced, which agreement replicas compare across the active replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub app: AppId,
    pub seq: Seq,
    pub replies: Digest,
}

/// An execution replica's state root after executing `seq` (every K app sequence numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionCheckpoint {
    pub app: AppId,
    pub seq: Seq,
    pub root: Digest,
}
