//! Byzantine agreement replicas. A Byzantine replica runs a real core, but everything it
//! sends passes through [`Byzantine::mutate`], which lies the ways a compromised replica
//! can with its own keys: equivocating pre-prepares, conflicting prepares and commits,
//! false checkpoints, forged orders to execution replicas and to peers recovering them,
//! false stable execution checkpoints and votes for them, a primary leaving stability
//! certificates out of its batches, view changes that hide prepared certificates, batches
//! fetched by digest with other contents, greedy fetch requests, absurd views and sequence
//! numbers, replays of its old messages, forged MACs, silence, and false `Wake` and `Faulty` alarms to the activator (validly
//! authenticated, for random apps, epochs and members).

use super::rng::SimRng;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use zz_protocol::config::LOCAL_ACTIVATOR;
use zz_protocol::crypto::{Ed25519SigningKey, Signed};
use zz_protocol::envelope::peek_message;
use zz_protocol::messages::{
    Batch, Commit, FaultReason, Faulty, FetchBatches, FetchProposals, Message, PrePrepareHeader,
    Prepare, Proposal, Wake, WakeReason,
};
use zz_protocol::{AppId, Digest, Endpoint, ExecutionId, NodeId, ReplicaId, Seq, View};

/// Old frames kept for replaying, at most.
const REPLAY_FRAMES_MAX: usize = 256;
/// False alarms name membership epochs below this (real epochs of a run stay small, so
/// some false alarms name the current epoch).
pub const FALSE_ALARM_EPOCH_MAX: u64 = 8;

/// How often (per mille of frames) a Byzantine replica misbehaves in each way.
#[derive(Clone, Debug, Default)]
pub struct Behaviours {
    pub equivocate: u64,
    pub conflicting_votes: u64,
    pub false_checkpoint: u64,
    pub hide_certificates: u64,
    pub absurd: u64,
    pub replay: u64,
    pub forge_mac: u64,
    pub silence: u64,
    /// A false `Wake` or `Faulty` to the activator, besides the frame.
    pub false_alarms: u64,
    /// A request for every committed batch there is, and for batches by digest across
    /// the window, besides the frame (answers are rate-limited per asker). Drawn by the
    /// scenario after everything else.
    pub greedy_fetch: u64,
    /// As primary, per mille of sequence numbers (alike for every backup): spoil every
    /// batched request's signature and every MAC slot but replica 1's, so that replica 1
    /// alone accepts the batch (on its slot) and the other backups refuse it. Drawn by the
    /// scenario after everything else.
    pub spoil_signatures: u64,
}

impl Behaviours {
    /// A random mix: each behaviour is on with probability 1/2, at a random rate.
    pub fn random(rng: &mut SimRng) -> Behaviours {
        let mut rate = |max: u64| {
            if rng.chance(500) {
                rng.range(1, max)
            } else {
                0
            }
        };
        Behaviours {
            equivocate: rate(1000),
            conflicting_votes: rate(500),
            false_checkpoint: rate(500),
            hide_certificates: rate(1000),
            absurd: rate(200),
            replay: rate(200),
            forge_mac: rate(200),
            silence: rate(300),
            false_alarms: rate(300),
            greedy_fetch: 0,
            spoil_signatures: 0,
        }
    }
}

/// One Byzantine replica's lying machinery.
pub struct Byzantine {
    pub id: ReplicaId,
    pub behaviours: Behaviours,
    endpoint: Endpoint,
    signing_key: Ed25519SigningKey,
    replay: VecDeque<(NodeId, Bytes)>,
    /// Every app's execution replicas: what false alarms are about.
    groups: BTreeMap<AppId, Vec<ExecutionId>>,
    /// False alarms sent so far.
    pub false_alarms_sent: u64,
}

impl Byzantine {
    pub fn new(id: ReplicaId, behaviours: Behaviours, endpoint: Endpoint) -> Byzantine {
        let signing_key = endpoint.keys().signing_key.clone().expect("replicas sign");
        Byzantine {
            id,
            behaviours,
            endpoint,
            signing_key,
            replay: VecDeque::new(),
            groups: BTreeMap::new(),
            false_alarms_sent: 0,
        }
    }

    /// Lie about these apps' execution replicas in false alarms.
    pub fn with_groups(mut self, groups: BTreeMap<AppId, Vec<ExecutionId>>) -> Byzantine {
        self.groups = groups;
        self
    }

