//! The object store: live state, incremental checkpoints, copy-on-write snapshots and the
//! install path for fetched buckets.

use crate::cow::CowVec;
use crate::error::{NotFetched, StateError};
use crate::hash::{bucket_digest, empty_bucket_digest, leaf_hash, value_hash};
use crate::proof::BucketProof;
use crate::tree::MerkleTree;
use crate::{BucketIndex, StateParams};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use zz_protocol::{Digest, Seq};

mod delta;
mod restore;
mod rewind;
mod snapshot;

pub use delta::{BucketDelta, LeafUnknown, ObjectDelta, ObjectEdit};
pub use restore::{BucketObjects, Restored, Restorer, RootMismatch};
pub use rewind::{BucketUndo, ObjectBefore, RewindError, Undo};
pub use snapshot::Snapshot;

/// How many stable checkpoints keep their snapshot: the latest, and the one before it,
/// which a replica may still be fetching from when the next becomes stable.
pub const STABLE_SNAPSHOT_COUNT: usize = 2;

/// How many checkpoints newer than the latest stable one keep their snapshot. When active
/// replicas diverge no checkpoint becomes stable; the oldest unstable snapshot is dropped
/// then, so memory stays bounded.
pub const UNSTABLE_SNAPSHOT_COUNT_MAX: usize = 4;

const _: () = assert!(STABLE_SNAPSHOT_COUNT >= 1 && UNSTABLE_SNAPSHOT_COUNT_MAX >= 1);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Object {
    value: Vec<u8>,
    /// Hashed on write, so a checkpoint rehashing a dirty bucket does not rehash the
    /// values in it that did not change.
    value_hash: Digest,
}

type Bucket = BTreeMap<Vec<u8>, Object>;

/// An object as a scan returns it: (key, value), borrowed from the store.
pub type KeyValue<'a> = (&'a [u8], &'a [u8]);

/// A buffered write for [`ObjectStore::apply`]: (key, `Some(value)` to put, `None` to
/// delete).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// `None` while the bucket is not fetched yet. The `Arc` is what snapshots share: a write
/// to a bucket a snapshot still holds copies that bucket first.
type Slot = Option<Arc<Bucket>>;

fn bucket_leaf(params: StateParams, index: u32, bucket: &Bucket) -> Digest {
    let digest = bucket_digest(
        bucket
            .iter()
            .map(|(key, o)| (key.as_slice(), &o.value_hash)),
    );
    leaf_hash(params.bucket_bits(), index, &digest)
}

fn present<'a>(
    params: StateParams,
    buckets: &'a CowVec<Slot>,
    key: &[u8],
) -> Result<&'a Bucket, NotFetched> {
    let bucket = params.bucket_of(key);
    buckets
        .get(bucket.index())
        .as_deref()
        .ok_or(NotFetched { bucket })
}

/// An application's state: objects (key → value) in `2^bucket_bits` hashed buckets.
///
/// Calling protocol (see also the crate documentation):
/// 1. Create with [`ObjectStore::new`] (empty state) or [`ObjectStore::pinned`] (a woken
///    replica that knows only the latest stable checkpoint's root).
/// 2. Execute requests through [`get`](Self::get), [`scan`](Self::scan),
///    [`put`](Self::put), [`delete`](Self::delete) or [`apply`](Self::apply). Any of them
///    may answer [`NotFetched`]: fetch that bucket, [`install_bucket`](Self::install_bucket)
///    it, and retry.
/// 3. Every K sequence numbers, [`checkpoint`](Self::checkpoint) returns the root to send.
/// 4. When the checkpoint is stable, [`mark_stable`](Self::mark_stable) drops what is older.
/// 5. Serve other replicas from [`snapshot`](Self::snapshot).
pub struct ObjectStore {
    params: StateParams,
    buckets: CowVec<Slot>,
    /// Leaves and inner nodes as of the last checkpoint (dirty buckets not yet rehashed).
    tree: MerkleTree,
    /// Buckets written since the last checkpoint.
    dirty: BTreeSet<u32>,
    missing_count: usize,
    /// The checkpoint a pinned store verifies installs against.
    pin: Option<(Seq, Digest)>,
    last_checkpoint: Option<(Seq, Digest)>,
    /// The latest stable checkpoints, at most `STABLE_SNAPSHOT_COUNT`.
    stable: BTreeSet<Seq>,
    snapshots: BTreeMap<Seq, Snapshot>,
    /// Snapshots kept past their turn because woken replicas are still fetching from them.
    leased: BTreeSet<Seq>,
}

