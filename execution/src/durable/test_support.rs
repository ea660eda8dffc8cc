//! Damage for tests: change a stopped replica's state store through redb, as bit rot or a
//! bad disk would, keeping redb's own checksums valid so that only zz's checks can tell.
//! Each function opens the file, changes one record in one transaction, and closes it.

use super::disk::{LEAVES, META, META_FORMAT, OBJECTS};
use redb::ReadableTable;
use std::path::Path;

/// Records visited at most looking for a key (a test store is small).
const RECORDS_SCANNED_MAX: usize = 1 << 24;

fn change<T>(
    path: &Path,
    edit: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
) -> Result<T, String> {
    let run = || -> Result<T, redb::Error> {
        let db = redb::Database::create(path)?;
        let write = db.begin_write()?;
        let changed = edit(&write)?;
        write.commit()?;
        Ok(changed)
    };
    run().map_err(|error| format!("{}: {error}", path.display()))
}

/// The stored record key of the object `key`, whatever its bucket.
fn find_object(
    objects: &redb::Table<&[u8], &[u8]>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, redb::Error> {
    for entry in objects.iter()?.take(RECORDS_SCANNED_MAX) {
        let (stored, _) = entry?;
        if stored.value().get(4..) == Some(key) {
            return Ok(Some(stored.value().to_vec()));
        }
    }
    Ok(None)
}

/// Give the stored object `key` (the store's key: app prefix included) the value `value`.
/// False if no such object is stored.
pub fn overwrite_object_value(path: &Path, key: &[u8], value: &[u8]) -> Result<bool, String> {
    change(path, |write| {
        let mut objects = write.open_table(OBJECTS)?;
        let Some(stored) = find_object(&objects, key)? else {
            return Ok(false);
        };
        objects.insert(stored.as_slice(), value)?;
        Ok(true)
    })
}

/// Remove the stored object `key`. False if no such object is stored.
pub fn delete_object(path: &Path, key: &[u8]) -> Result<bool, String> {
    change(path, |write| {
        let mut objects = write.open_table(OBJECTS)?;
        let Some(stored) = find_object(&objects, key)? else {
            return Ok(false);
        };
        objects.remove(stored.as_slice())?;
        Ok(true)
    })
}

/// Give bucket `bucket` the stored leaf `leaf`.
pub fn overwrite_leaf(path: &Path, bucket: u32, leaf: [u8; 32]) -> Result<bool, String> {
    change(path, |write| {
        let mut leaves = write.open_table(LEAVES)?;
        Ok(leaves.insert(bucket, &leaf[..])?.is_some())
    })
}

/// Mark the store as written in format `version`, as another zz would.
pub fn set_format_version(path: &Path, version: u32) -> Result<bool, String> {
    change(path, |write| {
        let mut meta = write.open_table(META)?;
        Ok(meta
            .insert(META_FORMAT, &version.to_le_bytes()[..])?
            .is_some())
    })
}

/// Give every undo record of the object `key` (the store's key) the stored value `value`;
/// how many there were.
pub fn overwrite_undo_objects(path: &Path, key: &[u8], value: &[u8]) -> Result<u64, String> {
    change(path, |write| {
        let mut undo = write.open_table(super::undo::UNDO)?;
        let mut found = Vec::new();
        for entry in undo.iter()?.take(RECORDS_SCANNED_MAX) {
            let (stored, _) = entry?;
            // seq (8) ++ "O" ++ bucket (4) ++ key
            let record = stored.value();
            if record.get(8) == Some(&b'O') && record.get(13..) == Some(key) {
                found.push(record.to_vec());
            }
        }
        for record in &found {
            undo.insert(record.as_slice(), value)?;
        }
        Ok(found.len() as u64)
    })
}
