//! A bucket with its Merkle proof: what one execution replica serves another.

use crate::error::ProofError;
use crate::hash::{bucket_digest, inner_hash, leaf_hash, value_hash};
use crate::{BucketIndex, StateParams};
use serde::{Deserialize, Serialize};
use zz_protocol::Digest;

/// The full content of one bucket at a checkpoint, and the Merkle path that ties it to the
/// checkpoint's root.
///
/// It arrives from another replica that may be Byzantine: nothing in it is trusted until
/// [`BucketProof::verify`] accepts it against a root obtained from f+1 agreement replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProof {
    pub index: BucketIndex,
    /// Every object of the bucket as (key, value), strictly ascending by key.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The sibling of each node on the path from the bucket's leaf to the root, leaf level
    /// first; exactly `params.bucket_bits()` of them.
    pub siblings: Vec<Digest>,
}

/// What verification computed, kept so that installing does not hash twice.
pub(crate) struct VerifiedBucket {
    /// The node above the leaf at each level, leaf first, root last.
    pub(crate) path: Vec<Digest>,
    pub(crate) value_hashes: Vec<Digest>,
}

impl BucketProof {
    /// Checks that this is the complete content of bucket `index` in the state whose root
    /// is `root`: every key hashes to this bucket, keys are strictly ascending (so the
    /// content has a single encoding), and hashing the bucket and its path up with the
    /// siblings gives `root`.
    pub fn verify(&self, root: &Digest, params: StateParams) -> Result<(), ProofError> {
        self.check(root, params).map(|_| ())
    }

    pub(crate) fn check(
        &self,
        root: &Digest,
        params: StateParams,
    ) -> Result<VerifiedBucket, ProofError> {
        let bucket_count = params.bucket_count();
        if self.index.index() >= bucket_count {
            return Err(ProofError::BucketIndexOutOfRange {
                index: self.index,
                bucket_count,
            });
        }
        let depth = usize::from(params.bucket_bits());
        if self.siblings.len() != depth {
            return Err(ProofError::SiblingCountMismatch {
                expected: depth,
                actual: self.siblings.len(),
            });
        }
        for (position, pair) in self.entries.windows(2).enumerate() {
            let (previous, key) = (&pair[0].0, &pair[1].0);
            if previous >= key {
                return Err(ProofError::KeysNotAscending {
                    position: position + 1,
                    previous: previous.clone(),
                    key: key.clone(),
                });
            }
        }
        for (key, _) in &self.entries {
            let key_bucket = params.bucket_of(key);
            if key_bucket != self.index {
                return Err(ProofError::KeyInWrongBucket {
                    bucket: self.index,
                    key_bucket,
                    key: key.clone(),
                });
            }
        }

        let value_hashes: Vec<Digest> = self.entries.iter().map(|(_, v)| value_hash(v)).collect();
        let digest = bucket_digest(
            self.entries
                .iter()
                .zip(&value_hashes)
                .map(|((key, _), hash)| (key.as_slice(), hash)),
        );
        let mut path = Vec::with_capacity(depth + 1);
        path.push(leaf_hash(params.bucket_bits(), self.index.0, &digest));
        for (level, sibling) in self.siblings.iter().enumerate() {
            let node = path[level];
            // Bit `level` of the index says whether this node is a left or a right child.
            let parent = if (self.index.0 >> level) & 1 == 0 {
                inner_hash(&node, sibling)
            } else {
                inner_hash(sibling, &node)
            };
            path.push(parent);
        }
        let computed = path[depth];
        if computed != *root {
            return Err(ProofError::RootMismatch {
                expected: *root,
                computed,
            });
        }
        Ok(VerifiedBucket { path, value_hashes })
    }
}
