//! `zz bench`: closed-loop clients against a running platform; throughput and latency
//! percentiles of requests ordered with f+1 matching replies.

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zz_client::ClientPool;
use zz_protocol::AppId;
use zz_protocol::config::ClusterConfig;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The cluster directory of a running platform.
    #[arg(long)]
    pub dir: PathBuf,
    /// Concurrent closed-loop clients (each has one request outstanding).
    #[arg(long, default_value_t = 64)]
    pub clients: u64,
    /// The client key file to speak with (`clients/NAME.toml`, see `zz client add`); it must
    /// hold at least --clients ids.
    #[arg(long, default_value = zz_protocol::config::DEFAULT_CLIENT)]
    pub client: String,
    /// Seconds to measure, after one second of warm-up.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Bytes of operation payload per request (the value written, for kv).
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// The hosted app to load: `null` (empty operations) or `kv` (puts). Without it,
    /// requests name an app no execution replica runs, so the agreement replicas answer
    /// them themselves: ordering alone.
    #[arg(long)]
    pub app: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Measure recovery: inject FAULT this long after the start (e.g. `5s`) into an
    /// active kv replica, and time it until a woken standby serves a correct reply.
    #[arg(long, value_parser = parse_seconds, requires = "fault")]
    pub inject_at: Option<Duration>,
    /// With --inject-at: the fault to inject.
    #[arg(value_enum, requires = "inject_at")]
    pub fault: Option<crate::operate::Injection>,
    /// With --inject-at: the replica to inject into (default: the last active kv replica).
    #[arg(long, requires = "inject_at")]
    pub inject_into: Option<String>,
    /// With --inject-at: load this many MB into kv first.
    #[arg(long, default_value_t = 0, requires = "inject_at")]
    pub state_mb: u64,
    /// With --state-mb: bytes per loaded value.
    #[arg(long, default_value_t = 60_000)]
    pub value_bytes: usize,
}

/// "5s", "1.5s" or "5": seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    number
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds (e.g. 5s)"))
}

#[derive(serde::Serialize)]
struct BenchReport {
    app: String,
    clients: u64,
    payload_bytes: usize,
    duration_s: f64,
    requests: u64,
    errors: u64,
    throughput_rps: f64,
    latency_p50_us: u64,
    latency_p90_us: u64,
    latency_p99_us: u64,
    latency_max_us: u64,
    /// Bytes the platform's processes wrote to storage while measuring, per answered
    /// request (records, checkpoints, logs); None where the processes cannot be read (the
    /// Docker backend, or another user's processes).
    disk_bytes_per_request: Option<f64>,
}

/// Bytes the platform's running node processes have written to storage so far (their
/// `write_bytes` in /proc), or None if one of them cannot be read.
fn disk_bytes_written(dir: &std::path::Path, config: &ClusterConfig) -> Option<u64> {
    if crate::containers::is_docker(dir) {
        return None;
    }
    let mut total = 0;
    for (_, pid) in crate::platform::running(dir, config) {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let line = io
            .lines()
            .find_map(|line| line.strip_prefix("write_bytes:"))?;
        total += line.trim().parse::<u64>().ok()?;
    }
    Some(total)
}

/// Builds client `index`'s operation.
type MakeOp = Box<dyn Fn(u32) -> Vec<u8>>;

/// Which app to address, and each client's operation.
fn operations(config: &ClusterConfig, args: &BenchArgs) -> Result<(AppId, MakeOp)> {
    let payload = args.payload;
    let Some(name) = args.app.as_deref() else {
        // No app has this id, so no execution replica runs it.
        return Ok((AppId::ORDERING_ONLY, Box::new(move |_| vec![0u8; payload])));
    };
    let Some(app) = config.app_by_name(name) else {
        bail!("--app {name}: {} hosts no such app", args.dir.display());
    };
    let make_op: MakeOp = match app.kind() {
        "null" => Box::new(move |_| {
            zz_apps::null::encode_op(&zz_apps::null::Op {
                payload: vec![0u8; payload],
            })
        }),
        "kv" => Box::new(move |index| {
            zz_apps::kv::encode_op(&zz_apps::kv::Op::Put {
                key: format!("bench-{index}").into_bytes(),
                value: vec![0u8; payload],
            })
        }),
        other => bail!("--app {other}: zz bench loads null or kv"),
    };
    Ok((app.id, make_op))
}

