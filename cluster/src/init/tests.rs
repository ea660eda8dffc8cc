//! Tests of writing cluster directories: what `init_cluster` writes (and refuses to), read
//! back with the configuration's own loaders.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use zz_protocol::config::{
    endpoint_for_activator, endpoint_for_client, endpoint_for_execution, endpoint_for_replica,
    load_client_keys, load_execution_keys, load_execution_tls_key, load_replica_keys,
};
use zz_protocol::messages::{Membership, Message, Wake, WakeReason};
use zz_protocol::{ClientId, NodeId, Seq};

/// A fresh, empty directory under the system temp dir, unique to this process and call;
/// removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "zz-cluster-test-{name}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The state a test cluster starts from: none (no node runs from these directories).
fn no_state(_: &ClusterDir, _: &ClusterConfig) -> Result<(), ConfigError> {
    Ok(())
}

/// Parameters for tests, as the configuration's own tests use them.
fn test_params() -> ProtocolParams {
    ProtocolParams {
        frame_bytes_max: 64 * 1024 * 1024,
        ..ProtocolParams::default()
    }
}

/// kv and bank, f = 1, four clients: f+1 active and `standbys_per_app` standby execution
/// replicas per app.
fn init_test_cluster(name: &str, base_port: u16, standbys_per_app: usize) -> TempDir {
    let dir = TempDir::new(name);
    let options = InitOptions {
        base_port,
        clients: 4,
        apps: vec!["kv".into(), "bank".into()],
        standbys_per_app,
        params: test_params(),
        ..InitOptions::default()
    };
    init_cluster(&dir.0, options, no_state).expect("init_cluster");
    dir
}

#[test]
fn init_refuses_an_existing_cluster_and_keys_are_owner_only() {
    let dir = init_test_cluster("refuse", 17100, 0);
    let error = init_cluster(&dir.0, InitOptions::default(), no_state).unwrap_err();
    assert!(matches!(error, ConfigError::AlreadyExists { .. }));
    assert!(error.to_string().contains("cluster.toml"), "{error}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode_of = |path: &str| {
            let metadata = std::fs::metadata(dir.0.join(path)).unwrap();
            metadata.permissions().mode() & 0o777
        };
        for file in [
            "keys/replica-0/keys.toml",
            "keys/replica-0/tls.key.pem",
            "keys/activator/keys.toml",
            "keys/clients.toml",
        ] {
            assert_eq!(mode_of(file), 0o600, "{file}");
        }
        for folder in [
            "keys",
            "keys/replica-0",
            "keys/execution-0",
            "keys/activator",
        ] {
            assert_eq!(mode_of(folder), 0o700, "{folder}");
        }
    }
}

#[test]
fn init_rejects_bad_options_before_writing() {
    let dir = TempDir::new("bad-options");
    let options = InitOptions {
        apps: vec!["Bad Name".into()],
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options, no_state)
        .unwrap_err()
        .to_string();
    assert!(error.contains("apps[0].name"), "{error}");
    assert!(!dir.0.exists());
    let options = InitOptions {
        base_port: 65534,
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options, no_state)
        .unwrap_err()
        .to_string();
    assert!(error.contains("base_port"), "{error}");
}

/// Init places f+1 active replicas and the standbys per app, with consecutive ids,
/// addresses after the agreement replicas, and distinct host labels within an app.

