use super::*;
use zz_state_fetch::{ObjectStore, StateParams};

fn store() -> ObjectStore {
    ObjectStore::new(StateParams::new(3).unwrap())
}

/// Executes `op` in its own request and applies its writes, as a replica does.
fn run(store: &mut ObjectStore, op: Op) -> Outcome {
    let mut state = StateAccess::new(store);
    let outcome = execute_op(&mut state, &op).unwrap();
    let writes = state.into_writes();
    store.apply(writes).unwrap();
    outcome
}

fn put(key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn get(key: &[u8]) -> Op {
    Op::Get { key: key.to_vec() }
}

fn cas(key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Op {
    Op::CompareAndSwap {
        key: key.to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        new: new.map(<[u8]>::to_vec),
    }
}

fn scan_op(start: &[u8], end: &[u8], limit: u32) -> Op {
    Op::Scan {
        start: start.to_vec(),
        end: end.to_vec(),
        limit,
    }
}

fn value(bytes: &[u8]) -> Option<Vec<u8>> {
    Some(bytes.to_vec())
}

#[test]
fn get_put_delete() {
    let mut s = store();
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(None));
    assert_eq!(run(&mut s, put(b"k", b"1")), Outcome::Previous(None));
    assert_eq!(run(&mut s, put(b"k", b"2")), Outcome::Previous(value(b"1")));
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(value(b"2")));
    let delete = Op::Delete { key: b"k".to_vec() };
    assert_eq!(run(&mut s, delete.clone()), Outcome::Previous(value(b"2")));
    assert_eq!(run(&mut s, delete), Outcome::Previous(None));
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(None));
    // Empty keys and values are ordinary.
    assert_eq!(run(&mut s, put(b"", b"")), Outcome::Previous(None));
    assert_eq!(run(&mut s, get(b"")), Outcome::Value(value(b"")));
}

#[test]
fn compare_and_swap_succeeds_only_on_a_match() {
    let mut s = store();
    // Absent, expected absent: creates.
    assert_eq!(run(&mut s, cas(b"k", None, Some(b"1"))), Outcome::Swapped);
    // Present, expected absent: fails and reports the value.
    assert_eq!(
        run(&mut s, cas(b"k", None, Some(b"9"))),
        Outcome::Mismatch {
            current: value(b"1")
        }
    );
    // Wrong expected value: fails, nothing written.
    assert_eq!(
        run(&mut s, cas(b"k", Some(b"0"), None)),
        Outcome::Mismatch {
            current: value(b"1")
        }
    );
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(value(b"1")));
    // Match: swaps.
    assert_eq!(
        run(&mut s, cas(b"k", Some(b"1"), Some(b"2"))),
        Outcome::Swapped
    );
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(value(b"2")));
    // Match with new = None: deletes.
    assert_eq!(run(&mut s, cas(b"k", Some(b"2"), None)), Outcome::Swapped);
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(None));
    // Expected present on an absent key: fails.
    assert_eq!(
        run(&mut s, cas(b"k", Some(b"2"), Some(b"3"))),
        Outcome::Mismatch { current: None }
    );
    // Absent and stays absent: succeeds and writes nothing.
    let mut state = StateAccess::new(&s);
    let outcome = execute_op(&mut state, &cas(b"k", None, None)).unwrap();
    assert_eq!(outcome, Outcome::Swapped);
    assert!(state.into_writes().is_empty());
}

fn objects(outcome: Outcome) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    match outcome {
        Outcome::Objects { objects, resume } => {
            (objects.into_iter().map(|(key, _)| key).collect(), resume)
        }
        other => panic!("not a scan answer: {other:?}"),
    }
}

fn keys(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|key| key.to_vec()).collect()
}

#[test]
fn scan_bounds_and_limits() {
    let mut s = store();
    for key in [&b"a"[..], b"b", b"ba", b"c", b"d"] {
        run(&mut s, put(key, b"v"));
    }
    // Start included, end excluded.
    assert_eq!(
        objects(run(&mut s, scan_op(b"b", b"c", 10))),
        (keys(&[b"b", b"ba"]), None)
    );
    // Empty end: unbounded.
    assert_eq!(
        objects(run(&mut s, scan_op(b"c", b"", 10))),
        (keys(&[b"c", b"d"]), None)
    );
    assert_eq!(objects(run(&mut s, scan_op(b"", b"", 10))).0.len(), 5);
    // Inverted or empty ranges: nothing.
    assert_eq!(
        objects(run(&mut s, scan_op(b"c", b"b", 10))),
        (vec![], None)
    );
    assert_eq!(
        objects(run(&mut s, scan_op(b"c", b"c", 10))),
        (vec![], None)
    );
    // A limit cuts the answer and says where to resume.
    assert_eq!(
        objects(run(&mut s, scan_op(b"", b"", 2))),
        (keys(&[b"a", b"b"]), Some(b"b\0".to_vec()))
    );
    assert_eq!(
        objects(run(&mut s, scan_op(b"b\0", b"", 2))),
        (keys(&[b"ba", b"c"]), Some(b"c\0".to_vec()))
    );
    // A cut answer offers a resume key even when nothing follows (a conservative "may be
    // more"), but never one at or past the end bound.
    assert_eq!(
        objects(run(&mut s, scan_op(b"a", b"b", 1))),
        (keys(&[b"a"]), Some(b"a\0".to_vec()))
    );
    assert_eq!(
        objects(run(&mut s, scan_op(b"a", b"a\0", 1))),
        (keys(&[b"a"]), None)
    );
    assert_eq!(objects(run(&mut s, scan_op(b"", b"", 0))), (vec![], None));
}

