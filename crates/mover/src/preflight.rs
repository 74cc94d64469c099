//! Everything checked before the first byte is written: the source exists and is not empty, the
//! `--subdir` stays inside it, source and target do not overlap, and no other mover holds the
//! target. A refusal here leaves the target untouched.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags, mkdirat, openat};
use rustix::io::Errno;

use crate::listing::Listing;
use crate::meta::stat_fd;
use crate::owner::{Impersonate, Owners};
use crate::{Error, Result};
use store::layout::STATE_DIR;
use store::lock::StateDir;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Names at a root that do not make a source "non-empty": a fresh ext4 volume has `lost+found`,
/// and a former target has the mover's state folder.
pub const IGNORED_FOR_EMPTINESS: [&[u8]; 2] = [b"lost+found", STATE_DIR.as_bytes()];

fn show(p: &Path) -> String {
    crate::relpath::display(p.as_os_str().as_bytes())
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Usage(format!("path {} contains a NUL byte", show(p))))
}

/// Opens the source root, and `subdir` inside it without following any symlink. A missing source
/// (or subdir) is [`Error::SourceMissing`]; a subdir that is absolute, has `..`, or passes through
/// a symlink is [`Error::Usage`].
pub fn open_source(src: &Path, subdir: Option<&Path>, owners: &Owners) -> Result<OwnedFd> {
    let csrc = cpath(src)?;
    let root = match openat(rustix::fs::CWD, csrc.as_c_str(), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        // A root folder only its owner may read (root_squash): reach it as its owner.
        Err(Errno::ACCESS) | Err(Errno::PERM) if owners.mode() != Impersonate::Never => {
            let path = openat(
                rustix::fs::CWD,
                csrc.as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("cannot open source", show(src), e.into()))?;
            let m = stat_fd(&path).map_err(|e| Error::io("cannot stat source", show(src), e))?;
            owners
                .reopen_as(&path, (m.uid, m.gid), DIR_FLAGS)
                .map_err(|e| Error::io("cannot open source (even as its owner)", show(src), e))?
        }
        Err(Errno::NOENT) => {
            return Err(Error::SourceMissing {
                path: show(src),
                source: Errno::NOENT.into(),
            });
        }
        Err(Errno::NOTDIR) => {
            return Err(Error::Usage(format!(
                "source {} is not a directory; give the folder where the volume is mounted",
                show(src)
            )));
        }
        Err(e) => return Err(Error::io("cannot open source", show(src), e.into())),
    };
    let Some(sub) = subdir else { return Ok(root) };
    let mut cur = root;
    let mut any = false;
    for comp in sub.components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            _ => {
                return Err(Error::Usage(format!(
                    "--subdir {} must be a relative path inside the source without `..`",
                    show(sub)
                )));
            }
        };
        any = true;
        let cname = CString::new(name.as_bytes())
            .map_err(|_| Error::Usage("--subdir contains a NUL byte".into()))?;
        let cur_meta = stat_fd(&cur).map_err(|e| Error::io("cannot stat", show(sub), e))?;
        let opened = owners.open_as(
            cur.as_fd(),
            (cur_meta.uid, cur_meta.gid),
            cname.as_c_str(),
            None,
            DIR_FLAGS | OFlags::NOFOLLOW,
        );
        cur = match opened.map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(Error::SourceMissing {
                    path: format!("{}/{}", show(src), show(sub)),
                    source: Errno::NOENT.into(),
                });
            }
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                return Err(Error::Usage(format!(
                    "--subdir {} is not a plain directory inside the source (a symlink or a \
                     file is on the way); symlinks are not followed so that the copy cannot \
                     escape the source",
                    show(sub)
                )));
            }
            Err(e) => return Err(Error::io("cannot open subdir", show(sub), e.into())),
        };
    }
    if !any {
        return Err(Error::Usage(
            "--subdir is empty; leave it out to copy the whole source".into(),
        ));
    }
    Ok(cur)
}

/// Whether a source root has nothing worth copying (see [`IGNORED_FOR_EMPTINESS`]).
pub fn is_empty_source(src: BorrowedFd<'_>) -> io::Result<bool> {
    let l = Listing::read(src)?;
    Ok((0..l.len()).all(|i| IGNORED_FOR_EMPTINESS.contains(&l.name_bytes(i))))
}

/// Opens the target root, creating it (not its parents) when missing, after checking that it
/// does not overlap `src` (see [`check_disjoint`]): a refused run creates nothing.
pub fn open_target(
    dst: &Path,
    src: BorrowedFd<'_>,
    src_path: &Path,
    owners: &Owners,
) -> Result<OwnedFd> {
    open_target_with(dst, Some((src, src_path)), owners)
}

