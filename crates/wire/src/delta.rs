//! Chunk-level delta of large files: when the target has an older version of a file that
//! differs, the receiver sends the BLAKE3 hash of each fixed-size chunk of that version
//! ([`crate::message::Message::Basis`]); the sender hashes the same chunks of the new version
//! and sends only those that differ, and [`crate::message::Message::Same`] for the others,
//! which the receiver copies from the older version into the new file.
//!
//! Chunks are at fixed offsets: a change that shifts the rest of a file (an insertion) makes
//! every later chunk differ. Sparse source files are sent whole (with their holes).

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::{Errno, pread};

use crate::frame::DATA_CHUNK;

/// Files smaller than this are sent whole.
pub const DELTA_MIN: u64 = 4 << 20;

/// The smallest chunk.
pub const MIN_CHUNK: u32 = 1 << 20;

/// The most chunks in one basis (its hashes fit in one frame).
pub const MAX_CHUNKS: usize = 16 << 10;

/// The largest chunk; an older version with more than [`MAX_CHUNKS`] of these gets no basis.
pub const MAX_CHUNK: u32 = 256 << 20;

/// The chunk size for an older version of `size` bytes: 1 MiB, or more (whole MiB) so that
/// there are at most [`MAX_CHUNKS`]; `None` beyond.
pub fn chunk_for(size: u64) -> Option<u32> {
    let per = size.div_ceil(MAX_CHUNKS as u64);
    let chunk = per.div_ceil(u64::from(MIN_CHUNK)).max(1) * u64::from(MIN_CHUNK);
    u32::try_from(chunk).ok().filter(|&c| c <= MAX_CHUNK)
}

/// The BLAKE3 hash of `len` bytes at `off` of `fd`, read through `buf`; `None` when the file
/// ends first.
pub fn hash_range(
    fd: BorrowedFd<'_>,
    off: u64,
    len: u64,
    buf: &mut [u8],
) -> io::Result<Option<[u8; 32]>> {
    let mut h = blake3::Hasher::new();
    let mut pos = off;
    let end = off + len;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        match pread(fd, &mut buf[..want], pos) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                h.update(&buf[..n]);
                pos += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(*h.finalize().as_bytes()))
}

/// The hashes of each `chunk` bytes of the first `size` bytes of `fd`.
pub fn hashes(fd: BorrowedFd<'_>, size: u64, chunk: u32) -> io::Result<Vec<[u8; 32]>> {
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut out = Vec::with_capacity(size.div_ceil(u64::from(chunk)) as usize);
    let mut off = 0;
    while off < size {
        let len = (size - off).min(u64::from(chunk));
        match hash_range(fd, off, len, &mut buf)? {
            Some(h) => out.push(h),
            None => break,
        }
        off += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_with_the_file_and_stop_at_the_limit() {
        assert_eq!(chunk_for(5 << 20), Some(MIN_CHUNK));
        assert_eq!(chunk_for(16 << 30), Some(MIN_CHUNK));
        assert_eq!(chunk_for((16 << 30) + 1), Some(2 << 20));
        let c = chunk_for(1 << 40).unwrap();
        assert!((1u64 << 40).div_ceil(u64::from(c)) <= MAX_CHUNKS as u64);
        assert_eq!(
            chunk_for(u64::from(MAX_CHUNK) * MAX_CHUNKS as u64 + 1),
            None
        );
    }
}
