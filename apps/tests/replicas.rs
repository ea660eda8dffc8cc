//! The apps as execution replicas see them: determinism across replicas (equal replies,
//! equal checkpoint roots), lazy state fetch (a woken replica's store answers
//! `NotFetched`, the app propagates it and buffers nothing; after installing the bucket
//! the request gives the reply the active replica gave), and malformed operations.

mod common;

use proptest::prelude::*;
use zz_apps::{APP_NAMES, app_by_name, bank, kv, null};
use zz_execution::{App, StateAccess};
use zz_protocol::Seq;
use zz_state_fetch::{NotFetched, ObjectStore};

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(vec![&b"a"[..], b"b", b"ba", b"c", b"", b"zz"])
        .prop_map(<[u8]>::to_vec)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..8)
}

fn kv_op() -> impl Strategy<Value = kv::Op> {
    prop_oneof![
        key().prop_map(|key| kv::Op::Get { key }),
        (key(), value()).prop_map(|(key, value)| kv::Op::Put { key, value }),
        key().prop_map(|key| kv::Op::Delete { key }),
        (
            key(),
            proptest::option::of(value()),
            proptest::option::of(value())
        )
            .prop_map(|(key, expected, new)| kv::Op::CompareAndSwap { key, expected, new }),
        (key(), key(), 0..5u32).prop_map(|(start, end, limit)| kv::Op::Scan { start, end, limit }),
    ]
}

fn bank_op() -> impl Strategy<Value = bank::Op> {
    let account = || proptest::sample::select(vec!["x", "y", "z"]).prop_map(str::to_owned);
    prop_oneof![
        account().prop_map(|account| bank::Op::Open { account }),
        (account(), 0..100u64).prop_map(|(account, amount)| bank::Op::Deposit { account, amount }),
        (account(), account(), 0..100u64).prop_map(|(from, to, amount)| bank::Op::Transfer {
            from,
            to,
            amount
        }),
        Just(bank::Op::Audit),
    ]
}

