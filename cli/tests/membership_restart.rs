//! Who is active survives a restart of the whole platform, as real processes: kv runs past
//! a stable checkpoint, then execution-1 lies (`zz inject corrupt-reply`): f+1 agreement
//! replicas wake the standby execution-2 and name execution-1 faulty, and the activator
//! destroys it and starts a fresh standby in its slot. After `zz down` + `zz up`, and
//! again after SIGKILL of every process + `zz up`, the membership (epoch, active set,
//! pool) is the one before: the replaced slot is a paused standby, execution-2 is active
//! from its own store, nothing had to be woken again, every key reads back and new puts
//! are answered.

mod common;

use common::activation::{activator, faulty, has_event, wait_for, woke};
use common::{Platform, free_base_port, zz_ok};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use zz_activator::policy::{MemberState, PolicyEvent};
use zz_apps::kv;
use zz_client::{Client, ClientPool};
use zz_cluster::ClusterDir;
use zz_execution::node::ExecutionStatus;
use zz_protocol::config::ClusterConfig;
use zz_protocol::{AppId, ClientId, ExecutionId, NodeId, ReplicaId};

const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Sequential puts per round: each its own batch, so a round passes an execution
/// checkpoint (every 64 app sequence numbers).
const PUTS_PER_ROUND: u32 = 70;

fn key(index: u32) -> Vec<u8> {
    format!("key{index}").into_bytes()
}

fn value(index: u32) -> Vec<u8> {
    format!("value{index}").into_bytes()
}

async fn call(client: &Client, app: AppId, op: kv::Op) -> kv::Outcome {
    let result = client
        .invoke_with_deadline(app, kv::encode_op(&op), STEP_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{op:?}: {error}"));
    kv::decode_result(&result).expect("a kv outcome")
}

async fn put_range(client: &Client, app: AppId, keys: std::ops::Range<u32>) {
    for index in keys {
        let (key, value) = (key(index), value(index));
        call(client, app, kv::Op::Put { key, value }).await;
    }
}

async fn read_back(client: &Client, app: AppId, keys: std::ops::Range<u32>) {
    for index in keys {
        let read = call(client, app, kv::Op::Get { key: key(index) }).await;
        assert_eq!(read, kv::Outcome::Value(Some(value(index))), "key{index}");
    }
}

/// The kv pool as the activator shows it: its epoch and each member's state.
fn membership(dir: &Path) -> (u64, Vec<(u32, MemberState)>) {
    let status = activator(dir);
    let pool = (status.pools.iter())
        .find(|pool| pool.name == "kv")
        .unwrap();
    let members = pool.members.iter().map(|m| (m.id, m.state)).collect();
    (pool.epoch, members)
}

fn execution(dir: &Path, id: u32) -> Option<ExecutionStatus> {
    let path = ClusterDir::new(dir).status_path(NodeId::Execution(ExecutionId(id)));
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// SIGKILL every process the platform recorded, frozen standbys included.
fn kill_everything(dir: &Path) {
    let run = ClusterDir::new(dir).run_dir();
    for entry in std::fs::read_dir(run).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "pid")
            && let Some(pid) =
                (std::fs::read_to_string(&path).ok()).and_then(|pid| pid.trim().parse::<i32>().ok())
        {
            let killed = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            assert!(killed.unwrap().success(), "kill -KILL {pid}");
        }
    }
}

