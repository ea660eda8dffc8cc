//! `zz scale` and `zz inject`: operating a running platform. Scaling asks the activator,
//! over its control socket, to grow or shrink an app's standby pool. Injection makes one
//! node misbehave: it kills the process or container (crash, kill), cuts a container off
//! its network (partition), or writes the node's fault file and signals it (SIGUSR2) so
//! that it shows the fault at once; heal undoes any of them.

use crate::containers::{self, ContainerFault};
use crate::platform::{self, Node, nodes};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use zz_activator::control::{self, ControlAnswer, ControlRequest};
use zz_activator::freezer;
use zz_protocol::config::ClusterConfig;
use zz_protocol::run_dir::{self, InjectedFault};

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The app whose standby pool changes (kv, bank, ...).
    pub app: String,
    /// Paused standbys the app should have.
    #[arg(long)]
    pub standbys: usize,
}

pub async fn scale(args: &ScaleArgs) -> Result<()> {
    ClusterConfig::load(&args.dir)?;
    let request = ControlRequest::Scale {
        app: args.app.clone(),
        standbys: args.standbys,
    };
    let answer = control::request(&args.dir, &request)
        .await
        .with_context(|| {
            format!(
                "cannot reach the activator of {} (is the platform up? `zz up --dir {0}`)",
                args.dir.display()
            )
        })?;
    match answer {
        ControlAnswer::Done(text) => {
            println!("{text}");
            Ok(())
        }
        ControlAnswer::Refused(text) => bail!("{text}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// Kill the process (or the container).
    Crash,
    /// The same as crash: kill the container (or the process).
    Kill,
    /// Cut the node's container off the platform network (Docker platforms).
    Partition,
    /// Drop every message the node sends.
    Mute,
    /// Delay every message the node sends by --delay-ms.
    Slow,
    /// An execution replica answers clients wrongly.
    CorruptReply,
    /// An execution replica serves wrong buckets and reports wrong checkpoint roots.
    CorruptState,
    /// Undo the fault: reconnect a partitioned container, restart a crashed agreement
    /// replica.
    Heal,
}

impl Fault {
    /// The name the command line takes.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Kill => "kill",
            Fault::Partition => "partition",
            Fault::Mute => "mute",
            Fault::Slow => "slow",
            Fault::CorruptReply => "corrupt-reply",
            Fault::CorruptState => "corrupt-state",
            Fault::Heal => "heal",
        }
    }
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The node, as `zz status` names it (replica-2, execution-1).
    pub node: String,
    pub fault: Fault,
    /// With slow: the delay added to every message.
    #[arg(long, default_value_t = 200)]
    pub delay_ms: u64,
}

/// Inject the fault; returns what was done, for the operator.
pub async fn inject(args: &InjectArgs) -> Result<String> {
    let dir = &args.dir;
    let config = ClusterConfig::load(dir)?;
    let Some(node) = Node::parse(&config, &args.node) else {
        let names: Vec<String> = (nodes(&config).into_iter())
            .filter(|node| *node != Node::Activator)
            .map(Node::name)
            .collect();
        bail!(
            "no node named {:?}; try one of {}",
            args.node,
            names.join(", ")
        );
    };
    if node == Node::Activator {
        bail!("the activator is trusted like a host's control daemon: inject faults into replicas");
    }
    let name = node.name();
    let docker = containers::is_docker(dir);
    let pid = node.pid(dir).filter(|pid| run_dir::process_alive(*pid));
    let fault = match args.fault {
        Fault::Crash | Fault::Kill if docker => {
            return containers::inject(dir, &config, node, ContainerFault::Kill).await;
        }
        Fault::Partition if docker => {
            return containers::inject(dir, &config, node, ContainerFault::Partition).await;
        }
        Fault::Partition => bail!(
            "partition cuts a container off its network: it needs a platform started with \
             `zz up --backend docker` (try mute here)"
        ),
        Fault::Crash | Fault::Kill => {
            let pid = pid.with_context(|| format!("{name} is not running"))?;
            // A frozen process dies only once thawed.
            platform::resume_if_paused(dir, node, pid);
            freezer::signal(pid, "KILL").with_context(|| format!("cannot kill {name}"))?;
            return Ok(format!("{name}: crashed (killed pid {pid})"));
        }
        Fault::Heal => InjectedFault::Honest,
        Fault::Mute => InjectedFault::Mute,
        Fault::Slow => InjectedFault::Slow {
            delay_ms: args.delay_ms,
        },
        Fault::CorruptReply | Fault::CorruptState if !matches!(node, Node::Execution(_)) => {
            bail!(
                "{name} is an agreement replica: corrupt-reply and corrupt-state are faults of execution replicas"
            )
        }
        Fault::CorruptReply => InjectedFault::CorruptReply,
        Fault::CorruptState => InjectedFault::CorruptState,
    };
    let fault_path = run_dir::fault_path(dir, &name);
    if fault == InjectedFault::Honest {
        let _ = std::fs::remove_file(&fault_path);
    } else {
        let json = serde_json::to_vec(&fault)?;
        std::fs::write(&fault_path, json)
            .with_context(|| format!("cannot write {}", fault_path.display()))?;
    }
    if docker {
        let action = match fault {
            InjectedFault::Honest => ContainerFault::Heal,
            _ => ContainerFault::Signal,
        };
        let done = containers::inject(dir, &config, node, action).await?;
        return Ok(match fault {
            InjectedFault::Honest => done,
            _ => format!("{name}: {} ({done})", fault.name()),
        });
    }
    match (pid, node) {
        (Some(pid), _) => {
            freezer::signal(pid, "USR2").with_context(|| format!("cannot signal {name}"))?;
            Ok(format!("{name}: {}", fault.name()))
        }
        (None, Node::Replica(_)) if fault == InjectedFault::Honest => {
            platform::spawn(dir, node)?;
            Ok(format!("{name}: restarted from its records"))
        }
        (None, Node::Replica(_)) => bail!("{name} is not running; `heal` restarts it"),
        (None, _) => {
            bail!("{name} is not running; the activator replaces crashed execution replicas")
        }
    }
}
