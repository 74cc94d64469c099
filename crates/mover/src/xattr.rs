//! Extended attributes, including POSIX ACLs (`system.posix_acl_access` and
//! `system.posix_acl_default`, copied as the kernel stores them, with numeric ids).
//!
//! Copied namespaces: `user.`, `trusted.` (readable only with CAP_SYS_ADMIN), `security.` and the
//! two POSIX ACL names. Not copied: `security.selinux` (on Kubernetes the volume's SELinux label
//! comes from its mount and setting it fails on context-mounted volumes), other `system.` names
//! such as `system.nfs4_acl`, which describe the source filesystem rather than the file, and
//! `trusted.SGI_ACL_FILE` / `trusted.SGI_ACL_DEFAULT`, which are how XFS stores POSIX ACLs: the
//! ACLs themselves travel as `system.posix_acl_*`, and removing those names from an XFS target
//! would remove its ACLs.
//!
//! An entry is reached either through an open descriptor or, for symlinks and entries the mover
//! does not open, relative to its directory's descriptor without following it: with
//! `listxattrat`/`getxattrat` where the kernel has them (Linux 6.13), otherwise as
//! `/proc/self/fd/DIRFD/NAME` with the `l*` calls, which never follow the last component.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{
    XattrFlags, fgetxattr, flistxattr, fremovexattr, fsetxattr, getxattr, lgetxattr, listxattr,
    llistxattr, lremovexattr, lsetxattr, removexattr, setxattr,
};
use rustix::io::Errno;

/// Where the attributes live.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// An open descriptor of the entry itself.
    Fd(BorrowedFd<'a>),
    /// The entry `name` in the directory `dir`, never followed if it is a symlink.
    At(BorrowedFd<'a>, &'a CStr),
    /// The entry an `O_PATH` descriptor refers to (a symlink itself, when it is one), reached as
    /// `/proc/self/fd/N` without any lookup in its directory.
    Path(BorrowedFd<'a>),
}

/// A set of extended attributes, sorted by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Xattrs(Vec<(CString, Vec<u8>)>);

impl Xattrs {
    /// An empty set.
    pub const fn new() -> Self {
        Xattrs(Vec::new())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The attributes as (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&CStr, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_c_str(), v.as_slice()))
    }

    fn names(&self) -> impl Iterator<Item = &CStr> {
        self.0.iter().map(|(n, _)| n.as_c_str())
    }

    /// Builds a set from pairs (sorted here).
    pub fn from_pairs(mut pairs: Vec<(CString, Vec<u8>)>) -> Self {
        pairs.sort();
        Xattrs(pairs)
    }
}

/// Whether the mover copies an attribute of this name.
pub fn is_copied(name: &[u8]) -> bool {
    if name == b"security.selinux" || name.starts_with(b"trusted.SGI_ACL_") {
        return false;
    }
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name.starts_with(b"security.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

thread_local! {
    static PROC_PATH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(300));
    static LIST_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 4096]);
    static VALUE_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 4096]);
}

fn with_proc_path<R>(dir: BorrowedFd<'_>, name: &CStr, f: impl FnOnce(&CStr) -> R) -> R {
    PROC_PATH.with(|p| {
        let mut p = p.borrow_mut();
        p.clear();
        p.extend_from_slice(b"/proc/self/fd/");
        p.extend_from_slice(dir.as_raw_fd().to_string().as_bytes());
        p.push(b'/');
        p.extend_from_slice(name.to_bytes_with_nul());
        f(CStr::from_bytes_with_nul(&p).expect("one NUL at the end"))
    })
}

/// Whether the kernel has `listxattrat`/`getxattrat` (Linux 6.13): 0 unknown, 1 yes, 2 no.
static XATTRAT: AtomicU8 = AtomicU8::new(0);
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;

