//! Stable execution checkpoints are ordered: votes, certificates in batches, the timer a
//! backup starts for a certificate the primary leaves out.

use super::tests::{batch, commit, config, drain, from, keys, pre_prepare, prepare, signing_key};
use super::*;
use zz_protocol::messages::{Batch, ExecutionCheckpoint, StabilityCertificate};

fn checkpoint(seq: u64, root: u8) -> ExecutionCheckpoint {
    ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root: Digest([root; 32]),
    }
}

fn vote(by: u32, checkpoint: ExecutionCheckpoint) -> Message {
    Message::StableVote(Signed::sign(checkpoint, ReplicaId(by), &signing_key(by)))
}

/// Prepares from `backups` and commits from every other replica: `seq` commits at `replica`.
fn complete(replica: &mut Replica, seq: u64, batch: &Batch, backups: &[u32]) {
    for by in backups {
        replica.handle_message(Time(5), from(*by, prepare(0, seq, batch, *by)));
        replica.handle_message(Time(5), from(*by, commit(0, seq, batch)));
    }
}

fn proposed(outputs: &[Output]) -> Vec<Batch> {
    (outputs.iter())
        .filter_map(|output| match output {
            Output::Broadcast(Message::PrePrepare { batch, .. }) => Some(batch.clone()),
            _ => None,
        })
        .collect()
}

fn made_stable(outputs: &[Output]) -> Vec<ExecutionCheckpoint> {
    (outputs.iter())
        .filter_map(|output| match output {
            Output::ExecutionStable(checkpoint) => Some(*checkpoint),
            _ => None,
        })
        .collect()
}

/// A backup that ordered app 0's first batch (so app 0 has a head).
fn backup_with_app_ordered() -> Replica {
    let mut backup = Replica::new(config(1), Time(0));
    let first = batch(1);
    backup.handle_message(Time(1), from(0, pre_prepare(0, 1, &first)));
    complete(&mut backup, 1, &first, &[2, 3]);
    assert_eq!(backup.last_executed(), Seq(1));
    drain(&mut backup);
    backup
}

/// The primary's own vote is not enough (f+1 = 2); with a peer's vote alike it proposes a
/// batch carrying the certificate, even with no request waiting, and executing it makes
/// the checkpoint stable, after the batch's own orders. A vote at or below it is ignored.
#[test]
fn f_plus_1_votes_alike_are_ordered_and_make_the_checkpoint_stable() {
    let mut primary = Replica::new(config(0), Time(0));
    let request = batch(1).requests[0].clone();
    let client = NodeId::Client(ClientId(1));
    primary.handle_message(
        Time(1),
        Verified::assume_verified(client, Message::Request(request)),
    );
    let first = proposed(&drain(&mut primary))
        .pop()
        .expect("proposed at once");
    complete(&mut primary, 1, &first, &[1, 2]);
    assert_eq!(primary.last_executed(), Seq(1));
    drain(&mut primary);

    primary.vote_stable(Time(2), checkpoint(1, 9));
    let outputs = drain(&mut primary);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Broadcast(Message::StableVote(_))))
    );
    assert!(proposed(&outputs).is_empty(), "one vote");
    // A peer's vote for another root does not count with it.
    primary.handle_message(Time(3), from(2, vote(2, checkpoint(1, 8))));
    assert!(proposed(&drain(&mut primary)).is_empty());
    primary.handle_message(Time(3), from(1, vote(1, checkpoint(1, 9))));
    let batches = proposed(&drain(&mut primary));
    assert_eq!(batches.len(), 1);
    let certified = &batches[0];
    assert!(certified.requests.is_empty() && !certified.is_null());
    assert_eq!(certified.stability.len(), 1);
    assert_eq!(certified.stability[0].checkpoint, checkpoint(1, 9));
    assert_eq!(certified.stability[0].votes.len(), 2);
    assert_eq!(primary.agreed_stable(AppId(0)), None, "not ordered yet");
    // Not proposed twice in a view.
    primary.handle_message(Time(4), from(3, vote(3, checkpoint(1, 9))));
    assert!(proposed(&drain(&mut primary)).is_empty());

    complete(&mut primary, 2, certified, &[1, 2]);
    assert_eq!(made_stable(&drain(&mut primary)), vec![checkpoint(1, 9)]);
    assert_eq!(
        primary.agreed_stable(AppId(0)),
        Some((Seq(1), Digest([9; 32])))
    );
    let head = primary.app_heads().next().expect("app 0");
    assert_eq!(
        head.stable,
        Some((Seq(1), Digest([9; 32]))),
        "certified with the state"
    );
    primary.vote_stable(Time(6), checkpoint(1, 9));
    assert!(drain(&mut primary).is_empty(), "stable already");
}