#[test]
fn scan_limit_is_capped() {
    let mut s = store();
    let count = SCAN_COUNT_MAX + 5;
    let writes = (0..count)
        .map(|i| {
            let mut key = zz_execution::app::APP_KEY_PREFIX.to_vec();
            key.extend_from_slice(format!("{i:06}").as_bytes());
            (key, Some(vec![1]))
        })
        .collect();
    s.apply(writes).unwrap();
    let (found, resume) = objects(run(&mut s, scan_op(b"", b"", u32::MAX)));
    assert_eq!(found.len(), SCAN_COUNT_MAX);
    assert_eq!(
        resume,
        Some(format!("{:06}\0", SCAN_COUNT_MAX - 1).into_bytes())
    );
}

#[test]
fn scan_answer_is_bounded_in_bytes() {
    let mut s = store();
    let big = vec![7u8; SCAN_REPLY_BYTES_MAX / 2];
    for key in [&b"a"[..], b"b", b"c"] {
        run(&mut s, put(key, &big));
    }
    // a + b would be just over the byte bound with their keys.
    assert_eq!(
        objects(run(&mut s, scan_op(b"", b"", 10))),
        (keys(&[b"a"]), Some(b"a\0".to_vec()))
    );
}

#[test]
fn a_request_reads_its_own_writes() {
    let mut s = store();
    run(&mut s, put(b"old", b"0"));
    let mut state = StateAccess::new(&s);
    let mut step = |op| execute_op(&mut state, &op).unwrap();
    assert_eq!(step(put(b"k", b"1")), Outcome::Previous(None));
    assert_eq!(step(get(b"k")), Outcome::Value(value(b"1")));
    assert_eq!(step(cas(b"k", Some(b"1"), Some(b"2"))), Outcome::Swapped);
    assert_eq!(
        step(Op::Delete {
            key: b"old".to_vec()
        }),
        Outcome::Previous(value(b"0"))
    );
    assert_eq!(objects(step(scan_op(b"", b"", 10))), (keys(&[b"k"]), None));
    assert_eq!(state.into_writes().len(), 2);
    // Nothing reached the store before the writes were applied.
    assert_eq!(run(&mut s, get(b"k")), Outcome::Value(None));
}

#[test]
fn codec_round_trips_and_rejects_malformed_bytes() {
    let op = cas(b"k", None, Some(b"v"));
    assert_eq!(decode_op(&encode_op(&op)).unwrap(), op);
    let mut trailing = encode_op(&op);
    trailing.push(0);
    assert!(matches!(
        decode_op(&trailing),
        Err(DecodeError::TrailingBytes { trailing: 1, .. })
    ));
    let store = store();
    for bad in [&[][..], &[0xff], &trailing] {
        let mut state = StateAccess::new(&store);
        let context = ExecContext {
            app: zz_protocol::AppId(0),
            client: zz_protocol::ClientId(0),
            timestamp_ms: 0,
            seed: 0,
        };
        let reply = Kv.execute(&context, &mut state, bad).unwrap();
        assert_eq!(
            decode_result(&reply).unwrap(),
            Outcome::Error(KvError::BadOperation {
                op_size: bad.len() as u64
            })
        );
        assert!(state.into_writes().is_empty());
    }
}

/// A preloaded data set is what kv reads back: every key, with its derived value.
#[test]
fn preloaded_objects_read_back_through_the_app() {
    let mut store = zz_state_fetch::ObjectStore::new(zz_state_fetch::StateParams::default());
    preload(&mut store, 10_000, 1_000);
    assert_eq!(preload_count(10_000, 1_000), 10);
    let access = zz_execution::StateAccess::new(&store);
    for index in 0..10 {
        let value = access.get(&preload_key(index)).unwrap();
        assert_eq!(value, Some(preload_value(index, 1_000)));
    }
    assert_eq!(access.get(&preload_key(10)).unwrap(), None);
}
