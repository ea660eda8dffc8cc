//! The checks a message must pass before any core sees it: who may send it, signatures,
//! certificates (quorum sizes, distinct signers, matching contents) and batch digests.
//! They need only the message and the cluster's public keys, so they run once, at the
//! boundary; the cores then trust what they get.

use crate::crypto::Signed;
use crate::envelope::{Endpoint, RequestCheck};
use crate::ids::{NodeId, ReplicaId, Seq, View};
use crate::messages::{
    Batch, Batches, CheckpointCertificate, CheckpointState, Message, NewView, PreparedCertificate,
    StabilityCertificate, ViewChange,
};
use std::collections::BTreeSet;

/// What made a message invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{0} may not send this kind of message")]
    WrongSender(NodeId),
    #[error("signed by {signer}, sent by {from}")]
    SignerNotSender { signer: ReplicaId, from: NodeId },
    #[error("signer {signer} is not the primary {primary} of {view}")]
    NotPrimary {
        signer: ReplicaId,
        primary: ReplicaId,
        view: View,
    },
    #[error("bad signature by {0}")]
    BadSignature(ReplicaId),
    #[error("request from {0} fails its authenticator or size limit")]
    BadRequest(NodeId),
    #[error("batch of {count} requests exceeds {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("batch digest does not match the signed digest")]
    BatchDigest,
    #[error("certificate has {count} distinct valid votes, needs {needed}")]
    ShortCertificate { count: usize, needed: usize },
    #[error("certificate votes disagree with the certificate")]
    MismatchedVote,
    #[error("checkpoint state does not hash to the certified digest")]
    StateDigest,
    #[error("genesis checkpoint with a digest other than the genesis state's")]
    BadGenesis,
    #[error("prepared certificate for {seq} in {view} outside the view change's range")]
    CertificateOutOfRange { seq: Seq, view: View },
    #[error("{count} items exceed the bound of {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("view change for {got} inside a new view for {expected}")]
    WrongView { got: View, expected: View },
}

type Check = Result<(), Invalid>;

fn require(condition: bool, invalid: Invalid) -> Check {
    if condition { Ok(()) } else { Err(invalid) }
}

fn bounded(count: usize, limit: usize) -> Check {
    require(count <= limit, Invalid::TooMany { count, limit })
}

/// A replica-signed item must be signed by the replica that sent it.
fn signed_by_sender<T: crate::crypto::SignedBody>(
    endpoint: &Endpoint,
    from: NodeId,
    signed: &Signed<T>,
) -> Check {
    require(
        from == NodeId::Replica(signed.signer),
        Invalid::SignerNotSender {
            signer: signed.signer,
            from,
        },
    )?;
    require(
        signed.verify(endpoint.verifying_keys()),
        Invalid::BadSignature(signed.signer),
    )
}

/// Every vote matches (`matches`) and is validly signed, by at least `needed` distinct
/// replicas.
fn check_votes<T: crate::crypto::SignedBody>(
    endpoint: &Endpoint,
    votes: &[Signed<T>],
    needed: usize,
    matches: impl Fn(&T) -> bool,
) -> Check {
    let mut signers = BTreeSet::new();
    for vote in votes {
        require(matches(&vote.body), Invalid::MismatchedVote)?;
        require(
            vote.verify(endpoint.verifying_keys()),
            Invalid::BadSignature(vote.signer),
        )?;
        signers.insert(vote.signer);
    }
    require(
        signers.len() >= needed,
        Invalid::ShortCertificate {
            count: signers.len(),
            needed,
        },
    )
}

/// Stability certificates in one batch, at most.
pub const STABILITY_CERTIFICATES_MAX: usize = 64;

/// f+1 distinct agreement replicas signed the certificate's checkpoint (exactly f+1
/// votes: more would only cost their receivers verifications).
pub fn check_stability_certificate(endpoint: &Endpoint, cert: &StabilityCertificate) -> Check {
    let params = endpoint.params();
    bounded(cert.votes.len(), params.weak_quorum())?;
    check_votes(endpoint, &cert.votes, params.weak_quorum(), |vote| {
        *vote == cert.checkpoint
    })
}

/// A batch's size. Batches named by certificates (2f+1 replicas vouched for them, so one
/// fetched by their digest needs no more) and fetched batches (kept only on f+1 matching
/// offers) are not checked against the client
/// authenticators or stability certificates again: a Byzantine client whose authenticator
/// is valid for some replicas only must not be able to shut the others out of view
/// changes and catch-up, and a Byzantine replica must not make them verify thousands of
/// signatures in one answer.
fn check_batch_size(endpoint: &Endpoint, batch: &Batch) -> Check {
    let limit = endpoint.params().batch_size_max;
    require(
        batch.requests.len() <= limit,
        Invalid::BatchTooLarge {
            count: batch.requests.len(),
            limit,
        },
    )?;
    bounded(batch.stability.len(), STABILITY_CERTIFICATES_MAX)
}

