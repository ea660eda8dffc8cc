//! What the process tests share: running `zz`, stopping a platform however a test ends,
//! and finding free ports on 127.0.0.1.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

pub mod activation;
pub mod bank;

use std::path::Path;
use std::process::Command;

pub const ZZ: &str = env!("CARGO_BIN_EXE_zz");

/// `zz COMMAND --dir DIR REST...`
pub fn zz(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(ZZ)
        .arg(args[0])
        .arg("--dir")
        .arg(dir)
        .args(&args[1..])
        .output()
        .expect("run zz")
}

/// `zz COMMAND --dir DIR REST...`, which must succeed; its trimmed standard output.
pub fn zz_ok(args: &[&str], dir: &Path) -> String {
    let output = zz(args, dir);
    assert!(
        output.status.success(),
        "zz {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `zz up --detach` of `apps` with one standby each and 32 client ids, which must succeed:
/// the default client file holds 0..16, which tests' pools use, and the gateway's own ids
/// come after them (a client host that says hello for an id takes its replies' route).
pub fn up_detached(dir: &Path, apps: &str, port: &str) {
    let output = Command::new(ZZ)
        .args(["up", "--apps", apps, "--standbys", "1", "--base-port", port])
        .args(["--clients", "32", "--detach", "--dir"])
        .arg(dir)
        .output()
        .expect("run zz up");
    assert!(
        output.status.success(),
        "zz up: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the platform in the directory, and removes it, however the test ends.
pub struct Platform<'a>(pub &'a Path);

impl Drop for Platform<'_> {
    fn drop(&mut self) {
        let _ = zz(&["down"], self.0);
        if std::env::var_os("ZZ_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
}

/// `ports` consecutive UDP ports that are free right now. Each test binary passes its own
/// `multiplier` and `stride`, so binaries running at once probe different ranges.
pub fn free_base_port(ports: u16, multiplier: u16, stride: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 20_000 + (seed.wrapping_mul(multiplier).wrapping_add(attempt * stride)) % 40_000;
        let free = (0..ports).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free ports on 127.0.0.1");
}
