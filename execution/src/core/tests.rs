//! Tests of the execution core with a small counting app.

use super::*;
use zz_protocol::crypto::Authenticator;
use zz_protocol::messages::{AuthenticatedRequest, NonDet, Request};
use zz_state_fetch::StateParams;

/// Each operation names a counter; executing it adds one and returns the new count.
struct Counter;

impl App for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn execute(
        &self,
        _context: &ExecContext,
        state: &mut StateAccess<'_>,
        op: &[u8],
    ) -> Result<Vec<u8>, NotFetched> {
        let count = state
            .get(op)?
            .map_or(0, |value| u64::from_le_bytes(value.try_into().unwrap()));
        state.put(op, (count + 1).to_le_bytes().to_vec());
        Ok((count + 1).to_le_bytes().to_vec())
    }
}

fn config() -> ExecutionConfig {
    ExecutionConfig {
        app: AppId(0),
        f: 1,
        agreement_replicas: 4,
        checkpoint_interval: 2,
        window: 16,
        bytes_per_sender: crate::core::ORDER_BYTES_PER_SENDER,
    }
}

fn params() -> StateParams {
    StateParams::new(4).unwrap()
}

fn replica() -> ExecutionReplica {
    ExecutionReplica::new(
        config(),
        Box::new(Counter),
        ObjectStore::new(params()),
        Seq(0),
    )
}

fn request(client: u64, timestamp: u64, op: &[u8]) -> AuthenticatedRequest {
    AuthenticatedRequest {
        request: Request {
            app: AppId(0),
            client: ClientId(client),
            timestamp,
            op: op.to_vec(),
        },
        auth: Authenticator(vec![]),
        signature: zz_protocol::crypto::Signature([0; 32], [0; 32]),
    }
}

fn order(seq: u64, requests: Vec<AuthenticatedRequest>) -> AppOrder {
    AppOrder {
        app: AppId(0),
        seq: Seq(seq),
        agreement_seq: Seq(seq),
        nondet: NonDet {
            timestamp_ms: 1_000,
            seed: 5,
        },
        requests,
    }
}

fn outputs(replica: &mut ExecutionReplica) -> Vec<ExecOutput> {
    std::iter::from_fn(|| replica.poll_output()).collect()
}

fn replies(outputs: &[ExecOutput]) -> Vec<(u64, u64, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            ExecOutput::Reply(reply) => {
                Some((reply.client.0, reply.timestamp, reply.result.clone()))
            }
            _ => None,
        })
        .collect()
}

/// f+1 matching orders from distinct agreement replicas, and not fewer: f Byzantine
/// agreement replicas alone can make nothing execute.
#[test]
fn executes_only_on_f_plus_one_matching_orders() {
    let mut replica = replica();
    let honest = order(1, vec![request(1, 1, b"x")]);
    let forged = order(1, vec![request(1, 1, b"y")]);
    replica.handle_order(ReplicaId(3), forged);
    replica.handle_order(ReplicaId(0), honest.clone());
    replica.handle_order(ReplicaId(0), honest.clone());
    assert!(outputs(&mut replica).is_empty());
    replica.handle_order(ReplicaId(1), honest);
    let out = outputs(&mut replica);
    assert_eq!(replies(&out), vec![(1, 1, 1u64.to_le_bytes().to_vec())]);
    assert!(matches!(out.last(), Some(ExecOutput::Executed(e)) if e.seq == Seq(1)));
}

/// Sequence numbers execute strictly in order; a request seen again is answered from the
/// reply cache and never executed twice (PBFT section 4.1's exactly-once rule).
#[test]
fn executes_in_order_and_each_request_once() {
    let mut replica = replica();
    let second = order(2, vec![request(1, 1, b"x"), request(2, 1, b"x")]);
    let first = order(1, vec![request(1, 1, b"x")]);
    for from in [0, 1] {
        replica.handle_order(ReplicaId(from), second.clone());
    }
    assert!(outputs(&mut replica).is_empty(), "seq 2 waits for seq 1");
    for from in [0, 1] {
        replica.handle_order(ReplicaId(from), first.clone());
    }
    let out = replies(&outputs(&mut replica));
    let one = 1u64.to_le_bytes().to_vec();
    let two = 2u64.to_le_bytes().to_vec();
    // Client 1's request runs once (in seq 1) and is answered again from the cache in
    // seq 2; client 2's request is the counter's second increment.
    assert_eq!(out, vec![(1, 1, one.clone()), (1, 1, one), (2, 1, two)]);
    assert_eq!(replica.counters().requests_executed, 2);
    assert_eq!(replica.counters().replies_resent, 1);
}

