//! Rebuilding a store from a durable copy of a checkpoint: its root, its bucket leaves and
//! its objects, none trusted until checked. The leaves are trusted only if they hash up to
//! the root; a bucket is kept only if its objects hash to its trusted leaf. A bucket that
//! fails is left missing, in a store pinned to the checkpoint, so the driver fetches it
//! from another replica and the install path verifies it against the root as for a woken
//! replica.
//!
//! Older checkpoints the copy still keeps (see [`super::rewind`]) are rebuilt from the
//! restored one, newest first, down to the latest one known stable, so the replica serves
//! fetchers pinned to any of them.

use super::rewind::{RewindError, Undo};
use super::{Bucket, Object, ObjectStore, Slot, Snapshot, bucket_leaf};
use crate::cow::CowVec;
use crate::hash::{empty_bucket_digest, leaf_hash, value_hash};
use crate::tree::MerkleTree;
use crate::{BucketIndex, StateParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use zz_protocol::{Digest, Seq};

/// A bucket's objects as a durable copy holds them: (key, value), ascending by key.
pub type BucketObjects = Vec<(Vec<u8>, Vec<u8>)>;

/// Neither the stored leaves nor the leaves recomputed from the stored objects hash up to
/// the stored root: nothing in the copy can be trusted bucket by bucket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no leaves lead to the stored root {root}: the stored ones lead to {from_stored_leaves:?}, \
     the ones recomputed from the objects to {from_objects:?}"
)]
pub struct RootMismatch {
    pub root: Digest,
    /// None when a stored leaf is absent.
    pub from_stored_leaves: Option<Digest>,
    /// None when a bucket's objects are malformed (out of order, in the wrong bucket).
    pub from_objects: Option<Digest>,
}

/// A store rebuilt from a durable copy, and the buckets it refused.
#[derive(Debug)]
pub struct Restored {
    /// Pinned to the copy's checkpoint, which keeps a snapshot (so the replica can serve
    /// it), as does each older checkpoint rebuilt; refused buckets are missing. Its latest
    /// stable checkpoint is the one the copy names, else the copy's own.
    pub store: ObjectStore,
    /// Buckets whose stored objects and stored leaf disagree, ascending.
    pub refused: Vec<BucketIndex>,
    /// The older checkpoints rebuilt, ascending.
    pub older: Vec<Seq>,
    /// Why the next older checkpoint could not be rebuilt, if one could not: it and the
    /// ones before it are not served.
    pub older_refused: Option<RewindError>,
}

/// Collects a durable copy of checkpoint `(seq, root)` bucket by bucket, then checks it
/// ([`Restorer::finish`]). A bucket given no objects is empty.
pub struct Restorer {
    params: StateParams,
    seq: Seq,
    root: Digest,
    stored_leaves: Vec<Option<Digest>>,
    /// Recomputed from the objects given; None if they are malformed.
    computed_leaves: Vec<Option<Digest>>,
    buckets: Vec<Bucket>,
    older: Vec<Undo>,
    stable: Option<Seq>,
}

impl Restorer {
    pub fn new(params: StateParams, seq: Seq, root: Digest) -> Restorer {
        let count = params.bucket_count();
        let empty = empty_bucket_digest();
        Restorer {
            params,
            seq,
            root,
            stored_leaves: vec![None; count],
            computed_leaves: (0..count as u32)
                .map(|index| Some(leaf_hash(params.bucket_bits(), index, &empty)))
                .collect(),
            buckets: vec![Bucket::new(); count],
            older: Vec::new(),
            stable: None,
        }
    }

    /// What the copy keeps of an older checkpoint, in any order.
    pub fn older(&mut self, undo: Undo) {
        self.older.push(undo);
    }

    /// The latest checkpoint the copy says was stable: older ones are not rebuilt.
    pub fn stable(&mut self, seq: Seq) {
        self.stable = Some(seq);
    }

    /// The stored leaf of bucket `index` (out of range: ignored, as nothing refers to it).
    pub fn leaf(&mut self, index: BucketIndex, leaf: Digest) {
        if let Some(slot) = self.stored_leaves.get_mut(index.index()) {
            *slot = Some(leaf);
        }
    }

