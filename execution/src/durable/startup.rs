//! What an execution replica starts from: its state store opened, and the checkpoint in
//! it rebuilt and checked.
//!
//! Which bad input is which:
//! - a file redb cannot open or read because it is damaged (truncated, overwritten,
//!   failing redb's checksums) or that holds no readable metadata: moved aside as
//!   `<name>.damaged-<unix ms>` (kept for inspection, never overwritten), logged, and
//!   replaced by an empty store; the replica then fetches the agreed state from its
//!   peers as a woken standby does;
//! - a checkpoint whose stored root neither the stored leaves nor the objects reproduce:
//!   nothing in it can be trusted bucket by bucket, so it is likewise not used (the file
//!   stays, and is rewritten whole at the next checkpoint);
//! - buckets whose objects fail their leaf: refused one by one, fetched from peers;
//! - a file of another format version or other state parameters, and operating problems
//!   (permissions, a lock another process holds): a start-up error naming the file and
//!   what to do. Data is never thrown away over them.

use super::disk::{DiskError, DiskStore};
use std::path::{Path, PathBuf};
use std::time::Instant;
use zz_protocol::Seq;
use zz_state_fetch::{BucketIndex, ObjectStore, RewindError, RootMismatch, StateParams};

/// A checkpoint rebuilt from the store and checked against its root.
#[derive(Debug)]
pub struct RestoredCheckpoint {
    pub seq: Seq,
    /// Pinned to the checkpoint; refused buckets are missing, to be fetched.
    pub store: ObjectStore,
    pub refused: Vec<BucketIndex>,
    /// The older checkpoints rebuilt (those since the latest stable one), ascending: the
    /// store keeps their snapshots, to serve fetchers pinned to them.
    pub older: Vec<Seq>,
    /// Why the next older one could not be rebuilt, if one could not (it is not served).
    pub older_refused: Option<RewindError>,
    /// How long reading and checking took.
    pub load_micros: u64,
}

/// Why the state on disk was of no use.
#[derive(Debug)]
pub enum LostState {
    /// The file was damaged and moved aside.
    SetAside { moved_to: PathBuf, problem: String },
    /// The checkpoint's root is reproduced by nothing stored.
    RootMismatch(RootMismatch),
}

/// See the module documentation.
#[derive(Debug)]
pub struct DurableStart {
    pub disk: DiskStore,
    /// The checkpoint held, when loading was asked for and it checked out.
    pub restored: Option<RestoredCheckpoint>,
    /// The state on disk could not be used: the replica should fetch the agreed state.
    pub lost: Option<LostState>,
}

/// Open the store at `path` (its directory is created if needed) and, if `load`, rebuild
/// the checkpoint it holds. `unix_ms` names a damaged file moved aside.
pub fn open_durable(
    path: &Path,
    params: StateParams,
    load: bool,
    unix_ms: u64,
) -> Result<DurableStart, DiskError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| DiskError::Unusable {
            path: dir.to_path_buf(),
            problem: error.to_string(),
        })?;
    }
    let disk = match DiskStore::open(path, params) {
        Err(DiskError::Damaged { problem, .. }) => {
            return start_over(path, params, unix_ms, problem);
        }
        opened => opened?,
    };
    if !load || disk.checkpoint().is_none() {
        return Ok(DurableStart {
            disk,
            restored: None,
            lost: None,
        });
    }
    let started = Instant::now();
    let restorer = match disk.load() {
        Ok(restorer) => restorer.expect("a checkpoint is held"),
        Err(DiskError::Damaged { problem, .. }) => {
            drop(disk);
            return start_over(path, params, unix_ms, problem);
        }
        Err(error) => return Err(error),
    };
    let (seq, _) = disk.checkpoint().expect("a checkpoint is held");
    match restorer.finish() {
        Ok(restored) => {
            let load_micros = started.elapsed().as_micros() as u64;
            if restored.refused.is_empty() {
                tracing::info!(path = %path.display(), %seq, load_ms = load_micros / 1000, "state restored from disk");
            } else {
                let buckets: Vec<String> =
                    (restored.refused.iter()).map(ToString::to_string).collect();
                tracing::warn!(path = %path.display(), %seq, refused = restored.refused.len(), buckets = %buckets.join(","), "state restored from disk; buckets failing their leaf are refused and fetched from peers");
            }
            if let Some(error) = &restored.older_refused {
                tracing::warn!(path = %path.display(), %error, "an older checkpoint kept on disk could not be rebuilt: it is not served");
            }
            if !restored.older.is_empty() {
                let older: Vec<String> = restored.older.iter().map(ToString::to_string).collect();
                tracing::info!(path = %path.display(), older = %older.join(","), "older checkpoints rebuilt, to serve fetchers pinned to them");
            }
            Ok(DurableStart {
                disk,
                restored: Some(RestoredCheckpoint {
                    seq,
                    store: restored.store,
                    refused: restored.refused,
                    older: restored.older,
                    older_refused: restored.older_refused,
                    load_micros,
                }),
                lost: None,
            })
        }
        Err(mismatch) => {
            tracing::warn!(path = %path.display(), %seq, %mismatch, "state on disk not used: fetching the agreed state from peers");
            Ok(DurableStart {
                disk,
                restored: None,
                lost: Some(LostState::RootMismatch(mismatch)),
            })
        }
    }
}

/// Move the damaged file at `path` aside and open an empty store in its place.
fn start_over(
    path: &Path,
    params: StateParams,
    unix_ms: u64,
    problem: String,
) -> Result<DurableStart, DiskError> {
    let moved_to = DiskStore::set_aside(path, unix_ms).map_err(|error| DiskError::Unusable {
        path: path.to_path_buf(),
        problem: format!("damaged ({problem}) and cannot be moved aside: {error}"),
    })?;
    tracing::warn!(path = %path.display(), moved_to = %moved_to.display(), %problem, "state store damaged: moved aside; fetching the agreed state from peers");
    let disk = DiskStore::open(path, params)?;
    Ok(DurableStart {
        disk,
        restored: None,
        lost: Some(LostState::SetAside { moved_to, problem }),
    })
}