#[test]
fn init_writes_execution_replicas_per_app() {
    let dir = init_test_cluster("exec-init", 17400, 1);
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
        for file in ["keys/execution-5/keys.toml", "keys/execution-5/tls.key.pem"] {
            let mode = std::fs::metadata(dir.0.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}

/// Init refuses options that cannot make a valid cluster, before writing anything.

#[test]
fn init_rejects_bad_execution_options() {
    let dir = TempDir::new("exec-bad-options");
    let options = InitOptions {
        apps: vec!["kv".into()],
        executions_per_app: 1,
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options, no_state)
        .unwrap_err()
        .to_string();
    assert!(error.contains("executions_per_app"), "{error}");
    // The replicas fit below 65535; their execution replicas do not.
    let options = InitOptions {
        base_port: 65531,
        apps: vec!["kv".into()],
        params: test_params(),
        ..InitOptions::default()
    };
    let error = init_cluster(&dir.0, options, no_state)
        .unwrap_err()
        .to_string();
    assert!(error.contains("base_port"), "{error}");
    assert!(!dir.0.exists());
}

/// A cluster without apps has no execution replicas, and its files carry none of the new
/// fields: files written before execution replicas existed load the same way.

#[test]
fn clusters_without_execution_replicas_keep_the_old_files() {
    let dir = TempDir::new("exec-none");
    let options = InitOptions {
        base_port: 17700,
        params: test_params(),
        ..InitOptions::default()
    };
    let config = init_cluster(&dir.0, options, no_state).unwrap();
    assert_eq!(config.execution_count(), 0);
    assert!(config.execution_groups().is_empty());
    for file in [CLUSTER_FILE, "keys/replica-0/keys.toml", CLIENT_KEYS_FILE] {
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
    let dir = TempDir::new("exec-activator");
    let options = InitOptions {
        base_port: 17800,
        apps: vec!["kv".into(), "bank".into()],
        standbys_per_app: 1,
        params: test_params(),
        ..InitOptions::default()
    };
    let config = init_cluster(&dir.0, options, no_state).unwrap();
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

/// The nodes' state is written into `state/` before `cluster.toml`: if writing it fails,
/// the directory holds no usable cluster, and init can be run again.
#[test]
fn init_writes_the_state_before_the_cluster_file_and_can_be_retried_after_it_fails() {
    let dir = TempDir::new("state");
    let failing = |files: &ClusterDir, config: &ClusterConfig| {
        assert!(files.state_dir().is_dir());
        assert!(!files.cluster_file().exists());
        assert_eq!(config.replica_count(), 4);
        Err(ConfigError::io(
            &files.state_dir(),
            std::io::ErrorKind::StorageFull.into(),
        ))
    };
    let error = init_cluster(&dir.0, InitOptions::default(), failing).unwrap_err();
    assert!(error.to_string().contains("state"), "{error}");
    assert!(!ClusterDir::new(&dir.0).cluster_file().exists());

    let mut written = Vec::new();
    init_cluster(&dir.0, InitOptions::default(), |files, config| {
        for replica in &config.replicas {
            let path = files.records_path(replica.id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").map_err(|source| ConfigError::io(&path, source))?;
            written.push(path);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(written.len(), 4);
    assert!(written.iter().all(|path| path.exists()));
}

/// `zz init` writes the `default` client file; `add_client` gives each new client the
/// lowest free ids and a file that holds their keys alone (owner-only), the same keys the
/// operator's provisioning file derives; it refuses a taken name, a bad name, and more ids
/// than are free, naming the problem.
#[test]
fn client_files_hold_their_own_ids_keys_and_refuse_what_does_not_fit() {
    use crate::clients::{AddClientError, add_client};
    use zz_protocol::config::{
        DEFAULT_CLIENT, client_range_keys, list_client_files, load_client_file,
    };
    let dir = init_test_cluster("client-files", 23_300, 0);
    let config = ClusterConfig::load(&dir.0).unwrap();
    let default = load_client_file(&dir.0, &config, DEFAULT_CLIENT).unwrap();
    assert_eq!(default.len(), 2, "half of the 4 provisioned ids");
    let (alice, path) = add_client(&dir.0, "alice", 1).unwrap();
    assert_eq!(alice.ids(), 2..3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a client file is a secret");
    }
    let loaded = load_client_file(&dir.0, &config, "alice").unwrap();
    let derived = client_range_keys(&dir.0, &config, ClientId(2), 1).unwrap();
    assert_eq!(loaded[0].id, derived[0].id);
    assert_eq!(loaded[0].peer_keys, derived[0].peer_keys);
    let public =
        |keys: &zz_protocol::crypto::NodeKeys| keys.signing_key.as_ref().unwrap().verifying_key();
    assert_eq!(public(&loaded[0]), public(&derived[0]));
    assert!(matches!(
        add_client(&dir.0, "alice", 1),
        Err(AddClientError::Exists { .. })
    ));
    assert!(matches!(
        add_client(&dir.0, "../keys", 1),
        Err(AddClientError::BadName(_))
    ));
    assert!(matches!(
        add_client(&dir.0, "bob", 2),
        Err(AddClientError::NoFreeIds {
            count: 2,
            clients: 4
        })
    ));
    let (bob, bob_path) = add_client(&dir.0, "bob", 1).unwrap();
    let names: Vec<String> = (list_client_files(&dir.0).unwrap().into_iter())
        .map(|file| file.name)
        .collect();
    assert_eq!(names, ["default", "alice", "bob"]);
    // Deleting a client's file does not free its ids: its keys are still out there.
    assert_eq!(bob.ids(), 3..4);
    std::fs::remove_file(bob_path).unwrap();
    assert!(matches!(
        add_client(&dir.0, "carol", 1),
        Err(AddClientError::NoFreeIds { .. })
    ));
}

/// Clients added at once, from threads as from processes, never share an id: giving ids
/// out is serialised by a lock on the clients folder.
#[test]
fn clients_added_at_once_get_distinct_ids() {
    use crate::clients::add_client;
    let dir = TempDir::new("client-race");
    let options = InitOptions {
        base_port: 23_400,
        clients: 64,
        apps: vec!["kv".into()],
        params: test_params(),
        ..InitOptions::default()
    };
    init_cluster(&dir.0, options, no_state).expect("init_cluster");
    let path = dir.0.clone();
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let path = path.clone();
            std::thread::spawn(move || {
                let (file, _) = add_client(&path, &format!("racer-{worker}"), 1).unwrap();
                file.ids()
            })
        })
        .collect();
    let mut ids: Vec<u64> = (workers.into_iter())
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "an id given twice: {ids:?}");
}
