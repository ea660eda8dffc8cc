//! The record file format. A header, then frames one after the other, each a record or a
//! sync marker:
//!
//! ```text
//! header:  "zzrecord" (8 bytes) | format version (u32 LE) | file id (8 bytes)
//! record:  length (u32 LE) | length check (u32 LE) | checksum (8 bytes) | postcard payload
//! marker:  "zzsynced" (8 bytes) | synced bytes (u64 LE) | checksum (8 bytes)
//! ```
//!
//! The length check is the first 4 bytes of a SHA-256 of the file id and the length, so a
//! damaged length is told from a record that was being written when the process died; a
//! record's checksum is the first 8 bytes of a SHA-256 of the file id, the length and the
//! payload. The file id is drawn whenever the file is written whole (created, rewritten,
//! or cut), so bytes of another file, or of an earlier version of this one (stale disk
//! blocks, a page written to the wrong place), never pass a check here.
//!
//! A sync marker says "this file was durably synced up to byte S" (S: the synced bytes);
//! the writer puts one before the first record after each sync, in the same write, so
//! S is always the marker's own offset (a marker anywhere else is not valid). Its checksum
//! covers the file id and S. No record starts with the marker's magic (read as a length,
//! its first 4 bytes exceed the largest record), so a reader tells the two apart.
//!
//! Reading forgives exactly one thing: a torn tail, what was appended after the last sync
//! and lost in a crash or a power cut (which can lose pages in any order, leaving a hole
//! of zeros or garbage before bytes that look whole). Damage at offset X is such a tail,
//! cut off at X, unless a valid sync marker after X shows the file was synced past X: then
//! synced records are damaged, and the file is refused. A record that passes its checksum
//! but does not decode is refused wherever it is.

use crate::core::persist::Record;
use zz_protocol::Digest;

const MAGIC: [u8; 8] = *b"zzrecord";
const MARKER_MAGIC: [u8; 8] = *b"zzsynced";
/// The record format this zz writes and reads.
/// 3: batches carry stability certificates, app heads their stable checkpoint.
/// 4: requests carry their client's signature.
/// 5: prepared certificates and new views name their batches by digest.
pub const FORMAT_VERSION: u32 = 5;
/// Bytes of the file header: the magic, the version and the file id.
pub(super) const HEADER_BYTES: usize = MAGIC.len() + 4 + FILE_ID_BYTES;
const FILE_ID_BYTES: usize = 8;
/// Bytes before each record's payload: length, length check, checksum.
const FRAME_HEADER_BYTES: usize = 4 + 4 + 8;
/// Bytes of a sync marker: magic, synced bytes, checksum.
pub(super) const MARKER_BYTES: usize = MARKER_MAGIC.len() + 8 + 8;
/// Bytes one record's payload may take at most.
const RECORD_BYTES_MAX: u32 = 1 << 30;

// A marker is never read as a record: its magic, read as a record's length, is too long.
const _: () = assert!(
    u32::from_le_bytes([
        MARKER_MAGIC[0],
        MARKER_MAGIC[1],
        MARKER_MAGIC[2],
        MARKER_MAGIC[3]
    ]) > RECORD_BYTES_MAX
);

/// Which version of a record file its checks are bound to (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId(pub(super) [u8; FILE_ID_BYTES]);

/// Why a record file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "written by an older zz (no format header); this zz cannot read it: move the cluster \
         directory aside and run zz up to create a new one"
    )]
    NoHeader,
    #[error(
        "its format header is cut short: the file is damaged; restore it from a backup, or \
         move the cluster directory aside and run zz up to create a new one"
    )]
    ShortHeader,
    #[error(
        "written in record format {found} by {}, and this zz reads format {FORMAT_VERSION} \
         only: run the zz that wrote it, or move the cluster directory aside and run zz up to \
         create a new one",
        if *found < FORMAT_VERSION { "an older zz" } else { "a newer zz" }
    )]
    UnknownVersion { found: u32 },
    #[error(
        "the frame at byte {offset} {problem}, and a sync marker at byte {synced_bytes} shows \
         the file was synced past it: synced records are damaged (only what was appended \
         after the last sync is dropped on its own); restore it from a backup, or move the \
         cluster directory aside and run zz up to create a new one"
    )]
    SyncedDamage {
        offset: u64,
        problem: Corruption,
        synced_bytes: u64,
    },
    #[error(
        "the record at byte {offset} passes its checksum but does not decode as a record: \
         written by another zz; run the zz that wrote it, or move the cluster directory aside \
         and run zz up to create a new one"
    )]
    Undecodable { offset: u64 },
}

