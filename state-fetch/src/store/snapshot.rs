//! Copy-on-write snapshots: the state at a checkpoint, which serves fetching replicas.

use super::{Slot, present};
use crate::cow::CowVec;
use crate::error::{NotFetched, StateError};
use crate::proof::BucketProof;
use crate::tree::MerkleTree;
use crate::{BucketIndex, StateParams};
use std::fmt;
use zz_protocol::{Digest, Seq};

/// The state at a checkpoint, sharing unchanged buckets with the live state.
#[derive(Clone)]
pub struct Snapshot {
    pub(super) params: StateParams,
    pub(super) seq: Seq,
    pub(super) root: Digest,
    pub(super) buckets: CowVec<Slot>,
    pub(super) tree: MerkleTree,
}

impl Snapshot {
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn root(&self) -> Digest {
        self.root
    }

    /// The value of `key` at this checkpoint.
    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>, NotFetched> {
        let bucket = present(self.params, &self.buckets, key)?;
        Ok(bucket.get(key).map(|o| o.value.as_slice()))
    }

    /// Bucket `index` as of this checkpoint with the proof that ties it to [`root`](Self::root),
    /// to serve a replica that fetches it. A pinned replica can serve only what it has.
    pub fn bucket_with_proof(&self, index: BucketIndex) -> Result<BucketProof, StateError> {
        let bucket_count = self.params.bucket_count();
        if index.index() >= bucket_count {
            return Err(StateError::BucketIndexOutOfRange {
                index,
                bucket_count,
            });
        }
        let bucket = self
            .buckets
            .get(index.index())
            .as_ref()
            .ok_or(NotFetched { bucket: index })?;
        let siblings = self
            .tree
            .siblings(index.0)
            .expect("invariant: the path of a present bucket is known");
        let entries = bucket
            .iter()
            .map(|(key, o)| (key.clone(), o.value.clone()))
            .collect();
        Ok(BucketProof {
            index,
            entries,
            siblings,
        })
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}