impl ObjectStore {
    /// An empty state with every bucket present.
    pub fn new(params: StateParams) -> ObjectStore {
        let empty = empty_bucket_digest();
        let leaves = (0..params.bucket_count() as u32)
            .map(|index| leaf_hash(params.bucket_bits(), index, &empty))
            .collect();
        ObjectStore {
            params,
            buckets: CowVec::from_fn(params.bucket_count(), |_| Some(Arc::default())),
            tree: MerkleTree::full(leaves),
            dirty: BTreeSet::new(),
            missing_count: 0,
            pin: None,
            last_checkpoint: None,
            stable: BTreeSet::new(),
            snapshots: BTreeMap::new(),
            leased: BTreeSet::new(),
        }
    }

    /// A state known only by its root: the stable checkpoint `(seq, root)` a woken replica
    /// learned from f+1 agreement replicas. Every bucket is missing until installed;
    /// `seq` counts as the latest stable checkpoint.
    pub fn pinned(params: StateParams, seq: Seq, root: Digest) -> ObjectStore {
        ObjectStore {
            params,
            buckets: CowVec::from_fn(params.bucket_count(), |_| None),
            tree: MerkleTree::pinned(params.bucket_bits(), root),
            dirty: BTreeSet::new(),
            missing_count: params.bucket_count(),
            pin: Some((seq, root)),
            last_checkpoint: None,
            stable: BTreeSet::from([seq]),
            snapshots: BTreeMap::new(),
            leased: BTreeSet::new(),
        }
    }

    pub fn params(&self) -> StateParams {
        self.params
    }

