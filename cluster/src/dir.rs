//! The one place that names the files of a cluster directory, so that `zz init`, `zz up`,
//! `zz status`, `zz inject`, the activator's backends and the nodes agree:
//!
//! ```text
//! cluster.toml               the public configuration (zz_protocol::config reads it)
//! certs/                     certificates and public keys (ditto)
//! keys/<node>/               one node's secrets, owner-only (ditto)
//! docker.json                where a Docker platform lives on the engine
//! state/replica-<i>/records  agreement replica i's record file
//! state/execution-<i>/store.redb  execution replica i's state store (its last checkpoint)
//! state/activator.pools      who the activator holds active: epochs, active sets, pools
//! run/<node>/status.json     a node's status file, rewritten while it runs
//! run/<node>.pid             a node's process (the host writes it)
//! run/<node>.paused          how a paused node was paused (the host writes it)
//! control/<node>/fault       a fault `zz inject` asked the node to show (the host writes it)
//! run/activator.sock         the activator's control socket (`zz scale`)
//! logs/<node>.log            a node's log
//! ```
//!
//! `<node>` is [`node_name`]: `replica-2`, `execution-1`, `activator`. What a node itself
//! writes sits in folders of its own (`state/<node>/`, `run/<node>/`), and what it is told
//! in a folder only the host writes (`control/<node>/`), so that a container mounts its own
//! folders and nothing of any other node's ([`ClusterDir::node_mounts`]).

use std::path::{Path, PathBuf};
use zz_protocol::config::{
    ACTIVATOR_KEYS_FILE, CLIENT_KEYS_FILE, CLUSTER_FILE, execution_keys_file, replica_keys_file,
};
use zz_protocol::{ExecutionId, NodeId, ReplicaId};

/// The activator's name in file names, logs and `zz status`.
pub const ACTIVATOR_NODE: &str = "activator";

/// The name a node goes by in file names, logs and `zz status`.
pub fn node_name(node: NodeId) -> String {
    match node {
        NodeId::Replica(ReplicaId(id)) => format!("replica-{id}"),
        NodeId::Execution(ExecutionId(id)) => format!("execution-{id}"),
        NodeId::Activator(_) => ACTIVATOR_NODE.to_string(),
        NodeId::Client(client) => format!("client-{}", client.0),
    }
}

/// A cluster directory: every path inside it comes from here (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDir(PathBuf);

