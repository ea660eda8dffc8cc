//! zz-agreement: the PBFT agreement cluster.
//!
//! [`core::Replica`] is the sans-IO replica: messages and time in, messages, persistence
//! records and ordered batches out. [`driver::ReplicaDriver`] wraps it with the I/O-free
//! parts every host needs (sealing and opening frames, counting what was dropped, the
//! persisted log), and [`node`] runs a driver over QUIC in a tokio process. The simulator
//! in zz-experiments drives the same driver over a virtual network.

pub mod core;
pub mod detect;
pub mod persist;

pub use core::{Output, Replica, ReplicaConfig};
pub mod driver;
pub mod node;
pub mod orders;
pub mod storage;
