//! Catching up: a replica that fell behind (dropped messages, a partition, a restart)
//! learns from status reports or a checkpoint certificate that others are ahead, fetches
//! the committed batches it missed (accepting one only when f+1 replicas send the same),
//! or jumps to a stable checkpoint whose state 2f+1 signatures vouch for.

use super::checkpoint::ExecState;
use super::{DropReason, Output, Replica};
use std::collections::BTreeMap;
use zz_protocol::messages::{Batch, Batches, FetchBatches, Message, Status};
use zz_protocol::{Digest, ReplicaId, Seq, Time};

/// Requests' bytes in one batches answer at most, as a share of the frame limit, so the
/// answer always fits in a frame.
const FETCH_ANSWER_FRAME_SHARE: usize = 2;

/// What a replica learns from its peers while it may be behind.
#[derive(Default)]
pub(super) struct CatchUpState {
    /// The latest status report from each peer.
    pub(super) peer_status: BTreeMap<ReplicaId, Status>,
    /// Committed batches offered by peers during catch-up, by sequence number.
    pub(super) fetched: BTreeMap<Seq, Offers>,
    /// When batches were last asked for (at most once per status interval).
    pub(super) last_fetch_at: Option<Time>,
}

/// The batches peers offered for one sequence number: each peer's digest, and one body per
/// digest only, charged to the peer that brought it first (so f+1 agreeing peers cost one
/// body, and a peer's bodies are bounded in bytes: [`fetched_bytes_per_sender`]).
#[derive(Default)]
pub(super) struct Offers {
    pub(super) digests: BTreeMap<ReplicaId, Digest>,
    pub(super) bodies: BTreeMap<Digest, (ReplicaId, usize, Batch)>,
}

/// Bytes of fetched batch bodies one peer may have kept here at most, across sequence
/// numbers; enough for one full batch at least.
pub(super) fn fetched_bytes_per_sender(params: &zz_protocol::ProtocolParams) -> usize {
    super::future_bytes_per_sender(params)
}

impl CatchUpState {
    /// Bytes of the bodies `sender` brought that are kept here.
    pub(super) fn body_bytes_of(&self, sender: ReplicaId) -> usize {
        (self.fetched.values())
            .flat_map(|offers| offers.bodies.values())
            .filter(|(from, _, _)| *from == sender)
            .map(|(_, size, _)| size)
            .sum()
    }
}

impl Replica {
    pub(super) fn handle_status(&mut self, sender: ReplicaId, status: Status) {
        if self.normal && status.view < self.view {
            self.resend_new_view(sender);
        }
        self.catch_up.peer_status.insert(sender, status);
        self.fetch_if_behind();
    }

    /// f+1 peers report having executed past us: at least one correct one has.
    fn fetch_if_behind(&mut self) {
        let mine = self.exec.seq;
        let mut ahead: Vec<(Seq, ReplicaId)> = self
            .catch_up
            .peer_status
            .iter()
            .filter(|(_, status)| status.last_executed > mine)
            .map(|(replica, status)| (status.last_executed, *replica))
            .collect();
        let weak = self.config.params.weak_quorum();
        if ahead.len() < weak {
            return;
        }
        ahead.sort_by(|a, b| b.cmp(a));
        let target = ahead[weak - 1].0;
        let sources: Vec<ReplicaId> = ahead.iter().map(|(_, replica)| *replica).collect();
        self.request_fetch(target, &sources);
    }

    /// Ask `sources` for what lies between our last executed batch and `target`; at most
    /// once per status interval.
    pub(super) fn request_fetch(&mut self, target: Seq, sources: &[ReplicaId]) {
        let interval = self.config.params.status_interval_ms * 1000;
        if let Some(last) = self.catch_up.last_fetch_at
            && self.now.saturating_sub(last) < interval
        {
            return;
        }
        self.catch_up.last_fetch_at = Some(self.now);
        let from = self.exec.seq.next();
        let to = Seq(target.0.min(from.0 + self.config.params.window - 1));
        for source in sources {
            self.send(*source, Message::FetchBatches(FetchBatches { from, to }));
        }
    }

