//! `zz scale` and `zz inject`: operating a running platform. Scaling asks the activator,
//! over its control socket, to grow or shrink an app's standby pool. Injection makes one
//! node misbehave: it kills the process or container (crash, kill), cuts a container off
//! its network (partition), or writes the node's fault file and signals it (SIGUSR2) so
//! that it shows the fault at once; heal undoes any of them.

use crate::containers::{self, ContainerFault};
use crate::platform::{self, Node, nodes};
use anyhow::{Context, Result, bail};
use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use zz_activator::control::{self, ControlAnswer, ControlRequest};
use zz_activator::freezer;
use zz_cluster::dir::process_alive;
use zz_cluster::fault::SLOW_DELAY_MS_DEFAULT;
use zz_cluster::{ClusterDir, Fault};
use zz_protocol::config::ClusterConfig;

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

/// What `zz inject` does to a node: show a [`Fault`] (the type the nodes and the
/// simulator share), or one of the operator's actions that are no fault of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Crash kills the node; the others are written to its fault file.
    Fault(Fault),
    /// The same as crash: kill the container (or the process).
    Kill,
    /// Cut the node's container off the platform network (Docker platforms).
    Partition,
    /// Undo the fault: reconnect a partitioned container, restart a crashed agreement
    /// replica.
    Heal,
}

impl Injection {
    /// The name the command line takes.
    pub fn name(self) -> &'static str {
        match self {
            Injection::Fault(fault) => fault.name(),
            Injection::Kill => "kill",
            Injection::Partition => "partition",
            Injection::Heal => "heal",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Injection::Fault(Fault::Crash) => "Kill the process (or the container)",
            Injection::Kill => "The same as crash: kill the container (or the process)",
            Injection::Partition => {
                "Cut the node's container off the platform network (Docker platforms)"
            }
            Injection::Fault(Fault::Mute) => "Drop every message the node sends",
            Injection::Fault(Fault::Slow { .. }) => {
                "Delay every message the node sends by --delay-ms"
            }
            Injection::Fault(Fault::CorruptReply) => "An execution replica answers clients wrongly",
            Injection::Fault(Fault::CorruptState) => {
                "An execution replica serves wrong buckets and reports wrong checkpoint roots"
            }
            Injection::Fault(Fault::Honest) | Injection::Heal => {
                "Undo the fault: reconnect a partitioned container, restart a crashed \
                 agreement replica"
            }
        }
    }
}

/// The names `zz inject` takes, in the order its help lists them; honest is `heal` here.
impl ValueEnum for Injection {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Injection::Fault(Fault::Crash),
            Injection::Kill,
            Injection::Partition,
            Injection::Fault(Fault::Mute),
            Injection::Fault(Fault::Slow {
                delay_ms: SLOW_DELAY_MS_DEFAULT,
            }),
            Injection::Fault(Fault::CorruptReply),
            Injection::Fault(Fault::CorruptState),
            Injection::Heal,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.help()))
    }
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// The cluster directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The node, as `zz status` names it (replica-2, execution-1).
    pub node: String,
    pub fault: Injection,
    /// With slow: the delay added to every message.
    #[arg(long, default_value_t = SLOW_DELAY_MS_DEFAULT)]
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
    let pid = node.pid(dir).filter(|pid| process_alive(*pid));
    let fault = match args.fault {
        Injection::Fault(Fault::Crash) | Injection::Kill if docker => {
            return containers::inject(dir, &config, node, ContainerFault::Kill).await;
        }
        Injection::Partition if docker => {
            return containers::inject(dir, &config, node, ContainerFault::Partition).await;
        }
        Injection::Partition => bail!(
            "partition cuts a container off its network: it needs a platform started with \
             `zz up --backend docker` (try mute here)"
        ),
        Injection::Fault(Fault::Crash) | Injection::Kill => {
            let pid = pid.with_context(|| format!("{name} is not running"))?;
            // A frozen process dies only once thawed.
            platform::resume_if_paused(dir, node, pid);
            freezer::signal(pid, "KILL").with_context(|| format!("cannot kill {name}"))?;
            return Ok(format!("{name}: crashed (killed pid {pid})"));
        }
        Injection::Heal => Fault::Honest,
        Injection::Fault(Fault::Slow { .. }) => Fault::Slow {
            delay_ms: args.delay_ms,
        },
        Injection::Fault(fault)
            if fault.is_execution_only() && !matches!(node, Node::Execution(_)) =>
        {
            bail!(
                "{name} is an agreement replica: corrupt-reply and corrupt-state are faults of execution replicas"
            )
        }
        Injection::Fault(fault) => fault,
    };
    let files = ClusterDir::new(dir);
    fault
        .write(&files, node.id())
        .with_context(|| format!("cannot write {}", files.fault_path(node.id()).display()))?;
    if docker {
        let action = match fault {
            Fault::Honest => ContainerFault::Heal,
            _ => ContainerFault::Signal,
        };
        let done = containers::inject(dir, &config, node, action).await?;
        return Ok(match fault {
            Fault::Honest => done,
            _ => format!("{name}: {fault} ({done})"),
        });
    }
    match (pid, node) {
        (Some(pid), _) => {
            freezer::signal(pid, "USR2").with_context(|| format!("cannot signal {name}"))?;
            Ok(format!("{name}: {fault}"))
        }
        (None, Node::Replica(_)) if fault == Fault::Honest => {
            platform::spawn(dir, node)?;
            Ok(format!("{name}: restarted from its records"))
        }
        (None, Node::Replica(_)) => bail!("{name} is not running; `heal` restarts it"),
        (None, _) => {
            bail!("{name} is not running; the activator replaces crashed execution replicas")
        }
    }
}
