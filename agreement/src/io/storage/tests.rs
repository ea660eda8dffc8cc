//! The record file: what it reads back, what it forgives (a torn last record) and what it
//! refuses (another format, damage before the end), and when appends are durable.

use super::format::{HEADER_BYTES, encode_record, frame};
use super::*;
use std::path::{Path, PathBuf};
use zz_protocol::View;

fn view(v: u64) -> Record {
    Record::View {
        view: View(v),
        normal: true,
    }
}

/// A fresh directory for one test, and the record file's path in it.
struct TestDir(PathBuf);

impl TestDir {
    fn new(test: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("zz-storage-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("replica-0.records")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file holding views 1..=count, synced, cut at the end of the last record (without the
/// zeros written ahead, so a test can damage its end); and where each record starts.
fn file_with_views(path: &Path, count: u64) -> Vec<usize> {
    let (mut storage, records) = FileStorage::open(path).unwrap();
    assert!(records.is_empty());
    let mut starts = Vec::new();
    let mut end = HEADER_BYTES;
    for v in 1..=count {
        starts.push(end);
        let mut framed = Vec::new();
        encode_record(&view(v), &mut framed);
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

fn unreadable(path: &Path) -> (String, FormatError) {
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
    std::fs::write(&path, bytes).unwrap();
    {
        let (mut storage, records) = FileStorage::open(&path).unwrap();
        assert_eq!(records, vec![view(1), view(2)]);
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

/// Damage before the last record is never cut off: the file is refused, named, and left
/// as it was.
#[test]
fn a_checksum_failure_before_the_last_record_is_an_error_naming_the_file() {
    let dir = TestDir::new("checksum-middle");
    let path = dir.path();
    let starts = file_with_views(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    // The last payload byte of the second record.
    bytes[starts[2] - 1] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::Corrupt {
            offset: starts[1] as u64,
            problem: Corruption::Checksum
        }
    );
    assert!(line.starts_with(&format!("{}: the record at byte", path.display())));
    assert!(!line.contains('\n'), "one line: {line}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
}

/// A damaged length cannot be told to end anywhere; if anything but zeros follows it, the
/// file is refused.
#[test]
fn a_damaged_length_before_the_end_is_an_error() {
    let dir = TestDir::new("length-middle");
    let path = dir.path();
    let starts = file_with_views(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[starts[0]] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (_, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::Corrupt {
            offset: HEADER_BYTES as u64,
            problem: Corruption::Length
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
    bytes.extend_from_slice(&frame(&[0xff; 9]));
    std::fs::write(&path, &bytes).unwrap();
    let (_, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::Corrupt {
            offset: offset as u64,
            problem: Corruption::Undecodable
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

/// A header of a later format version is refused too.
#[test]
fn a_file_of_another_format_version_is_an_error() {
    let dir = TestDir::new("version");
    let path = dir.path();
    file_with_views(&path, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (_, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::UnknownVersion {
            found: FORMAT_VERSION + 1
        }
    );
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

/// A background sync: records handed over by `start_sync` become durable while the
/// caller goes on, the callback says when, and they read back after a reopen.
#[test]
fn a_background_sync_makes_records_durable_and_says_so() {
    let dir = TestDir::new("background");
    let path = dir.path();
    let (mut storage, _) = FileStorage::open(&path).unwrap();
    let (told, durable) = std::sync::mpsc::channel();
    storage.on_durable(Box::new(move || {
        let _ = told.send(());
    }));
    storage.append(view(1));
    storage.append(view(2));
    storage.start_sync();
    durable
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the writer says when records are durable");
    assert_eq!((storage.appended(), storage.durable()), (2, 2));
    assert!(!storage.has_unsynced());
    // Nothing pending: no job, no callback.
    storage.start_sync();
    storage.append(view(3));
    assert!(storage.has_unsynced());
    drop(storage);
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)], "an unsynced append was never written");
}

/// The zeros written ahead of the records read as the end of the log: a reopened file
/// reads back every record, and appends go on right after the last one.
#[test]
fn zeros_written_ahead_read_as_the_end_of_the_log() {
    let dir = TestDir::new("ahead");
    let path = dir.path();
    let (mut storage, _) = FileStorage::open(&path).unwrap();
    storage.append(view(1));
    storage.sync();
    drop(storage);
    let mut framed = Vec::new();
    encode_record(&view(1), &mut framed);
    let length = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(length > HEADER_BYTES + framed.len(), "zeros are written ahead");
    let (mut storage, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1)]);
    storage.append(view(2));
    storage.sync();
    drop(storage);
    let (_, records) = FileStorage::open(&path).unwrap();
    assert_eq!(records, vec![view(1), view(2)]);
}
