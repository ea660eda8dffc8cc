//! Unit tests of the replica core, message by message. The simulator tests whole clusters
//! under faults; these pin single rules of the paper.

use super::*;
use crate::core::persist::Record;
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::messages::{
    Batch, CheckpointCertificate, Commit, NonDet, PrePrepareHeader, Prepare, PreparedCertificate,
    Request, Status, ViewChange,
};
use zz_protocol::{AppId, ClientId};

pub(super) const WALL_CLOCK_AT_ZERO_MS: u64 = 1_800_000_000_000;

pub(super) fn params() -> ProtocolParams {
    ProtocolParams {
        checkpoint_interval: 4,
        window: 8,
        ..ProtocolParams::default()
    }
}

pub(super) fn keys() -> DerivedKeys {
    DerivedKeys::new(7, &params())
}

pub(super) fn signing_key(id: u32) -> Ed25519SigningKey {
    keys()
        .replica(ReplicaId(id))
        .signing_key
        .expect("replicas sign")
}

pub(super) fn config(id: u32) -> ReplicaConfig {
    ReplicaConfig {
        id: ReplicaId(id),
        params: params(),
        signing_key: signing_key(id),
        wall_clock_at_zero_ms: WALL_CLOCK_AT_ZERO_MS,
        seed: 1,
    }
}

pub(super) fn batch(timestamp: u64) -> Batch {
    let client = keys().client_endpoint(ClientId(1));
    let request = client.authenticate_request(Request {
        app: AppId(0),
        client: ClientId(1),
        timestamp,
        op: vec![1, 2, 3],
    });
    Batch {
        requests: vec![request],
        nondet: NonDet {
            timestamp_ms: WALL_CLOCK_AT_ZERO_MS,
            seed: timestamp,
        },
        stability: Vec::new(),
    }
}

pub(super) fn from(id: u32, message: Message) -> Verified {
    Verified::assume_verified(NodeId::Replica(ReplicaId(id)), message)
}

pub(super) fn pre_prepare(view: u64, seq: u64, batch: &Batch) -> Message {
    let header = PrePrepareHeader {
        view: View(view),
        seq: Seq(seq),
        digest: batch.digest(),
    };
    let primary = View(view).primary(params().replica_count()).0;
    Message::PrePrepare {
        pre_prepare: Signed::sign(header, ReplicaId(primary), &signing_key(primary)),
        batch: batch.clone(),
    }
}

pub(super) fn prepare(view: u64, seq: u64, batch: &Batch, by: u32) -> Message {
    let body = Prepare {
        view: View(view),
        seq: Seq(seq),
        digest: batch.digest(),
    };
    Message::Prepare(Signed::sign(body, ReplicaId(by), &signing_key(by)))
}

pub(super) fn commit(view: u64, seq: u64, batch: &Batch) -> Message {
    Message::Commit(Commit {
        view: View(view),
        seq: Seq(seq),
        digest: batch.digest(),
    })
}

pub(super) fn drain(replica: &mut Replica) -> Vec<Output> {
    std::iter::from_fn(|| replica.poll_output()).collect()
}

fn orders(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Order { order, .. } => Some(order.seq.0),
            _ => None,
        })
        .collect()
}

fn broadcasts_prepare(outputs: &[Output]) -> bool {
    outputs
        .iter()
        .any(|output| matches!(output, Output::Broadcast(Message::Prepare(_))))
}

/// Section 4.2: a backup prepares, commits, and orders batches strictly in sequence order,
/// even when a later one commits first.
#[test]
fn a_backup_orders_committed_batches_in_sequence_order() {
    let mut backup = Replica::new(config(1), Time(0));
    let (first, second) = (batch(1), batch(2));
    for (seq, batch) in [(2, &second), (1, &first)] {
        backup.handle_message(Time(1), from(0, pre_prepare(0, seq, batch)));
        backup.handle_message(Time(1), from(2, prepare(0, seq, batch, 2)));
    }
    drain(&mut backup);
    backup.handle_message(Time(2), from(0, commit(0, 2, &second)));
    backup.handle_message(Time(2), from(2, commit(0, 2, &second)));
    assert!(
        orders(&drain(&mut backup)).is_empty(),
        "seq 2 waits for seq 1"
    );
    backup.handle_message(Time(3), from(0, commit(0, 1, &first)));
    backup.handle_message(Time(3), from(3, commit(0, 1, &first)));
    assert_eq!(orders(&drain(&mut backup)), vec![1, 2]);
    assert_eq!(backup.last_executed(), Seq(2));
}

