//! The driver's state transfer between execution replicas: a pinned replica fetches a
//! bucket from another over the bus, and a forged answer is refused and counted.

use super::*;
use crate::app::{APP_KEY_PREFIX, App, ExecContext, StateAccess};
use crate::core::ExecutionConfig;
use crate::fetcher::{BACKGROUND_FETCHES_MAX, FETCH_RETRY_MICROS};
use crate::join::JOIN_RETRY_MICROS;
use zz_protocol::bus::{Inbox, MemoryNetwork};
use zz_protocol::crypto::Authenticator;
use zz_protocol::derived_keys::DerivedKeys;
use zz_protocol::messages::{AppOrder, AuthenticatedRequest, FetchBucket, NonDet, Request};
use zz_protocol::{AppId, ClientId, ExecutionId, ProtocolParams, Seq};
use zz_state_fetch::{NotFetched, ObjectStore, StateParams};

/// Stores each operation under itself.
pub(super) struct Echo;

impl App for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn execute(
        &self,
        _context: &ExecContext,
        state: &mut StateAccess<'_>,
        op: &[u8],
    ) -> Result<Vec<u8>, NotFetched> {
        state.put(op, op.to_vec());
        Ok(op.to_vec())
    }
}

/// Where the app's object `name` lives in the store.
fn stored_key(name: &[u8]) -> Vec<u8> {
    [APP_KEY_PREFIX, name].concat()
}

const A: ExecutionId = ExecutionId(0);
const B: ExecutionId = ExecutionId(1);

pub(super) fn config() -> ExecutionConfig {
    ExecutionConfig {
        app: AppId(0),
        f: 1,
        agreement_replicas: 4,
        checkpoint_interval: 2,
        window: 16,
        bytes_per_sender: crate::core::ORDER_BYTES_PER_SENDER,
    }
}

pub(super) fn state_params() -> StateParams {
    StateParams::new(3).unwrap()
}

pub(super) fn order(seq: u64) -> AppOrder {
    AppOrder {
        app: AppId(0),
        seq: Seq(seq),
        agreement_seq: Seq(seq),
        nondet: NonDet::default(),
        requests: vec![AuthenticatedRequest {
            request: Request {
                app: AppId(0),
                client: ClientId(seq),
                timestamp: 1,
                op: format!("object-{seq}").into_bytes(),
            },
            auth: Authenticator(vec![]),
            signature: zz_protocol::crypto::Signature([0; 32], [0; 32]),
        }],
    }
}

struct Pair {
    keys: DerivedKeys,
    a: ExecutionDriver<zz_protocol::bus::MemoryBus>,
    b: ExecutionDriver<zz_protocol::bus::MemoryBus>,
    inbox_a: Inbox,
    inbox_b: Inbox,
}

/// A has executed sequence numbers 1..=2 (a checkpoint); B is pinned to A's root there.
fn pair() -> Pair {
    let params = ProtocolParams::default();
    let keys = DerivedKeys::new(7, &params).with_executions(2);
    let network = MemoryNetwork::new();
    let (bus_a, inbox_a) = network.join(NodeId::Execution(A));
    let (bus_b, inbox_b) = network.join(NodeId::Execution(B));
    let replica_a = ExecutionReplica::new(
        config(),
        Box::new(Echo),
        ObjectStore::new(state_params()),
        Seq(0),
    );
    let mut a = ExecutionDriver::new(replica_a, keys.execution_endpoint(A), bus_a, 4);
    for seq in 1..=2 {
        for replica in 0..2 {
            let endpoint = keys.replica_endpoint(ReplicaId(replica));
            let frame = endpoint
                .seal(NodeId::Execution(A), &Message::AppOrder(order(seq)))
                .unwrap();
            a.handle_frame(Time(0), &frame);
        }
    }
    assert_eq!(a.replica().last_executed(), Seq(2));
    let (_, root) = a.replica().store().last_checkpoint().unwrap();
    let pinned = ObjectStore::pinned(state_params(), Seq(2), root);
    let replica_b = ExecutionReplica::new(config(), Box::new(Echo), pinned, Seq(2));
    let b = ExecutionDriver::new(replica_b, keys.execution_endpoint(B), bus_b, 4);
    Pair {
        keys,
        a,
        b,
        inbox_a,
        inbox_b,
    }
}

#[test]
fn a_pinned_replica_installs_a_bucket_fetched_from_another() {
    let mut pair = pair();
    let missing = pair.b.replica().store().missing_count();
    let bucket = state_params().bucket_of(&stored_key(b"object-1"));
    let fetch = FetchBucket {
        app: AppId(0),
        seq: Seq(2),
        bucket: bucket.0,
    };
    let frame = pair
        .b
        .endpoint
        .seal(NodeId::Execution(A), &Message::FetchBucket(fetch))
        .unwrap();
    pair.a.handle_frame(Time(0), &frame);
    let answer = pair.inbox_b.try_recv().expect("A answered");
    pair.b.handle_frame(Time(0), &answer);
    assert_eq!(pair.b.replica().store().missing_count(), missing - 1);
    assert_eq!(
        pair.b
            .replica()
            .store()
            .get(&stored_key(b"object-1"))
            .unwrap(),
        Some(&b"object-1"[..])
    );
    assert!(pair.inbox_a.try_recv().is_err());
}

