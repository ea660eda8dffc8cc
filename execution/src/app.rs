//! The `App` trait applications implement, and the state access they get: reads and
//! writes go only through the Merkle-hashed object store, so every replica's state can be
//! checkpointed, compared and fetched lazily.

use std::collections::BTreeMap;
use std::ops::Bound;
use zz_protocol::{AppId, ClientId};
use zz_state_fetch::{NotFetched, ObjectStore, Write};

/// Keys of application objects carry this prefix in the store; the execution replica's
/// own objects (the reply cache) use [`CLIENT_KEY_PREFIX`], so an app can never touch them.
pub const APP_KEY_PREFIX: &[u8] = b"a/";
/// Prefix of the per-client reply cache objects.
pub const CLIENT_KEY_PREFIX: &[u8] = b"c/";
/// Objects one scan returns at most.
pub const SCAN_COUNT_MAX: usize = 10_000;

/// An object as a scan returns it: (key, value), owned.
pub type Object = (Vec<u8>, Vec<u8>);

/// What one request gets from the agreement cluster besides its operation: the batch's
/// agreed timestamp, and a seed of its own derived from the batch's agreed seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecContext {
    pub app: AppId,
    pub client: ClientId,
    /// Milliseconds since the UNIX epoch, agreed for the batch, never decreasing.
    pub timestamp_ms: u64,
    /// Deterministic randomness for this request.
    pub seed: u64,
}

/// One request's view of the app's state. Reads see the request's own earlier writes;
/// writes are buffered and applied all or nothing once the request finishes, so a read
/// that answers [`NotFetched`] never leaves a request half-applied.
pub struct StateAccess<'a> {
    store: &'a ObjectStore,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Where an app's object `key` lives in the store (apps see keys without the prefix).
pub fn app_key(key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(APP_KEY_PREFIX.len() + key.len());
    stored.extend_from_slice(APP_KEY_PREFIX);
    stored.extend_from_slice(key);
    stored
}

impl<'a> StateAccess<'a> {
    pub fn new(store: &'a ObjectStore) -> StateAccess<'a> {
        StateAccess {
            store,
            writes: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, NotFetched> {
        let stored = app_key(key);
        if let Some(buffered) = self.writes.get(&stored) {
            return Ok(buffered.clone());
        }
        Ok(self.store.get(&stored)?.map(<[u8]>::to_vec))
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.writes.insert(app_key(key), Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.writes.insert(app_key(key), None);
    }

    /// Objects with `start <= key < end` (an empty `end` means no upper bound), in key
    /// order, at most `count_max` (capped at [`SCAN_COUNT_MAX`]), including this request's
    /// own writes. Needs every bucket present: a scan touches them all.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        count_max: usize,
    ) -> Result<Vec<Object>, NotFetched> {
        let count_max = count_max.min(SCAN_COUNT_MAX);
        let low = app_key(start);
        let high = if end.is_empty() {
            let mut high = APP_KEY_PREFIX.to_vec();
            *high.last_mut().expect("non-empty prefix") += 1;
            high
        } else {
            app_key(end)
        };
        if low >= high {
            return Ok(Vec::new());
        }
        let range = (
            Bound::Included(low.as_slice()),
            Bound::Excluded(high.as_slice()),
        );
        // Enough stored objects to fill the answer even if buffered deletes remove some.
        let stored = self
            .store
            .scan(range.0, range.1, count_max + self.writes.len())?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored
            .into_iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect();
        for (key, write) in self.writes.range::<[u8], _>(range) {
            match write {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged
            .into_iter()
            .take(count_max)
            .map(|(key, value)| (key[APP_KEY_PREFIX.len()..].to_vec(), value))
            .collect())
    }

    /// The buffered writes, with their store keys, for [`ObjectStore::apply`].
    pub fn into_writes(self) -> Vec<Write> {
        self.writes.into_iter().collect()
    }
}

/// A deterministic application. Every correct replica, given the same state, context and
/// operation, must return the same result and make the same writes.
pub trait App: Send {
    /// The app's name, as in the cluster configuration (`kv`, `bank`, ...).
    fn name(&self) -> &'static str;

    /// Execute one operation. A malformed or invalid operation is answered with an error
    /// result, never a panic. [`NotFetched`] means a bucket this replica has not fetched
    /// yet was needed: the caller fetches it and runs the operation again.
    fn execute(
        &self,
        context: &ExecContext,
        state: &mut StateAccess<'_>,
        op: &[u8],
    ) -> Result<Vec<u8>, NotFetched>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zz_state_fetch::StateParams;

    #[test]
    fn reads_see_own_writes_and_scans_merge_them() {
        let mut store = ObjectStore::new(StateParams::new(4).unwrap());
        store.put(app_key(b"a"), b"1".to_vec()).unwrap();
        store.put(app_key(b"b"), b"2".to_vec()).unwrap();
        store.put(b"c/7".to_vec(), b"reply".to_vec()).unwrap();
        let mut access = StateAccess::new(&store);
        access.put(b"c", b"3".to_vec());
        access.delete(b"a");
        assert_eq!(access.get(b"a").unwrap(), None);
        assert_eq!(access.get(b"c").unwrap(), Some(b"3".to_vec()));
        let all = access.scan(b"", b"", 100).unwrap();
        assert_eq!(
            all,
            vec![
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        assert_eq!(access.scan(b"b", b"c", 100).unwrap().len(), 1);
        assert_eq!(access.into_writes().len(), 2);
        // Nothing reached the store until the writes are applied.
        assert_eq!(store.get(&app_key(b"a")).unwrap(), Some(&b"1"[..]));
    }
}