    /// The value of `key`, or `NotFetched` if its bucket is missing.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>, NotFetched> {
        let bucket = present(self.params, &self.buckets, key)?;
        Ok(bucket.get(key).map(|o| o.value.as_slice()))
    }

    /// Up to `count_max` objects with keys in `(start, end)`, ascending by key.
    ///
    /// Keys are hashed into buckets, so any range may touch every bucket: a scan needs all
    /// of them and answers `NotFetched` with the first missing one otherwise.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        count_max: usize,
    ) -> Result<Vec<KeyValue<'_>>, NotFetched> {
        if let Some(bucket) = self.missing_buckets().next() {
            return Err(NotFetched { bucket });
        }
        Ok(scan_buckets(&self.buckets, start, end, count_max))
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Vec<u8>>, NotFetched> {
        let index = self.writable(&key)?;
        let value_hash = value_hash(&value);
        let bucket = self.bucket_mut(index);
        Ok(bucket
            .insert(key, Object { value, value_hash })
            .map(|o| o.value))
    }

    /// Removes `key`; returns the removed value.
    pub fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, NotFetched> {
        let index = self.writable(key)?;
        if !self
            .buckets
            .get(index.index())
            .as_ref()
            .is_some_and(|b| b.contains_key(key))
        {
            // Leave a bucket shared with a snapshot, and clean, when nothing changes.
            return Ok(None);
        }
        Ok(self.bucket_mut(index).remove(key).map(|o| o.value))
    }

    /// Applies a request's buffered writes (`None` deletes) all or nothing: if any bucket
    /// is missing, nothing is written. Executing a request whose writes went straight to
    /// [`put`](Self::put) could stop half-applied at a `NotFetched`; buffering and applying
    /// here avoids that.
    pub fn apply(&mut self, writes: Vec<Write>) -> Result<(), NotFetched> {
        for (key, _) in &writes {
            self.writable(key)?;
        }
        for (key, value) in writes {
            let done = match value {
                Some(value) => self.put(key, value).map(drop),
                None => self.delete(&key).map(drop),
            };
            done.expect("invariant: every bucket was checked present");
        }
        Ok(())
    }

    fn writable(&self, key: &[u8]) -> Result<BucketIndex, NotFetched> {
        present(self.params, &self.buckets, key)?;
        Ok(self.params.bucket_of(key))
    }

    fn bucket_mut(&mut self, index: BucketIndex) -> &mut Bucket {
        self.dirty.insert(index.0);
        let slot = self.buckets.get_mut(index.index());
        Arc::make_mut(
            slot.as_mut()
                .expect("invariant: the caller checked the bucket present"),
        )
    }

    /// Rehashes the buckets written since the last checkpoint and the tree nodes above
    /// them, keeps a copy-on-write snapshot of the state, and returns its root.
    ///
    /// `seq` must exceed every earlier checkpoint (and the pinned one): a replica
    /// checkpoints in sequence order.
    pub fn checkpoint(&mut self, seq: Seq) -> Digest {
        let newest = self
            .last_checkpoint
            .map(|(s, _)| s)
            .into_iter()
            .chain(self.pin.map(|(s, _)| s))
            .max();
        assert!(
            newest.is_none_or(|newest| seq > newest),
            "checkpoint {seq} not after {newest:?}"
        );
        let leaves: BTreeMap<u32, Digest> = self
            .dirty
            .iter()
            .map(|&index| {
                let bucket = self.buckets.get(index as usize);
                let bucket = bucket
                    .as_ref()
                    .expect("invariant: a dirty bucket is present");
                (index, bucket_leaf(self.params, index, bucket))
            })
            .collect();
        self.tree.update(&leaves);
        self.dirty.clear();
        let root = self.tree.root();
        self.last_checkpoint = Some((seq, root));
        let snapshot = Snapshot {
            params: self.params,
            seq,
            root,
            buckets: self.buckets.clone(),
            tree: self.tree.clone(),
        };
        self.snapshots.insert(seq, snapshot);
        let latest_stable = self.stable.last().copied();
        let unstable: Vec<Seq> = self
            .snapshots
            .keys()
            .copied()
            .filter(|&s| latest_stable.is_none_or(|stable| s > stable))
            .collect();
        for &dropped in unstable.iter().rev().skip(UNSTABLE_SNAPSHOT_COUNT_MAX) {
            self.snapshots.remove(&dropped);
        }
        root
    }

    /// Records that checkpoint `seq` is stable (all active replicas sent the same root).
    /// Keeps the snapshots of the last `STABLE_SNAPSHOT_COUNT` stable checkpoints and of
    /// newer checkpoints; drops the rest. Repeating the latest stable `seq` is a no-op.
    pub fn mark_stable(&mut self, seq: Seq) -> Result<(), StateError> {
        if let Some(&latest_stable) = self.stable.last() {
            if seq == latest_stable {
                return Ok(());
            }
            if seq < latest_stable {
                return Err(StateError::StaleStable { seq, latest_stable });
            }
        }
        if !self.snapshots.contains_key(&seq) {
            return Err(StateError::UnknownCheckpoint { seq });
        }
        self.stable.insert(seq);
        while self.stable.len() > STABLE_SNAPSHOT_COUNT {
            self.stable.pop_first();
        }
        self.snapshots
            .retain(|&s, _| s > seq || self.stable.contains(&s) || self.leased.contains(&s));
        Ok(())
    }

    /// Keep the snapshots of checkpoints `seqs` (those kept now) however many checkpoints
    /// become stable after them, until they leave the set: woken replicas are pinned to
    /// them and still fetching. The caller bounds the set, and so the memory it costs.
    pub fn lease_snapshots(&mut self, seqs: BTreeSet<Seq>) {
        let ended: Vec<Seq> = self.leased.difference(&seqs).copied().collect();
        self.leased = seqs;
        let latest_stable = self.stable.last().copied();
        for seq in ended {
            let superseded = latest_stable.is_some_and(|latest| seq < latest);
            if superseded && !self.stable.contains(&seq) {
                self.snapshots.remove(&seq);
            }
        }
    }

    /// Verifies `proof` against the pinned root and, if it holds, installs the bucket in
    /// the live state and in every kept snapshot that lacks it. On any error nothing
    /// changes; the caller drops the proof and asks another replica.
    ///
    /// Installing at the pinned checkpoint is right for the live state and for later
    /// snapshots too: a missing bucket cannot have been written since. An older snapshot
    /// (rebuilt from a durable copy) gets it only where its leaf there is the same.
    pub fn install_bucket(&mut self, proof: BucketProof) -> Result<(), StateError> {
        let (_, root) = self.pin.ok_or(StateError::NotPinned)?;
        let bucket_count = self.params.bucket_count();
        if proof.index.index() >= bucket_count {
            return Err(StateError::BucketIndexOutOfRange {
                index: proof.index,
                bucket_count,
            });
        }
        if self.buckets.get(proof.index.index()).is_some() {
            return Err(StateError::BucketPresent {
                bucket: proof.index,
            });
        }
        let verified = proof.check(&root, self.params)?;
        let index = proof.index;
        let bucket: Bucket = proof
            .entries
            .into_iter()
            .zip(verified.value_hashes)
            .map(|((key, value), value_hash)| (key, Object { value, value_hash }))
            .collect();
        let bucket = Arc::new(bucket);
        *self.buckets.get_mut(index.index()) = Some(Arc::clone(&bucket));
        self.missing_count -= 1;
        self.tree
            .fill_path(index.0, &verified.path, &proof.siblings);
        let (pinned_seq, _) = self.pin.expect("checked above");
        let leaf = verified.path[0];
        for snapshot in self.snapshots.values_mut() {
            let same_bucket = snapshot.seq >= pinned_seq || snapshot.leaf(index) == Some(leaf);
            if same_bucket && snapshot.buckets.get(index.index()).is_none() {
                *snapshot.buckets.get_mut(index.index()) = Some(Arc::clone(&bucket));
                snapshot
                    .tree
                    .fill_path(index.0, &verified.path, &proof.siblings);
            }
        }
        Ok(())
    }

    /// Buckets not fetched yet, ascending, for a background fetcher. Each call walks the
    /// bucket table once; a complete store answers at once.
    pub fn missing_buckets(&self) -> impl Iterator<Item = BucketIndex> + '_ {
        let buckets = (self.missing_count > 0).then_some(&self.buckets);
        buckets.into_iter().flat_map(missing)
    }

    pub fn missing_count(&self) -> usize {
        self.missing_count
    }

    /// Whether every bucket is present (always, for a store that was never pinned).
    pub fn is_complete(&self) -> bool {
        self.missing_count == 0
    }

    /// Buckets written since the last checkpoint: the rehash work the next one will do.
    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// The checkpoint a pinned store verifies installs against.
    pub fn pin(&self) -> Option<(Seq, Digest)> {
        self.pin
    }

    pub fn last_checkpoint(&self) -> Option<(Seq, Digest)> {
        self.last_checkpoint
    }

    pub fn latest_stable(&self) -> Option<Seq> {
        self.stable.last().copied()
    }

    pub fn snapshot(&self, seq: Seq) -> Option<&Snapshot> {
        self.snapshots.get(&seq)
    }

    /// The checkpoints whose snapshots are kept, ascending.
    pub fn snapshot_seqs(&self) -> impl Iterator<Item = Seq> + '_ {
        self.snapshots.keys().copied()
    }
}

