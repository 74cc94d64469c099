//! Reading one directory: its names, sorted as bytes, each with its attributes if asked.
//!
//! Names live in one buffer per directory, so a listing costs two allocations however many
//! entries it has, and memory is bounded by the widest directory being worked on.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use rustix::fs::{FileType, RawDir};

use crate::meta::{Meta, stat_at};

/// One directory's entries, sorted by name.
#[derive(Debug, Default)]
pub struct Listing {
    names: Vec<u8>,
    entries: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
    dtype: FileType,
}

thread_local! {
    static DIRENT_BUF: std::cell::RefCell<Vec<MaybeUninit<u8>>> =
        std::cell::RefCell::new(vec![MaybeUninit::uninit(); 64 * 1024]);
}

impl Listing {
    /// Reads every entry of the open directory `dir` except `.` and `..`, from the start.
    ///
    /// Descriptors duplicated from one another share one position: two threads must never read
    /// through such descriptors at the same time, or each sees only part of the directory.
    pub fn read(dir: impl AsFd) -> io::Result<Listing> {
        let mut listing = Listing::default();
        rustix::fs::seek(dir.as_fd(), rustix::fs::SeekFrom::Start(0))?;
        DIRENT_BUF.with(|buf| -> io::Result<()> {
            let mut buf = buf.borrow_mut();
            let mut raw = RawDir::new(dir.as_fd(), &mut buf[..]);
            while let Some(entry) = raw.next() {
                let entry = entry?;
                let name = entry.file_name().to_bytes_with_nul();
                if name == b".\0" || name == b"..\0" {
                    continue;
                }
                let start = u32::try_from(listing.names.len())
                    .map_err(|_| io::Error::other("directory listing larger than 4 GiB"))?;
                listing.names.extend_from_slice(name);
                listing.entries.push(Slot {
                    start,
                    len: name.len() as u32,
                    dtype: entry.file_type(),
                });
            }
            Ok(())
        })?;
        let names = &listing.names;
        listing.entries.sort_unstable_by(|a, b| {
            names[a.start as usize..(a.start + a.len - 1) as usize]
                .cmp(&names[b.start as usize..(b.start + b.len - 1) as usize])
        });
        Ok(listing)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of entry `i`, for system calls.
    pub fn name(&self, i: usize) -> &CStr {
        let s = self.entries[i];
        // The buffer holds each name with its NUL, exactly as getdents returned it.
        CStr::from_bytes_with_nul(&self.names[s.start as usize..(s.start + s.len) as usize])
            .expect("listing names end in NUL")
    }

    /// The name of entry `i` as bytes.
    pub fn name_bytes(&self, i: usize) -> &[u8] {
        self.name(i).to_bytes()
    }

    /// The type `getdents` reported for entry `i` (may be `Unknown` on some filesystems).
    pub fn dtype(&self, i: usize) -> FileType {
        self.entries[i].dtype
    }

    /// Stats every entry, in order, relative to the directory it was read from.
    pub fn stat_all(&self, dir: impl AsFd) -> Vec<io::Result<Meta>> {
        let dir = dir.as_fd();
        (0..self.len())
            .map(|i| stat_at(dir, self.name(i)))
            .collect()
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.entries
            .binary_search_by(|s| {
                self.names[s.start as usize..(s.start + s.len - 1) as usize].cmp(name)
            })
            .ok()
    }
}
