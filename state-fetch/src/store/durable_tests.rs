//! Deltas between snapshots and restores from a durable copy, against a model of the copy
//! (leaves and objects keyed by bucket, as a disk keeps them, and an undo per older
//! checkpoint kept).

use super::*;

fn params(bits: u8) -> StateParams {
    StateParams::new(bits).unwrap()
}

/// A durable copy as a disk would keep it.
#[derive(Clone, Default)]
pub(super) struct Copy {
    checkpoint: Option<(Seq, Digest)>,
    leaves: BTreeMap<u32, Digest>,
    objects: BTreeMap<(u32, Vec<u8>), Vec<u8>>,
    /// How each older checkpoint stood, against the next one written.
    undo: BTreeMap<Seq, Undo>,
}

/// What one delta wrote.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct Written {
    puts: usize,
    deletes: usize,
    leaves: usize,
}

impl Copy {
    pub(super) fn write(&mut self, snapshot: &Snapshot, base: Option<&Snapshot>) -> Written {
        let mut written = Written::default();
        let mut undo = base.map(|base| Undo {
            seq: base.seq(),
            root: base.root(),
            buckets: BTreeMap::new(),
        });
        if base.is_none() {
            self.undo.clear();
        }
        for delta in snapshot.delta_since(base).unwrap() {
            let index = delta.index.0;
            self.leaves.insert(index, delta.leaf);
            written.leaves += 1;
            if let Some(undo) = undo.as_mut() {
                let objects = match &delta.objects {
                    ObjectDelta::Edit(edits) => Some(
                        (edits.iter())
                            .map(|edit| (edit.key.to_vec(), edit.before.map(<[u8]>::to_vec)))
                            .collect(),
                    ),
                    ObjectDelta::Replace(_) | ObjectDelta::NotFetched => None,
                };
                let bucket = BucketUndo {
                    leaf: delta.leaf_before,
                    objects,
                };
                undo.buckets.insert(delta.index, bucket);
            }
            match delta.objects {
                ObjectDelta::Replace(objects) => {
                    self.objects.retain(|(bucket, _), _| *bucket != index);
                    for (key, value) in objects {
                        self.objects.insert((index, key.to_vec()), value.to_vec());
                        written.puts += 1;
                    }
                }
                ObjectDelta::Edit(edits) => {
                    for ObjectEdit { key, after, .. } in edits {
                        match after {
                            Some(value) => {
                                self.objects.insert((index, key.to_vec()), value.to_vec());
                                written.puts += 1;
                            }
                            None => {
                                self.objects.remove(&(index, key.to_vec()));
                                written.deletes += 1;
                            }
                        }
                    }
                }
                ObjectDelta::NotFetched => {}
            }
        }
        if let Some(undo) = undo {
            self.undo.insert(undo.seq, undo);
        }
        self.checkpoint = Some((snapshot.seq(), snapshot.root()));
        written
    }

    fn restore(&self, params: StateParams) -> Result<Restored, RootMismatch> {
        self.restore_from_stable(params, None)
    }

    /// Restore, rebuilding the older checkpoints kept down to `stable`.
    pub(super) fn restore_from_stable(
        &self,
        params: StateParams,
        stable: Option<Seq>,
    ) -> Result<Restored, RootMismatch> {
        let (seq, root) = self.checkpoint.unwrap();
        let mut restorer = Restorer::new(params, seq, root);
        for undo in self.undo.values() {
            restorer.older(undo.clone());
        }
        if let Some(stable) = stable {
            restorer.stable(stable);
        }
        for (&index, &leaf) in &self.leaves {
            restorer.leaf(BucketIndex(index), leaf);
        }
        let mut buckets: BTreeMap<u32, BucketObjects> = BTreeMap::new();
        for ((index, key), value) in &self.objects {
            buckets
                .entry(*index)
                .or_default()
                .push((key.clone(), value.clone()));
        }
        for (index, objects) in buckets {
            restorer.bucket(BucketIndex(index), objects);
        }
        restorer.finish()
    }

    /// The bucket and key of the first stored object.
    fn first_object(&self) -> (u32, Vec<u8>) {
        self.objects.keys().next().cloned().unwrap()
    }
}

fn filled(params: StateParams, count: u32) -> ObjectStore {
    let mut store = ObjectStore::new(params);
    for i in 0..count {
        store
            .put(format!("key{i}").into_bytes(), vec![i as u8; 100])
            .unwrap();
    }
    store
}

