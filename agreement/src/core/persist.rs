//! What an agreement replica records before it sends anything derived from it, so that a
//! replica that crashes and restarts never contradicts a vote it already cast and still
//! carries its prepared certificates into view changes (the rule raft and aptos's safety
//! rules state: persist before sending).

use serde::{Deserialize, Serialize};
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{
    AppOrder, Batch, CheckpointCertificate, CheckpointState, ExecutionCheckpoint, NewView, NonDet,
    PrePrepareHeader, Prepare,
};
use zz_protocol::{AppId, Digest, Seq, View};

/// One durable fact. A replica's durable state is the fold of its records, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The replica entered `view`; `normal` is false while it is changing to that view.
    View { view: View, normal: bool },
    /// The replica accepted (or, as primary, proposed) this pre-prepare; recorded before its
    /// prepare (or pre-prepare) leaves.
    Accepted {
        pre_prepare: Signed<PrePrepareHeader>,
        batch: Batch,
    },
    /// The accepted pre-prepare of the same view and sequence number prepared with these
    /// votes; recorded before the commit leaves.
    Prepared { prepares: Vec<Signed<Prepare>> },
    /// The new-view message of the view the replica entered; shown again to replicas that
    /// missed it, even after a restart. Its re-proposals name batches by digest: each is
    /// recorded as an [`Record::Accepted`] once the replica has it.
    NewView(Signed<NewView>),
    /// A stable checkpoint and the state at it.
    Stable {
        certificate: CheckpointCertificate,
        state: CheckpointState,
    },
    /// An app's stable execution checkpoint, as this replica judged it or adopted it from
    /// f+1 peers. The driver's, not the core's: after a restart the order router starts
    /// from it, so the replica need not find f+1 peers still naming it, and recovers the
    /// orders after it. Any stable checkpoint is genuine, so losing it could cost liveness
    /// only; the notices it makes the driver send wait for it to be durable.
    ExecutionStable(ExecutionCheckpoint),
    /// An order of an app with execution replicas that the order router retains (it comes
    /// after the app's stable execution checkpoint), with the app's order chain before it.
    /// The driver's, appended as the order leaves (and synced with the turn's votes; a
    /// replica that lost it derives it again from the batch): after a restart the router takes
    /// back the orders up to the restored checkpoint's head and rebuilds their chain
    /// without asking peers, so an app survives every agreement replica restarting at once.
    AppOrder {
        order: AppOrder,
        chain_before: Digest,
    },
    /// An [`Record::AppOrder`] without its requests: they are the requests of the batch
    /// with digest `batch` that belong to the app, in the batch's order, and that batch is
    /// in an earlier record of the same log (an accepted pre-prepare). The driver writes
    /// this instead whenever it can: an order's requests are most of its bytes, and the
    /// batch holding them is on disk already.
    AppOrderOfBatch {
        app: AppId,
        seq: Seq,
        agreement_seq: Seq,
        nondet: NonDet,
        batch: Digest,
        chain_before: Digest,
    },
}

impl Record {
    /// The batches this record holds whole, with their digests.
    pub fn batches(&self) -> Vec<(Digest, &Batch)> {
        match self {
            Record::Accepted { pre_prepare, batch } => vec![(pre_prepare.body.digest, batch)],
            _ => Vec::new(),
        }
    }
}