impl ClusterDir {
    pub fn new(path: impl Into<PathBuf>) -> ClusterDir {
        ClusterDir(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `cluster.toml`.
    pub fn cluster_file(&self) -> PathBuf {
        self.0.join(CLUSTER_FILE)
    }

    /// `keys/replica-<i>.toml`.
    pub fn replica_keys_file(&self, id: ReplicaId) -> PathBuf {
        self.0.join(replica_keys_file(id))
    }

    /// `keys/execution-<i>.toml`.
    pub fn execution_keys_file(&self, id: ExecutionId) -> PathBuf {
        self.0.join(execution_keys_file(id))
    }

    /// `keys/activator.toml`.
    pub fn activator_keys_file(&self) -> PathBuf {
        self.0.join(ACTIVATOR_KEYS_FILE)
    }

    /// `keys/clients.toml`.
    pub fn client_keys_file(&self) -> PathBuf {
        self.0.join(CLIENT_KEYS_FILE)
    }

    /// `docker.json`: present only for a platform `zz up --backend docker` placed.
    pub fn docker_platform_file(&self) -> PathBuf {
        self.0.join("docker.json")
    }

    /// `state/`: what outlives a process (record files, state stores).
    pub fn state_dir(&self) -> PathBuf {
        self.0.join("state")
    }

    /// `run/`: what a running platform keeps per node (status, pid, pause, fault).
    pub fn run_dir(&self) -> PathBuf {
        self.0.join("run")
    }

    /// `logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.0.join("logs")
    }

    /// The directories a running platform writes into: `run/`, `logs/` and `state/`.
    pub fn working_dirs(&self) -> [PathBuf; 3] {
        [self.run_dir(), self.logs_dir(), self.state_dir()]
    }

    /// `state/replica-<i>/records`: agreement replica `id`'s record file.
    pub fn records_path(&self, id: ReplicaId) -> PathBuf {
        self.node_state_dir(NodeId::Replica(id)).join("records")
    }

    /// `state/execution-<i>/store.redb`: execution replica `id`'s state store.
    pub fn execution_store_path(&self, id: ExecutionId) -> PathBuf {
        self.node_state_dir(NodeId::Execution(id))
            .join("store.redb")
    }

    /// `keys/<node>/`: the node's secrets.
    pub fn node_secrets_dir(&self, node: NodeId) -> PathBuf {
        self.0
            .join(zz_protocol::config::node_secrets_dir(&node_name(node)))
    }

    /// `state/<node>/`: what the node keeps across restarts.
    pub fn node_state_dir(&self, node: NodeId) -> PathBuf {
        self.state_dir().join(node_name(node))
    }

    /// `run/<node>/`: what the node writes while it runs (its status file).
    pub fn node_run_dir(&self, node: NodeId) -> PathBuf {
        self.run_dir().join(node_name(node))
    }

    /// `control/<node>/`: what the host tells the node (its fault); the node only reads it.
    pub fn node_control_dir(&self, node: NodeId) -> PathBuf {
        self.0.join("control").join(node_name(node))
    }

    /// Everything `node` needs of the directory, to mount into its container at the same
    /// paths: the public configuration read-only, its own secrets and control folder
    /// read-only, its own state and run folders writable. No other node's file is here.
    pub fn node_mounts(&self, node: NodeId) -> Vec<NodeMount> {
        let read_only = |path: PathBuf| NodeMount {
            path,
            writable: false,
        };
        let writable = |path: PathBuf| NodeMount {
            path,
            writable: true,
        };
        vec![
            read_only(self.cluster_file()),
            read_only(self.0.join("certs")),
            read_only(self.node_secrets_dir(node)),
            read_only(self.node_control_dir(node)),
            writable(self.node_state_dir(node)),
            writable(self.node_run_dir(node)),
        ]
    }

    /// `state/activator.pools`: the activator's record of each app's epoch, active set
    /// and pool, which a restart of the platform starts from.
    pub fn activator_pools_path(&self) -> PathBuf {
        self.state_dir().join("activator.pools")
    }

    /// `run/<node>/status.json`: the status file `node` rewrites while it runs.
    pub fn status_path(&self, node: NodeId) -> PathBuf {
        self.node_run_dir(node).join("status.json")
    }

    /// `run/gateway/status.json`: where the host's HTTP gateway serves (its URL).
    pub fn gateway_status_path(&self) -> PathBuf {
        self.run_dir().join("gateway").join("status.json")
    }

    /// `run/gateway.pid`: the process the gateway runs as.
    pub fn gateway_pid_path(&self) -> PathBuf {
        self.run_dir().join("gateway.pid")
    }

    /// `logs/gateway.log`.
    pub fn gateway_log_path(&self) -> PathBuf {
        self.logs_dir().join("gateway.log")
    }

    /// `run/<node>.pid`: the process `node` runs as.
    pub fn pid_path(&self, node: NodeId) -> PathBuf {
        self.run_file(node, "pid")
    }

    /// `run/<node>.paused`: how `node` was paused, while it is.
    pub fn pause_path(&self, node: NodeId) -> PathBuf {
        self.run_file(node, "paused")
    }

    /// `control/<node>/fault`: the fault `zz inject` asked `node` to show; none means
    /// honest.
    pub fn fault_path(&self, node: NodeId) -> PathBuf {
        self.node_control_dir(node).join("fault")
    }

    /// `run/activator.sock`: the activator's control socket (`zz scale` talks to it).
    pub fn activator_socket(&self) -> PathBuf {
        self.run_dir().join("activator.sock")
    }

    /// `logs/<node>.log`.
    pub fn log_path(&self, node: NodeId) -> PathBuf {
        self.logs_dir().join(format!("{}.log", node_name(node)))
    }

    fn run_file(&self, node: NodeId, extension: &str) -> PathBuf {
        self.run_dir()
            .join(format!("{}.{extension}", node_name(node)))
    }

    /// The process id recorded for `node`, if any.
    pub fn read_pid(&self, node: NodeId) -> Option<u32> {
        std::fs::read_to_string(self.pid_path(node))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// One path of a cluster directory a node's container mounts at the same path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMount {
    pub path: PathBuf,
    pub writable: bool,
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_protocol::ActivatorId;

    /// The names of cluster format 4; a change of them is a change of format.
    #[test]
    fn every_file_has_its_format_4_name() {
        let dir = ClusterDir::new("/c");
        let replica = NodeId::Replica(ReplicaId(2));
        let execution = NodeId::Execution(ExecutionId(1));
        let activator = NodeId::Activator(ActivatorId(0));
        let cases = [
            (dir.cluster_file(), "/c/cluster.toml"),
            (
                dir.replica_keys_file(ReplicaId(2)),
                "/c/keys/replica-2/keys.toml",
            ),
            (
                dir.execution_keys_file(ExecutionId(1)),
                "/c/keys/execution-1/keys.toml",
            ),
            (dir.activator_keys_file(), "/c/keys/activator/keys.toml"),
            (dir.client_keys_file(), "/c/keys/clients.toml"),
            (dir.docker_platform_file(), "/c/docker.json"),
            (dir.records_path(ReplicaId(2)), "/c/state/replica-2/records"),
            (
                dir.execution_store_path(ExecutionId(1)),
                "/c/state/execution-1/store.redb",
            ),
            (dir.status_path(replica), "/c/run/replica-2/status.json"),
            (dir.status_path(execution), "/c/run/execution-1/status.json"),
            (dir.status_path(activator), "/c/run/activator/status.json"),
            (dir.pid_path(execution), "/c/run/execution-1.pid"),
            (dir.pause_path(execution), "/c/run/execution-1.paused"),
            (dir.fault_path(replica), "/c/control/replica-2/fault"),
            (dir.activator_socket(), "/c/run/activator.sock"),
            (dir.log_path(activator), "/c/logs/activator.log"),
        ];
        for (path, expected) in cases {
            assert_eq!(path, PathBuf::from(expected));
        }
    }

    #[test]
    fn a_node_mounts_nothing_of_another_node() {
        let dir = ClusterDir::new("/c");
        let mine = NodeId::Execution(ExecutionId(1));
        let other = NodeId::Execution(ExecutionId(2));
        let mounts = dir.node_mounts(mine);
        for private in [
            dir.execution_keys_file(ExecutionId(2)),
            dir.fault_path(other),
            dir.status_path(other),
            dir.execution_store_path(ExecutionId(2)),
            dir.client_keys_file(),
            dir.fault_path(mine),
        ] {
            let reachable = mounts.iter().find(|mount| private.starts_with(&mount.path));
            let writable = reachable.is_some_and(|mount| mount.writable);
            let own_read_only = private == dir.fault_path(mine);
            assert!(
                if own_read_only {
                    reachable.is_some() && !writable
                } else {
                    reachable.is_none()
                },
                "{} reachable as {reachable:?}",
                private.display()
            );
        }
        assert!(mounts.iter().any(|mount| {
            mount.writable
                && dir
                    .execution_store_path(ExecutionId(1))
                    .starts_with(&mount.path)
        }));
    }
}
