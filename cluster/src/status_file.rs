//! Status files: small JSON documents each node rewrites periodically (`run/<node>.json`)
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

/// Counters by reason, with the reasons' names as keys, ready to serialise.
pub fn reasons<Reason: std::fmt::Display>(counts: &BTreeMap<Reason, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(reason, count)| (reason.to_string(), *count))
        .collect()
}
