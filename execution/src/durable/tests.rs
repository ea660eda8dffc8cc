//! The state store on a real file: round trips, incremental writes, damage found and
//! refused bucket by bucket, and files that are not ours.

use super::disk::{DiskError, DiskStore, FORMAT_VERSION};
use super::startup::{LostState, open_durable};
use super::test_support;
use super::writer::DiskSink;
use super::{CheckpointSaved, CheckpointSink, Saving};
use std::path::PathBuf;
use zz_protocol::Seq;
use zz_state_fetch::{BucketIndex, ObjectStore, StateParams};

/// A fresh directory for one test, removed when dropped.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zz-durable-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(super) fn store(&self) -> PathBuf {
        self.0.join("state").join("execution-0.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn params() -> StateParams {
    StateParams::new(6).unwrap()
}

pub(super) fn key(i: u32) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

pub(super) fn filled(count: u32) -> ObjectStore {
    let mut store = ObjectStore::new(params());
    for i in 0..count {
        store.put(key(i), vec![i as u8; 200]).unwrap();
    }
    store
}

/// Checkpoint 8 of `filled(count)`, written to a new store at `path`.
fn written(path: &std::path::Path, count: u32) -> ObjectStore {
    let mut store = filled(count);
    store.checkpoint(Seq(8));
    let mut disk = open_durable(path, params(), true, 0).unwrap().disk;
    disk.write(store.snapshot(Seq(8)).unwrap(), None).unwrap();
    store
}

#[test]
fn a_checkpoint_written_is_restored_whole_with_a_snapshot_to_serve() {
    let dir = TempDir::new("round-trip");
    let original = written(&dir.store(), 300);
    let root = original.snapshot(Seq(8)).unwrap().root();

    let start = open_durable(&dir.store(), params(), true, 0).unwrap();
    assert!(start.lost.is_none());
    assert_eq!(start.disk.checkpoint(), Some((Seq(8), root)));
    let restored = start.restored.expect("a checkpoint");
    assert_eq!(restored.seq, Seq(8));
    assert!(restored.refused.is_empty());
    assert!(restored.store.is_complete());
    for i in 0..300 {
        assert_eq!(
            restored.store.get(&key(i)).unwrap(),
            Some(&vec![i as u8; 200][..])
        );
    }
    let snapshot = restored
        .store
        .snapshot(Seq(8))
        .expect("served after a restart");
    let proof = snapshot.bucket_with_proof(BucketIndex(5)).unwrap();
    proof.verify(&root, params()).unwrap();

    // A standby opens the store but loads nothing.
    drop(start.disk);
    let standby = open_durable(&dir.store(), params(), false, 0).unwrap();
    assert!(standby.restored.is_none() && standby.lost.is_none());
}

#[test]
fn a_checkpoint_writes_only_the_objects_changed_since_the_last_one_written() {
    let dir = TempDir::new("incremental");
    let mut store = filled(1_000);
    store.checkpoint(Seq(8));
    let mut disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let first = disk.write(store.snapshot(Seq(8)).unwrap(), None).unwrap();
    assert_eq!(first.objects_put, 1_000);
    assert_eq!(first.leaves_written, params().bucket_count() as u64);

    store.put(key(1), b"changed".to_vec()).unwrap();
    store.put(b"new".to_vec(), b"added".to_vec()).unwrap();
    store.delete(&key(2)).unwrap();
    store.checkpoint(Seq(16));
    let base = store.snapshot(Seq(8)).cloned();
    let second = disk
        .write(store.snapshot(Seq(16)).unwrap(), base.as_ref())
        .unwrap();
    assert_eq!((second.objects_put, second.objects_deleted), (2, 1));
    assert_eq!(
        second.object_bytes,
        (key(1).len() + b"changed".len() + b"new".len() + b"added".len()) as u64,
        "bytes written are the bytes the requests changed"
    );
    assert!(second.leaves_written <= 3);
    drop(disk);

    let restored = open_durable(&dir.store(), params(), true, 0)
        .unwrap()
        .restored
        .unwrap();
    assert_eq!(restored.seq, Seq(16));
    assert!(restored.refused.is_empty());
    assert_eq!(restored.store.get(&key(1)).unwrap(), Some(&b"changed"[..]));
    assert_eq!(restored.store.get(&key(2)).unwrap(), None);
    assert_eq!(restored.store.get(b"new").unwrap(), Some(&b"added"[..]));
}

