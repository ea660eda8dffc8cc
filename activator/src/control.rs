//! The activator's control socket (`run/activator.sock`): one JSON request and one JSON
//! answer per connection. `zz scale` uses it to grow or shrink a standby pool while the
//! platform runs.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zz_cluster::ClusterDir;

/// Bytes in a request at most.
pub const REQUEST_BYTES_MAX: usize = 4096;
/// How long either side waits for the other.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Grow or shrink the standby pool of the app named `app` to `standbys`.
    Scale { app: String, standbys: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlAnswer {
    Done(String),
    Refused(String),
}

/// Send `request` to the activator of the platform in `dir` and wait for its answer.
pub async fn request(dir: &Path, request: &ControlRequest) -> std::io::Result<ControlAnswer> {
    let path = ClusterDir::new(dir).activator_socket();
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(&path).await?;
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    };
    tokio::time::timeout(CONTROL_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("the activator did not answer in time"))?
}

/// Read one request from `stream`; None if it is not one (too long, not JSON, too slow).
pub(crate) async fn read_request(stream: &mut tokio::net::UnixStream) -> Option<ControlRequest> {
    let (reader, _) = stream.split();
    let mut line = Vec::new();
    let mut limited =
        tokio::io::AsyncReadExt::take(BufReader::new(reader), REQUEST_BYTES_MAX as u64);
    tokio::time::timeout(CONTROL_TIMEOUT, limited.read_until(b'\n', &mut line))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&line).ok()
}

pub(crate) async fn write_answer(stream: &mut tokio::net::UnixStream, answer: &ControlAnswer) {
    let mut line = serde_json::to_vec(answer).expect("answers encode");
    line.push(b'\n');
    let _ = tokio::time::timeout(CONTROL_TIMEOUT, stream.write_all(&line)).await;
}
