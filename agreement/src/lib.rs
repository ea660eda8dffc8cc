//! zz-agreement: the PBFT agreement cluster.
//!
//! Laid out as it thinks:
//!
//! - [`core`]: the sans-IO PBFT replica ([`Replica`]): verified messages and time in;
//!   messages, persistence records ([`core::persist::Record`]) and ordered batches out.
//! - [`liaison`]: the ZZ liaison to the execution replicas: per-app order routing and
//!   recovery ([`liaison::orders`]) and divergence detection ([`liaison::detect`]).
//! - [`io`]: the driver ([`ReplicaDriver`]) that wraps the core and the liaison with the
//!   I/O-free parts every host needs (sealing and opening frames, counting what was
//!   dropped, the persisted log), the record storage, and the node that runs a driver
//!   over QUIC in a tokio process. The simulator in zz-experiments drives the same
//!   driver over a virtual network.
//!
//! Calling protocol: build a [`Replica`] (new, or restored from its records), wrap it in
//! a [`ReplicaDriver`] with its endpoint, bus and storage, then feed the driver frames
//! ([`ReplicaDriver::handle_frame`]) and timer expiries
//! ([`ReplicaDriver::handle_timeout`] at [`ReplicaDriver::poll_timeout`]); it persists
//! before it sends: what follows from records not synced yet waits for the host's call to
//! [`ReplicaDriver::sync_and_send_held`], once per turn (one sync for the whole turn). It
//! hands ordered batches up as [`Delivery`]s ([`ReplicaDriver::take_deliveries`]).

pub mod core;
pub mod io;
pub mod liaison;

pub use crate::core::{Output, Replica, ReplicaConfig};
pub use crate::io::driver::{Delivery, ReplicaDriver};
