//! Tests of configuration loading and validation, on cluster directories that `zz init`'s
//! own code writes (the tests of writing itself are `zz_cluster::init`'s).

use super::*;
use crate::ids::{ClientId, NodeId, ReplicaId, Seq, View};
use crate::messages::{Message, Reply, Request, Status};

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "zz-test-{name}-{}-{unique}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes the directory when the test ends, pass or fail.
pub(crate) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parameters for tests. Spelled out rather than `ProtocolParams::default()` so that these
/// tests do not depend on the defaults' frame limit covering a full default batch.
pub(crate) fn test_params() -> ProtocolParams {
    ProtocolParams {
        frame_bytes_max: 64 * 1024 * 1024,
        ..ProtocolParams::default()
    }
}

/// A fresh cluster of kv and bank (f = 1, four clients, `standbys_per_app` paused standbys
/// per app on top of f+1 active execution replicas), written by `zz init`'s own code.
pub(crate) fn init_cluster_with_standbys(
    name: &str,
    base_port: u16,
    standbys_per_app: usize,
) -> TempDir {
    let dir = TempDir(temp_dir(name));
    let mut options = zz_cluster::InitOptions {
        base_port,
        clients: 4,
        apps: vec!["kv".into(), "bank".into()],
        standbys_per_app,
        ..zz_cluster::InitOptions::default()
    };
    // zz_cluster links this crate's library build, whose types are not this test build's:
    // hand it plain values only; the tests read back what it wrote with this build's code.
    options.params.frame_bytes_max = test_params().frame_bytes_max;
    // No node runs from these directories: they need no state.
    zz_cluster::init_cluster(&dir.0, options, |_, _| Ok(())).expect("init_cluster");
    dir
}

pub(crate) fn init_test_cluster(name: &str, base_port: u16) -> TempDir {
    init_cluster_with_standbys(name, base_port, 0)
}

fn status() -> Message {
    Message::Status(Status {
        view: View(3),
        last_executed: Seq(9),
        stable: Seq(8),
    })
}

/// Keys written by init authenticate in both directions between replicas, and between a
/// client and a replica (the client's derived key matches the replica's derivation).
#[test]
fn init_then_load_gives_keys_that_authenticate_both_ways() {
    let dir = init_test_cluster("roundtrip", 17000);
    let config = ClusterConfig::load(&dir.0).unwrap();
    assert_eq!(config.replicas.len(), 4);
    assert_eq!(config.clients, 4);
    assert_eq!(config.app_by_name("bank").unwrap().id, AppId(1));
    assert_eq!(config.replicas[2].address.to_string(), "127.0.0.1:17002");

    let (_, replica0) = endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
    let (_, replica1) = endpoint_for_replica(&dir.0, ReplicaId(1)).unwrap();
    let (_, client) = endpoint_for_client(&dir.0, ClientId(3)).unwrap();
    let r0 = NodeId::Replica(ReplicaId(0));
    let r1 = NodeId::Replica(ReplicaId(1));

    let frame = replica0.seal(r1, &status()).unwrap();
    let opened = replica1.open(&frame).unwrap();
    assert_eq!((opened.from(), opened.message()), (r0, &status()));
    let frame = replica1.seal(r0, &status()).unwrap();
    assert_eq!(replica0.open(&frame).unwrap().from(), r1);
    // A frame sealed for replica 1 does not open at replica 2.
    let (_, replica2) = endpoint_for_replica(&dir.0, ReplicaId(2)).unwrap();
    let frame = replica0.seal(r1, &status()).unwrap();
    assert!(replica2.open(&frame).is_err());

    let request = Message::Request(client.authenticate_request(Request {
        app: AppId(0),
        client: ClientId(3),
        timestamp: 1,
        op: b"put x 1".to_vec(),
    }));
    let frame = client.seal(r1, &request).unwrap();
    let opened = replica1.open(&frame).unwrap();
    assert_eq!(opened.from(), NodeId::Client(ClientId(3)));
    // The request's authenticator also convinces the other replicas, as in a batch.
    let Message::Request(authenticated) = opened.message() else {
        panic!("not a request")
    };
    assert!(replica0.check_request(authenticated, crate::RequestCheck::Received));

    let reply = Message::Reply(Reply {
        view: View(0),
        client: ClientId(3),
        timestamp: 1,
        result: b"ok".to_vec(),
    });
    let frame = replica1.seal(NodeId::Client(ClientId(3)), &reply).unwrap();
    assert_eq!(client.open(&frame).unwrap().message(), &reply);

    // One key per replica and one per execution replica (f + 1 = 2 for each of two apps).
    assert_eq!(config.execution_count(), 4);
    let keys = load_client_keys(&dir.0, ClientId(0)).unwrap();
    assert_eq!(keys.peer_keys.len(), 4 + 4);
    assert!(keys.client_master.is_none());
    // Its signing key is the one whose public half the replicas hold.
    let public = load_client_verifying_keys(&dir.0, &config).unwrap();
    assert_eq!(public.len(), 4);
    let signing = keys.signing_key.expect("a client signs its requests");
    assert_eq!(public.get(ClientId(0)), Some(&signing.verifying_key()));
    load_tls_key(&dir.0, &config, ReplicaId(3)).unwrap();
}

