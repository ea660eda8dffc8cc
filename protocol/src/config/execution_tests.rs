//! Tests of execution replicas in the configuration: init, validation, key files, and keys
//! that authenticate every message kind between execution replicas, replicas and clients.

use super::tests::{TempDir, temp_dir, test_params};
use super::*;
use crate::ids::{NodeId, Seq, View};
use crate::messages::{AppOrder, Executed, Message, NonDet, Reply, Request};
use std::collections::BTreeMap;

const E0: NodeId = NodeId::Execution(ExecutionId(0));
const R1: NodeId = NodeId::Replica(ReplicaId(1));
const C2: NodeId = NodeId::Client(ClientId(2));

/// kv and bank, f = 1: two active and one standby execution replica per app.
fn init_with_standbys(name: &str, base_port: u16) -> TempDir {
    let dir = TempDir(temp_dir(name));
    let options = InitOptions {
        base_port,
        clients: 4,
        apps: vec!["kv".into(), "bank".into()],
        standbys_per_app: 1,
        params: test_params(),
        ..InitOptions::default()
    };
    init_cluster(&dir.0, options).expect("init_cluster");
    dir
}

/// Init places f+1 active replicas and the standbys per app, with consecutive ids,
/// addresses after the agreement replicas, and distinct host labels within an app.
#[test]
fn init_writes_execution_replicas_per_app() {
    let dir = init_with_standbys("exec-init", 17400);
    let config = ClusterConfig::load(&dir.0).unwrap();
    assert_eq!(config.execution_count(), 6);
    let active = config.active_groups();
    let expected: BTreeMap<AppId, Vec<ExecutionId>> = BTreeMap::from([
        (AppId(0), vec![ExecutionId(0), ExecutionId(1)]),
        (AppId(1), vec![ExecutionId(3), ExecutionId(4)]),
    ]);
    assert_eq!(active, expected);
    // Standbys belong to their app's group: they may become active.
    let groups = config.execution_groups();
    assert_eq!(
        groups[&AppId(0)],
        vec![ExecutionId(0), ExecutionId(1), ExecutionId(2)]
    );
    assert_eq!(
        groups[&AppId(1)],
        vec![ExecutionId(3), ExecutionId(4), ExecutionId(5)]
    );
    let kv_all = vec![ExecutionId(0), ExecutionId(1), ExecutionId(2)];
    assert_eq!(config.executions_of(AppId(0)), kv_all);
    assert!(config.executions_of(AppId(7)).is_empty());
    for (index, execution) in config.executions.iter().enumerate() {
        assert_eq!(config.execution(execution.id), Some(execution));
        assert_eq!(execution.address.port(), 17400 + 4 + index as u16);
        assert_eq!(execution.standby, index % 3 == 2, "{execution:?}");
    }
    assert_eq!(config.execution(ExecutionId(6)), None);
    for app in [AppId(0), AppId(1)] {
        let hosts: BTreeSet<&str> = (config.executions.iter())
            .filter(|execution| execution.app == app)
            .map(|execution| execution.host.as_str())
            .collect();
        assert_eq!(hosts.len(), 3, "{app}: replicas share a host label");
    }

    let keys = load_execution_keys(&dir.0, ExecutionId(5)).unwrap();
    assert_eq!(keys.id, NodeId::Execution(ExecutionId(5)));
    // Four agreement replicas and the two other execution replicas of its app.
    assert_eq!(keys.peer_keys.len(), 4 + 2);
    assert!(keys.signing_key.is_none() && keys.client_master.is_some());
    let keys = load_replica_keys(&dir.0, ReplicaId(2)).unwrap();
    // Three other replicas, six execution replicas, the activator.
    assert_eq!(keys.peer_keys.len(), 3 + 6 + 1);
    let keys = load_client_keys(&dir.0, ClientId(1)).unwrap();
    assert_eq!(keys.peer_keys.len(), 4 + 6);
    load_execution_tls_key(&dir.0, &config, ExecutionId(5)).unwrap();
    config
        .load_execution_certificate(&dir.0, ExecutionId(5))
        .unwrap();
    let error = load_execution_keys(&dir.0, ExecutionId(6)).unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::UnknownExecution {
                execution_count: 6,
                ..
            }
        ),
        "{error}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["keys/execution-5.toml", "keys/execution-5.key.pem"] {
            let mode = std::fs::metadata(dir.0.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
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
    let keys_dir = dir.0.join("keys");
    let execution_file = keys_dir.join("execution-1.toml");
    let original = std::fs::read(&execution_file).unwrap();
    std::fs::copy(keys_dir.join("execution-0.toml"), &execution_file).unwrap();
    let error = load_execution_keys(&dir.0, ExecutionId(1))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("execution-1.toml: execution: file is for execution replica 0"),
        "{error}"
    );
    std::fs::write(&execution_file, original).unwrap();
    let replica_file = keys_dir.join("replica-0.toml");
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

