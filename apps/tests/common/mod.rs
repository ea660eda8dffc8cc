//! What every integration test does: run a request the way an execution replica does.

use zz_execution::{App, ExecContext, StateAccess};
use zz_protocol::{AppId, ClientId};
use zz_state_fetch::{ObjectStore, StateParams};

/// Few buckets, so a fresh store is cheap and buckets hold several objects each.
pub fn params() -> StateParams {
    StateParams::new(4).unwrap()
}

pub fn context(seed: u64) -> ExecContext {
    ExecContext {
        app: AppId(1),
        client: ClientId(seed % 7),
        timestamp_ms: 1_700_000_000_000 + seed,
        seed,
    }
}

/// Executes `op` with a fresh [`StateAccess`] and applies its writes with
/// [`ObjectStore::apply`], as an execution replica does; returns the reply. Panics on
/// `NotFetched`: the store must hold every bucket.
pub fn execute(app: &dyn App, store: &mut ObjectStore, seed: u64, op: &[u8]) -> Vec<u8> {
    let mut state = StateAccess::new(store);
    let reply = app
        .execute(&context(seed), &mut state, op)
        .expect("a full store has every bucket");
    let writes = state.into_writes();
    store.apply(writes).expect("a full store has every bucket");
    reply
}