#[test]
fn a_forged_bucket_is_refused_and_counted() {
    let mut pair = pair();
    let missing = pair.b.replica().store().missing_count();
    let bucket = state_params().bucket_of(&stored_key(b"object-2"));
    let mut proof = pair
        .a
        .replica()
        .store()
        .snapshot(Seq(2))
        .unwrap()
        .bucket_with_proof(bucket)
        .unwrap();
    proof.entries[0].1 = b"forged".to_vec();
    let forged = BucketData {
        app: AppId(0),
        seq: Seq(2),
        bucket: bucket.0,
        proof: Some(postcard::to_stdvec(&proof).unwrap()),
    };
    let frame = pair
        .a
        .endpoint
        .seal(NodeId::Execution(B), &Message::BucketData(forged))
        .unwrap();
    pair.b.handle_frame(Time(0), &frame);
    assert_eq!(pair.b.replica().store().missing_count(), missing);
    assert_eq!(
        pair.b.counters().rejected.get(&RejectReason::BadBucket),
        Some(&1)
    );
    // An agreement replica may not send buckets at all.
    let rejected_before: u64 = pair.b.counters().rejected.values().sum();
    let frame = pair
        .keys
        .replica_endpoint(ReplicaId(0))
        .seal(
            NodeId::Execution(B),
            &Message::BucketData(BucketData {
                app: AppId(0),
                seq: Seq(2),
                bucket: bucket.0,
                proof: None,
            }),
        )
        .unwrap();
    pair.b.handle_frame(Time(0), &frame);
    let rejected_after: u64 = pair.b.counters().rejected.values().sum();
    assert_eq!(rejected_after, rejected_before + 1);
    assert_eq!(pair.b.replica().store().missing_count(), missing);
}

/// A driver for execution replica `id` as a fresh standby starts (empty state at sequence
/// 0, B's keys), on `network`, that has just sent its joins.
fn fresh_joiner(
    keys: &DerivedKeys,
    network: &std::sync::Arc<MemoryNetwork>,
    id: ExecutionId,
) -> ExecutionDriver<zz_protocol::bus::MemoryBus> {
    let fresh = ExecutionReplica::new(
        config(),
        Box::new(Echo),
        ObjectStore::new(state_params()),
        Seq(0),
    );
    let (bus, _inbox) = network.join(NodeId::Execution(id));
    let mut driver = ExecutionDriver::new(fresh, keys.execution_endpoint(B), bus, 4);
    driver.join(Time(0));
    driver
}

/// Agreement replica `replica`'s answer to B's join: checkpoint `seq` with `root`.
fn stable_answer(keys: &DerivedKeys, replica: u32, seq: u64, root: Digest) -> Vec<u8> {
    let notice = ExecutionCheckpoint {
        app: AppId(0),
        seq: Seq(seq),
        root,
    };
    keys.replica_endpoint(ReplicaId(replica))
        .seal(NodeId::Execution(B), &Message::ExecutionStable(notice))
        .unwrap()
}

/// A woken replica restarts from the checkpoint f+1 agreement replicas name alike (never
/// from one replica's word), then parks on the buckets its next order touches.
#[test]
fn a_joining_replica_restarts_from_the_checkpoint_f_plus_1_replicas_name() {
    let mut pair = pair();
    let (_, root) = pair.a.replica().store().last_checkpoint().unwrap();
    // B starts as a fresh standby would: empty state at sequence 0.
    let network = MemoryNetwork::new();
    // What B asks A for arrives here, to be handed to the real A.
    let (_, mut asks_to_a) = network.join(NodeId::Execution(A));
    let mut b = fresh_joiner(&pair.keys, &network, B).with_peers(vec![A]);
    assert!(b.is_joining());
    let answer =
        |replica: u32, seq: u64, root: Digest| stable_answer(&pair.keys, replica, seq, root);
    // A lying replica, and one honest answer: not f+1 alike yet.
    b.handle_frame(Time(0), &answer(3, 9, Digest([7; 32])));
    b.handle_frame(Time(0), &answer(0, 2, root));
    assert!(b.is_joining());
    assert_eq!(b.replica().last_executed(), Seq(0));
    b.handle_frame(Time(0), &answer(1, 2, root));
    assert!(!b.is_joining());
    assert_eq!(b.replica().last_executed(), Seq(2));
    assert_eq!(b.replica().store().pin(), Some((Seq(2), root)));
    for replica in 0..2 {
        let frame = pair
            .keys
            .replica_endpoint(ReplicaId(replica))
            .seal(NodeId::Execution(B), &Message::AppOrder(order(3)))
            .unwrap();
        b.handle_frame(Time(0), &frame);
    }
    assert_eq!(
        b.replica().last_executed(),
        Seq(2),
        "parked on a missing bucket"
    );
    // B asked A for the bucket it waits on (and a few in the background): A answers,
    // B verifies, and execution resumes.
    let mut asked = 0;
    while let Ok(ask) = asks_to_a.try_recv() {
        asked += 1;
        pair.a.handle_frame(Time(0), &ask);
    }
    assert!(asked > 0, "B asked A for buckets");
    while let Ok(bucket) = pair.inbox_b.try_recv() {
        b.handle_frame(Time(0), &bucket);
    }
    assert_eq!(b.replica().last_executed(), Seq(3));
}

