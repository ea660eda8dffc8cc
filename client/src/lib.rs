//! zz-client: how applications reach a zz platform. [`core::ClientCore`] is the sans-IO
//! client (f+1 voting on replies, retransmission); [`remote::Client`] runs it over QUIC.
//! A client never accepts a result fewer than f+1 replicas vouch for.

pub mod core;
pub mod remote;

pub use core::{Accepted, ClientCore, Destination, Voters};
pub use remote::{Client, ClientError, ClientPool};
