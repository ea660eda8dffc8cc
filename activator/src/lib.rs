//! zz-activator: a host's daemon that keeps paused standby execution replicas and wakes
//! them. [`policy::Policy`] is the sans-IO decision core: agreement replicas' alarms and
//! time in, commands for a backend (thaw, pause, destroy, start a standby) and membership
//! notices out. It acts only on f+1 matching alarms from distinct agreement replicas, so
//! f Byzantine agreement replicas can never wake or destroy anything. [`backend`] carries
//! the commands out (local processes, or containers through [`docker`]), [`node`] runs
//! it all over QUIC, and [`control`] is the socket `zz scale` talks to.

pub mod backend;
pub mod control;
pub mod docker;
pub mod freezer;
pub mod node;
pub mod policy;
