//! Applying owner, mode bits, extended attributes and times to an entry of the target.
//!
//! The order matters: `chown` clears the setuid and setgid bits and `security.capability`, so
//! the owner comes first, then extended attributes, then the mode, then the times (which every
//! earlier change would otherwise disturb).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{
    AtFlags, Mode, OFlags, Timestamps, chmod, chownat, fchmod, fchown, futimens, openat, utimensat,
};
use rustix::process::{Gid, Uid};

use crate::meta::{Kind, Meta, stat_fd};
use crate::owner::Owners;
use crate::xattr::{self, Xattrs};

/// How to reach the entry whose attributes are set.
#[derive(Clone, Copy, Debug)]
pub enum Handle<'a> {
    /// An open descriptor of a regular file or directory.
    Fd(BorrowedFd<'a>),
    /// The entry `name` in directory `dir` (symlinks, fifos, device nodes): never followed.
    At(BorrowedFd<'a>, &'a CStr),
}

/// A failed step of applying attributes.
#[derive(Debug)]
pub struct OpError {
    /// The step: `chown`, `chmod`, `xattr`, `utimens`.
    pub op: &'static str,
    /// What the kernel said.
    pub err: io::Error,
}

impl OpError {
    pub(crate) fn new(op: &'static str, err: impl Into<io::Error>) -> Self {
        OpError {
            op,
            err: err.into(),
        }
    }
}

/// What [`apply`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Owner or group.
    pub owner: bool,
    /// Mode bits.
    pub mode: bool,
    /// Extended attributes or ACLs.
    pub xattrs: bool,
    /// Modification or access time.
    pub times: bool,
}

impl Changed {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.owner || self.mode || self.xattrs || self.times
    }
}

/// Makes the attributes of the target entry equal to the source's.
///
/// `have` and `have_x` are the target's current attributes when known (`None`: a new entry, set
/// everything). `want_x` are the source's extended attributes. With `owners`, a step refused to
/// the mover (no `CAP_DAC_OVERRIDE` or `CAP_FOWNER`, or a root-squashed target) is done again as
/// the entry's owner, who may change its own file's mode, times and attributes.
///
/// An entry reached by name ([`Handle::At`]) is first opened with `O_PATH` (as the directory's
/// owner if the mover may not search it), and every step then works on that descriptor: no step
/// needs search permission on the directory, so the mover's `CAP_CHOWN` and `CAP_FOWNER` still
/// apply to entries inside directories only their owners may enter.
pub fn apply(
    h: Handle<'_>,
    want: &Meta,
    have: Option<&Meta>,
    want_x: &Xattrs,
    have_x: Option<&Xattrs>,
    owners: Option<&Owners>,
) -> Result<Changed, OpError> {
    apply_with(h, want, have, want_x, have_x, owners, false)
}

/// [`apply`] for an entry this run has just made. When its owner and mode bits were read back
/// from it (`made`), those equal to the wanted ones are not set again; without them everything
/// is set. Its times are always set (the ones it got when made and written are not the
/// source's, even when they look equal).
pub fn apply_new(
    h: Handle<'_>,
    want: &Meta,
    made: Option<&Meta>,
    want_x: &Xattrs,
    have_x: Option<&Xattrs>,
    owners: Option<&Owners>,
) -> Result<Changed, OpError> {
    apply_with(h, want, made, want_x, have_x, owners, true)
}