#[test]
fn a_first_delta_writes_every_leaf_and_object_and_a_restore_gives_the_same_state() {
    let params = params(4);
    let mut store = filled(params, 200);
    let root = store.checkpoint(Seq(8));
    let mut copy = Copy::default();
    let written = copy.write(store.snapshot(Seq(8)).unwrap(), None);
    assert_eq!(written.leaves, params.bucket_count());
    assert_eq!(written.puts, 200);

    let restored = copy.restore(params).unwrap();
    assert!(restored.refused.is_empty());
    let mut back = restored.store;
    assert!(back.is_complete());
    assert_eq!(back.last_checkpoint(), Some((Seq(8), root)));
    assert_eq!(back.latest_stable(), Some(Seq(8)));
    assert_eq!(back.get(b"key7").unwrap(), Some(&[7u8; 100][..]));
    // It serves the checkpoint it was restored from, and goes on checkpointing.
    let proof = back
        .snapshot(Seq(8))
        .unwrap()
        .bucket_with_proof(BucketIndex(3));
    proof.unwrap().verify(&root, params).unwrap();
    back.put(b"key7".to_vec(), b"new".to_vec()).unwrap();
    store.put(b"key7".to_vec(), b"new".to_vec()).unwrap();
    assert_eq!(back.checkpoint(Seq(16)), store.checkpoint(Seq(16)));
}

#[test]
fn a_delta_writes_only_the_objects_changed_since_its_base() {
    let params = params(4);
    let mut store = filled(params, 200);
    store.checkpoint(Seq(8));
    let mut copy = Copy::default();
    copy.write(store.snapshot(Seq(8)).unwrap(), None);

    store.put(b"key1".to_vec(), b"changed".to_vec()).unwrap();
    store.put(b"fresh".to_vec(), b"added".to_vec()).unwrap();
    store.delete(b"key2").unwrap();
    // A put of the same value changes nothing.
    store.put(b"key3".to_vec(), vec![3; 100]).unwrap();
    store.checkpoint(Seq(16));
    let base = store.snapshot(Seq(8)).unwrap();
    let written = copy.write(store.snapshot(Seq(16)).unwrap(), Some(base));
    assert_eq!((written.puts, written.deletes), (2, 1));
    let touched: BTreeSet<BucketIndex> = [&b"key1"[..], b"fresh", b"key2"]
        .iter()
        .map(|key| params.bucket_of(key))
        .collect();
    assert_eq!(written.leaves, touched.len());

    store.checkpoint(Seq(24));
    let nothing = (store.snapshot(Seq(24)).unwrap()).delta_since(store.snapshot(Seq(16)));
    assert_eq!(
        nothing,
        Ok(Vec::new()),
        "an unchanged checkpoint writes nothing"
    );

    let restored = copy.restore(params).unwrap();
    assert!(restored.refused.is_empty());
    assert_eq!(restored.store.get(b"key2").unwrap(), None);
    assert_eq!(restored.store.get(b"fresh").unwrap(), Some(&b"added"[..]));
    assert_eq!(
        restored.store.last_checkpoint(),
        store.snapshot(Seq(16)).map(|s| (s.seq(), s.root()))
    );
}

/// A damaged object value, a damaged leaf and a lost object each cost their bucket alone:
/// it is refused, fetched from a replica that has it, and verified against the root.
#[test]
fn a_damaged_value_leaf_or_lost_object_refuses_its_bucket_which_is_then_fetched() {
    let params = params(4);
    let mut store = filled(params, 200);
    let root = store.checkpoint(Seq(8));
    let snapshot = store.snapshot(Seq(8)).unwrap();
    let mut good = Copy::default();
    good.write(snapshot, None);
    let (bucket, key) = good.first_object();

    let mut damaged_value = good.clone();
    damaged_value
        .objects
        .insert((bucket, key.clone()), b"bit rot".to_vec());
    let mut damaged_leaf = good.clone();
    damaged_leaf.leaves.insert(bucket, Digest([9; 32]));
    let mut lost_object = good.clone();
    lost_object.objects.remove(&(bucket, key.clone()));
    let mut lost_leaf = good.clone();
    lost_leaf.leaves.remove(&bucket);

    for (name, copy) in [
        ("value", damaged_value),
        ("leaf", damaged_leaf),
        ("object", lost_object),
        ("leaf record", lost_leaf),
    ] {
        let Restored {
            mut store, refused, ..
        } = copy.restore(params).unwrap();
        assert_eq!(refused, vec![BucketIndex(bucket)], "{name}");
        assert_eq!(store.missing_count(), 1, "{name}");
        assert_eq!(store.pin(), Some((Seq(8), root)));
        assert!(store.get(&key).is_err(), "{name}: the bucket is missing");
        let restored_snapshot = store.snapshot(Seq(8)).unwrap().clone();
        let proof = snapshot.bucket_with_proof(BucketIndex(bucket)).unwrap();
        store.install_bucket(proof).unwrap();
        assert!(store.is_complete());
        assert_eq!(
            store.get(&key).unwrap(),
            snapshot.get(&key).unwrap(),
            "{name}"
        );
        // The next write of the copy rewrites the fetched bucket in full.
        store.checkpoint(Seq(16));
        let delta = (store.snapshot(Seq(16)).unwrap())
            .delta_since(Some(&restored_snapshot))
            .unwrap();
        assert_eq!(delta.len(), 1, "{name}");
        assert!(
            matches!(delta[0].objects, ObjectDelta::Replace(_)),
            "{name}"
        );
    }
}

