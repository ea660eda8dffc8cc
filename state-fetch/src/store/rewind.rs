//! Older checkpoints rebuilt from a newer one: a durable copy holds one checkpoint whole
//! and, for each older checkpoint it still keeps, how the buckets that changed after it
//! stood then (an [`Undo`]). A rebuilt snapshot shares every unchanged bucket with the
//! newer one (copy-on-write), so rebuilding costs what changed, not the state's size.
//!
//! Nothing in an undo is trusted: the rebuilt leaves must hash up to the root the older
//! checkpoint was reported with, or the snapshot is refused; a bucket is kept only if its
//! rebuilt objects hash to its trusted leaf, otherwise it is left out (not served).

use super::{Bucket, Object, Slot, Snapshot, bucket_leaf};
use crate::hash::value_hash;
use crate::{BucketIndex, StateParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use zz_protocol::{Digest, Seq};

/// An object as it stood at an older checkpoint: `(key, Some(value))` held then,
/// `(key, None)` absent then.
pub type ObjectBefore = (Vec<u8>, Option<Vec<u8>>);

/// How one bucket stood at an older checkpoint, against the next checkpoint written after
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketUndo {
    /// Its leaf then; None if the copy lost it (then recomputed from the objects, if known).
    pub leaf: Option<Digest>,
    /// Its objects then, as edits on the newer checkpoint's. None: unknown (the bucket
    /// was not fetched then).
    pub objects: Option<Vec<ObjectBefore>>,
}

/// What a durable copy keeps of an older checkpoint: its seq, the root it was reported
/// with, and each bucket that changed between it and the next checkpoint written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undo {
    pub seq: Seq,
    pub root: Digest,
    pub buckets: BTreeMap<BucketIndex, BucketUndo>,
}

/// Why an older checkpoint could not be rebuilt (it is then not served).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewindError {
    #[error("checkpoint {seq} is not older than checkpoint {newer}")]
    NotOlder { seq: Seq, newer: Seq },
    #[error("checkpoint {newer} does not know every leaf: nothing older can be rebuilt from it")]
    NewerIncomplete { newer: Seq },
    #[error("checkpoint {seq}: an undo names bucket {bucket}, out of {bucket_count}")]
    BucketIndexOutOfRange {
        seq: Seq,
        bucket: BucketIndex,
        bucket_count: usize,
    },
    #[error("checkpoint {seq}: bucket {bucket} has neither a stored leaf nor known objects")]
    LeafUnknown { seq: Seq, bucket: BucketIndex },
    #[error("checkpoint {seq}: the rebuilt leaves lead to {computed}, not to its root {root}")]
    RootMismatch {
        seq: Seq,
        root: Digest,
        computed: Digest,
    },
}

impl Snapshot {
    /// The snapshot of the older checkpoint `undo` describes, rebuilt from this one (the
    /// next checkpoint written after it). Fails, changing nothing, unless its rebuilt
    /// leaves reproduce `undo.root`; buckets whose rebuilt objects fail their leaf are left
    /// out of it.
    pub fn rewound(&self, undo: Undo) -> Result<Snapshot, RewindError> {
        let Undo { seq, root, buckets } = undo;
        if seq >= self.seq {
            return Err(RewindError::NotOlder {
                seq,
                newer: self.seq,
            });
        }
        if !self.tree.is_full() {
            return Err(RewindError::NewerIncomplete { newer: self.seq });
        }
        let bucket_count = self.params.bucket_count();
        let mut slots = self.buckets.clone();
        let mut leaves = BTreeMap::new();
        for (bucket, undo) in buckets {
            if bucket.index() >= bucket_count {
                return Err(RewindError::BucketIndexOutOfRange {
                    seq,
                    bucket,
                    bucket_count,
                });
            }
            let newer = self.buckets.get(bucket.index()).as_deref();
            let objects = match (undo.objects, newer) {
                (Some(edits), Some(newer)) => edited(self.params, bucket, newer, edits),
                _ => None,
            };
            let computed =
                (objects.as_ref()).map(|objects| bucket_leaf(self.params, bucket.0, objects));
            let leaf = (undo.leaf.or(computed)).ok_or(RewindError::LeafUnknown { seq, bucket })?;
            let slot: Slot = objects.filter(|_| computed == Some(leaf)).map(Arc::new);
            *slots.get_mut(bucket.index()) = slot;
            leaves.insert(bucket.0, leaf);
        }
        let mut tree = self.tree.clone();
        tree.update(&leaves);
        let computed = tree.root();
        if computed != root {
            return Err(RewindError::RootMismatch {
                seq,
                root,
                computed,
            });
        }
        Ok(Snapshot {
            params: self.params,
            seq,
            root,
            buckets: slots,
            tree,
        })
    }
}

