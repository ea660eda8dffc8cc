//! One execution replica's durable checkpoint: `state/execution-<i>.redb`.
//!
//! Why redb: pure Rust (it builds into the static binary), one file per replica, ACID
//! transactions whose commit fsyncs, and a B-tree, which of the embedded stores is the
//! fastest at individually synced writes: a checkpoint is one such write. (fjall, an LSM,
//! is faster at batched writes, which a checkpoint is not; sled is unmaintained; rocksdb
//! needs a C++ build.)
//!
//! Layout, four tables:
//!
//! ```text
//! meta     &str -> bytes   "format"      u32 LE  FORMAT_VERSION
//!                          "bucket_bits" u8      the app's state parameters
//!                          "seq"         u64 LE  the checkpoint held (absent: none yet)
//!                          "root"        32 B    its Merkle root
//!                          "stable"      u64 LE  the latest checkpoint known stable
//! leaves   u32 -> 32 B     bucket index -> the bucket's leaf at that checkpoint
//! objects  bytes -> bytes  bucket index (u32 BE) ++ key -> value
//! undo     bytes -> bytes  older checkpoints kept, see below
//! ```
//!
//! Keying objects by bucket first makes one bucket one range scan. Each checkpoint is one
//! write transaction holding its seq and root, the leaves of the buckets that changed and
//! the objects that changed, so the file always holds exactly one checkpoint whole.
//!
//! The same transaction writes, into `undo`, what it overwrote: how the checkpoint before
//! it (its base, seq b) stood, so that a restarted replica can rebuild b too and serve
//! fetchers pinned to it (the stable checkpoint may be older than the last one written).
//! Records are keyed by b first, so dropping the checkpoints older than the latest stable
//! one is one range delete, done in a later transaction:
//!
//! ```text
//! b (u64 BE) ++ "L" ++ bucket (u32 BE)          -> 32 B      its leaf at b
//! b (u64 BE) ++ "O" ++ bucket (u32 BE) ++ key   -> 0 | 1 ++ value   absent at b | its value
//! b (u64 BE) ++ "R"                             -> 32 B      b's root
//! b (u64 BE) ++ "U" ++ bucket (u32 BE)          -> empty     its objects at b unknown
//! ```
//!
//! Files written before `undo` and `stable` existed simply hold no older checkpoint.
//!
//! Nothing read back is trusted: [`DiskStore::load`] hands the leaves and objects to a
//! [`Restorer`], which checks them against the root.

use super::WriteStats;
use super::commit;
use super::undo::{self, UNDO};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use zz_protocol::{Digest, Seq};
use zz_state_fetch::{BucketIndex, BucketObjects, Restorer, Snapshot, StateParams};

/// The layout above. A file of another version is refused at start-up, never rewritten.
pub const FORMAT_VERSION: u32 = 1;

/// Page cache redb keeps: the state itself lives in memory already, so this only speeds
/// up the B-tree walks of a checkpoint's writes.
const CACHE_BYTES: usize = 32 << 20;

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const LEAVES: TableDefinition<u32, &[u8]> = TableDefinition::new("leaves");
pub(super) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");

pub(super) const META_FORMAT: &str = "format";
const META_BUCKET_BITS: &str = "bucket_bits";
pub(super) const META_SEQ: &str = "seq";
pub(super) const META_ROOT: &str = "root";
pub(super) const META_STABLE: &str = "stable";

/// Why the store cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Not a readable redb file of ours: truncated, overwritten, or failing redb's own
    /// checksums. The caller moves it aside and fetches the agreed state instead.
    #[error("{path}: damaged ({problem})")]
    Damaged { path: PathBuf, problem: String },
    /// Written by another version of zz (or of redb): never rewritten, never guessed at.
    #[error(
        "{path}: state store format {found}, this zz reads format {FORMAT_VERSION}; \
         run the zz that wrote it, or move the file away to start this replica from its peers"
    )]
    FormatVersion { path: PathBuf, found: String },
    /// Written for other state parameters (the app's bucket_bits changed).
    #[error(
        "{path}: state store written with bucket_bits {found}, the app now has {expected}; \
         move the file away to start this replica from its peers"
    )]
    BucketBits {
        path: PathBuf,
        found: u8,
        expected: u8,
    },
    /// Anything else (permissions, a full disk, another process holding it): an
    /// operating problem to fix, not a reason to throw the data away.
    #[error("{path}: {problem}")]
    Unusable { path: PathBuf, problem: String },
}

