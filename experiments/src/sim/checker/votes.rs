//! A correct agreement replica never contradicts what it sent: the same (view, seq) gets
//! one digest in all its pre-prepares, prepares and commits, and a seq one digest in its
//! checkpoint votes, across any number of crashes and restarts. A replica that sent a vote
//! before the record vouching for it was synced would, after a crash that lost the record,
//! be free to vote otherwise: this is the check that persist-before-send holds. Because a
//! contradiction needs the restarted replica to be offered another choice, which is rare,
//! each restart is also checked directly: the restored replica must still hold every vote
//! it sent in the view it restarted in, above its stable checkpoint.

use super::super::violation::{SafetyViolation, VoteKind};
use bytes::Bytes;
use std::collections::BTreeMap;
use zz_agreement::Replica;
use zz_protocol::envelope::peek_message;
use zz_protocol::messages::Message;
use zz_protocol::{Digest, NodeId, ReplicaId, Seq, View};

/// Every vote each correct replica sent: (replica, kind, view, seq) -> digest. Checkpoint
/// votes have no view and go under `View(0)`.
#[derive(Default)]
pub(crate) struct SentVotes {
    digests: BTreeMap<(ReplicaId, VoteKind, View, Seq), Digest>,
}

impl SentVotes {
    /// `frames` are what correct replica `id` sent in one step.
    pub(crate) fn check(
        &mut self,
        id: ReplicaId,
        frames: &[(NodeId, Bytes)],
    ) -> Result<(), SafetyViolation> {
        let mut previous: Option<&Bytes> = None;
        for (to, frame) in frames {
            // A multicast goes out as one frame to every peer: read it once.
            let repeat = previous.is_some_and(|last| last.as_ptr() == frame.as_ptr());
            previous = Some(frame);
            if repeat || !matches!(to, NodeId::Replica(_)) {
                continue;
            }
            let vote = match peek_message(frame) {
                Some(Message::PrePrepare { pre_prepare, .. }) => {
                    let header = pre_prepare.body;
                    (VoteKind::PrePrepare, header.view, header.seq, header.digest)
                }
                Some(Message::Prepare(prepare)) => {
                    let vote = prepare.body;
                    (VoteKind::Prepare, vote.view, vote.seq, vote.digest)
                }
                Some(Message::Commit(commit)) => {
                    (VoteKind::Commit, commit.view, commit.seq, commit.digest)
                }
                Some(Message::Checkpoint(checkpoint)) => {
                    let vote = checkpoint.body;
                    (VoteKind::Checkpoint, View(0), vote.seq, vote.digest)
                }
                _ => continue,
            };
            self.record(id, vote)?;
        }
        Ok(())
    }

    /// `replica` was just restored from its records: every pre-prepare, prepare and commit
    /// it sent in the view it restarted in, above its stable checkpoint, must be one it
    /// holds again (the accepted pre-prepare, or the prepared certificate for a commit).
    pub(crate) fn check_restored(&self, replica: &Replica) -> Result<(), SafetyViolation> {
        let (id, view, stable) = (replica.id(), replica.view(), replica.stable_seq());
        for kind in [VoteKind::PrePrepare, VoteKind::Prepare, VoteKind::Commit] {
            let sent = (self.digests)
                .range((id, kind, view, stable.next())..=(id, kind, view, Seq(u64::MAX)));
            for ((_, _, _, seq), digest) in sent {
                let held = match kind {
                    VoteKind::Commit => replica.prepared_at(*seq),
                    _ => replica.accepted_at(*seq),
                };
                if held != Some((view, *digest)) {
                    return Err(SafetyViolation::SentVoteForgotten {
                        replica: id,
                        kind,
                        view,
                        seq: *seq,
                        digest: *digest,
                    });
                }
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        replica: ReplicaId,
        (kind, view, seq, digest): (VoteKind, View, Seq, Digest),
    ) -> Result<(), SafetyViolation> {
        let first = *self
            .digests
            .entry((replica, kind, view, seq))
            .or_insert(digest);
        if first != digest {
            return Err(SafetyViolation::OwnVoteContradicted {
                replica,
                kind,
                view,
                seq,
                first_digest: first,
                digest,
            });
        }
        Ok(())
    }
}
