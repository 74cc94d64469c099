//! Acting as an entry's owner, for sources (and targets) where root has no power: NFS exports
//! with `root_squash`, or a mover without `CAP_DAC_OVERRIDE`.
//!
//! When an operation fails with `EACCES` or `EPERM` (or always, with `--impersonate always`), it
//! is done again on a thread whose filesystem identity is the entry's owner: `setfsuid` and
//! `setfsgid` to the owner's uid and gid, and the owner's supplementary groups. Each identity has
//! its own dedicated OS thread, created once and reused; no other work ever runs on it.
//!
//! Kernel facts this relies on:
//! - fsuid, fsgid and the supplementary groups are per thread in the kernel. glibc's `setgroups`
//!   changes every thread of the process, so the raw system call is used instead.
//! - While the fsuid is not 0, the kernel clears `CAP_CHOWN`, `CAP_FOWNER` and `CAP_FSETID` from
//!   the thread's effective set: an owner thread can do what the owner can, nothing more.
//! - Reaching an entry inside a directory needs search permission on the directory, and opening
//!   it needs permission on the entry itself; when the two have different owners, the entry is
//!   looked up with `O_PATH` as the directory's owner, then reopened through `/proc/self/fd` as
//!   its own owner. Descriptors belong to the process, so the worker that asked can use it.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;

use crate::access::{self, Acl, Alternate};
use crate::meta::{Kind, Meta};
use crate::xattr::{self, Xattrs};

/// When to act as an entry's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Impersonate {
    /// Only after the mover's own identity was refused (`EACCES`/`EPERM`).
    #[default]
    Auto,
    /// Read every source entry as its owner.
    Always,
    /// Never: entries the mover cannot reach as itself fail.
    Never,
}

/// A numeric identity: uid and gid.
pub type Id = (u32, u32);

thread_local! {
    /// Set on an owner thread once it has taken its identity.
    static ACTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread acts as an entry's owner (a thread of [`Owners`]) rather than as
/// the mover: what it creates belongs to that owner.
pub fn acting_as_owner() -> bool {
    ACTING.with(Cell::get)
}

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug)]
struct Worker {
    tx: SyncSender<Job>,
    last_used: u64,
}

/// Most identities kept alive at once; the least recently used one's thread ends beyond that.
const MAX_WORKERS: usize = 128;

/// The run's owner threads, one per identity.
#[derive(Debug)]
pub struct Owners {
    mode: Impersonate,
    workers: Mutex<(HashMap<Id, Worker>, u64)>,
    groups: HashMap<u32, Vec<u32>>,
}

/// Whether an error means "not allowed as this identity" (`EACCES` or `EPERM`, also when
/// wrapped with context).
pub fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
        || e.kind() == io::ErrorKind::PermissionDenied
}

fn errno_denied(e: Errno) -> bool {
    e == Errno::ACCESS || e == Errno::PERM
}

