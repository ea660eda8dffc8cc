//! Checkpoints and log truncation (PBFT section 4.3): every K sequence numbers a replica
//! signs a digest of its state; 2f+1 matching votes make a checkpoint stable, which moves
//! the low watermark and discards the log below it.

use super::{DropReason, Output, Replica};
use crate::core::persist::Record;
use std::collections::BTreeMap;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{AppHead, Checkpoint, CheckpointCertificate, CheckpointState, Message};
use zz_protocol::{AppId, ClientId, Digest, ReplicaId, Seq};

/// The stable checkpoint and the checkpoints above it.
pub(super) struct CheckpointLog {
    /// The latest stable checkpoint: h = stable.seq, H = h + L.
    pub(super) stable: CheckpointCertificate,
    pub(super) stable_state: CheckpointState,
    /// This replica's own checkpoint states above the stable one.
    pub(super) own: BTreeMap<Seq, CheckpointState>,
    /// Votes for checkpoints above the stable one, by sequence number and signer.
    pub(super) votes: BTreeMap<Seq, BTreeMap<ReplicaId, Signed<Checkpoint>>>,
}

impl CheckpointLog {
    /// Stable at `genesis`, the state before anything was ordered.
    pub(super) fn at_genesis(genesis: CheckpointState) -> CheckpointLog {
        CheckpointLog {
            stable: CheckpointCertificate {
                seq: Seq(0),
                digest: genesis.digest(),
                votes: Vec::new(),
            },
            stable_state: genesis,
            own: BTreeMap::new(),
            votes: BTreeMap::new(),
        }
    }
}

/// The execution-side state of the agreement replica: what its checkpoints cover.
#[derive(Clone, Debug, Default)]
pub(super) struct ExecState {
    pub(super) seq: Seq,
    pub(super) chain: Digest,
    pub(super) last_timestamp_ms: u64,
    /// Each client's last ordered request: (timestamp, app).
    pub(super) clients: BTreeMap<ClientId, (u64, AppId)>,
    /// Each app's own gap-free sequence: the last number its orders reached, and the
    /// hash chain over its orders up to it.
    pub(super) apps: BTreeMap<AppId, (Seq, Digest)>,
    /// Each app's stable execution checkpoint, as ordered: (seq, root).
    pub(super) stable: BTreeMap<AppId, (Seq, Digest)>,
}

impl ExecState {
    pub(super) fn snapshot(&self) -> CheckpointState {
        CheckpointState {
            seq: self.seq,
            chain: self.chain,
            last_timestamp_ms: self.last_timestamp_ms,
            clients: (self.clients.iter())
                .map(|(client, (timestamp, app))| (*client, *timestamp, *app))
                .collect(),
            apps: self.app_heads().collect(),
        }
    }

    pub(super) fn app_heads(&self) -> impl Iterator<Item = AppHead> + '_ {
        (self.apps.iter()).map(|(app, (seq, chain))| AppHead {
            app: *app,
            seq: *seq,
            chain: *chain,
            stable: self.stable.get(app).copied(),
        })
    }

    pub(super) fn from_snapshot(state: &CheckpointState) -> ExecState {
        ExecState {
            seq: state.seq,
            chain: state.chain,
            last_timestamp_ms: state.last_timestamp_ms,
            clients: (state.clients.iter())
                .map(|(client, timestamp, app)| (*client, (*timestamp, *app)))
                .collect(),
            apps: (state.apps.iter())
                .map(|head| (head.app, (head.seq, head.chain)))
                .collect(),
            stable: (state.apps.iter())
                .filter_map(|head| Some((head.app, head.stable?)))
                .collect(),
        }
    }
}

impl Replica {
    /// Section 4.3: every K sequence numbers, multicast a signed digest of the state.
    pub(super) fn take_checkpoint(&mut self, seq: Seq) {
        let state = self.exec.snapshot();
        let vote = self.sign(Checkpoint {
            seq,
            digest: state.digest(),
        });
        self.checkpoints.own.insert(seq, state);
        self.broadcast(Message::Checkpoint(vote.clone()));
        self.add_checkpoint_vote(vote);
    }

