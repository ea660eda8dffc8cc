//! `zz bench --app kv --inject-at 5s FAULT`: recovery time. The kv state is the one the
//! platform was preloaded with (`zz init --kv-preload-mb`), or is written through the
//! platform first (`--state-mb`, the same keys and values); then it runs closed-loop clients reading random loaded keys,
//! injects the fault into an active execution replica, and measures the time from the
//! injection to the first correct reply that a woken standby vouched for, then to the
//! woken replica holding the whole state. Every result is checked against the value
//! written, so a wrong answer counts, never passes.

use crate::operate::{self, InjectArgs, Injection};
use crate::platform::activator_status;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use zz_activator::policy::MemberState;
use zz_apps::kv;
use zz_client::{Client, ClientPool};
use zz_cluster::ClusterDir;
use zz_execution::node::ExecutionStatus;
use zz_protocol::config::{ClusterConfig, StateFetch};
use zz_protocol::{AppId, ClientId, ExecutionId, NodeId};

use kv::{preload_key as state_key, preload_value as state_value};

/// What the recovery benchmark was asked to do.
pub struct RecoveryArgs {
    pub dir: PathBuf,
    pub clients: u32,
    pub state_mb: u64,
    pub value_bytes: usize,
    pub inject_at: Duration,
    pub fault: Injection,
    pub inject_into: Option<String>,
    pub json: bool,
}

#[derive(serde::Serialize)]
struct RecoveryReport {
    fault: String,
    injected_into: String,
    state_fetch: String,
    state_bytes: u64,
    keys: u64,
    load_seconds: f64,
    /// From the injection to the first correct reply a woken standby vouched for.
    fault_to_woken_reply_ms: f64,
    /// From the injection to the woken replica holding every bucket.
    fault_to_whole_state_ms: Option<f64>,
    woken: String,
    /// The slowest request that completed after the injection.
    latency_after_fault_max_ms: f64,
    requests_before_fault: u64,
    requests_after_fault: u64,
    wrong_results: u64,
    errors: u64,
}

/// Put `keys` values of `value_bytes` with `clients` concurrent clients.
async fn load(
    pool: &ClientPool,
    app: AppId,
    clients: u32,
    keys: u64,
    value_bytes: usize,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for index in 0..clients {
        let (client, next) = (pool.client(index), next.clone());
        loaders.push(tokio::spawn(async move {
            loop {
                let key = next.fetch_add(1, Ordering::Relaxed);
                if key >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                let op = kv::Op::Put {
                    key: state_key(key),
                    value: state_value(key, value_bytes),
                };
                client
                    .invoke_with_deadline(app, kv::encode_op(&op), Duration::from_secs(60))
                    .await
                    .with_context(|| format!("loading key {key}"))?;
            }
        }));
    }
    for loader in loaders {
        loader.await??;
    }
    Ok(())
}

/// The app's members in `state` according to the activator.
fn members_in(dir: &Path, app: AppId, state: MemberState) -> Vec<ExecutionId> {
    (activator_status(dir).into_iter())
        .flat_map(|status| status.pools)
        .filter(|pool| pool.app == app.0)
        .flat_map(|pool| pool.members)
        .filter(|member| member.state == state)
        .map(|member| ExecutionId(member.id))
        .collect()
}

fn execution_status(dir: &Path, id: ExecutionId) -> Option<ExecutionStatus> {
    crate::platform::read_json(&ClusterDir::new(dir).status_path(NodeId::Execution(id)))
}

/// Wait until every active replica of `app` knows a stable checkpoint at or past `seq`,
/// so that a woken replica joins from a checkpoint that holds the loaded state.
async fn wait_stable(dir: &Path, pool: &ClientPool, app: AppId, seq: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = pool.client(0);
    let mut nudge = 0u64;
    loop {
        let active = members_in(dir, app, MemberState::Active);
        let stable = active.iter().all(|id| {
            execution_status(dir, *id)
                .and_then(|status| status.last_stable)
                .is_some_and(|stable| stable >= seq)
        });
        if stable && !active.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no stable checkpoint covers the loaded state after 120 s");
        }
        // Checkpoints come every K app sequence numbers: small writes get there.
        nudge += 1;
        let op = kv::Op::Put {
            key: format!("nudge-{}", nudge % 16).into_bytes(),
            value: Vec::new(),
        };
        client
            .invoke_with_deadline(app, kv::encode_op(&op), Duration::from_secs(30))
            .await?;
    }
}

