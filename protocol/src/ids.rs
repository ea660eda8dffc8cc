//! Identifiers. Every id is a newtype so that a view can never be passed where a sequence
//! number is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_newtype!(
    /// An agreement replica, numbered 0..n.
    ReplicaId(u32), "r"
);
id_newtype!(
    /// A client of the platform.
    ClientId(u64), "c"
);
id_newtype!(
    /// A PBFT view; the primary of view v is replica v mod n.
    View(u64), "v"
);
id_newtype!(
    /// A sequence number assigned by the primary to a batch.
    Seq(u64), "s"
);
id_newtype!(
    /// An application hosted by the platform.
    AppId(u32), "app"
);
id_newtype!(
    /// An execution replica (active or standby), numbered across all apps.
    ExecutionId(u32), "e"
);
id_newtype!(
    /// A host's activator: the daemon that keeps its standby replicas and wakes them.
    ActivatorId(u32), "a"
);

impl AppId {
    /// The app no execution replica runs: its requests are only ordered, and answered by
    /// the agreement replicas themselves (`zz bench` without `--app` measures ordering
    /// with it). No configured app may take its id.
    pub const ORDERING_ONLY: AppId = AppId(u32::MAX);
}

impl View {
    /// The replica that is primary in this view, for a cluster of `replica_count` replicas.
    pub fn primary(self, replica_count: usize) -> ReplicaId {
        assert!(replica_count > 0);
        ReplicaId((self.0 % replica_count as u64) as u32)
    }

    pub fn next(self) -> View {
        View(self.0.checked_add(1).expect("view overflow"))
    }
}

impl Seq {
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("sequence number overflow"))
    }
}

impl ReplicaId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ExecutionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Any node that can send or receive a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeId {
    Replica(ReplicaId),
    Client(ClientId),
    Execution(ExecutionId),
    Activator(ActivatorId),
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeId::Replica(r) => write!(f, "{r}"),
            NodeId::Client(c) => write!(f, "{c}"),
            NodeId::Execution(e) => write!(f, "{e}"),
            NodeId::Activator(a) => write!(f, "{a}"),
        }
    }
}

/// A point in time in microseconds. Cores never read a clock: their driver passes `Time` in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms * 1000)
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    pub fn saturating_add_micros(self, micros: u64) -> Time {
        Time(self.0.saturating_add(micros))
    }
    pub fn saturating_sub(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `parts`, concatenated.
    pub fn of(parts: &[&[u8]]) -> Digest {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Digest(hasher.finalize().into())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
