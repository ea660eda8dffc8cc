//! Property: whatever the writes between checkpoints, every checkpoint a durable copy
//! keeps since the stable one is rebuilt at restore with its root and its objects.

use super::durable_tests::Copy;
use super::*;
use proptest::prelude::*;

/// One write: a key among a few (so keys are overwritten and deleted again), and a value
/// or a delete.
fn write() -> impl Strategy<Value = (u8, Option<Vec<u8>>)> {
    (
        0u8..40,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    )
}

proptest! {
    #[test]
    fn every_checkpoint_since_the_stable_one_is_rebuilt_exactly(
        rounds in proptest::collection::vec(proptest::collection::vec(write(), 0..12), 2..6),
        stable_index in 0usize..5,
    ) {
        let params = StateParams::new(3).unwrap();
        let mut store = ObjectStore::new(params);
        let mut copy = Copy::default();
        let mut seqs = Vec::new();
        // Kept here: the store keeps only a few unstable snapshots.
        let mut originals: BTreeMap<Seq, Snapshot> = BTreeMap::new();
        for (round, writes) in rounds.iter().enumerate() {
            for (key, value) in writes {
                let key = vec![*key];
                match value {
                    Some(value) => drop(store.put(key, value.clone()).unwrap()),
                    None => drop(store.delete(&key).unwrap()),
                }
            }
            let seq = Seq(8 * (round as u64 + 1));
            store.checkpoint(seq);
            let snapshot = store.snapshot(seq).unwrap().clone();
            let base = seqs.last().map(|base| &originals[base]);
            copy.write(&snapshot, base);
            originals.insert(seq, snapshot);
            seqs.push(seq);
        }
        let stable = seqs[stable_index.min(seqs.len() - 1)];
        let restored = copy.restore_from_stable(params, Some(stable)).unwrap();
        prop_assert_eq!(restored.older_refused, None);
        let expected: Vec<Seq> = seqs.iter().copied().filter(|&seq| seq >= stable).collect();
        prop_assert_eq!(restored.store.snapshot_seqs().collect::<Vec<_>>(), expected.clone());
        for seq in expected {
            let rebuilt = restored.store.snapshot(seq).unwrap();
            let original = &originals[&seq];
            prop_assert_eq!(rebuilt.root(), original.root());
            for index in 0..params.bucket_count() as u32 {
                let proof = rebuilt.bucket_with_proof(BucketIndex(index)).unwrap();
                prop_assert!(proof.verify(&original.root(), params).is_ok());
                let wanted = original.bucket_with_proof(BucketIndex(index)).unwrap();
                prop_assert_eq!(proof.entries, wanted.entries);
            }
        }
    }
}
