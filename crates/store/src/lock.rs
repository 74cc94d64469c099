//! The target's lock: `DST/.pvc-backup/lock`, held under an exclusive `flock` for a whole run, so
//! two movers never write one target at once.

use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags, flock, ftruncate, mkdirat, openat};
use rustix::io::Errno;

use crate::layout::{LOCK_C, STATE_DIR, STATE_DIR_C};
use crate::{Error, Locked, Result};

/// How long a mover waits for a target's lock before refusing.
pub const LOCK_GRACE: Duration = Duration::from_secs(2);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How the lock's folder and file are opened and made: as the caller, or (for a mover that acts
/// as the owners of files it may not touch as itself) as whoever the target's permissions allow.
pub trait Access {
    /// Opens `name` in `dir`.
    fn open_in(&self, dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd>;
    /// Runs `op`, which writes in `dir`, again as another identity when the first try is denied.
    fn retry<R: Send>(
        &self,
        dir: BorrowedFd<'_>,
        op: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R>;
}

/// Opens and makes everything as the calling process.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsCaller;

impl Access for AsCaller {
    fn open_in(&self, dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
        openat(dir, name, flags, Mode::empty()).map_err(Into::into)
    }

    fn retry<R: Send>(
        &self,
        _dir: BorrowedFd<'_>,
        op: impl Fn() -> io::Result<R> + Send + Sync,
    ) -> io::Result<R> {
        op()
    }
}

/// The target's state folder, held under the lock until dropped.
#[derive(Debug)]
pub struct StateDir {
    /// The open `.pvc-backup` folder.
    pub dir: OwnedFd,
    _lock: OwnedFd,
}

/// Opens (creating) the state folder of the target open at `dst` (shown as `shown` in messages)
/// and takes its lock. The lock is an `flock`, which the kernel releases when its holder dies, so
/// a killed mover never blocks the next one.
pub fn lock(dst: BorrowedFd<'_>, shown: &str, access: &impl Access) -> Result<StateDir> {
    let open = || {
        access
            .open_in(dst, STATE_DIR_C, DIR_FLAGS)
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    };
    let dir = match open() {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            let made = access.retry(dst, || {
                match mkdirat(dst, STATE_DIR_C, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            });
            made.map_err(|e| Error::io("cannot create state folder in", shown, e))?;
            open().map_err(|e| Error::io("cannot open state folder in", shown, e.into()))?
        }
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
            return Err(Error::Usage(format!(
                "{shown}/{STATE_DIR} is not a directory (a symlink or a file); it is reserved for \
                 pvc-backup: move it away"
            )));
        }
        Err(e) => return Err(Error::io("cannot open state folder in", shown, e.into())),
    };
    let lock = access
        .retry(dir.as_fd(), || {
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            openat(&dir, LOCK_C, flags, Mode::from_raw_mode(0o600)).map_err(Into::into)
        })
        .map_err(|e| Error::io("cannot open lock file in", shown, e))?;
    // A process that forks briefly holds a copy of every descriptor until it executes, so a
    // lock that was just released can look held for a moment: allow a short grace period.
    let deadline = Instant::now() + LOCK_GRACE;
    let locked = loop {
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => break r,
        }
    };
    match locked {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&lock)
            ))
            .unwrap_or_default();
            return Err(Error::Locked(Locked {
                target: shown.to_string(),
                holder: holder.trim().to_string(),
            }));
        }
        Err(e) => return Err(Error::io("cannot lock", shown, e.into())),
    }
    let me = format!(
        "{} on {}",
        std::process::id(),
        rustix::system::uname().nodename().to_string_lossy()
    );
    let _ = ftruncate(&lock, 0);
    let mut f = std::fs::File::from(
        lock.as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("cannot write lock file in", shown, e))?,
    );
    let _ = f.write_all(me.as_bytes());
    Ok(StateDir { dir, _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_target_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(d.path()).unwrap();
        let first = lock(root.as_fd(), "t", &AsCaller).unwrap();
        assert!(d.path().join(".pvc-backup/lock").is_file());
        match lock(root.as_fd(), "t", &AsCaller) {
            Err(Error::Locked(Locked { target, holder })) => {
                assert_eq!(target, "t");
                assert!(
                    holder.starts_with(&std::process::id().to_string()),
                    "{holder}"
                );
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        lock(root.as_fd(), "t", &AsCaller).unwrap();
    }

    #[test]
    fn a_state_folder_that_is_a_symlink_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", d.path().join(".pvc-backup")).unwrap();
        let root = std::fs::File::open(d.path()).unwrap();
        assert!(matches!(
            lock(root.as_fd(), "t", &AsCaller),
            Err(Error::Usage(_))
        ));
    }
}
