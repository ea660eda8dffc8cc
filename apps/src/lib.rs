//! zz-apps: the applications the platform hosts. Each implements [`zz_execution::App`]:
//! it is sans-IO and deterministic, reads and writes state only through the
//! [`StateAccess`](zz_execution::StateAccess) it is given, and answers a malformed
//! operation with an error outcome, never a panic.
//!
//! # Calling protocol
//!
//! - **Clients** build an app's `Op`, send `encode_op(&op)` as the request's operation,
//!   and read the f+1-vouched reply with `decode_result(&reply)`.
//! - **Execution replicas** get an app from [`app_by_name`] and call [`App::execute`]
//!   once per request with a fresh `StateAccess`, then apply its writes with
//!   `ObjectStore::apply`. An app reads every object it writes before writing it, so a
//!   missing bucket surfaces as `NotFetched` from `execute` (with no writes buffered), not
//!   later from `apply`.
//!
//! ```
//! use zz_apps::{app_by_name, kv};
//! use zz_execution::{ExecContext, StateAccess};
//! use zz_protocol::{AppId, ClientId};
//! use zz_state_fetch::{ObjectStore, StateParams};
//!
//! let app = app_by_name("kv").unwrap();
//! let mut store = ObjectStore::new(StateParams::default());
//! let context = ExecContext { app: AppId(0), client: ClientId(7), timestamp_ms: 0, seed: 0 };
//! // A client encodes the operation ...
//! let op = kv::encode_op(&kv::Op::Put { key: b"k".to_vec(), value: b"v".to_vec() });
//! // ... a replica executes it and applies the request's writes ...
//! let mut state = StateAccess::new(&store);
//! let reply = app.execute(&context, &mut state, &op).unwrap();
//! let writes = state.into_writes();
//! store.apply(writes).unwrap();
//! // ... and the client decodes the reply f+1 replicas vouched for.
//! assert_eq!(kv::decode_result(&reply).unwrap(), kv::Outcome::Previous(None));
//! ```
//!
//! # Encoding
//!
//! Operations and outcomes are postcard-encoded serde enums; a variant's tag is its
//! position, so new variants are only ever appended. An operation must decode exactly
//! (trailing bytes make it malformed) and is answered with `Outcome::Error(BadOperation)`
//! otherwise. Stored values are compact and fixed: amounts are u64 little-endian.
//!
//! # `kv` ([`kv`])
//!
//! | op | effect | outcome |
//! |---|---|---|
//! | `Get { key }` | none | `Value(Option<value>)` |
//! | `Put { key, value }` | sets `key` | `Previous(Option<value>)` |
//! | `Delete { key }` | removes `key` (absent: no change) | `Previous(Option<value>)` |
//! | `CompareAndSwap { key, expected, new }` | iff the current value equals `expected` (`None` = absent): sets `key` to `new` (`None` deletes) | `Swapped` or `Mismatch { current }` |
//! | `Scan { start, end, limit }` | none; keys in `start <= key < end`, empty `end` = unbounded, at most `min(limit, SCAN_COUNT_MAX)` objects and about [`kv::SCAN_REPLY_BYTES_MAX`] bytes | `Objects { objects, resume }` |
//!
//! # `bank` ([`bank`])
//!
//! | op | effect | outcome | errors |
//! |---|---|---|---|
//! | `Open { account }` | new account, balance 0 | `Opened` | `InvalidAccountName`, `AccountExists`, `TooManyAccounts` |
//! | `Deposit { account, amount }` | balance and deposit total += amount | `Deposited { balance }` | `NoSuchAccount`, `BalanceOverflow`, `DepositTotalOverflow` |
//! | `Transfer { from, to, amount }` | moves `amount`, both sides or neither | `Transferred { from_balance, to_balance }` | `SameAccount`, `NoSuchAccount`, `InsufficientFunds`, `BalanceOverflow` |
//! | `Balance { account }` | none | `Balance(u64)` | `NoSuchAccount` |
//! | `Audit` | none; scans every account | `Audit(Audit)` | |
//!
//! Invariant: the sum of all balances equals the deposit total; only deposits change it.
//! [`bank::audit`] computes both for tests and operators.
//!
//! # `null` ([`null`])
//!
//! | op | effect | outcome |
//! |---|---|---|
//! | any bytes (the benchmark's payload; usually empty) | none, touches no state | empty |

pub mod bank;
mod codec;
pub mod kv;
pub mod null;

pub use codec::DecodeError;
use zz_execution::App;

/// The names [`app_by_name`] knows, as they appear in a cluster configuration.
pub const APP_NAMES: &[&str] = &[kv::NAME, bank::NAME, null::NAME];

/// The app called `name`, or `None` for an unknown name.
pub fn app_by_name(name: &str) -> Option<Box<dyn App>> {
    match name {
        kv::NAME => Some(Box::new(kv::Kv)),
        bank::NAME => Some(Box::new(bank::Bank)),
        null::NAME => Some(Box::new(null::Null)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves_to_an_app_of_that_name() {
        for &name in APP_NAMES {
            let app = app_by_name(name).expect("listed app resolves");
            assert_eq!(app.name(), name);
        }
        assert!(app_by_name("auction-nope").is_none());
        assert!(app_by_name("").is_none());
    }
}