/// Section 4.2: a pre-prepare above the high watermark is dropped, and counted.
#[test]
fn a_pre_prepare_outside_the_watermarks_is_dropped_and_counted() {
    let mut backup = Replica::new(config(1), Time(0));
    let beyond = params().window + 1;
    backup.handle_message(Time(1), from(0, pre_prepare(0, beyond, &batch(1))));
    assert!(!broadcasts_prepare(&drain(&mut backup)));
    assert_eq!(
        backup.counters().dropped.get(&DropReason::OutsideWindow),
        Some(&1)
    );
}

/// A backup never accepts two digests for one (view, seq), and a restart from its records
/// does not make it forget which one it accepted.
#[test]
fn a_restarted_replica_refuses_a_conflicting_pre_prepare_for_a_slot_it_voted_on() {
    let mut backup = Replica::new(config(1), Time(0));
    backup.handle_message(Time(1), from(0, pre_prepare(0, 1, &batch(1))));
    let outputs = drain(&mut backup);
    assert!(broadcasts_prepare(&outputs));
    let accepted = outputs.iter().position(|o| matches!(o, Output::Persist(_)));
    let prepared = outputs
        .iter()
        .position(|o| matches!(o, Output::Broadcast(_)));
    assert!(
        accepted < prepared,
        "the vote is persisted before it is sent"
    );
    let records: Vec<Record> = outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Persist(record) => Some(record),
            _ => None,
        })
        .collect();

    let mut restarted = Replica::restore(config(1), records, Time(2));
    restarted.handle_message(Time(3), from(0, pre_prepare(0, 1, &batch(9))));
    assert!(!broadcasts_prepare(&drain(&mut restarted)));
    assert_eq!(
        restarted
            .counters()
            .dropped
            .get(&DropReason::ConflictingPrePrepare),
        Some(&1)
    );
}

pub(super) fn certificate(view: u64, seq: u64, batch: &Batch) -> PreparedCertificate {
    let Message::PrePrepare { pre_prepare, .. } = pre_prepare(view, seq, batch) else {
        unreachable!()
    };
    let primary = pre_prepare.signer.0;
    let prepares = (0..4)
        .filter(|id| *id != primary)
        .take(2)
        .map(|id| match prepare(view, seq, batch, id) {
            Message::Prepare(prepare) => prepare,
            _ => unreachable!(),
        })
        .collect();
    PreparedCertificate {
        pre_prepare,
        prepares,
    }
}

fn view_change(by: u32, prepared: Vec<PreparedCertificate>) -> Signed<ViewChange> {
    view_change_to(3, by, prepared)
}

/// Replica `by`'s view change to `view`, from the genesis checkpoint, with `prepared`.
pub(super) fn view_change_to(
    view: u64,
    by: u32,
    prepared: Vec<PreparedCertificate>,
) -> Signed<ViewChange> {
    let body = ViewChange {
        new_view: View(view),
        stable: CheckpointCertificate {
            seq: Seq(0),
            digest: genesis_checkpoint().digest(),
            votes: Vec::new(),
        },
        prepared,
    };
    Signed::sign(body, ReplicaId(by), &signing_key(by))
}

/// Section 4.4: O re-proposes, for each sequence number, the batch prepared in the highest
/// view, and a null batch where nobody prepared anything.
#[test]
fn new_view_entries_take_the_highest_view_certificate_and_fill_gaps_with_null() {
    let (old, new, third) = (batch(1), batch(2), batch(3));
    let view_changes = vec![
        view_change(1, vec![certificate(0, 1, &old)]),
        view_change(2, vec![certificate(1, 1, &new), certificate(1, 3, &third)]),
        view_change(3, vec![]),
    ];
    let (stable, entries) = view_change::compute_new_view_entries(&view_changes);
    assert_eq!(stable.seq, Seq(0));
    let null = Batch::null().digest();
    let expected = vec![
        (Seq(1), new.digest()),
        (Seq(2), null),
        (Seq(3), third.digest()),
    ];
    assert_eq!(entries, expected);
}

