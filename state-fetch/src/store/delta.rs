//! What a durable copy of one snapshot must write to become a later one: per changed
//! bucket its new leaf and the objects put or deleted, so that a checkpoint writes bytes in
//! proportion to what its requests changed, not to the size of the buckets they touched.
//!
//! Buckets are compared by pointer first: snapshots share unchanged buckets (`Arc`), and
//! while the base snapshot is alive a written bucket is always a fresh copy, so an equal
//! pointer means an unchanged bucket. A bucket whose pointer differs is diffed object by
//! object (by value hash), so the comparison costs no hashing.

use super::{Bucket, Object, Snapshot};
use crate::BucketIndex;
use std::cmp::Ordering;
use std::sync::Arc;
use zz_protocol::Digest;

/// How one bucket changed between a base snapshot and a later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketDelta<'a> {
    pub index: BucketIndex,
    /// The bucket's leaf in the later snapshot.
    pub leaf: Digest,
    /// Its leaf in the base, if known: with the edits' `before` values, what a durable
    /// copy keeps to rebuild the base later (see [`Undo`](super::Undo)).
    pub leaf_before: Option<Digest>,
    pub objects: ObjectDelta<'a>,
}

/// One object put or deleted since the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectEdit<'a> {
    pub key: &'a [u8],
    /// Its value in the later snapshot (None: deleted).
    pub after: Option<&'a [u8]>,
    /// Its value in the base (None: absent then).
    pub before: Option<&'a [u8]>,
}

/// What happened to a bucket's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectDelta<'a> {
    /// The base's copy of the bucket is unknown (no base, or the bucket was not fetched
    /// in it): its objects are exactly these, ascending by key.
    Replace(Vec<(&'a [u8], &'a [u8])>),
    /// Objects put or deleted since the base, ascending by key.
    Edit(Vec<ObjectEdit<'a>>),
    /// The bucket is not fetched in the later snapshot: its objects are unknown here, only
    /// its leaf is. A durable copy keeps whatever objects it has, which then no longer
    /// match the leaf, so a restore refuses them and fetches the bucket.
    NotFetched,
}

/// A bucket not fetched in the later snapshot whose leaf that snapshot does not know
/// either (a store pinned to a root it learned from others, still fetching): the snapshot
/// cannot be written in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bucket {bucket} is not fetched and its leaf is unknown")]
pub struct LeafUnknown {
    pub bucket: BucketIndex,
}

impl Snapshot {
    /// The leaf of bucket `index` in this snapshot's tree, if known.
    pub fn leaf(&self, index: BucketIndex) -> Option<Digest> {
        self.tree.leaf(index.0)
    }

    /// The first bucket neither fetched nor of known leaf, if any: while there is one,
    /// [`delta_since`](Self::delta_since) fails and the snapshot cannot be written.
    pub fn unknown_leaf(&self) -> Option<BucketIndex> {
        (0..self.params.bucket_count() as u32)
            .map(BucketIndex)
            .find(|&bucket| {
                self.buckets.get(bucket.index()).is_none() && self.leaf(bucket).is_none()
            })
    }

    /// What a durable copy of `base` (none: an empty copy that may hold stale objects)
    /// must write to become this snapshot, bucket by bucket in ascending order; unchanged
    /// buckets are left out. Fails if a bucket this snapshot lacks has an unknown leaf.
    pub fn delta_since<'a>(
        &'a self,
        base: Option<&'a Snapshot>,
    ) -> Result<Vec<BucketDelta<'a>>, LeafUnknown> {
        if let Some(base) = base {
            assert_eq!(base.params, self.params, "snapshots of one state");
        }
        let mut deltas = Vec::new();
        for index in 0..self.params.bucket_count() {
            let bucket = BucketIndex(index as u32);
            let before = base.and_then(|base| base.buckets.get(index).as_ref());
            let after = self.buckets.get(index).as_ref();
            let objects = match (before, after) {
                (Some(before), Some(after)) if Arc::ptr_eq(before, after) => continue,
                (Some(before), Some(after)) => {
                    let edits = edits(before, after);
                    if edits.is_empty() {
                        continue;
                    }
                    ObjectDelta::Edit(edits)
                }
                (None, Some(after)) => ObjectDelta::Replace(
                    (after.iter())
                        .map(|(key, o)| (key.as_slice(), o.value.as_slice()))
                        .collect(),
                ),
                (_, None) => ObjectDelta::NotFetched,
            };
            let leaf = self.leaf(bucket).ok_or(LeafUnknown { bucket })?;
            let leaf_before = base.and_then(|base| base.leaf(bucket));
            if objects == ObjectDelta::NotFetched && leaf_before == Some(leaf) {
                continue;
            }
            deltas.push(BucketDelta {
                index: bucket,
                leaf,
                leaf_before,
                objects,
            });
        }
        Ok(deltas)
    }
}

/// The puts and deletes that turn `before` into `after`: a merge of the two key orders.
fn edits<'a>(before: &'a Bucket, after: &'a Bucket) -> Vec<ObjectEdit<'a>> {
    let mut edits = Vec::new();
    let mut old = before.iter().peekable();
    let mut new = after.iter().peekable();
    let put = |(key, o): (&'a Vec<u8>, &'a Object), before: Option<&'a Object>| ObjectEdit {
        key: key.as_slice(),
        after: Some(o.value.as_slice()),
        before: before.map(|o| o.value.as_slice()),
    };
    let delete = |(key, o): (&'a Vec<u8>, &'a Object)| ObjectEdit {
        key: key.as_slice(),
        after: None,
        before: Some(o.value.as_slice()),
    };
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((old_key, _)), Some((new_key, _))) => old_key.cmp(new_key),
        };
        match order {
            Ordering::Less => edits.push(delete(old.next().expect("peeked"))),
            Ordering::Greater => edits.push(put(new.next().expect("peeked"), None)),
            Ordering::Equal => {
                let (_, old_object) = old.next().expect("peeked");
                let (key, new_object) = new.next().expect("peeked");
                if old_object.value_hash != new_object.value_hash {
                    edits.push(put((key, new_object), Some(old_object)));
                }
            }
        }
    }
    edits
}