/// When the fault was injected, and the standbys that could be woken then.
type Injected = (Instant, BTreeSet<NodeId>);

struct Tally {
    before: AtomicU64,
    after: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
    slowest_after_us: AtomicU64,
    /// When a woken standby first vouched for a correct result, and which.
    first_woken: Mutex<Option<(Instant, NodeId)>>,
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    client: Client,
    app: AppId,
    keys: u64,
    value_bytes: usize,
    seed: u64,
    injected: Arc<Mutex<Option<Injected>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !stop.load(Ordering::Relaxed) {
        // xorshift: a spread of keys, so requests touch buckets all over the state.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = state % keys.max(1);
        let op = kv::Op::Get {
            key: state_key(key),
        };
        let started = Instant::now();
        let outcome = client
            .invoke_vouched(app, kv::encode_op(&op), Duration::from_secs(30))
            .await;
        let fault = injected.lock().await.clone();
        let Ok(accepted) = outcome else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let expected = kv::Outcome::Value(Some(state_value(key, value_bytes)));
        if kv::decode_result(&accepted.result).ok() != Some(expected) {
            tally.wrong.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match fault {
            Some((_, standbys)) => {
                tally.after.fetch_add(1, Ordering::Relaxed);
                let micros = started.elapsed().as_micros() as u64;
                tally.slowest_after_us.fetch_max(micros, Ordering::Relaxed);
                if let Some(woken) = accepted.voters.iter().find(|v| standbys.contains(v)) {
                    let mut first = tally.first_woken.lock().await;
                    if first.is_none() {
                        *first = Some((Instant::now(), *woken));
                    }
                }
            }
            _ => {
                tally.before.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The app's paused standbys. A wake before the fault (a client that retransmitted while
/// the platform warmed up) leaves none for a while: wait for the quiet period to pause
/// the woken replicas again, so the measured wake is the fault's.
async fn settled_standbys(dir: &Path, config: &ClusterConfig, app: AppId) -> BTreeSet<NodeId> {
    let quiet = config.activator.as_ref().map_or(0, |a| a.quiet_ms);
    let deadline = Instant::now() + Duration::from_millis(2 * quiet) + Duration::from_secs(5);
    let mut told = false;
    loop {
        let standbys: BTreeSet<NodeId> = (members_in(dir, app, MemberState::Standby).into_iter())
            .map(NodeId::Execution)
            .collect();
        if !standbys.is_empty() || Instant::now() > deadline {
            return standbys;
        }
        if !told {
            eprintln!(
                "a standby was woken before the fault; waiting for the quiet period to pause it"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: &RecoveryArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    let app_config = config
        .app_by_name(kv::NAME)
        .with_context(|| format!("{} hosts no kv app", args.dir.display()))?;
    let app = app_config.id;
    let pool = ClientPool::connect(&args.dir, ClientId(0), args.clients)
        .context("cannot start the clients")?;
    let (keys, value_bytes) = match (app_config.preload_mb, args.state_mb) {
        (0, 0) => bail!(
            "kv holds no data set to read: preload one (`zz init --kv-preload-mb N`) or \
             write one first (--state-mb N)"
        ),
        (0, mb) => (
            kv::preload_count(mb * 1_000_000, args.value_bytes),
            args.value_bytes,
        ),
        (mb, 0) => (
            kv::preload_count(mb * 1_000_000, kv::PRELOAD_VALUE_BYTES),
            kv::PRELOAD_VALUE_BYTES,
        ),
        (_, _) => bail!("--state-mb: this platform's kv is preloaded already"),
    };
    let loading = Instant::now();
    if args.state_mb > 0 {
        eprintln!(
            "loading {} MB as {keys} keys of {value_bytes} B",
            args.state_mb
        );
        load(&pool, app, args.clients, keys, value_bytes).await?;
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    let loaded_to = (members_in(&args.dir, app, MemberState::Active).iter())
        .filter_map(|id| execution_status(&args.dir, *id))
        .map(|status| status.last_executed)
        .max()
        .unwrap_or(0);
    wait_stable(&args.dir, &pool, app, loaded_to).await?;
    let standbys = settled_standbys(&args.dir, &config, app).await;
    if standbys.is_empty() {
        bail!(
            "kv has no paused standby to wake; `zz scale --dir {} kv --standbys 1`",
            args.dir.display()
        );
    }
    let target = match &args.inject_into {
        Some(node) => node.clone(),
        None => {
            let active = members_in(&args.dir, app, MemberState::Active);
            let last = active.last().context("kv has no active replica")?;
            format!("execution-{}", last.0)
        }
    };
    let injected = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally {
        before: AtomicU64::new(0),
        after: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        slowest_after_us: AtomicU64::new(0),
        first_woken: Mutex::new(None),
    });
    let mut readers = Vec::new();
    for index in 0..args.clients {
        readers.push(tokio::spawn(read_loop(
            pool.client(index),
            app,
            keys,
            value_bytes,
            u64::from(index) + 1,
            injected.clone(),
            tally.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(args.inject_at).await;
    let fault_at = Instant::now();
    *injected.lock().await = Some((fault_at, standbys));
    let done = operate::inject(&InjectArgs {
        dir: args.dir.clone(),
        node: target.clone(),
        fault: args.fault,
        delay_ms: zz_cluster::fault::SLOW_DELAY_MS_DEFAULT,
    })
    .await?;
    tracing::info!("{done}");
    let deadline = fault_at + Duration::from_secs(120);
    let (woken_at, woken) = loop {
        if let Some(first) = *tally.first_woken.lock().await {
            break first;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            bail!("no woken standby answered within 120 s of the fault");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let NodeId::Execution(woken_id) = woken else {
        unreachable!("standbys are execution replicas")
    };
    let whole_at = loop {
        let status = execution_status(&args.dir, woken_id);
        if status.is_some_and(|s| !s.joining && s.missing_buckets == 0) {
            break Some(Instant::now());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(35), reader).await;
    }
    let ms = |at: Instant| at.duration_since(fault_at).as_secs_f64() * 1000.0;
    let report = RecoveryReport {
        fault: args.fault.name().to_string(),
        injected_into: target,
        state_fetch: match app_config.state_fetch {
            StateFetch::Lazy => "lazy".into(),
            StateFetch::Eager => "eager".into(),
        },
        state_bytes: keys * value_bytes as u64,
        keys,
        load_seconds,
        fault_to_woken_reply_ms: ms(woken_at),
        fault_to_whole_state_ms: whole_at.map(ms),
        woken: format!("execution-{}", woken_id.0),
        latency_after_fault_max_ms: tally.slowest_after_us.load(Ordering::Relaxed) as f64 / 1000.0,
        requests_before_fault: tally.before.load(Ordering::Relaxed),
        requests_after_fault: tally.after.load(Ordering::Relaxed),
        wrong_results: tally.wrong.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "kv state {:.1} MB ({} keys, written in {:.1} s), {} fetch; {} injected into {}",
            report.state_bytes as f64 / 1e6,
            report.keys,
            report.load_seconds,
            report.state_fetch,
            report.fault,
            report.injected_into
        );
        println!(
            "fault to first correct reply vouched for by woken {}: {:.1} ms",
            report.woken, report.fault_to_woken_reply_ms
        );
        match report.fault_to_whole_state_ms {
            Some(ms) => println!("fault to the woken replica holding the whole state: {ms:.1} ms"),
            None => println!("the woken replica did not hold the whole state within 120 s"),
        }
        println!(
            "requests: {} before, {} after the fault (slowest after: {:.1} ms); {} wrong, {} errors",
            report.requests_before_fault,
            report.requests_after_fault,
            report.latency_after_fault_max_ms,
            report.wrong_results,
            report.errors
        );
    }
    if report.wrong_results > 0 {
        bail!(
            "{} results did not match the values written",
            report.wrong_results
        );
    }
    Ok(())
}