/// A replica restored from its records sends its own votes again: the prepare for the
/// pre-prepare it accepted and the commit for the slot it prepared. Otherwise a cluster
/// restarting whole would never commit a slot that prepared before the restart, since no
/// replica would repeat a vote for it (each holds its pre-prepare already, so a resent
/// pre-prepare is a duplicate).
#[test]
fn a_restored_replica_retransmits_its_prepare_and_commit() {
    let mut backup = Replica::new(config(1), Time(0));
    let accepted = batch(1);
    backup.handle_message(Time(1), from(0, pre_prepare(0, 1, &accepted)));
    backup.handle_message(Time(1), from(2, prepare(0, 1, &accepted, 2)));
    let records: Vec<Record> = drain(&mut backup)
        .into_iter()
        .filter_map(|output| match output {
            Output::Persist(record) => Some(record),
            _ => None,
        })
        .collect();
    assert!(
        records
            .iter()
            .any(|record| matches!(record, Record::Prepared { .. })),
        "it prepared"
    );

    let mut restarted = Replica::restore(config(1), records, Time(2));
    let interval = params().status_interval_ms * 1000;
    restarted.handle_timeout(Time(2 + interval));
    let sent: Vec<Message> = drain(&mut restarted)
        .into_iter()
        .filter_map(|output| match output {
            Output::Broadcast(message) => Some(message),
            _ => None,
        })
        .collect();
    let digest = accepted.digest();
    assert!(sent.iter().any(|message| matches!(
        message,
        Message::Prepare(prepare) if prepare.signer == ReplicaId(1)
            && prepare.body.seq == Seq(1) && prepare.body.digest == digest
    )));
    assert!(sent.contains(&Message::Commit(Commit {
        view: View(0),
        seq: Seq(1),
        digest
    })));
}

/// Records saying "normal in view 1" without view 1's new view (an older zz wrote the view
/// first, and a torn tail can keep just that) restore a replica changing view, not one
/// that would accept any pre-prepare of view 1's primary.
#[test]
fn a_view_restored_without_its_new_view_is_not_served_in() {
    let records = vec![Record::View {
        view: View(1),
        normal: true,
    }];
    let restored = Replica::restore(config(2), records, Time(0));
    assert_eq!(restored.view(), View(1));
    assert!(!restored.is_normal());
}

/// A request a backup saw only in the old primary's pre-prepare (it may have checked only
/// its own MAC slot: a Byzantine primary can spoil the signature and the other slots) is
/// not proposed by that backup once it is primary; one it received itself, its signature
/// checked, is.
#[test]
fn a_new_primary_proposes_only_requests_it_checked_itself() {
    let mut replica = Replica::new(config(1), Time(0));
    let seen_in_batch = batch(5);
    replica.handle_message(Time(1), from(0, pre_prepare(0, 1, &seen_in_batch)));
    let received = keys()
        .client_endpoint(ClientId(2))
        .authenticate_request(Request {
            app: AppId(0),
            client: ClientId(2),
            timestamp: 9,
            op: vec![4],
        });
    let client = Verified::assume_verified(NodeId::Client(ClientId(2)), Message::Request(received));
    replica.handle_message(Time(2), client);
    drain(&mut replica);
    // The pre-prepare never completes: the timer runs out, view 1 (this replica's) begins.
    enter_view_1_as_primary(&mut replica);
    assert!(
        replica.is_primary() && replica.is_normal(),
        "entered its view"
    );
    let proposed: Vec<(ClientId, u64)> = drain(&mut replica)
        .into_iter()
        .filter_map(|output| match output {
            Output::Broadcast(Message::PrePrepare { batch, .. }) => Some(batch),
            _ => None,
        })
        .flat_map(|batch| batch.requests)
        .map(|request| (request.request.client, request.request.timestamp))
        .collect();
    assert_eq!(proposed, vec![(ClientId(2), 9)]);
}

/// Replica 1, waiting in view 0, lets its view-change timer run out and enters view 1 on
/// replicas 2's and 3's view changes; returns the time it did.
fn enter_view_1_as_primary(replica: &mut Replica) -> Time {
    let deadline = replica.poll_timeout().expect("a view-change timer runs");
    let timeout = Time(deadline.0 + params().view_change_timeout_ms * 1000 * 4);
    replica.handle_timeout(timeout);
    for by in [2, 3] {
        let body = ViewChange {
            new_view: replica.view(),
            stable: CheckpointCertificate {
                seq: Seq(0),
                digest: genesis_checkpoint().digest(),
                votes: Vec::new(),
            },
            prepared: Vec::new(),
        };
        let signed = Signed::sign(body, ReplicaId(by), &signing_key(by));
        replica.handle_message(timeout, from(by, Message::ViewChange(signed)));
    }
    timeout
}

