//! zz-execution: execution replicas (agreement separated from execution, Yin et al. SOSP
//! 2003; f+1 active replicas, Wood et al. EuroSys 2011). [`app`] holds the [`app::App`]
//! trait applications implement and the state access they get; [`core`] is the sans-IO
//! replica (orders in, replies, reports and bucket needs out); [`driver`] wraps it with
//! frame sealing and opening, and the sans-IO parts around execution: [`join`] (a woken
//! replica restarting from the stable checkpoint), [`fetcher`] (which bucket to ask of
//! which peer, and when) and [`leases`] (the snapshots fetchers still use); [`durable`]
//! makes checkpoints durable before they are reported (the sink the driver saves through,
//! the redb state store, the restore from it); [`fault`] is what an injected fault does to
//! its outputs; [`node`] runs the driver in the node harness.
//!
//! Calling protocol: see [`driver::ExecutionDriver`]: frames, a wake, checkpoint writes
//! done and timeouts in, time on every input; the node and the simulator call it alike.

pub mod app;

pub use app::{App, ExecContext, StateAccess};
pub mod core;

pub use core::{DropReason, ExecCounters, ExecOutput, ExecutionConfig, ExecutionReplica};
pub mod driver;
pub mod durable;
pub mod fault;
pub mod fetcher;
pub mod join;
pub mod leases;
pub mod node;
pub mod reports;

pub use driver::ExecutionDriver;
pub use fault::FaultyOutputs;
