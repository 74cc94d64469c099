//! Pass 1, while the listing arrives: directories are made or opened, entries whose content is
//! equal get their attributes, symlinks and special files are made, the files that differ are
//! noted to be asked for (with the chunks of an older version or of a partly received copy as
//! their basis), and what the source lacks is removed once a directory's listing is complete.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;

use mover::attrs::{self, Handle};
use mover::listing::Listing;
use mover::meta::{Kind, Meta, stat_at, stat_fd};
use mover::relpath;
use mover::xattr::Xattrs;
use rustix::fs::{FileType, Mode, OFlags, mkdirat, mknodat, readlinkat, symlinkat};
use store::layout::STATE_DIR;

use crate::frame::Conn;
use crate::message::{Attrs, Message};
use crate::send::{content_hash, unexpected};
use crate::{Error, Result, delta, name};

use super::*;

impl Session<'_> {
    /// Pass 1: reads the listing up to its end.
    pub(super) fn listing(&mut self, conn: &mut Conn) -> Result<()> {
        match conn.recv()? {
            Message::Root(a) => {
                if a.kind != Kind::Dir {
                    return Err(Error::protocol("the source root is not a directory"));
                }
                let want_x = a.xattr_set()?;
                self.dirs.push(DirRec {
                    parent: None,
                    name: CString::default(),
                    rel: Vec::new(),
                    meta: a.meta(),
                    want_x,
                });
                let fd = self
                    .root
                    .try_clone_to_owned()
                    .map_err(|e| Error::net("cannot duplicate the target descriptor", e))?;
                let reference = self.reference.and_then(|r| r.try_clone_to_owned().ok());
                self.push_open(0, fd, reference);
            }
            other => return Err(unexpected("root", &other)),
        }
        loop {
            let msg = conn.recv()?;
            if msg == Message::ListPause {
                self.batch(conn)?;
                continue;
            }
            if self.skip_depth > 0 {
                match msg {
                    Message::Dir { .. } => self.skip_depth += 1,
                    Message::Up => self.skip_depth -= 1,
                    Message::Entry {
                        name, attrs, group, ..
                    } if attrs.kind == Kind::File => {
                        let name = name::component(&name)?;
                        let group = self.group_of(group)?;
                        self.files.push(FileRec {
                            dir: None,
                            name,
                            meta: attrs.meta(),
                            want_x: Xattrs::default(),
                            group,
                            ino: None,
                        });
                    }
                    Message::Entry { .. }
                    | Message::Unreadable { .. }
                    | Message::Excluded { .. } => {}
                    other => return Err(unexpected("entry", &other)),
                }
                continue;
            }
            match msg {
                Message::Dir { name, attrs } => {
                    if attrs.kind != Kind::Dir {
                        return Err(Error::protocol("a directory message for a non-directory"));
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Error::protocol(format!(
                            "the listing goes deeper than {MAX_DEPTH} directories"
                        )));
                    }
                    let name = self.accept_name(&name)?;
                    self.enter(name, &attrs)?;
                }
                Message::Up => {
                    if self.stack.len() < 2 {
                        return Err(Error::protocol("an end of directory at the root"));
                    }
                    let open = self.stack.pop().expect("checked");
                    self.finish(open);
                }
                Message::Entry {
                    name,
                    attrs,
                    target,
                    group,
                    hash,
                } => {
                    if attrs.kind == Kind::Dir {
                        return Err(Error::protocol("an entry message for a directory"));
                    }
                    let name = self.accept_name(&name)?;
                    self.entry(name, &attrs, target, group, hash)?;
                }
                Message::Unreadable { name, op, error } => {
                    let top = self.stack.last_mut().expect("the root is open");
                    let dir = top.dir;
                    if name.is_empty() {
                        top.keep_all = true;
                        let rel = self.dirs[dir].rel.clone();
                        self.fail(&rel, &op, format!("on the sender: {error}"));
                    } else {
                        let name = self.accept_name(&name)?;
                        let rel = self.rel_in(dir, name.to_bytes());
                        self.stats.entries_found.fetch_add(1, Relaxed);
                        self.stats.entries_done.fetch_add(1, Relaxed);
                        self.fail(&rel, &op, format!("on the sender: {error}"));
                    }
                }
                Message::Excluded { name, delete } => {
                    // Left out of the copy: the target's entry stays, unless the sender says
                    // --delete-excluded (then it goes as one the source lacks).
                    let kept = !delete;
                    self.accept_name_marking(&name, kept)?;
                    self.stats.excluded.fetch_add(1, Relaxed);
                }
                Message::ListEnd => {
                    if self.stack.len() != 1 {
                        return Err(Error::protocol("the listing ended inside a directory"));
                    }
                    let open = self.stack.pop().expect("checked");
                    self.finish(open);
                    return Ok(());
                }
                other => return Err(unexpected("entry", &other)),
            }
        }
    }

    /// Checks the group of the file listed next: itself, or a hard-linked file listed before.
    fn group_of(&self, group: Option<u64>) -> Result<Option<u64>> {
        let n = self.next_file();
        match group {
            Some(g) if g > n => Err(Error::protocol(format!(
                "file {n} says it shares the content of file {g}, listed later"
            ))),
            Some(g) if g < n && self.file_rec(g).is_none_or(|f| f.group != Some(g)) => {
                Err(Error::protocol(format!(
                    "file {n} says it shares the content of file {g}, which was not listed as \
                     hard-linked"
                )))
            }
            g => Ok(g),
        }
    }

    fn push_open(&mut self, dir: usize, fd: OwnedFd, reference: Option<OwnedFd>) {
        let (target, keep_all) = match self
            .owners
            .retry_target(&[], &[fd.as_fd()], || Listing::read(&fd))
        {
            Ok(l) => (l, false),
            Err(e) => {
                let rel = self.dirs[dir].rel.clone();
                self.fail(&rel, "read target directory", e);
                (Listing::default(), true)
            }
        };
        self.stack.push(Open {
            dir,
            fd: std::rc::Rc::new(fd),
            seen: vec![false; target.len()],
            target,
            last: None,
            keep_all,
            reference: reference.map(std::rc::Rc::new),
        });
    }

    /// Checks a name of the current directory: one path component, after the previous one,
    /// not the mover's state folder at the root. Marks the target's entry of that name as kept.
    fn accept_name(&mut self, raw: &[u8]) -> Result<CString> {
        self.accept_name_marking(raw, true)
    }

    /// As [`Self::accept_name`]; the target's entry of that name is marked as one the source
    /// has (so that it stays) only when `seen`.
    fn accept_name_marking(&mut self, raw: &[u8], seen: bool) -> Result<CString> {
        let c = name::component(raw)?;
        let top = self.stack.last_mut().expect("the root is open");
        if top.last.as_deref().is_some_and(|l| l >= raw) {
            return Err(Error::protocol(format!(
                "the entry name {:?} comes out of order or twice",
                String::from_utf8_lossy(raw)
            )));
        }
        if top.dir == 0 && raw == STATE_DIR.as_bytes() {
            return Err(Error::protocol(format!(
                "the source lists {STATE_DIR} at its root, the target's own state folder"
            )));
        }
        top.last = Some(raw.to_vec());
        if seen && let Some(j) = top.target.find(raw) {
            top.seen[j] = true;
        }
        Ok(c)
    }

    /// Removes what the source lacks from a directory whose listing is complete.
    fn finish(&mut self, open: Open) {
        if self.opts.no_delete || open.keep_all {
            return;
        }
        let dst = open.fd.as_fd();
        for j in 0..open.target.len() {
            if open.seen[j] {
                continue;
            }
            let n = open.target.name(j);
            if open.dir == 0
                && (n.to_bytes() == STATE_DIR.as_bytes()
                    || (n.to_bytes() == b"lost+found"
                        && open.target.dtype(j) == FileType::Directory))
            {
                continue;
            }
            match self
                .owners
                .retry_target(&[], &[dst], || mover::remove::remove(dst, n))
            {
                Ok(count) => {
                    self.stats.deleted.fetch_add(count, Relaxed);
                }
                Err(e) => {
                    let rel = self.rel_in(open.dir, n.to_bytes());
                    self.fail(&rel, "delete", e);
                }
            }
        }
    }

    /// The target entry `name` in `dir` if it is what `want` may be compared with; a directory
    /// (or anything, for a socket) is removed first.
    fn existing(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        want: Kind,
    ) -> std::result::Result<Option<Meta>, Failure> {
        match self.owners.retry_target(&[], &[dir], || stat_at(dir, name)) {
            Ok(m) if m.kind == Kind::Dir || want == Kind::Socket => {
                let n = self
                    .owners
                    .retry_target(&[], &[dir], || mover::remove::remove(dir, name))
                    .map_err(|e| ("delete", e))?;
                self.stats.deleted.fetch_add(n, Relaxed);
                Ok(None)
            }
            Ok(m) => Ok(Some(m)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(("stat target", e)),
        }
    }

    /// A subdirectory: opened, or made (mode 0700 until pass 3), replacing a non-directory.
    fn enter(&mut self, name: CString, attrs: &Attrs) -> Result<()> {
        let want_x = attrs.xattr_set()?;
        let meta = attrs.meta();
        let parent = self.stack.last().expect("the root is open");
        let (pdir, pfd) = (parent.dir, parent.fd.as_fd());
        let reference = parent
            .reference
            .as_ref()
            .and_then(|r| self.owners.open_in(r.as_fd(), &name, DIR_FLAGS).ok());
        let rel = self.rel_in(pdir, name.to_bytes());
        self.stats.entries_found.fetch_add(1, Relaxed);
        self.stats.entries_done.fetch_add(1, Relaxed);
        let opened = (|| -> std::result::Result<OwnedFd, Failure> {
            let have = match self
                .owners
                .retry_target(&[], &[pfd], || stat_at(pfd, &name))
            {
                Ok(m) => Some(m),
                Err(e) if is_missing(&e) => None,
                Err(e) => return Err(("stat target", e)),
            };
            if let Some(h) = have {
                if h.kind == Kind::Dir {
                    return self
                        .owners
                        .open_in(pfd, &name, DIR_FLAGS)
                        .map_err(|e| ("open target directory", e));
                }
                let n = self
                    .owners
                    .retry_target(&[], &[pfd], || mover::remove::remove(pfd, &name))
                    .map_err(|e| ("delete", e))?;
                self.stats.deleted.fetch_add(n, Relaxed);
            }
            self.owners
                .retry_target(&[(meta.uid, meta.gid)], &[pfd], || {
                    mkdirat(pfd, &name, Mode::from_raw_mode(0o700)).map_err(Into::into)
                })
                .map_err(|e| ("mkdir", e))?;
            self.owners
                .open_in(pfd, &name, DIR_FLAGS)
                .map_err(|e| ("open target directory", e))
        })();
        match opened {
            Ok(fd) => {
                self.dirs.push(DirRec {
                    parent: Some(pdir),
                    name,
                    rel,
                    meta,
                    want_x,
                });
                self.push_open(self.dirs.len() - 1, fd, reference);
            }
            Err((op, e)) => {
                self.fail(&rel, op, e);
                self.skip_depth = 1;
            }
        }
        Ok(())
    }

    /// A non-directory entry of the current directory.
    fn entry(
        &mut self,
        name: CString,
        attrs: &Attrs,
        target: Vec<u8>,
        group: Option<u64>,
        hash: Option<[u8; 32]>,
    ) -> Result<()> {
        let want_x = attrs.xattr_set()?;
        let meta = attrs.meta();
        let top = self.stack.last().expect("the root is open");
        let (dir, dfd) = (top.dir, top.fd.clone());
        let dfd = dfd.as_fd();
        let rel = self.rel_in(dir, name.to_bytes());
        self.stats.entries_found.fetch_add(1, Relaxed);
        self.stats.entries_done.fetch_add(1, Relaxed);
        let number = if meta.kind == Kind::File {
            self.stats.bytes_found.fetch_add(meta.size, Relaxed);
            self.stats.bytes_done.fetch_add(meta.size, Relaxed);
            let n = self.next_file();
            let group = self.group_of(group)?;
            self.files.push(FileRec {
                dir: Some(dir),
                name: name.clone(),
                meta,
                want_x: want_x.clone(),
                group,
                ino: None,
            });
            Some(n)
        } else {
            None
        };
        let symlink_target = if meta.kind == Kind::Symlink {
            Some(
                CString::new(target)
                    .map_err(|_| Error::protocol("a symlink target holds a NUL byte"))?,
            )
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::protocol("a symlink with an empty target"))
            .map(Some)?
        } else {
            None
        };
        let have = match self.existing(dfd, &name, meta.kind) {
            Ok(h) => h,
            Err((op, e)) => {
                self.fail(&rel, op, e);
                return Ok(());
            }
        };
        let done = match meta.kind {
            Kind::Socket => {
                self.stats.skipped.fetch_add(1, Relaxed);
                self.journal.note(
                    &rel,
                    "socket not copied: a socket exists only while a process listens on it",
                );
                return Ok(());
            }
            Kind::File => {
                let n = number.expect("a file has a number");
                if group.is_some_and(|g| g != n) {
                    self.links.push(n);
                    return Ok(());
                }
                self.file(dfd, &name, &meta, &want_x, have.as_ref(), hash, n)
            }
            Kind::Symlink => {
                let t = symlink_target.expect("checked above");
                let same = match have.filter(|h| h.kind == Kind::Symlink) {
                    Some(_) => self
                        .owners
                        .retry_target(&[], &[dfd], || {
                            readlinkat(dfd, &name, Vec::new()).map_err(Into::into)
                        })
                        .map(|cur| cur == t)
                        .map_err(|e| ("readlink target", e)),
                    None => Ok(false),
                };
                match same {
                    Ok(true) => self.update_in_place(dfd, &name, &meta, &want_x, have.as_ref()),
                    Ok(false) => self.make_new(dfd, &name, &meta, &want_x, "symlink", |t2| {
                        symlinkat(t.as_c_str(), dfd, t2).map_err(Into::into)
                    }),
                    Err(f) => Err(f),
                }
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let same = have.filter(|h| {
                    h.kind == meta.kind && (meta.kind == Kind::Fifo || h.rdev == meta.rdev)
                });
                if same.is_some() {
                    self.update_in_place(dfd, &name, &meta, &want_x, same.as_ref())
                } else {
                    let rdev = if meta.kind == Kind::Fifo {
                        0
                    } else {
                        meta.rdev
                    };
                    let ft = meta.kind.file_type();
                    self.make_new(dfd, &name, &meta, &want_x, "mknod", |t| {
                        mknodat(dfd, t, ft, Mode::from_raw_mode(0o600), rdev).map_err(Into::into)
                    })
                }
            }
            Kind::Dir => unreachable!("refused by the caller"),
        };
        if let Err((op, e)) = done {
            self.fail(&rel, op, e);
        }
        Ok(())
    }

    /// A regular file (the first or only name of its content): kept when equal, else asked for.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        want_x: &Xattrs,
        have: Option<&Meta>,
        hash: Option<[u8; 32]>,
        n: u64,
    ) -> std::result::Result<(), Failure> {
        if let Some(h) = have.filter(|h| {
            h.kind == Kind::File
                && h.size == meta.size
                && h.mtime == meta.mtime
                // A target file linked to other names while the source is not: rewrite it apart.
                && !(meta.nlink == 1 && h.nlink > 1)
                // In a new snapshot, a file with other names may be the previous snapshot's
                // (linked by an attempt that broke off): never changed in place, it is linked
                // again below, or sent.
                && !(self.reference.is_some() && h.nlink > 1)
        }) {
            let equal = if self.opts.checksum {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = self
                    .owners
                    .open_in(dfd, name, flags)
                    .map_err(|e| ("open target", e))?;
                let mine = content_hash(fd.as_fd()).map_err(|e| ("compare", e))?;
                hash == Some(mine)
            } else {
                true
            };
            if equal {
                if let Some(f) = self.file_rec_mut(n) {
                    f.ino = Some(h.ino);
                }
                return self.update_in_place(dfd, name, meta, want_x, Some(h));
            }
        }
        // In a new snapshot: the previous snapshot's file of this name, looked at once.
        let reference = self.stack.last().and_then(|t| t.reference.clone());
        let previous = reference.as_ref().and_then(|r| {
            let rfd = r.as_fd();
            self.owners
                .retry_target(&[], &[rfd], || stat_at(rfd, name))
                .ok()
                .filter(|m| m.kind == Kind::File)
                .map(|m| (rfd, m))
        });
        if let Some((rfd, old)) = previous
            && self.link_reference(dfd, rfd, &old, name, meta, want_x, hash, n)?
        {
            return Ok(());
        }
        self.wanted.push(n);
        if meta.size >= delta::DELTA_MIN
            && let Some(chunk) = delta::chunk_for(meta.size)
        {
            let part = part_name(name, meta);
            let top = self.stack.last_mut().expect("the root is open");
            if let Some(j) = top.target.find(part.to_bytes()) {
                // Kept, not removed as an entry the source lacks; its chunks are offered as
                // the basis, and the sender sends only those that differ or are missing.
                let listed = top.seen[j];
                top.seen[j] = true;
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let usable = |m: Meta| {
                    if m.kind == Kind::File && m.size <= meta.size {
                        Ok(m)
                    } else {
                        Err(io::Error::other("not a partly received file"))
                    }
                };
                // Looked at before it is opened: a special file of that name (a sender may
                // have listed one just before) is never opened, a device node least of all.
                let hashes = self
                    .owners
                    .retry_target(&[], &[dfd], || stat_at(dfd, &part))
                    .and_then(usable)
                    .and_then(|_| self.owners.open_in(dfd, &part, flags))
                    .and_then(|fd| {
                        let m = usable(stat_fd(&fd)?)?;
                        delta::hashes(fd.as_fd(), m.size, chunk)
                    });
                match hashes {
                    Ok(hashes) => {
                        tracing::info!(
                            file = %relpath::display(name.to_bytes()),
                            "going on from {} chunks received before",
                            hashes.len()
                        );
                        self.resumed.insert(n);
                        self.bases.push((n, chunk, hashes));
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::debug!("partly received file {n} not used: {e}");
                        top.seen[j] = listed;
                    }
                }
            }
        }
        // No older version here: the previous snapshot's, when receiving a new snapshot.
        let (older, in_reference) = match (have.filter(|h| h.kind == Kind::File), previous) {
            (Some(h), _) => (Some((*h, dfd)), false),
            (None, Some((rfd, m))) => (Some((m, rfd)), true),
            (None, None) => (None, false),
        };
        if let Some((h, older_dir)) =
            older.filter(|(h, _)| h.size >= delta::DELTA_MIN && meta.size >= delta::DELTA_MIN)
            && let Some(chunk) = delta::chunk_for(h.size)
        {
            // Worth a read of the older version: only its changed chunks then cross the wire.
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match self
                .owners
                .open_in(older_dir, name, flags)
                .and_then(|fd| delta::hashes(fd.as_fd(), h.size, chunk))
            {
                Ok(hashes) => {
                    self.bases.push((n, chunk, hashes));
                    if in_reference {
                        self.basis_in_reference.insert(n);
                    }
                }
                Err(e) => tracing::debug!("no basis for file {n}: {e}"),
            }
        }
        Ok(())
    }

    /// When receiving a new snapshot: hard-links the file from the previous snapshot `reference`
    /// (where it is the regular file `old`) when it is unchanged there (size, mtime, owner, mode
    /// and extended attributes; with
    /// `--checksum`, content too), as `mover backup` does. Returns whether it was linked; a
    /// link that cannot be made (too many links, say) leaves the file to be sent.
    #[allow(clippy::too_many_arguments)]
    fn link_reference(
        &mut self,
        dfd: BorrowedFd<'_>,
        reference: BorrowedFd<'_>,
        old: &Meta,
        name: &CStr,
        meta: &Meta,
        want_x: &Xattrs,
        hash: Option<[u8; 32]>,
        n: u64,
    ) -> std::result::Result<bool, Failure> {
        if old.size != meta.size || !attrs::same_basic(meta, old) {
            return Ok(false);
        }
        let same_x = self
            .owners
            .target_xattrs(reference, name, old.kind, (old.uid, old.gid))
            .is_ok_and(|x| x == *want_x);
        if !same_x {
            return Ok(false);
        }
        if self.opts.checksum {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = self
                .owners
                .open_in(reference, name, flags)
                .map_err(|e| ("open previous snapshot", e))?;
            let mine = content_hash(fd.as_fd()).map_err(|e| ("compare", e))?;
            if hash != Some(mine) {
                return Ok(false);
            }
        }
        let Ok((tmp, ())) = self.make_tmp(&[dfd, reference], (old.uid, old.gid), |t| {
            rustix::fs::linkat(reference, name, dfd, t, rustix::fs::AtFlags::empty())
                .map_err(Into::into)
        }) else {
            return Ok(false);
        };
        self.place(dfd, &tmp, name).map_err(|e| ("rename", e))?;
        if let Some(f) = self.file_rec_mut(n) {
            f.ino = Some(old.ino);
        }
        self.stats.unchanged.fetch_add(1, Relaxed);
        Ok(true)
    }

    /// Brings the attributes of a target entry whose content is equal in line with the source.
    fn update_in_place(
        &self,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        want_x: &Xattrs,
        have: Option<&Meta>,
    ) -> std::result::Result<(), Failure> {
        let h = have.expect("an existing entry");
        let have_x = self
            .owners
            .target_xattrs(dfd, name, h.kind, (h.uid, h.gid))
            .map_err(|e| ("read target xattrs", e))?;
        if attrs::same_basic(meta, h) && *want_x == have_x {
            self.stats.unchanged.fetch_add(1, Relaxed);
            return Ok(());
        }
        let r = if meta.kind == Kind::File {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let fd = self
                .owners
                .open_in(dfd, name, flags)
                .map_err(|e| ("open target", e))?;
            attrs::apply(
                Handle::Fd(fd.as_fd()),
                meta,
                Some(h),
                want_x,
                Some(&have_x),
                Some(self.owners),
            )
        } else {
            attrs::apply(
                Handle::At(dfd, name),
                meta,
                Some(h),
                want_x,
                Some(&have_x),
                Some(self.owners),
            )
        };
        self.stats.updated.fetch_add(1, Relaxed);
        r.map(|_| ()).map_err(|e| (e.op, e.err))
    }
}
