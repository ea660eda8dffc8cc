//! Every safety check, run after every step: what correct agreement replicas order and
//! hold stable, what correct execution replicas report and reply, what clients accept,
//! and, in the alarm ledger ([`ledger`]), whether each thaw and destroy the activator
//! carries out had f+1 distinct agreement replicas behind it. The checker keeps the first
//! answer it saw to each question and compares every later one with it.

mod ledger;
mod votes;

pub(crate) use ledger::AlarmLedger;
use votes::SentVotes;

use super::stats::SimStats;
use super::violation::{ReportKind, SafetyViolation};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use zz_agreement::Replica;
use zz_agreement::io::driver::Delivery;
use zz_client::Accepted;
use zz_execution::ExecOutput;
use zz_protocol::envelope::peek_message;
use zz_protocol::messages::Message;
use zz_protocol::{AppId, ClientId, Digest, ExecutionId, NodeId, ReplicaId, Seq};

/// What one agreement replica ordered last, to see that it orders gap-free.
#[derive(Default)]
struct OrderCursor {
    last_delivered: Seq,
    /// The last order delivered per app; empty after a state transfer.
    last_app_delivered: BTreeMap<AppId, Seq>,
}

/// The first answer to every question the checks compare, and the alarm ledger.
pub(crate) struct Checker {
    /// (client, timestamp) -> the result correct execution replicas replied.
    correct_results: BTreeMap<(ClientId, u64), Vec<u8>>,
    /// (app, seq) -> replies digest the first execution replica reported.
    executed: BTreeMap<(AppId, Seq), Digest>,
    /// (app, seq) -> state root the first execution replica reported.
    execution_roots: BTreeMap<(AppId, Seq), Digest>,
    /// seq -> (digest, first correct replica that ordered it)
    committed: BTreeMap<Seq, (Digest, ReplicaId)>,
    /// (app, app seq) -> (order digest, first correct replica that ordered it)
    app_committed: BTreeMap<(AppId, Seq), (Digest, ReplicaId)>,
    /// (client, timestamp) ordered by some correct replica.
    ordered_requests: BTreeSet<(ClientId, u64)>,
    stable_digests: BTreeMap<Seq, Digest>,
    /// (app, seq) -> (root, the agreement batch that made it stable) at the first correct
    /// replica that made the execution checkpoint stable.
    execution_stable: BTreeMap<(AppId, Seq), (Digest, Seq)>,
    /// Per agreement replica, by index.
    cursors: Vec<OrderCursor>,
    /// Every vote correct agreement replicas sent, to see none contradicts its own.
    sent_votes: SentVotes,
    /// What reached the activator, kept apart from its policy.
    pub(crate) ledger: AlarmLedger,
}

impl Checker {
    pub(crate) fn new(f: usize, replica_count: usize) -> Checker {
        Checker {
            correct_results: BTreeMap::new(),
            executed: BTreeMap::new(),
            execution_roots: BTreeMap::new(),
            committed: BTreeMap::new(),
            app_committed: BTreeMap::new(),
            ordered_requests: BTreeSet::new(),
            stable_digests: BTreeMap::new(),
            execution_stable: BTreeMap::new(),
            cursors: (0..replica_count).map(|_| OrderCursor::default()).collect(),
            sent_votes: SentVotes::default(),
            ledger: AlarmLedger::new(f),
        }
    }

    /// Replica `id` (re)started having executed up to `last_executed`.
    pub(crate) fn replica_started(&mut self, id: ReplicaId, last_executed: Seq) {
        let cursor = &mut self.cursors[id.index()];
        cursor.last_delivered = last_executed;
        cursor.last_app_delivered.clear();
    }

