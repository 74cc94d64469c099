//! Room in the target: what a copy will add (allocated bytes and inodes) against what the
//! target's filesystem has free, checked before the first write so that a copy that cannot fit
//! is refused instead of failing half-way.
//!
//! What a copy needs is counted relative to what the target holds already: a file the target
//! has with the same size and mtime needs nothing, a changed file needs its new allocation less
//! the old one's (but at least its own, since its new copy is written beside the old one before
//! the rename), and a new entry needs its allocation and one inode (one per hard-link group).
//! Entries the target has and the source lacks are not counted as freed: folders are worked on
//! at the same time, so their removal may come after other copies. Sizes are the allocated
//! blocks of the source (`st_blocks`), so sparse files count what they hold, not their length.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use rustix::fs::{Mode, OFlags, openat};

use crate::exclude::{self, Excludes};
use crate::listing::Listing;
use crate::meta::{Kind, Meta, stat_at};
use crate::{Error, Result, relpath};
use store::layout::STATE_DIR;

/// Free room on a filesystem, as an ordinary process may use it (blocks reserved for root are
/// not counted: the mover has no `CAP_SYS_RESOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Bytes free.
    pub bytes: u64,
    /// Inodes free; `None` when the filesystem sets no limit (btrfs, tmpfs without `nr_inodes`).
    pub inodes: Option<u64>,
}

/// What a copy adds to its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Bytes to allocate.
    pub bytes: u64,
    /// Inodes to make.
    pub inodes: u64,
}

impl Need {
    /// Whether `free` holds this.
    pub fn fits(&self, free: &Room) -> bool {
        self.bytes <= free.bytes && free.inodes.is_none_or(|i| self.inodes <= i)
    }

    /// What is missing from `free` to hold this: bytes and inodes (zero where there is enough).
    pub fn beyond(&self, free: &Room) -> Need {
        Need {
            bytes: self.bytes.saturating_sub(free.bytes),
            inodes: free.inodes.map_or(0, |i| self.inodes.saturating_sub(i)),
        }
    }
}

/// The free room of the filesystem that holds `fd`.
pub fn free(fd: BorrowedFd<'_>) -> io::Result<Room> {
    let s = rustix::fs::fstatvfs(fd)?;
    Ok(Room {
        bytes: s.f_bavail.saturating_mul(s.f_frsize),
        inodes: (s.f_files != 0).then_some(s.f_favail),
    })
}

/// Everything the filesystem that holds `fd` uses: no copy of a folder on it can need more.
/// `None` for a filesystem that does not count its inodes.
fn used(fd: BorrowedFd<'_>) -> Option<Need> {
    let s = rustix::fs::fstatvfs(fd).ok()?;
    if s.f_files == 0 {
        return None;
    }
    Some(Need {
        bytes: s
            .f_blocks
            .saturating_sub(s.f_bfree)
            .saturating_mul(s.f_frsize),
        inodes: s.f_files.saturating_sub(s.f_ffree),
    })
}

/// What copying `src` (less `excludes`) adds to `dst`, a folder that may hold an earlier copy;
/// `None` for an empty target. With `dirs_new`, every folder counts as new (a snapshot makes all
/// of its folders, and links only unchanged files from `dst`, the previous one). Entries the
/// mover cannot read as itself are left out of the count.
pub fn need(
    src: BorrowedFd<'_>,
    dst: Option<BorrowedFd<'_>>,
    excludes: &Excludes,
    dirs_new: bool,
) -> Need {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let reopen = |fd: BorrowedFd<'_>| openat(fd, c".", flags, Mode::empty()).ok();
    let Some(root) = reopen(src) else {
        return Need::default();
    };
    let count = Count {
        excludes,
        dirs_new,
        bytes: AtomicU64::new(0),
        inodes: AtomicU64::new(0),
        freed: AtomicU64::new(0),
        largest: AtomicU64::new(0),
        links: Mutex::new(HashSet::new()),
    };
    // Folders are counted in parallel, as the copy works on them.
    let target = dst.and_then(reopen).map(Arc::new);
    rayon::scope(|s| count.dir(s, Arc::new(root), target, Vec::new()));
    let bytes = count.bytes.load(Relaxed);
    let largest = count.largest.load(Relaxed);
    Need {
        bytes: bytes.saturating_sub(count.freed.load(Relaxed)).max(largest),
        inodes: count.inodes.load(Relaxed),
    }
}

