//! A Byzantine client floods a running platform through the front door, with ids and keys
//! of its own (`zz client add`): requests of the largest size allowed as fast as it can
//! sign them, requests whose authenticator holds for some replicas only, bad signatures,
//! an app that does not exist, retransmissions of old requests to agreement and execution
//! replicas (which could wake standbys), and garbage frames. Meanwhile a correct client
//! goes on writing and reading. Every node's resident memory must stay under a stated
//! bound, the correct client's every request must succeed, and its retransmissions may
//! wake standbys no more often than the per-client limit.

mod common;

use bytes::Bytes;
use common::{Platform, ZZ, free_base_port, up_detached, zz, zz_ok};
use std::process::Command;
use std::time::{Duration, Instant};
use zz_apps::kv;
use zz_client::ClientPool;
use zz_protocol::bus::MessageBus;
use zz_protocol::config::{ClusterConfig, load_client_file};
use zz_protocol::messages::{AuthenticatedRequest, Message, Request};
use zz_protocol::quic::QuicBus;
use zz_protocol::{AppId, ClientId, Endpoint, ExecutionId, NodeId, ReplicaId};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(20);
/// The bound every node's resident memory must stay under, in MiB. What a node may be
/// made to hold by peers is bounded well below it: its inbox (256 MiB across every sender,
/// and 8 MiB for this client's frames), one waiting request per client, the agreement
/// window's batches; a node at rest takes some 20 to 40 MiB.
const NODE_RSS_MAX_MIB: u64 = 400;
/// Frames the attacker sends per tick, and the tick.
const FRAMES_PER_TICK: usize = 24;
const TICK: Duration = Duration::from_millis(10);
/// How often one client's retransmissions may wake an app's standbys at most (ten resend
/// intervals of one second, `CLIENT_WAKE_INTERVALS`).
const CLIENT_WAKE_SPAN: Duration = Duration::from_secs(10);

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Every node process of the platform: its name and pid, from the pid files.
fn node_pids(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir.join("run")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(node) = name.strip_suffix(".pid")
            && let Ok(text) = std::fs::read_to_string(entry.path())
            && let Ok(pid) = text.trim().parse()
        {
            pids.push((node.to_string(), pid));
        }
    }
    pids.sort();
    pids
}

/// The attacker: its endpoint, its bus, and what it has sent.
struct Attacker {
    endpoint: Endpoint,
    bus: QuicBus,
    replicas: Vec<NodeId>,
    executions: Vec<NodeId>,
    kv: AppId,
    timestamp: u64,
    old: Vec<AuthenticatedRequest>,
    sent: u64,
}

impl Attacker {
    fn request(&mut self, app: AppId, bytes: usize) -> AuthenticatedRequest {
        self.timestamp += 1;
        let NodeId::Client(client) = self.endpoint.id() else {
            unreachable!("a client endpoint")
        };
        let op = kv::encode_op(&kv::Op::Put {
            key: b"mallory".to_vec(),
            value: vec![0x66; bytes],
        });
        self.endpoint.authenticate_request(Request {
            app,
            client,
            timestamp: self.timestamp,
            op,
        })
    }

    fn send_to_each(&mut self, nodes: &[NodeId], request: AuthenticatedRequest) {
        let message = Message::Request(request);
        for node in nodes {
            if let Some(frame) = self.endpoint.seal(*node, &message) {
                self.bus.send(*node, Bytes::from(frame));
                self.sent += 1;
            }
        }
    }

