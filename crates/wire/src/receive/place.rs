//! New entries under temporary names: made (as the mover, else as their owner), given their
//! attributes, and renamed into place, or removed when that fails.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering::Relaxed;

use mover::attrs::{self, Handle};
use mover::meta::Meta;
use mover::owner::Id;
use mover::xattr::Xattrs;
use rustix::fs::{AtFlags, renameat, unlinkat};

use super::*;

impl Session<'_> {
    fn tmp_name(&self) -> Tmp {
        let seq = self.seq.fetch_add(1, Relaxed);
        let name = format!(".pvcb-tmp.{}.{}", std::process::id(), seq);
        Tmp(CString::new(name).expect("no NUL"))
    }

    /// Makes a new entry under a fresh temporary name with `make` (as the mover, else as its
    /// owner or the directory's), retrying with the next name while one is taken.
    pub(super) fn make_tmp<R: Send>(
        &self,
        dirs: &[BorrowedFd<'_>],
        owner: Id,
        make: impl Fn(&CStr) -> io::Result<R> + Send + Sync,
    ) -> io::Result<(Tmp, R)> {
        loop {
            let tmp = self.tmp_name();
            match self
                .owners
                .retry_target(&[owner], dirs, || make(tmp.0.as_c_str()))
            {
                Ok(r) => return Ok((tmp, r)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames a complete temporary entry over `name`; on failure it is removed.
    pub(super) fn place(&self, dfd: BorrowedFd<'_>, tmp: &Tmp, name: &CStr) -> io::Result<()> {
        let r = self.owners.retry_target(&[], &[dfd], || {
            renameat(dfd, tmp.0.as_c_str(), dfd, name).map_err(Into::into)
        });
        if r.is_err() {
            self.discard(dfd, tmp);
        }
        r
    }

    pub(super) fn discard(&self, dfd: BorrowedFd<'_>, tmp: &Tmp) {
        let _ = self.owners.retry_target(&[], &[dfd], || {
            unlinkat(dfd, tmp.0.as_c_str(), AtFlags::empty()).map_err(Into::into)
        });
    }

    /// A new symlink or special file: made under a temporary name, given its attributes,
    /// renamed into place.
    pub(super) fn make_new(
        &self,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        want_x: &Xattrs,
        op: &'static str,
        make: impl Fn(&CStr) -> io::Result<()> + Send + Sync,
    ) -> std::result::Result<(), Failure> {
        let (tmp, ()) = self
            .make_tmp(&[dfd], (meta.uid, meta.gid), make)
            .map_err(|e| (op, e))?;
        let t = tmp.0.as_c_str();
        // What it got when made (a default ACL of the directory, say) is compared too.
        let have_x = attrs::read_xattrs(Handle::At(dfd, t)).ok();
        let applied = attrs::apply_new(
            Handle::At(dfd, t),
            meta,
            None,
            want_x,
            have_x.as_ref(),
            Some(self.owners),
        );
        self.place(dfd, &tmp, name).map_err(|e| ("rename", e))?;
        self.stats.copied.fetch_add(1, Relaxed);
        applied.map(|_| ()).map_err(|e| (e.op, e.err))
    }
}
