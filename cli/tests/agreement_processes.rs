//! Real processes over QUIC on 127.0.0.1: four `zz node agreement` replicas order requests
//! from clients; the primary is killed and the rest go on after a view change; the killed
//! replica restarts from its records and catches up.

mod common;

use common::{ZZ, free_base_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zz_agreement::io::node::NodeStatus;
use zz_client::Client;
use zz_cluster::ClusterDir;
use zz_protocol::{AppId, ClientId, NodeId, ReplicaId};

/// An app no execution replica runs: the agreement replicas answer its requests
/// themselves, so this test needs only them.
const ORDERING_ONLY: AppId = AppId(u32::MAX);

/// Kills every replica it started when the test ends, however it ends.
struct Cluster {
    dir: PathBuf,
    replicas: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.replicas.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn start_replica(&mut self, id: usize) {
        let log = std::fs::File::create(self.dir.join(format!("replica-{id}.log"))).unwrap();
        let child = Command::new(ZZ)
            .args(["node", "agreement", "--cluster"])
            .arg(&self.dir)
            .args(["--id", &id.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a replica");
        self.replicas[id] = Some(child);
    }

    fn kill_replica(&mut self, id: usize) {
        let mut child = self.replicas[id].take().expect("replica running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn status(&self, id: usize) -> Option<NodeStatus> {
        let path = ClusterDir::new(&self.dir).status_path(NodeId::Replica(ReplicaId(id as u32)));
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

fn init(dir: &Path) {
    let output = Command::new(ZZ)
        .args(["init", "--dir"])
        .arg(dir)
        .args(["--f", "1", "--clients", "16"])
        .args(["--base-port", &free_base_port(4, 7, 37).to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "zz init: {output:?}");
}

/// `requests` requests spread over `clients` concurrent clients; all must be accepted.
async fn order(dir: &Path, clients: u64, requests: u64, first_client: u64) {
    let mut tasks = Vec::new();
    for id in first_client..first_client + clients {
        let client = Client::connect(dir, ClientId(id)).expect("connect");
        let count = requests / clients;
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                client
                    .invoke(ORDERING_ONLY, i.to_le_bytes().to_vec())
                    .await
                    .unwrap_or_else(|error| panic!("client {id} request {i}: {error}"));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_order_survive_a_primary_crash_and_the_crashed_one_catches_up() {
    let dir = std::env::temp_dir().join(format!("zz-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    init(&dir);
    let mut cluster = Cluster {
        dir: dir.clone(),
        replicas: (0..4).map(|_| None).collect(),
    };
    for id in 0..4 {
        cluster.start_replica(id);
    }
    wait_for("every replica to report", Duration::from_secs(20), || {
        (0..4).all(|id| cluster.status(id).is_some())
    })
    .await;

    // 1,000 requests from 10 clients, all accepted with f+1 matching replies.
    tokio::time::timeout(Duration::from_secs(60), order(&dir, 10, 1000, 0))
        .await
        .expect("1,000 requests ordered within 60 s");
    wait_for(
        "the status files to show the requests",
        // A replica that missed the last commits catches up on a retransmission timer.
        Duration::from_secs(15),
        || {
            let statuses: Vec<_> = (0..4).filter_map(|id| cluster.status(id)).collect();
            let highest = statuses.iter().map(|s| s.last_executed).max();
            // A replica that fell behind may have jumped to a checkpoint past some batches
            // (a state transfer), which it counts as transferred, not ordered.
            statuses.len() == 4
                && statuses.iter().all(|s| {
                    s.requests_ordered >= 1000
                        || (s.state_transfers > 0 && Some(s.last_executed) == highest)
                })
        },
    )
    .await;

    // Kill the primary of view 0; the other three must change view and go on ordering.
    assert!(cluster.status(0).unwrap().primary);
    cluster.kill_replica(0);
    tokio::time::timeout(Duration::from_secs(60), order(&dir, 5, 200, 10))
        .await
        .expect("200 more requests ordered after the primary died");
    // Status files are rewritten every 250 ms, so give them a moment to show the new view.
    wait_for(
        "the survivors to report a view past 0",
        Duration::from_secs(5),
        || (1..4).all(|id| cluster.status(id).is_some_and(|s| s.view >= 1)),
    )
    .await;

    // Restart the killed replica: it restores from its records and catches up.
    cluster.start_replica(0);
    let target = (1..4)
        .map(|id| cluster.status(id).unwrap().last_executed)
        .min()
        .unwrap();
    wait_for(
        "the restarted replica to catch up",
        Duration::from_secs(30),
        || cluster.status(0).is_some_and(|s| s.last_executed >= target),
    )
    .await;
    // And it takes part again: more requests are ordered everywhere.
    tokio::time::timeout(Duration::from_secs(60), order(&dir, 5, 100, 10))
        .await
        .expect("requests ordered after the restart");
    let latest = (1..4)
        .map(|id| cluster.status(id).unwrap().last_executed)
        .max()
        .unwrap();
    wait_for(
        "every replica to reach the same point",
        Duration::from_secs(30),
        || {
            (0..4).all(|id| {
                cluster
                    .status(id)
                    .is_some_and(|s| s.last_executed >= latest)
            })
        },
    )
    .await;
}