    /// The stored objects of bucket `index`, ascending by key, given once. Objects out of
    /// order or in another bucket make the whole bucket malformed.
    pub fn bucket(&mut self, index: BucketIndex, objects: BucketObjects) {
        if index.index() >= self.buckets.len() {
            return;
        }
        let ascending = objects.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let placed = (objects.iter()).all(|(key, _)| self.params.bucket_of(key) == index);
        let bucket: Bucket = objects
            .into_iter()
            .map(|(key, value)| {
                let value_hash = value_hash(&value);
                (key, Object { value, value_hash })
            })
            .collect();
        self.computed_leaves[index.index()] =
            (ascending && placed).then(|| bucket_leaf(self.params, index.0, &bucket));
        self.buckets[index.index()] = bucket;
    }

    /// Check the copy: the stored leaves are trusted if they hash to the root; failing
    /// that, the leaves recomputed from the objects are, if they do (only leaf records
    /// were damaged). Every bucket whose objects do not match its stored leaf is refused
    /// either way: one rule, and what is refused is fetched and rewritten.
    pub fn finish(self) -> Result<Restored, RootMismatch> {
        let root_over = |leaves: &[Option<Digest>]| -> Option<Digest> {
            let leaves: Option<Vec<Digest>> = leaves.iter().copied().collect();
            leaves.map(|leaves| MerkleTree::full(leaves).root())
        };
        let from_stored_leaves = root_over(&self.stored_leaves);
        let trusted = if from_stored_leaves == Some(self.root) {
            &self.stored_leaves
        } else {
            let from_objects = root_over(&self.computed_leaves);
            if from_objects != Some(self.root) {
                return Err(RootMismatch {
                    root: self.root,
                    from_stored_leaves,
                    from_objects,
                });
            }
            &self.computed_leaves
        };
        let leaves: Vec<Digest> = trusted
            .iter()
            .map(|leaf| leaf.expect("invariant: trusted leaves are all known"))
            .collect();
        let consistent: Vec<bool> = (self.stored_leaves.iter())
            .zip(&self.computed_leaves)
            .map(|(stored, computed)| stored.is_some() && stored == computed)
            .collect();
        let refused: Vec<BucketIndex> = (consistent.iter().enumerate())
            .filter(|(_, consistent)| !**consistent)
            .map(|(index, _)| BucketIndex(index as u32))
            .collect();
        let mut buckets = self.buckets.into_iter().zip(consistent);
        let slots: CowVec<Slot> = CowVec::from_fn(self.params.bucket_count(), |_| {
            let (bucket, consistent) = buckets.next().expect("one bucket per slot");
            consistent.then(|| Arc::new(bucket))
        });
        let tree = MerkleTree::full(leaves);
        let snapshot = Snapshot {
            params: self.params,
            seq: self.seq,
            root: self.root,
            buckets: slots.clone(),
            tree: tree.clone(),
        };
        let stable = (self.stable).filter(|&stable| stable <= self.seq);
        let (snapshots, older_refused) = rebuild_older(snapshot, self.older, stable);
        let older = (snapshots.keys().copied())
            .filter(|&seq| seq < self.seq)
            .collect();
        let store = ObjectStore {
            params: self.params,
            buckets: slots,
            tree,
            dirty: BTreeSet::new(),
            missing_count: refused.len(),
            pin: Some((self.seq, self.root)),
            last_checkpoint: Some((self.seq, self.root)),
            stable: BTreeSet::from([stable.unwrap_or(self.seq)]),
            snapshots,
            leased: BTreeSet::new(),
        };
        Ok(Restored {
            store,
            refused,
            older,
            older_refused,
        })
    }
}

/// `latest` and the older checkpoints rebuilt from it, newest first, each from the one
/// after it, down to `stable`; the walk stops at the first that fails.
fn rebuild_older(
    latest: Snapshot,
    mut older: Vec<Undo>,
    stable: Option<Seq>,
) -> (BTreeMap<Seq, Snapshot>, Option<RewindError>) {
    older.sort_by_key(|undo| std::cmp::Reverse(undo.seq));
    let mut newer = latest.clone();
    let mut snapshots = BTreeMap::from([(latest.seq, latest)]);
    for undo in older {
        if stable.is_some_and(|stable| undo.seq < stable) {
            break;
        }
        match newer.rewound(undo) {
            Ok(snapshot) => {
                snapshots.insert(snapshot.seq, snapshot.clone());
                newer = snapshot;
            }
            Err(error) => return (snapshots, Some(error)),
        }
    }
    (snapshots, None)
}
