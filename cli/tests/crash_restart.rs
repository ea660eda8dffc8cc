//! Crash consistency of the whole platform as real processes: kv and bank run past
//! several stable checkpoints, then (a) `zz down` + `zz up` on the same directory, and (b)
//! SIGKILL of every process (frozen standbys included) in the middle of a workload +
//! `zz up`. Every acknowledged put reads back, every acknowledged transfer is applied
//! exactly once, money is conserved, and the platform keeps serving.

mod common;

use common::{Platform, free_base_port, zz};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zz_apps::{bank, kv};
use zz_client::{Client, ClientPool};
use zz_cluster::ClusterDir;
use zz_protocol::config::ClusterConfig;
use zz_protocol::{AppId, ClientId};

const KV_CLIENTS: u32 = 6;
/// Puts per kv client per round: with six clients, well past several checkpoints (every
/// 64 app sequence numbers) however requests batch.
const PUTS_PER_CLIENT: u64 = 350;
const BANK_CLIENTS: u32 = 4;
const TRANSFERS_PER_CLIENT: u64 = 120;
const ACCOUNTS: u64 = 4;
const OPENING_DEPOSIT: u64 = 10_000;
/// What a call may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(30);

fn up(dir: &Path, port: &str) {
    common::up_detached(dir, "kv,bank", port);
}

fn account(index: u64) -> String {
    format!("a{index}")
}

fn kv_key(client: u32, index: u64) -> Vec<u8> {
    format!("c{client}-k{index}").into_bytes()
}

async fn kv_call(
    client: &Client,
    app: AppId,
    op: kv::Op,
    deadline: Duration,
) -> Option<kv::Outcome> {
    let result = client
        .invoke_with_deadline(app, kv::encode_op(&op), deadline)
        .await
        .ok()?;
    Some(kv::decode_result(&result).expect("a kv outcome"))
}

async fn bank_call(client: &Client, app: AppId, op: bank::Op) -> bank::Outcome {
    let result = client
        .invoke_with_deadline(app, bank::encode_op(&op), DEADLINE)
        .await
        .unwrap_or_else(|error| panic!("{op:?}: {error}"));
    bank::decode_result(&result).expect("a bank outcome")
}

/// What the clients were told, and what may or may not have happened (a call that was cut
/// off by the crash).
#[derive(Default)]
struct Acknowledged {
    /// key -> the value last acknowledged as written.
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    /// key -> a value whose put was cut off: the key holds it or the acknowledged one.
    uncertain_values: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Account -> balance from the acknowledged transfers.
    balances: BTreeMap<u64, i64>,
    /// Transfers cut off by the crash: (from, to, amount), each applied once or not at all.
    uncertain_transfers: Vec<(u64, u64, u64)>,
}

struct Apps {
    kv: AppId,
    bank: AppId,
}

fn apps(dir: &Path) -> Apps {
    let config = ClusterConfig::load(dir).unwrap();
    Apps {
        kv: config.app_by_name("kv").unwrap().id,
        bank: config.app_by_name("bank").unwrap().id,
    }
}