/// `newer` with `edits` applied; None if an edit's key belongs to another bucket.
fn edited(
    params: StateParams,
    bucket: BucketIndex,
    newer: &Bucket,
    edits: Vec<ObjectBefore>,
) -> Option<Bucket> {
    let mut objects = newer.clone();
    for (key, value) in edits {
        if params.bucket_of(&key) != bucket {
            return None;
        }
        match value {
            Some(value) => {
                let value_hash = value_hash(&value);
                objects.insert(key, Object { value, value_hash });
            }
            None => {
                objects.remove(&key);
            }
        }
    }
    Some(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectStore;

    fn latest() -> (ObjectStore, Snapshot) {
        let mut store = ObjectStore::new(StateParams::new(3).unwrap());
        store.put(b"a".to_vec(), b"1".to_vec()).unwrap();
        store.checkpoint(Seq(8));
        let snapshot = store.snapshot(Seq(8)).unwrap().clone();
        (store, snapshot)
    }

    #[test]
    fn bad_undo_is_an_error_naming_it_never_a_panic() {
        let (_, latest) = latest();
        let not_older = Undo {
            seq: Seq(8),
            ..Undo::default()
        };
        assert_eq!(
            latest.rewound(not_older).unwrap_err(),
            RewindError::NotOlder {
                seq: Seq(8),
                newer: Seq(8)
            }
        );
        let out_of_range = Undo {
            seq: Seq(4),
            root: Digest([1; 32]),
            buckets: BTreeMap::from([(BucketIndex(8), BucketUndo::default())]),
        };
        assert!(matches!(
            latest.rewound(out_of_range),
            Err(RewindError::BucketIndexOutOfRange {
                bucket_count: 8,
                ..
            })
        ));
        let no_leaf = Undo {
            seq: Seq(4),
            root: Digest([1; 32]),
            buckets: BTreeMap::from([(BucketIndex(2), BucketUndo::default())]),
        };
        assert!(matches!(
            latest.rewound(no_leaf),
            Err(RewindError::LeafUnknown {
                bucket: BucketIndex(2),
                ..
            })
        ));
        let wrong_root = Undo {
            seq: Seq(4),
            root: Digest([1; 32]),
            buckets: BTreeMap::new(),
        };
        assert!(matches!(
            latest.rewound(wrong_root),
            Err(RewindError::RootMismatch { computed, .. }) if computed == latest.root()
        ));
    }

    #[test]
    fn a_snapshot_whose_leaves_are_not_all_known_rewinds_nothing() {
        let (_, latest) = latest();
        let mut pinned = ObjectStore::pinned(latest.params, Seq(8), latest.root());
        pinned.checkpoint(Seq(16));
        let undo = Undo {
            seq: Seq(8),
            root: latest.root(),
            buckets: BTreeMap::new(),
        };
        assert_eq!(
            pinned.snapshot(Seq(16)).unwrap().rewound(undo).unwrap_err(),
            RewindError::NewerIncomplete { newer: Seq(16) }
        );
    }
}