/// Opens the target root of a copy whose source is not on this machine (the receiving end of
/// a transfer over the network), creating it (not its parents) when missing. There is no local
/// source to overlap, so only the target's own checks apply.
pub fn open_remote_target(dst: &Path, owners: &Owners) -> Result<OwnedFd> {
    open_target_with(dst, None, owners)
}

fn open_target_with(
    dst: &Path,
    src: Option<(BorrowedFd<'_>, &Path)>,
    owners: &Owners,
) -> Result<OwnedFd> {
    let c = cpath(dst)?;
    let opened = match openat(rustix::fs::CWD, c.as_c_str(), DIR_FLAGS, Mode::empty()) {
        // A target root only its owner may open: open it as its owner.
        Err(Errno::ACCESS) | Err(Errno::PERM) if owners.mode() != Impersonate::Never => {
            let path_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            openat(rustix::fs::CWD, c.as_c_str(), path_flags, Mode::empty())
                .map_err(io::Error::from)
                .and_then(|p| {
                    let m = stat_fd(&p)?;
                    owners.reopen_as(&p, (m.uid, m.gid), DIR_FLAGS)
                })
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::ACCESS))
        }
        r => r,
    };
    match opened {
        Ok(fd) => {
            if let Some((src, src_path)) = src {
                check_disjoint(src, fd.as_fd(), src_path, dst, owners)?;
            }
            return Ok(fd);
        }
        Err(Errno::NOENT) => {}
        Err(Errno::NOTDIR) => {
            return Err(Error::Usage(format!(
                "target {} is not a directory",
                show(dst)
            )));
        }
        Err(e) => return Err(Error::io("cannot open target", show(dst), e.into())),
    }
    // Not there yet: it would be created in its parent, which must not be inside the source.
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent_fd = openat(
        rustix::fs::CWD,
        cpath(parent)?.as_c_str(),
        DIR_FLAGS,
        Mode::empty(),
    )
    .map_err(|e| {
        Error::io(
            "cannot open the parent of the target (it must exist)",
            show(dst),
            e.into(),
        )
    })?;
    if let Some((src, src_path)) = src
        && is_within(parent_fd.as_fd(), src, owners)
            .map_err(|e| Error::io("cannot compare source and target", show(dst), e))?
    {
        return Err(overlap_error(src_path, dst));
    }
    match mkdirat(rustix::fs::CWD, c.as_c_str(), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(Error::io(
                "cannot create target (its parent must exist)",
                show(dst),
                e.into(),
            ));
        }
    }
    openat(rustix::fs::CWD, c.as_c_str(), DIR_FLAGS, Mode::empty())
        .map_err(|e| Error::io("cannot open target", show(dst), e.into()))
}

fn overlap_error(s: &Path, d: &Path) -> Error {
    Error::Usage(format!(
        "target {} is the source {} or inside it; choose a target outside the source",
        show(d),
        show(s)
    ))
}

/// Whether `inner` is `outer` or lies below it, found by walking up from `inner` through `..`
/// (which follows bind mounts and symlinked paths the way the kernel resolved them).
fn is_within(inner: BorrowedFd<'_>, outer: BorrowedFd<'_>, owners: &Owners) -> io::Result<bool> {
    let target = stat_fd(outer)?;
    let mut cur: OwnedFd = inner.try_clone_to_owned()?;
    loop {
        let here = stat_fd(&cur)?;
        if (here.dev, here.ino) == (target.dev, target.ino) {
            return Ok(true);
        }
        let up = owners.retry_target(&[], &[cur.as_fd()], || {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            openat(&cur, c"..", flags, Mode::empty()).map_err(Into::into)
        })?;
        let above = stat_fd(&up)?;
        if (above.dev, above.ino) == (here.dev, here.ino) {
            return Ok(false);
        }
        cur = up;
    }
}

/// Refuses a source and target that are the same directory or nested in each other.
pub fn check_disjoint(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    s: &Path,
    d: &Path,
    owners: &Owners,
) -> Result<()> {
    let io_err = |e| Error::io("cannot compare source and target", show(d), e);
    if is_within(dst, src, owners).map_err(io_err)? {
        return Err(overlap_error(s, d));
    }
    if is_within(src, dst, owners).map_err(io_err)? {
        return Err(Error::Usage(format!(
            "source {} is inside the target {}; mirroring would delete it. Choose a target \
             outside the source",
            show(s),
            show(d)
        )));
    }
    Ok(())
}

/// Opens (creating) the target's state folder and takes its lock (see [`store::lock`]); where
/// the mover may not write the target as itself, it does so as the folder's owner.
pub fn lock_target(dst: BorrowedFd<'_>, d: &Path, owners: &Owners) -> Result<StateDir> {
    Ok(store::lock::lock(dst, &show(d), owners)?)
}
