//! zz-execution: execution replicas (agreement separated from execution, Yin et al. SOSP
//! 2003; f+1 active replicas, Wood et al. EuroSys 2011). [`app`] holds the [`app::App`]
//! trait applications implement and the state access they get.

pub mod app;

pub use app::{App, ExecContext, StateAccess};
pub mod core;

pub use core::{DropReason, ExecCounters, ExecOutput, ExecutionConfig, ExecutionReplica};
pub mod driver;
pub mod fault;
pub mod fetcher;
pub mod join;
pub mod leases;
pub mod node;

pub use driver::ExecutionDriver;
pub use fault::FaultyOutputs;