/// What is wrong with a damaged frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("is cut short by the end of the file")]
    CutShort,
    #[error("has a damaged length")]
    Length,
    #[error("fails its checksum")]
    Checksum,
    #[error("is a damaged sync marker")]
    Marker,
}

/// What a record file holds.
#[derive(Debug)]
pub(super) struct Contents {
    pub(super) file_id: FileId,
    pub(super) records: Vec<Record>,
    /// Bytes from the start of the file up to the end of the last whole frame; a torn tail
    /// after them, if any, is to be cut off.
    pub(super) valid_bytes: usize,
}

pub(super) fn header(file_id: FileId) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[MAGIC.len() + 4..].copy_from_slice(&file_id.0);
    header
}

/// Append `record`, framed, to `out`.
pub(super) fn encode_record(record: &Record, file_id: FileId, out: &mut Vec<u8>) {
    let payload = postcard::to_stdvec(record).expect("encoding a record cannot fail");
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|length| *length <= RECORD_BYTES_MAX)
        .expect("a record is far smaller than the largest one the format allows");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&length_check(file_id, length).to_le_bytes());
    out.extend_from_slice(&record_checksum(file_id, length, &payload));
    out.extend_from_slice(&payload);
}

/// Append to `out` a sync marker saying the file was synced up to `synced_bytes`, which
/// must be where the marker lands.
pub(super) fn encode_sync_marker(synced_bytes: u64, file_id: FileId, out: &mut Vec<u8>) {
    out.extend_from_slice(&MARKER_MAGIC);
    out.extend_from_slice(&synced_bytes.to_le_bytes());
    out.extend_from_slice(&marker_checksum(file_id, synced_bytes));
}

/// `payload` framed as a record, whatever it holds: for tests of what reading refuses.
#[cfg(test)]
pub(super) fn frame(payload: &[u8], file_id: FileId) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&length_check(file_id, length).to_le_bytes());
    out.extend_from_slice(&record_checksum(file_id, length, payload));
    out.extend_from_slice(payload);
    out
}

/// The file id in a header that [`decode_file`] accepts.
#[cfg(test)]
pub(super) fn file_id_of(bytes: &[u8]) -> FileId {
    FileId(
        bytes[HEADER_BYTES - FILE_ID_BYTES..HEADER_BYTES]
            .try_into()
            .unwrap(),
    )
}

/// The records of a whole file (header included), and where the valid part ends.
pub(super) fn decode_file(bytes: &[u8]) -> Result<Contents, FormatError> {
    let file_id = decode_header(bytes)?;
    let mut records = Vec::new();
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        match decode_frame(bytes, offset, file_id) {
            Frame::Record { record, end } => {
                records.push(record);
                offset = end;
            }
            Frame::Marker { end } => offset = end,
            Frame::Damaged(problem) => {
                if let Some(synced_bytes) = sync_marker_after(bytes, offset, file_id) {
                    return Err(FormatError::SyncedDamage {
                        offset: offset as u64,
                        problem,
                        synced_bytes,
                    });
                }
                // Nothing after the damage was synced: a torn tail.
                break;
            }
            Frame::Undecodable => {
                return Err(FormatError::Undecodable {
                    offset: offset as u64,
                });
            }
        }
    }
    Ok(Contents {
        file_id,
        records,
        valid_bytes: offset,
    })
}