fn run_to(replica: &mut ExecutionReplica, orders: &[AppOrder]) -> Vec<ExecOutput> {
    for order in orders {
        for from in [0, 2] {
            replica.handle_order(ReplicaId(from), order.clone());
        }
    }
    outputs(replica)
}

fn roots(outputs: &[ExecOutput]) -> Vec<(u64, Digest)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            ExecOutput::Checkpoint(checkpoint) => Some((checkpoint.seq.0, checkpoint.root)),
            _ => None,
        })
        .collect()
}

fn workload() -> Vec<AppOrder> {
    (1..=6)
        .map(|seq| {
            let requests = (0..3)
                .map(|client| request(client, seq, format!("k{}", (seq + client) % 4).as_bytes()))
                .collect();
            order(seq, requests)
        })
        .collect()
}

/// Every K sequence numbers a replica reports its state root; replicas given the same
/// orders report the same roots.
#[test]
fn replicas_given_the_same_orders_report_the_same_roots() {
    let (mut a, mut b) = (replica(), replica());
    let roots_a = roots(&run_to(&mut a, &workload()));
    let roots_b = roots(&run_to(&mut b, &workload()));
    let seqs: Vec<u64> = roots_a.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![2, 4, 6]);
    assert_eq!(roots_a, roots_b);
}

/// A full replica run through `orders`: its root and snapshot at checkpoint 2, and what it
/// produced after it (what a replica pinned at 2 must produce too).
fn checkpointed_at_two(orders: &[AppOrder]) -> (Digest, zz_state_fetch::Snapshot, Vec<ExecOutput>) {
    let mut full = replica();
    let before = run_to(&mut full, &orders[..2]);
    let (_, root) = *roots(&before).last().unwrap();
    let source = full.store().snapshot(Seq(2)).unwrap().clone();
    let expected = run_to(&mut full, &orders[2..]);
    (root, source, expected)
}

/// A replica whose store is pinned to a checkpoint parks on a missing bucket, resumes
/// after the verified install, and ends with the same replies and roots as one that had
/// the whole state.
#[test]
fn a_pinned_replica_parks_on_missing_buckets_and_catches_up_identically() {
    let orders = workload();
    let (root, source, expected) = checkpointed_at_two(&orders);

    let pinned_store = ObjectStore::pinned(params(), Seq(2), root);
    let mut pinned = ExecutionReplica::new(config(), Box::new(Counter), pinned_store, Seq(2));
    for order in &orders[2..] {
        for from in [0, 2] {
            pinned.handle_order(ReplicaId(from), order.clone());
        }
    }
    let mut produced = Vec::new();
    let mut installs = 0;
    loop {
        let out = outputs(&mut pinned);
        let needed = out.iter().find_map(|output| match output {
            ExecOutput::NeedBucket(bucket) => Some(*bucket),
            _ => None,
        });
        produced.extend(
            out.into_iter()
                .filter(|output| !matches!(output, ExecOutput::NeedBucket(_))),
        );
        match needed {
            Some(bucket) => {
                installs += 1;
                // A late copy of the parked batch is stale: it runs from the copy it
                // started with, and a kept copy would never be freed.
                let parked = orders[pinned.last_executed().0 as usize].clone();
                let stale = pinned.counters().dropped.get(&DropReason::Stale).copied();
                pinned.handle_order(ReplicaId(3), parked);
                let now_stale = pinned.counters().dropped[&DropReason::Stale];
                assert_eq!(now_stale, stale.unwrap_or(0) + 1, "a late copy is stale");
                let proof = source.bucket_with_proof(bucket).unwrap();
                pinned.install_bucket(proof).unwrap();
            }
            None => break,
        }
    }
    assert!(installs > 0, "the pinned replica had to fetch");
    assert_eq!(produced, expected);
    assert_eq!(pinned.last_executed(), Seq(6));
}