/// A damaged value, a damaged leaf and a lost object: each refuses its bucket alone, and
/// the bucket fetched from a replica that has it passes the install check.
#[test]
fn damage_refuses_only_the_bucket_it_hits_and_the_fetched_bucket_installs() {
    let victim = key(7);
    let bucket = params().bucket_of(&victim);
    type Damage = fn(&std::path::Path, &[u8]) -> Result<bool, String>;
    let damages: [(&str, Damage); 3] = [
        ("value", |path, key| {
            test_support::overwrite_object_value(path, key, b"bit rot")
        }),
        ("leaf", |path, key| {
            let bucket = params().bucket_of(key);
            test_support::overwrite_leaf(path, bucket.0, [3; 32])
        }),
        ("deleted object", test_support::delete_object),
    ];
    for (name, damage) in damages {
        let dir = TempDir::new(&format!("damage-{}", name.replace(' ', "-")));
        let original = written(&dir.store(), 300);
        assert!(damage(&dir.store(), &victim).unwrap(), "{name}: damaged");

        let start = open_durable(&dir.store(), params(), true, 0).unwrap();
        let mut restored = start.restored.expect("the rest is usable");
        assert_eq!(restored.refused, vec![bucket], "{name}");
        assert!(restored.store.get(&victim).is_err(), "{name}: missing");
        assert_eq!(restored.store.get(&key(8)).ok(), original.get(&key(8)).ok());
        // What the file holds: the writer's base, taken at start.
        let base = restored.store.snapshot(Seq(8)).cloned();
        let proof = (original.snapshot(Seq(8)).unwrap())
            .bucket_with_proof(bucket)
            .unwrap();
        restored.store.install_bucket(proof).unwrap();
        assert_eq!(
            restored.store.get(&victim).unwrap(),
            original.get(&victim).unwrap()
        );

        // The next checkpoint rewrites the refetched bucket; then nothing is refused.
        restored.store.checkpoint(Seq(16));
        let mut disk = start.disk;
        let stats = disk
            .write(restored.store.snapshot(Seq(16)).unwrap(), base.as_ref())
            .unwrap();
        assert_eq!(stats.leaves_written, 1, "{name}");
        drop(disk);
        let again = open_durable(&dir.store(), params(), true, 0).unwrap();
        assert!(again.restored.unwrap().refused.is_empty(), "{name}");
    }
}

#[test]
fn a_store_of_another_format_version_is_a_start_up_error_naming_the_file() {
    let dir = TempDir::new("version");
    written(&dir.store(), 10);
    test_support::set_format_version(&dir.store(), FORMAT_VERSION + 1).unwrap();
    let error = open_durable(&dir.store(), params(), true, 0).unwrap_err();
    assert!(matches!(error, DiskError::FormatVersion { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&dir.store().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("format 2") && message.contains("move the file"),
        "{message}"
    );
    assert!(dir.store().exists(), "never moved or rewritten");

    let other_params = StateParams::new(7).unwrap();
    test_support::set_format_version(&dir.store(), FORMAT_VERSION).unwrap();
    let error = open_durable(&dir.store(), other_params, true, 0).unwrap_err();
    assert!(
        matches!(
            error,
            DiskError::BucketBits {
                found: 6,
                expected: 7,
                ..
            }
        ),
        "{error}"
    );
}

/// A truncated file, or one that is not a redb database at all, is moved aside and the
/// replica starts from an empty store (and fetches the agreed state).
#[test]
fn a_damaged_file_is_moved_aside_and_replaced_by_an_empty_store() {
    let truncate = |path: &std::path::Path| {
        let length = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(length / 2).unwrap();
    };
    let overwrite = |path: &std::path::Path| std::fs::write(path, vec![0x5a; 10_000]).unwrap();
    type Damage<'a> = &'a dyn Fn(&std::path::Path);
    let cases: [(&str, Damage); 2] = [("truncated", &truncate), ("garbage", &overwrite)];
    for (name, damage) in cases {
        let dir = TempDir::new(name);
        written(&dir.store(), 2_000);
        damage(&dir.store());
        let start = open_durable(&dir.store(), params(), true, 1234).unwrap();
        let Some(LostState::SetAside { moved_to, problem }) = start.lost else {
            panic!("{name}: not set aside: {:?}", start.lost);
        };
        assert!(!problem.is_empty());
        assert_eq!(
            moved_to,
            dir.store().with_file_name("execution-0.redb.damaged-1234"),
            "{name}"
        );
        assert!(moved_to.exists(), "{name}: kept for inspection");
        assert!(start.restored.is_none());
        assert_eq!(start.disk.checkpoint(), None, "{name}: a fresh store");
    }
}

#[test]
fn the_writer_thread_reports_each_commit_and_finishes_what_waits() {
    let dir = TempDir::new("writer");
    let disk = open_durable(&dir.store(), params(), true, 0).unwrap().disk;
    let (sender, receiver) = std::sync::mpsc::channel::<CheckpointSaved>();
    let mut sink = DiskSink::start(disk, None, move |saved| sender.send(saved).unwrap()).unwrap();
    let mut store = filled(100);
    store.checkpoint(Seq(8));
    assert_eq!(
        sink.save(store.snapshot(Seq(8)).unwrap()),
        Saving::InProgress
    );
    let saved = receiver.recv().unwrap();
    assert_eq!(saved.seq, Seq(8));
    assert_eq!(saved.result.unwrap().objects_put, 100);
    store.put(key(1), b"x".to_vec()).unwrap();
    store.checkpoint(Seq(16));
    assert_eq!(
        sink.save(store.snapshot(Seq(16)).unwrap()),
        Saving::InProgress
    );
    sink.finish();
    let saved = receiver.recv().unwrap();
    assert_eq!(saved.seq, Seq(16));
    assert_eq!(
        saved.result.unwrap().objects_put,
        1,
        "a delta from the last write"
    );

    // A store still fetching cannot be written.
    let root = store.snapshot(Seq(16)).unwrap().root();
    let mut pinned = ObjectStore::pinned(params(), Seq(16), root);
    pinned.checkpoint(Seq(24));
    let disk = DiskStore::open(&dir.store(), params()).unwrap();
    let mut sink = DiskSink::start(disk, None, |_| {}).unwrap();
    assert_eq!(
        sink.save(pinned.snapshot(Seq(24)).unwrap()),
        Saving::Unwritable
    );
}
