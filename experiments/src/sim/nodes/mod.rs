//! The simulated nodes: agreement replicas, execution replicas, clients and the activator,
//! each the real core or driver behind its own endpoint, and what the world does when a
//! frame or a timer reaches one of them.

mod activator;
mod byzantine_client;
mod clients;
mod executions;
mod replicas;

pub(crate) use activator::SimActivator;
pub(crate) use byzantine_client::SimByzantineClient;
pub(crate) use clients::{SimClient, voters};
pub(crate) use executions::{SimExecution, bad_buckets, fresh_execution_driver};
pub(crate) use replicas::SimReplica;

use super::scenario;

/// Apps in every simulated cluster: app 0 runs kv, app 1 runs null; each has f+1
/// active execution replicas and the scenario's standbys.
pub(crate) const APPS: [&str; scenario::APP_COUNT as usize] = ["kv", "null"];
