//! Older checkpoints in the state store: every checkpoint written after the latest stable
//! one is rebuilt at restart and reproduces its root; the undo before a newer stable
//! checkpoint is dropped; damaged undo records cost what they held, never a wrong answer.

use super::disk::DiskStore;
use super::startup::open_durable;
use super::tests::{TempDir, filled, key, params};
use super::writer::DiskSink;
use super::{CheckpointSaved, CheckpointSink};
use zz_protocol::Seq;
use zz_state_fetch::{BucketIndex, ObjectStore, Snapshot};

/// Checkpoints 8, 16 and 24 written in turn, each a delta on the one before, 8 recorded
/// as stable with the last; the store keeps the snapshots, to compare with. Also the undo
/// records 8 got.
fn three_written(disk: &mut DiskStore) -> (ObjectStore, u64) {
    let mut store = filled(300);
    store.checkpoint(Seq(8));
    disk.write(store.snapshot(Seq(8)).unwrap(), None).unwrap();
    store.put(key(1), b"at 16".to_vec()).unwrap();
    store.delete(&key(2)).unwrap();
    store.put(b"fresh".to_vec(), b"at 16".to_vec()).unwrap();
    store.checkpoint(Seq(16));
    let base = store.snapshot(Seq(8)).cloned();
    let undo_of_8 = (disk.write(store.snapshot(Seq(16)).unwrap(), base.as_ref()))
        .unwrap()
        .undo_records_written;
    store.put(key(1), b"at 24".to_vec()).unwrap();
    store.put(key(2), b"back at 24".to_vec()).unwrap();
    store.delete(b"fresh").unwrap();
    store.checkpoint(Seq(24));
    let base = store.snapshot(Seq(16)).cloned();
    let stats = disk
        .write_chain(
            &[store.snapshot(Seq(24)).unwrap()],
            base.as_ref(),
            Some(Seq(8)),
        )
        .unwrap();
    let buckets: std::collections::BTreeSet<BucketIndex> = [key(1), key(2), b"fresh".to_vec()]
        .iter()
        .map(|key| params().bucket_of(key))
        .collect();
    let expected = 1 + buckets.len() as u64 + 3;
    assert_eq!(
        (undo_of_8, stats.undo_records_written),
        (expected, expected),
        "the base's root, and the leaf of each bucket changed and each object's value"
    );
    (store, undo_of_8)
}

/// Every bucket of `rebuilt` is served with a proof against `original`'s root, and holds
/// what `original` holds.
fn serves_as(rebuilt: &Snapshot, original: &Snapshot) {
    assert_eq!(
        rebuilt.root(),
        original.root(),
        "checkpoint {}",
        rebuilt.seq()
    );
    for index in 0..params().bucket_count() as u32 {
        let proof = rebuilt.bucket_with_proof(BucketIndex(index)).unwrap();
        proof.verify(&original.root(), params()).unwrap();
        let expected = original.bucket_with_proof(BucketIndex(index)).unwrap();
        assert_eq!(proof.entries, expected.entries, "bucket {index}");
    }
}

#[test]
fn a_reopened_store_rebuilds_every_checkpoint_since_the_stable_one_with_its_root() {
    let dir = TempDir::new("undo-rebuild");
    let mut disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (original, _) = three_written(&mut disk);
    assert_eq!(disk.stable(), Some(Seq(8)));
    drop(disk);

    let start = open_durable(&dir.store(), params(), true, 0).unwrap();
    let restored = start.restored.unwrap();
    assert_eq!(restored.seq, Seq(24));
    assert_eq!(restored.older, [Seq(8), Seq(16)]);
    assert_eq!(restored.older_refused, None);
    let store = &restored.store;
    assert_eq!(store.latest_stable(), Some(Seq(8)));
    for seq in [Seq(8), Seq(16), Seq(24)] {
        serves_as(
            store.snapshot(seq).unwrap(),
            original.snapshot(seq).unwrap(),
        );
    }
    let at_16 = store.snapshot(Seq(16)).unwrap();
    assert_eq!(at_16.get(&key(2)).unwrap(), None);
    assert_eq!(at_16.get(b"fresh").unwrap(), Some(&b"at 16"[..]));
    assert_eq!(store.get(&key(1)).unwrap(), Some(&b"at 24"[..]));
}

