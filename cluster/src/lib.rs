//! zz-cluster: a cluster directory and what lives in it. [`init`] writes a fresh one
//! (`zz init`); [`dir`] names every file in it; [`status_file`] writes the status files
//! nodes keep there; [`fault`] is the one injected-fault type, which `zz inject` writes
//! there, the nodes show and the simulator draws; [`fault_bus`] is the message bus that
//! shows mute and slow in a real node; [`harness`] is the loop every node kind runs in.
//! The configuration's types and their reading stay in `zz_protocol::config`: every node
//! needs them, and they are part of the wire's contract.
//!
//! Calling protocol: `zz init` calls [`init_cluster`] once; every node and tool then
//! names its files through a [`ClusterDir`]; every node process runs its driver in a
//! [`harness::Harness`].

pub mod clients;
pub mod dir;
pub mod fault;
pub mod fault_bus;
pub mod harness;
pub mod init;
pub mod status_file;

pub use clients::{AddClientError, add_client};
pub use dir::{ClusterDir, NodeMount, node_name};
pub use fault::Fault;
pub use init::{InitOptions, init_cluster, save_cluster_config};
