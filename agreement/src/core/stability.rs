//! Stable execution checkpoints, agreed rather than judged. Each replica's liaison judges
//! from the execution replicas' reports when an app's checkpoint is stable (f+1 of them,
//! and every active one not joining, reported one root), but replicas see reports and
//! membership notices at different moments, so their judgements can differ. Here a
//! judgement is only a signed vote; f+1 votes alike (so a correct replica's among them)
//! make a [`StabilityCertificate`] that the primary orders in a batch like a request, and
//! executing that batch makes the checkpoint stable: every correct replica names the same
//! stable checkpoint of an app after the same sequence number. It is part of the state
//! PBFT checkpoints certify ([`AppHead::stable`](zz_protocol::messages::AppHead)), so a
//! state transfer carries it too.
//!
//! A primary that leaves a formable certificate out is treated like one that leaves a
//! request out: backups holding one start the view-change timer.

use super::{Output, Replica};
use std::collections::BTreeMap;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{ExecutionCheckpoint, Message, StabilityCertificate};
use zz_protocol::validate::STABILITY_CERTIFICATES_MAX;
use zz_protocol::{AppId, Digest, ReplicaId, Seq, Time, View};

/// Votes kept per replica and app (its latest), at most.
pub const STABLE_VOTES_KEPT_PER_REPLICA: usize = 4;

type Vote = Signed<ExecutionCheckpoint>;

/// Votes for checkpoints above each app's stable one.
#[derive(Default)]
pub(super) struct StabilityVotes {
    /// Per app and replica (this one included), its latest votes by sequence number.
    votes: BTreeMap<AppId, BTreeMap<ReplicaId, BTreeMap<Seq, Vote>>>,
    /// Per app, the checkpoint the primary last proposed a certificate for, and in which
    /// view: not proposed again in that view while its batch is on the way.
    proposed: BTreeMap<AppId, (View, Seq)>,
    /// Per app, since when a certificate could be formed here with no progress of that
    /// app's stable checkpoint: the view-change timer, as for a waiting request. Each
    /// certificate ordered restarts its app's.
    pub(super) formable_since: BTreeMap<AppId, Time>,
    /// Votes came or went since `formable_since` was last judged.
    changed: bool,
}

impl StabilityVotes {
    fn add(&mut self, vote: Vote) {
        let by_seq = (self.votes.entry(vote.body.app).or_default())
            .entry(vote.signer)
            .or_default();
        by_seq.insert(vote.body.seq, vote);
        while by_seq.len() > STABLE_VOTES_KEPT_PER_REPLICA {
            by_seq.pop_first();
        }
        self.changed = true;
    }

    /// Forget the votes of `app` at or below `seq` (it is stable there now).
    fn prune(&mut self, app: AppId, seq: Seq) {
        // The app's stable checkpoint moved: its timer starts again if more is formable.
        self.formable_since.remove(&app);
        let Some(by_replica) = self.votes.get_mut(&app) else {
            return;
        };
        self.changed = true;
        for by_seq in by_replica.values_mut() {
            by_seq.retain(|voted, _| *voted > seq);
        }
        by_replica.retain(|_, by_seq| !by_seq.is_empty());
        if by_replica.is_empty() {
            self.votes.remove(&app);
        }
    }

    /// The earliest start of any app's view-change timer.
    pub(super) fn oldest_formable(&self) -> Option<Time> {
        self.formable_since.values().min().copied()
    }

    /// Entering a view: every timer starts again, for the new primary.
    pub(super) fn restart_timers(&mut self, now: Time) {
        for since in self.formable_since.values_mut() {
            *since = now;
        }
    }

    /// Per app, the highest checkpoint f+1 replicas voted for alike.
    fn formable(&self, weak_quorum: usize) -> Vec<StabilityCertificate> {
        let mut certificates = Vec::new();
        for by_replica in self.votes.values() {
            let mut alike: BTreeMap<(Seq, Digest), Vec<Vote>> = BTreeMap::new();
            for vote in by_replica.values().flat_map(BTreeMap::values) {
                let key = (vote.body.seq, vote.body.root);
                alike.entry(key).or_default().push(vote.clone());
            }
            let highest = (alike.into_iter().rev()).find(|(_, votes)| votes.len() >= weak_quorum);
            if let Some((_, mut votes)) = highest {
                votes.truncate(weak_quorum);
                certificates.push(StabilityCertificate {
                    checkpoint: votes[0].body,
                    votes,
                });
            }
        }
        certificates
    }

    pub(super) fn entry_count(&self) -> usize {
        self.votes
            .values()
            .flat_map(BTreeMap::values)
            .map(BTreeMap::len)
            .sum()
    }
}

impl Replica {
    /// The app's stable execution checkpoint as ordered here, if any.
    pub fn agreed_stable(&self, app: AppId) -> Option<(Seq, Digest)> {
        self.exec.stable.get(&app).copied()
    }

