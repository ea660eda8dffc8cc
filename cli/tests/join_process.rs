//! A woken execution replica joining over QUIC, as real processes: `zz up --detach` with
//! kv, enough puts to pass a stable checkpoint, then SIGUSR1 (what the activator sends
//! after thawing a standby) to an active execution replica. It restarts from the stable
//! checkpoint f+1 agreement replicas name, fetches every bucket from the other replicas
//! (each verified against the agreed root), replays the orders after the checkpoint, and
//! keeps executing new requests; every value written before is still read back.

mod common;

use common::{Platform, free_base_port, zz_ok};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zz_cluster::ClusterDir;
use zz_execution::node::ExecutionStatus;
use zz_protocol::{ExecutionId, NodeId, RejectReason};

/// Past the first execution checkpoint (every 64 app sequence numbers).
const PUTS: u32 = 80;

fn status(dir: &Path, id: u32) -> ExecutionStatus {
    let path = ClusterDir::new(dir).status_path(NodeId::Execution(ExecutionId(id)));
    serde_json::from_slice(&std::fs::read(&path).expect("status file")).expect("status json")
}

#[test]
fn a_woken_replica_joins_from_the_stable_checkpoint_and_fetches_the_state() {
    let dir = std::env::temp_dir().join(format!("zz-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base_port = free_base_port(16, 17, 61).to_string();
    zz_ok(
        &["up", "--apps", "kv", "--detach", "--base-port", &base_port],
        &dir,
    );
    let _platform = Platform(&dir);
    for i in 0..PUTS {
        zz_ok(
            &["kv", "put", &format!("key{i}"), &format!("value{i}")],
            &dir,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&dir, 1).last_stable.is_none() {
        assert!(Instant::now() < deadline, "no checkpoint became stable");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = status(&dir, 1);
    let pid = before.pid.to_string();
    let signalled = Command::new("kill").args(["-USR1", &pid]).status().unwrap();
    assert!(signalled.success());
    for i in PUTS..PUTS + 20 {
        zz_ok(
            &["kv", "put", &format!("key{i}"), &format!("value{i}")],
            &dir,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = status(&dir, 1);
        if !now.joining
            && now.missing_buckets == 0
            && now.last_executed >= before.last_executed + 20
        {
            let bad_buckets = now.rejected.get(RejectReason::BadBucket.as_str());
            assert_eq!(bad_buckets, None, "{:?}", now.rejected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("logs/execution-1.log")).unwrap();
    assert!(log.contains("joining from the stable checkpoint"), "{log}");
    for i in [0, PUTS / 2, PUTS + 19] {
        let value = zz_ok(&["kv", "get", &format!("key{i}")], &dir);
        assert_eq!(value, format!("value{i}"));
    }
}