fn apply_with(
    h: Handle<'_>,
    want: &Meta,
    have: Option<&Meta>,
    want_x: &Xattrs,
    have_x: Option<&Xattrs>,
    owners: Option<&Owners>,
    set_times: bool,
) -> Result<Changed, OpError> {
    let path_fd;
    let fd = match h {
        Handle::Fd(fd) => Reach::Open(fd),
        Handle::At(dir, name) => {
            let open = || {
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)
            };
            path_fd = match owners {
                Some(o) => o.retry_target(&[], &[dir], open),
                None => open(),
            }
            .map_err(|e| OpError::new("open", e))?;
            let kind = stat_fd(&path_fd).map_err(|e| OpError::new("stat", e))?.kind;
            if kind != want.kind {
                return Err(OpError::new(
                    "open",
                    io::Error::other("changed type during the run"),
                ));
            }
            Reach::Path(path_fd.as_fd())
        }
    };
    let id = [(want.uid, want.gid)];
    let step = |op: &'static str, f: &(dyn Fn() -> io::Result<()> + Sync)| -> Result<(), OpError> {
        match owners {
            Some(o) => o.retry(&id, f),
            None => f(),
        }
        .map_err(|e| OpError::new(op, e))
    };
    let mut changed = Changed::default();
    if have.is_none_or(|h| h.uid != want.uid || h.gid != want.gid) {
        let (uid, gid) = (Uid::from_raw(want.uid), Gid::from_raw(want.gid));
        step("chown", &|| {
            match fd {
                Reach::Open(fd) => fchown(fd, Some(uid), Some(gid)),
                Reach::Path(fd) => chownat(
                    fd,
                    c"",
                    Some(uid),
                    Some(gid),
                    AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
                ),
            }
            .map_err(Into::into)
        })?;
        changed.owner = true;
    }
    let xtarget = match fd {
        Reach::Open(fd) => xattr::Target::Fd(fd),
        Reach::Path(fd) => xattr::Target::Path(fd),
    };
    if have_x != Some(want_x) {
        let set = || xattr::apply(xtarget, want_x, have_x);
        match step("xattr", &set) {
            // A `user.` attribute needs write permission, which a read-only file denies even
            // to its owner (and to root without CAP_DAC_OVERRIDE): add it for the moment; the
            // mode is set again below.
            Err(e) if crate::owner::denied(&e.err) && want.kind != Kind::Symlink => {
                let perm = have.map_or(want.perm, |h| h.perm) | 0o600;
                let writable = Mode::from_raw_mode(perm);
                step("chmod", &|| {
                    match fd {
                        Reach::Open(fd) => fchmod(fd, writable),
                        Reach::Path(fd) => chmod(proc_path(fd).as_str(), writable),
                    }
                    .map_err(Into::into)
                })?;
                step("xattr", &set)?;
            }
            r => r?,
        }
        changed.xattrs = have_x.is_some() || !want_x.is_empty();
    }
    // chown cleared setuid/setgid, and an ACL written as an xattr rewrote the group bits.
    if want.kind != Kind::Symlink
        && (changed.owner || changed.xattrs || have.is_none_or(|h| h.perm != want.perm))
    {
        let set_mode = || set_perm(fd, want.perm);
        step("chmod", &set_mode)?;
        if want.perm & SETGID != 0 {
            keep_setgid(fd, want, owners, &set_mode)?;
        }
        changed.mode = have.is_none_or(|h| h.perm != want.perm);
    }
    if set_times || have.is_none_or(|h| h.mtime != want.mtime) || changed.any() {
        let times = Timestamps {
            last_access: want.atime.timespec(),
            last_modification: want.mtime.timespec(),
        };
        step("utimens", &|| {
            match fd {
                Reach::Open(fd) => futimens(fd, &times),
                Reach::Path(fd) => utimensat(
                    fd,
                    c"",
                    &times,
                    AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
                ),
            }
            .map_err(Into::into)
        })?;
        changed.times = have.is_none_or(|h| h.mtime != want.mtime);
    }
    Ok(changed)
}

/// The set-group-ID bit.
const SETGID: u32 = 0o2000;
/// The set-user-ID and set-group-ID bits.
const SET_ID: u32 = 0o6000;

/// Sets the mode bits of the entry `fd` reaches.
fn set_perm(fd: Reach<'_>, perm: u32) -> io::Result<()> {
    let mode = Mode::from_raw_mode(perm);
    match fd {
        Reach::Open(fd) => fchmod(fd, mode),
        // Linux has no lchmod: change the inode the O_PATH descriptor holds.
        Reach::Path(fd) => chmod(proc_path(fd).as_str(), mode),
    }
    .map_err(Into::into)
}