fn decode_header(bytes: &[u8]) -> Result<FileId, FormatError> {
    let version_end = MAGIC.len() + 4;
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NoHeader);
    }
    if bytes.len() < version_end {
        return Err(FormatError::ShortHeader);
    }
    let version = u32::from_le_bytes(bytes[MAGIC.len()..version_end].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(FormatError::UnknownVersion { found: version });
    }
    // The header is written whole before the file gets its name, so a short one is damage.
    let id = bytes
        .get(version_end..HEADER_BYTES)
        .ok_or(FormatError::ShortHeader)?;
    Ok(FileId(id.try_into().unwrap()))
}

enum Frame {
    Record { record: Record, end: usize },
    Marker { end: usize },
    Damaged(Corruption),
    Undecodable,
}

/// The frame starting at `offset` (before the end of `bytes`).
fn decode_frame(bytes: &[u8], offset: usize, file_id: FileId) -> Frame {
    let rest = &bytes[offset..];
    if rest.starts_with(&MARKER_MAGIC) {
        return match valid_marker_end(bytes, offset, file_id) {
            Some(end) => Frame::Marker { end },
            None if rest.len() < MARKER_BYTES => Frame::Damaged(Corruption::CutShort),
            None => Frame::Damaged(Corruption::Marker),
        };
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Frame::Damaged(Corruption::CutShort);
    }
    let length = u32::from_le_bytes(rest[0..4].try_into().unwrap());
    let stored_check = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if stored_check != length_check(file_id, length) || length > RECORD_BYTES_MAX {
        return Frame::Damaged(Corruption::Length);
    }
    let end = FRAME_HEADER_BYTES + length as usize;
    if rest.len() < end {
        return Frame::Damaged(Corruption::CutShort);
    }
    let payload = &rest[FRAME_HEADER_BYTES..end];
    if rest[8..16] != record_checksum(file_id, length, payload) {
        return Frame::Damaged(Corruption::Checksum);
    }
    match postcard::from_bytes::<Record>(payload) {
        Ok(record) => Frame::Record {
            record,
            end: offset + end,
        },
        Err(_) => Frame::Undecodable,
    }
}

/// Where the sync marker at `offset` ends, if a valid one starts there: whole, passing
/// its checksum, and claiming its own offset as the synced bytes.
fn valid_marker_end(bytes: &[u8], offset: usize, file_id: FileId) -> Option<usize> {
    let marker = bytes.get(offset..offset.checked_add(MARKER_BYTES)?)?;
    let synced_bytes = u64::from_le_bytes(marker[8..16].try_into().unwrap());
    let valid = marker.starts_with(&MARKER_MAGIC)
        && synced_bytes == offset as u64
        && marker[16..] == marker_checksum(file_id, synced_bytes);
    valid.then_some(offset + MARKER_BYTES)
}

/// The synced bytes of the first valid sync marker at or after `from`, if any: proof that
/// the file was synced past `from`.
fn sync_marker_after(bytes: &[u8], from: usize, file_id: FileId) -> Option<u64> {
    memchr::memmem::find_iter(&bytes[from..], &MARKER_MAGIC)
        .map(|found| from + found)
        .find(|&at| valid_marker_end(bytes, at, file_id).is_some())
        .map(|at| at as u64)
}

fn length_check(file_id: FileId, length: u32) -> u32 {
    let digest = Digest::of(&[b"zz record length", &file_id.0, &length.to_le_bytes()]);
    u32::from_le_bytes(digest.0[..4].try_into().unwrap())
}

fn record_checksum(file_id: FileId, length: u32, payload: &[u8]) -> [u8; 8] {
    let digest = Digest::of(&[b"zz record", &file_id.0, &length.to_le_bytes(), payload]);
    digest.0[..8].try_into().unwrap()
}

fn marker_checksum(file_id: FileId, synced_bytes: u64) -> [u8; 8] {
    let digest = Digest::of(&[b"zz sync marker", &file_id.0, &synced_bytes.to_le_bytes()]);
    digest.0[..8].try_into().unwrap()
}