/// A batch the primary proposes: its size, every request's authenticator for us, and its
/// stability certificates (signed, so every replica judges them alike).
fn check_batch(endpoint: &Endpoint, batch: &Batch) -> Check {
    check_batch_size(endpoint, batch)?;
    for cert in &batch.stability {
        check_stability_certificate(endpoint, cert)?;
    }
    for request in &batch.requests {
        let client = NodeId::Client(request.request.client);
        let check = RequestCheck::Batched;
        require(
            endpoint.check_request(request, check),
            Invalid::BadRequest(client),
        )?;
    }
    Ok(())
}

/// The genesis state every replica starts from.
pub fn genesis_checkpoint() -> CheckpointState {
    CheckpointState::default()
}

/// 2f+1 distinct replicas signed (seq, digest); the genesis checkpoint needs none.
pub fn check_checkpoint_certificate(endpoint: &Endpoint, cert: &CheckpointCertificate) -> Check {
    let params = endpoint.params();
    if cert.seq == Seq(0) {
        return require(
            cert.digest == genesis_checkpoint().digest(),
            Invalid::BadGenesis,
        );
    }
    bounded(cert.votes.len(), params.replica_count())?;
    check_votes(endpoint, &cert.votes, params.quorum(), |vote| {
        vote.seq == cert.seq && vote.digest == cert.digest
    })
}

/// A pre-prepare signed by the primary of its view and 2f matching prepares from distinct
/// other replicas.
pub fn check_prepared_certificate(endpoint: &Endpoint, cert: &PreparedCertificate) -> Check {
    let params = endpoint.params();
    let header = &cert.pre_prepare.body;
    let primary = header.view.primary(params.replica_count());
    require(
        cert.pre_prepare.signer == primary,
        Invalid::NotPrimary {
            signer: cert.pre_prepare.signer,
            primary,
            view: header.view,
        },
    )?;
    require(
        cert.pre_prepare.verify(endpoint.verifying_keys()),
        Invalid::BadSignature(primary),
    )?;
    bounded(cert.prepares.len(), params.replica_count())?;
    let mut signers = BTreeSet::new();
    for prepare in &cert.prepares {
        require(
            prepare.body.view == header.view
                && prepare.body.seq == header.seq
                && prepare.body.digest == header.digest
                && prepare.signer != primary,
            Invalid::MismatchedVote,
        )?;
        require(
            prepare.verify(endpoint.verifying_keys()),
            Invalid::BadSignature(prepare.signer),
        )?;
        signers.insert(prepare.signer);
    }
    require(
        signers.len() >= 2 * params.f,
        Invalid::ShortCertificate {
            count: signers.len(),
            needed: 2 * params.f,
        },
    )
}

/// The view change's own contents, whoever relays it.
pub fn check_view_change_contents(endpoint: &Endpoint, view_change: &ViewChange) -> Check {
    let window = endpoint.params().window;
    check_checkpoint_certificate(endpoint, &view_change.stable)?;
    bounded(view_change.prepared.len(), window as usize)?;
    let mut seqs = BTreeSet::new();
    for cert in &view_change.prepared {
        let (seq, view) = (cert.seq(), cert.view());
        let in_range = seq > view_change.stable.seq
            && seq.0 - view_change.stable.seq.0 <= window
            && view < view_change.new_view
            && seqs.insert(seq);
        require(in_range, Invalid::CertificateOutOfRange { seq, view })?;
        check_prepared_certificate(endpoint, cert)?;
    }
    Ok(())
}

fn check_new_view(endpoint: &Endpoint, new_view: &NewView) -> Check {
    let params = endpoint.params();
    let primary = new_view.view.primary(params.replica_count());
    bounded(new_view.view_changes.len(), params.replica_count())?;
    bounded(new_view.entries.len(), params.window as usize)?;
    let mut signers = BTreeSet::new();
    for view_change in &new_view.view_changes {
        require(
            view_change.body.new_view == new_view.view,
            Invalid::WrongView {
                got: view_change.body.new_view,
                expected: new_view.view,
            },
        )?;
        require(
            view_change.verify(endpoint.verifying_keys()),
            Invalid::BadSignature(view_change.signer),
        )?;
        check_view_change_contents(endpoint, &view_change.body)?;
        signers.insert(view_change.signer);
    }
    require(
        signers.len() >= params.quorum(),
        Invalid::ShortCertificate {
            count: signers.len(),
            needed: params.quorum(),
        },
    )?;
    for entry in &new_view.entries {
        require(
            entry.signer == primary && entry.body.view == new_view.view,
            Invalid::NotPrimary {
                signer: entry.signer,
                primary,
                view: new_view.view,
            },
        )?;
        require(
            entry.verify(endpoint.verifying_keys()),
            Invalid::BadSignature(primary),
        )?;
    }
    Ok(())
}