#[test]
fn a_copy_whose_root_nothing_reproduces_is_refused_whole() {
    let params = params(4);
    let mut store = filled(params, 50);
    store.checkpoint(Seq(8));
    let mut copy = Copy::default();
    copy.write(store.snapshot(Seq(8)).unwrap(), None);
    copy.checkpoint = Some((Seq(8), Digest([1; 32])));
    let error = copy.restore(params).unwrap_err();
    assert_eq!(error.root, Digest([1; 32]));
    assert!(error.from_stored_leaves.is_some() && error.from_objects.is_some());
}

#[test]
fn a_pinned_store_still_fetching_has_leaves_it_cannot_write() {
    let params = params(4);
    let mut store = filled(params, 50);
    let root = store.checkpoint(Seq(8));
    let mut pinned = ObjectStore::pinned(params, Seq(8), root);
    let proof = store
        .snapshot(Seq(8))
        .unwrap()
        .bucket_with_proof(BucketIndex(0));
    pinned.install_bucket(proof.unwrap()).unwrap();
    pinned.checkpoint(Seq(16));
    let snapshot = pinned.snapshot(Seq(16)).unwrap();
    let unknown = snapshot.unknown_leaf().expect("most leaves are unknown");
    assert_eq!(
        snapshot.delta_since(None),
        Err(LeafUnknown { bucket: unknown })
    );
    assert_eq!(store.snapshot(Seq(8)).unwrap().unknown_leaf(), None);
}

/// Checkpoints 8, 16 and 24 of one state written in turn (8 whole, then deltas), with
/// puts, a new key and a delete between them; the store keeps their snapshots.
fn three_checkpoints(params: StateParams) -> (ObjectStore, Copy) {
    let mut store = filled(params, 200);
    store.checkpoint(Seq(8));
    let mut copy = Copy::default();
    copy.write(store.snapshot(Seq(8)).unwrap(), None);
    store.put(b"key1".to_vec(), b"at 16".to_vec()).unwrap();
    store.put(b"fresh".to_vec(), b"at 16".to_vec()).unwrap();
    store.delete(b"key2").unwrap();
    store.checkpoint(Seq(16));
    copy.write(
        store.snapshot(Seq(16)).unwrap(),
        Some(store.snapshot(Seq(8)).unwrap()),
    );
    store.put(b"key1".to_vec(), b"at 24".to_vec()).unwrap();
    store.delete(b"fresh").unwrap();
    store.put(b"key2".to_vec(), b"back at 24".to_vec()).unwrap();
    store.put(b"key9".to_vec(), b"at 24".to_vec()).unwrap();
    store.checkpoint(Seq(24));
    copy.write(
        store.snapshot(Seq(24)).unwrap(),
        Some(store.snapshot(Seq(16)).unwrap()),
    );
    (store, copy)
}

/// Every bucket of `rebuilt` is served, with a proof against `original`'s root, and
/// holds what `original` holds.
fn serves_as(rebuilt: &Snapshot, original: &Snapshot, params: StateParams) {
    assert_eq!(
        rebuilt.root(),
        original.root(),
        "checkpoint {}",
        rebuilt.seq()
    );
    for index in 0..params.bucket_count() as u32 {
        let proof = rebuilt.bucket_with_proof(BucketIndex(index)).unwrap();
        proof.verify(&original.root(), params).unwrap();
        let expected = original.bucket_with_proof(BucketIndex(index)).unwrap();
        assert_eq!(proof.entries, expected.entries, "bucket {index}");
    }
}

