//! The ZZ liaison between agreement and execution: what an agreement replica does for the
//! execution replicas beyond ordering. [`orders`] routes each app's orders to its active
//! execution replicas, retains them until a stable execution checkpoint and recovers the
//! ones it missed from peers; [`detect`] compares what the execution replicas report and
//! raises alarms for the activator. Both go by one [`membership::MembershipTable`]
//! (configured and active members per app, and the epoch): the router owns it and
//! the detector is handed it by reference.

pub mod detect;
pub mod membership;
pub mod orders;