/// What [`need`] adds up, shared by the folders being counted.
struct Count<'a> {
    excludes: &'a Excludes,
    dirs_new: bool,
    bytes: AtomicU64,
    inodes: AtomicU64,
    freed: AtomicU64,
    largest: AtomicU64,
    /// Hard-link groups already counted.
    links: Mutex<HashSet<(u64, u64)>>,
}

impl<'a> Count<'a> {
    /// Counts the source folder `sdir` at `rel` against the target folder `ddir`, if any, and
    /// starts a task for each of its subfolders, which opens it: waiting folders hold no
    /// descriptor of their own.
    fn dir<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        sdir: Arc<OwnedFd>,
        ddir: Option<Arc<OwnedFd>>,
        rel: Vec<u8>,
    ) where
        'a: 's,
    {
        let Ok(listing) = Listing::read(&sdir) else {
            return;
        };
        let (mut bytes, mut inodes, mut freed, mut largest) = (0u64, 0u64, 0u64, 0u64);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for i in 0..listing.len() {
            let name = listing.name(i);
            if rel.is_empty() && name.to_bytes() == STATE_DIR.as_bytes() {
                continue;
            }
            let Ok(m) = stat_at(&*sdir, name) else {
                continue;
            };
            let path = relpath::join(&rel, name.to_bytes());
            if !self.excludes.is_empty() && left_out(self.excludes, &sdir, name, &path, &m) {
                continue;
            }
            let have = ddir.as_ref().and_then(|d| stat_at(&**d, name).ok());
            let alloc = m.blocks.saturating_mul(512);
            match (m.kind, have) {
                (Kind::Dir, have) => {
                    if self.dirs_new || !have.is_some_and(|h| h.kind == Kind::Dir) {
                        bytes += alloc;
                        inodes += 1;
                    }
                    let (sparent, dparent) = (sdir.clone(), ddir.clone());
                    let name = name.to_owned();
                    s.spawn(move |s| {
                        let Ok(sub) = openat(&*sparent, name.as_c_str(), flags, Mode::empty())
                        else {
                            return;
                        };
                        let dsub = dparent
                            .and_then(|d| open_target_dir(d.as_fd(), &name))
                            .map(Arc::new);
                        drop(sparent);
                        self.dir(s, Arc::new(sub), dsub, path)
                    });
                }
                (Kind::File, Some(h)) if h.kind == Kind::File => {
                    if h.size == m.size && h.mtime == m.mtime {
                        continue;
                    }
                    bytes += alloc;
                    largest = largest.max(alloc);
                    if self.dirs_new {
                        inodes += 1;
                    } else {
                        freed += h.blocks.saturating_mul(512);
                    }
                }
                (_, Some(h)) if h.kind == m.kind && !self.dirs_new => {}
                (_, _) => {
                    if m.nlink > 1
                        && !self
                            .links
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((m.dev, m.ino))
                    {
                        continue;
                    }
                    bytes += alloc;
                    inodes += 1;
                    largest = largest.max(alloc);
                }
            }
        }
        self.bytes.fetch_add(bytes, Relaxed);
        self.inodes.fetch_add(inodes, Relaxed);
        self.freed.fetch_add(freed, Relaxed);
        self.largest.fetch_max(largest, Relaxed);
    }
}

/// The target folder `name` in `dir`, or the one a killed run left under its temporary name.
fn open_target_dir(dir: BorrowedFd<'_>, name: &CStr) -> Option<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(dir, name, flags, Mode::empty()).ok().or_else(|| {
        let tmp = crate::sync::new_dir_name(name.to_bytes())?;
        openat(dir, tmp.as_c_str(), flags, Mode::empty()).ok()
    })
}

/// Whether the source entry `name` of `dir`, at `path`, is left out of the copy.
fn left_out(excludes: &Excludes, dir: &OwnedFd, name: &CStr, path: &[u8], m: &Meta) -> bool {
    let is_dir = m.kind == Kind::Dir;
    if excludes.matches(path, is_dir) {
        return true;
    }
    if is_dir && excludes.caches() {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(sub) = openat(dir, name, flags, Mode::empty()) {
            return exclude::is_cache_dir(sub.as_fd()).unwrap_or(false);
        }
    }
    false
}

