//! One sequence number's progress through the three phases.

use std::collections::BTreeMap;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{Batch, Commit, PrePrepareHeader, Prepare, PreparedCertificate};
use zz_protocol::{Digest, ReplicaId, Time, View};

/// Progress of one sequence number. Votes are kept for one view at a time (`view`); the
/// prepared certificate survives view changes because a view change must carry it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    /// The view the votes below belong to.
    pub view: View,
    /// The pre-prepare accepted in `view`, with its batch.
    pub pre_prepare: Option<(Signed<PrePrepareHeader>, Batch)>,
    /// At most one prepare per replica for (view, seq): the first one it sent us.
    pub prepares: BTreeMap<ReplicaId, Signed<Prepare>>,
    /// At most one commit per replica for (view, seq).
    pub commits: BTreeMap<ReplicaId, Commit>,
    /// Whether this replica sent its commit in `view`.
    pub commit_sent: bool,
    /// The batch that committed here (committed-local, or fetched with f+1 matching
    /// answers), with its digest.
    pub committed: Option<(Digest, Batch)>,
    /// When this replica last sent its votes for this slot, for retransmission.
    pub last_sent: Time,
    /// The prepared certificate from the highest view this replica prepared in, with the
    /// batch it names (view changes carry the digest only; peers may fetch the batch).
    pub prepared_certificate: Option<(PreparedCertificate, Batch)>,
    /// The pre-prepares accepted in the latest views before `view` (at most
    /// [`EARLIER_KEPT`], the newest last, each digest once, the prepared certificate's
    /// left out), kept with their batches and persisted: a later new view may re-propose
    /// one of them from a certificate that only a Byzantine replica shows, and then the
    /// correct replicas that accepted it are where the batch must be found.
    pub earlier: Vec<(Signed<PrePrepareHeader>, Batch)>,
}

/// Earlier views' pre-prepares a slot keeps at most, besides the one it prepared.
pub const EARLIER_KEPT: usize = 2;

impl Slot {
    /// Move the slot's votes to `view`, forgetting the votes of older views.
    pub fn enter_view(&mut self, view: View) {
        if self.view != view {
            assert!(view > self.view, "a slot never goes back in views");
            self.view = view;
            if let Some((header, batch)) = self.pre_prepare.take() {
                self.keep_earlier(header, batch);
            }
            self.prepares.clear();
            self.commits.clear();
            self.commit_sent = false;
        }
    }

    /// Keep a pre-prepare of a view this slot leaves (or restored from the records).
    pub fn keep_earlier(&mut self, header: Signed<PrePrepareHeader>, batch: Batch) {
        let digest = header.body.digest;
        let prepared = (self.prepared_certificate.as_ref())
            .is_some_and(|(certificate, _)| certificate.digest() == digest);
        if prepared {
            return;
        }
        self.earlier.retain(|(kept, _)| kept.body.digest != digest);
        self.earlier.push((header, batch));
        if self.earlier.len() > EARLIER_KEPT {
            self.earlier.remove(0);
        }
    }

    /// Any batch with `digest` this slot holds: accepted in its view or an earlier one,
    /// prepared, or committed.
    pub fn batch_with(&self, digest: Digest) -> Option<&Batch> {
        let accepted =
            (self.pre_prepare.as_ref()).map(|(header, batch)| (header.body.digest, batch));
        let prepared = (self.prepared_certificate.as_ref())
            .map(|(certificate, batch)| (certificate.digest(), batch));
        let committed = self
            .committed
            .as_ref()
            .map(|(digest, batch)| (*digest, batch));
        let earlier = (self.earlier.iter()).map(|(header, batch)| (header.body.digest, batch));
        [accepted, prepared, committed]
            .into_iter()
            .flatten()
            .chain(earlier)
            .find(|(held, _)| *held == digest)
            .map(|(_, batch)| batch)
    }

    pub fn accepted_digest(&self) -> Option<Digest> {
        self.pre_prepare
            .as_ref()
            .map(|(header, _)| header.body.digest)
    }

    /// Prepares from distinct replicas other than `primary` that match the accepted digest.
    pub fn matching_prepares(&self, primary: ReplicaId) -> Vec<Signed<Prepare>> {
        let Some(digest) = self.accepted_digest() else {
            return Vec::new();
        };
        self.prepares
            .values()
            .filter(|prepare| prepare.body.digest == digest && prepare.signer != primary)
            .cloned()
            .collect()
    }

    pub fn matching_commits(&self) -> usize {
        let Some(digest) = self.accepted_digest() else {
            return 0;
        };
        self.commits
            .values()
            .filter(|commit| commit.digest == digest)
            .count()
    }
}
