//! What a replica makes durable and how it comes back from it: the records that replace
//! the persisted log after a stable checkpoint, and the fold of records a restarted
//! replica starts from (persist before sending: see [`crate::core::persist`]).

use super::checkpoint::ExecState;
use super::{Replica, view_change};
use crate::core::persist::Record;
use zz_protocol::Seq;
use zz_protocol::crypto::Signed;
use zz_protocol::messages::{Batch, Commit, PrePrepareHeader, Prepare, PreparedCertificate};

impl Replica {
    /// After a restore in a view entered through a new-view message: its re-proposals are
    /// this view's pre-prepares for those sequence numbers (even if the replica stopped
    /// before recording them), and nothing at or below them may be proposed or accepted
    /// again in this view.
    pub(super) fn reapply_new_view(&mut self) {
        let Some(new_view) = self.view_change.last_new_view.clone() else {
            return;
        };
        if !self.normal || new_view.body.view != self.view {
            return;
        }
        let (stable, _) = view_change::compute_new_view_entries(&new_view.body.view_changes);
        let mut floor = stable.seq;
        for entry in &new_view.body.entries {
            let seq = entry.body.seq;
            floor = floor.max(seq);
            if !self.in_window(seq) {
                continue;
            }
            let view = self.view;
            let slot = self.slots.entry(seq).or_default();
            let accepted_here = slot
                .pre_prepare
                .as_ref()
                .is_some_and(|(pre_prepare, _)| pre_prepare.body.view == view);
            if slot.view <= view && !accepted_here {
                slot.enter_view(view);
                // The batch was recorded with an earlier pre-prepare or certificate of
                // this slot; if not, it is fetched again like on entering the view.
                self.take_re_proposal(entry.clone());
            }
        }
        self.view_change.new_view_floor = floor;
        self.proposer.next_seq = self.proposer.next_seq.max(floor.next());
    }

    /// After a restore: this replica's own prepare and commit in each slot's view, for the
    /// pre-prepares it accepted and the slots it prepared (it sent them before it stopped,
    /// or was about to: the record comes first), so that retransmission sends them again.
    /// Without them, a cluster that restarted whole would stall on slots that prepared
    /// before the restart: nobody would repeat a prepare or a commit for them.
    pub(super) fn restore_own_votes(&mut self) {
        let me = self.config.id;
        let replicas = self.config.params.replica_count();
        let prepares: Vec<(Seq, Prepare)> = (self.slots.iter())
            .filter_map(|(seq, slot)| {
                let (pre_prepare, _) = slot.pre_prepare.as_ref()?;
                let header = pre_prepare.body;
                (header.view == slot.view && header.view.primary(replicas) != me).then_some((
                    *seq,
                    Prepare {
                        view: header.view,
                        seq: header.seq,
                        digest: header.digest,
                    },
                ))
            })
            .collect();
        for (seq, prepare) in prepares {
            let prepare = self.sign(prepare);
            if let Some(slot) = self.slots.get_mut(&seq) {
                slot.prepares.insert(me, prepare);
            }
        }
        for (seq, slot) in &mut self.slots {
            let Some((certificate, _)) = &slot.prepared_certificate else {
                continue;
            };
            if slot.commit_sent && certificate.view() == slot.view {
                let commit = Commit {
                    view: slot.view,
                    seq: *seq,
                    digest: certificate.pre_prepare.body.digest,
                };
                slot.commits.insert(me, commit);
            }
        }
    }

    pub(super) fn apply_record(&mut self, record: Record) {
        match record {
            Record::View { view, normal } => {
                if view >= self.view {
                    self.view = view;
                    self.normal = normal;
                }
            }
            Record::NewView(new_view) => {
                if new_view.body.view >= self.view {
                    self.view_change.last_new_view = Some(new_view);
                }
            }
            Record::Stable { certificate, state } => {
                if certificate.seq > self.checkpoints.stable.seq {
                    self.exec = ExecState::from_snapshot(&state);
                    self.checkpoints.stable_state = state;
                    self.checkpoints.stable = certificate;
                    let low = self.checkpoints.stable.seq;
                    self.slots.retain(|seq, _| *seq > low);
                }
            }
            Record::Accepted { pre_prepare, batch } => {
                let seq = pre_prepare.body.seq;
                if seq > self.checkpoints.stable.seq {
                    let slot = self.slots.entry(seq).or_default();
                    if pre_prepare.body.view >= slot.view {
                        slot.enter_view(pre_prepare.body.view);
                        slot.pre_prepare = Some((pre_prepare, batch));
                    } else {
                        slot.keep_earlier(pre_prepare, batch);
                    }
                }
            }
            // The order router's, restored by the driver.
            Record::ExecutionStable(_)
            | Record::AppOrder { .. }
            | Record::AppOrderOfBatch { .. } => {}
            Record::Prepared { prepares } => {
                let Some(first) = prepares.first() else {
                    return;
                };
                let (view, seq) = (first.body.view, first.body.seq);
                if let Some(slot) = self.slots.get_mut(&seq)
                    && slot.view == view
                    && let Some((pre_prepare, batch)) = slot.pre_prepare.clone()
                {
                    let certificate = PreparedCertificate {
                        pre_prepare,
                        prepares,
                    };
                    slot.prepared_certificate = Some((certificate, batch));
                    slot.commit_sent = true;
                }
            }
        }
    }

    /// Everything a restarted replica needs, as records; replaces the persisted log.
    pub(super) fn durable_records(&self) -> Vec<Record> {
        let mut records = vec![
            Record::Stable {
                certificate: self.checkpoints.stable.clone(),
                state: self.checkpoints.stable_state.clone(),
            },
            Record::View {
                view: self.view,
                normal: self.normal,
            },
        ];
        if let Some(new_view) = &self.view_change.last_new_view {
            records.push(Record::NewView(new_view.clone()));
        }
        for slot in self.slots.values() {
            // Each slot's pre-prepares in the order of their views, as they were accepted:
            // the earlier ones kept, the prepared certificate's (which may be older than
            // the current votes) with its prepares right after it, and the current one.
            let mut accepted: Vec<(
                &Signed<PrePrepareHeader>,
                &Batch,
                Option<&PreparedCertificate>,
            )> = (slot.earlier.iter())
                .map(|(header, batch)| (header, batch, None))
                .collect();
            if let Some((cert, batch)) = &slot.prepared_certificate {
                accepted.push((&cert.pre_prepare, batch, Some(cert)));
            }
            if let Some((pre_prepare, batch)) = &slot.pre_prepare {
                let already = (slot.prepared_certificate.as_ref())
                    .is_some_and(|(cert, _)| cert.pre_prepare == *pre_prepare);
                if !already {
                    accepted.push((pre_prepare, batch, None));
                }
            }
            accepted.sort_by_key(|(header, _, _)| header.body.view);
            for (pre_prepare, batch, cert) in accepted {
                records.push(Record::Accepted {
                    pre_prepare: pre_prepare.clone(),
                    batch: batch.clone(),
                });
                if let Some(cert) = cert {
                    records.push(Record::Prepared {
                        prepares: cert.prepares.clone(),
                    });
                }
            }
        }
        records
    }
}
