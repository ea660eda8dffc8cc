use super::*;
use crate::{ProofError, root_of};

/// splitmix64: a seeded generator, so each test replays the same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn params(bits: u8) -> StateParams {
    StateParams::new(bits).unwrap()
}

fn model_root(params: StateParams, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Digest {
    root_of(
        params,
        model.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    )
}

fn store_with(params: StateParams, count: u32) -> ObjectStore {
    let mut store = ObjectStore::new(params);
    for i in 0..count {
        store
            .put(
                format!("key{i}").into_bytes(),
                format!("value{i}").into_bytes(),
            )
            .unwrap();
    }
    store
}

#[test]
fn incremental_root_equals_from_scratch_root_after_random_operations() {
    for seed in 0..4 {
        let params = params(4);
        let mut rng = Rng(seed);
        let mut store = ObjectStore::new(params);
        let mut model = BTreeMap::new();
        for step in 1..=600u64 {
            let key = format!("k{}", rng.below(80)).into_bytes();
            if rng.below(3) == 0 {
                assert_eq!(store.delete(&key).unwrap(), model.remove(&key));
            } else {
                let value = vec![rng.below(256) as u8; rng.below(40) as usize];
                assert_eq!(
                    store.put(key.clone(), value.clone()).unwrap(),
                    model.insert(key, value)
                );
            }
            if step % 50 == 0 {
                let root = store.checkpoint(Seq(step));
                assert_eq!(root, model_root(params, &model), "seed {seed} step {step}");
                assert_eq!(store.dirty_count(), 0);
            }
        }
    }
}

#[test]
fn deleting_every_object_gives_the_empty_root() {
    let params = params(3);
    let empty_root = ObjectStore::new(params).checkpoint(Seq(1));
    assert_eq!(empty_root, root_of(params, []));
    let mut store = store_with(params, 50);
    assert_ne!(store.checkpoint(Seq(1)), empty_root);
    for i in 0..50 {
        assert!(
            store
                .delete(format!("key{i}").as_bytes())
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(store.checkpoint(Seq(2)), empty_root);
}

#[test]
fn a_checkpoint_without_writes_keeps_the_root_and_absent_deletes_stay_clean() {
    let mut store = store_with(params(3), 10);
    let root = store.checkpoint(Seq(1));
    assert_eq!(store.delete(b"absent").unwrap(), None);
    assert_eq!(store.dirty_count(), 0);
    assert_eq!(store.checkpoint(Seq(2)), root);
}

#[test]
fn a_cow_snapshot_is_unchanged_by_later_writes() {
    let params = params(3);
    let mut store = store_with(params, 40);
    let root = store.checkpoint(Seq(10));
    let touched = params.bucket_of(b"key0");
    store.put(b"key0".to_vec(), b"changed".to_vec()).unwrap();
    store.delete(b"key1").unwrap();
    store.put(b"new".to_vec(), b"object".to_vec()).unwrap();
    let live_root = store.checkpoint(Seq(20));
    assert_ne!(live_root, root);

    let snapshot = store.snapshot(Seq(10)).unwrap();
    assert_eq!(snapshot.root(), root);
    assert_eq!(snapshot.get(b"key0").unwrap(), Some(&b"value0"[..]));
    assert_eq!(snapshot.get(b"key1").unwrap(), Some(&b"value1"[..]));
    assert_eq!(snapshot.get(b"new").unwrap(), None);
    assert_eq!(store.get(b"key0").unwrap(), Some(&b"changed"[..]));
    let mut objects = Vec::new();
    for index in 0..params.bucket_count() as u32 {
        let proof = snapshot.bucket_with_proof(BucketIndex(index)).unwrap();
        proof.verify(&root, params).unwrap();
        objects.extend(proof.entries);
    }
    assert_eq!(
        root_of(params, objects.iter().map(|(k, v)| (&k[..], &v[..]))),
        root
    );

    // Untouched buckets are shared, not copied; the written one was copied.
    let shared = |index: usize| {
        let live = store.buckets.get(index).as_ref().unwrap();
        Arc::ptr_eq(live, snapshot.buckets.get(index).as_ref().unwrap())
    };
    assert!(!shared(touched.index()));
    let untouched = (0..params.bucket_count())
        .find(|&i| {
            ![b"key0".as_slice(), b"key1", b"new"]
                .iter()
                .any(|k| params.bucket_of(k).index() == i)
        })
        .unwrap();
    assert!(shared(untouched));
}

#[test]
fn a_pinned_empty_store_answers_not_fetched_then_serves_after_install() {
    let params = params(3);
    let mut source = store_with(params, 30);
    let root = source.checkpoint(Seq(5));
    let mut store = ObjectStore::pinned(params, Seq(5), root);
    let bucket = params.bucket_of(b"key7");
    assert_eq!(store.get(b"key7"), Err(NotFetched { bucket }));
    assert_eq!(
        store.put(b"key7".to_vec(), vec![]),
        Err(NotFetched { bucket })
    );
    assert_eq!(store.missing_count(), 8);
    assert_eq!(
        store.scan(Bound::Unbounded, Bound::Unbounded, 10),
        Err(NotFetched {
            bucket: BucketIndex(0)
        })
    );

    let proof = source
        .snapshot(Seq(5))
        .unwrap()
        .bucket_with_proof(bucket)
        .unwrap();
    store.install_bucket(proof.clone()).unwrap();
    assert_eq!(store.get(b"key7").unwrap(), Some(&b"value7"[..]));
    assert_eq!(
        store.install_bucket(proof),
        Err(StateError::BucketPresent { bucket })
    );
    assert!(!store.missing_buckets().any(|b| b == bucket));

    for index in store.missing_buckets().collect::<Vec<_>>() {
        store
            .install_bucket(
                source
                    .snapshot(Seq(5))
                    .unwrap()
                    .bucket_with_proof(index)
                    .unwrap(),
            )
            .unwrap();
    }
    assert!(store.is_complete());
    assert_eq!(store.missing_buckets().count(), 0);
    assert_eq!(
        store.scan(Bound::Unbounded, Bound::Unbounded, 100).unwrap(),
        source
            .scan(Bound::Unbounded, Bound::Unbounded, 100)
            .unwrap()
    );
}

#[test]
fn a_pinned_store_checkpoints_and_serves_before_its_fetch_completes() {
    let params = params(3);
    let mut source = store_with(params, 30);
    let root = source.checkpoint(Seq(5));
    let mut store = ObjectStore::pinned(params, Seq(5), root);
    let installed = params.bucket_of(b"key3");
    store
        .install_bucket(
            source
                .snapshot(Seq(5))
                .unwrap()
                .bucket_with_proof(installed)
                .unwrap(),
        )
        .unwrap();
    for target in [&mut source, &mut store] {
        target.put(b"key3".to_vec(), b"rewritten".to_vec()).unwrap();
    }
    let next_root = source.checkpoint(Seq(6));
    assert_eq!(store.checkpoint(Seq(6)), next_root);
    let snapshot = store.snapshot(Seq(6)).unwrap();
    snapshot
        .bucket_with_proof(installed)
        .unwrap()
        .verify(&next_root, params)
        .unwrap();

    // A bucket installed later reaches the kept snapshot too, with its proof path.
    let other = BucketIndex((installed.0 + 1) % 8);
    assert!(matches!(
        store.snapshot(Seq(6)).unwrap().bucket_with_proof(other),
        Err(StateError::NotFetched(_))
    ));
    store
        .install_bucket(
            source
                .snapshot(Seq(5))
                .unwrap()
                .bucket_with_proof(other)
                .unwrap(),
        )
        .unwrap();
    let proof = store
        .snapshot(Seq(6))
        .unwrap()
        .bucket_with_proof(other)
        .unwrap();
    assert_eq!(
        proof,
        source
            .snapshot(Seq(6))
            .unwrap()
            .bucket_with_proof(other)
            .unwrap()
    );
}

#[test]
fn snapshots_kept_for_the_last_two_stable_checkpoints_and_a_bounded_number_of_unstable() {
    let mut store = store_with(params(2), 5);
    for seq in 1..=3 {
        store.checkpoint(Seq(seq));
    }
    store.mark_stable(Seq(1)).unwrap();
    store.mark_stable(Seq(2)).unwrap();
    store.mark_stable(Seq(2)).unwrap();
    assert_eq!(
        store.snapshot_seqs().collect::<Vec<_>>(),
        [Seq(1), Seq(2), Seq(3)]
    );
    store.mark_stable(Seq(3)).unwrap();
    assert_eq!(store.snapshot_seqs().collect::<Vec<_>>(), [Seq(2), Seq(3)]);
    assert_eq!(store.latest_stable(), Some(Seq(3)));
    assert_eq!(
        store.mark_stable(Seq(2)),
        Err(StateError::StaleStable {
            seq: Seq(2),
            latest_stable: Seq(3)
        })
    );
    assert_eq!(
        store.mark_stable(Seq(9)),
        Err(StateError::UnknownCheckpoint { seq: Seq(9) })
    );

    for seq in 4..10 {
        store.checkpoint(Seq(seq));
    }
    let expected: Vec<Seq> = [2, 3]
        .into_iter()
        .chain(10 - UNSTABLE_SNAPSHOT_COUNT_MAX as u64..10)
        .map(Seq)
        .collect();
    assert_eq!(store.snapshot_seqs().collect::<Vec<_>>(), expected);
    store.mark_stable(Seq(8)).unwrap();
    assert_eq!(
        store.snapshot_seqs().collect::<Vec<_>>(),
        [Seq(3), Seq(8), Seq(9)]
    );
}

#[test]
#[should_panic(expected = "not after")]
fn checkpoints_go_forward() {
    let mut store = ObjectStore::new(params(1));
    store.checkpoint(Seq(2));
    store.checkpoint(Seq(2));
}

#[test]
fn scan_returns_the_smallest_keys_in_range_across_buckets() {
    let store = store_with(params(4), 30);
    let all = store
        .scan(Bound::Unbounded, Bound::Unbounded, 1000)
        .unwrap();
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let some = store
        .scan(Bound::Included(b"key1"), Bound::Excluded(b"key2"), 5)
        .unwrap();
    let keys: Vec<&[u8]> = some.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [&b"key1"[..], b"key10", b"key11", b"key12", b"key13"]);
    assert!(
        store
            .scan(Bound::Included(b"z"), Bound::Included(b"a"), 5)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(Bound::Excluded(b"a"), Bound::Excluded(b"a"), 5)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan(Bound::Unbounded, Bound::Unbounded, 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn apply_writes_all_or_nothing() {
    let params = params(2);
    let mut source = store_with(params, 20);
    let root = source.checkpoint(Seq(1));
    let mut store = ObjectStore::pinned(params, Seq(1), root);
    let first = params.bucket_of(b"key0");
    store
        .install_bucket(
            source
                .snapshot(Seq(1))
                .unwrap()
                .bucket_with_proof(first)
                .unwrap(),
        )
        .unwrap();
    let elsewhere = (0..100)
        .map(|i| format!("x{i}").into_bytes())
        .find(|k| params.bucket_of(k) != first)
        .unwrap();
    let writes = vec![
        (b"key0".to_vec(), None),
        (elsewhere.clone(), Some(b"v".to_vec())),
    ];
    assert_eq!(
        store.apply(writes),
        Err(NotFetched {
            bucket: params.bucket_of(&elsewhere)
        })
    );
    assert_eq!(store.get(b"key0").unwrap(), Some(&b"value0"[..]));
    assert_eq!(store.dirty_count(), 0);
    store.apply(vec![(b"key0".to_vec(), None)]).unwrap();
    assert_eq!(store.get(b"key0").unwrap(), None);
}

#[test]
fn install_errors_change_nothing() {
    let params = params(2);
    let mut source = store_with(params, 10);
    let root = source.checkpoint(Seq(1));
    let good = source
        .snapshot(Seq(1))
        .unwrap()
        .bucket_with_proof(BucketIndex(1))
        .unwrap();
    assert_eq!(
        source.install_bucket(good.clone()),
        Err(StateError::NotPinned)
    );

    let mut store = ObjectStore::pinned(params, Seq(1), root);
    let mut bad = good.clone();
    bad.index = BucketIndex(4);
    assert!(matches!(
        store.install_bucket(bad),
        Err(StateError::BucketIndexOutOfRange { .. })
    ));
    let mut bad = good.clone();
    bad.siblings[0].0[0] ^= 1;
    assert!(matches!(
        store.install_bucket(bad),
        Err(StateError::BadProof(ProofError::RootMismatch { .. }))
    ));
    assert_eq!(store.missing_count(), 4);
    store.install_bucket(good).unwrap();
    assert_eq!(store.missing_count(), 3);
}

/// A leased snapshot outlives the stable checkpoints after it, so a woken replica can keep
/// fetching from it; once the lease ends it goes like any old snapshot.
#[test]
fn a_leased_snapshot_is_kept_until_the_lease_ends() {
    let mut store = ObjectStore::new(StateParams::new(3).unwrap());
    for seq in 1..=5u64 {
        store.put(format!("k{seq}").into_bytes(), vec![1]).unwrap();
        store.checkpoint(Seq(seq));
        if seq == 1 {
            store.mark_stable(Seq(1)).unwrap();
            store.lease_snapshots(std::collections::BTreeSet::from([Seq(1)]));
        } else {
            store.mark_stable(Seq(seq)).unwrap();
        }
    }
    assert!(store.snapshot(Seq(1)).is_some(), "leased");
    assert!(
        store.snapshot(Seq(2)).is_none(),
        "not leased, not among the latest stable"
    );
    store.lease_snapshots(std::collections::BTreeSet::new());
    assert!(store.snapshot(Seq(1)).is_none(), "the lease ended");
}
