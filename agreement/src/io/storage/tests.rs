//! The record file: what it reads back, what it forgives (a torn last record) and what it
//! refuses (another format, a missing file, synced records damaged), and when appends are
//! durable. Power cuts that lose unsynced pages out of order: `power_cut_tests`.

use super::format::{HEADER_BYTES, MARKER_BYTES, encode_record, file_id_of, frame};
use super::*;
use std::path::{Path, PathBuf};
use zz_protocol::View;

pub(super) fn view(v: u64) -> Record {
    Record::View {
        view: View(v),
        normal: true,
    }
}

/// A fresh directory for one test, and the record file's path in it.
pub(super) struct TestDir(PathBuf);

impl TestDir {
    pub(super) fn new(test: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("zz-storage-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub(super) fn path(&self) -> PathBuf {
        self.0.join("replica-0.records")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new file holding views 1..=count, appended in one turn and synced, cut at the end
/// of the last record (without the zeros written ahead, so a test can damage its end);
/// and where each record starts (the first comes after the turn's sync marker).
pub(super) fn file_with_views(path: &Path, count: u64) -> Vec<usize> {
    FileStorage::create_empty(path).unwrap();
    let file_id = file_id_of(&std::fs::read(path).unwrap());
    let (mut storage, records) = FileStorage::open(path).unwrap();
    assert!(records.is_empty());
    let mut starts = Vec::new();
    let mut end = HEADER_BYTES + MARKER_BYTES;
    for v in 1..=count {
        starts.push(end);
        let mut framed = Vec::new();
        encode_record(&view(v), file_id, &mut framed);
        end += framed.len();
        storage.append(view(v));
    }
    storage.sync();
    drop(storage);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    assert!(file.metadata().unwrap().len() >= end as u64);
    file.set_len(end as u64).unwrap();
    starts
}

pub(super) fn file_length(path: &Path) -> usize {
    std::fs::metadata(path).unwrap().len() as usize
}

pub(super) fn unreadable(path: &Path) -> (String, FormatError) {
    match FileStorage::open(path) {
        Err(error @ StorageError::Unreadable { .. }) => {
            let line = error.to_string();
            let StorageError::Unreadable { problem, .. } = error else {
                unreachable!()
            };
            (line, problem)
        }
        Err(error) => panic!("expected an unreadable file, got {error}"),
        Ok((_, records)) => panic!("expected an unreadable file, read {records:?}"),
    }
}

/// A record file reads back what was appended; a torn last record (a crash in the middle
/// of a write) is dropped, and appending continues after the last whole record.
#[test]
fn a_record_file_survives_a_torn_tail() {
    let dir = TestDir::new("torn-tail");
    let path = dir.path();
    file_with_views(&path, 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).unwrap();
    {
        let (mut storage, records) = FileStorage::open(&path).unwrap();
        assert_eq!(records, vec![view(1), view(2)]);
        let rewritten = std::fs::read(&path).unwrap();
        assert_ne!(
            file_id_of(&rewritten),
            file_id_of(&bytes),
            "a cut file is rewritten under a new file id"
        );
        storage.append(view(3));
        storage.sync();
    }
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2), view(3)]);
}

/// A last record cut short after its whole length (the payload only partly written) is a
/// torn write too.
#[test]
fn a_last_record_cut_short_in_its_payload_is_dropped() {
    let dir = TestDir::new("short-payload");
    let path = dir.path();
    file_with_views(&path, 3);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)]);
    let cut = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(cut < bytes.len() - 1, "the torn record is cut off the file");
}

/// A last record whose bytes are all there but fail the checksum (a sector of it never
/// reached the disk) is dropped; so are zeros after the last record (space the file system
/// allocated but never wrote).
#[test]
fn a_last_record_failing_its_checksum_or_a_zero_tail_is_dropped() {
    let dir = TestDir::new("checksum-tail");
    let path = dir.path();
    file_with_views(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)]);

    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&path, &bytes).unwrap();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)]);
}

