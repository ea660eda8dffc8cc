//! On-demand activation as real processes over QUIC on 127.0.0.1: `zz up --detach`, then
//! `zz inject` on an active execution replica. A lying replica (corrupt-reply) and a
//! crashed one each wake a paused standby; clients still get only correct results; the
//! agreement replicas name the faulty replica and the activator destroys it and refills
//! the pool from the clean binary; a slow replica's wake is undone by the quiet period;
//! `zz scale` grows and shrinks the pool; money in the bank is conserved throughout.

mod common;

use common::activation::{
    activator, faulty, has_event, paused_again, set_silence_ms, states, wait_for, woke,
};
use common::bank::{assert_conserved, open_accounts, spawn_transfers};
use common::{Platform, free_base_port, zz, zz_ok};
use std::path::Path;
use std::time::Duration;
use zz_activator::policy::MemberState;
use zz_client::ClientPool;
use zz_cluster::ClusterDir;
use zz_protocol::config::ClusterConfig;
use zz_protocol::messages::FaultReason;
use zz_protocol::{ClientId, ExecutionId, NodeId};

/// How long the activator, the detector and the woken replicas get for each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `zz init` then `zz up --detach`; `silence_ms` replaces the default execution silence
/// timeout (the time after which a replica that reports nothing counts as faulty).
fn start(
    name: &str,
    apps: &str,
    port_seed: u16,
    silence_ms: u64,
    quiet_ms: u64,
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base_port = free_base_port(16, port_seed, 7 * port_seed + 3).to_string();
    let quiet = quiet_ms.to_string();
    zz_ok(
        &[
            "init",
            "--apps",
            apps,
            "--base-port",
            &base_port,
            "--quiet-ms",
            &quiet,
        ],
        &dir,
    );
    set_silence_ms(&dir, silence_ms);
    zz_ok(&["up", "--detach"], &dir);
    dir
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Exactly f+1 = 2 members active, none starting: the rest are paused standbys.
fn back_to_f_plus_one(dir: &Path) -> bool {
    let states = states(dir);
    let count = |state| states.values().filter(|s| **s == state).count();
    count(MemberState::Active) == 2 && count(MemberState::Starting) == 0
}

fn pid_of(dir: &Path, execution: u32) -> u32 {
    let node = NodeId::Execution(ExecutionId(execution));
    ClusterDir::new(dir).read_pid(node).expect("a pid file")
}

#[test]
fn a_lying_replica_wakes_a_standby_and_is_replaced_while_clients_read_correct_values() {
    let dir = start("lie", "kv", 23, 1000, 3000);
    let _platform = Platform(&dir);
    for i in 0..20 {
        zz_ok(&["kv", "put", &format!("k{i}"), &format!("v{i}")], &dir);
    }
    let liar_pid = pid_of(&dir, 1);
    zz_ok(&["inject", "execution-1", "corrupt-reply"], &dir);
    // Each answer needs f+1 = 2 matching replies: the liar's never match.
    for i in 0..20 {
        assert_eq!(
            zz_ok(&["kv", "get", &format!("k{i}")], &dir),
            format!("v{i}")
        );
    }
    zz_ok(&["kv", "put", "after", "lie"], &dir);
    assert_eq!(zz_ok(&["kv", "get", "after"], &dir), "lie");
    wait_for(&dir, STEP_TIMEOUT, "replacing execution-1", || {
        has_event(&dir, woke(2)) && has_event(&dir, faulty(Some(1), None))
    });
    assert_ne!(pid_of(&dir, 1), liar_pid, "a fresh process in its place");
    assert!(!alive(liar_pid), "the liar is destroyed");
    // After the quiet period the app is back to f+1 = 2 active, the rest paused.
    wait_for(&dir, STEP_TIMEOUT, "returning to f+1 active", || {
        back_to_f_plus_one(&dir)
    });
    let table = zz_ok(&["status"], &dir);
    assert!(table.contains("execution-1 is faulty"), "{table}");
    // The fresh replica is honest: the new pair answers reads and writes.
    zz_ok(&["kv", "put", "later", "fine"], &dir);
    assert_eq!(zz_ok(&["kv", "get", "k7"], &dir), "v7");
    assert_eq!(zz_ok(&["kv", "get", "later"], &dir), "fine");
}

#[test]
fn a_slow_replica_wakes_a_standby_that_the_quiet_period_pauses_again() {
    // A long silence timeout: the slow replica is late, never silent, so nobody is faulty.
    let dir = start("slow", "kv", 29, 10_000, 2000);
    let _platform = Platform(&dir);
    zz_ok(&["kv", "put", "a", "1"], &dir);
    zz_ok(
        &["inject", "execution-1", "slow", "--delay-ms", "900"],
        &dir,
    );
    // The client retransmits after 500 ms without f+1 replies: that wakes the standby.
    zz_ok(&["kv", "put", "b", "2"], &dir);
    wait_for(&dir, STEP_TIMEOUT, "waking execution-2", || {
        has_event(&dir, woke(2))
    });
    zz_ok(&["inject", "execution-1", "heal"], &dir);
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "pausing execution-2 after the quiet period",
        || has_event(&dir, paused_again(2)),
    );
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "execution-0 and -1 active, execution-2 paused",
        || {
            let states = states(&dir);
            states[&0] == MemberState::Active
                && states[&1] == MemberState::Active
                && states[&2] == MemberState::Standby
        },
    );
    assert!(
        !has_event(&dir, faulty(None, None)),
        "{:?}",
        activator(&dir).events
    );
    assert_eq!(zz_ok(&["kv", "get", "b"], &dir), "2");
}

