//! The record file format. A header, then the records one after the other:
//!
//! ```text
//! header:  "zzrecord" (8 bytes) | format version (u32 LE)
//! record:  length (u32 LE) | length check (u32 LE) | checksum (8 bytes) | postcard payload
//! ```
//!
//! The length check is the first 4 bytes of a SHA-256 of the length, so a damaged length
//! is told from a record that was being written when the process died; the checksum is the
//! first 8 bytes of a SHA-256 of the length and the payload.
//!
//! Reading forgives exactly one thing: a torn last record (a crash in the middle of an
//! append), which is cut off. A tail that is a partial record header, a record running
//! past the end of the file, a last record failing its checksum, or zeros where a record
//! should start (space a file system allocated but never wrote) are all that. Anything
//! else wrong is an error: a log is never truncated before its last record.

use crate::core::persist::Record;
use zz_protocol::Digest;

const MAGIC: [u8; 8] = *b"zzrecord";
/// The record format this zz writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the file header: the magic and the version.
pub(super) const HEADER_BYTES: usize = MAGIC.len() + 4;
/// Bytes before each record's payload: length, length check, checksum.
const FRAME_HEADER_BYTES: usize = 4 + 4 + 8;
/// Bytes one record's payload may take at most.
const RECORD_BYTES_MAX: u32 = 1 << 30;

/// Why a record file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "written by an older zz (no format header); this zz cannot read it: move the cluster \
         directory aside and run zz up to create a new one"
    )]
    NoHeader,
    #[error(
        "written in record format {found}, and this zz reads format {FORMAT_VERSION} only: run \
         the zz that wrote it, or move the cluster directory aside and run zz up to create a \
         new one"
    )]
    UnknownVersion { found: u32 },
    #[error(
        "the record at byte {offset} {problem}, and the log goes on after it: the file is \
         damaged (only a torn last record is dropped on its own); restore it from a backup, \
         or move the cluster directory aside and run zz up to create a new one"
    )]
    Corrupt { offset: u64, problem: Corruption },
}

/// What is wrong with a damaged record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("has a damaged length")]
    Length,
    #[error("fails its checksum")]
    Checksum,
    #[error("passes its checksum but does not decode as a record")]
    Undecodable,
}

/// What a record file holds.
#[derive(Debug)]
pub(super) struct Contents {
    pub(super) records: Vec<Record>,
    /// Bytes from the start of the file up to the end of the last whole record; a torn
    /// record after them, if any, is to be cut off.
    pub(super) valid_bytes: usize,
}

pub(super) fn header() -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Append `record`, framed, to `out`.
pub(super) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let payload = postcard::to_stdvec(record).expect("encoding a record cannot fail");
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|length| *length <= RECORD_BYTES_MAX)
        .expect("a record is far smaller than the largest one the format allows");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&length_check(length).to_le_bytes());
    out.extend_from_slice(&checksum(length, &payload));
    out.extend_from_slice(&payload);
}

/// `payload` framed as a record, whatever it holds: for tests of what reading refuses.
#[cfg(test)]
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&length_check(length).to_le_bytes());
    out.extend_from_slice(&checksum(length, payload));
    out.extend_from_slice(payload);
    out
}

/// The records of a whole file (header included), and where the valid part ends.
pub(super) fn decode_file(bytes: &[u8]) -> Result<Contents, FormatError> {
    if bytes.len() < HEADER_BYTES || bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NoHeader);
    }
    let version = u32::from_le_bytes(bytes[MAGIC.len()..HEADER_BYTES].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(FormatError::UnknownVersion { found: version });
    }
    let mut records = Vec::new();
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        match decode_record(bytes, offset) {
            Decoded::Record { record, end } => {
                records.push(record);
                offset = end;
            }
            Decoded::TornTail => break,
            Decoded::Corrupt(problem) => {
                return Err(FormatError::Corrupt {
                    offset: offset as u64,
                    problem,
                });
            }
        }
    }
    Ok(Contents {
        records,
        valid_bytes: offset,
    })
}

enum Decoded {
    Record { record: Record, end: usize },
    TornTail,
    Corrupt(Corruption),
}

/// The record starting at `offset` (before the end of `bytes`).
fn decode_record(bytes: &[u8], offset: usize) -> Decoded {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Decoded::TornTail;
    }
    let length = u32::from_le_bytes(rest[0..4].try_into().unwrap());
    let stored_check = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if stored_check != length_check(length) || length > RECORD_BYTES_MAX {
        return damaged_unless_zeros(rest, Corruption::Length);
    }
    let end = FRAME_HEADER_BYTES + length as usize;
    if rest.len() < end {
        // The length is whole and checked: the record was being written.
        return Decoded::TornTail;
    }
    let payload = &rest[FRAME_HEADER_BYTES..end];
    if rest[8..16] != checksum(length, payload) {
        // The last record, or one followed only by unwritten space: a torn write.
        return damaged_unless_zeros(&rest[end..], Corruption::Checksum);
    }
    match postcard::from_bytes::<Record>(payload) {
        Ok(record) => Decoded::Record {
            record,
            end: offset + end,
        },
        Err(_) => Decoded::Corrupt(Corruption::Undecodable),
    }
}

/// A damaged record is a torn tail if nothing but zeros follows (`after`: what comes after
/// the damage); otherwise the log is damaged before its end.
fn damaged_unless_zeros(after: &[u8], problem: Corruption) -> Decoded {
    if after.iter().all(|byte| *byte == 0) {
        Decoded::TornTail
    } else {
        Decoded::Corrupt(problem)
    }
}

fn length_check(length: u32) -> u32 {
    let digest = Digest::of(&[b"zz record length", &length.to_le_bytes()]);
    u32::from_le_bytes(digest.0[..4].try_into().unwrap())
}

fn checksum(length: u32, payload: &[u8]) -> [u8; 8] {
    let digest = Digest::of(&[b"zz record", &length.to_le_bytes(), payload]);
    digest.0[..8].try_into().unwrap()
}
