//! Removing entries from the target, whole trees included, relative to directory descriptors and
//! without recursion on the stack (trees deeper than `PATH_MAX` are removed too).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, unlinkat};
use rustix::io::Errno;

use crate::listing::Listing;
use crate::meta::stat_at;

fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes `name` from `dir`, whatever it is; a directory goes with everything in it. Returns the
/// number of entries removed.
pub fn remove(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<u64> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(1),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    // EPERM is also what unlink says for a directory on some systems: make sure.
    if stat_at(dir, name)?.kind != crate::meta::Kind::Dir {
        unlinkat(dir, name, AtFlags::empty())?;
        return Ok(1);
    }
    remove_tree(dir, name)
}

struct Frame {
    fd: OwnedFd,
    name: CString,
    subdirs: Vec<CString>,
}

fn open_frame(parent: BorrowedFd<'_>, name: &CStr, removed: &mut u64) -> io::Result<Frame> {
    let fd = open_dir_nofollow(parent, name)?;
    let listing = Listing::read(&fd)?;
    let mut subdirs = Vec::new();
    for i in 0..listing.len() {
        let n = listing.name(i);
        let is_dir = match listing.dtype(i) {
            FileType::Directory => true,
            FileType::Unknown => stat_at(&fd, n)?.kind == crate::meta::Kind::Dir,
            _ => false,
        };
        if is_dir {
            subdirs.push(n.to_owned());
        } else {
            match unlinkat(&fd, n, AtFlags::empty()) {
                Ok(()) => *removed += 1,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Frame {
        fd,
        name: name.to_owned(),
        subdirs,
    })
}

/// Removes the directory `name` in `dir` and everything below it.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<u64> {
    let mut removed = 0;
    let mut stack = vec![open_frame(dir, name, &mut removed)?];
    while let Some(top) = stack.last_mut() {
        if let Some(sub) = top.subdirs.pop() {
            let frame = open_frame(top.fd.as_fd(), &sub, &mut removed)?;
            stack.push(frame);
        } else {
            let done = stack.pop().expect("non-empty");
            drop(done.fd);
            let parent = stack.last().map_or(dir, |f| f.fd.as_fd());
            unlinkat(parent, &done.name, AtFlags::REMOVEDIR)?;
            removed += 1;
        }
    }
    Ok(removed)
}
