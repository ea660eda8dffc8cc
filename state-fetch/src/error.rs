//! Errors. Every variant carries the values that were compared, so a log line says what
//! was expected and what arrived without re-deriving it.

use crate::BucketIndex;
use zz_protocol::{Digest, Seq};

/// A read or write touched a bucket this replica has not fetched yet.
///
/// Not a failure: the driver fetches `bucket` (with its proof, from another execution
/// replica), hands it to [`ObjectStore::install_bucket`](crate::ObjectStore::install_bucket)
/// and retries the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bucket {bucket} is not fetched yet")]
pub struct NotFetched {
    pub bucket: BucketIndex,
}

/// Why a [`BucketProof`](crate::BucketProof) does not prove its bucket against a root.
/// A proof comes from another, possibly Byzantine, replica: the caller drops it and asks
/// the next replica.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("bucket {index} out of range: there are {bucket_count} buckets")]
    BucketIndexOutOfRange {
        index: BucketIndex,
        bucket_count: usize,
    },
    #[error("proof has {actual} siblings, a tree of this depth needs {expected}")]
    SiblingCountMismatch { expected: usize, actual: usize },
    #[error("keys not strictly ascending at entry {position}: {previous:?} then {key:?}")]
    KeysNotAscending {
        position: usize,
        previous: Vec<u8>,
        key: Vec<u8>,
    },
    #[error("key {key:?} hashes to bucket {key_bucket}, not to the proof's bucket {bucket}")]
    KeyInWrongBucket {
        bucket: BucketIndex,
        key_bucket: BucketIndex,
        key: Vec<u8>,
    },
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch { expected: Digest, computed: Digest },
}

/// Operating errors of the store (parameters, installs, stability bookkeeping).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("bucket_bits {bucket_bits} outside {min}..={max}")]
    InvalidBucketBits { bucket_bits: u8, min: u8, max: u8 },
    #[error("bucket {index} out of range: there are {bucket_count} buckets")]
    BucketIndexOutOfRange {
        index: BucketIndex,
        bucket_count: usize,
    },
    #[error(transparent)]
    NotFetched(#[from] NotFetched),
    #[error("bad bucket proof: {0}")]
    BadProof(#[from] ProofError),
    #[error("the store is not pinned to a checkpoint root: there is nothing to install")]
    NotPinned,
    #[error("bucket {bucket} is already present")]
    BucketPresent { bucket: BucketIndex },
    #[error("no snapshot is kept for checkpoint {seq}")]
    UnknownCheckpoint { seq: Seq },
    #[error("checkpoint {seq} is older than the latest stable checkpoint {latest_stable}")]
    StaleStable { seq: Seq, latest_stable: Seq },
}