fn check_batches(endpoint: &Endpoint, batches: &Batches) -> Check {
    bounded(batches.entries.len(), endpoint.params().window as usize)?;
    if let Some((cert, state)) = &batches.checkpoint {
        check_checkpoint_certificate(endpoint, cert)?;
        require(
            state.digest() == cert.digest && state.seq == cert.seq,
            Invalid::StateDigest,
        )?;
    }
    for (_, batch) in &batches.entries {
        check_batch_size(endpoint, batch)?;
    }
    Ok(())
}

/// Execution replicas of one app in a membership notice, at most.
pub const MEMBERSHIP_LEN_MAX: usize = 1024;
/// Orders in one [`ChainedOrders`](crate::messages::ChainedOrders) answer, at most.
pub const CHAINED_ORDERS_MAX: usize = 64;

/// Every check for one message from `from` (already MAC-authenticated).
pub fn check_message(endpoint: &Endpoint, from: NodeId, message: &Message) -> Check {
    let from_replica = matches!(from, NodeId::Replica(_));
    let from_execution = matches!(from, NodeId::Execution(_));
    let to_replica = matches!(endpoint.id(), NodeId::Replica(_));
    let to_execution = matches!(endpoint.id(), NodeId::Execution(_));
    let to_client = matches!(endpoint.id(), NodeId::Client(_));
    let from_activator = matches!(from, NodeId::Activator(_));
    let to_activator = matches!(endpoint.id(), NodeId::Activator(_));
    match message {
        Message::Request(request) => {
            let own_request = from == NodeId::Client(request.request.client);
            if to_execution {
                // A client's retransmission straight to an execution replica, which only
                // answers it from its reply cache: the envelope MAC is the client's proof.
                return require(
                    own_request && request.request.op.len() <= endpoint.params().request_bytes_max,
                    Invalid::WrongSender(from),
                );
            }
            require(
                to_replica && (own_request || from_replica),
                Invalid::WrongSender(from),
            )?;
            let check = RequestCheck::Received;
            require(
                endpoint.check_request(request, check),
                Invalid::BadRequest(from),
            )
        }
        Message::Reply(_) => require(
            (from_replica || from_execution) && to_client,
            Invalid::WrongSender(from),
        ),
        // Orders go from agreement to execution; execution reports go back. The requests
        // inside an order are trusted through f+1 matching orders, not their authenticators
        // (an execution replica holds no agreement replica's client keys).
        Message::AppOrder(order) => {
            require(from_replica && to_execution, Invalid::WrongSender(from))?;
            let limit = endpoint.params().batch_size_max;
            require(
                order.requests.len() <= limit,
                Invalid::BatchTooLarge {
                    count: order.requests.len(),
                    limit,
                },
            )
        }
        Message::Executed(_) | Message::ExecutionCheckpoint(_) => {
            require(from_execution && to_replica, Invalid::WrongSender(from))
        }
        Message::ExecutionStable(_) => {
            require(from_replica && to_execution, Invalid::WrongSender(from))
        }
        Message::Wake(_) | Message::Faulty(_) => {
            require(from_replica && to_activator, Invalid::WrongSender(from))
        }
        Message::Membership(membership) => {
            require(from_activator && to_replica, Invalid::WrongSender(from))?;
            // No app has more replicas than there are execution ids; a longer list is junk.
            let count = membership.active.len();
            require(
                count <= MEMBERSHIP_LEN_MAX,
                Invalid::TooMany {
                    count,
                    limit: MEMBERSHIP_LEN_MAX,
                },
            )
        }
        Message::Join(_) | Message::FetchOrders(_) => {
            require(from_execution && to_replica, Invalid::WrongSender(from))
        }
        Message::FetchBucket(_) | Message::BucketData(_) => {
            require(from_execution && to_execution, Invalid::WrongSender(from))
        }
        // Between agreement replicas; the orders are checked against a certified chain by
        // the receiver, which alone knows the chain they must end at.
        Message::ChainedOrders(chained) => {
            require(from_replica && to_replica, Invalid::WrongSender(from))?;
            bounded(chained.orders.len(), CHAINED_ORDERS_MAX)?;
            let limit = endpoint.params().batch_size_max;
            for order in &chained.orders {
                let count = order.requests.len();
                require(count <= limit, Invalid::BatchTooLarge { count, limit })?;
            }
            Ok(())
        }
        _ if !(from_replica && to_replica) => Err(Invalid::WrongSender(from)),
        Message::PrePrepare { pre_prepare, batch } => {
            signed_by_sender(endpoint, from, pre_prepare)?;
            let primary = pre_prepare
                .body
                .view
                .primary(endpoint.params().replica_count());
            require(
                pre_prepare.signer == primary,
                Invalid::NotPrimary {
                    signer: pre_prepare.signer,
                    primary,
                    view: pre_prepare.body.view,
                },
            )?;
            check_batch(endpoint, batch)?;
            require(
                batch.digest() == pre_prepare.body.digest,
                Invalid::BatchDigest,
            )
        }
        Message::Prepare(prepare) => signed_by_sender(endpoint, from, prepare),
        // Relayed by a backup to the primary too: the signature, not the sender, counts.
        Message::StableVote(vote) => require(
            vote.verify(endpoint.verifying_keys()),
            Invalid::BadSignature(vote.signer),
        ),
        Message::Checkpoint(checkpoint) => signed_by_sender(endpoint, from, checkpoint),
        Message::ViewChange(view_change) => {
            signed_by_sender(endpoint, from, view_change)?;
            check_view_change_contents(endpoint, &view_change.body)
        }
        Message::NewView(new_view) => {
            // Any replica may relay a new view to one that missed it: the primary's
            // signature, not the sender, is what makes it valid.
            require(
                new_view.verify(endpoint.verifying_keys()),
                Invalid::BadSignature(new_view.signer),
            )?;
            let primary = new_view
                .body
                .view
                .primary(endpoint.params().replica_count());
            require(
                new_view.signer == primary,
                Invalid::NotPrimary {
                    signer: new_view.signer,
                    primary,
                    view: new_view.body.view,
                },
            )?;
            check_new_view(endpoint, &new_view.body)
        }
        Message::Batches(batches) => check_batches(endpoint, batches),
        Message::FetchProposals(fetch) => {
            bounded(fetch.wanted.len(), endpoint.params().window as usize)
        }
        // Its digest is checked by the asker, which alone knows what it waits for.
        Message::Proposal(proposal) => check_batch_size(endpoint, &proposal.batch),
        Message::Commit(_)
        | Message::Status(_)
        | Message::FetchBatches(_)
        | Message::FetchChainedOrders(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derived_keys::DerivedKeys;
    use crate::ids::{AppId, Digest};
    use crate::messages::ExecutionCheckpoint;
    use crate::params::ProtocolParams;

    /// A stability certificate needs f+1 distinct replicas' valid signatures on its very
    /// checkpoint: short, repeated, mismatched or forged votes make the batch carrying it
    /// invalid wherever it travels.
    #[test]
    fn a_stability_certificate_needs_f_plus_1_distinct_valid_votes_alike() {
        let params = ProtocolParams::default();
        let keys = DerivedKeys::new(3, &params);
        let endpoint = keys.replica_endpoint(ReplicaId(0));
        let checkpoint = ExecutionCheckpoint {
            app: AppId(0),
            seq: Seq(8),
            root: Digest([5; 32]),
        };
        let vote = |by: u32, body: ExecutionCheckpoint| {
            let key = keys
                .replica(ReplicaId(by))
                .signing_key
                .expect("replicas sign");
            Signed::sign(body, ReplicaId(by), &key)
        };
        let certificate = |votes| StabilityCertificate { checkpoint, votes };
        let good = certificate(vec![vote(1, checkpoint), vote(2, checkpoint)]);
        assert_eq!(check_stability_certificate(&endpoint, &good), Ok(()));
        let short = certificate(vec![vote(1, checkpoint)]);
        let repeated = certificate(vec![vote(1, checkpoint), vote(1, checkpoint)]);
        let other_root = ExecutionCheckpoint {
            root: Digest([6; 32]),
            ..checkpoint
        };
        let mismatched = certificate(vec![vote(1, checkpoint), vote(2, other_root)]);
        let mut forged = good.clone();
        forged.votes[1].signer = ReplicaId(3);
        for bad in [short, repeated, mismatched, forged] {
            assert!(check_stability_certificate(&endpoint, &bad).is_err());
            let batch = Batch {
                stability: vec![bad],
                ..Batch::default()
            };
            assert!(check_batch(&endpoint, &batch).is_err());
        }
    }
}
