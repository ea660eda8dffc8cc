//! The Docker backend end to end: `zz up --backend docker --detach` runs every replica as
//! a container of the zz image on the platform's own bridge network. A lying or killed
//! execution container wakes a paused standby container, is removed, and the pool is
//! refilled with a fresh paused container; money in the bank is conserved throughout; a
//! partitioned agreement replica catches up after `heal`; `zz down` removes exactly the
//! containers and the network the platform created; an intruder in one container holds
//! that node's keys and no other's, and sets no node's fault.
//!
//! These tests need a Docker engine. Without one they say so and pass, unless
//! `ZZ_REQUIRE_DOCKER` is set (`.ci/run` sets it), where a missing engine fails them.

mod common;

use common::activation::{activator, faulty, has_event, set_silence_ms, wait_for, woke};
use common::bank::{assert_conserved, open_accounts, spawn_transfers};
use common::{Platform, ZZ, zz, zz_ok};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use zz_activator::docker::{self, DockerPlatform, NodeContainer};
use zz_activator::policy::MemberState;
use zz_client::ClientPool;
use zz_protocol::ClientId;
use zz_protocol::config::ClusterConfig;
use zz_protocol::messages::FaultReason;

/// How long the activator, the detector and the woken containers get for each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether an engine answers; a missing one fails the test where it is required.
fn engine_present() -> bool {
    // One image build at a time: the tests of this file would otherwise all build it.
    static BUILD: Mutex<Option<bool>> = Mutex::new(None);
    let mut built = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let present = *built.get_or_insert_with(|| {
        let output = std::process::Command::new(ZZ)
            .args(["image", "build"])
            .output()
            .expect("run zz");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && !stderr.contains("no Docker engine") {
            panic!("zz image build failed: {stderr}");
        }
        output.status.success()
    });
    if !present && std::env::var_os("ZZ_REQUIRE_DOCKER").is_some() {
        panic!("ZZ_REQUIRE_DOCKER is set but no Docker engine answers");
    }
    if !present {
        eprintln!("no Docker engine: skipping (set ZZ_REQUIRE_DOCKER to make this a failure)");
    }
    present
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `zz up --backend docker --detach` in a fresh directory.
fn start(name: &str, apps: &str, silence_ms: u64, quiet_ms: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zz-docker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let quiet = quiet_ms.to_string();
    zz_ok(&["init", "--apps", apps, "--quiet-ms", &quiet], &dir);
    set_silence_ms(&dir, silence_ms);
    zz_ok(&["up", "--backend", "docker", "--detach"], &dir);
    dir
}

/// The platform's containers as the engine lists them.
fn containers(dir: &Path) -> Vec<NodeContainer> {
    let platform = DockerPlatform::load(dir)
        .unwrap()
        .expect("a docker platform");
    runtime().block_on(async {
        let docker = docker::connect().await.unwrap();
        platform.containers(&docker).await.unwrap()
    })
}

fn container_of(dir: &Path, node: &str) -> Option<NodeContainer> {
    containers(dir).into_iter().find(|c| c.node == node)
}

fn state_of(dir: &Path, member: u32) -> Option<MemberState> {
    (activator(dir).pools.into_iter())
        .flat_map(|pool| pool.members)
        .find(|m| m.id == member)
        .map(|m| m.state)
}

/// The activator pool refilled `member` with a new container that is paused.
fn refilled(dir: &Path, member: u32, old_id: &str) -> bool {
    let node = format!("execution-{member}");
    container_of(dir, &node).is_some_and(|c| c.id != old_id && c.state == "paused")
        && state_of(dir, member) == Some(MemberState::Standby)
}

/// Run `cmd` inside a running container, as its own user: what an intruder there could
/// do. Returns the exit code and what it printed.
fn exec_in(container: &str, cmd: &[&str]) -> (i64, String) {
    use futures_util::StreamExt as _;
    runtime().block_on(async {
        let docker = docker::connect().await.unwrap();
        let config = bollard::models::ExecConfig {
            cmd: Some(cmd.iter().map(|arg| arg.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = docker.create_exec(container, config).await.unwrap();
        let mut printed = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await.unwrap()
        {
            while let Some(Ok(chunk)) = output.next().await {
                printed.push_str(&chunk.to_string());
            }
        }
        let inspected = docker.inspect_exec(&exec.id).await.unwrap();
        (inspected.exit_code.expect("the exec ended"), printed)
    })
}

/// An intruder in one execution replica's container: it cannot read another node's key
/// file or any client's, and cannot set any node's fault (its own included); the
/// container runs as an unprivileged user. `dir` runs the kv platform of [`start`].
fn assert_one_container_holds_one_nodes_secrets(dir: &Path, intruded: &NodeContainer) {
    let files = zz_cluster::ClusterDir::new(dir);
    let dir_arg = dir.display().to_string();
    let inspected = runtime().block_on(async {
        let docker = docker::connect().await.unwrap();
        docker.inspect_container(&intruded.id, None).await.unwrap()
    });
    let user = inspected
        .config
        .and_then(|config| config.user)
        .unwrap_or_default();
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "user {user:?}"
    );
    let binds = (inspected.host_config)
        .and_then(|host| host.binds)
        .unwrap_or_default();
    assert!(
        !binds
            .iter()
            .any(|bind| bind.starts_with(&format!("{dir_arg}:"))),
        "the whole directory is mounted: {binds:?}"
    );
    for other in ["replica-0", "execution-2"] {
        let role = if other.starts_with("replica") {
            "agreement"
        } else {
            "execution"
        };
        let id = &other[other.len() - 1..];
        let (code, printed) = exec_in(
            &intruded.id,
            &["/zz", "node", role, "--id", id, "--cluster", &dir_arg],
        );
        let key_file = format!("keys/{other}/keys.toml");
        assert!(
            code != 0 && printed.contains(&key_file) && printed.contains("os error"),
            "reading {key_file}: exit {code}: {printed}"
        );
    }
    let (code, printed) = exec_in(&intruded.id, &["/zz", "kv", "--dir", &dir_arg, "get", "k0"]);
    assert!(
        code != 0 && printed.contains("clients/default.toml"),
        "a client's keys: exit {code}: {printed}"
    );
    for target in ["execution-2", "execution-0", intruded.node.as_str()] {
        let (code, printed) = exec_in(
            &intruded.id,
            &["/zz", "inject", "--dir", &dir_arg, target, "corrupt-reply"],
        );
        assert!(
            code != 0 && printed.contains("cannot write"),
            "{target}'s fault: exit {code}: {printed}"
        );
        let node = zz_protocol::NodeId::Execution(zz_protocol::ExecutionId(
            target[target.len() - 1..].parse().unwrap(),
        ));
        assert!(!files.fault_path(node).exists(), "{target}'s fault file");
    }
}

#[test]
fn a_lying_container_wakes_a_paused_standby_container_and_is_replaced() {
    if !engine_present() {
        return;
    }
    let dir = start("lie", "kv", 1000, 3000);
    let _platform = Platform(&dir);
    let standby = container_of(&dir, "execution-2").expect("a standby container");
    assert_eq!(standby.state, "paused", "standbys are paused containers");
    let liar = container_of(&dir, "execution-1").expect("an active container");
    assert_eq!(liar.state, "running");
    assert_one_container_holds_one_nodes_secrets(&dir, &liar);
    for i in 0..10 {
        zz_ok(&["kv", "put", &format!("k{i}"), &format!("v{i}")], &dir);
    }
    zz_ok(&["inject", "execution-1", "corrupt-reply"], &dir);
    for i in 0..10 {
        assert_eq!(
            zz_ok(&["kv", "get", &format!("k{i}")], &dir),
            format!("v{i}")
        );
    }
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "waking execution-2 and replacing execution-1",
        || has_event(&dir, woke(2)) && refilled(&dir, 1, &liar.id),
    );
    assert!(
        !containers(&dir).iter().any(|c| c.id == liar.id),
        "the liar's container is removed"
    );
    assert_eq!(
        container_of(&dir, "execution-2").unwrap().id,
        standby.id,
        "the woken standby is the paused container, unpaused"
    );
    let table = zz_ok(&["status"], &dir);
    assert!(table.contains(docker::short_id(&standby.id)), "{table}");
    assert!(table.contains("execution-1 is faulty"), "{table}");
    zz_ok(&["kv", "put", "after", "lie"], &dir);
    assert_eq!(zz_ok(&["kv", "get", "after"], &dir), "lie");
}

#[test]
fn a_killed_bank_container_is_replaced_and_money_is_conserved() {
    if !engine_present() {
        return;
    }
    let dir = start("kill", "bank", 1000, 3000);
    let _platform = Platform(&dir);
    let victim = container_of(&dir, "execution-0").expect("an active container");
    let config = ClusterConfig::load(&dir).unwrap();
    let app = config.app_by_name("bank").unwrap().id;
    let threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    threads.block_on(async {
        let pool = ClientPool::connect(&dir, ClientId(0), 5).unwrap();
        let opener = pool.client(0);
        open_accounts(&opener, app).await;
        let transfers = spawn_transfers(&pool, app, 30);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_conserved(&opener, app).await;
        let killed = zz_ok(&["inject", "execution-0", "kill"], &dir);
        assert!(killed.contains("killed container"), "{killed}");
        for transfer in transfers {
            transfer.await.unwrap();
        }
        assert_conserved(&opener, app).await;
    });
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "replacing execution-0 with a fresh paused container",
        || {
            has_event(&dir, faulty(Some(0), Some(FaultReason::Silent)))
                && refilled(&dir, 0, &victim.id)
        },
    );
    assert_eq!(state_of(&dir, 1), Some(MemberState::Active));
    assert_eq!(state_of(&dir, 2), Some(MemberState::Active));
}

/// Each agreement replica's executed sequence number, from `zz status --json`.
fn executed(dir: &Path) -> Vec<(String, u64)> {
    let report: serde_json::Value =
        serde_json::from_str(&zz_ok(&["status", "--json"], dir)).unwrap();
    (report["nodes"].as_array().unwrap().iter())
        .filter(|row| row["role"] == "agreement")
        .map(|row| {
            let name = row["node"].as_str().unwrap().to_string();
            (name, row["executed"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[test]
fn a_partitioned_agreement_replica_catches_up_after_heal_and_down_removes_only_its_own() {
    if !engine_present() {
        return;
    }
    // Someone else's network on the same engine: `zz down` must leave it.
    let bystander = format!("zz-test-bystander-{}", std::process::id());
    let rt = runtime();
    rt.block_on(async {
        let docker = docker::connect().await.unwrap();
        let request = bollard::models::NetworkCreateRequest {
            name: bystander.clone(),
            ..Default::default()
        };
        docker.create_network(request).await.unwrap();
    });
    let dir = start("partition", "kv", 1000, 3000);
    let platform = Platform(&dir);
    let cut = zz_ok(&["inject", "replica-3", "partition"], &dir);
    assert!(cut.contains("cut off"), "{cut}");
    for i in 0..20 {
        zz_ok(&["kv", "put", &format!("p{i}"), &format!("v{i}")], &dir);
    }
    let behind = executed(&dir);
    let lead = behind.iter().map(|(_, seq)| *seq).max().unwrap();
    let partitioned = behind.iter().find(|(n, _)| n == "replica-3").unwrap().1;
    assert!(
        partitioned < lead,
        "cut off, replica-3 falls behind: {behind:?}"
    );
    let healed = zz_ok(&["inject", "replica-3", "heal"], &dir);
    assert!(healed.contains("reconnected"), "{healed}");
    zz_ok(&["kv", "put", "after", "heal"], &dir);
    wait_for(&dir, STEP_TIMEOUT, "replica-3 catching up", || {
        let now = executed(&dir);
        let lead = now.iter().map(|(_, seq)| *seq).max().unwrap();
        now.iter().all(|(_, seq)| *seq == lead)
    });
    assert_eq!(zz_ok(&["kv", "get", "p7"], &dir), "v7");
    let network = DockerPlatform::load(&dir).unwrap().unwrap().network;
    let down = zz_ok(&["down"], &dir);
    assert!(down.contains("removed"), "{down}");
    assert!(
        containers(&dir).is_empty(),
        "every container of the platform is gone"
    );
    let names: Vec<String> = rt.block_on(async {
        let docker = docker::connect().await.unwrap();
        let networks = docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .unwrap();
        let names = networks.into_iter().filter_map(|n| n.name).collect();
        docker.remove_network(&bystander).await.unwrap();
        names
    });
    assert!(
        !names.contains(&network),
        "the platform network is gone: {names:?}"
    );
    assert!(
        names.contains(&bystander),
        "the bystander network stays: {names:?}"
    );
    drop(platform);
}

#[test]
fn a_cold_standby_container_is_created_on_the_wake_and_serves() {
    if !engine_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("zz-docker-cold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    zz_ok(&["init", "--apps", "kv", "--quiet-ms", "3000"], &dir);
    zz_ok(
        &["up", "--backend", "docker", "--cold-standbys", "--detach"],
        &dir,
    );
    let _platform = Platform(&dir);
    assert_eq!(
        container_of(&dir, "execution-2"),
        None,
        "no standby container yet"
    );
    zz_ok(&["kv", "put", "a", "1"], &dir);
    zz_ok(&["inject", "execution-1", "corrupt-reply"], &dir);
    assert_eq!(zz_ok(&["kv", "get", "a"], &dir), "1");
    wait_for(
        &dir,
        STEP_TIMEOUT,
        "creating execution-2 on the wake",
        || {
            has_event(&dir, woke(2))
                && container_of(&dir, "execution-2").is_some_and(|c| c.state == "running")
        },
    );
    zz_ok(&["kv", "put", "b", "2"], &dir);
    assert_eq!(zz_ok(&["kv", "get", "b"], &dir), "2");
}

#[test]
fn an_engine_that_refuses_gives_one_line_and_leaves_nothing() {
    if !engine_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("zz-docker-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A network of the platform's name that zz did not create: zz must not take it over.
    let squatter = docker::platform_name(&dir);
    let rt = runtime();
    rt.block_on(async {
        let docker = docker::connect().await.unwrap();
        let request = bollard::models::NetworkCreateRequest {
            name: squatter.clone(),
            ..Default::default()
        };
        docker.create_network(request).await.unwrap();
    });
    let output = zz(&["up", "--backend", "docker", "--detach"], &dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let leftovers = rt.block_on(async {
        let docker = docker::connect().await.unwrap();
        let platform = DockerPlatform {
            platform: squatter.clone(),
            dir: dir.clone(),
            network: squatter.clone(),
            subnet: String::new(),
            gateway: std::net::Ipv4Addr::UNSPECIFIED,
            image: String::new(),
            cold_standbys: false,
        };
        let leftovers = platform.containers(&docker).await.unwrap();
        docker.remove_network(&squatter).await.unwrap();
        leftovers
    });
    let written = dir.join("cluster.toml").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("zz did not create it"), "{stderr}");
    assert!(!written, "nothing is written");
    assert!(leftovers.is_empty(), "no container stays: {leftovers:?}");
}

#[test]
fn without_an_engine_up_fails_in_one_line_and_creates_nothing() {
    let dir = std::env::temp_dir().join(format!("zz-docker-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = std::process::Command::new(ZZ)
        .args(["up", "--backend", "docker", "--detach", "--dir"])
        .arg(&dir)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run zz");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no Docker engine"), "{stderr}");
    assert!(stderr.contains("--backend process"), "{stderr}");
    assert!(!dir.exists(), "nothing is created");
    let status = zz(&["down"], &dir);
    assert!(!status.status.success());
}
