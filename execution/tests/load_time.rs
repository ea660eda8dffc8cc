//! How long an execution replica takes to write a whole preloaded state into its state
//! store, and to read it back and check it at start-up. A measurement, not a check of
//! behaviour: ignored by default; run it with
//!
//! ```text
//! ZZ_LOAD_MB=1000 cargo test --release -p zz-execution --test load_time -- --ignored --nocapture
//! ```
//!
//! (`ZZ_LOAD_MB` defaults to 100; values are `ZZ_LOAD_VALUE_BYTES` long, by default
//! 60 kB as kv's preload values are.)

use std::time::Instant;
use zz_execution::durable::startup::open_durable;
use zz_protocol::Seq;
use zz_state_fetch::{ObjectStore, StateParams};

/// kv's preload value size (`zz_apps::kv::PRELOAD_VALUE_BYTES`).
const VALUE_BYTES_DEFAULT: usize = 60_000;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn load_time_of_a_preloaded_state() {
    let mb: u64 = std::env::var("ZZ_LOAD_MB")
        .ok()
        .and_then(|mb| mb.parse().ok())
        .unwrap_or(100);
    let value_bytes: usize = std::env::var("ZZ_LOAD_VALUE_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(VALUE_BYTES_DEFAULT)
        .max(8);
    let dir = std::env::temp_dir().join(format!("zz-load-time-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("execution-0.redb");
    let params = StateParams::default();

    let mut store = ObjectStore::new(params);
    let count = (mb * 1_000_000).div_ceil(value_bytes as u64);
    for index in 0..count {
        let mut value = vec![(index % 251) as u8; value_bytes];
        value[..8].copy_from_slice(&index.to_le_bytes());
        let key = format!("state-{index}").into_bytes();
        store
            .put(key, value)
            .expect("a fresh store has every bucket");
    }
    let root = store.checkpoint(Seq(64));

    let started = Instant::now();
    let mut disk = open_durable(&path, params, true, 0).unwrap().disk;
    let stats = disk.write(store.snapshot(Seq(64)).unwrap(), None).unwrap();
    let write_ms = started.elapsed().as_millis();
    drop(disk);
    let file_mb = std::fs::metadata(&path).unwrap().len() / 1_000_000;
    drop(store);

    let started = Instant::now();
    let start = open_durable(&path, params, true, 0).unwrap();
    let load_ms = started.elapsed().as_millis();
    let restored = start.restored.expect("the checkpoint written");
    assert!(restored.refused.is_empty());
    assert_eq!(restored.store.last_checkpoint(), Some((Seq(64), root)));
    println!(
        "{mb} MB ({count} objects of {value_bytes} B, {} buckets): first write {write_ms} ms \
         ({} objects, file {file_mb} MB); open + load + check {load_ms} ms (reading and \
         checking alone {} ms)",
        params.bucket_count(),
        stats.objects_put,
        restored.load_micros / 1000,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
