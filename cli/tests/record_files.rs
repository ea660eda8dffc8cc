//! Agreement record files, as `zz init` and `zz up` see them: init writes one per replica,
//! and `zz up` with one missing stops at once, naming the file and what to do; doing it
//! (`: > PATH`) starts the platform again.

mod common;

use common::{Platform, free_base_port, zz, zz_ok};
use std::time::{Duration, Instant};
use zz_agreement::io::storage::FileStorage;
use zz_cluster::ClusterDir;
use zz_protocol::ReplicaId;

#[test]
fn zz_up_with_a_record_file_missing_stops_naming_it_until_it_is_created_empty() {
    let dir = std::env::temp_dir().join(format!("zz-record-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _platform = Platform(&dir);
    let port = free_base_port(16, 59, 23).to_string();
    zz_ok(&["init", "--apps", "kv", "--base-port", &port], &dir);
    let files = ClusterDir::new(&dir);
    for id in 0..4 {
        let path = files.records_path(ReplicaId(id));
        let (_, records) = FileStorage::open(&path)
            .unwrap_or_else(|error| panic!("zz init wrote no readable record file: {error}"));
        assert!(records.is_empty(), "{}", path.display());
    }

    let missing = files.records_path(ReplicaId(1));
    std::fs::remove_file(&missing).unwrap();
    let started = Instant::now();
    let output = zz(&["up", "--detach"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("replica-1 exited at start-up"), "{stderr}");
    let reason = format!("{}: the record file is missing", missing.display());
    assert!(stderr.contains(&reason), "{stderr}");
    assert!(
        stderr.contains(&format!("`: > {}`", missing.display())),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "told at once, not after the start-up timeout: {:?}",
        started.elapsed()
    );
    assert!(!missing.exists(), "nothing created it");

    std::fs::write(&missing, b"").unwrap();
    zz_ok(&["up", "--detach"], &dir);
}
