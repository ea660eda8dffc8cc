//! A foreground `zz up` stops the whole platform on SIGTERM, as on Ctrl-C: what systemd,
//! `docker stop` and `timeout` send. No node process may be left behind.

mod common;

use common::{Platform, ZZ, free_base_port};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zz_cluster::ClusterDir;
use zz_cluster::dir::process_alive;

/// The process ids the platform's nodes recorded.
fn node_pids(dir: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(ClusterDir::new(dir).run_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "pid")
                .then(|| std::fs::read_to_string(&path).ok()?.trim().parse().ok())?
        })
        .collect()
}

#[test]
fn sigterm_to_a_foreground_zz_up_stops_every_node() {
    let dir = std::env::temp_dir().join(format!("zz-foreground-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16, 17, 61).to_string();
    let mut up = Command::new(ZZ)
        .args([
            "up",
            "--apps",
            "kv",
            "--standbys",
            "1",
            "--base-port",
            &port,
        ])
        .args(["--clients", "4", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start zz up");
    let _platform = Platform(&dir);
    // Wait for "platform running": from then on zz up waits for the signal.
    let stdout = BufReader::new(up.stdout.take().expect("piped"));
    let (lines, running) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("platform running") && lines.send(()).is_err() {
                return;
            }
        }
    });
    running
        .recv_timeout(Duration::from_secs(30))
        .expect("the platform did not start");
    let pids = node_pids(&dir);
    assert_eq!(
        pids.len(),
        9,
        "4 agreement, 2 active and 1 standby execution, the activator, the gateway"
    );
    let term = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = Instant::now();
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            assert!(status.success(), "zz up after SIGTERM: {status:?}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "zz up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(!process_alive(pid), "node process {pid} left running");
    }
}