/// An open state store. See the module documentation.
pub struct DiskStore {
    db: redb::Database,
    path: PathBuf,
    params: StateParams,
    checkpoint: Option<(Seq, Digest)>,
    /// The latest checkpoint recorded as stable (absent or unreadable: none).
    stable: Option<Seq>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.path)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl DiskStore {
    /// Open (creating if needed) the store at `path` for state of `params`. redb checks
    /// every page's checksum on open, so a damaged file is refused here rather than
    /// trusted, and an interrupted commit is rolled back to the last one.
    pub fn open(path: &Path, params: StateParams) -> Result<DiskStore, DiskError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|error| classify_open(path, error))?;
        let mut store = DiskStore {
            db,
            path: path.to_path_buf(),
            params,
            checkpoint: None,
            stable: None,
        };
        store.checkpoint = store.read_meta()?;
        store.stable = store.read_stable()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint the store holds, as its metadata names it (not checked yet).
    pub fn checkpoint(&self) -> Option<(Seq, Digest)> {
        self.checkpoint
    }

    /// The latest checkpoint recorded as stable.
    pub fn stable(&self) -> Option<Seq> {
        self.stable
    }

    /// The older checkpoints whose undo records are kept, ascending (scans every undo
    /// record).
    pub fn older_checkpoints(&self) -> Result<Vec<Seq>, DiskError> {
        let read = self.db.begin_read().map_err(|e| self.storage(e))?;
        let undo = match read.open_table(UNDO) {
            Ok(undo) => undo,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(self.storage(error)),
        };
        undo::roots(&undo).map_err(|e| self.storage(e))
    }

    /// The stable checkpoint, read leniently: it only bounds what is rebuilt, and every
    /// rebuilt checkpoint is checked against its root, so a bad record costs nothing.
    fn read_stable(&self) -> Result<Option<Seq>, DiskError> {
        let read = self.db.begin_read().map_err(|e| self.storage(e))?;
        let meta = read.open_table(META).map_err(|e| self.storage(e))?;
        let value = meta.get(META_STABLE).map_err(|e| self.storage(e))?;
        let seq = value.and_then(|value| <[u8; 8]>::try_from(value.value()).ok());
        Ok(seq.map(|seq| Seq(u64::from_le_bytes(seq))))
    }

    fn damaged(&self, problem: impl std::fmt::Display) -> DiskError {
        DiskError::Damaged {
            path: self.path.clone(),
            problem: problem.to_string(),
        }
    }

    /// An error from reading or writing an open file: damage if redb says so.
    fn storage(&self, error: impl Into<redb::Error>) -> DiskError {
        classify(&self.path, error.into())
    }

    /// Check the format and parameters (writing them into a new file) and read the
    /// checkpoint named, if any.
    fn read_meta(&self) -> Result<Option<(Seq, Digest)>, DiskError> {
        let read = self.db.begin_read().map_err(|e| self.storage(e))?;
        let meta = match read.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                drop(read);
                self.initialise()?;
                return Ok(None);
            }
            Err(error) => return Err(self.storage(error)),
        };
        let get = |name: &str| -> Result<Option<Vec<u8>>, DiskError> {
            let value = meta.get(name).map_err(|e| self.storage(e))?;
            Ok(value.map(|value| value.value().to_vec()))
        };
        let format = get(META_FORMAT)?.ok_or_else(|| self.damaged("no format version"))?;
        let format = <[u8; 4]>::try_from(format.as_slice())
            .map(u32::from_le_bytes)
            .map_err(|_| self.damaged(format!("format version of {} bytes", format.len())))?;
        if format != FORMAT_VERSION {
            return Err(DiskError::FormatVersion {
                path: self.path.clone(),
                found: format.to_string(),
            });
        }
        let bits = get(META_BUCKET_BITS)?.ok_or_else(|| self.damaged("no bucket_bits"))?;
        let [bits] = bits[..] else {
            return Err(self.damaged(format!("bucket_bits of {} bytes", bits.len())));
        };
        if bits != self.params.bucket_bits() {
            return Err(DiskError::BucketBits {
                path: self.path.clone(),
                found: bits,
                expected: self.params.bucket_bits(),
            });
        }
        match (get(META_SEQ)?, get(META_ROOT)?) {
            (None, None) => Ok(None),
            (Some(seq), Some(root)) => {
                let seq = <[u8; 8]>::try_from(seq.as_slice())
                    .map_err(|_| self.damaged(format!("checkpoint seq of {} bytes", seq.len())))?;
                let root = <[u8; 32]>::try_from(root.as_slice())
                    .map_err(|_| self.damaged(format!("root of {} bytes", root.len())))?;
                Ok(Some((Seq(u64::from_le_bytes(seq)), Digest(root))))
            }
            _ => Err(self.damaged("a checkpoint seq without its root, or a root without seq")),
        }
    }

    /// Mark a new file as ours: format version and parameters, no checkpoint yet.
    fn initialise(&self) -> Result<(), DiskError> {
        let write = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut meta = write.open_table(META).map_err(|e| self.storage(e))?;
            let format = FORMAT_VERSION.to_le_bytes();
            (meta.insert(META_FORMAT, &format[..])).map_err(|e| self.storage(e))?;
            let bits = [self.params.bucket_bits()];
            (meta.insert(META_BUCKET_BITS, &bits[..])).map_err(|e| self.storage(e))?;
            write.open_table(LEAVES).map_err(|e| self.storage(e))?;
            write.open_table(OBJECTS).map_err(|e| self.storage(e))?;
            write.open_table(UNDO).map_err(|e| self.storage(e))?;
        }
        write.commit().map_err(|e| self.storage(e))
    }

    /// Make `snapshot` the checkpoint held, in one transaction, writing only what differs
    /// from `base`, which must be what the store holds now (None: unknown, so every
    /// bucket is written whole). Nothing changes on error.
    pub fn write(
        &mut self,
        snapshot: &Snapshot,
        base: Option<&Snapshot>,
    ) -> Result<WriteStats, DiskError> {
        self.write_chain(&[snapshot], base, None)
    }

    /// Write `snapshots` (ascending) in one transaction, each as a delta on the one
    /// before it (the first on `base`, as in [`write`](Self::write)), keeping the undo of
    /// each base; and, if `stable` is newer than the one recorded, record it and drop the
    /// undo of the checkpoints before it. Nothing changes on error.
    pub fn write_chain(
        &mut self,
        snapshots: &[&Snapshot],
        base: Option<&Snapshot>,
        stable: Option<Seq>,
    ) -> Result<WriteStats, DiskError> {
        let mut chain = Vec::with_capacity(snapshots.len());
        let mut before = base;
        for &snapshot in snapshots {
            assert!(
                before.is_none_or(|before| before.seq() < snapshot.seq()),
                "checkpoints are written in sequence order"
            );
            let deltas = (snapshot.delta_since(before)).map_err(|error| DiskError::Unusable {
                path: self.path.clone(),
                problem: format!("checkpoint {}: {error}", snapshot.seq()),
            })?;
            chain.push((snapshot, before, deltas));
            before = Some(snapshot);
        }
        let stable = stable.filter(|&stable| self.stable.is_none_or(|known| stable > known));
        let stats =
            commit::write_checkpoints(&self.db, chain, stable).map_err(|e| self.storage(e))?;
        if let Some(last) = snapshots.last() {
            self.checkpoint = Some((last.seq(), last.root()));
        }
        self.stable = stable.or(self.stable);
        Ok(stats)
    }

    /// Record `stable` as the latest stable checkpoint, if newer, and drop the undo of
    /// the checkpoints before it, in a transaction of its own.
    pub fn record_stable(&mut self, stable: Seq) -> Result<WriteStats, DiskError> {
        self.write_chain(&[], None, Some(stable))
    }

    /// Read the checkpoint held into a [`Restorer`] (None if the store holds none).
    /// Leaves of the wrong length are left out, and objects whose key is too short to
    /// name a bucket are skipped: the restorer then refuses their buckets, or, for a
    /// record naming none, nothing depends on it.
    pub fn load(&self) -> Result<Option<Restorer>, DiskError> {
        let Some((seq, root)) = self.checkpoint else {
            return Ok(None);
        };
        let mut restorer = Restorer::new(self.params, seq, root);
        let read = self.db.begin_read().map_err(|e| self.storage(e))?;
        let leaves = read.open_table(LEAVES).map_err(|e| self.storage(e))?;
        for entry in leaves.iter().map_err(|e| self.storage(e))? {
            let (index, leaf) = entry.map_err(|e| self.storage(e))?;
            if let Ok(leaf) = <[u8; 32]>::try_from(leaf.value()) {
                restorer.leaf(BucketIndex(index.value()), Digest(leaf));
            }
        }
        let objects = read.open_table(OBJECTS).map_err(|e| self.storage(e))?;
        let mut current: Option<(BucketIndex, BucketObjects)> = None;
        let mut unplaced = 0u64;
        for entry in objects.iter().map_err(|e| self.storage(e))? {
            let (key, value) = entry.map_err(|e| self.storage(e))?;
            let Some((index, key)) = split_object_key(key.value()) else {
                unplaced += 1;
                continue;
            };
            match &mut current {
                Some((bucket, objects)) if *bucket == index => {
                    objects.push((key.to_vec(), value.value().to_vec()));
                }
                _ => {
                    if let Some((bucket, objects)) = current.take() {
                        restorer.bucket(bucket, objects);
                    }
                    current = Some((index, vec![(key.to_vec(), value.value().to_vec())]));
                }
            }
        }
        if let Some((bucket, objects)) = current {
            restorer.bucket(bucket, objects);
        }
        if unplaced > 0 {
            tracing::warn!(path = %self.path.display(), unplaced, "state store objects with keys too short to name a bucket: skipped");
        }
        if let Some(stable) = self.stable {
            restorer.stable(stable);
        }
        match read.open_table(UNDO) {
            Ok(table) => {
                let (older, malformed) = undo::read(&table).map_err(|e| self.storage(e))?;
                if malformed > 0 {
                    tracing::warn!(path = %self.path.display(), malformed, "state store undo records that name nothing: skipped");
                }
                for undo in older {
                    restorer.older(undo);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(self.storage(error)),
        }
        Ok(Some(restorer))
    }

    /// Close the store and move its file aside, as `<name>.damaged-<unix_ms>`, so that
    /// nothing is lost and a fresh store can take its place.
    pub fn set_aside(path: &Path, unix_ms: u64) -> std::io::Result<PathBuf> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".damaged-{unix_ms}"));
        let aside = path.with_file_name(name);
        std::fs::rename(path, &aside)?;
        Ok(aside)
    }
}