#[test]
fn checkpoints_after_the_stable_one_are_rebuilt_from_the_latest_and_reproduce_their_roots() {
    let params = params(4);
    let (store, copy) = three_checkpoints(params);
    assert_eq!(
        copy.undo.keys().copied().collect::<Vec<_>>(),
        [Seq(8), Seq(16)]
    );

    let restored = copy.restore_from_stable(params, Some(Seq(8))).unwrap();
    assert_eq!(restored.older, [Seq(8), Seq(16)]);
    assert_eq!(restored.older_refused, None);
    let back = restored.store;
    assert_eq!(back.latest_stable(), Some(Seq(8)));
    assert_eq!(
        back.snapshot_seqs().collect::<Vec<_>>(),
        [Seq(8), Seq(16), Seq(24)]
    );
    for seq in [Seq(8), Seq(16), Seq(24)] {
        serves_as(
            back.snapshot(seq).unwrap(),
            store.snapshot(seq).unwrap(),
            params,
        );
    }
    assert_eq!(back.snapshot(Seq(8)).unwrap().get(b"fresh").unwrap(), None);
    let at_16 = back.snapshot(Seq(16)).unwrap();
    assert_eq!(at_16.get(b"key2").unwrap(), None);
    assert_eq!(at_16.get(b"fresh").unwrap(), Some(&b"at 16"[..]));

    // Known stable at 16: checkpoint 8 is not rebuilt.
    let restored = copy.restore_from_stable(params, Some(Seq(16))).unwrap();
    assert_eq!(restored.older, [Seq(16)]);
    // A restart that knows of no stable checkpoint rebuilds every one kept.
    let restored = copy.restore(params).unwrap();
    assert_eq!(restored.older, [Seq(8), Seq(16)]);
    assert_eq!(restored.store.latest_stable(), Some(Seq(24)));
}

#[test]
fn a_damaged_undo_value_leaves_its_bucket_out_and_a_damaged_undo_leaf_refuses_the_checkpoint() {
    let params = params(4);
    let (store, copy) = three_checkpoints(params);
    let key1 = params.bucket_of(b"key1");

    let mut damaged_value = copy.clone();
    let undo = damaged_value.undo.get_mut(&Seq(16)).unwrap();
    let objects = undo
        .buckets
        .get_mut(&key1)
        .unwrap()
        .objects
        .as_mut()
        .unwrap();
    objects[0].1 = Some(b"bit rot".to_vec());
    let restored = damaged_value
        .restore_from_stable(params, Some(Seq(8)))
        .unwrap();
    assert_eq!(restored.older, [Seq(8), Seq(16)], "the leaves still hold");
    let at_16 = restored.store.snapshot(Seq(16)).unwrap();
    assert!(at_16.bucket_with_proof(key1).is_err(), "not served");
    let other = BucketIndex((key1.0 + 1) % params.bucket_count() as u32);
    let proof = at_16.bucket_with_proof(other).unwrap();
    proof
        .verify(&store.snapshot(Seq(16)).unwrap().root(), params)
        .unwrap();

    let mut damaged_leaf = copy.clone();
    let undo = damaged_leaf.undo.get_mut(&Seq(16)).unwrap();
    undo.buckets.get_mut(&key1).unwrap().leaf = Some(Digest([7; 32]));
    let restored = damaged_leaf
        .restore_from_stable(params, Some(Seq(8)))
        .unwrap();
    assert!(
        restored.older.is_empty(),
        "16 fails, so 8 cannot be rebuilt"
    );
    assert!(
        matches!(
            restored.older_refused,
            Some(RewindError::RootMismatch { seq: Seq(16), .. })
        ),
        "{:?}",
        restored.older_refused
    );
    assert_eq!(
        restored.store.snapshot_seqs().collect::<Vec<_>>(),
        [Seq(24)]
    );
}

#[test]
fn a_bucket_fetched_after_a_restore_fills_older_snapshots_only_where_it_was_the_same() {
    let params = params(4);
    let (store, mut copy) = three_checkpoints(params);
    // Damage two buckets of the latest copy: one written since 16, one not.
    let key1 = params.bucket_of(b"key1");
    let unchanged = (0..params.bucket_count() as u32)
        .map(BucketIndex)
        .find(|bucket| !copy.undo[&Seq(16)].buckets.contains_key(bucket))
        .unwrap();
    for bucket in [key1, unchanged] {
        let key = (copy.objects.keys())
            .find(|(index, _)| *index == bucket.0)
            .cloned()
            .unwrap();
        copy.objects.insert(key, b"bit rot".to_vec());
    }
    let restored = copy.restore_from_stable(params, Some(Seq(16))).unwrap();
    assert_eq!(restored.refused, [key1.min(unchanged), key1.max(unchanged)]);
    let mut back = restored.store;
    let latest = store.snapshot(Seq(24)).unwrap();
    for bucket in [key1, unchanged] {
        back.install_bucket(latest.bucket_with_proof(bucket).unwrap())
            .unwrap();
    }
    let at_16 = back.snapshot(Seq(16)).unwrap();
    // Its leaf at 16 is that of 24: filled, and served right.
    let proof = at_16.bucket_with_proof(unchanged).unwrap();
    proof
        .verify(&store.snapshot(Seq(16)).unwrap().root(), params)
        .unwrap();
    // Written since 16: 24's copy is not 16's, so it stays out.
    assert!(at_16.bucket_with_proof(key1).is_err());

    // Once 24 is stable, 16 is kept as the stable checkpoint before it, as any is.
    back.mark_stable(Seq(24)).unwrap();
    assert_eq!(back.snapshot_seqs().collect::<Vec<_>>(), [Seq(16), Seq(24)]);
}