#[test]
fn a_newer_stable_checkpoint_drops_the_undo_before_it() {
    let dir = TempDir::new("undo-stable");
    let mut disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (_, undo_of_8) = three_written(&mut disk);
    assert_eq!(disk.older_checkpoints().unwrap(), [Seq(8), Seq(16)]);
    let stats = disk.record_stable(Seq(16)).unwrap();
    assert_eq!(stats.undo_records_deleted, undo_of_8);
    assert_eq!(disk.older_checkpoints().unwrap(), [Seq(16)]);
    assert_eq!(disk.stable(), Some(Seq(16)));
    // An older stable checkpoint changes nothing.
    assert_eq!(disk.record_stable(Seq(8)).unwrap().undo_records_deleted, 0);
    assert_eq!(disk.stable(), Some(Seq(16)));
    drop(disk);

    let restored = open_durable(&dir.store(), params(), true, 0)
        .unwrap()
        .restored
        .unwrap();
    assert_eq!(restored.older, [Seq(16)]);
    assert_eq!(restored.store.latest_stable(), Some(Seq(16)));
    assert!(restored.store.snapshot(Seq(8)).is_none());
}

#[test]
fn a_write_over_unknown_content_drops_every_undo() {
    let dir = TempDir::new("undo-unknown-base");
    let mut disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (store, _) = three_written(&mut disk);
    let stats = disk.write(store.snapshot(Seq(24)).unwrap(), None).unwrap();
    assert!(stats.undo_records_deleted > 0);
    assert_eq!(disk.older_checkpoints().unwrap(), []);
}

/// The writer thread writes checkpoints that waited together, one delta each, so each is
/// rebuilt after a restart; a stable checkpoint heard last is recorded when it stops.
#[test]
fn the_writer_keeps_every_checkpoint_rebuildable_and_records_the_stable_one() {
    let dir = TempDir::new("undo-writer");
    let disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (sender, receiver) = std::sync::mpsc::channel::<CheckpointSaved>();
    let mut sink = DiskSink::start(disk, None, move |saved| sender.send(saved).unwrap()).unwrap();
    let mut store = filled(100);
    for (round, seq) in [Seq(8), Seq(16), Seq(24)].into_iter().enumerate() {
        store.put(key(round as u32), vec![round as u8]).unwrap();
        store.checkpoint(seq);
        sink.save(store.snapshot(seq).unwrap());
    }
    sink.stable(Seq(16));
    sink.finish();
    let last = receiver.try_iter().last().unwrap();
    assert_eq!(last.seq, Seq(24));
    let start = open_durable(&dir.store(), params(), true, 0).unwrap();
    assert_eq!(start.disk.stable(), Some(Seq(16)));
    let restored = start.restored.unwrap();
    assert_eq!(restored.older, [Seq(16)]);
    serves_as(
        restored.store.snapshot(Seq(16)).unwrap(),
        store.snapshot(Seq(16)).unwrap(),
    );
}

/// An undo value that reads back wrong costs its bucket at that checkpoint (not served
/// there), never a wrong answer; the other buckets are served.
#[test]
fn a_damaged_undo_record_leaves_its_bucket_unserved_at_that_checkpoint() {
    let dir = TempDir::new("undo-damaged");
    let mut disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (original, _) = three_written(&mut disk);
    drop(disk);
    let changed =
        super::test_support::overwrite_undo_objects(&dir.store(), &key(1), b"\x01bit rot");
    assert_eq!(changed, Ok(2), "key 1 changed after 8 and after 16");

    let restored = open_durable(&dir.store(), params(), true, 0)
        .unwrap()
        .restored
        .unwrap();
    assert_eq!(restored.older, [Seq(8), Seq(16)], "the leaves still hold");
    let bucket = params().bucket_of(&key(1));
    for seq in [Seq(8), Seq(16)] {
        let rebuilt = restored.store.snapshot(seq).unwrap();
        assert!(rebuilt.bucket_with_proof(bucket).is_err(), "{seq}");
        let other = BucketIndex((bucket.0 + 1) % params().bucket_count() as u32);
        let proof = rebuilt.bucket_with_proof(other).unwrap();
        proof
            .verify(&original.snapshot(seq).unwrap().root(), params())
            .unwrap();
    }
}
