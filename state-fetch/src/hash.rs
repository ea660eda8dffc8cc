//! Every hash of the state, each under its own domain tag so that a digest of one kind
//! (key, value, bucket, leaf, inner node) can never be passed off as another. Tags end in
//! NUL, so no tag is a prefix of another; variable-length fields are length-prefixed.

use crate::StateParams;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use zz_protocol::Digest;

const TAG_KEY: &[u8] = b"zz/state-fetch/v1/key\0";
const TAG_VALUE: &[u8] = b"zz/state-fetch/v1/value\0";
const TAG_BUCKET: &[u8] = b"zz/state-fetch/v1/bucket\0";
const TAG_LEAF: &[u8] = b"zz/state-fetch/v1/leaf\0";
const TAG_INNER: &[u8] = b"zz/state-fetch/v1/inner\0";

fn tagged(tag: &[u8]) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher
}

fn finish(hasher: Sha256) -> Digest {
    Digest(hasher.finalize().into())
}

/// The first `bucket_bits` bits of the key's hash, read big-endian.
pub(crate) fn key_bucket(bucket_bits: u8, key: &[u8]) -> u32 {
    assert!((1..=32).contains(&bucket_bits));
    let mut hasher = tagged(TAG_KEY);
    hasher.update(key);
    let digest = finish(hasher);
    let prefix = u32::from_be_bytes([digest.0[0], digest.0[1], digest.0[2], digest.0[3]]);
    prefix >> (32 - u32::from(bucket_bits))
}

pub(crate) fn value_hash(value: &[u8]) -> Digest {
    let mut hasher = tagged(TAG_VALUE);
    hasher.update(value);
    finish(hasher)
}

/// The digest of a bucket's content: its (key, value hash) pairs in the order given, which
/// callers guarantee is strictly ascending by key. Keys are length-prefixed (value hashes
/// have a fixed length), so two different bucket contents never encode to the same bytes.
pub(crate) fn bucket_digest<'a>(
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Digest)>,
) -> Digest {
    let mut hasher = tagged(TAG_BUCKET);
    hasher.update((entries.len() as u64).to_le_bytes());
    for (key, value_hash) in entries {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key);
        hasher.update(value_hash.0);
    }
    finish(hasher)
}

/// The digest of a bucket without objects (the same for every bucket).
pub fn empty_bucket_digest() -> Digest {
    bucket_digest(std::iter::empty())
}

/// A leaf binds the bucket digest to its position and to the tree's depth: otherwise a
/// proof for one empty bucket would also "prove" every other empty bucket.
pub(crate) fn leaf_hash(bucket_bits: u8, index: u32, bucket: &Digest) -> Digest {
    let mut hasher = tagged(TAG_LEAF);
    hasher.update([bucket_bits]);
    hasher.update(index.to_be_bytes());
    hasher.update(bucket.0);
    finish(hasher)
}

pub(crate) fn inner_hash(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = tagged(TAG_INNER);
    hasher.update(left.0);
    hasher.update(right.0);
    finish(hasher)
}

/// The root of the state holding exactly `objects`, computed from scratch (a later
/// duplicate key wins). This is the reference the incremental [`ObjectStore`] must agree
/// with, and lets a different implementation of an app check its state against ours.
///
/// [`ObjectStore`]: crate::ObjectStore
pub fn root_of<'a>(
    params: StateParams,
    objects: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Digest {
    let mut buckets: BTreeMap<u32, BTreeMap<&[u8], Digest>> = BTreeMap::new();
    for (key, value) in objects {
        buckets
            .entry(params.bucket_of(key).0)
            .or_default()
            .insert(key, value_hash(value));
    }
    let empty = empty_bucket_digest();
    let mut level: Vec<Digest> = (0..params.bucket_count() as u32)
        .map(|index| {
            let digest = buckets.get(&index).map_or(empty, |bucket| {
                bucket_digest(bucket.iter().map(|(key, hash)| (*key, hash)))
            });
            leaf_hash(params.bucket_bits(), index, &digest)
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| inner_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_remove_ambiguity() {
        let h = value_hash(b"v");
        let ab_c = bucket_digest([(&b"ab"[..], &h), (&b"c"[..], &h)].into_iter());
        let a_bc = bucket_digest([(&b"a"[..], &h), (&b"bc"[..], &h)].into_iter());
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn domains_are_separated() {
        // The same bytes under different tags must not collide.
        let d = Digest([7; 32]);
        assert_ne!(value_hash(&[]), empty_bucket_digest());
        assert_ne!(inner_hash(&d, &d), leaf_hash(1, 0, &d));
        assert_ne!(
            leaf_hash(1, 0, &d),
            leaf_hash(1, 1, &d),
            "position is bound"
        );
        assert_ne!(leaf_hash(1, 0, &d), leaf_hash(2, 0, &d), "depth is bound");
    }

    #[test]
    fn empty_bucket_digest_is_fixed() {
        assert_eq!(empty_bucket_digest(), empty_bucket_digest());
        let params = StateParams::new(2).unwrap();
        assert_eq!(root_of(params, []), root_of(params, []));
        assert_ne!(
            root_of(params, [(&b"k"[..], &b""[..])]),
            root_of(params, [])
        );
    }
}