    /// This replica's liaison judged `checkpoint` stable: vote for it (signed, to every
    /// replica), so that f+1 votes alike get it ordered.
    pub fn vote_stable(&mut self, now: Time, checkpoint: ExecutionCheckpoint) {
        self.now = self.now.max(now);
        if !self.votes_wanted(&checkpoint) {
            return;
        }
        let vote = self.sign(checkpoint);
        self.stability.add(vote.clone());
        self.broadcast(Message::StableVote(vote));
        self.after_event();
    }

    /// A peer's vote, or one it relays (its signer's signature was checked at the
    /// boundary).
    pub(super) fn handle_stable_vote(&mut self, vote: Vote) {
        if self.votes_wanted(&vote.body) {
            self.stability.add(vote);
        }
    }

    /// Votes of apps this replica has ordered for, above their stable checkpoints.
    fn votes_wanted(&self, checkpoint: &ExecutionCheckpoint) -> bool {
        let stable = self
            .agreed_stable(checkpoint.app)
            .map_or(Seq(0), |(seq, _)| seq);
        self.exec.apps.contains_key(&checkpoint.app) && checkpoint.seq > stable
    }

    /// Votes get lost: until its checkpoint is stable, resend this replica's latest vote
    /// per app. A backup also relays to the primary the votes of every certificate it
    /// could form (signed, so they convince it): Byzantine replicas that send their votes
    /// to the backups only cannot make the backups suspect a primary that lacks them.
    pub(super) fn resend_stable_votes(&mut self) {
        let me = self.config.id;
        let own: Vec<Vote> = (self.stability.votes.values())
            .filter_map(|by_replica| by_replica.get(&me)?.last_key_value())
            .map(|(_, vote)| vote.clone())
            .collect();
        for vote in own {
            self.broadcast(Message::StableVote(vote));
        }
        if self.is_primary() {
            return;
        }
        let primary = self.primary_of(self.view);
        let formable = self.stability.formable(self.config.params.weak_quorum());
        for vote in formable.into_iter().flat_map(|cert| cert.votes) {
            if vote.signer != me && vote.signer != primary {
                self.send(primary, Message::StableVote(vote));
            }
        }
    }

    /// Primary: the certificates to order with the next batch, marked as proposed.
    pub(super) fn take_proposable_certificates(&mut self) -> Vec<StabilityCertificate> {
        let view = self.view;
        let weak_quorum = self.config.params.weak_quorum();
        let mut certificates = self.stability.formable(weak_quorum);
        let proposed = &self.stability.proposed;
        certificates.retain(|cert| {
            let app = cert.checkpoint.app;
            (proposed.get(&app)).is_none_or(|(v, seq)| *v != view || cert.checkpoint.seq > *seq)
        });
        certificates.truncate(STABILITY_CERTIFICATES_MAX);
        for cert in &certificates {
            let checkpoint = cert.checkpoint;
            (self.stability.proposed).insert(checkpoint.app, (view, checkpoint.seq));
        }
        certificates
    }

    /// Executing a batch: each certificate for a checkpoint above its app's stable one
    /// (and within what the app's orders reached) makes it stable.
    pub(super) fn apply_stability(&mut self, certificates: &[StabilityCertificate]) {
        for cert in certificates {
            let checkpoint = cert.checkpoint;
            let app = checkpoint.app;
            let ordered = self.exec.apps.get(&app).map_or(Seq(0), |(seq, _)| *seq);
            let stable = self.agreed_stable(app).map_or(Seq(0), |(seq, _)| seq);
            if checkpoint.seq <= stable || checkpoint.seq > ordered {
                continue;
            }
            self.exec
                .stable
                .insert(app, (checkpoint.seq, checkpoint.root));
            self.stability.prune(app, checkpoint.seq);
            self.outputs.push_back(Output::ExecutionStable(checkpoint));
        }
    }

    /// After a state transfer: forget the votes the new state's stable checkpoints passed.
    pub(super) fn prune_stable_votes(&mut self) {
        let stable: Vec<(AppId, Seq)> = (self.exec.stable.iter())
            .map(|(app, (seq, _))| (*app, *seq))
            .collect();
        for (app, seq) in stable {
            self.stability.prune(app, seq);
        }
    }

    /// A backup holding a certificate the primary has not ordered starts the view-change
    /// timer, as for a request (see [`Replica::view_change_deadline`]).
    pub(super) fn track_formable_certificates(&mut self) {
        if !std::mem::take(&mut self.stability.changed) {
            return;
        }
        let formable: Vec<AppId> = (self.stability.formable(self.config.params.weak_quorum()))
            .into_iter()
            .map(|cert| cert.checkpoint.app)
            .collect();
        let now = self.now;
        let timers = &mut self.stability.formable_since;
        timers.retain(|app, _| formable.contains(app));
        for app in formable {
            timers.entry(app).or_insert(now);
        }
    }
}