/// Eager fetch, the baseline: a pinned replica executes nothing and asks for no bucket
/// until every bucket is installed; then it produces exactly what the full replica did.
#[test]
fn an_eager_replica_executes_only_once_the_whole_state_is_installed() {
    let orders = workload();
    let (root, source, expected) = checkpointed_at_two(&orders);

    let pinned_store = ObjectStore::pinned(params(), Seq(2), root);
    let mut eager = ExecutionReplica::new(config(), Box::new(Counter), pinned_store, Seq(2))
        .fetching_whole_state_first(true);
    assert!(run_to(&mut eager, &orders[2..]).is_empty());
    let missing: Vec<_> = eager.store().missing_buckets().collect();
    let (last, rest) = missing.split_last().expect("a pinned store misses buckets");
    for bucket in rest {
        eager
            .install_bucket(source.bucket_with_proof(*bucket).unwrap())
            .unwrap();
        assert!(
            outputs(&mut eager).is_empty(),
            "nothing before the state is whole"
        );
    }
    eager
        .install_bucket(source.bucket_with_proof(*last).unwrap())
        .unwrap();
    assert_eq!(outputs(&mut eager), expected);
    assert_eq!(eager.last_executed(), Seq(6));
}

/// A checkpoint counts as stable at an execution replica only on f+1 matching notices from
/// distinct agreement replicas, and only if the replica computed that same root.
#[test]
fn stable_notices_need_f_plus_one_agreement_replicas_and_the_same_root() {
    let mut replica = replica();
    let out = run_to(&mut replica, &workload());
    let (seq, root) = roots(&out)[1];
    let notice = |root| ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root,
    };
    assert_eq!(replica.handle_stable(ReplicaId(0), notice(root)), None);
    assert_eq!(replica.handle_stable(ReplicaId(0), notice(root)), None);
    assert_eq!(
        replica.store().latest_stable(),
        None,
        "one replica is not enough"
    );
    assert_eq!(replica.handle_stable(ReplicaId(2), notice(root)), None);
    assert_eq!(replica.store().latest_stable(), Some(Seq(seq)));

    // Agreement on a root this replica did not compute: it diverged, and keeps its state.
    let mut other = self::replica();
    run_to(&mut other, &workload());
    let wrong = Digest([7; 32]);
    other.handle_stable(ReplicaId(1), notice(wrong));
    other.handle_stable(ReplicaId(3), notice(wrong));
    assert_eq!(other.store().latest_stable(), None);
    assert_eq!(
        other
            .counters()
            .dropped
            .get(&DropReason::DivergedFromStable),
        Some(&1)
    );
}

/// A replica that joined from an older checkpoint and has not executed to one f+1
/// agreement replicas call stable is told to start over from it (the orders it still
/// needs may be gone); f notices, or a replica past that checkpoint, change nothing.
#[test]
fn f_plus_one_stable_notices_beyond_a_newcomer_make_it_start_over_from_them() {
    let mut ahead = replica();
    let (seq, root) = roots(&run_to(&mut ahead, &workload()))[1];
    let notice = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root,
    };
    let mut newcomer = replica();
    assert_eq!(
        newcomer.handle_stable(ReplicaId(1), notice),
        None,
        "f of them"
    );
    assert_eq!(
        newcomer.handle_stable(ReplicaId(3), notice),
        Some((Seq(seq), root))
    );
    newcomer.restart_from(Seq(seq), root);
    assert_eq!(newcomer.last_executed(), Seq(seq));
    // Already past it without the snapshot: nothing to do.
    let mut past = replica();
    run_to(&mut past, &workload());
    past.restart_from(Seq(seq + 1), Digest([5; 32]));
    past.handle_stable(ReplicaId(1), notice);
    assert_eq!(past.handle_stable(ReplicaId(3), notice), None);
}

