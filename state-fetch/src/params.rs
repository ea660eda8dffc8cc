//! The shape of the state: how many buckets, and which bucket a key falls in.

use crate::error::StateError;
use crate::hash;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A bucket, numbered `0..params.bucket_count()`. A bucket is the unit of hashing, of
/// copy-on-write sharing and of lazy fetch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct BucketIndex(pub u32);

impl BucketIndex {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BucketIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// State parameters every replica of an app must share: they change every root.
///
/// The state has `2^bucket_bits` buckets. More buckets make a lazy fetch finer-grained and
/// a checkpoint rehash smaller, at the cost of a deeper tree (longer proofs) and more
/// memory per snapshot (one tree node and one pointer per bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct StateParams {
    bucket_bits: u8,
}

impl StateParams {
    /// At least two buckets, so the tree has at least one level of inner nodes.
    pub const BUCKET_BITS_MIN: u8 = 1;
    /// About a million buckets; a fresh store hashes every leaf once, so this bounds the
    /// cost of creating one (about two million SHA-256 calls).
    pub const BUCKET_BITS_MAX: u8 = 20;
    pub const BUCKET_BITS_DEFAULT: u8 = 10;

    pub fn new(bucket_bits: u8) -> Result<StateParams, StateError> {
        if (Self::BUCKET_BITS_MIN..=Self::BUCKET_BITS_MAX).contains(&bucket_bits) {
            Ok(StateParams { bucket_bits })
        } else {
            Err(StateError::InvalidBucketBits {
                bucket_bits,
                min: Self::BUCKET_BITS_MIN,
                max: Self::BUCKET_BITS_MAX,
            })
        }
    }

    /// The depth of the Merkle tree, which is also the number of siblings in a proof.
    pub fn bucket_bits(self) -> u8 {
        self.bucket_bits
    }

    pub fn bucket_count(self) -> usize {
        1usize << self.bucket_bits
    }

    /// The bucket `key` falls in: the first `bucket_bits` bits of a domain-separated
    /// SHA-256 of the key. Hashing spreads an app's keys evenly whatever their shape.
    pub fn bucket_of(self, key: &[u8]) -> BucketIndex {
        BucketIndex(hash::key_bucket(self.bucket_bits, key))
    }
}

impl Default for StateParams {
    fn default() -> StateParams {
        StateParams {
            bucket_bits: Self::BUCKET_BITS_DEFAULT,
        }
    }
}

impl TryFrom<u8> for StateParams {
    type Error = StateError;
    fn try_from(bucket_bits: u8) -> Result<StateParams, StateError> {
        StateParams::new(bucket_bits)
    }
}

impl From<StateParams> for u8 {
    fn from(params: StateParams) -> u8 {
        params.bucket_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bits_are_validated() {
        assert!(StateParams::new(0).is_err());
        assert!(StateParams::new(21).is_err());
        assert_eq!(StateParams::new(1).unwrap().bucket_count(), 2);
        assert_eq!(StateParams::new(20).unwrap().bucket_count(), 1 << 20);
        assert_eq!(StateParams::default().bucket_bits(), 10);
    }

    #[test]
    fn deserializing_validates_too() {
        let bytes = postcard::to_allocvec(&0u8).unwrap();
        assert!(postcard::from_bytes::<StateParams>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&StateParams::default()).unwrap();
        assert_eq!(
            postcard::from_bytes::<StateParams>(&bytes).unwrap(),
            StateParams::default()
        );
    }

    #[test]
    fn keys_spread_over_all_buckets() {
        let params = StateParams::new(3).unwrap();
        let mut seen = [false; 8];
        for i in 0u32..256 {
            let bucket = params.bucket_of(&i.to_le_bytes());
            assert!(bucket.index() < 8);
            assert_eq!(bucket, params.bucket_of(&i.to_le_bytes()), "deterministic");
            seen[bucket.index()] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