/// Round `round` of puts from every kv client and transfers from every bank client, all at
/// once. With `cut_off`, calls may fail (the platform is killed under them): the first
/// failure ends that client's run and leaves its call uncertain.
async fn run_workload(
    pool: &ClientPool,
    apps: &Apps,
    round: u64,
    cut_off: bool,
    acked: &mut Acknowledged,
) {
    let deadline = if cut_off {
        Duration::from_secs(4)
    } else {
        DEADLINE
    };
    let mut puts = Vec::new();
    for index in 0..KV_CLIENTS {
        let client = pool.client(index);
        let app = apps.kv;
        puts.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..PUTS_PER_CLIENT {
                // Later rounds overwrite half the keys and add new ones.
                let key = kv_key(index, i + round * PUTS_PER_CLIENT / 2);
                let value = format!("round{round}-{i}").into_bytes();
                let op = kv::Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                };
                match kv_call(&client, app, op, deadline).await {
                    Some(kv::Outcome::Previous(_)) => done.push((key, value, true)),
                    Some(other) => panic!("put answered {other:?}"),
                    None if cut_off => {
                        done.push((key, value, false));
                        break;
                    }
                    None => panic!("a put failed with the platform up"),
                }
            }
            done
        }));
    }
    let mut transfers = Vec::new();
    for index in 0..BANK_CLIENTS {
        let client = pool.client(KV_CLIENTS + index);
        let app = apps.bank;
        transfers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..TRANSFERS_PER_CLIENT {
                let from = (index as u64 + i) % ACCOUNTS;
                let to = (from + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + (i * 7 + index as u64 + round) % 50;
                let op = bank::Op::Transfer {
                    from: account(from),
                    to: account(to),
                    amount,
                };
                let result = client
                    .invoke_with_deadline(app, bank::encode_op(&op), deadline)
                    .await;
                match result.map(|bytes| bank::decode_result(&bytes).expect("a bank outcome")) {
                    Ok(bank::Outcome::Transferred { .. }) => done.push((from, to, amount, true)),
                    Ok(other) => panic!("transfer answered {other:?}"),
                    Err(_) if cut_off => {
                        done.push((from, to, amount, false));
                        break;
                    }
                    Err(error) => panic!("a transfer failed with the platform up: {error}"),
                }
            }
            done
        }));
    }
    for task in puts {
        for (key, value, acknowledged) in task.await.unwrap() {
            if acknowledged {
                acked.values.insert(key.clone(), value);
                acked.uncertain_values.remove(&key);
            } else {
                acked.uncertain_values.insert(key, value);
            }
        }
    }
    for task in transfers {
        for (from, to, amount, acknowledged) in task.await.unwrap() {
            if acknowledged {
                *acked.balances.get_mut(&from).unwrap() -= amount as i64;
                *acked.balances.get_mut(&to).unwrap() += amount as i64;
            } else {
                acked.uncertain_transfers.push((from, to, amount));
            }
        }
    }
}

/// Every acknowledged put reads back (or the uncertain value after it); the balances are
/// the acknowledged transfers' plus some subset of the uncertain ones, each applied once;
/// the audit finds all the money. Uncertain outcomes are settled by what was read.
async fn check(pool: &ClientPool, apps: &Apps, acked: &mut Acknowledged) {
    let found = read_all(pool, apps.kv, acked).await;
    for (key, found) in found {
        let name = String::from_utf8_lossy(&key).to_string();
        let uncertain = acked.uncertain_values.remove(&key);
        match (acked.values.get(&key), uncertain, found) {
            (_, Some(uncertain), Some(found)) if found == uncertain => {
                acked.values.insert(key, found);
            }
            (Some(value), _, found) => {
                assert_eq!(found.as_ref(), Some(value), "{name}: acknowledged put lost")
            }
            (None, Some(_), None) => {}
            (None, _, found) => panic!("{name}: never acknowledged, yet holds {found:?}"),
        }
    }
    let reader = pool.client(15);
    let mut balances = BTreeMap::new();
    for index in 0..ACCOUNTS {
        let op = bank::Op::Balance {
            account: account(index),
        };
        let bank::Outcome::Balance(balance) = bank_call(&reader, apps.bank, op).await else {
            panic!("no balance for account {index}");
        };
        balances.insert(index, balance as i64);
    }
    let uncertain = std::mem::take(&mut acked.uncertain_transfers);
    assert!(uncertain.len() <= BANK_CLIENTS as usize);
    let applied = (0..1u32 << uncertain.len()).find(|subset| {
        let mut expected = acked.balances.clone();
        for (bit, (from, to, amount)) in uncertain.iter().enumerate() {
            if subset & (1 << bit) != 0 {
                *expected.get_mut(from).unwrap() -= *amount as i64;
                *expected.get_mut(to).unwrap() += *amount as i64;
            }
        }
        expected == balances
    });
    assert!(
        applied.is_some(),
        "balances {balances:?} are not the acknowledged transfers' {:?} plus some of {uncertain:?} once each",
        acked.balances
    );
    acked.balances = balances;
    let bank::Outcome::Audit(audit) = bank_call(&reader, apps.bank, bank::Op::Audit).await else {
        panic!("audit failed")
    };
    assert_eq!(audit.deposit_total, ACCOUNTS * OPENING_DEPOSIT);
    assert_eq!(audit.balance_sum, (ACCOUNTS * OPENING_DEPOSIT) as u128);
}

