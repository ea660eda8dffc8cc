//! One write transaction of the state store (layout in [`super::disk`]): the checkpoints
//! that waited, each as a delta on the one before with the undo of its base, and the
//! latest stable checkpoint with the undo before it dropped.

use super::WriteStats;
use super::disk::{
    LEAVES, META, META_ROOT, META_SEQ, META_STABLE, OBJECTS, bucket_range, object_key,
};
use super::undo::{self, UNDO};
use zz_protocol::Seq;
use zz_state_fetch::{BucketDelta, BucketIndex, ObjectDelta, ObjectEdit, Snapshot};

/// A checkpoint to write, the base it is a delta on, and the delta.
pub(super) type Link<'a> = (&'a Snapshot, Option<&'a Snapshot>, Vec<BucketDelta<'a>>);

/// One transaction: each checkpoint's changed leaves and objects, with the undo of its
/// base, then the last one's seq and root; then the stable checkpoint, if given, with the
/// undo before it dropped.
pub(super) fn write_checkpoints(
    db: &redb::Database,
    chain: Vec<Link<'_>>,
    stable: Option<Seq>,
) -> Result<WriteStats, redb::Error> {
    let mut stats = WriteStats::default();
    let write = db.begin_write()?;
    {
        let mut leaves = write.open_table(LEAVES)?;
        let mut objects = write.open_table(OBJECTS)?;
        let mut undo = write.open_table(UNDO)?;
        let mut meta = write.open_table(META)?;
        for (snapshot, base, deltas) in chain {
            match base {
                Some(base) => undo::write(&mut undo, base, &deltas, &mut stats)?,
                // The file's content is unknown: undo records in it belong to no chain.
                None => stats.undo_records_deleted += undo::clear_before(&mut undo, None)?,
            }
            write_delta(&mut leaves, &mut objects, deltas, &mut stats)?;
            meta.insert(META_SEQ, &snapshot.seq().0.to_le_bytes()[..])?;
            meta.insert(META_ROOT, &snapshot.root().0[..])?;
        }
        if let Some(stable) = stable {
            stats.undo_records_deleted += undo::clear_before(&mut undo, Some(stable))?;
            meta.insert(META_STABLE, &stable.0.to_le_bytes()[..])?;
        }
    }
    write.commit()?;
    Ok(stats)
}

/// One checkpoint's changed leaves and objects.
fn write_delta(
    leaves: &mut redb::Table<u32, &[u8]>,
    objects: &mut redb::Table<&[u8], &[u8]>,
    deltas: Vec<BucketDelta<'_>>,
    stats: &mut WriteStats,
) -> Result<(), redb::Error> {
    for delta in deltas {
        let index = delta.index;
        leaves.insert(index.0, &delta.leaf.0[..])?;
        match delta.objects {
            ObjectDelta::Replace(replacement) => {
                let (start, end) = bucket_range(index);
                objects.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
                for (key, value) in replacement {
                    put_object(objects, index, key, value, stats)?;
                }
            }
            ObjectDelta::Edit(edits) => {
                for ObjectEdit { key, after, .. } in edits {
                    match after {
                        Some(value) => put_object(objects, index, key, value, stats)?,
                        None => {
                            objects.remove(object_key(index, key).as_slice())?;
                            stats.objects_deleted += 1;
                        }
                    }
                }
            }
            ObjectDelta::NotFetched => {}
        }
        stats.leaves_written += 1;
    }
    Ok(())
}

fn put_object(
    objects: &mut redb::Table<&[u8], &[u8]>,
    index: BucketIndex,
    key: &[u8],
    value: &[u8],
    stats: &mut WriteStats,
) -> Result<(), redb::Error> {
    objects.insert(object_key(index, key).as_slice(), value)?;
    stats.objects_put += 1;
    stats.object_bytes += (key.len() + value.len()) as u64;
    Ok(())
}