    pub(super) fn handle_checkpoint(&mut self, vote: Signed<Checkpoint>) {
        let seq = vote.body.seq;
        if !seq.0.is_multiple_of(self.config.params.checkpoint_interval) {
            return self.drop_message(DropReason::CheckpointOffInterval);
        }
        if !self.in_window(seq) {
            return self.drop_message(DropReason::OutsideWindow);
        }
        self.add_checkpoint_vote(vote);
    }

    fn add_checkpoint_vote(&mut self, vote: Signed<Checkpoint>) {
        let seq = vote.body.seq;
        let votes = self.checkpoints.votes.entry(seq).or_default();
        votes.entry(vote.signer).or_insert(vote);
        let digest_counts = votes.values().fold(
            std::collections::BTreeMap::<Digest, usize>::new(),
            |mut counts, vote| {
                *counts.entry(vote.body.digest).or_default() += 1;
                counts
            },
        );
        let quorum = self.config.params.quorum();
        let Some((digest, _)) = digest_counts
            .into_iter()
            .find(|(_, count)| *count >= quorum)
        else {
            return;
        };
        let certificate = CheckpointCertificate {
            seq,
            digest,
            votes: votes
                .values()
                .filter(|vote| vote.body.digest == digest)
                .cloned()
                .collect(),
        };
        self.adopt_stable_certificate(certificate);
    }

    /// A certified checkpoint above the low watermark: make it stable if this replica has
    /// reached it, otherwise fetch what it is missing from the replicas that signed it.
    pub(super) fn adopt_stable_certificate(&mut self, certificate: CheckpointCertificate) {
        if certificate.seq <= self.checkpoints.stable.seq {
            return;
        }
        match self.checkpoints.own.get(&certificate.seq) {
            Some(state) => {
                assert_eq!(
                    state.digest(),
                    certificate.digest,
                    "safety: replica {} executed to a state 2f+1 others did not",
                    self.config.id
                );
                let state = state.clone();
                self.make_stable(certificate, state);
            }
            None => {
                let signers: Vec<ReplicaId> =
                    certificate.votes.iter().map(|vote| vote.signer).collect();
                self.request_fetch(certificate.seq, &signers);
            }
        }
    }

    /// Move the low watermark to `certificate` and discard everything at or below it.
    pub(super) fn make_stable(
        &mut self,
        certificate: CheckpointCertificate,
        state: zz_protocol::messages::CheckpointState,
    ) {
        let seq = certificate.seq;
        assert!(seq > self.checkpoints.stable.seq && seq <= self.exec.seq);
        assert_eq!(state.digest(), certificate.digest);
        self.checkpoints.stable = certificate;
        self.checkpoints.stable_state = state;
        self.slots.retain(|s, _| *s > seq);
        self.checkpoints.own.retain(|s, _| *s > seq);
        self.checkpoints.votes.retain(|s, _| *s > seq);
        self.catch_up.fetched.retain(|s, _| *s > seq);
        self.proposals.awaited.retain(|s, _| *s > seq);
        self.counters.checkpoints_stable += 1;
        // Appended on its own: storage may put off compacting, but a restart must find the
        // stable checkpoint whatever it did.
        self.persist(Record::Stable {
            certificate: self.checkpoints.stable.clone(),
            state: self.checkpoints.stable_state.clone(),
        });
        self.outputs
            .push_back(Output::Compact(self.durable_records()));
    }

    /// Checkpoint votes get lost too; until a checkpoint is stable, resend ours, or a
    /// window whose votes each missed someone would never move.
    pub(super) fn resend_checkpoint_votes(&mut self) {
        let me = self.config.id;
        let votes: Vec<_> = self
            .checkpoints
            .votes
            .values()
            .filter_map(|votes| votes.get(&me).cloned())
            .collect();
        for vote in votes {
            self.broadcast(Message::Checkpoint(vote));
        }
    }
}