    /// A `Wake` or `Faulty` for a random app (now and then one that does not exist),
    /// epoch and member, sealed with this replica's own key for the activator.
    fn false_alarm(&mut self, rng: &mut SimRng) -> Option<(NodeId, Bytes)> {
        let apps = self.groups.len() as u64;
        let app = AppId(rng.range(0, apps) as u32);
        let member = match self.groups.get(&app) {
            Some(members) if !members.is_empty() => {
                members[rng.range(0, members.len() as u64 - 1) as usize]
            }
            _ => ExecutionId(rng.range(0, 64) as u32),
        };
        let epoch = rng.range(0, FALSE_ALARM_EPOCH_MAX - 1);
        let seq = Seq(rng.range(0, 64));
        let alarm = if rng.chance(500) {
            let reasons = [
                WakeReason::RepliesDiffer,
                WakeReason::Silence,
                WakeReason::ClientRetransmit,
                WakeReason::RootsDiffer,
            ];
            let reason = reasons[rng.range(0, 3) as usize];
            Message::Wake(Wake {
                app,
                epoch,
                seq,
                reason,
            })
        } else {
            let reasons = [
                FaultReason::WrongReplies,
                FaultReason::WrongRoot,
                FaultReason::Silent,
            ];
            let reason = reasons[rng.range(0, 2) as usize];
            Message::Faulty(Faulty {
                app,
                epoch,
                member,
                seq,
                reason,
            })
        };
        self.false_alarms_sent += 1;
        self.seal(NodeId::Activator(LOCAL_ACTIVATOR), &alarm)
    }

    fn sign<T: zz_protocol::crypto::SignedBody>(&self, body: T) -> Signed<T> {
        Signed::sign(body, self.id, &self.signing_key)
    }

    fn random_digest(rng: &mut SimRng) -> Digest {
        Digest::of(&[&rng.next_u64().to_le_bytes()])
    }

