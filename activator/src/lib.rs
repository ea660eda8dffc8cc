//! zz-activator: a host's daemon that keeps paused standby execution replicas and wakes
//! them. [`policy::Policy`] is the sans-IO decision core: agreement replicas' alarms and
//! time in, commands for a backend (thaw, pause, destroy, start a standby) and membership
//! notices out. It acts only on f+1 matching alarms from distinct agreement replicas, so
//! f Byzantine agreement replicas can never wake or destroy anything. [`backend`] carries
//! the commands out (local processes, or containers through [`docker`]);
//! [`driver::ActivatorDriver`] joins policy, endpoint, bus and backend without reading a
//! clock (the simulator runs it with a simulated backend); [`pools_file`] keeps who is
//! active across restarts; [`node`] runs the driver over QUIC, and [`control`] is the
//! socket `zz scale` talks to.

pub mod backend;
pub mod control;
pub mod docker;
pub mod driver;
pub mod freezer;
pub mod node;
pub mod policy;
pub mod pools_file;
pub mod status;