#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// `listxattrat` or `getxattrat` relative to `dir`, without following `name`; `None` when the
/// kernel (or a seccomp profile) does not offer them, so the caller uses `/proc` instead.
fn xattrat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    attr: Option<&CStr>,
    buf: &mut [u8],
) -> Option<Result<usize, Errno>> {
    let state = XATTRAT.load(Ordering::Relaxed);
    if state == 2 {
        return None;
    }
    // SAFETY: system calls with valid descriptors, NUL-terminated strings and a buffer of the
    // length passed.
    let r = unsafe {
        match attr {
            None => libc::syscall(
                SYS_LISTXATTRAT,
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                buf.as_mut_ptr(),
                buf.len(),
            ),
            Some(a) => {
                let mut args = XattrArgs {
                    value: buf.as_mut_ptr() as u64,
                    size: buf.len() as u32,
                    flags: 0,
                };
                libc::syscall(
                    SYS_GETXATTRAT,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    a.as_ptr(),
                    &mut args as *mut XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            }
        }
    };
    if r >= 0 {
        if state == 0 {
            XATTRAT.store(1, Ordering::Relaxed);
        }
        return Some(Ok(r as usize));
    }
    let e = Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    if state == 0 && (e == Errno::NOSYS || e == Errno::PERM) {
        XATTRAT.store(2, Ordering::Relaxed);
        return None;
    }
    Some(Err(e))
}

fn with_fd_path<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&CStr) -> R) -> R {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    f(&p)
}