/// Object records sort by bucket, then key.
pub(super) fn object_key(bucket: BucketIndex, key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(4 + key.len());
    stored.extend_from_slice(&bucket.0.to_be_bytes());
    stored.extend_from_slice(key);
    stored
}

pub(super) fn split_object_key(stored: &[u8]) -> Option<(BucketIndex, &[u8])> {
    let (prefix, key) = stored.split_first_chunk::<4>()?;
    Some((BucketIndex(u32::from_be_bytes(*prefix)), key))
}

/// The keys of bucket `index`'s records: from its prefix to the next bucket's (there are
/// at most 2^20 buckets, so the next prefix exists).
pub(super) fn bucket_range(index: BucketIndex) -> (Vec<u8>, Vec<u8>) {
    let next = index
        .0
        .checked_add(1)
        .expect("bucket indexes stay far below u32::MAX");
    (index.0.to_be_bytes().to_vec(), next.to_be_bytes().to_vec())
}

/// Damage is what redb finds corrupted, and a file that is not a redb database at all
/// (redb reports an I/O error of kind InvalidData then); anything else is an operating
/// problem.
fn classify(path: &Path, error: redb::Error) -> DiskError {
    let damaged = match &error {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    };
    match (damaged, error) {
        (true, error) => DiskError::Damaged {
            path: path.to_path_buf(),
            problem: error.to_string(),
        },
        (false, redb::Error::UpgradeRequired(version)) => DiskError::FormatVersion {
            path: path.to_path_buf(),
            found: format!("redb file format {version}"),
        },
        (false, error) => DiskError::Unusable {
            path: path.to_path_buf(),
            problem: error.to_string(),
        },
    }
}

fn classify_open(path: &Path, error: redb::DatabaseError) -> DiskError {
    match error {
        // Repair runs when the last process stopped mid-commit; it is aborted only when
        // the file cannot be repaired.
        redb::DatabaseError::RepairAborted => DiskError::Damaged {
            path: path.to_path_buf(),
            problem: "redb could not repair it".to_string(),
        },
        error => classify(path, error.into()),
    }
}
