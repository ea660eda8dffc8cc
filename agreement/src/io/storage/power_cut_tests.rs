//! Power cuts: pages written after the last `fdatasync` may reach the disk in any order,
//! or not at all, so a file can end with a hole of zeros or garbage before bytes that look
//! whole. Reading cuts such a tail off, and refuses a file only when a sync marker after
//! the damage shows that the damaged bytes had been synced.

use super::file::RecordFile;
use super::format::{self, FileId, HEADER_BYTES, MARKER_BYTES, file_id_of};
use super::tests::{TestDir, file_length, file_with_views, unreadable, view};
use super::*;
use proptest::prelude::*;
use std::path::Path;

/// Append views `views` to the file at `path` (which ends at its last record) in one
/// write, as a sync does, without the `fdatasync` that follows (what a power cut may
/// then lose), and cut the zeros written ahead off; returns where each record starts and
/// the file's length at its last sync.
fn appended_unsynced(path: &Path, views: std::ops::RangeInclusive<u64>) -> (Vec<usize>, usize) {
    let synced_bytes = file_length(path);
    let (mut file, _) = RecordFile::open(path).unwrap();
    let records: Vec<Record> = views.map(view).collect();
    let mut starts = Vec::new();
    let mut end = synced_bytes + MARKER_BYTES;
    for record in &records {
        starts.push(end);
        end += format_record_bytes(record);
    }
    file.append(&records).unwrap();
    assert_eq!(file.end(), end as u64);
    drop(file);
    cut_at(path, end);
    (starts, synced_bytes)
}

/// Cut the file at `path` at `end` (the zeros written ahead go).
fn cut_at(path: &Path, end: usize) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(end as u64).unwrap();
}

fn read_back(path: &Path) -> Vec<Record> {
    FileStorage::open(path).unwrap().1
}

/// A hole of zeros after the last sync, before records that look whole (the pages after
/// the hole reached the disk, the hole's did not), is a torn tail: the file is cut at the
/// hole, whether it covers the sync marker or only a record, and appending goes on.
#[test]
fn a_zeroed_hole_after_the_last_sync_is_cut_and_appending_goes_on() {
    for hole_covers_the_marker in [false, true] {
        let dir = TestDir::new(&format!("zero-hole-{hole_covers_the_marker}"));
        let path = dir.path();
        file_with_views(&path, 2);
        let (starts, synced_bytes) = appended_unsynced(&path, 3..=5);
        let mut bytes = std::fs::read(&path).unwrap();
        let hole_start = match hole_covers_the_marker {
            true => synced_bytes,
            false => starts[0],
        };
        bytes[hole_start..starts[1]].fill(0);
        std::fs::write(&path, &bytes).unwrap();

        let (mut storage, records) = FileStorage::open(&path).unwrap();
        assert_eq!(records, vec![view(1), view(2)]);
        assert!(file_length(&path) <= synced_bytes, "the tail is cut off");
        storage.append(view(6));
        storage.sync();
        drop(storage);
        assert_eq!(read_back(&path), vec![view(1), view(2), view(6)]);
    }
}

/// The same hole before a sync marker that shows the bytes were synced is damage to
/// records the replica vouched for: refused, and the file left as it was.
#[test]
fn a_zeroed_hole_before_a_later_sync_marker_is_an_error() {
    let dir = TestDir::new("zero-hole-synced");
    let path = dir.path();
    let starts = file_with_views(&path, 3);
    let (_, synced_bytes) = appended_unsynced(&path, 4..=4);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[starts[1]..starts[2]].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (line, problem) = unreadable(&path);
    assert_eq!(
        problem,
        FormatError::SyncedDamage {
            offset: starts[1] as u64,
            problem: Corruption::Length,
            synced_bytes: synced_bytes as u64,
        }
    );
    assert!(
        line.contains(&format!("a sync marker at byte {synced_bytes} shows")),
        "{line}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "untouched");
}

/// Garbage after the last sync, over a record or past the last one (space the file system
/// allocated and filled with whatever was on the disk), is cut off.
#[test]
fn garbage_after_the_last_sync_is_cut() {
    let dir = TestDir::new("garbage");
    let path = dir.path();
    file_with_views(&path, 2);
    appended_unsynced(&path, 3..=4);
    let whole = std::fs::read(&path).unwrap();
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 97 + 13) as u8).collect();

    let mut bytes = whole.clone();
    bytes.extend_from_slice(&garbage);
    std::fs::write(&path, &bytes).unwrap();
    let all = vec![view(1), view(2), view(3), view(4)];
    assert_eq!(read_back(&path), all);

    // Over the last record.
    let mut bytes = whole.clone();
    let last_start = whole.len() - format_record_bytes(&view(4));
    bytes[last_start + 2..].copy_from_slice(&garbage[..whole.len() - last_start - 2]);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_back(&path), all[..3]);
}