pub async fn run(args: &BenchArgs) -> Result<()> {
    let config = ClusterConfig::load(&args.dir)?;
    if args.clients == 0 || args.clients > config.clients {
        bail!(
            "--clients must be 1..={} (the ids {} provisions)",
            config.clients,
            args.dir.display()
        );
    }
    if let (Some(inject_at), Some(fault)) = (args.inject_at, args.fault) {
        if args.app.as_deref() != Some(zz_apps::kv::NAME) {
            bail!("--inject-at measures recovery of kv: add --app kv");
        }
        if args.value_bytes == 0 || args.value_bytes + 64 > config.protocol.request_bytes_max {
            bail!(
                "--value-bytes must be 1..={} (requests are at most {} B)",
                config.protocol.request_bytes_max - 64,
                config.protocol.request_bytes_max
            );
        }
        let recovery = crate::recovery::RecoveryArgs {
            dir: args.dir.clone(),
            clients: args.clients.min(64) as u32,
            state_mb: args.state_mb,
            value_bytes: args.value_bytes,
            inject_at,
            fault,
            inject_into: args.inject_into.clone(),
            json: args.json,
        };
        return crate::recovery::run(&recovery).await;
    }
    let (app, make_op) = operations(&config, args)?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let pool = ClientPool::connect_as(&args.dir, &args.client, 0, args.clients as u32)
        .context("cannot start the clients")?;
    for index in 0..args.clients as u32 {
        let client = pool.client(index);
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        let op = make_op(index);
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("valid histogram precision");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.invoke(app, op.clone()).await {
                    Ok(_) if measuring.load(Ordering::Relaxed) => {
                        let micros = started.elapsed().as_micros() as u64;
                        histogram
                            .record(micros.max(1))
                            .expect("histogram auto-resizes");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "request failed");
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let disk_before = disk_bytes_written(&args.dir, &config);
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.duration).with_style(
            ProgressStyle::with_template("measuring {bar:30} {pos}/{len} s")
                .expect("a valid progress template"),
        )
    };
    for _ in 0..args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        progress.inc(1);
    }
    progress.finish_and_clear();
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let disk_after = disk_bytes_written(&args.dir, &config);
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new(3).expect("valid histogram precision");
    for worker in workers {
        histogram.add(worker.await?)?;
    }
    let report = BenchReport {
        app: args.app.clone().unwrap_or_else(|| "ordering only".into()),
        clients: args.clients,
        payload_bytes: args.payload,
        duration_s: elapsed,
        requests: histogram.len(),
        errors: errors.load(Ordering::Relaxed),
        throughput_rps: histogram.len() as f64 / elapsed,
        latency_p50_us: histogram.value_at_quantile(0.50),
        latency_p90_us: histogram.value_at_quantile(0.90),
        latency_p99_us: histogram.value_at_quantile(0.99),
        latency_max_us: histogram.max(),
        disk_bytes_per_request: match (disk_before, disk_after) {
            (Some(before), Some(after)) if !histogram.is_empty() => {
                Some(after.saturating_sub(before) as f64 / histogram.len() as f64)
            }
            _ => None,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} clients, {} B payload, {:.1} s: {} requests answered ({} errors)",
            report.app,
            report.clients,
            report.payload_bytes,
            report.duration_s,
            report.requests,
            report.errors
        );
        println!("throughput: {:.0} requests/s", report.throughput_rps);
        println!(
            "latency: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            report.latency_p50_us as f64 / 1000.0,
            report.latency_p90_us as f64 / 1000.0,
            report.latency_p99_us as f64 / 1000.0,
            report.latency_max_us as f64 / 1000.0
        );
        if let Some(bytes) = report.disk_bytes_per_request {
            println!("disk: {bytes:.0} bytes written per request (every node of the platform)");
        }
    }
    Ok(())
}