/// A certificate naming a checkpoint beyond what the app's orders reached is ignored
/// (every replica executes the same batch, so every one ignores it).
#[test]
fn a_certificate_beyond_the_apps_orders_changes_nothing() {
    let mut backup = backup_with_app_ordered();
    let votes = [2, 3].map(|by| Signed::sign(checkpoint(5, 9), ReplicaId(by), &signing_key(by)));
    let mut certified = Batch {
        requests: Vec::new(),
        ..batch(2)
    };
    certified.stability.push(StabilityCertificate {
        checkpoint: checkpoint(5, 9),
        votes: votes.to_vec(),
    });
    backup.handle_message(Time(2), from(0, pre_prepare(0, 2, &certified)));
    complete(&mut backup, 2, &certified, &[2, 3]);
    assert_eq!(backup.last_executed(), Seq(2));
    assert!(made_stable(&drain(&mut backup)).is_empty());
    assert_eq!(backup.agreed_stable(AppId(0)), None);
}

/// A backup holding f+1 votes alike that the primary does not order suspects it as it
/// would for a request: the view-change timer runs, and a view change follows.
#[test]
fn a_backup_holding_a_certificate_the_primary_leaves_out_changes_view() {
    let mut idle = backup_with_app_ordered();
    idle.handle_timeout(Time(10_000_000));
    let outputs = drain(&mut idle);
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_))))
    );

    let mut backup = backup_with_app_ordered();
    backup.handle_message(Time(2), from(2, vote(2, checkpoint(1, 9))));
    backup.handle_message(Time(2), from(3, vote(3, checkpoint(1, 9))));
    backup.handle_timeout(Time(10_000_000));
    let outputs = drain(&mut backup);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_))))
    );
}

/// A client's retransmission of its last ordered request is answered for the app that
/// request named; one naming another app is not that request (it must not wake another
/// app's standbys) and is dropped.
#[test]
fn a_retransmission_counts_only_for_the_app_its_request_named() {
    let mut backup = backup_with_app_ordered();
    let client = keys().client_endpoint(ClientId(1));
    let retransmit = |app| {
        let request = client.authenticate_request(zz_protocol::messages::Request {
            app: AppId(app),
            client: ClientId(1),
            timestamp: 1,
            op: vec![1, 2, 3],
        });
        Verified::assume_verified(NodeId::Client(ClientId(1)), Message::Request(request))
    };
    backup.handle_message(Time(2), retransmit(0));
    let already = |outputs: &[Output]| {
        (outputs.iter())
            .filter_map(|output| match output {
                Output::AlreadyOrdered { app, .. } => Some(*app),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(already(&drain(&mut backup)), vec![AppId(0)]);
    backup.handle_message(Time(2), retransmit(5));
    assert!(already(&drain(&mut backup)).is_empty());
}

fn view_changes(outputs: &[Output]) -> bool {
    (outputs.iter()).any(|o| matches!(o, Output::Broadcast(Message::ViewChange(_))))
}

/// A primary that orders an app's certificates as they come is never suspected, however
/// soon the next one is formable: each one ordered restarts the app's timer.
#[test]
fn each_certificate_ordered_restarts_the_timer() {
    let mut backup = backup_with_app_ordered();
    backup.handle_message(Time(2), from(2, vote(2, checkpoint(1, 9))));
    backup.handle_message(Time(2), from(3, vote(3, checkpoint(1, 9))));
    // The next checkpoint's votes arrive before the first certificate is ordered.
    backup.handle_message(Time(500_000), from(2, vote(2, checkpoint(2, 9))));
    backup.handle_message(Time(500_000), from(3, vote(3, checkpoint(2, 9))));
    let votes = [2, 3].map(|by| Signed::sign(checkpoint(1, 9), ReplicaId(by), &signing_key(by)));
    let certified = Batch {
        requests: Vec::new(),
        nondet: zz_protocol::messages::NonDet {
            timestamp_ms: super::tests::WALL_CLOCK_AT_ZERO_MS + 900,
            seed: 0,
        },
        stability: vec![StabilityCertificate {
            checkpoint: checkpoint(1, 9),
            votes: votes.to_vec(),
        }],
    };
    backup.handle_message(Time(900_000), from(0, pre_prepare(0, 2, &certified)));
    complete(&mut backup, 2, &certified, &[2, 3]);
    assert_eq!(
        backup.agreed_stable(AppId(0)),
        Some((Seq(1), Digest([9; 32])))
    );
    drain(&mut backup);
    backup.handle_timeout(Time(1_500_000));
    assert!(
        !view_changes(&drain(&mut backup)),
        "the timer restarted at 0.9 s"
    );
    backup.handle_timeout(Time(2_000_000));
    assert!(
        view_changes(&drain(&mut backup)),
        "checkpoint 2 waited a whole timeout"
    );
}

/// A backup relays the votes of a certificate it could form to the primary, which may
/// not have them (Byzantine replicas may have sent theirs to the backups only).
#[test]
fn a_backup_relays_the_votes_of_a_formable_certificate_to_the_primary() {
    let mut backup = backup_with_app_ordered();
    backup.handle_message(Time(2), from(2, vote(2, checkpoint(1, 9))));
    backup.handle_message(Time(2), from(3, vote(3, checkpoint(1, 9))));
    backup.handle_timeout(Time(200_000));
    let relayed: Vec<ReplicaId> = (drain(&mut backup).iter())
        .filter_map(|output| match output {
            Output::Send {
                to: ReplicaId(0),
                message: Message::StableVote(vote),
            } => Some(vote.signer),
            _ => None,
        })
        .collect();
    assert_eq!(relayed, vec![ReplicaId(2), ReplicaId(3)]);
}