/// Gives the entry `h` the setuid and setgid bits of the mode bits `perm` where something lost
/// them after [`apply`] would have set them, and returns whether it did.
///
/// For entries whose attributes another program set, such as a restore from a repository:
/// without `CAP_FSETID` (the mover pod's case) the kernel drops the setgid bit from a `chmod` and
/// reports success, and a later write, hole punch included, clears both bits. The bits are set
/// again as [`apply`] sets them, acting as the owner if need be, and the step fails if the setgid
/// bit still does not hold. An entry that has the bits, a symlink, and a `perm` without them are
/// left alone.
pub fn restore_set_id_bits(
    h: Handle<'_>,
    perm: u32,
    owners: Option<&Owners>,
) -> Result<bool, OpError> {
    if perm & SET_ID == 0 {
        return Ok(false);
    }
    let path_fd;
    let fd = match h {
        Handle::Fd(fd) => Reach::Open(fd),
        Handle::At(dir, name) => {
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            path_fd =
                openat(dir, name, flags, Mode::empty()).map_err(|e| OpError::new("open", e))?;
            Reach::Path(path_fd.as_fd())
        }
    };
    let raw = match fd {
        Reach::Open(fd) | Reach::Path(fd) => fd,
    };
    let have = stat_fd(raw).map_err(|e| OpError::new("stat", e))?;
    if have.kind == Kind::Symlink || perm & SET_ID & !have.perm == 0 {
        return Ok(false);
    }
    let want = Meta { perm, ..have };
    let set_mode = || set_perm(fd, perm);
    set_mode().map_err(|e| OpError::new("chmod", e))?;
    if perm & SETGID != 0 {
        keep_setgid(fd, &want, owners, &set_mode)?;
    }
    Ok(true)
}

/// Makes sure a wanted setgid bit is set.
///
/// Without `CAP_FSETID` the kernel silently drops the setgid bit from a `chmod` when the file's
/// group is not one of the caller's groups, and reports success. The mode is read back; when the
/// bit is missing, the `chmod` is done again as the entry's owner, whose filesystem group is then
/// the entry's group, so the kernel keeps the bit. If even that fails the step fails: a copy never
/// loses a setgid bit without saying so.
fn keep_setgid(
    fd: Reach<'_>,
    want: &Meta,
    owners: Option<&Owners>,
    set_mode: &(dyn Fn() -> io::Result<()> + Sync),
) -> Result<(), OpError> {
    let check = || -> io::Result<bool> {
        let fd = match fd {
            Reach::Open(fd) | Reach::Path(fd) => fd,
        };
        Ok(stat_fd(fd)?.perm & SETGID != 0)
    };
    if check().map_err(|e| OpError::new("stat", e))? {
        return Ok(());
    }
    if let Some(o) = owners {
        o.run_as((want.uid, want.gid), set_mode)
            .and_then(|r| r)
            .map_err(|e| OpError::new("chmod", e))?;
        if check().map_err(|e| OpError::new("stat", e))? {
            return Ok(());
        }
    }
    Err(OpError::new(
        "chmod",
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the kernel dropped the setgid bit of mode {:o}: setting it needs CAP_FSETID, or \
                 acting as the owner (CAP_SETUID and CAP_SETGID)",
                want.perm
            ),
        ),
    ))
}

/// How [`apply`] reaches the entry once it is open.
#[derive(Clone, Copy)]
enum Reach<'a> {
    Open(BorrowedFd<'a>),
    Path(BorrowedFd<'a>),
}

fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether owner, mode and mtime are equal (extended attributes are compared separately).
pub fn same_basic(a: &Meta, b: &Meta) -> bool {
    a.uid == b.uid
        && a.gid == b.gid
        && (a.kind == Kind::Symlink || a.perm == b.perm)
        && a.mtime == b.mtime
}

/// Reads the current extended attributes the same way [`apply`] reaches the entry.
pub fn read_xattrs(h: Handle<'_>) -> io::Result<Xattrs> {
    xattr::read(match h {
        Handle::Fd(fd) => xattr::Target::Fd(fd),
        Handle::At(dir, name) => xattr::Target::At(dir, name),
    })
}