/// Damage before a sync marker that shows the file was synced past it is never cut off:
/// the file is refused, named, and left as it was.
#[test]
fn a_checksum_failure_before_a_later_sync_is_an_error_naming_the_file() {
    let dir = TestDir::new("checksum-middle");
    let path = dir.path();
    let starts = file_with_views(&path, 3);
    let synced_bytes = synced_past_views(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // The last payload byte of the second record.
    bytes[starts[2] - 1] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::SyncedDamage {
            offset: starts[1] as u64,
            problem: Corruption::Checksum,
            synced_bytes,
        }
    );
    assert!(line.starts_with(&format!("{}: the frame at byte", path.display())));
    assert!(!line.contains('\n'), "one line: {line}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
}

/// Append one more view to the file at `path` (whose last append was synced), so that a
/// sync marker before it vouches for everything before; returns where that marker is.
pub(super) fn synced_past_views(path: &Path) -> u64 {
    let synced_bytes = file_length(path) as u64;
    let (mut storage, _) = FileStorage::open(path).unwrap();
    storage.append(view(100));
    storage.sync();
    synced_bytes
}

/// A damaged length cannot be told to end anywhere; with a later sync marker, the file is
/// refused.
#[test]
fn a_damaged_length_before_a_later_sync_is_an_error() {
    let dir = TestDir::new("length-middle");
    let path = dir.path();
    let starts = file_with_views(&path, 3);
    let synced_bytes = synced_past_views(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[starts[0]] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (_, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::SyncedDamage {
            offset: (HEADER_BYTES + MARKER_BYTES) as u64,
            problem: Corruption::Length,
            synced_bytes,
        }
    );
}

/// A record that passes its checksum but does not decode was written by something else
/// than this zz: refused even at the end of the file.
#[test]
fn a_checksummed_record_that_does_not_decode_is_an_error() {
    let dir = TestDir::new("undecodable");
    let path = dir.path();
    file_with_views(&path, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = bytes.len();
    bytes.extend_from_slice(&frame(&[0xff; 9], file_id_of(&bytes)));
    std::fs::write(&path, &bytes).unwrap();
    let (_, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::Undecodable {
            offset: offset as u64
        }
    );
}

/// An older zz wrote records without a header: refused with what to do, never read as an
/// empty log.
#[test]
fn a_file_without_a_header_is_an_error_naming_the_file_and_what_to_do() {
    let dir = TestDir::new("no-header");
    let path = dir.path();
    let old_record = postcard::to_stdvec(&view(1)).unwrap();
    let mut bytes = (old_record.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&old_record);
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem) = unreadable(&path);
    assert_eq!(problem, FormatError::NoHeader);
    assert_eq!(
        line,
        format!(
            "{}: written by an older zz (no format header); this zz cannot read it: move the \
             cluster directory aside and run zz up to create a new one",
            path.display()
        )
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
}

/// A header of another format version is refused too, saying whether an older or a
/// newer zz wrote it.
#[test]
fn a_file_of_another_format_version_is_an_error() {
    let dir = TestDir::new("version");
    let path = dir.path();
    file_with_views(&path, 1);
    let bytes = std::fs::read(&path).unwrap();
    for (found, writer) in [
        (FORMAT_VERSION - 1, "an older zz"),
        (FORMAT_VERSION + 1, "a newer zz"),
    ] {
        let mut bytes = bytes.clone();
        bytes[8..12].copy_from_slice(&found.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (line, problem) = unreadable(&path);
        assert_eq!(problem, FormatError::UnknownVersion { found });
        assert!(
            line.contains(&format!("written in record format {found} by {writer}, and this zz reads format {FORMAT_VERSION} only")),
            "{line}"
        );
    }
}

/// A header cut short is damage, not an older format.
#[test]
fn a_short_header_is_an_error() {
    let dir = TestDir::new("short-header");
    let path = dir.path();
    file_with_views(&path, 1);
    let bytes = std::fs::read(&path).unwrap();
    for length in [10, HEADER_BYTES - 1] {
        std::fs::write(&path, &bytes[..length]).unwrap();
        assert_eq!(unreadable(&path).1, FormatError::ShortHeader);
    }
}

/// A missing record file is never taken for an empty log (the replica may have voted):
/// the error names the file and what to do, and creates nothing.
#[test]
fn a_missing_file_is_an_error_naming_the_file_and_what_to_do() {
    let dir = TestDir::new("missing");
    let path = dir.path();
    let line = match FileStorage::open(&path) {
        Err(error @ StorageError::Missing { .. }) => error.to_string(),
        Err(error) => panic!("expected a missing file, got {error}"),
        Ok((_, records)) => panic!("expected a missing file, read {records:?}"),
    };
    assert!(line.starts_with(&format!("{}: the record file is missing", path.display())));
    assert!(line.contains("restore it from a backup"), "{line}");
    assert!(
        line.contains(&format!("`: > {}`", path.display())),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(!path.exists(), "nothing is created");
}

/// A new replica's file is the header alone, and opens as an empty log.
#[test]
fn a_file_created_empty_is_a_header_and_opens_as_an_empty_log() {
    let dir = TestDir::new("create-empty");
    let path = dir.path();
    FileStorage::create_empty(&path).unwrap();
    assert_eq!(file_length(&path), HEADER_BYTES);
    let (mut storage, records) = FileStorage::open(&path).unwrap();
    assert!(records.is_empty());
    storage.append(view(1));
    storage.sync();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1)]);
}

/// An empty file holds nothing to lose: it opens as an empty log, with a header from then on.
#[test]
fn an_empty_file_opens_as_an_empty_log() {
    let dir = TestDir::new("empty");
    let path = dir.path();
    std::fs::write(&path, []).unwrap();
    let (mut storage, records) = FileStorage::open(&path).unwrap();
    assert!(records.is_empty());
    storage.append(view(4));
    storage.sync();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(4)]);
}