fn new_views_sent_to(outputs: &[Output], peer: u32) -> usize {
    (outputs.iter())
        .filter(|output| {
            matches!(output, Output::Send { to, message: Message::NewView(_) } if *to == ReplicaId(peer))
        })
        .count()
}

/// A stale status costs its sender a few bytes and would buy it a whole new view each
/// time: a peer gets the new view once, and again only after a view-change timeout.
#[test]
fn a_new_view_is_resent_to_a_peer_once_per_timeout() {
    let mut replica = Replica::new(config(1), Time(0));
    replica.handle_message(Time(1), from(0, pre_prepare(0, 1, &batch(5))));
    let entered = enter_view_1_as_primary(&mut replica);
    assert!(replica.is_normal() && replica.view() == View(1));
    drain(&mut replica);
    let stale = Message::Status(Status {
        view: View(0),
        last_executed: Seq(0),
        stable: Seq(0),
    });
    let mut sent = 0;
    for step in 0..20 {
        replica.handle_message(Time(entered.0 + step), from(3, stale.clone()));
        sent += new_views_sent_to(&drain(&mut replica), 3);
    }
    assert_eq!(sent, 1, "once for twenty stale statuses");
    assert_eq!(replica.counters().new_views_withheld, 19);
    let later = Time(entered.0 + params().view_change_timeout_ms * 1000 + 20);
    replica.handle_message(later, from(3, stale.clone()));
    assert_eq!(
        new_views_sent_to(&drain(&mut replica), 3),
        1,
        "the first may be lost"
    );
    replica.handle_message(later, from(2, stale));
    assert_eq!(
        new_views_sent_to(&drain(&mut replica), 2),
        1,
        "each peer has its own"
    );
}

/// A replica keeps messages for the next view from one sender up to its share in bytes:
/// one Byzantine replica cannot park its largest pre-prepares without bound.
#[test]
fn future_view_messages_are_bounded_in_bytes_per_sender() {
    let mut small_batches = config(0);
    small_batches.params.batch_size_max = 8;
    let bound = future_bytes_per_sender(&small_batches.params);
    let mut replica = Replica::new(small_batches, Time(0));
    let mut big = batch(1);
    big.requests[0].request.op = vec![9; 1024 * 1024];
    let sent = bound / (1024 * 1024) + 8;
    for seq in 1..=sent as u64 {
        let mut message = pre_prepare(1, seq, &big);
        if let Message::PrePrepare { batch, .. } = &mut message {
            batch.nondet.seed = seq;
        }
        replica.handle_message(Time(1), from(1, message));
    }
    let dropped = replica.counters().dropped[&DropReason::FutureView];
    assert!(dropped >= 8, "{dropped} of {sent} dropped");
    let kept = sent as u64 - dropped;
    assert!(
        kept >= 1 && kept * 1024 * 1024 <= bound as u64,
        "{kept} kept"
    );
}

/// Batches fetched during catch-up are kept as one body per digest, and each peer's
/// bodies up to its share in bytes: a Byzantine peer answering with the largest batches
/// for every slot in the window is refused past its share, and f+1 correct peers' batch
/// still commits (its body kept once, though two peers sent it).
#[test]
fn fetched_batches_are_bounded_in_bytes_per_peer() {
    use zz_protocol::messages::Batches;
    let mut small_batches = config(0);
    small_batches.params.batch_size_max = 8;
    let bound = catch_up::fetched_bytes_per_sender(&small_batches.params);
    let mut replica = Replica::new(small_batches, Time(0));
    let slots = params().window;
    let share = bound / slots as usize + 1024 * 1024;
    let forged: Vec<(Seq, Batch)> = (1..=slots)
        .map(|seq| {
            let mut big = batch(seq);
            big.requests[0].request.op = vec![9; share];
            (Seq(seq), big)
        })
        .collect();
    let answer = |entries| {
        Message::Batches(Batches {
            checkpoint: None,
            entries,
        })
    };
    replica.handle_message(Time(1), from(3, answer(forged)));
    let refused = replica.counters().fetched_bodies_refused;
    assert!(refused >= 1, "{refused} of {slots} refused");
    assert!(replica.catch_up.body_bytes_of(ReplicaId(3)) <= bound);
    for by in [1, 2] {
        replica.handle_message(Time(2), from(by, answer(vec![(Seq(1), batch(1))])));
    }
    assert_eq!(
        orders(&drain(&mut replica)),
        vec![1],
        "f+1 peers' batch commits"
    );
}
