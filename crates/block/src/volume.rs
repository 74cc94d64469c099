//! One side of a copy: a block device or an image file, opened for the fastest honest I/O.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::num::NonZeroU64;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{Advice, FallocateFlags, SeekFrom};

use crate::error::{Error, Result};

/// What a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A block device (`/dev/...`).
    Device,
    /// A regular file holding a raw image.
    File,
}

impl VolumeKind {
    /// "device" or "file".
    pub fn name(self) -> &'static str {
        match self {
            VolumeKind::Device => "device",
            VolumeKind::File => "file",
        }
    }
}

/// What makes two paths the same volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    Device { rdev: u64 },
    File { dev: u64, ino: u64 },
}

/// Stats a path and says what volume it is. `Ok(None)` when it does not exist.
pub(crate) fn inspect(path: &Path) -> Result<Option<(VolumeKind, Identity)>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot inspect", path, e)),
    };
    Ok(Some(classify(path, &meta)?))
}

fn classify(path: &Path, meta: &Metadata) -> Result<(VolumeKind, Identity)> {
    let ft = meta.file_type();
    if ft.is_block_device() {
        Ok((VolumeKind::Device, Identity::Device { rdev: meta.rdev() }))
    } else if ft.is_file() {
        Ok((
            VolumeKind::File,
            Identity::File {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        ))
    } else {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_fifo() {
            "pipe"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        Err(Error::NotAVolume {
            path: path.to_path_buf(),
            kind,
        })
    }
}

/// How zero ranges of a device are zeroed, learnt on first use.
const ZERO_UNKNOWN: u8 = 0;
const ZERO_PUNCH: u8 = 1;
const ZERO_ZEROOUT: u8 = 2;
const ZERO_WRITE: u8 = 3;

/// `_IO(0x12, 127)`: zero a byte range of a block device; the kernel uses the device's
/// write-zeroes command or writes zero pages itself, and reads return zeros afterwards.
const BLKZEROOUT: u64 = 0x127f;

/// An opened volume. Workers share it: every I/O is positional.
pub(crate) struct Volume {
    pub(crate) path: PathBuf,
    pub(crate) kind: VolumeKind,
    pub(crate) size: u64,
    /// Offsets and lengths must be multiples of this to use `direct`.
    pub(crate) align: u64,
    /// Opened with `O_DIRECT`, when the filesystem or device allows it.
    direct: Option<File>,
    /// Opened without `O_DIRECT`: for unaligned tails, hole queries, zeroing, truncation, sync.
    buffered: File,
    zero_method: AtomicU8,
}

impl Volume {
    /// Opens the source read-only. A missing source is [`Error::SourceMissing`].
    pub(crate) fn open_source(path: &Path) -> Result<Self> {
        let (kind, _) = inspect(path)?.ok_or_else(|| Error::SourceMissing {
            path: path.to_path_buf(),
        })?;
        let mut opts = OpenOptions::new();
        opts.read(true);
        let buffered = opts
            .open(path)
            .map_err(|e| Error::io("cannot open source", path, e))?;
        Self::finish(path, kind, buffered, &opts)
    }

    /// Opens (or creates, as an empty image file) the destination for reading and writing.
    ///
    /// A block device is opened with `O_EXCL`, which the kernel refuses while the device is
    /// mounted or held by another exclusive user: a copy onto a mounted filesystem would corrupt it.
    pub(crate) fn open_dest(path: &Path) -> Result<(Self, bool)> {
        let existing = inspect(path)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        let created = existing.is_none();
        let kind = match existing {
            Some((VolumeKind::Device, _)) => {
                opts.custom_flags(libc::O_EXCL);
                VolumeKind::Device
            }
            Some((VolumeKind::File, _)) => VolumeKind::File,
            None => {
                opts.create_new(true).mode(0o600);
                VolumeKind::File
            }
        };
        let buffered = opts.open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) if kind == VolumeKind::Device => Error::InUse {
                path: path.to_path_buf(),
            },
            _ => Error::io("cannot open destination", path, e),
        })?;
        // Later opens must neither create nor exclude again.
        let mut reopen = OpenOptions::new();
        reopen.read(true).write(true);
        Ok((Self::finish(path, kind, buffered, &reopen)?, created))
    }

    fn finish(path: &Path, kind: VolumeKind, buffered: File, opts: &OpenOptions) -> Result<Self> {
        let (size, align) = match kind {
            VolumeKind::Device => {
                let size = rustix::fs::seek(&buffered, SeekFrom::End(0))
                    .map_err(|e| Error::io("cannot read the size of", path, e.into()))?;
                let lbs = rustix::fs::ioctl_blksszget(&buffered).unwrap_or(512);
                (size, u64::from(lbs.max(512)))
            }
            VolumeKind::File => {
                let meta = buffered
                    .metadata()
                    .map_err(|e| Error::io("cannot stat", path, e))?;
                // 4 KiB covers the direct-I/O alignment of every common filesystem and disk.
                (meta.len(), 4096)
            }
        };
        let mut direct_opts = opts.clone();
        direct_opts.custom_flags(libc::O_DIRECT);
        // Filesystems without O_DIRECT answer EINVAL; then page-cache I/O with DONTNEED it is.
        let direct = direct_opts.open(path).ok();
        Ok(Volume {
            path: path.to_path_buf(),
            kind,
            size,
            align,
            direct,
            buffered,
            zero_method: AtomicU8::new(ZERO_UNKNOWN),
        })
    }

    /// Whether reads and writes bypass the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The identity of the opened volume.
    pub(crate) fn identity(&self) -> Result<Identity> {
        let meta = self
            .buffered
            .metadata()
            .map_err(|e| Error::io("cannot stat", &self.path, e))?;
        Ok(classify(&self.path, &meta)?.1)
    }

    fn pick(&self, offset: u64, len: usize, ptr: *const u8) -> Option<&File> {
        let aligned = offset.is_multiple_of(self.align)
            && (len as u64).is_multiple_of(self.align)
            && (ptr as usize).is_multiple_of(crate::buffer::BUFFER_ALIGN);
        if aligned { self.direct.as_ref() } else { None }
    }

    /// Reads exactly `buf.len()` bytes at `offset`; a volume that ends early is an error.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let via_cache = match self.pick(offset, buf.len(), buf.as_ptr()) {
            Some(f) => match read_full(f, buf, offset) {
                // A device or filesystem that wants a larger alignment than ours: go through the
                // page cache for this request rather than fail it.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    read_full(&self.buffered, buf, offset)?;
                    true
                }
                other => {
                    other?;
                    false
                }
            },
            None => {
                read_full(&self.buffered, buf, offset)?;
                true
            }
        };
        if via_cache {
            self.drop_cache(offset, buf.len() as u64);
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub(crate) fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let direct = match self.pick(offset, buf.len(), buf.as_ptr()) {
            Some(f) => f.write_all_at(buf, offset),
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match direct {
            // Unaligned, or an alignment larger than ours: through the page cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.buffered.write_all_at(buf, offset)?;
                // Push the pages out now so that DONTNEED can drop them.
                rustix::fs::fdatasync(&self.buffered)?;
                self.drop_cache(offset, buf.len() as u64);
                Ok(())
            }
            other => other,
        }
    }

    fn drop_cache(&self, offset: u64, len: u64) {
        // Advice only; failing to give it changes no data.
        let _ = rustix::fs::fadvise(
            &self.buffered,
            offset,
            NonZeroU64::new(len),
            Advice::DontNeed,
        );
    }

    /// Whether `[offset, offset + len)` of an image file is one hole (reads as zeros without
    /// I/O). Always false for devices and where the filesystem cannot tell.
    pub(crate) fn is_hole(&self, offset: u64, len: u64) -> bool {
        if self.kind != VolumeKind::File {
            return false;
        }
        match rustix::fs::seek(&self.buffered, SeekFrom::Data(offset)) {
            Ok(data) => data >= offset + len,
            // ENXIO: no data at or after `offset`.
            Err(e) => e == rustix::io::Errno::NXIO,
        }
    }

    /// For each chunk of `chunk` bytes of the first `size` bytes, whether it is entirely a hole
    /// of an image file: one walk over the file's data extents (`SEEK_DATA`/`SEEK_HOLE`) instead
    /// of a query per chunk. All false for devices and where the filesystem cannot tell.
    ///
    /// Only for a volume that nobody else writes meanwhile: the copy takes it of the destination
    /// before its first write, where a query per chunk would wait on the inode lock that the
    /// filesystem holds during every allocating write.
    pub(crate) fn hole_map(&self, chunk: u64, size: u64) -> Vec<bool> {
        let chunks = size.div_ceil(chunk) as usize;
        if self.kind != VolumeKind::File {
            return vec![false; chunks];
        }
        let mut holes = vec![true; chunks];
        let mut pos = 0;
        while pos < size {
            let data = match rustix::fs::seek(&self.buffered, SeekFrom::Data(pos)) {
                Ok(d) => d,
                // No data at or after `pos`.
                Err(rustix::io::Errno::NXIO) => break,
                Err(_) => return vec![false; chunks],
            };
            if data >= size {
                break;
            }
            let end = match rustix::fs::seek(&self.buffered, SeekFrom::Hole(data)) {
                Ok(h) => h.clamp(data + 1, size),
                Err(_) => return vec![false; chunks],
            };
            let (first, last) = ((data / chunk) as usize, ((end - 1) / chunk) as usize);
            holes[first..=last].fill(false);
            pos = end;
        }
        holes
    }

    /// Makes `[offset, offset + len)` read as zeros without sending zeros when possible.
    ///
    /// Image files get a punched hole. Devices get, in order of preference: `fallocate(PUNCH_HOLE)`
    /// (the kernel's write-zeroes with unmap and no fallback: thin volumes release the space),
    /// `BLKZEROOUT` (write-zeroes, or zero pages written by the kernel), and finally plain writes of
    /// zeros. `BLKDISCARD` is never used: a discarded range need not read back as zeros.
    pub(crate) fn zero_range(&self, offset: u64, len: u64, zeros: &[u8]) -> io::Result<()> {
        let mut method = self.zero_method.load(Ordering::Relaxed);
        loop {
            let result = match method {
                ZERO_UNKNOWN | ZERO_PUNCH => rustix::fs::fallocate(
                    &self.buffered,
                    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                    offset,
                    len,
                )
                .map_err(io::Error::from),
                ZERO_ZEROOUT if self.kind == VolumeKind::Device => self.blkzeroout(offset, len),
                _ => {
                    let mut pos = 0;
                    while pos < len {
                        let n = (len - pos).min(zeros.len() as u64) as usize;
                        self.write_all_at(&zeros[..n], offset + pos)?;
                        pos += n as u64;
                    }
                    Ok(())
                }
            };
            match result {
                Ok(()) => {
                    if method == ZERO_UNKNOWN {
                        self.zero_method.store(ZERO_PUNCH, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(e)
                    if method != ZERO_WRITE
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY | libc::ENOSYS)
                        ) =>
                {
                    method = match method {
                        ZERO_UNKNOWN | ZERO_PUNCH if self.kind == VolumeKind::Device => {
                            ZERO_ZEROOUT
                        }
                        _ => ZERO_WRITE,
                    };
                    self.zero_method.store(method, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn blkzeroout(&self, offset: u64, len: u64) -> io::Result<()> {
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64 (start, length) from the pointer, which lives for the
        // duration of the call; the descriptor is open.
        let rc = unsafe { libc::ioctl(self.buffered.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sets the length of an image file (holes when it grows).
    pub(crate) fn set_len(&mut self, size: u64) -> Result<()> {
        self.buffered
            .set_len(size)
            .map_err(|e| Error::io("cannot set the size of", &self.path, e))?;
        self.size = size;
        Ok(())
    }

    /// Makes every write durable, then drops whatever the copy left in the page cache.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.buffered)?;
        self.drop_cache(0, 0);
        Ok(())
    }

    /// Drops cached pages of the whole volume (advice; used after reading through the cache).
    pub(crate) fn forget(&self) {
        self.drop_cache(0, 0);
    }
}

fn read_full(f: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("volume ends at byte {offset}: it shrank during the copy"),
                ));
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
