//! New views name their re-proposals by digest; a replica lacking a batch fetches it, and
//! answers to fetch requests are rate-limited per asker.

use super::tests::{
    batch, certificate, config, drain, from, pre_prepare, signing_key, view_change_to,
};
use super::*;
use crate::core::persist::Record;
use zz_protocol::messages::{
    Batch, FetchProposals, NewView, PrePrepareHeader, PreparedCertificate, Proposal, ViewChange,
};

/// Replica `by`'s view change to view 1, with these certificates.
fn view_change_to_1(by: u32, prepared: Vec<PreparedCertificate>) -> Signed<ViewChange> {
    view_change_to(1, by, prepared)
}

/// `batch` prepared at seq 1 in view 0 (primary 0, backups 1 and 2).
fn prepared_in_view_0(batch: &Batch) -> PreparedCertificate {
    certificate(0, 1, batch)
}

/// The new view 1 (primary 1) resting on view changes from 0, 1 and 3, which re-proposes
/// `batch` at seq 1 by its digest.
fn new_view_1(batch: &Batch) -> Signed<NewView> {
    let view_changes = vec![
        view_change_to_1(0, vec![prepared_in_view_0(batch)]),
        view_change_to_1(1, Vec::new()),
        view_change_to_1(3, Vec::new()),
    ];
    let header = PrePrepareHeader {
        view: View(1),
        seq: Seq(1),
        digest: batch.digest(),
    };
    let body = NewView {
        view: View(1),
        view_changes,
        entries: vec![Signed::sign(header, ReplicaId(1), &signing_key(1))],
    };
    Signed::sign(body, ReplicaId(1), &signing_key(1))
}

