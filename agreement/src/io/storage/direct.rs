//! Appending with `O_DIRECT` where the file system allows it. The page cache is skipped:
//! on the virtual disks zz runs on, a buffered write and its `fdatasync` cost more than
//! twice the CPU of a direct write and its `fdatasync` (0.6 ms against 0.23 ms per sync,
//! measured on this kind of machine), and every agreement replica syncs hundreds of
//! times a second.
//!
//! A direct write covers whole blocks at block-aligned offsets, from block-aligned memory.
//! So the bytes of the last, partial block are kept here and written again, with what
//! follows them, at the next append; the rest of the block is zeros, which reading takes
//! as the end of the log (space written but not used yet) and the next append overwrites.
//! Where `O_DIRECT` is refused (tmpfs, some overlay file systems), appends are plain.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The unit of a direct write: a multiple of every logical block size in use.
pub const BLOCK_BYTES: usize = 4096;

/// The record file's handle for appending. See the module documentation.
pub(super) struct Appender {
    file: File,
    direct: bool,
    /// The bytes of the partial block the file ends in (direct appends only).
    tail: Vec<u8>,
    /// Where the next append writes from (aligned down), and the memory it is built in.
    scratch: Vec<u8>,
}

impl Appender {
    /// Open `path` for appending at `end` (the file's logical end).
    pub(super) fn open(path: &Path, end: u64) -> std::io::Result<Appender> {
        Appender::open_as(path, end, true)
    }

    fn open_as(path: &Path, end: u64, try_direct: bool) -> std::io::Result<Appender> {
        let flags = if try_direct { libc::O_DIRECT } else { 0 };
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(path);
        let (file, direct) = match direct {
            Ok(file) => (file, try_direct),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                (OpenOptions::new().write(true).open(path)?, false)
            }
            Err(error) => return Err(error),
        };
        let mut tail = Vec::new();
        if direct {
            let start = align_down(end);
            tail.resize((end - start) as usize, 0);
            File::open(path)?.read_exact_at(&mut tail, start)?;
        }
        Ok(Appender {
            file,
            direct,
            tail,
            scratch: Vec::new(),
        })
    }

    /// Write `bytes` at `end`, the file's logical end (where the last append ended).
    pub(super) fn append(&mut self, bytes: &[u8], end: u64) -> std::io::Result<()> {
        if !self.direct {
            return self.file.write_all_at(bytes, end);
        }
        let start = align_down(end);
        assert_eq!(
            end - start,
            self.tail.len() as u64,
            "appends continue where the last one ended"
        );
        let length = (self.tail.len() + bytes.len()).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        // Room to start the write at an aligned address within the buffer.
        self.scratch.clear();
        self.scratch.resize(length + BLOCK_BYTES, 0);
        let offset = self.scratch.as_ptr().align_offset(BLOCK_BYTES);
        let aligned = &mut self.scratch[offset..offset + length];
        aligned[..self.tail.len()].copy_from_slice(&self.tail);
        aligned[self.tail.len()..self.tail.len() + bytes.len()].copy_from_slice(bytes);
        self.file.write_all_at(aligned, start)?;
        let new_end = end + bytes.len() as u64;
        let kept = (new_end - align_down(new_end)) as usize;
        let used = self.tail.len() + bytes.len();
        self.tail.clear();
        self.tail.extend_from_slice(&aligned[used - kept..used]);
        Ok(())
    }

    /// Make what was appended durable (the device's cache flushed, the size recorded).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

fn align_down(position: u64) -> u64 {
    position - position % BLOCK_BYTES as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("zz-direct-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("file")
    }

    /// Appends of every size, across block boundaries, read back as written, followed by
    /// zeros to the end of the block at most.
    #[test]
    fn appends_of_any_length_read_back_exactly_with_at_most_a_block_of_zeros_after() {
        for try_direct in [true, false] {
            appends_read_back(try_direct);
        }
    }

    fn appends_read_back(try_direct: bool) {
        let path = temporary(&format!("lengths-{try_direct}"));
        std::fs::write(&path, b"header").unwrap();
        let mut expected = b"header".to_vec();
        let mut appender = Appender::open_as(&path, expected.len() as u64, try_direct).unwrap();
        for (round, length) in [1usize, 4089, 4096, 10_000, 7, 0, 8192, 333]
            .iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..*length).map(|i| (i + round) as u8 | 1).collect();
            appender.append(&bytes, expected.len() as u64).unwrap();
            expected.extend_from_slice(&bytes);
            appender.sync().unwrap();
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(&on_disk[..expected.len()], &expected[..]);
            let after = &on_disk[expected.len()..];
            assert!(after.len() < BLOCK_BYTES && after.iter().all(|byte| *byte == 0));
        }
        // Reopened in the middle of a block, it goes on from what the file holds.
        drop(appender);
        let mut appender = Appender::open_as(&path, expected.len() as u64, try_direct).unwrap();
        appender.append(b"more", expected.len() as u64).unwrap();
        expected.extend_from_slice(b"more");
        assert_eq!(
            &std::fs::read(&path).unwrap()[..expected.len()],
            &expected[..]
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