#[test]
fn scale_grows_the_pool_into_spare_slots_refuses_beyond_them_and_shrinks_it() {
    let dir = start("scale", "kv", 37, 1000, 3000);
    let _platform = Platform(&dir);
    // One standby and two spare slots: grow to 3, refuse 4, shrink to 1.
    let grown = zz_ok(&["scale", "kv", "--standbys", "3"], &dir);
    assert!(
        grown.contains("starting execution-3, execution-4"),
        "{grown}"
    );
    wait_for(&dir, STEP_TIMEOUT, "two more paused standbys", || {
        let states = states(&dir);
        (2..5).all(|id| states.get(&id) == Some(&MemberState::Standby))
    });
    let refused = zz(&["scale", "kv", "--standbys", "4"], &dir);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("3 standby slots"));
    zz_ok(&["scale", "kv", "--standbys", "1"], &dir);
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "shrinking the pool to execution-2",
        || {
            let states = states(&dir);
            states[&2] == MemberState::Standby
                && states[&3] == MemberState::Spare
                && states[&4] == MemberState::Spare
        },
    );
    let report: serde_json::Value =
        serde_json::from_str(&zz_ok(&["status", "--json"], &dir)).unwrap();
    let listed: Vec<&str> = (report["nodes"].as_array().unwrap().iter())
        .filter_map(|row| row["node"].as_str())
        .collect();
    assert!(
        !listed.contains(&"execution-3") && listed.contains(&"execution-2"),
        "spare slots run nothing and are not listed: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_bank_replica_is_replaced_and_money_is_conserved() {
    let dir = start("crash", "bank", 31, 1000, 3000);
    let _platform = Platform(&dir);
    let config = ClusterConfig::load(&dir).unwrap();
    let app = config.app_by_name("bank").unwrap().id;
    let pool = ClientPool::connect(&dir, ClientId(0), 5).unwrap();
    let opener = pool.client(0);
    open_accounts(&opener, app).await;
    let transfers = spawn_transfers(&pool, app, 40);
    tokio::time::sleep(Duration::from_millis(400)).await;
    zz_ok(&["inject", "execution-0", "crash"], &dir);
    for transfer in transfers {
        transfer.await.unwrap();
    }
    assert_conserved(&opener, app).await;
    let watched = dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&watched, STEP_TIMEOUT, "replacing execution-0", || {
            has_event(&watched, faulty(Some(0), Some(FaultReason::Silent)))
                && states(&watched).get(&0) == Some(&MemberState::Standby)
        })
    })
    .await
    .unwrap();
    let states = states(&dir);
    assert_eq!(states[&1], MemberState::Active);
    assert_eq!(states[&2], MemberState::Active);
}
