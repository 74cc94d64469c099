//! Sharing data between image files: cloning a whole file (reflink) and asking the filesystem
//! which of a file's extents are shared.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Makes `dst` (an empty file opened for writing) share all of `src`'s data, without copying it.
///
/// Only filesystems with reflinks (xfs, btrfs) can; the others answer `EOPNOTSUPP`, `EINVAL`,
/// `ENOTTY` or (across filesystems) `EXDEV`, for which [`is_unsupported`] is true.
pub(crate) fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    rustix::fs::ioctl_ficlone(dst, src).map_err(io::Error::from)
}

/// Whether a clone failed because the filesystem cannot share data (rather than for lack of
/// space or an I/O error, which a full copy would meet too).
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY | libc::EXDEV | libc::ENOSYS)
    )
}

/// How a file's data is laid out on disk, as `FIEMAP` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Bytes of the file mapped to extents (its data; holes excluded).
    pub mapped: u64,
    /// Of those, bytes in extents the filesystem marks as shared with another file or clone.
    pub shared: u64,
}

impl Allocation {
    /// Bytes of data only this file holds: what deleting it would free.
    pub fn unique(&self) -> u64 {
        self.mapped - self.shared
    }
}

/// `_IOWR('f', 11, struct fiemap)`, with `struct fiemap` 32 bytes long.
const FS_IOC_FIEMAP: u64 = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
/// Extents asked for per call.
const BATCH: usize = 256;
/// `struct fiemap` is 4 u64 words; each `struct fiemap_extent` is 7.
const HEADER_WORDS: usize = 4;
const EXTENT_WORDS: usize = 7;

/// Reads the extent map of `file` and sums its mapped and shared bytes.
///
/// Returns `ENOTSUP`-style errors from filesystems without `FIEMAP` (tmpfs); callers then fall
/// back to `st_blocks`.
pub fn allocation(file: &File) -> io::Result<Allocation> {
    let mut total = Allocation::default();
    let mut start = 0u64;
    // u64 words keep the kernel's structures aligned.
    let mut buf = vec![0u64; HEADER_WORDS + BATCH * EXTENT_WORDS];
    loop {
        buf.fill(0);
        buf[0] = start; // fm_start
        buf[1] = u64::MAX - start; // fm_length
        set_u32(&mut buf, 16, FIEMAP_FLAG_SYNC); // fm_flags
        set_u32(&mut buf, 24, BATCH as u32); // fm_extent_count
        // SAFETY: FS_IOC_FIEMAP reads the `struct fiemap` header at the start of the buffer and
        // writes at most fm_extent_count (BATCH) extents after it, for which the buffer has room;
        // the descriptor is open.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mapped = get_u32(&buf, 20) as usize; // fm_mapped_extents
        if mapped == 0 {
            return Ok(total);
        }
        let mut last = false;
        for i in 0..mapped.min(BATCH) {
            let e = HEADER_WORDS + i * EXTENT_WORDS;
            let (logical, length) = (buf[e], buf[e + 2]); // fe_logical, fe_length
            let flags = get_u32(&buf, e * 8 + 40); // fe_flags, after fe_reserved64[2]
            total.mapped += length;
            if flags & FIEMAP_EXTENT_SHARED != 0 {
                total.shared += length;
            }
            start = logical + length;
            last |= flags & FIEMAP_EXTENT_LAST != 0;
        }
        if last {
            return Ok(total);
        }
    }
}

/// The u32 at byte offset `at` of a buffer of u64 words, in the machine's byte order.
fn get_u32(buf: &[u64], at: usize) -> u32 {
    let word = buf[at / 8].to_ne_bytes();
    let o = at % 8;
    u32::from_ne_bytes([word[o], word[o + 1], word[o + 2], word[o + 3]])
}

fn set_u32(buf: &mut [u64], at: usize, v: u32) {
    let mut word = buf[at / 8].to_ne_bytes();
    let o = at % 8;
    word[o..o + 4].copy_from_slice(&v.to_ne_bytes());
    buf[at / 8] = u64::from_ne_bytes(word);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn fiemap_counts_the_data_of_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&vec![7u8; 1 << 20], 8 << 20).unwrap();
        f.write_all_at(&vec![9u8; 2 << 20], 40 << 20).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&path).unwrap();
        match allocation(&f) {
            // Filesystems may round extents up to their block size, never down.
            Ok(a) => {
                assert!(a.mapped >= 3 << 20 && a.mapped < 4 << 20, "{a:?}");
                assert_eq!(a.shared, 0, "{a:?}");
            }
            Err(e) => eprintln!("FIEMAP not supported where the test runs: {e}"),
        }
    }
}