impl fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStore")
            .field("params", &self.params)
            .field("missing_count", &self.missing_count)
            .field("dirty_count", &self.dirty.len())
            .field("pin", &self.pin)
            .field("last_checkpoint", &self.last_checkpoint)
            .field("stable", &self.stable)
            .field("snapshots", &self.snapshots.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn missing(buckets: &CowVec<Slot>) -> impl Iterator<Item = BucketIndex> + '_ {
    buckets
        .iter()
        .enumerate()
        .filter(|(_, slot)| slot.is_none())
        .map(|(index, _)| BucketIndex(index as u32))
}

/// Merges the range from every bucket, keeping only the `count_max` smallest keys.
fn scan_buckets<'a>(
    buckets: &'a CowVec<Slot>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    count_max: usize,
) -> Vec<KeyValue<'a>> {
    if count_max == 0 || range_is_empty(start, end) {
        return Vec::new();
    }
    let mut found: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    for bucket in buckets.iter().flatten() {
        for (key, object) in bucket.range::<[u8], _>((start, end)).take(count_max) {
            found.insert(key, &object.value);
            if found.len() > count_max {
                found.pop_last();
            }
        }
    }
    found.into_iter().collect()
}

/// `BTreeMap::range` panics on an inverted range; an empty answer is what a scan means.
fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e) | Bound::Included(e)) => {
            s >= e
        }
    }
}

#[cfg(test)]
mod durable_tests;
#[cfg(test)]
mod rewind_props;
#[cfg(test)]
mod tests;