    /// One tick's worth of attacks, cycling through the kinds.
    fn tick(&mut self, round: usize, request_bytes_max: usize) {
        let replicas = self.replicas.clone();
        let executions = self.executions.clone();
        for index in 0..FRAMES_PER_TICK / replicas.len() {
            let request = self.request(self.kv, request_bytes_max - 64);
            match (round + index) % 6 {
                // The largest request allowed, fresh each time.
                0 | 1 => {
                    if self.old.len() < 16 {
                        self.old.push(request.clone());
                    }
                    self.send_to_each(&replicas, request);
                }
                // Valid for half the replicas only.
                2 => {
                    let mut partial = request;
                    for mac in partial.auth.0.iter_mut().step_by(2) {
                        mac[0] ^= 1;
                    }
                    self.send_to_each(&replicas, partial);
                }
                // A signature that does not verify.
                3 => {
                    let mut forged = request;
                    forged.signature.0[0] ^= 1;
                    self.send_to_each(&replicas, forged);
                }
                // An app nobody hosts, and an old request retransmitted to everyone.
                4 => {
                    let unknown = self.request(AppId(4242), 16);
                    self.send_to_each(&replicas, unknown);
                    if let Some(old) = self.old.first().cloned() {
                        let everyone = [replicas.clone(), executions.clone()].concat();
                        self.send_to_each(&everyone, old);
                    }
                }
                // Garbage.
                _ => {
                    for node in &replicas {
                        let junk = vec![(round % 251) as u8; 60 * 1024];
                        self.bus.send(*node, Bytes::from(junk));
                        self.sent += 1;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_byzantine_client_leaves_memory_bounded_and_correct_clients_served() {
    let dir = std::env::temp_dir().join(format!("zz-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 67, 29).to_string();
    let _platform = Platform(&dir);
    up_detached(&dir, "kv", &port);
    let add = Command::new(ZZ)
        .args(["client", "add", "mallory", "--ids", "1", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(add.status.success(), "zz client add: {add:?}");
    zz_ok(&["kv", "put", "warm", "up"], &dir);

    let config = ClusterConfig::load(&dir).unwrap();
    let kv_app = config.app_by_name("kv").unwrap().id;
    let keys = load_client_file(&dir, &config, "mallory").unwrap();
    let endpoint = Endpoint::new(
        keys[0].clone(),
        config.verifying_keys(),
        config.protocol.clone(),
    )
    .with_clients_provisioned(config.clients);
    let (bus, _inbox) = QuicBus::start_client_host_with(&dir, &config, keys).unwrap();
    let replicas = (0..config.replica_count() as u32)
        .map(|id| NodeId::Replica(ReplicaId(id)))
        .collect();
    let executions = (0..config.executions.len() as u32)
        .map(|id| NodeId::Execution(ExecutionId(id)))
        .collect();
    let mut attacker = Attacker {
        endpoint,
        bus,
        replicas,
        executions,
        kv: kv_app,
        timestamp: 0,
        old: Vec::new(),
        sent: 0,
    };
    let request_bytes_max = config.protocol.request_bytes_max;
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let mut round = 0;
        while started.elapsed() < FLOOD {
            attacker.tick(round, request_bytes_max);
            round += 1;
            tokio::time::sleep(TICK).await;
        }
        attacker.sent
    });

    // The correct client writes and reads all along; the memory of every node is sampled.
    let pool = ClientPool::connect(&dir, ClientId(0), 1).unwrap();
    let client = pool.client(0);
    let pids = node_pids(&dir);
    assert!(pids.len() >= 7, "{pids:?}");
    let mut peak: Vec<u64> = vec![0; pids.len()];
    let mut slowest = Duration::ZERO;
    let mut written = 0u64;
    let started = Instant::now();
    while started.elapsed() < FLOOD {
        let key = format!("key{written}").into_bytes();
        let put = kv::encode_op(&kv::Op::Put {
            key,
            value: written.to_le_bytes().to_vec(),
        });
        let asked = Instant::now();
        let result = client
            .invoke_with_deadline(kv_app, put, Duration::from_secs(10))
            .await;
        assert!(result.is_ok(), "put {written} during the flood: {result:?}");
        slowest = slowest.max(asked.elapsed());
        written += 1;
        for (index, (_, pid)) in pids.iter().enumerate() {
            peak[index] = peak[index].max(rss_mib(*pid).unwrap_or(0));
        }
    }
    let sent = flood.await.unwrap();
    let report: Vec<String> = (pids.iter().zip(&peak))
        .map(|((node, _), mib)| format!("{node} {mib} MiB"))
        .collect();
    println!(
        "flood: {sent} frames; correct client: {written} puts, slowest {slowest:?}; peak memory: {}",
        report.join(", ")
    );
    assert!(
        written >= 10,
        "the correct client got {written} puts through"
    );
    for ((node, _), mib) in pids.iter().zip(&peak) {
        assert!(
            *mib <= NODE_RSS_MAX_MIB,
            "{node} reached {mib} MiB (bound {NODE_RSS_MAX_MIB} MiB): {}",
            report.join(", ")
        );
    }
    // Every write is there.
    for index in [0, written / 2, written - 1] {
        let key = format!("key{index}").into_bytes();
        let get = kv::encode_op(&kv::Op::Get { key });
        let result = client.invoke(kv_app, get).await.unwrap();
        let expected = kv::Outcome::Value(Some(index.to_le_bytes().to_vec()));
        assert_eq!(kv::decode_result(&result).unwrap(), expected);
    }
    // Its retransmissions wake a standby now and then, never more often than the per-client
    // limit allows (once per ten resend intervals, about 10 s); no replica is reported faulty.
    let status = zz(&["status", "--json"], &dir);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let events = report["events"].as_array().unwrap();
    let kinds = |kind: &str| {
        (events.iter())
            .filter(|e| e["event"]["kind"] == kind)
            .count()
    };
    let allowed = FLOOD.as_secs() / CLIENT_WAKE_SPAN.as_secs() + 1;
    assert!(
        kinds("wake-quorum") as u64 <= allowed,
        "more than {allowed} wakes: {report}"
    );
    assert_eq!(
        kinds("faulty"),
        0,
        "no correct replica reported faulty: {report}"
    );
}
