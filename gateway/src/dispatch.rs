//! A bounded queue in front of the gateway's clients. PBFT's clients have one request
//! outstanding each, so the gateway holds a pool of client ids: a request takes a free
//! one, or waits in a bounded queue for one, or is refused at once when the queue is full.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
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
    /// Keeps the clients' connections open.
    _pool: ClientPool,
    free: Mutex<Vec<Client>>,
    /// One permit per free client.
    permits: Semaphore,
    /// Requests waiting for a permit.
    queued: AtomicUsize,
    queued_max: usize,
    deadline: Duration,
}

impl Dispatcher {
    /// Clients of the key file `client` (the first `ids` of them, or all when 0), with at
    /// most `queued_max` requests waiting and `deadline` for each result. Must be called
    /// inside a tokio runtime.
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
        Ok(Dispatcher {
            permits: Semaphore::new(free.len()),
            free: Mutex::new(free),
            _pool: pool,
            queued: AtomicUsize::new(0),
            queued_max,
            deadline,
        })
    }

    /// Order `op` for `app` with a free client; the result f+1 replicas vouch for.
    pub async fn invoke(&self, app: AppId, op: Vec<u8>) -> Result<Vec<u8>, DispatchError> {
        let permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.queued.fetch_add(1, Ordering::SeqCst);
                if queued >= self.queued_max {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(DispatchError::Busy { queued });
                }
                let permit = tokio::time::timeout(self.deadline, self.permits.acquire()).await;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                match permit {
                    Ok(permit) => permit.expect("the semaphore is never closed"),
                    Err(_) => return Err(DispatchError::Deadline(self.deadline)),
                }
            }
        };
        let client = Lent::take(self);
        let result = client
            .client()
            .invoke_with_deadline(app, op, self.deadline)
            .await;
        drop(client);
        drop(permit);
        result.map_err(|error| match error {
            ClientError::Deadline(deadline) => DispatchError::Deadline(deadline),
            error => DispatchError::Client(error),
        })
    }
}

/// A client taken from the free list, given back when dropped: also when the HTTP request
/// that holds it is cancelled (its caller hung up).
struct Lent<'a> {
    dispatcher: &'a Dispatcher,
    client: Option<Client>,
}

impl<'a> Lent<'a> {
    /// The caller holds a permit, so a client is free.
    fn take(dispatcher: &'a Dispatcher) -> Lent<'a> {
        let client = (dispatcher.free.lock().expect("free clients"))
            .pop()
            .expect("invariant: a permit per free client");
        Lent {
            dispatcher,
            client: Some(client),
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("held until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            (self.dispatcher.free.lock().expect("free clients")).push(client);
        }
    }
}