    /// Safety: ordered batches agree across correct replicas, and each orders gap-free.
    pub(crate) fn check_delivery(
        &mut self,
        id: ReplicaId,
        delivery: Delivery,
        stats: &mut SimStats,
    ) -> Result<(), SafetyViolation> {
        let cursor = &mut self.cursors[id.index()];
        match delivery {
            Delivery::ExecutionStable(checkpoint) => {
                let key = (checkpoint.app, checkpoint.seq);
                let violation = |problem| SafetyViolation::ExecutionStableDiffers {
                    replica: id,
                    app: checkpoint.app,
                    seq: checkpoint.seq,
                    problem,
                };
                let made = (checkpoint.root, cursor.last_delivered);
                match self.execution_stable.get(&key) {
                    Some((root, _)) if *root != checkpoint.root => {
                        return Err(violation("with another root than a correct replica"));
                    }
                    Some((_, batch)) if *batch != cursor.last_delivered => {
                        return Err(violation("after another batch than a correct replica"));
                    }
                    Some(_) => {}
                    None => {
                        self.execution_stable.insert(key, made);
                    }
                }
                if (self.execution_roots.get(&key)).is_some_and(|root| *root != checkpoint.root) {
                    return Err(violation(
                        "with a root no correct execution replica reported",
                    ));
                }
            }
            Delivery::Skipped(to) => {
                cursor.last_delivered = cursor.last_delivered.max(to);
                // The per-app sequences jumped too, to numbers the state transfer carried.
                cursor.last_app_delivered.clear();
            }
            Delivery::AppOrder(order) => {
                if let Some(last) = cursor.last_app_delivered.get(&order.app)
                    && order.seq != last.next()
                {
                    return Err(SafetyViolation::AppOrderGap {
                        replica: id,
                        app: order.app,
                        seq: order.seq,
                        last: *last,
                    });
                }
                cursor.last_app_delivered.insert(order.app, order.seq);
                stats.app_orders_checked += 1;
                let digest = order.digest();
                match self.app_committed.get(&(order.app, order.seq)) {
                    Some((existing, first)) if *existing != digest => {
                        return Err(SafetyViolation::AppOrdersDiffer {
                            first: *first,
                            first_digest: *existing,
                            replica: id,
                            digest,
                            app: order.app,
                            seq: order.seq,
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.app_committed
                            .insert((order.app, order.seq), (digest, id));
                    }
                }
            }
            Delivery::Order(order) => {
                if order.seq != cursor.last_delivered.next() {
                    return Err(SafetyViolation::OrderGap {
                        replica: id,
                        seq: order.seq,
                        last: cursor.last_delivered,
                    });
                }
                cursor.last_delivered = order.seq;
                let digest = order.batch.digest();
                match self.committed.get(&order.seq) {
                    Some((existing, first)) if *existing != digest => {
                        return Err(SafetyViolation::BatchesDiffer {
                            first: *first,
                            first_digest: *existing,
                            replica: id,
                            digest,
                            seq: order.seq,
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(order.seq, (digest, id));
                    }
                }
                for request in &order.batch.requests {
                    let request = &request.request;
                    self.ordered_requests
                        .insert((request.client, request.timestamp));
                }
            }
        }
        Ok(())
    }

    /// Safety: a correct replica never sends a vote that contradicts one it sent before,
    /// restarts included: `frames` are what replica `id` sent in one step.
    pub(crate) fn check_own_votes(
        &mut self,
        id: ReplicaId,
        frames: &[(NodeId, Bytes)],
    ) -> Result<(), SafetyViolation> {
        self.sent_votes.check(id, frames)
    }

    /// Safety: a correct replica restored from its records holds every vote it sent in the
    /// view it restarted in.
    pub(crate) fn check_restored_votes(&self, replica: &Replica) -> Result<(), SafetyViolation> {
        self.sent_votes.check_restored(replica)
    }

    /// Safety: correct replicas hold equal stable checkpoints at equal sequence numbers.
    pub(crate) fn check_stable(
        &mut self,
        id: ReplicaId,
        (seq, digest): (Seq, Digest),
    ) -> Result<(), SafetyViolation> {
        match self.stable_digests.get(&seq) {
            Some(existing) if *existing != digest => {
                Err(SafetyViolation::StableCheckpointsDiffer {
                    replica: id,
                    seq,
                    digest,
                    others_digest: *existing,
                })
            }
            Some(_) => Ok(()),
            None => {
                self.stable_digests.insert(seq, digest);
                Ok(())
            }
        }
    }

    /// Correct execution replicas (woken standbys included) reply one result to each
    /// client request: `frames` are what correct replica `id` sends.
    pub(crate) fn check_replies(
        &mut self,
        id: ExecutionId,
        frames: &[(NodeId, Bytes)],
    ) -> Result<(), SafetyViolation> {
        for (to, frame) in frames {
            if let NodeId::Client(client) = to
                && let Some(Message::Reply(reply)) = peek_message(frame)
            {
                match self.correct_results.get(&(*client, reply.timestamp)) {
                    Some(result) if *result != reply.result => {
                        return Err(SafetyViolation::RepliesDiffer {
                            execution: id,
                            client: *client,
                            timestamp: reply.timestamp,
                            first_result: result.clone(),
                            result: reply.result,
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.correct_results
                            .insert((*client, reply.timestamp), reply.result);
                    }
                }
            }
        }
        Ok(())
    }

    /// Correct execution replicas of `app` report equal replies digests and equal state
    /// roots at equal sequence numbers.
    pub(crate) fn check_reports(
        &mut self,
        id: ExecutionId,
        app: AppId,
        reports: Vec<ExecOutput>,
        stats: &mut SimStats,
    ) -> Result<(), SafetyViolation> {
        for report in reports {
            let (table, seq, digest, kind) = match report {
                ExecOutput::Executed(executed) => (
                    &mut self.executed,
                    executed.seq,
                    executed.replies,
                    ReportKind::Replies,
                ),
                ExecOutput::Checkpoint(checkpoint) => (
                    &mut self.execution_roots,
                    checkpoint.seq,
                    checkpoint.root,
                    ReportKind::StateRoots,
                ),
                ExecOutput::Reply(_) | ExecOutput::NeedBucket(_) => continue,
            };
            match table.get(&(app, seq)) {
                Some(existing) if *existing != digest => {
                    return Err(SafetyViolation::ExecutionReportsDiffer {
                        execution: id,
                        app,
                        seq,
                        kind,
                        first_digest: *existing,
                        digest,
                    });
                }
                Some(_) => {}
                None => {
                    table.insert((app, seq), digest);
                    if kind == ReportKind::StateRoots {
                        stats.execution_checkpoints += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// A client accepts only what a correct replica ordered, with the result correct
    /// execution replicas gave.
    pub(crate) fn check_accepted(
        &self,
        client: ClientId,
        accepted: &Accepted,
        stats: &mut SimStats,
    ) -> Result<(), SafetyViolation> {
        if !self
            .ordered_requests
            .contains(&(client, accepted.timestamp))
        {
            return Err(SafetyViolation::AcceptedUnordered {
                client,
                timestamp: accepted.timestamp,
            });
        }
        // f+1 voted for it, so a correct execution replica sent it: it must be the
        // result correct replicas gave.
        let correct_result = self.correct_results.get(&(client, accepted.timestamp));
        if correct_result != Some(&accepted.result) {
            return Err(SafetyViolation::AcceptedWrongResult {
                client,
                timestamp: accepted.timestamp,
                result: accepted.result.clone(),
                correct_result: correct_result.cloned(),
            });
        }
        stats.results_checked += 1;
        Ok(())
    }
}