/// An app's request stream: well-formed operations, with some arbitrary bytes mixed in.
fn requests(op: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<Vec<u8>>> {
    let request = prop_oneof![6 => op, 1 => proptest::collection::vec(any::<u8>(), 0..12)];
    proptest::collection::vec(request, 1..40)
}

/// Runs `requests` on a fresh store, checkpointing every 5 requests; returns the replies
/// and the checkpoint roots.
fn replica_run(app: &dyn App, requests: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<[u8; 32]>) {
    let mut store = ObjectStore::new(common::params());
    let mut replies = Vec::new();
    let mut roots = Vec::new();
    for (index, op) in requests.iter().enumerate() {
        replies.push(common::execute(app, &mut store, index as u64, op));
        if index % 5 == 4 || index + 1 == requests.len() {
            roots.push(store.checkpoint(Seq(index as u64 + 1)).0);
        }
    }
    (replies, roots)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn kv_replicas_agree(requests in requests(kv_op().prop_map(|op| kv::encode_op(&op)))) {
        let first = replica_run(&kv::Kv, &requests);
        prop_assert_eq!(&first, &replica_run(&kv::Kv, &requests));
        for reply in &first.0 {
            prop_assert!(kv::decode_result(reply).is_ok());
        }
    }

    #[test]
    fn bank_replicas_agree(requests in requests(bank_op().prop_map(|op| bank::encode_op(&op)))) {
        let first = replica_run(&bank::Bank, &requests);
        prop_assert_eq!(&first, &replica_run(&bank::Bank, &requests));
        for reply in &first.0 {
            prop_assert!(bank::decode_result(reply).is_ok());
        }
    }

    /// Whatever the bytes, every app answers with a reply its clients can decode.
    #[test]
    fn arbitrary_bytes_never_panic(op in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut kv_store = ObjectStore::new(common::params());
        prop_assert!(kv::decode_result(&common::execute(&kv::Kv, &mut kv_store, 0, &op)).is_ok());
        let mut bank_store = ObjectStore::new(common::params());
        let reply = common::execute(&bank::Bank, &mut bank_store, 0, &op);
        prop_assert!(bank::decode_result(&reply).is_ok());
        let mut null_store = ObjectStore::new(common::params());
        let reply = common::execute(&null::Null, &mut null_store, 0, &op);
        prop_assert_eq!(null::decode_result(&reply), Ok(null::Outcome));
    }
}

#[test]
fn malformed_operations_get_error_outcomes_from_every_app() {
    let malformed: [&[u8]; 3] = [&[0xff, 0xff], &[0x80], &[4, 1]];
    for bytes in malformed {
        let mut store = ObjectStore::new(common::params());
        let reply = common::execute(&kv::Kv, &mut store, 0, bytes);
        assert_eq!(
            kv::decode_result(&reply).unwrap(),
            kv::Outcome::Error(kv::KvError::BadOperation {
                op_size: bytes.len() as u64
            })
        );
        let reply = common::execute(&bank::Bank, &mut store, 0, bytes);
        assert_eq!(
            bank::decode_result(&reply).unwrap(),
            bank::Outcome::Error(bank::BankError::BadOperation {
                op_size: bytes.len() as u64
            })
        );
        // Nothing was written.
        assert_eq!(store.dirty_count(), 0);
    }
    for &name in APP_NAMES {
        let app = app_by_name(name).unwrap();
        let mut store = ObjectStore::new(common::params());
        let reply = common::execute(app.as_ref(), &mut store, 0, &[0xff; 9]);
        assert!(
            reply.is_empty() == (name == null::NAME),
            "{name}: {reply:?}"
        );
    }
}

/// A populated store (the active replica) checkpointed at seq 1, and a store pinned to
/// that checkpoint's root (a woken standby, every bucket missing).
fn active_and_woken(app: &dyn App, setup: &[Vec<u8>]) -> (ObjectStore, ObjectStore) {
    let mut active = ObjectStore::new(common::params());
    for op in setup {
        common::execute(app, &mut active, 0, op);
    }
    let root = active.checkpoint(Seq(1));
    let woken = ObjectStore::pinned(common::params(), Seq(1), root);
    (active, woken)
}

fn bank_setup() -> Vec<Vec<u8>> {
    let mut ops = Vec::new();
    for account in ["x", "y", "z", "w"] {
        ops.push(bank::Op::Open {
            account: account.into(),
        });
        ops.push(bank::Op::Deposit {
            account: account.into(),
            amount: 50,
        });
    }
    ops.iter().map(bank::encode_op).collect()
}

fn kv_setup() -> Vec<Vec<u8>> {
    (0..20u8)
        .map(|i| {
            kv::encode_op(&kv::Op::Put {
                key: vec![b'k', i],
                value: vec![i; 3],
            })
        })
        .collect()
}

/// What the woken replica is asked to execute: reads and writes of single objects first
/// (they need one or two buckets), then scans (they need every bucket).
fn bank_requests() -> Vec<Vec<u8>> {
    let ops = [
        bank::Op::Balance {
            account: "x".into(),
        },
        bank::Op::Deposit {
            account: "y".into(),
            amount: 5,
        },
        bank::Op::Transfer {
            from: "z".into(),
            to: "w".into(),
            amount: 20,
        },
        bank::Op::Open {
            account: "v".into(),
        },
        bank::Op::Audit,
    ];
    ops.iter().map(bank::encode_op).collect()
}

fn kv_requests() -> Vec<Vec<u8>> {
    let ops = [
        kv::Op::Get {
            key: b"k\x03".to_vec(),
        },
        kv::Op::Put {
            key: b"k\x04".to_vec(),
            value: b"new".to_vec(),
        },
        kv::Op::Delete {
            key: b"k\x05".to_vec(),
        },
        kv::Op::CompareAndSwap {
            key: b"k\x06".to_vec(),
            expected: Some(vec![6; 3]),
            new: None,
        },
        kv::Op::Scan {
            start: b"k".to_vec(),
            end: Vec::new(),
            limit: 100,
        },
    ];
    ops.iter().map(kv::encode_op).collect()
}

/// One app's part in the lazy-fetch tests.
struct Case {
    app: &'static dyn App,
    setup: Vec<Vec<u8>>,
    requests: Vec<Vec<u8>>,
}

fn cases() -> [Case; 2] {
    [
        Case {
            app: &kv::Kv,
            setup: kv_setup(),
            requests: kv_requests(),
        },
        Case {
            app: &bank::Bank,
            setup: bank_setup(),
            requests: bank_requests(),
        },
    ]
}

#[test]
fn a_pinned_store_makes_every_operation_answer_not_fetched_and_write_nothing() {
    for Case {
        app,
        setup,
        requests,
    } in cases()
    {
        let (_active, woken) = active_and_woken(app, &setup);
        let missing_count = woken.missing_count();
        for op in &requests {
            let mut state = StateAccess::new(&woken);
            let answer = app.execute(&common::context(0), &mut state, op);
            assert!(
                matches!(answer, Err(NotFetched { .. })),
                "{}: {answer:?}",
                app.name()
            );
            assert!(
                state.into_writes().is_empty(),
                "{}: wrote after NotFetched",
                app.name()
            );
        }
        assert_eq!(woken.missing_count(), missing_count);
        assert_eq!(woken.dirty_count(), 0);
    }
}

#[test]
fn a_woken_replica_fetches_lazily_and_agrees_with_the_active_one() {
    for Case {
        app,
        setup,
        requests,
    } in cases()
    {
        let (mut active, mut woken) = active_and_woken(app, &setup);
        let snapshot = active.snapshot(Seq(1)).unwrap().clone();
        let bucket_count = woken.params().bucket_count();
        for (index, op) in requests.iter().enumerate() {
            let expected = common::execute(app, &mut active, index as u64, op);
            // Each retry installs one more bucket, so this ends within bucket_count tries.
            let mut reply = None;
            for _ in 0..=bucket_count {
                let mut state = StateAccess::new(&woken);
                match app.execute(&common::context(index as u64), &mut state, op) {
                    Ok(bytes) => {
                        let writes = state.into_writes();
                        woken.apply(writes).expect("every bucket written was read");
                        reply = Some(bytes);
                        break;
                    }
                    Err(NotFetched { bucket }) => {
                        assert!(state.into_writes().is_empty());
                        woken
                            .install_bucket(snapshot.bucket_with_proof(bucket).unwrap())
                            .unwrap();
                    }
                }
            }
            assert_eq!(
                reply.as_ref(),
                Some(&expected),
                "{}: request {index}",
                app.name()
            );
        }
        // The scans fetched everything; both replicas reach the same root.
        assert!(woken.is_complete());
        assert_eq!(woken.checkpoint(Seq(2)), active.checkpoint(Seq(2)));
    }
}