/// Init refuses options that cannot make a valid cluster, before writing anything.
#[test]
fn init_rejects_bad_execution_options() {
    let dir = TempDir(temp_dir("exec-bad-options"));
    let options = InitOptions {
        apps: vec!["kv".into()],
        executions_per_app: 1,
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options).unwrap_err().to_string();
    assert!(error.contains("executions_per_app"), "{error}");
    // The replicas fit below 65535; their execution replicas do not.
    let options = InitOptions {
        base_port: 65531,
        apps: vec!["kv".into()],
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options).unwrap_err().to_string();
    assert!(error.contains("base_port"), "{error}");
    assert!(!dir.0.exists());
}

/// A cluster without apps has no execution replicas, and its files carry none of the new
/// fields: files written before execution replicas existed load the same way.
#[test]
fn clusters_without_execution_replicas_keep_the_old_files() {
    let dir = TempDir(temp_dir("exec-none"));
    let options = InitOptions {
        base_port: 17700,
        params: test_params(),
        ..InitOptions::default()
    };
    let config = init_cluster(&dir.0, options).unwrap();
    assert_eq!(config.execution_count(), 0);
    assert!(config.execution_groups().is_empty());
    for file in [CLUSTER_FILE, "keys/replica-0.toml", CLIENT_KEYS_FILE] {
        let text = std::fs::read_to_string(dir.0.join(file)).unwrap();
        for field in [
            "[[executions",
            "execution_peers",
            "execution_client_masters",
        ] {
            assert!(!text.contains(field), "{file}:\n{text}");
        }
    }
    endpoint_for_replica(&dir.0, ReplicaId(0)).unwrap();
    endpoint_for_client(&dir.0, ClientId(0)).unwrap();
}

/// The activator and agreement replicas share keys: a wake from a replica opens at the
/// activator, a membership notice from the activator opens at a replica, and execution
/// replicas of one app can talk to each other (state transfer) but not across apps.
#[test]
fn init_provisions_the_activator_and_execution_pairs() {
    use crate::config::endpoint_for_activator;
    use crate::messages::{Membership, Wake, WakeReason};
    let dir = TempDir(temp_dir("exec-activator"));
    let options = InitOptions {
        base_port: 17800,
        apps: vec!["kv".into(), "bank".into()],
        standbys_per_app: 1,
        params: test_params(),
        ..InitOptions::default()
    };
    let config = init_cluster(&dir.0, options).unwrap();
    let (_, activator) = endpoint_for_activator(&dir.0).unwrap();
    let (_, replica) = endpoint_for_replica(&dir.0, ReplicaId(1)).unwrap();
    let wake = Message::Wake(Wake {
        app: AppId(0),
        epoch: 0,
        seq: Seq(3),
        reason: WakeReason::Silence,
    });
    let frame = replica.seal(activator.id(), &wake).unwrap();
    assert_eq!(activator.open(&frame).unwrap().message(), &wake);
    let membership = Message::Membership(Membership {
        app: AppId(0),
        epoch: 1,
        active: vec![ExecutionId(0), ExecutionId(2)],
    });
    let frame = activator.seal(replica.id(), &membership).unwrap();
    assert_eq!(replica.open(&frame).unwrap().message(), &membership);
    // A replica may not send a membership notice; the activator may not send orders.
    let (_, other) = endpoint_for_replica(&dir.0, ReplicaId(2)).unwrap();
    let frame = other.seal(replica.id(), &membership).unwrap();
    assert!(replica.open(&frame).is_err());

    let kv = config.executions_of(AppId(0));
    let bank = config.executions_of(AppId(1));
    let (_, first) = endpoint_for_execution(&dir.0, kv[0]).unwrap();
    assert!(first.seal(NodeId::Execution(kv[1]), &wake).is_some());
    assert!(first.seal(NodeId::Execution(bank[0]), &wake).is_none());
}
