//! Application state as Merkle-hashed objects (the ZZ design's state representation).
//!
//! An app's state is a set of objects, key → value (both bytes). Objects hash into
//! `2^bucket_bits` buckets ([`StateParams::bucket_of`]); a bucket's digest covers its
//! sorted (key, value hash) pairs; a binary Merkle tree over the bucket digests gives the
//! state's root. Every hash is domain-separated and every variable-length field
//! length-prefixed (see `hash.rs`), so the root is a function of the objects alone:
//! replicas running different implementations of one app can compare roots.
//!
//! The crate is a sans-IO core: no clock, no randomness, no I/O, deterministic iteration
//! everywhere. Fetching buckets over the network belongs to the driver.
//!
//! # Calling protocol
//!
//! An execution replica (the driver) uses one [`ObjectStore`] per app:
//!
//! 1. **Create.** [`ObjectStore::new`] for a replica that starts from the empty state;
//!    [`ObjectStore::pinned`]`(params, seq, root)` for a woken standby that learned the
//!    latest stable checkpoint from f+1 matching agreement replicas. A pinned store has
//!    every bucket missing.
//! 2. **Execute.** Requests read through [`ObjectStore::get`] and [`ObjectStore::scan`] and
//!    write through [`ObjectStore::put`], [`ObjectStore::delete`] or, all or nothing,
//!    [`ObjectStore::apply`]. Each may answer [`NotFetched`]`{bucket}`: the driver parks
//!    the request, asks any execution replica for that bucket at the pinned checkpoint,
//!    and retries after the install. Reads have no effects, so a request may simply be
//!    re-executed; writes should be buffered and applied with `apply`, so a `NotFetched`
//!    never leaves a request half-applied.
//! 3. **Fetch.** A serving replica answers with
//!    [`Snapshot::bucket_with_proof`]; the fetching replica calls
//!    [`ObjectStore::install_bucket`], which verifies the proof against the pinned root
//!    and installs it, or returns an error and changes nothing (drop the answer, ask the
//!    next replica). In the background the driver walks
//!    [`ObjectStore::missing_buckets`] until [`ObjectStore::is_complete`].
//! 4. **Checkpoint.** Every K sequence numbers, [`ObjectStore::checkpoint`]`(seq)` rehashes
//!    only the buckets written since the last checkpoint and the tree paths above them,
//!    keeps a copy-on-write [`Snapshot`], and returns the root to send in
//!    `Checkpoint{seq, root}`. This works on a pinned store that is still fetching: the
//!    tree nodes a write needs are exactly those its bucket's proof revealed.
//! 5. **Stable.** When all active replicas' roots match, [`ObjectStore::mark_stable`]`(seq)`
//!    keeps the snapshots of the last two stable checkpoints (and newer ones) and drops
//!    the rest. At most [`UNSTABLE_SNAPSHOT_COUNT_MAX`] snapshots newer than the latest
//!    stable checkpoint are kept.
//! 6. **Serve.** [`ObjectStore::snapshot`]`(seq)` gives the state at a kept checkpoint;
//!    later writes to the live state never change it.
//! 7. **Persist and restore.** [`Snapshot::delta_since`] says what a durable copy of an
//!    older snapshot must write to become this one (changed objects and leaves only);
//!    [`Restorer`] rebuilds a store from such a copy, trusting only what hashes up to its
//!    root, and leaves the buckets that fail missing, to be fetched like a woken
//!    replica's. An [`Undo`] per older checkpoint the copy keeps (how the buckets that
//!    changed after it stood then) lets it rebuild those too, each checked against the
//!    root it was reported with, so a restarted replica still serves fetchers pinned to
//!    the stable checkpoint when it had written newer ones.
//!
//! # Example
//!
//! ```
//! use zz_protocol::Seq;
//! use zz_state_fetch::{ObjectStore, StateParams};
//!
//! let params = StateParams::default();
//! // An active replica executes and checkpoints.
//! let mut active = ObjectStore::new(params);
//! active.put(b"alice".to_vec(), b"100".to_vec()).unwrap();
//! let root = active.checkpoint(Seq(128));
//! active.mark_stable(Seq(128)).unwrap();
//!
//! // A woken standby knows only (seq, root), agreed by f+1 agreement replicas.
//! let mut woken = ObjectStore::pinned(params, Seq(128), root);
//! let missing = woken.get(b"alice").unwrap_err();
//! // The driver fetches the bucket from any execution replica ...
//! let proof = active.snapshot(Seq(128)).unwrap().bucket_with_proof(missing.bucket).unwrap();
//! // ... and the core verifies it against the agreed root before using it.
//! woken.install_bucket(proof).unwrap();
//! assert_eq!(woken.get(b"alice").unwrap(), Some(&b"100"[..]));
//! ```

mod cow;
mod error;
mod hash;
mod params;
mod proof;
mod store;
mod tree;

pub use error::{NotFetched, ProofError, StateError};
pub use hash::{empty_bucket_digest, root_of};
pub use params::{BucketIndex, StateParams};
pub use proof::BucketProof;
pub use store::{
    BucketDelta, BucketObjects, BucketUndo, KeyValue, LeafUnknown, ObjectBefore, ObjectDelta,
    ObjectEdit, ObjectStore, Restored, Restorer, RewindError, RootMismatch, STABLE_SNAPSHOT_COUNT,
    Snapshot, UNSTABLE_SNAPSHOT_COUNT_MAX, Undo, Write,
};