/// Refuses a copy of `src` into `dst` (at `dst_path`) that does not fit in the free room of
/// `dst`'s filesystem. When everything the source's filesystem holds fits, the trees are not
/// walked at all. `reference` is what the copy is compared with (the target itself for a
/// mirror, the previous snapshot for a new one, with `dirs_new`).
pub fn check(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    reference: Option<BorrowedFd<'_>>,
    dst_path: &Path,
    excludes: &Excludes,
    dirs_new: bool,
) -> Result<()> {
    let show = || relpath::display(dst_path.as_os_str().as_encoded_bytes());
    let room = free(dst).map_err(|e| Error::io("cannot read the free space of", show(), e))?;
    if used(src).is_some_and(|u| u.fits(&room)) {
        return Ok(());
    }
    let need = need(src, reference, excludes, dirs_new);
    if need.fits(&room) {
        return Ok(());
    }
    Err(Error::NoSpace {
        target: show(),
        need,
        free: room,
    })
}

/// A number of bytes for people: exact, and in binary units.
pub fn show_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{n} bytes ({})", human_bytes(n))
    }
}

/// A number of bytes in binary units with one decimal (`830.5 MiB`), or `N B` below 1 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Inodes for people: a count, or "no limit".
pub fn show_inodes(n: Option<u64>) -> String {
    match n {
        Some(n) => format!("{n} inodes"),
        None => "no inode limit".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dir_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn a_copy_needs_what_the_source_allocates_and_a_re_run_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/full"), vec![7u8; 64 * 1024]).unwrap();
        // 64 MiB long, one block of data: it needs its blocks, not its length.
        let sparse = std::fs::File::create(src.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&sparse, b"data", 1 << 20).unwrap();
        drop(sparse);
        std::fs::hard_link(src.join("sub/full"), src.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/full", src.join("symlink")).unwrap();
        // What std's stat says: every entry below the root, a hard-link group once.
        let meta = |p: &str| std::fs::symlink_metadata(src.join(p)).unwrap();
        let expect_bytes: u64 = ["sub", "sub/full", "sparse", "symlink"]
            .iter()
            .map(|p| meta(p).blocks() * 512)
            .sum();
        let empty = Excludes::default();
        let got = need(dir_fd(&src).as_fd(), None, &empty, false);
        assert_eq!(
            got,
            Need {
                bytes: expect_bytes,
                inodes: 4
            }
        );
        assert!(got.bytes < 1 << 20, "a sparse file counted by its length");

        let dst = dir.path().join("dst");
        crate::Mirror::prepare(&src, &dst, crate::Options::default())
            .unwrap()
            .run()
            .unwrap();
        let again = need(
            dir_fd(&src).as_fd(),
            Some(dir_fd(&dst).as_fd()),
            &empty,
            false,
        );
        assert_eq!(again, Need::default(), "nothing changed, nothing needed");

        // Left out by an exclude: not needed.
        let ex = Excludes::new(&["sub/".to_string()], false, false).unwrap();
        let got = need(dir_fd(&src).as_fd(), None, &ex, false);
        assert_eq!(got.inodes, 3);
    }

    #[test]
    fn a_need_fits_when_both_figures_do() {
        let free = Room {
            bytes: 100,
            inodes: Some(10),
        };
        assert!(
            Need {
                bytes: 100,
                inodes: 10
            }
            .fits(&free)
        );
        assert!(
            !Need {
                bytes: 101,
                inodes: 1
            }
            .fits(&free)
        );
        assert!(
            !Need {
                bytes: 1,
                inodes: 11
            }
            .fits(&free)
        );
        let unlimited = Room {
            bytes: 100,
            inodes: None,
        };
        assert!(
            Need {
                bytes: 1,
                inodes: 1 << 40
            }
            .fits(&unlimited)
        );
        assert_eq!(
            Need {
                bytes: 150,
                inodes: 12
            }
            .beyond(&free),
            Need {
                bytes: 50,
                inodes: 2
            }
        );
    }
}
