//! Copying and comparing file content.
//!
//! In order of preference: a reflink (`FICLONE`, xfs and btrfs, when both sides share a
//! filesystem), `copy_file_range` (in-kernel, server-side on NFS 4.2), then `pread`/`pwrite`
//! through a per-thread buffer. Sparse files are copied region by region between `SEEK_DATA` and
//! `SEEK_HOLE`, so holes stay holes; the target is then cut to the source's size.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{SeekFrom, copy_file_range, ftruncate, ioctl_ficlone, seek};
use rustix::io::{Errno, pread, pwrite};

use crate::meta::Meta;

const CHUNK: usize = 1 << 20;

thread_local! {
    static BUF_A: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
    static BUF_B: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// Copies file content, remembering for the rest of the run which kernel paths work.
#[derive(Debug)]
pub struct Copier {
    try_clone: AtomicBool,
    try_cfr: AtomicBool,
}

impl Default for Copier {
    fn default() -> Self {
        Copier {
            try_clone: AtomicBool::new(true),
            try_cfr: AtomicBool::new(true),
        }
    }
}

/// Errors that mean "this way of copying is not available here", not "the copy failed".
fn not_available(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL | Errno::NOTTY
    ) || e == Errno::NOTSUP
}

impl Copier {
    /// A copier that never reflinks (for callers that need independent copies).
    pub fn without_reflinks() -> Self {
        let c = Copier::default();
        c.try_clone.store(false, Ordering::Relaxed);
        c
    }

    /// Copies all of `src` into the empty file `dst`. Returns the number of bytes copied (a
    /// reflink counts as the whole size).
    pub fn copy(&self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, meta: &Meta) -> io::Result<u64> {
        if meta.size == 0 {
            return Ok(0);
        }
        if self.try_clone.load(Ordering::Relaxed) {
            match ioctl_ficlone(dst, src) {
                Ok(()) => return Ok(meta.size),
                Err(e) if not_available(e) || e == Errno::BADF || e == Errno::PERM => {
                    self.try_clone.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !meta.looks_sparse() {
            // Up to the size the listing saw: a file that grew since then has a newer mtime, and
            // the next run copies it again.
            return self.copy_range(src, dst, 0, Some(meta.size));
        }
        let mut copied = 0;
        let mut off = 0u64;
        loop {
            let data = match seek(src, SeekFrom::Data(off)) {
                Ok(d) => d,
                Err(Errno::NXIO) => break,
                Err(e) if not_available(e) => {
                    // No hole support: copy everything from here on.
                    copied += self.copy_range(src, dst, off, None)?;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let hole = seek(src, SeekFrom::Hole(data))?;
            if hole <= data {
                break;
            }
            copied += self.copy_range(src, dst, data, Some(hole - data))?;
            off = hole;
        }
        // Holes at the end are not data: give the target the source's length.
        ftruncate(dst, meta.size)?;
        Ok(copied)
    }

    /// Copies a small file through this thread's buffer and hashes it on the way: returns the
    /// bytes copied and their BLAKE3 hash, or `None` for a file this does not suit (the caller
    /// then copies it with [`Copier::copy`] and hashes the copy apart).
    ///
    /// For a file of up to one buffer, one `pread` and one `pwrite` cost no more than a
    /// `copy_file_range`, and reading the copy back to hash it (open, read, close) is saved.
    /// Larger files keep `copy_file_range` (done in the kernel, or by the server on NFS 4.2),
    /// sparse ones their holes, and where reflinks work the clone is cheaper than any copy.
    pub fn copy_small_hashed(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        meta: &Meta,
    ) -> io::Result<Option<(u64, [u8; 32])>> {
        if meta.size > CHUNK as u64 || meta.looks_sparse() || self.try_clone.load(Ordering::Relaxed)
        {
            return Ok(None);
        }
        BUF_A.with(|buf| {
            let mut buf = buf.borrow_mut();
            // Up to the size the listing saw, as `copy` does.
            let n = read_full_at(src, &mut buf[..meta.size as usize], 0)?;
            write_all_at(dst, &buf[..n], 0)?;
            Ok(Some((n as u64, *blake3::hash(&buf[..n]).as_bytes())))
        })
    }

    /// Copies `len` bytes (or up to the end of `src` when `None`) at offset `off` of `src` to the
    /// same offset of `dst`. Returns the number of bytes copied, fewer than `len` when `src`
    /// ends first.
    pub fn copy_range(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        off: u64,
        len: Option<u64>,
    ) -> io::Result<u64> {
        let end = len.map(|l| off + l);
        let mut pos = off;
        if self.try_cfr.load(Ordering::Relaxed) {
            loop {
                let want = end.map_or(1 << 30, |e| (e - pos).min(1 << 30)) as usize;
                if want == 0 {
                    return Ok(pos - off);
                }
                let (mut i, mut o) = (pos, pos);
                match copy_file_range(src, Some(&mut i), dst, Some(&mut o), want) {
                    Ok(0) => return Ok(pos - off),
                    Ok(n) => pos += n as u64,
                    Err(Errno::INTR) => {}
                    Err(e) if pos == off && not_available(e) => {
                        self.try_cfr.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        BUF_A.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                let want = end.map_or(CHUNK, |e| ((e - pos) as usize).min(CHUNK));
                if want == 0 {
                    return Ok(pos - off);
                }
                let n = match pread(src, &mut buf[..want], pos) {
                    Ok(0) => return Ok(pos - off),
                    Ok(n) => n,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                write_all_at(dst, &buf[..n], pos)?;
                pos += n as u64;
            }
        })
    }
}

/// Writes all of `data` at offset `pos` of `fd`.
pub fn write_all_at(fd: BorrowedFd<'_>, mut data: &[u8], mut pos: u64) -> io::Result<()> {
    while !data.is_empty() {
        match pwrite(fd, data, pos) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                data = &data[n..];
                pos += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_full_at(fd: BorrowedFd<'_>, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(fd, &mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

/// Whether two open files have the same bytes (read in full, for `--checksum`).
pub fn same_content(a: impl AsFd, b: impl AsFd) -> io::Result<bool> {
    let (a, b) = (a.as_fd(), b.as_fd());
    BUF_A.with(|ba| {
        BUF_B.with(|bb| {
            let (mut ba, mut bb) = (ba.borrow_mut(), bb.borrow_mut());
            let mut pos = 0u64;
            loop {
                let na = read_full_at(a, &mut ba[..], pos)?;
                let nb = read_full_at(b, &mut bb[..], pos)?;
                if na != nb || ba[..na] != bb[..nb] {
                    return Ok(false);
                }
                if na == 0 {
                    return Ok(true);
                }
                pos += na as u64;
            }
        })
    })
}