fn asks_for(outputs: &[Output]) -> Vec<(Seq, Digest)> {
    (outputs.iter())
        .flat_map(|output| match output {
            Output::Broadcast(Message::FetchProposals(fetch)) => fetch.wanted.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn prepares_sent(outputs: &[Output]) -> Vec<(View, Seq, Digest)> {
    (outputs.iter())
        .filter_map(|output| match output {
            Output::Broadcast(Message::Prepare(prepare)) => {
                Some((prepare.body.view, prepare.body.seq, prepare.body.digest))
            }
            _ => None,
        })
        .collect()
}

fn dropped(replica: &Replica, reason: DropReason) -> u64 {
    replica
        .counters()
        .dropped
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

/// A backup that never saw the batch a new view re-proposes enters the view, asks its
/// peers for the batch by digest (again each status interval), refuses a copy with other
/// contents and one it did not ask for, and prepares once the right one comes.
#[test]
fn a_replica_fetches_by_digest_the_batch_a_new_view_re_proposes() {
    let wanted = batch(5);
    let mut backup = Replica::new(config(2), Time(0));
    backup.handle_message(Time(1_000), from(1, Message::NewView(new_view_1(&wanted))));
    let outputs = drain(&mut backup);
    assert!(backup.is_normal() && backup.view() == View(1));
    assert_eq!(asks_for(&outputs), vec![(Seq(1), wanted.digest())]);
    assert!(
        prepares_sent(&outputs).is_empty(),
        "no prepare without the batch"
    );

    let status_interval = backup.params().status_interval_ms * 1000;
    backup.handle_timeout(Time(1_000 + status_interval));
    assert_eq!(
        asks_for(&drain(&mut backup)),
        vec![(Seq(1), wanted.digest())]
    );

    let mut other = wanted.clone();
    other.nondet.seed += 1;
    let forged = Proposal {
        seq: Seq(1),
        batch: other,
    };
    backup.handle_message(Time(2_000), from(3, Message::Proposal(forged)));
    let unasked = Proposal {
        seq: Seq(2),
        batch: batch(6),
    };
    backup.handle_message(Time(2_000), from(3, Message::Proposal(unasked)));
    assert!(prepares_sent(&drain(&mut backup)).is_empty());
    assert_eq!(dropped(&backup, DropReason::ProposalDigest), 1);
    assert_eq!(dropped(&backup, DropReason::UnsolicitedProposal), 1);

    let right = Proposal {
        seq: Seq(1),
        batch: wanted.clone(),
    };
    backup.handle_message(Time(3_000), from(0, Message::Proposal(right.clone())));
    let outputs = drain(&mut backup);
    assert_eq!(
        prepares_sent(&outputs),
        vec![(View(1), Seq(1), wanted.digest())]
    );
    assert_eq!(backup.counters().proposals_fetched, 1);
    backup.handle_message(Time(3_000), from(3, Message::Proposal(right)));
    assert_eq!(dropped(&backup, DropReason::UnsolicitedProposal), 2);
    backup.handle_timeout(Time(3_000 + 2 * status_interval));
    assert!(
        asks_for(&drain(&mut backup)).is_empty(),
        "nothing awaited any more"
    );
}

/// A replica that accepted the batch in view 0 takes the re-proposal from what it holds,
/// and asks nobody.
#[test]
fn a_replica_holding_the_batch_asks_for_nothing() {
    let wanted = batch(5);
    let mut backup = Replica::new(config(2), Time(0));
    backup.handle_message(Time(500), from(0, pre_prepare(0, 1, &wanted)));
    drain(&mut backup);
    backup.handle_message(Time(1_000), from(1, Message::NewView(new_view_1(&wanted))));
    let outputs = drain(&mut backup);
    assert!(asks_for(&outputs).is_empty());
    assert_eq!(
        prepares_sent(&outputs),
        vec![(View(1), Seq(1), wanted.digest())]
    );
}

/// A peer asking again and again for batches gets a bounded share of answers per status
/// interval (one answer always, so a full batch still goes out), then more once the
/// interval has passed; each answer withheld is counted.
#[test]
fn answers_to_fetch_requests_are_rate_limited_per_asker() {
    let mut config = config(2);
    config.params.request_bytes_max = 16 * 1024;
    config.params.batch_size_max = 4;
    config.params.frame_bytes_max = 2 * config.params.batch_bytes_max();
    let mut replica = Replica::new(config, Time(0));
    let big = {
        let mut big = batch(5);
        big.requests[0].request.op = vec![7; 15 * 1024];
        big
    };
    replica.handle_message(Time(500), from(0, pre_prepare(0, 1, &big)));
    drain(&mut replica);
    let ask = || {
        Message::FetchProposals(FetchProposals {
            wanted: vec![(Seq(1), big.digest())],
        })
    };
    let answers_to = |outputs: &[Output], peer: u32| {
        (outputs.iter())
            .filter(|output| {
                matches!(output, Output::Send { to, message: Message::Proposal(_) } if to.0 == peer)
            })
            .count()
    };
    // The budget is half a frame, a full batch of four 16 KiB requests: a batch of one
    // 15 KiB request goes out about four times before the asker is refused.
    let mut answered = 0;
    for _ in 0..40 {
        replica.handle_message(Time(1_000), from(3, ask()));
        answered += answers_to(&drain(&mut replica), 3);
    }
    assert!((4..=10).contains(&answered), "answered {answered} times");
    assert_eq!(
        replica.counters().fetch_answers_withheld,
        40 - answered as u64
    );
    // Another asker has a share of its own.
    replica.handle_message(Time(1_000), from(1, ask()));
    assert_eq!(answers_to(&drain(&mut replica), 1), 1);
    let later = Time(1_000 + replica.params().status_interval_ms * 1000);
    replica.handle_message(later, from(3, ask()));
    assert_eq!(
        answers_to(&drain(&mut replica), 3),
        1,
        "a new interval, a new share"
    );
}

/// A replica restarted in a view whose re-proposal's batch it never had asks for it again,
/// and one that had it recorded takes it from its records.
#[test]
fn a_restarted_replica_fetches_the_re_proposals_it_never_had() {
    let records_of = |outputs: &[Output]| -> Vec<Record> {
        (outputs.iter())
            .filter_map(|output| match output {
                Output::Persist(record) => Some(record.clone()),
                _ => None,
            })
            .collect()
    };
    let wanted = batch(5);
    let mut lacking = Replica::new(config(2), Time(0));
    lacking.handle_message(Time(1_000), from(1, Message::NewView(new_view_1(&wanted))));
    let records = records_of(&drain(&mut lacking));
    let mut restored = Replica::restore(config(2), records, Time(5_000));
    assert!(restored.is_normal() && restored.view() == View(1));
    restored.handle_timeout(Time(5_000));
    assert_eq!(
        asks_for(&drain(&mut restored)),
        vec![(Seq(1), wanted.digest())]
    );

    let mut holding = Replica::new(config(2), Time(0));
    holding.handle_message(Time(500), from(0, pre_prepare(0, 1, &wanted)));
    let mut records = records_of(&drain(&mut holding));
    holding.handle_message(Time(1_000), from(1, Message::NewView(new_view_1(&wanted))));
    records.extend(records_of(&drain(&mut holding)));
    let mut restored = Replica::restore(config(2), records, Time(5_000));
    restored.handle_timeout(Time(5_000));
    assert!(asks_for(&drain(&mut restored)).is_empty());
    assert_eq!(
        restored.accepted_at(Seq(1)),
        Some((View(1), wanted.digest()))
    );
}

fn new_view_sent(outputs: &[Output]) -> Option<Signed<NewView>> {
    outputs.iter().find_map(|output| match output {
        Output::Broadcast(Message::NewView(new_view)) => Some(new_view.clone()),
        _ => None,
    })
}

/// The next primary leaves out a view change whose certificate names a batch it cannot
/// find, when 2f+1 others are there; with only that one to complete a quorum, it waits a
/// quarter of the view-change timeout, then sends the new view with it and fetches the
/// batch like any replica.
#[test]
fn a_new_primary_prefers_view_changes_whose_batches_it_holds() {
    let unknown = batch(5);
    let vouched_by_0 = || view_change_to_1(0, vec![prepared_in_view_0(&unknown)]);
    let signers = |new_view: &Signed<NewView>| -> Vec<u32> {
        (new_view.body.view_changes.iter())
            .map(|view_change| view_change.signer.0)
            .collect()
    };

    let mut primary = Replica::new(config(1), Time(0));
    for view_change in [vouched_by_0(), view_change_to_1(2, Vec::new())] {
        primary.handle_message(
            Time(1_000),
            from(view_change.signer.0, Message::ViewChange(view_change)),
        );
    }
    // f+1 asked: it joined, and with its own there are 2f+1, one lacking a batch.
    assert!(!primary.is_normal() && primary.view() == View(1));
    assert!(new_view_sent(&drain(&mut primary)).is_none(), "it waits");
    let last = view_change_to_1(3, Vec::new());
    primary.handle_message(Time(2_000), from(3, Message::ViewChange(last)));
    let new_view = new_view_sent(&drain(&mut primary)).expect("a new view");
    let mut chosen = signers(&new_view);
    chosen.sort();
    assert_eq!(chosen, vec![1, 2, 3]);
    assert!(new_view.body.entries.is_empty());

    let mut patient = Replica::new(config(1), Time(0));
    for view_change in [vouched_by_0(), view_change_to_1(2, Vec::new())] {
        patient.handle_message(
            Time(1_000),
            from(view_change.signer.0, Message::ViewChange(view_change)),
        );
    }
    drain(&mut patient);
    let grace = patient.params().view_change_timeout_ms * 1000 / 4;
    let status = patient.params().status_interval_ms * 1000;
    patient.handle_timeout(Time(1_000 + grace - status));
    assert!(
        new_view_sent(&drain(&mut patient)).is_none(),
        "still waiting"
    );
    patient.handle_timeout(Time(1_000 + grace + status));
    let outputs = drain(&mut patient);
    let new_view = new_view_sent(&outputs).expect("a new view after the wait");
    assert!(signers(&new_view).contains(&0));
    assert_eq!(asks_for(&outputs), vec![(Seq(1), unknown.digest())]);
}
