//! Status files: small JSON documents each node rewrites periodically (`run/<node>/status.json`)
//! for `zz status`, operators and tests.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the UNIX epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Replace `path` with `value` as JSON through a temporary file and a rename, so a reader
/// never sees half a file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// Bytes of a status file read at most: far above any real one.
pub const STATUS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Read a status file a node wrote, as the host must: the node owns its folder, so the
/// "file" may be a symlink (to a device, or another node's secret), a FIFO or huge. Only
/// a regular file is read, without following a link or blocking, and no further than
/// [`STATUS_FILE_BYTES_MAX`]; anything else reads as absent.
pub fn read_node_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(STATUS_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > STATUS_FILE_BYTES_MAX {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Counters by reason, with the reasons' names as keys, ready to serialise.
pub fn reasons<Reason: std::fmt::Display>(counts: &BTreeMap<Reason, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(reason, count)| (reason.to_string(), *count))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_file_that_is_not_a_plain_small_file_reads_as_absent() {
        let dir = std::env::temp_dir().join(format!("zz-status-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain.json");
        write_json(&plain, &serde_json::json!({"view": 3})).unwrap();
        let read: Option<serde_json::Value> = read_node_json(&plain);
        assert_eq!(read.unwrap()["view"], 3);
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert!(
            read_node_json::<serde_json::Value>(&link).is_none(),
            "a symlink"
        );
        let fifo = dir.join("fifo.json");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        assert!(
            read_node_json::<serde_json::Value>(&fifo).is_none(),
            "a FIFO"
        );
        let huge = dir.join("huge.json");
        let mut text = b"[".to_vec();
        text.resize(STATUS_FILE_BYTES_MAX as usize + 10, b' ');
        text.push(b']');
        std::fs::write(&huge, text).unwrap();
        assert!(
            read_node_json::<serde_json::Value>(&huge).is_none(),
            "too big"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
