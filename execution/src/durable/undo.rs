//! The `undo` table of the state store (layout in [`super::disk`]): for each older
//! checkpoint kept, how the buckets changed after it stood then, written by the
//! transaction that overwrote them and read back into [`Undo`]s, none trusted (each
//! rebuilt checkpoint must reproduce its root).

use super::WriteStats;
use super::disk::{object_key, split_object_key};
use redb::{ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use zz_protocol::{Digest, Seq};
use zz_state_fetch::{
    BucketDelta, BucketIndex, BucketUndo, ObjectBefore, ObjectDelta, Snapshot, Undo,
};

pub(super) const UNDO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("undo");

const TAG_LEAF: u8 = b'L';
const TAG_OBJECT: u8 = b'O';
const TAG_ROOT: u8 = b'R';
const TAG_UNKNOWN: u8 = b'U';

const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

fn record_key(seq: Seq, tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + rest.len());
    key.extend_from_slice(&seq.0.to_be_bytes());
    key.push(tag);
    key.extend_from_slice(rest);
    key
}

/// The undo of `base`, which `deltas` overwrite: its root, and for each bucket changed,
/// its leaf and what its edited objects were (or that they are unknown: the bucket was
/// not fetched in one of the two).
pub(super) fn write(
    undo: &mut redb::Table<&[u8], &[u8]>,
    base: &Snapshot,
    deltas: &[BucketDelta<'_>],
    stats: &mut WriteStats,
) -> Result<(), redb::Error> {
    let seq = base.seq();
    undo.insert(
        record_key(seq, TAG_ROOT, &[]).as_slice(),
        &base.root().0[..],
    )?;
    stats.undo_records_written += 1;
    for delta in deltas {
        let bucket = delta.index.0.to_be_bytes();
        if let Some(leaf) = delta.leaf_before {
            undo.insert(record_key(seq, TAG_LEAF, &bucket).as_slice(), &leaf.0[..])?;
            stats.undo_records_written += 1;
        }
        match &delta.objects {
            ObjectDelta::Edit(edits) => {
                for edit in edits {
                    let key = record_key(seq, TAG_OBJECT, &object_key(delta.index, edit.key));
                    let value = match edit.before {
                        Some(value) => [&[PRESENT][..], value].concat(),
                        None => vec![ABSENT],
                    };
                    undo.insert(key.as_slice(), value.as_slice())?;
                    stats.undo_records_written += 1;
                }
            }
            ObjectDelta::Replace(_) | ObjectDelta::NotFetched => {
                undo.insert(record_key(seq, TAG_UNKNOWN, &bucket).as_slice(), &[][..])?;
                stats.undo_records_written += 1;
            }
        }
    }
    Ok(())
}

/// Drop the undo of every checkpoint before `stable` (None: of every checkpoint); the
/// count dropped.
pub(super) fn clear_before(
    undo: &mut redb::Table<&[u8], &[u8]>,
    stable: Option<Seq>,
) -> Result<u64, redb::Error> {
    let mut dropped = 0;
    let drop_it = |_: &[u8], _: &[u8]| {
        dropped += 1;
        false
    };
    match stable {
        Some(stable) => {
            let end = stable.0.to_be_bytes();
            undo.retain_in(..&end[..], drop_it)?;
        }
        None => undo.retain(drop_it)?,
    }
    Ok(dropped)
}

/// The checkpoints whose undo is kept, ascending.
pub(super) fn roots(
    undo: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<Vec<Seq>, redb::Error> {
    let mut seqs = Vec::new();
    for entry in undo.iter()? {
        let (key, _) = entry?;
        if let Some((seq, TAG_ROOT, [])) = split(key.value()) {
            seqs.push(seq);
        }
    }
    Ok(seqs)
}

fn split(key: &[u8]) -> Option<(Seq, u8, &[u8])> {
    let (seq, rest) = key.split_first_chunk::<8>()?;
    let (&tag, rest) = rest.split_first()?;
    Some((Seq(u64::from_be_bytes(*seq)), tag, rest))
}

/// One bucket's undo records as read, in whatever order their tags sort.
#[derive(Default)]
struct BucketRecords {
    leaf: Option<Digest>,
    objects: Vec<ObjectBefore>,
    /// A "U" record, or an object record whose value is unreadable.
    unknown: bool,
}

impl From<BucketRecords> for BucketUndo {
    fn from(records: BucketRecords) -> BucketUndo {
        BucketUndo {
            leaf: records.leaf,
            objects: (!records.unknown).then_some(records.objects),
        }
    }
}

fn records(
    buckets: &mut BTreeMap<Seq, BTreeMap<BucketIndex, BucketRecords>>,
    seq: Seq,
    bucket: BucketIndex,
) -> &mut BucketRecords {
    buckets.entry(seq).or_default().entry(bucket).or_default()
}

/// Every older checkpoint's undo with a root record, and how many records named
/// nothing readable (skipped: a checkpoint missing what they held fails its root check).
pub(super) fn read(
    undo: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<(Vec<Undo>, u64), redb::Error> {
    let mut roots: BTreeMap<Seq, Digest> = BTreeMap::new();
    let mut buckets: BTreeMap<Seq, BTreeMap<BucketIndex, BucketRecords>> = BTreeMap::new();
    let mut malformed = 0;
    for entry in undo.iter()? {
        let (key, value) = entry?;
        let (key, value) = (key.value(), value.value());
        let Some((seq, tag, rest)) = split(key) else {
            malformed += 1;
            continue;
        };
        let bucket_of = |rest: &[u8]| {
            (<[u8; 4]>::try_from(rest).ok()).map(|index| BucketIndex(u32::from_be_bytes(index)))
        };
        let named = match tag {
            TAG_ROOT => (<[u8; 32]>::try_from(value).ok())
                .map(|root| roots.insert(seq, Digest(root)))
                .is_some(),
            TAG_LEAF => match (bucket_of(rest), <[u8; 32]>::try_from(value)) {
                (Some(bucket), Ok(leaf)) => {
                    records(&mut buckets, seq, bucket).leaf = Some(Digest(leaf));
                    true
                }
                _ => false,
            },
            TAG_UNKNOWN => match bucket_of(rest) {
                Some(bucket) => {
                    records(&mut buckets, seq, bucket).unknown = true;
                    true
                }
                None => false,
            },
            TAG_OBJECT => match (split_object_key(rest), value.split_first()) {
                (Some((bucket, object)), Some((&marker, stored))) => {
                    let records = records(&mut buckets, seq, bucket);
                    match (marker, stored) {
                        (ABSENT, []) => records.objects.push((object.to_vec(), None)),
                        (PRESENT, value) => records
                            .objects
                            .push((object.to_vec(), Some(value.to_vec()))),
                        _ => records.unknown = true,
                    }
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !named {
            malformed += 1;
        }
    }
    let older = roots
        .into_iter()
        .map(|(seq, root)| {
            let records = buckets.remove(&seq).unwrap_or_default();
            Undo {
                seq,
                root,
                buckets: (records.into_iter())
                    .map(|(bucket, records)| (bucket, records.into()))
                    .collect(),
            }
        })
        .collect();
    Ok((older, malformed))
}
