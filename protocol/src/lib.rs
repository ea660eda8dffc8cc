//! zz-protocol: the wire, which every zz node shares. Identifiers ([`ids`]), the protocol
//! parameters ([`params`]) and the cluster configuration types ([`config`]), every wire
//! message ([`messages`]), authentication ([`crypto`]), sealing and opening frames
//! ([`envelope`], [`validate`]), and the message bus ([`bus`]) with its in-memory and QUIC
//! implementations. What lives in a cluster directory besides its configuration (writing
//! it, run files, status files, injected faults) is `zz-cluster`'s.
//!
//! Calling protocol for a node: build an [`envelope::Endpoint`] from its keys; seal every
//! outgoing message with it and hand the frame to a [`bus::MessageBus`]; pass every
//! incoming frame to [`envelope::Endpoint::open`], count and drop what it rejects, and give
//! the [`envelope::Verified`] rest to the core.

pub mod bus;
pub mod crypto;
pub mod derived_keys;
pub mod envelope;
pub mod ids;
pub mod messages;
pub mod params;
pub mod validate;

pub use envelope::{Endpoint, FrameCounters, RejectReason, Rejection, RequestCheck, Verified};
pub use ids::{
    ActivatorId, AppId, ClientId, Digest, ExecutionId, NodeId, ReplicaId, Seq, Time, View,
};
pub use params::ProtocolParams;
pub mod config;
pub mod quic;