    /// Turn one frame the honest core wanted to send into what the liar sends instead.
    pub fn mutate(&mut self, rng: &mut SimRng, to: NodeId, frame: Bytes) -> Vec<(NodeId, Bytes)> {
        let b = self.behaviours.clone();
        let mut out = Vec::new();
        if self.replay.len() >= REPLAY_FRAMES_MAX {
            self.replay.pop_front();
        }
        self.replay.push_back((to, frame.clone()));
        if rng.chance(b.replay) {
            let index = rng.range(0, self.replay.len() as u64 - 1) as usize;
            out.push(self.replay[index].clone());
        }
        if rng.chance(b.false_alarms) {
            out.extend(self.false_alarm(rng));
        }
        if matches!(to, NodeId::Replica(_)) && rng.chance(b.greedy_fetch) {
            out.extend(self.greedy_fetches(rng, to));
        }
        if rng.chance(b.silence) {
            return out;
        }
        if rng.chance(b.forge_mac) {
            let mut forged = frame.to_vec();
            let index = rng.range(0, forged.len() as u64 - 1) as usize;
            forged[index] ^= 0x5a;
            out.push((to, Bytes::from(forged)));
            return out;
        }
        let Some(message) = peek_message(&frame) else {
            out.push((to, frame));
            return out;
        };
        if rng.chance(b.absurd) {
            let absurd = Message::Commit(Commit {
                view: View(rng.range(u64::MAX / 4, u64::MAX / 2)),
                seq: Seq(rng.range(0, u64::MAX / 2)),
                digest: Self::random_digest(rng),
            });
            out.extend(self.seal(to, &absurd));
            return out;
        }
        let lie = match message {
            // A primary leaving stability certificates out, alike for every backup (decided
            // by the sequence number, not per frame): backups holding one change view.
            Message::PrePrepare { pre_prepare, batch }
                if !batch.stability.is_empty()
                    && pre_prepare.body.seq.0 % 1000 < b.hide_certificates =>
            {
                let censored = Batch {
                    stability: Vec::new(),
                    ..batch.clone()
                };
                let header = PrePrepareHeader {
                    digest: censored.digest(),
                    ..pre_prepare.body
                };
                Some(Message::PrePrepare {
                    pre_prepare: self.sign(header),
                    batch: censored,
                })
            }
            Message::PrePrepare { pre_prepare, batch }
                if !batch.requests.is_empty()
                    && pre_prepare.body.seq.0 % 1000 < b.spoil_signatures =>
            {
                let mut spoiled = batch.clone();
                for request in &mut spoiled.requests {
                    request.signature.0[0] ^= 1;
                    for (slot, mac) in request.auth.0.iter_mut().enumerate() {
                        if slot != 1 {
                            mac[0] ^= 1;
                        }
                    }
                }
                let header = PrePrepareHeader {
                    digest: spoiled.digest(),
                    ..pre_prepare.body
                };
                Some(Message::PrePrepare {
                    pre_prepare: self.sign(header),
                    batch: spoiled,
                })
            }
            Message::PrePrepare { pre_prepare, batch } if rng.chance(b.equivocate) => {
                // Backups with odd ids get a different batch for the same (view, seq).
                let to_odd = matches!(to, NodeId::Replica(r) if r.0 % 2 == 1);
                if to_odd {
                    let mut other = batch.clone();
                    if other.requests.pop().is_none() {
                        other = Batch::null();
                        other.nondet.seed = rng.next_u64();
                    }
                    let header = PrePrepareHeader {
                        digest: other.digest(),
                        ..pre_prepare.body
                    };
                    Some(Message::PrePrepare {
                        pre_prepare: self.sign(header),
                        batch: other,
                    })
                } else {
                    None
                }
            }
            Message::Prepare(prepare) if rng.chance(b.conflicting_votes) => {
                Some(Message::Prepare(self.sign(Prepare {
                    digest: Self::random_digest(rng),
                    ..prepare.body
                })))
            }
            Message::Commit(commit) if rng.chance(b.conflicting_votes) => {
                Some(Message::Commit(Commit {
                    digest: Self::random_digest(rng),
                    ..commit
                }))
            }
            Message::Checkpoint(checkpoint) if rng.chance(b.false_checkpoint) => {
                let mut body = checkpoint.body;
                body.digest = Self::random_digest(rng);
                Some(Message::Checkpoint(self.sign(body)))
            }
            // A vote that a checkpoint nobody reported is stable: alone (f of them at most)
            // it never makes a certificate.
            Message::StableVote(vote) if rng.chance(b.false_checkpoint) => {
                let mut body = vote.body;
                body.root = Self::random_digest(rng);
                Some(Message::StableVote(self.sign(body)))
            }
            // An order to execution replicas with other contents: alone (f of them at
            // most) it can never gather the f+1 matching copies execution waits for.
            Message::AppOrder(order) if rng.chance(b.conflicting_votes) => {
                let mut forged = order.clone();
                forged.nondet.seed = rng.next_u64();
                forged.requests.pop();
                Some(Message::AppOrder(forged))
            }
            // Orders recovered between agreement replicas with other contents, and a
            // made-up stable checkpoint: the orders no longer chain to the certified head,
            // and alone (f of them at most) the claim is never adopted.
            Message::ChainedOrders(answer) if rng.chance(b.conflicting_votes) => {
                let mut forged = answer.clone();
                if let Some(order) = forged.orders.first_mut() {
                    order.nondet.seed = rng.next_u64();
                }
                if let Some(stable) = &mut forged.stable {
                    stable.seq = Seq(stable.seq.0 + 1);
                    stable.root = Self::random_digest(rng);
                }
                Some(Message::ChainedOrders(forged))
            }
            // A batch asked for by digest, with other contents: the asker drops it.
            Message::Proposal(proposal) if rng.chance(b.conflicting_votes) => {
                let mut spoiled = proposal.batch.clone();
                spoiled.nondet.seed ^= 1;
                Some(Message::Proposal(Proposal {
                    seq: proposal.seq,
                    batch: spoiled,
                }))
            }
            Message::ViewChange(view_change) if rng.chance(b.hide_certificates) => {
                let mut body = view_change.body.clone();
                body.prepared.clear();
                Some(Message::ViewChange(self.sign(body)))
            }
            _ => None,
        };
        match lie {
            Some(lie) => out.extend(self.seal(to, &lie)),
            None => out.push((to, frame)),
        }
        out
    }

    /// Fetch requests that ask for as much as they can: every committed batch, and
    /// batches by digest at random sequence numbers of the window (with digests of null
    /// batches, which every replica can make, and random ones).
    fn greedy_fetches(&self, rng: &mut SimRng, to: NodeId) -> Vec<(NodeId, Bytes)> {
        let all = Message::FetchBatches(FetchBatches {
            from: Seq(1),
            to: Seq(u64::MAX / 2),
        });
        let first = rng.range(1, 1024);
        let wanted = (first..first + 64)
            .map(|seq| (Seq(seq), Self::random_digest(rng)))
            .collect();
        let by_digest = Message::FetchProposals(FetchProposals { wanted });
        [all, by_digest]
            .iter()
            .filter_map(|message| self.seal(to, message))
            .collect()
    }

    fn seal(&self, to: NodeId, message: &Message) -> Option<(NodeId, Bytes)> {
        self.endpoint
            .seal(to, message)
            .map(|frame| (to, Bytes::from(frame)))
    }
}