fn unsupported(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

fn list_raw(target: Target<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        let r = match target {
            Target::Fd(fd) => flistxattr(fd, &mut buf[..]),
            Target::At(dir, name) => match xattrat(dir, name, None, &mut buf[..]) {
                Some(r) => r,
                None => with_proc_path(dir, name, |p| llistxattr(p, &mut buf[..])),
            },
            Target::Path(fd) => with_fd_path(fd, |p| listxattr(p, &mut buf[..])),
        };
        match r {
            Ok(n) => return Ok(n),
            Err(e) if unsupported(e) => return Ok(0),
            Err(Errno::RANGE) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn get_raw(target: Target<'_>, name: &CStr, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        let r = match target {
            Target::Fd(fd) => fgetxattr(fd, name, &mut buf[..]),
            Target::At(dir, n) => match xattrat(dir, n, Some(name), &mut buf[..]) {
                Some(r) => r,
                None => with_proc_path(dir, n, |p| lgetxattr(p, name, &mut buf[..])),
            },
            Target::Path(fd) => with_fd_path(fd, |p| getxattr(p, name, &mut buf[..])),
        };
        match r {
            Ok(n) => return Ok(Some(n)),
            // Removed between list and get.
            Err(Errno::NODATA) => return Ok(None),
            Err(Errno::RANGE) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the copied attributes of an entry.
pub fn read(target: Target<'_>) -> io::Result<Xattrs> {
    LIST_BUF.with(|list| {
        let mut list = list.borrow_mut();
        let n = list_raw(target, &mut list)?;
        if n == 0 {
            return Ok(Xattrs::default());
        }
        let mut pairs = Vec::new();
        VALUE_BUF.with(|value| -> io::Result<()> {
            let mut value = value.borrow_mut();
            for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                if !is_copied(name) {
                    continue;
                }
                let cname = CString::new(name).expect("split on NUL");
                if let Some(len) = get_raw(target, &cname, &mut value)? {
                    pairs.push((cname, value[..len].to_vec()));
                }
            }
            Ok(())
        })?;
        Ok(Xattrs::from_pairs(pairs))
    })
}

/// Reads one attribute, or `None` when the entry has no attribute of that name (or its
/// filesystem has no extended attributes at all).
pub fn get(target: Target<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    match get_raw(target, name, &mut buf) {
        Ok(Some(n)) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Ok(None) => Ok(None),
        Err(e)
            if e.raw_os_error()
                .is_some_and(|c| unsupported(Errno::from_raw_os_error(c))) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether an entry has any attribute the mover copies, without reading values.
pub fn names_only(target: Target<'_>) -> io::Result<Vec<CString>> {
    LIST_BUF.with(|list| {
        let mut list = list.borrow_mut();
        let n = list_raw(target, &mut list)?;
        Ok(list[..n]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty() && is_copied(n))
            .map(|n| CString::new(n).expect("split on NUL"))
            .collect())
    })
}

fn set(target: Target<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    match target {
        Target::Fd(fd) => fsetxattr(fd, name, value, XattrFlags::empty()),
        Target::At(dir, n) => {
            with_proc_path(dir, n, |p| lsetxattr(p, name, value, XattrFlags::empty()))
        }
        Target::Path(fd) => with_fd_path(fd, |p| setxattr(p, name, value, XattrFlags::empty())),
    }
    .map_err(Into::into)
}

fn remove(target: Target<'_>, name: &CStr) -> io::Result<()> {
    match target {
        Target::Fd(fd) => fremovexattr(fd, name),
        Target::At(dir, n) => with_proc_path(dir, n, |p| lremovexattr(p, name)),
        Target::Path(fd) => with_fd_path(fd, |p| removexattr(p, name)),
    }
    .or_else(|e| if e == Errno::NODATA { Ok(()) } else { Err(e) })
    .map_err(Into::into)
}

/// Makes the copied attributes of `target` equal to `want`: sets what differs and removes what
/// `want` lacks (for example an ACL inherited from a default ACL of the target directory).
/// `have` is the target's current set when known.
pub fn apply(target: Target<'_>, want: &Xattrs, have: Option<&Xattrs>) -> io::Result<()> {
    let read_have;
    let have = match have {
        Some(h) => h,
        None => {
            let names = names_only(target)?;
            if names.is_empty() && want.is_empty() {
                return Ok(());
            }
            read_have = if names.is_empty() {
                Xattrs::default()
            } else {
                read(target)?
            };
            &read_have
        }
    };
    for name in have.names() {
        if !want.names().any(|w| w == name) {
            remove(target, name)?;
        }
    }
    for (name, value) in want.iter() {
        let current = have.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        if current != Some(value) {
            set(target, name, value)
                .map_err(|e| io::Error::new(e.kind(), format!("set {name:?}: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists and reads every attribute of `name` in `dir` through `/proc` only.
    fn read_via_proc(dir: BorrowedFd<'_>, name: &CStr) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut list = vec![0u8; 4096];
        let n = with_proc_path(dir, name, |p| llistxattr(p, &mut list[..])).unwrap();
        let mut out = Vec::new();
        for a in list[..n].split(|&b| b == 0).filter(|a| !a.is_empty()) {
            let c = CString::new(a).unwrap();
            let mut v = vec![0u8; 4096];
            let len =
                with_proc_path(dir, name, |p| lgetxattr(p, c.as_c_str(), &mut v[..])).unwrap();
            out.push((a.to_vec(), v[..len].to_vec()));
        }
        out.sort();
        out
    }

    #[test]
    fn relative_calls_and_the_proc_fallback_see_the_same_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let cf = CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        for (k, v) in [("user.a", &b"1"[..]), ("user.b", b"\x00two\xff")] {
            let k = CString::new(k).unwrap();
            rustix::fs::setxattr(cf.as_c_str(), k.as_c_str(), v, XattrFlags::empty()).unwrap();
        }
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        for name in [c"f", c"l"] {
            let target = Target::At(std::os::fd::AsFd::as_fd(&d), name);
            let got: Vec<(Vec<u8>, Vec<u8>)> = read(target)
                .unwrap()
                .iter()
                .map(|(n, v)| (n.to_bytes().to_vec(), v.to_vec()))
                .collect();
            let via_proc: Vec<_> = read_via_proc(std::os::fd::AsFd::as_fd(&d), name)
                .into_iter()
                .filter(|(n, _)| is_copied(n))
                .collect();
            assert_eq!(got, via_proc, "{name:?}");
        }
    }

    #[test]
    fn copies_user_trusted_security_and_acls_but_not_selinux_or_nfs4() {
        assert!(is_copied(b"user.mime_type"));
        assert!(is_copied(b"trusted.overlay.opaque"));
        assert!(is_copied(b"security.capability"));
        assert!(is_copied(b"system.posix_acl_access"));
        assert!(is_copied(b"system.posix_acl_default"));
        assert!(!is_copied(b"security.selinux"));
        assert!(!is_copied(b"system.nfs4_acl"));
        assert!(!is_copied(b"trusted.SGI_ACL_FILE"));
        assert!(!is_copied(b"trusted.SGI_ACL_DEFAULT"));
    }
}
