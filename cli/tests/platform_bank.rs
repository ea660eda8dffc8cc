//! The whole platform as real processes: `zz up --detach` with kv and bank (agreement
//! replicas, f+1 execution replicas per app, a paused standby each), concurrent bank
//! transfers from several clients, then `zz down`. Every acknowledged transfer is applied
//! exactly once and money is conserved.

mod common;

use common::{Platform, ZZ, free_base_port, zz};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;
use zz_apps::bank::{self, Op, Outcome};
use zz_client::ClientPool;
use zz_cluster::ClusterDir;
use zz_protocol::config::ClusterConfig;
use zz_protocol::{ClientId, NodeId};

const ACCOUNTS: u64 = 4;
const OPENING_DEPOSIT: u64 = 1_000;
/// Enough that even four requests per batch pass a checkpoint (every 64 app sequence numbers).
const TRANSFERS_PER_CLIENT: u64 = 80;

async fn call(pool: &ClientPool, index: u32, app: zz_protocol::AppId, op: Op) -> Outcome {
    let result = pool
        .client(index)
        .invoke_with_deadline(app, bank::encode_op(&op), Duration::from_secs(20))
        .await
        .unwrap_or_else(|error| panic!("{op:?}: {error}"));
    bank::decode_result(&result).expect("a bank outcome")
}

fn account(index: u64) -> String {
    format!("a{index}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_conserve_money_and_apply_exactly_once() {
    let dir = std::env::temp_dir().join(format!("zz-platform-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 13, 53).to_string();
    let up = Command::new(ZZ)
        .args([
            "up",
            "--apps",
            "kv,bank",
            "--standbys",
            "1",
            "--base-port",
            &port,
        ])
        .args(["--clients", "16", "--detach", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let _platform = Platform(&dir);
    assert!(up.status.success(), "zz up: {up:?}");

    // Roles: 4 agreement replicas; per app 2 active execution replicas and 1 paused standby
    // (spare slots run nothing and are not listed); the activator.
    let status = zz(&["status", "--json"], &dir);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let rows = report["nodes"].as_array().unwrap().clone();
    let count = |role: &str, state: &str| {
        rows.iter()
            .filter(|row| row["role"] == role && row["state"] == state)
            .count()
    };
    assert_eq!(rows.len(), 4 + 2 * 3 + 1, "{rows:?}");
    assert_eq!(count("activator", "running"), 1, "{rows:?}");
    assert_eq!(count("execution", "active"), 4, "{rows:?}");
    assert_eq!(count("standby", "paused"), 2, "{rows:?}");

    // kv through the CLI.
    let put = zz(&["kv", "put", "hello", "world"], &dir);
    assert!(put.status.success(), "{put:?}");
    let get = zz(&["kv", "get", "hello"], &dir);
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "world",
        "{get:?}"
    );

    // A client of its own: `zz client add` gives it free ids (the default file holds half
    // of the 16, the gateway the next 2) and a file with their keys only, which `--client`
    // speaks with.
    let zz_client = |args: &[&str]| {
        let output = Command::new(ZZ)
            .arg("client")
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output();
        output.expect("run zz client")
    };
    let add = zz_client(&["add", "alice", "--ids", "2"]);
    let added = String::from_utf8_lossy(&add.stdout);
    assert!(added.contains("client ids 10..12"), "{add:?}");
    let get = zz(&["kv", "--client", "alice", "get", "hello"], &dir);
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "world",
        "{get:?}"
    );
    let again = zz_client(&["add", "alice"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists already"),
        "{again:?}"
    );
    let nobody = zz(&["kv", "--client", "nobody", "get", "hello"], &dir);
    assert!(!nobody.status.success());
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("clients/nobody.toml"),
        "{nobody:?}"
    );
    let list = zz_client(&["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("default") && listed.contains("alice"),
        "{list:?}"
    );

    let config = ClusterConfig::load(&dir).unwrap();
    let app = config.app_by_name("bank").unwrap().id;
    let pool = ClientPool::connect(&dir, ClientId(0), 8).unwrap();
    for index in 0..ACCOUNTS {
        let opened = call(
            &pool,
            0,
            app,
            Op::Open {
                account: account(index),
            },
        )
        .await;
        assert_eq!(opened, Outcome::Opened);
        let deposit = Op::Deposit {
            account: account(index),
            amount: OPENING_DEPOSIT,
        };
        assert!(matches!(
            call(&pool, 0, app, deposit).await,
            Outcome::Deposited { .. }
        ));
    }

    // Concurrent transfers; each client remembers the ones acknowledged as done.
    let mut tasks = Vec::new();
    for client in 1..=4u32 {
        let pool_client = pool.client(client);
        tasks.push(tokio::spawn(async move {
            let mut net: BTreeMap<u64, i64> = BTreeMap::new();
            for i in 0..TRANSFERS_PER_CLIENT {
                let from = (client as u64 + i) % ACCOUNTS;
                let to = (from + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + (i * 7 + client as u64) % 50;
                let op = Op::Transfer {
                    from: account(from),
                    to: account(to),
                    amount,
                };
                let result = pool_client
                    .invoke_with_deadline(app, bank::encode_op(&op), Duration::from_secs(20))
                    .await
                    .unwrap_or_else(|error| panic!("transfer: {error}"));
                if let Outcome::Transferred { .. } = bank::decode_result(&result).unwrap() {
                    *net.entry(from).or_default() -= amount as i64;
                    *net.entry(to).or_default() += amount as i64;
                }
            }
            net
        }));
    }
    let mut expected: BTreeMap<u64, i64> = (0..ACCOUNTS)
        .map(|index| (index, OPENING_DEPOSIT as i64))
        .collect();
    for task in tasks {
        for (index, change) in task.await.unwrap() {
            *expected.get_mut(&index).unwrap() += change;
        }
    }
    for index in 0..ACCOUNTS {
        let balance = call(
            &pool,
            5,
            app,
            Op::Balance {
                account: account(index),
            },
        )
        .await;
        assert_eq!(
            balance,
            Outcome::Balance(expected[&index] as u64),
            "account {index}"
        );
    }
    let Outcome::Audit(audit) = call(&pool, 5, app, Op::Audit).await else {
        panic!("audit failed")
    };
    assert_eq!(audit.deposit_total, ACCOUNTS * OPENING_DEPOSIT);
    assert_eq!(audit.balance_sum, (ACCOUNTS * OPENING_DEPOSIT) as u128);

    // The active bank replicas ran past a checkpoint, and learned that it became stable
    // (every active replica reported the same root).
    let bank_replicas: Vec<_> = config
        .active_groups()
        .remove(&app)
        .unwrap()
        .into_iter()
        .map(|id| ClusterDir::new(&dir).status_path(NodeId::Execution(id)))
        .collect();
    let stable = || {
        bank_replicas.iter().all(|path| {
            std::fs::read(path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .is_some_and(|status| status["last_stable"].as_u64().is_some())
        })
    };
    let started = std::time::Instant::now();
    while !stable() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no stable execution checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `zz down` leaves no process behind.
    let pids: Vec<u32> = std::fs::read_dir(ClusterDir::new(&dir).run_dir())
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "pid")
                .then(|| std::fs::read_to_string(&path).ok()?.trim().parse().ok())?
        })
        .collect();
    assert_eq!(
        pids.len(),
        12,
        "4 agreement, 6 execution, the activator, the gateway"
    );
    let down = zz(&["down"], &dir);
    assert!(down.status.success(), "{down:?}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {pid} still running"
        );
    }
}
