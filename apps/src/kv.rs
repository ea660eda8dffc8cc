//! `kv`: a key-value store with compare-and-swap and range scans. Keys and values are
//! bytes, stored as they are (one object per key); see the crate docs for the op table.

use crate::codec::{self, DecodeError};
use serde::{Deserialize, Serialize};
use zz_execution::app::Object;
pub use zz_execution::app::SCAN_COUNT_MAX;
use zz_execution::{App, ExecContext, StateAccess};
use zz_state_fetch::NotFetched;

/// The app's name in a cluster configuration.
pub const NAME: &str = "kv";

/// Bytes per preloaded value (under the 64 KiB request limit, like values written).
pub const PRELOAD_VALUE_BYTES: usize = 60_000;

/// The key of preloaded object `index` (see [`preload`]).
pub fn preload_key(index: u64) -> Vec<u8> {
    format!("state-{index}").into_bytes()
}

/// The value of preloaded object `index`: `value_bytes` long, derived from the index so a
/// reader can check it.
pub fn preload_value(index: u64, value_bytes: usize) -> Vec<u8> {
    let mut value = vec![(index % 251) as u8; value_bytes];
    let stamp = index.to_le_bytes();
    let stamped = stamp.len().min(value_bytes);
    value[..stamped].copy_from_slice(&stamp[..stamped]);
    value
}

/// Objects a preload of `bytes` holds with values of `value_bytes`.
pub fn preload_count(bytes: u64, value_bytes: usize) -> u64 {
    bytes.div_ceil(value_bytes.max(1) as u64)
}

/// Write a preloaded data set of about `bytes` into `store`: what benchmarks start
/// from instead of ordering every write. Deterministic, so every replica holds the same.
pub fn preload(store: &mut zz_state_fetch::ObjectStore, bytes: u64, value_bytes: usize) {
    for index in 0..preload_count(bytes, value_bytes) {
        store
            .put(
                zz_execution::app::app_key(&preload_key(index)),
                preload_value(index, value_bytes),
            )
            .expect("a fresh store has every bucket");
    }
}
/// Key and value bytes one scan answer carries at most (it stops before the object that
/// would cross it, but always carries at least one), so a reply stays far below a frame.
pub const SCAN_REPLY_BYTES_MAX: usize = 1 << 20;

/// A `kv` operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The value of `key`.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets `key` to `value`.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes `key`; removing an absent key changes nothing.
    Delete { key: Vec<u8> },
    /// Iff the current value of `key` equals `expected` (`None`: absent), sets it to `new`
    /// (`None`: deletes it).
    CompareAndSwap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    /// Objects with `start <= key < end` (empty `end`: no upper bound) in key order, at
    /// most `limit` (capped at [`SCAN_COUNT_MAX`]) and about [`SCAN_REPLY_BYTES_MAX`] bytes.
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    },
}

/// The answer to a `kv` operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `Get`: the value, `None` if the key is absent.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// `Put`, `Delete`: the value before the operation.
    Previous(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// `CompareAndSwap` succeeded.
    Swapped,
    /// `CompareAndSwap` failed: nothing changed; `current` is the value it found.
    Mismatch { current: Option<Vec<u8>> },
    /// `Scan`: the objects found. `resume` is `Some(start)` when the answer may be cut
    /// short (by `limit` or by bytes): scan again from it to continue.
    Objects {
        objects: Vec<Object>,
        resume: Option<Vec<u8>>,
    },
    /// The operation was not executed.
    Error(KvError),
}

/// Why a `kv` operation was not executed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// The operation's bytes do not decode to exactly one [`Op`].
    #[error("operation of {op_size} bytes does not decode")]
    BadOperation { op_size: u64 },
}

/// The `kv` application.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kv;

impl App for Kv {
    fn name(&self) -> &'static str {
        NAME
    }

    fn execute(
        &self,
        _context: &ExecContext,
        state: &mut StateAccess<'_>,
        op: &[u8],
    ) -> Result<Vec<u8>, NotFetched> {
        let outcome = match decode_op(op) {
            Ok(op) => execute_op(state, &op)?,
            Err(_) => Outcome::Error(KvError::BadOperation {
                op_size: op.len() as u64,
            }),
        };
        Ok(encode_outcome(&outcome))
    }
}

/// Encodes an operation for a request (clients).
pub fn encode_op(op: &Op) -> Vec<u8> {
    codec::encode(op)
}

/// Decodes a request's operation; trailing bytes make it malformed.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    codec::decode_exact("kv operation", bytes)
}

/// Encodes an outcome as a reply's result.
pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    codec::encode(outcome)
}

/// Decodes a reply's result (clients).
pub fn decode_result(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    codec::decode_exact("kv outcome", bytes)
}

/// Executes one decoded operation against `state`. Every write is preceded by a read of
/// the same key, so a missing bucket answers `NotFetched` before anything is buffered.
pub fn execute_op(state: &mut StateAccess<'_>, op: &Op) -> Result<Outcome, NotFetched> {
    Ok(match op {
        Op::Get { key } => Outcome::Value(state.get(key)?),
        Op::Put { key, value } => {
            let previous = state.get(key)?;
            state.put(key, value.clone());
            Outcome::Previous(previous)
        }
        Op::Delete { key } => {
            let previous = state.get(key)?;
            if previous.is_some() {
                state.delete(key);
            }
            Outcome::Previous(previous)
        }
        Op::CompareAndSwap { key, expected, new } => {
            let current = state.get(key)?;
            if current != *expected {
                return Ok(Outcome::Mismatch { current });
            }
            match new {
                Some(value) => state.put(key, value.clone()),
                None if current.is_some() => state.delete(key),
                None => {}
            }
            Outcome::Swapped
        }
        Op::Scan { start, end, limit } => scan(state, start, end, *limit)?,
    })
}

fn scan(
    state: &StateAccess<'_>,
    start: &[u8],
    end: &[u8],
    limit: u32,
) -> Result<Outcome, NotFetched> {
    let count_max = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .min(SCAN_COUNT_MAX);
    let found = state.scan(start, end, count_max)?;
    assert!(found.len() <= count_max, "scan answered past its limit");
    let mut cut = count_max > 0 && found.len() == count_max;
    let mut objects = Vec::with_capacity(found.len());
    let mut size = 0usize;
    for (key, value) in found {
        let object_size = key.len() + value.len();
        if !objects.is_empty() && size + object_size > SCAN_REPLY_BYTES_MAX {
            cut = true;
            break;
        }
        size += object_size;
        objects.push((key, value));
    }
    let resume = match objects.last() {
        Some((last, _)) if cut => {
            // The smallest key after `last`.
            let mut next = last.clone();
            next.push(0);
            (end.is_empty() || next.as_slice() < end).then_some(next)
        }
        _ => None,
    };
    Ok(Outcome::Objects { objects, resume })
}

#[cfg(test)]
mod tests;