/// A joining replica waits for 2f+1 answers before it chooses: the first f+1 alike may come
/// from replicas that restarted or jumped and name an older checkpoint, whose following
/// orders the others no longer keep.
#[test]
fn a_joining_replica_waits_for_2f_plus_1_answers_before_choosing() {
    let pair = pair();
    let (_, root) = pair.a.replica().store().last_checkpoint().unwrap();
    let network = MemoryNetwork::new();
    let mut b = fresh_joiner(&pair.keys, &network, B);
    let answer =
        |replica: u32, seq: u64, root: Digest| stable_answer(&pair.keys, replica, seq, root);
    b.handle_frame(Time(0), &answer(0, 0, Digest::default()));
    b.handle_frame(Time(0), &answer(1, 2, root));
    assert!(b.is_joining(), "no f+1 alike yet");
    b.handle_frame(Time(0), &answer(2, 2, root));
    assert!(!b.is_joining());
    assert_eq!(b.replica().store().pin(), Some((Seq(2), root)));
    // Another replica: the first two answers alike do not decide.
    let mut c = fresh_joiner(&pair.keys, &network, ExecutionId(2));
    c.handle_frame(Time(0), &answer(0, 0, Digest::default()));
    c.handle_frame(Time(0), &answer(1, 0, Digest::default()));
    assert!(c.is_joining(), "f+1 alike, but only 2 of the 2f+1 answers");
    c.handle_frame(Time(0), &answer(2, 2, root));
    assert!(!c.is_joining());
    assert_eq!(c.replica().last_executed(), Seq(0));
}

/// With fewer than 2f+1 answers, a joining replica takes the latest f+1 name alike once a
/// retry interval has passed (some agreement replicas may never answer).
#[test]
fn a_joining_replica_with_few_answers_joins_after_a_retry_interval() {
    let pair = pair();
    let network = MemoryNetwork::new();
    let mut b = fresh_joiner(&pair.keys, &network, B);
    for replica in 0..2 {
        b.handle_frame(
            Time(0),
            &stable_answer(&pair.keys, replica, 0, Digest::default()),
        );
    }
    b.handle_timeout(Time(1_000));
    assert!(b.is_joining());
    b.handle_timeout(Time(JOIN_RETRY_MICROS));
    assert!(!b.is_joining());
    assert_eq!(b.replica().last_executed(), Seq(0));
}

/// The background fetch brings the whole state; asks are spread over the peers, and an
/// ask lost on a silent peer goes to another one after the retry interval.
#[test]
fn the_background_fetch_completes_the_state_from_the_peer_that_answers() {
    let pair = pair();
    let Pair {
        mut a,
        b,
        mut inbox_a,
        mut inbox_b,
        ..
    } = pair;
    // Peer 5 is not on the network: asks to it are lost.
    let mut b = b.with_peers(vec![ExecutionId(5), A]);
    let buckets = b.replica().store().missing_count();
    assert_eq!(buckets, state_params().bucket_count());
    b.handle_timeout(Time(0));
    assert_eq!(b.fetches_in_flight(), BACKGROUND_FETCHES_MAX.min(buckets));
    let mut asks_to_a = Vec::new();
    while let Ok(ask) = inbox_a.try_recv() {
        asks_to_a.push(ask);
    }
    let first_to_a = asks_to_a.len();
    assert!(
        first_to_a > 0 && first_to_a < b.fetches_in_flight(),
        "first asks spread over both peers: {first_to_a} to A"
    );
    b.handle_timeout(Time(FETCH_RETRY_MICROS - 1));
    assert!(
        inbox_a.try_recv().is_err(),
        "not retried before the interval"
    );
    // Rounds: A answers what reaches it; asks to peer 5 are lost and go to A next time.
    let mut now = FETCH_RETRY_MICROS;
    for _ in 0..4 * buckets {
        for ask in asks_to_a.drain(..) {
            a.handle_frame(Time(now), &ask);
        }
        while let Ok(answer) = inbox_b.try_recv() {
            b.handle_frame(Time(now), &answer);
        }
        if b.replica().store().is_complete() {
            break;
        }
        now += FETCH_RETRY_MICROS;
        b.handle_timeout(Time(now));
        while let Ok(ask) = inbox_a.try_recv() {
            asks_to_a.push(ask);
        }
    }
    assert!(b.replica().store().is_complete());
    assert_eq!(b.fetches_in_flight(), 0);
    assert_eq!(
        b.replica().store().get(&stored_key(b"object-2")).unwrap(),
        Some(&b"object-2"[..])
    );
}