fn format_record_bytes(record: &Record) -> usize {
    let mut out = Vec::new();
    format::encode_record(record, FileId([0; 8]), &mut out);
    out.len()
}

/// Only a marker this file wrote where it lies proves a sync: one copied to another
/// place (claiming its old offset) or taken from another file (another file id) after the
/// damage leaves it a torn tail; one of this file claiming its own offset does not.
#[test]
fn only_a_marker_of_this_file_at_its_own_offset_proves_a_sync() {
    let dir = TestDir::new("which-marker");
    let path = dir.path();
    file_with_views(&path, 2);
    let (starts, synced_bytes) = appended_unsynced(&path, 3..=4);
    let mut damaged = std::fs::read(&path).unwrap();
    // The last payload byte of view 3.
    damaged[starts[1] - 1] ^= 0x10;
    let end = damaged.len() as u64;
    let own_id = file_id_of(&damaged);

    let mut copied = damaged.clone();
    copied.extend_from_slice(&damaged[synced_bytes..synced_bytes + MARKER_BYTES]);
    let mut foreign = damaged.clone();
    format::encode_sync_marker(end, FileId([7; 8]), &mut foreign);
    let mut wrong_offset = damaged.clone();
    format::encode_sync_marker(end + 1, own_id, &mut wrong_offset);
    for bytes in [copied, foreign, wrong_offset] {
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_back(&path), vec![view(1), view(2)]);
    }

    let mut proof = damaged.clone();
    format::encode_sync_marker(end, own_id, &mut proof);
    std::fs::write(&path, &proof).unwrap();
    assert_eq!(
        unreadable(&path).1,
        FormatError::SyncedDamage {
            offset: starts[0] as u64,
            problem: Corruption::Checksum,
            synced_bytes: end,
        }
    );
}

/// What a power cut does to the bytes after the last sync.
#[derive(Clone, Debug)]
enum PageLoss {
    /// These bytes, at this place (taken modulo the unsynced length), or zeros as many.
    Overwrite {
        at: u16,
        bytes: Vec<u8>,
        zeros: bool,
    },
    /// The file ends here (modulo the unsynced length, plus one).
    Truncate { at: u16 },
    /// The file grows by these bytes.
    Extend { bytes: Vec<u8> },
}

fn page_loss() -> impl Strategy<Value = PageLoss> {
    prop_oneof![
        (
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 1..64),
            any::<bool>()
        )
            .prop_map(|(at, bytes, zeros)| PageLoss::Overwrite { at, bytes, zeros }),
        any::<u16>().prop_map(|at| PageLoss::Truncate { at }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| PageLoss::Extend { bytes }),
    ]
}

/// `losses`, applied to `bytes` at or after `synced_bytes` only.
fn cut_power(bytes: &mut Vec<u8>, synced_bytes: usize, losses: &[PageLoss]) {
    for loss in losses {
        let unsynced = bytes.len() - synced_bytes;
        match loss {
            PageLoss::Overwrite {
                at,
                bytes: with,
                zeros,
            } if unsynced > 0 => {
                let start = synced_bytes + usize::from(*at) % unsynced;
                let end = (start + with.len()).min(bytes.len());
                match zeros {
                    true => bytes[start..end].fill(0),
                    false => bytes[start..end].copy_from_slice(&with[..end - start]),
                }
            }
            PageLoss::Overwrite { .. } => {}
            PageLoss::Truncate { at } => {
                bytes.truncate(synced_bytes + usize::from(*at) % (unsynced + 1));
            }
            PageLoss::Extend { bytes: with } => bytes.extend_from_slice(with),
        }
    }
}

