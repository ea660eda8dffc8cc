//! Tests of execution replicas in the configuration: validation, key files, and keys that
//! authenticate every message kind between execution replicas, replicas and clients.

use super::tests::{TempDir, init_cluster_with_standbys};
use super::*;
use crate::ids::{NodeId, Seq, View};
use crate::messages::{AppOrder, Executed, Message, NonDet, Reply, Request};

const E0: NodeId = NodeId::Execution(ExecutionId(0));
const R1: NodeId = NodeId::Replica(ReplicaId(1));
const C2: NodeId = NodeId::Client(ClientId(2));

/// kv and bank, f = 1: two active and one standby execution replica per app.
fn init_with_standbys(name: &str, base_port: u16) -> TempDir {
    init_cluster_with_standbys(name, base_port, 1)
}

fn app_order() -> Message {
    Message::AppOrder(AppOrder {
        app: AppId(0),
        seq: Seq(1),
        agreement_seq: Seq(3),
        nondet: NonDet {
            timestamp_ms: 5,
            seed: 6,
        },
        requests: Vec::new(),
    })
}

/// Keys written by init authenticate each flow of the ZZ design: orders from agreement to
/// execution, execution reports multicast back, a client's retransmission to an execution
/// replica, and an execution replica's reply to a client.
#[test]
fn execution_keys_authenticate_every_flow() {
    let dir = init_with_standbys("exec-keys", 17500);
    let (_, replica1) = endpoint_for_replica(&dir.0, ReplicaId(1)).unwrap();
    let (_, execution0) = endpoint_for_execution(&dir.0, ExecutionId(0)).unwrap();
    let (_, execution1) = endpoint_for_execution(&dir.0, ExecutionId(1)).unwrap();
    let (_, client) = endpoint_for_client(&dir.0, ClientId(2)).unwrap();

    let frame = replica1.seal(E0, &app_order()).unwrap();
    let opened = execution0.open(&frame).unwrap();
    assert_eq!((opened.from(), opened.message()), (R1, &app_order()));
    // Sealed for execution replica 0, it does not open at execution replica 1.
    assert!(execution1.open(&frame).is_err());

    let executed = Message::Executed(Executed {
        app: AppId(0),
        seq: Seq(1),
        replies: crate::ids::Digest([4; 32]),
    });
    let frame = execution0.seal_multicast(&executed);
    for replica in 0..4 {
        let (_, endpoint) = endpoint_for_replica(&dir.0, ReplicaId(replica)).unwrap();
        let opened = endpoint.open(&frame).unwrap();
        assert_eq!((opened.from(), opened.message()), (E0, &executed));
    }

    let request = Message::Request(client.authenticate_request(Request {
        app: AppId(0),
        client: ClientId(2),
        timestamp: 9,
        op: b"get x".to_vec(),
    }));
    let frame = client.seal(E0, &request).unwrap();
    let opened = execution0.open(&frame).unwrap();
    assert_eq!((opened.from(), opened.message()), (C2, &request));

    let reply = Message::Reply(Reply {
        view: View(0),
        client: ClientId(2),
        timestamp: 9,
        result: b"none".to_vec(),
    });
    let frame = execution0.seal(C2, &reply).unwrap();
    let opened = client.open(&frame).unwrap();
    assert_eq!((opened.from(), opened.message()), (E0, &reply));
}

/// Each broken `[[executions]]` entry is rejected with a message naming the field.
#[test]
fn bad_execution_configs_name_the_field() {
    let dir = init_with_standbys("exec-bad", 17600);
    let path = dir.0.join(CLUSTER_FILE);
    let good: ClusterConfig = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    type Break = fn(&mut ClusterConfig);
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "app not in apps",
            |config| config.executions[2].app = AppId(9),
            "executions[2].app: app 9 is not one of the [[apps]]",
        ),
        (
            "too few active",
            |config| config.executions[1].standby = true,
            "executions: app 0 (\"kv\") has 1 active",
        ),
        (
            "address of a replica",
            |config| config.executions[4].address = config.replicas[1].address,
            "executions[4].address: duplicate address 127.0.0.1:17601, also used by replicas[1].address",
        ),
        (
            "address of another execution replica",
            |config| config.executions[3].address = config.executions[0].address,
            "executions[3].address: duplicate address 127.0.0.1:17604, also used by executions[0].address",
        ),
        (
            "duplicate id",
            |config| config.executions[3].id = ExecutionId(1),
            "executions[3].id: duplicate id 1",
        ),
        (
            "id out of range",
            |config| config.executions[5].id = ExecutionId(6),
            "executions[5].id: 6 is outside 0..6",
        ),
        (
            "blank host",
            |config| config.executions[0].host = " ".into(),
            "executions[0].host:",
        ),
        (
            "missing certificate",
            |config| config.executions[3].certificate = "certs/missing.pem".into(),
            "executions[3].certificate:",
        ),
    ];
    for (name, break_it, expected) in cases {
        let mut config = good.clone();
        break_it(&mut config);
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let error = ClusterConfig::load(&dir.0).expect_err(name).to_string();
        assert!(
            error.contains(expected) && error.contains("cluster.toml"),
            "case {name}: {error:?} lacks {expected:?}"
        );
    }
    // A standby-only surplus is fine: f + 1 active replicas are all an app needs.
    let mut config = good.clone();
    config.executions[2].standby = false;
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    ClusterConfig::load(&dir.0).unwrap();
    std::fs::write(&path, toml::to_string(&good).unwrap()).unwrap();

    // Key files that do not fit the configuration are caught, and named.
    let execution_file = dir.0.join(execution_keys_file(ExecutionId(1)));
    let original = std::fs::read(&execution_file).unwrap();
    std::fs::copy(
        dir.0.join(execution_keys_file(ExecutionId(0))),
        &execution_file,
    )
    .unwrap();
    let error = load_execution_keys(&dir.0, ExecutionId(1))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("execution-1/keys.toml: execution: file is for execution replica 0"),
        "{error}"
    );
    std::fs::write(&execution_file, original).unwrap();
    let replica_file = dir.0.join(super::replica_keys_file(ReplicaId(0)));
    let text = std::fs::read_to_string(&replica_file).unwrap();
    let cut = text.rfind("[[execution_peers]]").unwrap();
    std::fs::write(&replica_file, &text[..cut]).unwrap();
    let error = load_replica_keys(&dir.0, ReplicaId(0))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("execution_peers: needs a key for each of the 6 execution replicas"),
        "{error}"
    );
}