/// The value of every key the clients wrote, read by several clients at once.
async fn read_all(
    pool: &ClientPool,
    app: AppId,
    acked: &Acknowledged,
) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let keys: Vec<Vec<u8>> = (acked.values.keys())
        .chain(acked.uncertain_values.keys())
        .cloned()
        .collect();
    let readers = KV_CLIENTS as usize;
    let chunk = keys.len().div_ceil(readers).max(1);
    let mut tasks = Vec::new();
    for (index, keys) in keys.chunks(chunk).enumerate() {
        let client = pool.client(index as u32);
        let keys = keys.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut found = Vec::new();
            for key in keys {
                let read = kv_call(&client, app, kv::Op::Get { key: key.clone() }, DEADLINE).await;
                let Some(kv::Outcome::Value(value)) = read else {
                    panic!("{}: get failed: {read:?}", String::from_utf8_lossy(&key));
                };
                found.push((key, value));
            }
            found
        }));
    }
    let mut found = Vec::new();
    for task in tasks {
        found.extend(task.await.unwrap());
    }
    found
}

/// The highest stable execution checkpoint any kv or bank replica reports.
fn stable_checkpoints(dir: &Path) -> u64 {
    let run = ClusterDir::new(dir).run_dir();
    let mut highest = 0;
    for entry in std::fs::read_dir(run).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("execution-") && entry.path().is_dir() {
            let status: Option<serde_json::Value> = std::fs::read(entry.path().join("status.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let stable = status.and_then(|status| status["last_stable"].as_u64());
            highest = highest.max(stable.unwrap_or(0));
        }
    }
    highest
}

/// SIGKILL every process the platform recorded, frozen standbys included, as a power cut
/// would end them.
fn kill_everything(dir: &Path) {
    let run = ClusterDir::new(dir).run_dir();
    let mut killed = 0;
    for entry in std::fs::read_dir(run).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "pid")
            && let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|pid| pid.trim().parse::<i32>().ok())
        {
            let status = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            assert!(status.unwrap().success(), "kill -KILL {pid}");
            killed += 1;
        }
    }
    assert_eq!(
        killed, 12,
        "4 agreement, 6 execution, the activator, the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_data_survives_down_up_and_sigkill_of_every_process() {
    let dir = std::env::temp_dir().join(format!("zz-crash-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 29, 61).to_string();
    up(&dir, &port);
    let _platform = Platform(&dir);
    let apps = apps(&dir);
    let mut acked = Acknowledged {
        balances: (0..ACCOUNTS)
            .map(|index| (index, OPENING_DEPOSIT as i64))
            .collect(),
        ..Acknowledged::default()
    };
    {
        let pool = ClientPool::connect(&dir, ClientId(0), 16).unwrap();
        let opener = pool.client(15);
        for index in 0..ACCOUNTS {
            let open = bank::Op::Open {
                account: account(index),
            };
            assert_eq!(
                bank_call(&opener, apps.bank, open).await,
                bank::Outcome::Opened
            );
            let deposit = bank::Op::Deposit {
                account: account(index),
                amount: OPENING_DEPOSIT,
            };
            let deposited = bank_call(&opener, apps.bank, deposit).await;
            assert!(matches!(deposited, bank::Outcome::Deposited { .. }));
        }
        run_workload(&pool, &apps, 0, false, &mut acked).await;
        check(&pool, &apps, &mut acked).await;
    }
    let started = Instant::now();
    while stable_checkpoints(&dir) < 3 * 64 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fewer than three stable checkpoints: {}",
            stable_checkpoints(&dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // (a) An orderly restart.
    let down = zz(&["down"], &dir);
    assert!(down.status.success(), "zz down: {down:?}");
    up(&dir, &port);
    {
        let pool = ClientPool::connect(&dir, ClientId(0), 16).unwrap();
        check(&pool, &apps, &mut acked).await;
        run_workload(&pool, &apps, 1, false, &mut acked).await;
        check(&pool, &apps, &mut acked).await;
    }

    // (b) A power cut in the middle of a workload.
    {
        let pool = ClientPool::connect(&dir, ClientId(0), 16).unwrap();
        let killer_dir = dir.clone();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            kill_everything(&killer_dir);
        });
        run_workload(&pool, &apps, 2, true, &mut acked).await;
        killer.await.unwrap();
        assert!(
            !acked.uncertain_values.is_empty() || !acked.uncertain_transfers.is_empty(),
            "the kill came after the workload ended: nothing was cut off"
        );
    }
    up(&dir, &port);
    {
        let pool = ClientPool::connect(&dir, ClientId(0), 16).unwrap();
        check(&pool, &apps, &mut acked).await;
        run_workload(&pool, &apps, 3, false, &mut acked).await;
        check(&pool, &apps, &mut acked).await;
    }
}