/// `text` without its terminal colour codes (ESC [ ... m).
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The membership epochs agreement replica `replica` adopted in this run, as its log says.
fn adopted_epochs(dir: &Path, replica: u32) -> Vec<u64> {
    let log = ClusterDir::new(dir).log_path(NodeId::Replica(ReplicaId(replica)));
    let log = without_colours(&std::fs::read_to_string(log).unwrap());
    (log.lines())
        .filter(|line| line.contains(" membership "))
        .filter_map(|line| {
            line.split(" epoch=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// After a restart: the membership is `before`, the agreement replicas (which start at
/// epoch 0) adopted its epoch directly, nothing was woken or named faulty, every key
/// written so far reads back and `more` new puts are answered.
async fn check_restarted(
    dir: &Path,
    app: AppId,
    before: &(u64, Vec<(u32, MemberState)>),
    more: std::ops::Range<u32>,
) {
    assert_eq!(
        &membership(dir),
        before,
        "the membership before the restart"
    );
    let pool = ClientPool::connect(dir, ClientId(0), 1).unwrap();
    let client = pool.client(0);
    read_back(&client, app, 0..more.start).await;
    put_range(&client, app, more.clone()).await;
    read_back(&client, app, more).await;
    let woken_again = |event: &PolicyEvent| {
        matches!(event, PolicyEvent::Woke { .. } | PolicyEvent::Faulty { .. })
    };
    assert!(!has_event(dir, woken_again), "{:?}", activator(dir).events);
    assert_eq!(&membership(dir), before, "still, after serving");
    for replica in 0..4 {
        assert_eq!(
            adopted_epochs(dir, replica),
            vec![before.0],
            "replica-{replica}"
        );
    }
    let restored = execution(dir, 2).unwrap().restored_from;
    assert!(
        restored.is_some(),
        "execution-2 restarts active, from its own store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_set_survives_down_up_and_sigkill_of_every_process() {
    let dir = std::env::temp_dir().join(format!("zz-membership-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 41, 5 * 41 + 3).to_string();
    // No pause after a quiet period: the woken replica stays active until the restart.
    let args = [
        "init",
        "--apps",
        "kv",
        "--base-port",
        &port,
        "--quiet-ms",
        "600000",
    ];
    zz_ok(&args, &dir);
    zz_ok(&["up", "--detach"], &dir);
    let _platform = Platform(&dir);
    let app = ClusterConfig::load(&dir)
        .unwrap()
        .app_by_name("kv")
        .unwrap()
        .id;
    let pool = ClientPool::connect(&dir, ClientId(0), 1).unwrap();
    let client = pool.client(0);
    put_range(&client, app, 0..PUTS_PER_ROUND).await;
    zz_ok(&["inject", "execution-1", "corrupt-reply"], &dir);
    put_range(&client, app, PUTS_PER_ROUND..2 * PUTS_PER_ROUND).await;
    let watched = dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(
            &watched,
            STEP_TIMEOUT,
            "replacing execution-1 by execution-2",
            || {
                let (_, members) = membership(&watched);
                has_event(&watched, woke(2))
                    && has_event(&watched, faulty(Some(1), None))
                    && members[1] == (1, MemberState::Standby)
            },
        )
    })
    .await
    .unwrap();
    // A checkpoint after the wake is stable once execution-2 holds it on disk.
    let woken_at = execution(&dir, 2).unwrap().last_executed;
    put_range(&client, app, 2 * PUTS_PER_ROUND..3 * PUTS_PER_ROUND).await;
    let watched = dir.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(
            &watched,
            STEP_TIMEOUT,
            "a durable checkpoint at execution-2",
            || {
                let durable = execution(&watched, 2).and_then(|status| status.last_durable);
                durable.is_some_and(|seq| seq > woken_at)
            },
        )
    })
    .await
    .unwrap();
    drop(pool);
    let before = membership(&dir);
    use MemberState::{Active, Spare, Standby};
    let states: Vec<MemberState> = before.1.iter().map(|(_, state)| *state).collect();
    assert_eq!(
        states,
        vec![Active, Standby, Active, Spare, Spare],
        "{before:?}"
    );
    assert!(before.0 >= 2, "a wake and a replacement: {before:?}");

    zz_ok(&["down"], &dir);
    zz_ok(&["up", "--detach"], &dir);
    let written = 3 * PUTS_PER_ROUND;
    check_restarted(&dir, app, &before, written..written + 10).await;

    kill_everything(&dir);
    zz_ok(&["up", "--detach"], &dir);
    let written = written + 10;
    check_restarted(&dir, app, &before, written..written + 10).await;
}

#[test]
fn a_damaged_record_of_who_is_active_stops_zz_up_in_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("zz-membership-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 43, 5 * 43 + 1).to_string();
    zz_ok(&["init", "--apps", "kv", "--base-port", &port], &dir);
    let _platform = Platform(&dir);
    let record = ClusterDir::new(&dir).activator_pools_path();
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, "zz-activator-pools 1 0000\n{\"apps\": []}\n").unwrap();
    let output = common::zz(&["up", "--detach"], &dir);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains(&record.display().to_string()), "{error}");
    assert!(error.contains("checksum does not match"), "{error}");
    assert!(
        ClusterDir::new(&dir)
            .read_pid(NodeId::Activator(zz_protocol::config::LOCAL_ACTIVATOR))
            .is_none(),
        "nothing started"
    );
}