    pub(super) fn handle_fetch(&mut self, sender: ReplicaId, fetch: FetchBatches) {
        if fetch.from > fetch.to {
            return self.drop_message(DropReason::BadFetchRange);
        }
        if self.answers_spent(sender) {
            self.counters.fetch_answers_withheld += 1;
            return;
        }
        let checkpoint = (fetch.from <= self.checkpoints.stable.seq
            && self.checkpoints.stable.seq > Seq(0))
        .then(|| {
            (
                self.checkpoints.stable.clone(),
                self.checkpoints.stable_state.clone(),
            )
        });
        let first = fetch.from.max(self.checkpoints.stable.seq.next());
        let last = fetch.to.min(self.exec.seq);
        let budget = self.config.params.frame_bytes_max / FETCH_ANSWER_FRAME_SHARE;
        // The checkpoint's state grows with the clients: it counts against the answer.
        let mut bytes = (checkpoint.as_ref()).map_or(0, |(certificate, state)| {
            112 * certificate.votes.len() + 32 * state.clients.len() + 96 * state.apps.len()
        });
        let mut entries = Vec::new();
        let committed = if first <= last {
            self.slots.range(first..=last)
        } else {
            self.slots.range(first..first)
        };
        for (seq, slot) in committed {
            let Some((_, batch)) = &slot.committed else {
                break;
            };
            let size = batch.weight();
            if bytes + size > budget && !entries.is_empty() {
                break;
            }
            bytes += size;
            entries.push((*seq, batch.clone()));
        }
        if checkpoint.is_none() && entries.is_empty() {
            return;
        }
        if !self.answer_allowed(sender, bytes) {
            self.counters.fetch_answers_withheld += 1;
            return;
        }
        let batches = Batches {
            checkpoint,
            entries,
        };
        self.send(sender, Message::Batches(batches));
    }

    pub(super) fn handle_batches(&mut self, sender: ReplicaId, batches: Batches) {
        if let Some((certificate, state)) = batches.checkpoint {
            if certificate.seq > self.exec.seq {
                self.install_checkpoint(certificate, state);
            } else {
                self.adopt_stable_certificate(certificate);
            }
        }
        let weak = self.config.params.weak_quorum();
        for (seq, batch) in batches.entries {
            if seq <= self.exec.seq || !self.in_window(seq) {
                continue;
            }
            let (digest, size) = batch.digest_and_size();
            let room = self.catch_up.body_bytes_of(sender) + size
                <= fetched_bytes_per_sender(&self.config.params);
            let offers = self.catch_up.fetched.entry(seq).or_default();
            if let Some(previous) = offers.digests.insert(sender, digest)
                && previous != digest
                && !offers.digests.values().any(|offered| *offered == previous)
            {
                // Its earlier offer is void; a body only it vouched for goes with it.
                offers.bodies.remove(&previous);
            }
            if let std::collections::btree_map::Entry::Vacant(body) = offers.bodies.entry(digest) {
                if !room {
                    self.counters.fetched_bodies_refused += 1;
                    continue;
                }
                body.insert((sender, size, batch));
            }
            let agreeing = (offers.digests.values())
                .filter(|offered| **offered == digest)
                .count();
            if agreeing < weak {
                continue;
            }
            let batch = offers.bodies[&digest].2.clone();
            let slot = self.slots.entry(seq).or_default();
            match &slot.committed {
                Some((existing, _)) => assert_eq!(
                    *existing, digest,
                    "safety: f+1 replicas vouch for a batch other than the one committed here"
                ),
                None => slot.committed = Some((digest, batch)),
            }
        }
        self.try_execute();
    }

    /// Jump to a stable checkpoint this replica has not executed to: take its state, which
    /// 2f+1 signatures vouch for (checked at the boundary).
    fn install_checkpoint(
        &mut self,
        certificate: zz_protocol::messages::CheckpointCertificate,
        state: zz_protocol::messages::CheckpointState,
    ) {
        let seq = certificate.seq;
        assert!(seq > self.exec.seq && seq > self.checkpoints.stable.seq);
        tracing::info!(replica = %self.config.id, from = %self.exec.seq, to = %seq, "state transfer");
        self.exec = ExecState::from_snapshot(&state);
        let clients = &self.exec.clients;
        self.requests.waiting.retain(|client, waiting| {
            clients
                .get(client)
                .is_none_or(|(executed, _)| waiting.request.request.timestamp > *executed)
        });
        self.prune_stable_votes();
        self.counters.state_transfers += 1;
        self.outputs.push_back(Output::Skipped {
            to: seq,
            apps: state.apps.clone(),
        });
        self.checkpoints.own.insert(seq, state.clone());
        self.make_stable(certificate, state);
    }
}