/// Appends are unsynced until a sync; a rewrite is durable at once, and what follows it
/// reads back after it.
#[test]
fn appends_wait_for_a_sync_and_a_rewrite_is_durable_at_once() {
    let dir = TestDir::new("sync");
    let path = dir.path();
    FileStorage::create_empty(&path).unwrap();
    let (mut storage, _) = FileStorage::open(&path).unwrap();
    assert!(!storage.has_unsynced());
    storage.append(view(1));
    assert!(storage.has_unsynced());
    storage.sync();
    assert!(!storage.has_unsynced());
    storage.append(view(2));
    storage.replace(vec![view(7)]);
    assert!(!storage.has_unsynced());
    storage.append(view(8));
    storage.sync();
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(7), view(8)]);
}

/// The simulator's disk: a crash keeps what was synced (or rewritten) and loses the rest.
#[test]
fn memory_storage_loses_only_the_unsynced_tail_in_a_crash() {
    let mut storage = MemoryStorage::default();
    storage.append(view(1));
    storage.sync();
    storage.append(view(2));
    assert!(storage.has_unsynced());
    assert_eq!(storage.synced_records(), &[view(1)]);
    storage.lose_unsynced();
    assert_eq!(storage.records(), &[view(1)]);
    storage.append(view(3));
    storage.replace(vec![view(5)]);
    storage.append(view(6));
    storage.lose_unsynced();
    assert_eq!(storage.records(), &[view(5)]);
}

/// Zeros after the last record (space a file system allocated and never wrote) read as
/// the end of the log: the file is not rewritten, and appends go on after the last record.
#[test]
fn zeros_after_the_last_record_read_as_the_end_of_the_log() {
    let dir = TestDir::new("zeros");
    let path = dir.path();
    FileStorage::create_empty(&path).unwrap();
    let (mut storage, _) = FileStorage::open(&path).unwrap();
    storage.append(view(1));
    storage.sync();
    drop(storage);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let (mut storage, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1)]);
    let reopened = std::fs::read(&path).unwrap();
    assert_eq!(
        file_id_of(&reopened),
        file_id_of(&bytes),
        "zeros are no torn tail: the file is not rewritten"
    );
    storage.append(view(2));
    storage.sync();
    drop(storage);
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)]);
}