#[test]
fn unknown_ids_are_refused() {
    let dir = init_test_cluster("unknown-ids", 17200);
    let error = load_client_keys(&dir.0, ClientId(4)).unwrap_err();
    assert!(
        matches!(error, ConfigError::UnknownClient { clients: 4, .. }),
        "{error}"
    );
    let error = load_replica_keys(&dir.0, ReplicaId(4)).unwrap_err();
    assert!(
        matches!(error, ConfigError::UnknownReplica { .. }),
        "{error}"
    );
}

/// Each broken configuration is rejected with a message naming the field at fault.
#[test]
fn bad_configs_name_the_field() {
    let dir = init_test_cluster("bad-configs", 17300);
    let path = dir.0.join(CLUSTER_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "duplicate address",
            good.replacen("127.0.0.1:17301", "127.0.0.1:17300", 1),
            "cluster.toml: replicas[1].address: duplicate address 127.0.0.1:17300",
        ),
        (
            "duplicate id",
            good.replacen("id = 2", "id = 1", 1),
            "replicas[2].id: duplicate id 1",
        ),
        (
            "missing field",
            good.replacen("clients = 4", "", 1),
            "missing field `clients`",
        ),
        (
            "unknown field",
            good.replacen("clients = 4", "clients = 4\ncolour = 1", 1),
            "unknown field `colour`",
        ),
        (
            "older format",
            good.replacen("format = 5\n", "", 1),
            "written by an older zz (no format) (this zz reads format 5); its state files cannot be read here: move",
        ),
        (
            "other format",
            good.replacen("format = 5", "format = 7", 1),
            "written by format 7 (this zz reads format 5)",
        ),
        (
            "no clients",
            good.replacen("clients = 4", "clients = 0", 1),
            "clients: must be at least 1",
        ),
        ("bad f", good.replacen("f = 1", "f = 5", 1), "protocol.f:"),
        (
            "wrong replica count",
            good.replacen("f = 1", "f = 2", 1),
            "replicas: f = 2 needs exactly 7",
        ),
        (
            "bad verifying key",
            {
                let config: ClusterConfig = toml::from_str(&good).unwrap();
                good.replacen(&config.replicas[0].verifying_key, "abcd", 1)
            },
            "replicas[0].verifying_key: expected 64 hex digits",
        ),
        (
            "missing certificate",
            good.replacen("certs/replica-3.pem", "certs/missing.pem", 1),
            "replicas[3].certificate:",
        ),
        (
            "bad app name",
            good.replacen("\"bank\"", "\"Bank\"", 1),
            "apps[1].name:",
        ),
        (
            "duplicate app name",
            good.replacen("\"bank\"", "\"kv\"", 1),
            "apps[1].name: duplicate name",
        ),
        (
            "bad address",
            good.replacen("127.0.0.1:17302", "nowhere", 1),
            "line ",
        ),
    ];
    for (name, text, expected) in cases {
        assert_ne!(text, good, "case {name} did not change the file");
        std::fs::write(&path, &text).unwrap();
        let error = ClusterConfig::load(&dir.0).expect_err(name).to_string();
        assert!(
            error.contains(expected),
            "case {name}: {error:?} lacks {expected:?}"
        );
        assert!(
            error.contains("cluster.toml"),
            "case {name}: {error:?} lacks the file"
        );
    }
    std::fs::write(&path, &good).unwrap();
    ClusterConfig::load(&dir.0).unwrap();

    // A key file from another replica is caught, and named.
    std::fs::copy(
        dir.0.join(replica_keys_file(ReplicaId(1))),
        dir.0.join(replica_keys_file(ReplicaId(0))),
    )
    .unwrap();
    let error = load_replica_keys(&dir.0, ReplicaId(0))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("replica-0/keys.toml: replica: file is for replica 1"),
        "{error}"
    );

    let error = ClusterConfig::load(&dir.0.join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("nowhere/cluster.toml"), "{error}");
}

#[test]
fn hex_round_trips_and_rejects_garbage() {
    let bytes: [u8; 32] = std::array::from_fn(|index| (index * 7) as u8);
    assert_eq!(hex_decode_32(&hex_encode(&bytes)).unwrap(), bytes);
    assert!(hex_decode_32(&"zz".repeat(32)).is_err());
    assert!(hex_decode_32("00").is_err());
    assert!(hex_decode_32(&"é".repeat(32)).is_err());
}