/// A replica far behind (its state store lost, say) sees only orders beyond its window:
/// it waits for orders, so its driver asks the agreement replicas where to resume (the
/// orders after what it executed, or the stable checkpoint to start over from), until
/// execution progresses or it starts over.
#[test]
fn an_order_beyond_the_window_makes_a_replica_ask_where_to_resume() {
    let beyond = config().window + 1;
    let mut behind = replica();
    assert!(!behind.waits_for_orders());
    behind.handle_order(ReplicaId(0), order(beyond, vec![request(1, 1, b"x")]));
    assert!(behind.waits_for_orders(), "asks where to resume");
    for from in [ReplicaId(0), ReplicaId(1)] {
        behind.handle_order(from, order(1, vec![request(1, 1, b"x")]));
    }
    assert_eq!(behind.last_executed(), Seq(1));
    assert!(!behind.waits_for_orders(), "it progresses");

    behind.handle_order(ReplicaId(0), order(beyond + 1, vec![request(1, 2, b"y")]));
    assert!(behind.waits_for_orders());
    behind.restart_from(Seq(0), Digest::default());
    assert!(!behind.waits_for_orders(), "started over");
}

/// One agreement replica cannot park more than its share of bytes in the order window:
/// past it, its orders are dropped and counted (and fetched again later), while the other
/// replicas' copies still run, and what executed frees the share.
#[test]
fn one_agreement_replica_holds_a_bounded_share_of_the_order_window() {
    let mut config = config();
    config.bytes_per_sender = 4 * 1024;
    let mut replica = ExecutionReplica::new(
        config,
        Box::new(Counter),
        ObjectStore::new(params()),
        Seq(0),
    );
    let big = vec![7u8; 1024];
    let flooder = ReplicaId(3);
    for seq in 2..=9 {
        replica.handle_order(flooder, order(seq, vec![request(1, seq, &big)]));
    }
    let refused = replica.counters().dropped[&DropReason::SenderBytesFull];
    assert!(refused >= 4, "{refused} of 8 refused");
    assert!(replica.waits_for_orders(), "asks again for what it refused");
    // The next order to run is taken whatever the share, or a sender whose share filled
    // while its copy of it was lost could never deliver it.
    for from in [flooder, ReplicaId(0)] {
        replica.handle_order(from, order(1, vec![request(1, 1, b"x")]));
    }
    assert_eq!(
        replica.counters().dropped[&DropReason::SenderBytesFull],
        refused
    );
    assert_eq!(replica.last_executed(), Seq(1), "the next order runs");
    for seq in 2..=3 {
        for from in [ReplicaId(0), ReplicaId(1)] {
            replica.handle_order(from, order(seq, vec![request(1, seq, &big)]));
        }
    }
    assert_eq!(replica.last_executed(), Seq(3));
    let before = replica.counters().dropped[&DropReason::SenderBytesFull];
    replica.handle_order(flooder, order(10, vec![request(1, 10, &big)]));
    assert_eq!(
        replica.counters().dropped[&DropReason::SenderBytesFull],
        before,
        "executing orders 2 and 3 freed the flooder's share"
    );
}

/// Agreement replicas repeat the stable checkpoint every status interval: the repeats,
/// and a lagging replica's older checkpoint, are no fault and count as nothing.
#[test]
fn repeated_stable_notices_change_nothing_and_count_as_nothing() {
    let mut replica = replica();
    let out = run_to(&mut replica, &workload());
    let (seq, root) = roots(&out)[1];
    let notice = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root,
    };
    replica.handle_stable(ReplicaId(1), notice);
    replica.handle_stable(ReplicaId(3), notice);
    assert_eq!(replica.store().latest_stable(), Some(Seq(seq)));
    let older = ExecutionCheckpoint {
        seq: Seq(roots(&out)[0].0),
        root: roots(&out)[0].1,
        ..notice
    };
    for from in 0..4 {
        assert_eq!(replica.handle_stable(ReplicaId(from), notice), None);
        assert_eq!(replica.handle_stable(ReplicaId(from), older), None);
    }
    assert_eq!(replica.store().latest_stable(), Some(Seq(seq)));
    assert!(
        replica.counters().dropped.is_empty(),
        "{:?}",
        replica.counters().dropped
    );
}