impl Owners {
    /// Owner threads for a run. Supplementary groups come from `/etc/passwd` and `/etc/group`
    /// where they exist; otherwise an owner acts with its file's group only.
    ///
    /// `Auto` without CAP_SETUID and CAP_SETGID (an unprivileged mover) is `Never`: there is no
    /// identity to fall back to, and the mover's own refusal is the error worth reporting.
    pub fn new(mode: Impersonate) -> Owners {
        let mode = match mode {
            Impersonate::Auto if !can_switch_identity() => Impersonate::Never,
            m => m,
        };
        Owners {
            mode,
            workers: Mutex::new((HashMap::new(), 0)),
            groups: read_group_db(),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> Impersonate {
        self.mode
    }

    /// Runs `f` on the thread of identity `id` and returns its result.
    pub fn run_as<R: Send>(&self, id: Id, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let tx = self.worker(id)?;
        let (rtx, rrx) = sync_channel(1);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let _ = rtx.send(r);
        });
        // SAFETY: the job borrows from this stack frame, and this function does not return before
        // the job has run or been dropped: `recv` below returns only when `rtx`, which the job
        // owns, has sent or been dropped along with the job.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        tx.send(job)
            .map_err(|_| io::Error::other("owner thread ended"))?;
        match rrx.recv() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(io::Error::other("owner thread ended")),
        }
    }

    fn worker(&self, id: Id) -> io::Result<SyncSender<Job>> {
        let mut guard = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let (map, clock) = &mut *guard;
        *clock += 1;
        if let Some(w) = map.get_mut(&id) {
            w.last_used = *clock;
            return Ok(w.tx.clone());
        }
        if map.len() >= MAX_WORKERS
            && let Some(oldest) = map.iter().min_by_key(|(_, w)| w.last_used).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let mut groups = self.groups.get(&id.0).cloned().unwrap_or_default();
        if !groups.contains(&id.1) {
            groups.push(id.1);
        }
        let tx = spawn_worker(id, groups)?;
        map.insert(
            id,
            Worker {
                tx: tx.clone(),
                last_used: *clock,
            },
        );
        Ok(tx)
    }

    /// Opens the source file `name` in `dir` (owned by `dir_id`; `meta` is the file's) for
    /// reading, as the mover or else as its owner, without changing its access time where that
    /// is allowed: `noatime` starts true and is cleared, for the rest of the run, the first time
    /// the kernel refuses `O_NOATIME` to the mover (a file it does not own, without
    /// CAP_FOWNER). As the owner it is always allowed.
    pub fn open_source_file(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        meta: &Meta,
        noatime: &AtomicBool,
    ) -> io::Result<OwnedFd> {
        let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if self.mode != Impersonate::Always {
            let own = if noatime.load(Relaxed) {
                match openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
                    Err(Errno::PERM) => {
                        noatime.store(false, Relaxed);
                        openat(dir, name, base, Mode::empty())
                    }
                    r => r,
                }
            } else {
                openat(dir, name, base, Mode::empty())
            };
            match own {
                Err(e)
                    if (e == Errno::ACCESS || e == Errno::PERM)
                        && self.mode == Impersonate::Auto => {}
                r => return r.map_err(Into::into),
            }
        }
        self.open_as(
            dir,
            dir_id,
            name,
            Some((meta.uid, meta.gid)),
            base | OFlags::NOATIME,
        )
    }

    /// Opens `name` in `dir` with `flags`: as the mover first (unless the mode is `Always`),
    /// then, when refused, looked up as `dir_id` (an identity that may search the directory)
    /// and opened as the entry's owner (`id`, or the owner the lookup finds when `None`), or as
    /// another identity its permissions let in (see [`Owners::reopen_via`]).
    pub fn open_as(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        id: Option<Id>,
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        self.open_as_via(dir, dir_id, name, id, flags)
            .map(|(fd, _)| fd)
    }

    /// [`Owners::open_as`], telling which identity other than the owner opened the entry, when
    /// one did.
    pub fn open_as_via(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        id: Option<Id>,
        flags: OFlags,
    ) -> io::Result<(OwnedFd, Option<Alternate>)> {
        if self.mode != Impersonate::Always {
            match openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => return Ok((fd, None)),
                Err(e) if self.mode == Impersonate::Never || !errno_denied(e) => {
                    return Err(e.into());
                }
                Err(_) => {}
            }
        }
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let path = match openat(dir, name, path_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if errno_denied(e) => {
                self.run_as(dir_id, || openat(dir, name, path_flags, Mode::empty()))??
            }
            Err(e) => return Err(e.into()),
        };
        let id = match id {
            Some(id) => id,
            None => {
                let m = crate::meta::stat_fd(&path)?;
                (m.uid, m.gid)
            }
        };
        self.reopen_via(&path, id, flags)
    }

    /// Reopens an `O_PATH` descriptor with `flags` as identity `id`, or, when its permission
    /// bits refuse `id`, as another identity they (or its ACL) let in.
    pub fn reopen_as(&self, path: &OwnedFd, id: Id, flags: OFlags) -> io::Result<OwnedFd> {
        self.reopen_via(path, id, flags).map(|(fd, _)| fd)
    }

    /// [`Owners::reopen_as`], telling which identity other than `id` opened the entry, when one
    /// did: a member of its group that is not its owner (mode 0040), or a user or group its ACL
    /// names.
    pub fn reopen_via(
        &self,
        path: &OwnedFd,
        id: Id,
        flags: OFlags,
    ) -> io::Result<(OwnedFd, Option<Alternate>)> {
        let proc = format!("/proc/self/fd/{}", path.as_raw_fd());
        // The entry was reached without following a symlink; reopening follows only the
        // /proc magic link to that same inode.
        let flags = flags & !OFlags::NOFOLLOW;
        let open = || openat(rustix::fs::CWD, proc.as_str(), flags, Mode::empty());
        match self.run_as(id, open)? {
            Err(e) if errno_denied(e) && self.mode != Impersonate::Never => {
                // Only the owner may open with O_NOATIME (CAP_FOWNER is gone while the fsuid is
                // not 0): another identity's read may update the access time.
                let flags = flags & !OFlags::NOATIME;
                let open = || openat(rustix::fs::CWD, proc.as_str(), flags, Mode::empty());
                for alt in alternates_of(path.as_fd(), need_of(flags), None) {
                    if alt.id == id {
                        continue;
                    }
                    if let Ok(fd) = self.run_as(alt.id, open)? {
                        return Ok((fd, Some(alt)));
                    }
                }
                Err(e.into())
            }
            r => Ok((r?, None)),
        }
    }

    /// Runs `f`, an operation on the open entry `fd` (reading its extended attributes, say), as
    /// the mover, then as its owner `id`, then as each other identity its permissions let read
    /// it, until one succeeds.
    pub fn retry_entry<R: Send>(
        &self,
        fd: BorrowedFd<'_>,
        id: Id,
        f: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R> {
        self.retry_entry_via(fd, id, f).map(|(r, _)| r)
    }

    /// [`Owners::retry_entry`], telling which identity other than the owner succeeded, when
    /// one did.
    pub fn retry_entry_via<R: Send>(
        &self,
        fd: BorrowedFd<'_>,
        id: Id,
        f: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<(R, Option<Alternate>)> {
        match self.retry(&[id], &f) {
            Err(e) if self.mode != Impersonate::Never && denied(&e) => {
                for alt in alternates_of(fd, access::READ, None) {
                    if alt.id == id {
                        continue;
                    }
                    if let Ok(r) = self.run_as(alt.id, &f)? {
                        return Ok((r, Some(alt)));
                    }
                }
                Err(e)
            }
            r => r.map(|r| (r, None)),
        }
    }

    /// Runs `f` as the mover; when refused (or always, in `Always` mode), runs it again as each
    /// identity of `ids` in turn, until one succeeds.
    pub fn retry<R: Send>(
        &self,
        ids: &[Id],
        f: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R> {
        let mut last = match self.mode {
            Impersonate::Always => None,
            _ => match f() {
                Err(e) if self.mode == Impersonate::Auto && denied(&e) => Some(e),
                r => return r,
            },
        };
        for &id in ids {
            match self.run_as(id, &f)? {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => f(),
        }
    }
}

impl Owners {
    /// Runs a target-side operation as the mover; when refused (and unless the mode is `Never`),
    /// again as each identity of `ids`, then as the owner of each directory of `dirs`, until one
    /// succeeds. New entries are made as their own owner first, so they belong to the right
    /// uid even where `chown` is impossible (a root-squashed target).
    pub fn retry_target<R: Send>(
        &self,
        ids: &[Id],
        dirs: &[BorrowedFd<'_>],
        f: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R> {
        let first = f();
        match &first {
            Err(e) if self.mode != Impersonate::Never && denied(e) => {}
            _ => return first,
        }
        let mut last = first;
        let mut tried: Vec<Id> = Vec::new();
        let dir_ids = dirs
            .iter()
            .filter_map(|d| crate::meta::stat_fd(d).ok().map(|m| (m.uid, m.gid)));
        for id in ids.iter().copied().chain(dir_ids) {
            if tried.contains(&id) {
                continue;
            }
            tried.push(id);
            match self.run_as(id, &f)? {
                Ok(r) => return Ok(r),
                Err(e) => last = Err(e),
            }
        }
        // A directory whose owner bits refuse what its group bits (or its ACL) allow: act as a
        // member, with the new entry's owner as fsuid where that works (so what is made belongs
        // to it). Those that may write come first, then those that may only search.
        let prefer = ids.first().map(|i| i.0);
        for dir in dirs {
            let writers = alternates_of(*dir, access::WRITE | access::EXEC, prefer);
            let searchers = alternates_of(*dir, access::EXEC, prefer);
            for alt in writers.into_iter().chain(searchers) {
                if tried.contains(&alt.id) {
                    continue;
                }
                tried.push(alt.id);
                match self.run_as(alt.id, &f)? {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Err(e),
                }
            }
        }
        last
    }

    /// Opens `name` in the target directory `dir`: as the mover, or else looked up as the
    /// directory's owner and opened as the entry's own owner.
    pub fn open_in(&self, dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
        match openat(dir, name, flags, Mode::empty()) {
            Err(e) if self.mode != Impersonate::Never && errno_denied(e) => {}
            r => return r.map_err(Into::into),
        }
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let path = self.retry_target(&[], &[dir], || {
            openat(dir, name, path_flags, Mode::empty()).map_err(Into::into)
        })?;
        let m = crate::meta::stat_fd(&path)?;
        self.reopen_as(&path, (m.uid, m.gid), flags)
    }

    /// Reads the extended attributes of the target entry `name` in `dir` (owned by `id`): as the
    /// mover, else as the entry's or the directory's owner, else opened as its owner.
    pub fn target_xattrs(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        kind: Kind,
        id: Id,
    ) -> io::Result<Xattrs> {
        let at = || xattr::read(xattr::Target::At(dir, name));
        match self.retry_target(&[id], &[dir], at) {
            Err(e) if denied(&e) && matches!(kind, Kind::File | Kind::Dir) => {
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = self.open_in(dir, name, flags)?;
                self.retry_entry(fd.as_fd(), id, || {
                    xattr::read(xattr::Target::Fd(fd.as_fd()))
                })
            }
            r => r,
        }
    }

    /// Reads the extended attributes of a source entry (not followed if a symlink), as the mover
    /// or else as the owners of its directory (`dir_id`) and of the entry: the lookup needs search
    /// permission on the directory, a `user.` attribute needs read permission on the entry.
    pub fn source_xattrs(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        meta: &Meta,
    ) -> io::Result<Xattrs> {
        let id = (meta.uid, meta.gid);
        let at = || xattr::read(xattr::Target::At(dir, name));
        match self.retry(&[dir_id, id], at) {
            Err(e) if denied(&e) && matches!(meta.kind, Kind::File | Kind::Dir) => {
                let fd = self.open_as(
                    dir,
                    dir_id,
                    name,
                    Some(id),
                    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                )?;
                self.retry_entry(fd.as_fd(), id, || {
                    xattr::read(xattr::Target::Fd(fd.as_fd()))
                })
            }
            r => r,
        }
    }
}

/// The identities other than its owner that the permissions of the entry `fd` refers to let do
/// `need` (see [`access::alternates`]); none when it cannot be stat'ed.
pub fn alternates_of(fd: BorrowedFd<'_>, need: u32, prefer_uid: Option<u32>) -> Vec<Alternate> {
    let Ok(m) = crate::meta::stat_fd(fd) else {
        return Vec::new();
    };
    // Reading an ACL needs no permission on the entry itself.
    let acl = xattr::get(xattr::Target::Path(fd), c"system.posix_acl_access")
        .ok()
        .flatten()
        .and_then(|v| Acl::parse(&v));
    access::alternates((m.uid, m.gid), m.perm, acl.as_ref(), need, prefer_uid)
}

/// What opening with `flags` needs: read and search for a directory, else what the access mode
/// asks for.
fn need_of(flags: OFlags) -> u32 {
    if flags.contains(OFlags::DIRECTORY) {
        access::READ | access::EXEC
    } else if flags.contains(OFlags::RDWR) {
        access::READ | access::WRITE
    } else if flags.contains(OFlags::WRONLY) {
        access::WRITE
    } else {
        access::READ
    }
}

fn spawn_worker(id: Id, groups: Vec<u32>) -> io::Result<SyncSender<Job>> {
    let (tx, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(0);
    let (ready_tx, ready_rx) = sync_channel::<io::Result<()>>(1);
    std::thread::Builder::new()
        .name(format!("owner-{}-{}", id.0, id.1))
        .stack_size(512 * 1024)
        .spawn(move || {
            let became = become_identity(id, &groups);
            ACTING.with(|a| a.set(became.is_ok()));
            let _ = ready_tx.send(became);
            for job in rx {
                job();
            }
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("owner thread ended"))??;
    Ok(tx)
}

/// Whether the process holds CAP_SETUID and CAP_SETGID in its effective set (read from
/// `/proc/self/status`; where that cannot be read, it is assumed to).
fn can_switch_identity() -> bool {
    use crate::check::{CAP_SETGID, CAP_SETUID};
    const NEEDED: u64 = (1 << CAP_SETGID) | (1 << CAP_SETUID);
    crate::check::effective_capabilities().is_none_or(|eff| eff & NEEDED == NEEDED)
}

/// Switches the calling thread's filesystem identity (and only this thread's).
fn become_identity((uid, gid): Id, groups: &[u32]) -> io::Result<()> {
    // SAFETY: raw system calls with valid arguments; the raw setgroups affects only this thread.
    unsafe {
        let gids: Vec<libc::gid_t> = groups.to_vec();
        if libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot act as uid {uid}: setgroups needs CAP_SETGID ({})",
                    io::Error::last_os_error()
                ),
            ));
        }
        libc::setfsgid(gid);
        libc::setfsuid(uid);
        // Both calls return the previous value; an invalid id returns the current one.
        if libc::setfsgid(u32::MAX) as u32 != gid || libc::setfsuid(u32::MAX) as u32 != uid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("cannot act as uid {uid} gid {gid}: needs CAP_SETUID and CAP_SETGID"),
            ));
        }
    }
    Ok(())
}

