//! A bounded queue in front of the gateway's clients. PBFT's clients have one request
//! outstanding each, so the gateway holds a pool of client ids: a request takes a free
//! one, or waits in a bounded queue for one, or is refused at once when the queue is full.
//!
//! Each invocation runs on a task of its own, which holds the client id until the
//! platform answered or the deadline passed: an HTTP request cancelled on the way (its
//! caller hung up) detaches from it, and frees nothing early, so at most one request per
//! client id is ever outstanding and the bound holds.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use zz_client::{Client, ClientError, ClientPool};
use zz_protocol::AppId;
use zz_protocol::config::read_client_file;

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{queued} requests already wait for the platform; try again shortly")]
    Busy { queued: usize },
    #[error("no f+1 matching replies within {0:?}")]
    Deadline(Duration),
    #[error("the gateway's client stopped: {0}")]
    Client(ClientError),
}

/// See the module documentation.
pub struct Dispatcher {
    shared: Arc<Shared>,
}

struct Shared {
    /// Keeps the clients' connections open.
    _pool: ClientPool,
    free: Mutex<Vec<Client>>,
    /// One permit per free client.
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit.
    queued: AtomicUsize,
    queued_max: usize,
    deadline: Duration,
}

impl Dispatcher {
    /// Clients of the key file `client` (the first `ids` of them, or all when 0), with at
    /// most `queued_max` requests waiting and `deadline` for each result, waiting
    /// included. Must be called inside a tokio runtime.
    pub fn connect(
        dir: &Path,
        client: &str,
        ids: u32,
        queued_max: usize,
        deadline: Duration,
    ) -> Result<Dispatcher, ClientError> {
        let held = read_client_file(dir, client)?.clients.len() as u32;
        let count = if ids == 0 { held } else { ids.min(held) };
        let pool = ClientPool::connect_as(dir, client, 0, count)?;
        let free: Vec<Client> = (0..pool.len()).map(|index| pool.client(index)).collect();
        let shared = Shared {
            permits: Arc::new(Semaphore::new(free.len())),
            free: Mutex::new(free),
            _pool: pool,
            queued: AtomicUsize::new(0),
            queued_max,
            deadline,
        };
        Ok(Dispatcher {
            shared: Arc::new(shared),
        })
    }

    /// Order `op` for `app` with a free client; the result f+1 replicas vouch for.
    pub async fn invoke(&self, app: AppId, op: Vec<u8>) -> Result<Vec<u8>, DispatchError> {
        let shared = &self.shared;
        let started = Instant::now();
        let permit = match Arc::clone(&shared.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting::enter(shared)?;
                let acquire = Arc::clone(&shared.permits).acquire_owned();
                match tokio::time::timeout(shared.deadline, acquire).await {
                    Ok(permit) => permit.expect("the semaphore is never closed"),
                    Err(_) => return Err(DispatchError::Deadline(shared.deadline)),
                }
            }
        };
        let remaining = shared.deadline.saturating_sub(started.elapsed());
        let shared = Arc::clone(shared);
        let invocation = tokio::spawn(async move {
            let client = (shared.free.lock().expect("free clients"))
                .pop()
                .expect("invariant: a permit per free client");
            let result = client.invoke_with_deadline(app, op, remaining).await;
            (shared.free.lock().expect("free clients")).push(client);
            drop(permit);
            result
        });
        let result = invocation
            .await
            .map_err(|_| DispatchError::Client(ClientError::Closed))?;
        result.map_err(|error| match error {
            ClientError::Deadline(deadline) => DispatchError::Deadline(deadline),
            error => DispatchError::Client(error),
        })
    }
}

/// A place in the queue, given back when dropped: also when the HTTP request waiting in
/// it is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(shared: &'a Shared) -> Result<Waiting<'a>, DispatchError> {
        let queued = shared.queued.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(&shared.queued);
        if queued >= shared.queued_max {
            return Err(DispatchError::Busy { queued });
        }
        Ok(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
