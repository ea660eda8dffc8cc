//! `zz`: the operator CLI and every node's entry point.

mod apps;
mod bench;
mod clients;
mod containers;
mod gateway;
mod operate;
mod platform;
mod recovery;
mod sim;
mod status;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use zz_protocol::{ExecutionId, ReplicaId};

#[derive(Parser, Debug)]
#[command(
    name = "zz",
    version,
    about = "Byzantine-fault-tolerant services, the ZZ way"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a cluster directory (configuration, keys, certificates) for local use.
    Init(platform::InitArgs),
    /// Start the platform on 127.0.0.1, or in containers with `--backend docker`
    /// (initialising the directory if needed).
    Up(platform::UpArgs),
    /// Stop every process of a platform started with `zz up` (and remove its containers
    /// and network).
    Down(platform::DirArgs),
    /// The container image of this zz binary (`FROM scratch`, tagged by its hash).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show each node's role, app, state (active, paused), process and progress, and the
    /// activator's latest events.
    Status(status::StatusArgs),
    /// Grow or shrink an app's pool of paused standbys while the platform runs.
    Scale(operate::ScaleArgs),
    /// Make a node misbehave (crash, mute, slow, corrupt-reply, corrupt-state) or heal it.
    Inject(operate::InjectArgs),
    /// Client key files: add one (its own ids and keys), list them.
    #[command(subcommand)]
    Client(clients::ClientCommand),
    /// Use the kv app: put, get, del, scan.
    Kv(apps::KvArgs),
    /// Use the bank app: open, deposit, transfer, balance, audit.
    Bank(apps::BankArgs),
    /// Measure ordering throughput and latency against a running platform.
    Bench(bench::BenchArgs),
    /// Run one node of a cluster (what `zz up` starts).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run the deterministic simulator over many seeds.
    Sim(sim::SimArgs),
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build the image unless one of this binary exists already.
    Build,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// An agreement replica.
    Agreement {
        /// The cluster directory.
        #[arg(long)]
        cluster: PathBuf,
        /// This replica's id.
        #[arg(long)]
        id: u32,
    },
    /// An execution replica.
    Execution {
        /// The cluster directory.
        #[arg(long)]
        cluster: PathBuf,
        /// This execution replica's id.
        #[arg(long)]
        id: u32,
        /// Start active (load the state store, execute) or as a standby (load nothing,
        /// join when woken); the activator says which. Default: as configured.
        #[arg(long, value_parser = ["active", "standby"])]
        start_as: Option<String>,
    },
    /// The host's activator: starts execution replicas, wakes and replaces them.
    Activator {
        /// The cluster directory.
        #[arg(long)]
        cluster: PathBuf,
        /// Where it runs replicas: local processes, or containers (the platform that
        /// `zz up --backend docker` placed).
        #[arg(long, value_enum, default_value_t = platform::BackendKind::Process)]
        backend: platform::BackendKind,
    },
    /// The host's HTTP gateway: the apps on the web, each request one ordered operation.
    Gateway {
        /// The cluster directory.
        #[arg(long)]
        cluster: PathBuf,
    },
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on Ctrl-C or SIGTERM (what systemd, `docker stop` and `timeout` send).
pub(crate) async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A node's runtime: one thread; a node's work is one loop over its inbox and timers.
fn node_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Init(args) => {
            let config = platform::init(&args)?;
            println!(
                "wrote {} ({} agreement replicas, f={}, {} client ids)",
                args.dir.display(),
                config.replica_count(),
                config.protocol.f,
                config.clients
            );
        }
        Command::Up(args) => runtime()?.block_on(platform::up(&args))?,
        Command::Down(args) => runtime()?.block_on(platform::down(&args))?,
        Command::Image(ImageCommand::Build) => {
            println!("{}", runtime()?.block_on(containers::build_image())?)
        }
        Command::Status(args) => runtime()?.block_on(status::status(&args))?,
        Command::Scale(args) => runtime()?.block_on(operate::scale(&args))?,
        Command::Inject(args) => println!("{}", runtime()?.block_on(operate::inject(&args))?),
        Command::Node(NodeCommand::Activator { cluster, backend }) => {
            let runtime = node_runtime()?;
            runtime.block_on(run_activator(cluster, backend))?;
        }
        Command::Node(NodeCommand::Gateway { cluster }) => {
            runtime()?.block_on(gateway::run(&cluster))?
        }
        Command::Bench(args) => runtime()?.block_on(bench::run(&args))?,
        Command::Client(command) => clients::run(&command)?,
        Command::Kv(args) => runtime()?.block_on(apps::run_kv(&args))?,
        Command::Bank(args) => runtime()?.block_on(apps::run_bank(&args))?,
        Command::Node(NodeCommand::Execution {
            cluster,
            id,
            start_as,
        }) => {
            let config = zz_protocol::config::ClusterConfig::load(&cluster)?;
            let id = ExecutionId(id);
            let member = config
                .execution(id)
                .with_context(|| format!("execution replica {id} is not in the cluster"))?;
            let name = config
                .apps
                .iter()
                .find(|app| app.id == member.app)
                .map(|app| app.kind().to_string())
                .with_context(|| format!("execution replica {id} runs an unknown app"))?;
            let app = zz_apps::app_by_name(&name)
                .with_context(|| format!("zz has no app of kind {name:?}"))?;
            let preload_mb = (config.apps.iter())
                .find(|app| app.id == member.app)
                .map_or(0, |app| app.preload_mb);
            let genesis = (name == zz_apps::kv::NAME && preload_mb > 0).then(|| {
                let bytes = preload_mb * 1_000_000;
                let genesis: zz_execution::core::Genesis = std::sync::Arc::new(move |store| {
                    zz_apps::kv::preload(store, bytes, zz_apps::kv::PRELOAD_VALUE_BYTES)
                });
                genesis
            });
            let standby = start_as.map_or(member.standby, |role| role == "standby");
            let runtime = node_runtime()?;
            runtime.block_on(zz_execution::node::run_execution_node(
                &cluster,
                id,
                app,
                genesis,
                standby,
                shutdown_signal(),
            ))?;
        }
        Command::Node(NodeCommand::Agreement { cluster, id }) => {
            let runtime = node_runtime()?;
            runtime.block_on(zz_agreement::io::node::run_agreement_node(
                &cluster,
                ReplicaId(id),
                shutdown_signal(),
            ))?;
        }
        Command::Sim(args) => {
            if sim::run(&args) > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The activator node with the chosen backend.
async fn run_activator(cluster: PathBuf, backend: platform::BackendKind) -> Result<()> {
    use zz_activator::backend::docker::DockerBackend;
    use zz_activator::backend::process::ProcessBackend;
    use zz_activator::node::run_activator_node;
    match backend {
        platform::BackendKind::Process => {
            let exe = std::env::current_exe().context("cannot find the zz binary")?;
            let backend = ProcessBackend::new(&cluster, &exe);
            run_activator_node(&cluster, backend, shutdown_signal()).await?;
        }
        platform::BackendKind::Docker => {
            let platform =
                zz_activator::docker::DockerPlatform::load(&cluster)?.with_context(|| {
                    format!(
                        "{}: no docker.json; start it with `zz up --backend docker`",
                        cluster.display()
                    )
                })?;
            let docker = zz_activator::docker::connect().await?;
            let config = zz_protocol::config::ClusterConfig::load(&cluster)?;
            let backend = DockerBackend::new(docker, platform, config);
            run_activator_node(&cluster, backend, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// The error and its causes on one line, leaving out a cause its parent already quotes.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Sim(_)) {
        init_tracing();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("zz: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
