//! The HTTP gateway of a running platform, used as a web client would: over plain HTTP on
//! 127.0.0.1, kv as REST and bank as JSON, bad input (each a 4xx with a reason), a
//! platform that does not answer (504) and more requests than the gateway's queue holds
//! (503 with Retry-After).

mod common;

use common::{Platform, ZZ, free_base_port, zz_ok};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One platform at a time: the tests of this binary run in parallel, and would probe the
/// same free ports.
static ONE_PLATFORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An HTTP answer: status, headers (names lower-case), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The one-line reason of an error answer.
    fn reason(&self) -> String {
        let reason = self.json()["error"]
            .as_str()
            .expect("an error reason")
            .to_string();
        assert!(!reason.contains('\n'), "{reason}");
        reason
    }
}

/// One HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`), its body declared JSON.
fn http(base: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    http_as(base, method, path, "application/json", body)
}

/// [`http`] with a body of `content_type`.
fn http_as(base: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
    let address = base.strip_prefix("http://").expect("an http URL");
    http_to(address, address, method, path, content_type, body)
}

/// One HTTP/1.1 request to `address`, naming `host` in its Host header.
fn http_to(
    address: &str,
    host: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The gateway may answer (413) before it read a large body: a reset is fine then.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let split = (answer.windows(4).position(|w| w == b"\r\n\r\n")).expect("a complete answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

fn platform_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A platform of kv, a second kv instance named notes, and bank, whose gateway queues at
/// most `queued_max` requests; the gateway's base URL, as `zz status --json` gives it.
fn platform_with_gateway(dir: &Path, queued_max: usize) -> String {
    let port = free_base_port(16, 53, 97).to_string();
    zz_ok(
        &[
            "init",
            "--apps",
            "kv,kv:notes,bank",
            "--standbys",
            "1",
            "--clients",
            "16",
            "--base-port",
            &port,
        ],
        dir,
    );
    let config = dir.join("cluster.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[gateway]\nqueued_max = {queued_max}\n"));
    std::fs::write(&config, text).unwrap();
    let up = Command::new(ZZ)
        .args(["up", "--detach", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(
        up.status.success(),
        "zz up: {printed}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_str(&zz_ok(&["status", "--json"], dir)).unwrap();
    let url = status["gateway"]
        .as_str()
        .expect("zz status names the gateway")
        .to_string();
    assert!(
        printed.contains(&format!("gateway: {url}")),
        "zz up prints it: {printed}"
    );
    url
}

#[test]
fn kv_and_bank_answer_over_http_and_bad_input_gets_a_reason() {
    let _one = ONE_PLATFORM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = platform_dir("gateway-apps");
    let _platform = Platform(&dir);
    let base = platform_with_gateway(&dir, 64);

    // kv as REST.
    let put = http(&base, "PUT", "/apps/kv/keys/greeting", b"hello");
    assert_eq!(
        (put.status, put.json()["created"].as_bool()),
        (201, Some(true))
    );
    let get = http(&base, "GET", "/apps/kv/keys/greeting", b"");
    assert_eq!((get.status, get.body.as_slice()), (200, &b"hello"[..]));
    let replaced = http(&base, "PUT", "/apps/kv/keys/greeting", b"hi");
    assert_eq!(
        (replaced.status, replaced.json()["created"].as_bool()),
        (200, Some(false))
    );
    http(&base, "PUT", "/apps/kv/keys/green", b"yes");
    http(&base, "PUT", "/apps/kv/keys/blue", b"no");
    let scan = http(&base, "GET", "/apps/kv/keys?prefix=gre&limit=10", b"");
    assert_eq!(scan.status, 200);
    let keys: Vec<String> = (scan.json()["objects"].as_array().unwrap().iter())
        .map(|object| object["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["green", "greeting"]);
    let swapped = http(
        &base,
        "POST",
        "/apps/kv/keys/greeting/cas",
        br#"{"expected": "hi", "new": "hey"}"#,
    );
    assert_eq!(
        swapped.status,
        200,
        "{}",
        String::from_utf8_lossy(&swapped.body)
    );
    let stale = http(
        &base,
        "POST",
        "/apps/kv/keys/greeting/cas",
        br#"{"expected": "hi", "new": "ho"}"#,
    );
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["current"], "hey");
    assert_eq!(
        http(&base, "DELETE", "/apps/kv/keys/greeting", b"").status,
        200
    );
    let gone = http(&base, "GET", "/apps/kv/keys/greeting", b"");
    assert_eq!(gone.status, 404, "{}", gone.reason());
    assert_eq!(
        http(&base, "DELETE", "/apps/kv/keys/greeting", b"").status,
        404
    );

    // A second kv instance is another app: its own keys, its own execution replicas.
    assert_eq!(
        http(&base, "PUT", "/apps/notes/keys/green", b"other").status,
        201
    );
    assert_eq!(
        http(&base, "GET", "/apps/notes/keys/green", b"").body,
        b"other"
    );
    assert_eq!(http(&base, "GET", "/apps/kv/keys/green", b"").body, b"yes");
    assert_eq!(http(&base, "GET", "/apps/notes/keys/blue", b"").status, 404);
    assert_eq!(
        zz_ok(&["kv", "--app", "notes", "get", "green"], &dir),
        "other"
    );
    let config = zz_protocol::config::ClusterConfig::load(&dir).unwrap();
    let notes = config.app_by_name("notes").unwrap();
    assert_eq!(notes.kind(), "kv");
    let groups = config.execution_groups();
    let kv_group = &groups[&config.app_by_name("kv").unwrap().id];
    assert!(
        groups[&notes.id]
            .iter()
            .all(|member| !kv_group.contains(member))
    );

    // bank as JSON.
    let bank = |method: &str, path: &str, body: &str| http(&base, method, path, body.as_bytes());
    assert_eq!(
        bank("POST", "/apps/bank/open", r#"{"account": "alice"}"#).status,
        201
    );
    assert_eq!(
        bank("POST", "/apps/bank/open", r#"{"account": "bob"}"#).status,
        201
    );
    let again = bank("POST", "/apps/bank/open", r#"{"account": "alice"}"#);
    assert_eq!(again.status, 409, "{}", again.reason());
    let deposit = bank(
        "POST",
        "/apps/bank/deposit",
        r#"{"account": "alice", "amount": 100}"#,
    );
    assert_eq!(
        (deposit.status, deposit.json()["balance"].as_u64()),
        (200, Some(100))
    );
    let transfer = r#"{"from": "alice", "to": "bob", "amount": 30}"#;
    let moved = bank("POST", "/apps/bank/transfer", transfer);
    assert_eq!(moved.status, 200);
    assert_eq!(moved.json()["to_balance"], 30);
    let too_much = r#"{"from": "alice", "to": "bob", "amount": 500}"#;
    let refused = bank("POST", "/apps/bank/transfer", too_much);
    assert_eq!(refused.status, 409);
    assert!(
        refused.reason().contains("cannot pay"),
        "{}",
        refused.reason()
    );
    let balance = bank("GET", "/apps/bank/balance/bob", "");
    assert_eq!(
        (balance.status, balance.json()["balance"].as_u64()),
        (200, Some(30))
    );
    assert_eq!(bank("GET", "/apps/bank/balance/carol", "").status, 404);
    let audit = bank("GET", "/apps/bank/audit", "");
    assert_eq!(audit.json()["balanced"], true);
    assert_eq!(audit.json()["deposit_total"], 100);

    // Bad input: each a 4xx with a one-line reason, and nothing changes.
    let cases = [
        (
            "POST",
            "/apps/bank/deposit",
            "{\"account\": \"alice\"",
            400,
            "malformed JSON",
        ),
        (
            "POST",
            "/apps/bank/deposit",
            r#"{"account": "alice"}"#,
            400,
            "missing field `amount`",
        ),
        (
            "POST",
            "/apps/bank/deposit",
            r#"{"account": "alice", "amount": -1}"#,
            400,
            "u64",
        ),
        ("GET", "/apps/shop/keys/x", "", 404, "no app named \"shop\""),
        (
            "GET",
            "/apps/bank/keys/x",
            "",
            404,
            "this route is for kv apps",
        ),
        ("GET", "/nowhere", "", 404, "no route /nowhere"),
        ("GET", "/apps/bank/open", "", 405, "GET is not a method"),
        ("GET", "/apps/kv/keys?limit=lots", "", 400, "limit"),
    ];
    // A page whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused.
    let address = base.strip_prefix("http://").unwrap();
    let port = address.rsplit_once(':').unwrap().1;
    let rebound = http_to(
        address,
        &format!("evil.example:{port}"),
        "GET",
        "/apps/kv/keys/green",
        "application/json",
        b"",
    );
    assert_eq!(rebound.status, 421, "{}", rebound.reason());
    let local = http_to(
        address,
        &format!("localhost:{port}"),
        "GET",
        "/apps/kv/keys/green",
        "application/json",
        b"",
    );
    assert_eq!(local.status, 200);
    let plain = http_as(
        &base,
        "POST",
        "/apps/bank/open",
        "text/plain",
        br#"{"account": "eve"}"#,
    );
    assert_eq!(plain.status, 415, "{}", plain.reason());
    let half = http(&base, "POST", "/apps/kv/keys/green/cas", br#"{"new": "x"}"#);
    assert_eq!(half.status, 400, "{}", half.reason());
    assert!(
        half.reason().contains("missing field `expected`"),
        "{}",
        half.reason()
    );
    for (method, path, body, status, reason) in cases {
        let answer = bank(method, path, body);
        assert_eq!(
            answer.status,
            status,
            "{method} {path}: {}",
            answer.reason()
        );
        assert!(
            answer.reason().contains(reason),
            "{method} {path}: {}",
            answer.reason()
        );
    }
    let request_bytes_max = 65_536;
    let huge = vec![b'x'; 2 * request_bytes_max];
    assert_eq!(http(&base, "PUT", "/apps/kv/keys/huge", &huge).status, 413);
    // Within the body limit, but the key makes the operation too large to order.
    let just_over = vec![b'x'; request_bytes_max - 4];
    let over = http(&base, "PUT", "/apps/kv/keys/huge", &just_over);
    assert_eq!(over.status, 413, "{}", over.reason());
    assert!(
        over.reason().contains("orders at most"),
        "{}",
        over.reason()
    );
    assert_eq!(
        bank("GET", "/apps/bank/audit", "").json()["deposit_total"],
        100
    );
    let large = vec![b'v'; 60_000];
    assert_eq!(
        http(&base, "PUT", "/apps/kv/keys/large", &large).status,
        201
    );
    assert_eq!(http(&base, "GET", "/apps/kv/keys/large", b"").body, large);
}

/// The pids of the platform's agreement replicas.
fn replica_pids(dir: &Path) -> Vec<String> {
    (0..4)
        .map(|i| std::fs::read_to_string(dir.join(format!("run/replica-{i}.pid"))).unwrap())
        .map(|pid| pid.trim().to_string())
        .collect()
}

fn signal(pids: &[String], signal: &str) {
    for pid in pids {
        Command::new("kill").args([signal, pid]).status().unwrap();
    }
}

#[test]
fn a_silent_platform_is_a_504_and_a_full_queue_a_503_with_retry_after() {
    let _one = ONE_PLATFORM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = platform_dir("gateway-busy");
    let _platform = Platform(&dir);
    let queued_max = 2;
    let base = platform_with_gateway(&dir, queued_max);
    assert_eq!(http(&base, "PUT", "/apps/kv/keys/before", b"1").status, 201);
    let gateway_ids = std::fs::read_to_string(dir.join("clients/gateway.toml")).unwrap();
    let in_flight = gateway_ids.matches("[[clients]]").count();
    assert!(in_flight >= 1, "{gateway_ids}");

    let replicas = replica_pids(&dir);
    signal(&replicas, "-STOP");
    let started = Instant::now();
    let requests = in_flight + queued_max + 3;
    let answers: Vec<_> = (0..requests)
        .map(|index| {
            let base = base.clone();
            std::thread::spawn(move || {
                let answer = http(&base, "PUT", &format!("/apps/kv/keys/k{index}"), b"v");
                (answer, started.elapsed())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    signal(&replicas, "-CONT");
    let busy: Vec<_> = answers
        .iter()
        .filter(|(answer, _)| answer.status == 503)
        .collect();
    let late: Vec<_> = answers
        .iter()
        .filter(|(answer, _)| answer.status == 504)
        .collect();
    assert_eq!(busy.len() + late.len(), requests, "only 503s and 504s");
    assert!(busy.len() >= 3, "{} answered 503", busy.len());
    for (answer, at) in &busy {
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(answer.reason().contains("try again"), "{}", answer.reason());
        assert!(
            *at < Duration::from_secs(5),
            "refused at once, not after {at:?}"
        );
    }
    for (answer, at) in &late {
        assert!(
            answer.reason().contains("no f+1 matching replies"),
            "{}",
            answer.reason()
        );
        assert!(
            *at >= Duration::from_secs(9),
            "after the deadline, not {at:?}"
        );
    }
    // Resumed, the platform answers through the gateway again.
    wait_until_answered(&base);

    // Callers that hang up while their requests wait (in flight or queued) leak no place
    // in the queue and no client id: once the platform answers again, as many requests
    // at once as ids and places are all served.
    signal(&replicas, "-STOP");
    let hung_up: Vec<TcpStream> = (0..requests)
        .map(|index| {
            let address = base.strip_prefix("http://").unwrap();
            let mut stream = TcpStream::connect(address).unwrap();
            let head = format!(
                "PUT /apps/kv/keys/gone{index} HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Length: 1\r\n\r\nx"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(hung_up);
    std::thread::sleep(Duration::from_millis(500));
    signal(&replicas, "-CONT");
    wait_until_answered(&base);
    // The hung-up requests' ids come back once the platform answered them.
    std::thread::sleep(Duration::from_secs(2));
    let statuses: Vec<u16> = (0..in_flight + queued_max)
        .map(|index| {
            let base = base.clone();
            let path = format!("/apps/kv/keys/a{index}");
            std::thread::spawn(move || http(&base, "PUT", &path, b"v").status)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    assert!(statuses.iter().all(|status| *status == 201), "{statuses:?}");
}

/// Wait until the gateway answers a read of the key `before`.
fn wait_until_answered(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http(base, "GET", "/apps/kv/keys/before", b"");
        if answer.status == 200 {
            assert_eq!(answer.body, b"1");
            return;
        }
        let late = Instant::now() >= deadline;
        assert!(!late, "no answer after resuming: {}", answer.status);
        std::thread::sleep(Duration::from_millis(500));
    }
}