/// What [`write_turns`] wrote.
struct Written {
    appended: Vec<Record>,
    /// The first `synced_count` records were synced.
    synced_count: usize,
    /// The file's length at the last sync.
    synced_bytes: usize,
    /// Where the last sync marker is (a marker at the header's end vouches for nothing).
    last_marker: usize,
}

/// A new file at `path` with one view appended for each of `syncs`, synced after it if
/// that is true.
///
/// The views appended between two syncs go in one write, after one sync marker, as the
/// storage writes them; the zeros written ahead stay (a power cut may damage them
/// too).
fn write_turns(path: &Path, syncs: &[bool]) -> Written {
    FileStorage::create_empty(path).unwrap();
    let (mut file, _) = RecordFile::open(path).unwrap();
    let mut written = Written {
        appended: Vec::new(),
        synced_count: 0,
        synced_bytes: HEADER_BYTES,
        last_marker: HEADER_BYTES,
    };
    let mut turn = Vec::new();
    for (index, sync_after) in syncs.iter().enumerate() {
        turn.push(view(index as u64 + 1));
        if *sync_after {
            written.last_marker = file.end() as usize;
            file.append(&turn).unwrap();
            file.sync().unwrap();
            written.appended.append(&mut turn);
            written.synced_count = written.appended.len();
            written.synced_bytes = file.end() as usize;
        }
    }
    if !turn.is_empty() {
        written.last_marker = file.end() as usize;
        file.append(&turn).unwrap();
        written.appended.append(&mut turn);
    }
    written
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a power cut does after the last sync, reading yields a prefix of what was
    /// appended holding every record synced, and the file goes on taking appends.
    #[test]
    fn a_power_cut_after_the_last_sync_keeps_every_synced_record(
        syncs in prop::collection::vec(any::<bool>(), 1..40),
        losses in prop::collection::vec(page_loss(), 0..5),
    ) {
        let dir = TestDir::new("power-cut");
        let path = dir.path();
        let written = write_turns(&path, &syncs);
        let mut bytes = std::fs::read(&path).unwrap();
        cut_power(&mut bytes, written.synced_bytes, &losses);
        std::fs::write(&path, &bytes).unwrap();

        let records = match FileStorage::open(&path) {
            Ok((_, records)) => records,
            Err(error) => return Err(TestCaseError::fail(error.to_string())),
        };
        prop_assert!(
            records.len() >= written.synced_count,
            "{} < {}",
            records.len(),
            written.synced_count
        );
        prop_assert_eq!(&records[..], &written.appended[..records.len()]);

        let (mut storage, _) = FileStorage::open(&path).unwrap();
        storage.append(view(1000));
        storage.sync();
        drop(storage);
        let mut expected = records;
        expected.push(view(1000));
        prop_assert_eq!(read_back(&path), expected);
    }

    /// Any bit flipped before the last sync marker (in bytes that marker vouches for) is
    /// refused, at the frame holding it.
    #[test]
    fn a_flipped_bit_before_the_last_sync_marker_is_refused(
        syncs in prop::collection::vec(any::<bool>(), 2..40),
        at in any::<u16>(),
        bit in 0..8u8,
    ) {
        let dir = TestDir::new("bit-flip");
        let path = dir.path();
        let written = write_turns(&path, &syncs);
        prop_assume!(written.last_marker > HEADER_BYTES);
        let mut bytes = std::fs::read(&path).unwrap();
        let flipped = HEADER_BYTES + usize::from(at) % (written.last_marker - HEADER_BYTES);
        bytes[flipped] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        match FileStorage::open(&path) {
            Err(StorageError::Unreadable {
                problem: FormatError::SyncedDamage { offset, synced_bytes, .. },
                ..
            }) => {
                prop_assert!(offset as usize <= flipped);
                prop_assert!(synced_bytes as usize > flipped);
            }
            Err(error) => return Err(TestCaseError::fail(error.to_string())),
            Ok((_, records)) => return Err(TestCaseError::fail(format!("read {records:?}"))),
        }
    }
}
