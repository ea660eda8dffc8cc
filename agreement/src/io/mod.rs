//! The parts of an agreement replica that do or wrap I/O: [`driver`] seals and opens
//! frames around the core and carries out its outputs (I/O-free itself, generic over the
//! bus and the storage), [`storage`] keeps the persisted records, and [`node`] runs a
//! driver over QUIC in a tokio process.

pub mod driver;
pub mod node;
pub mod storage;