/// uid → supplementary gids, from `/etc/passwd` and `/etc/group` when they exist.
fn read_group_db() -> HashMap<u32, Vec<u32>> {
    let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
    let (Ok(passwd), Ok(group)) = (
        std::fs::read_to_string("/etc/passwd"),
        std::fs::read_to_string("/etc/group"),
    ) else {
        return out;
    };
    let mut uid_of: HashMap<&str, u32> = HashMap::new();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4
            && let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>())
        {
            uid_of.insert(f[0], uid);
            out.entry(uid).or_default().push(gid);
        }
    }
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4
            && let Ok(gid) = f[2].parse::<u32>()
        {
            for member in f[3].split(',').filter(|m| !m.is_empty()) {
                if let Some(&uid) = uid_of.get(member) {
                    let v = out.entry(uid).or_default();
                    if !v.contains(&gid) {
                        v.push(gid);
                    }
                }
            }
        }
    }
    out
}

/// The target's lock folder and file are made and opened as the mover, or else as the owner of
/// the folder they are in.
impl store::lock::Access for Owners {
    fn open_in(&self, dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
        Owners::open_in(self, dir, name, flags)
    }

    fn retry<R: Send>(
        &self,
        dir: BorrowedFd<'_>,
        op: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R> {
        self.retry_target(&[], &[dir], op)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_means_eacces_or_eperm_only() {
        assert!(denied(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(denied(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!denied(&io::Error::from_raw_os_error(libc::ENOENT)));
        let wrapped = io::Error::from_raw_os_error(libc::EACCES);
        assert!(denied(&io::Error::new(
            wrapped.kind(),
            format!("set user.x: {wrapped}")
        )));
    }

    #[test]
    fn an_owner_thread_runs_with_that_fsuid_and_leaves_the_caller_alone() {
        if !testkit::skip::need_root_and(
            "an_owner_thread_runs_with_that_fsuid_and_leaves_the_caller_alone",
            &[],
        ) {
            return;
        }
        let owners = Owners::new(Impersonate::Auto);
        let seen = owners.run_as((4242, 4343), || {
            // SAFETY: queries only (an invalid id changes nothing).
            unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) }
        });
        assert_eq!(seen.unwrap(), (4242, 4343));
        // SAFETY: query only.
        assert_eq!(
            unsafe { libc::setfsuid(u32::MAX) },
            0,
            "the caller's fsuid changed"
        );
        // The same identity reuses its thread.
        let a = owners
            .run_as((4242, 4343), || std::thread::current().id())
            .unwrap();
        let b = owners
            .run_as((4242, 4343), || std::thread::current().id())
            .unwrap();
        assert_eq!(a, b);
    }
}
