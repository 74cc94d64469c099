//! One non-directory entry of the mirror: compare it with the target's, copy or link it under
//! a temporary name, apply its attributes and put it in place.

use std::ffi::{CStr, CString};
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;

use rustix::fs::{
    AtFlags, Mode, OFlags, linkat, mknodat, openat, readlinkat, renameat, symlinkat, unlinkat,
};

use crate::attrs::{self, Handle, OpError};
use crate::content::same_content;
use crate::hardlink::Claim;
use crate::manifest::{self, Chunk, PreviousFiles};
use crate::meta::{Kind, Meta, stat_at, stat_fd};
use crate::owner::Id;
use crate::relpath;
use crate::xattr::{self, Xattrs};

use super::dir::{DirNode, DirWork, new_dir_name};
use super::mirror::Ctx;
use super::reuse::reuse;

/// A temporary name, unique in this run; created with O_EXCL (or its equivalent) and retried on
/// collision. Left-overs of a killed run are extraneous entries the next run removes.
struct TmpName([u8; 48]);

impl TmpName {
    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).expect("NUL-terminated")
    }
}

impl Ctx<'_> {
    fn tmp_name(&self) -> TmpName {
        let mut buf = [0u8; 48];
        let seq = self.tmp_seq.fetch_add(1, Relaxed);
        let mut w = &mut buf[..47];
        let _ = write!(w, ".pvcb-tmp.{}.{}", self.pid, seq);
        TmpName(buf)
    }

    /// Opens a source file for reading, as the mover or else as its owner, without changing
    /// its access time where allowed (see [`crate::owner::Owners::open_source_file`]).
    pub(super) fn open_source_file(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        meta: &Meta,
    ) -> std::io::Result<OwnedFd> {
        self.owners
            .open_source_file(dir, dir_id, name, meta, &self.noatime)
    }
}

/// What happened to one non-directory entry.
pub(super) enum Outcome {
    /// Made anew; a file copied through the mover's buffer comes with its content hash.
    /// `attrs_applied` is false when applying some attribute failed (an error already reported).
    Copied {
        bytes: u64,
        ino: u64,
        hash: Option<[u8; 32]>,
        attrs_applied: bool,
        /// With a hash, when recording: the copy's attributes and extended attributes' digest
        /// as on disk once placed.
        placed: Option<(Meta, [u8; 16])>,
    },
    Updated {
        ino: u64,
    },
    Unchanged {
        ino: u64,
    },
    /// Hard-linked from the previous copy; its manifest entry when recording one and its hash
    /// is known without reading it.
    Linked {
        ino: u64,
        entry: Option<manifest::Entry>,
    },
}

impl Outcome {
    fn ino(&self) -> u64 {
        match *self {
            Outcome::Copied { ino, .. }
            | Outcome::Updated { ino }
            | Outcome::Unchanged { ino }
            | Outcome::Linked { ino, .. } => ino,
        }
    }
}

type Failure = (&'static str, std::io::Error);

pub(super) fn handle_entry(
    ctx: &Ctx<'_>,
    node: &DirNode<'_>,
    work: &DirWork,
    i: usize,
    chunk: &mut Option<Chunk>,
) {
    let stats = ctx.stats;
    if ctx.stopping() {
        return;
    }
    let Some(meta) = work.metas[i] else { return };
    let name = work.listing.name(i);
    let meta = ctx.wanted(
        || relpath::join(&node.rel, name.to_bytes()),
        meta,
        meta.kind != Kind::Socket,
    );
    let dst = node.dst.as_fd();
    stats.entries_done.fetch_add(1, Relaxed);
    if meta.kind == Kind::File {
        stats.bytes_done.fetch_add(meta.size, Relaxed);
    }

    // The target entry of the same name, if any; a directory there goes first.
    let mut have = None;
    if work.present[i].is_some() {
        match ctx.owners.retry_target(&[], &[dst], || stat_at(dst, name)) {
            Ok(m) if m.kind == Kind::Dir || meta.kind == Kind::Socket => {
                match ctx
                    .owners
                    .retry_target(&[], &[dst], || crate::remove::remove(dst, name))
                {
                    Ok(n) => {
                        stats.deleted.fetch_add(n, Relaxed);
                    }
                    Err(e) => return ctx.fail(&node.rel, name.to_bytes(), "delete", e),
                }
            }
            Ok(m) => have = Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return ctx.fail(&node.rel, name.to_bytes(), "stat target", e),
        }
    }
    if meta.kind == Kind::Socket {
        stats.skipped.fetch_add(1, Relaxed);
        ctx.journal.note(
            &relpath::join(&node.rel, name.to_bytes()),
            "socket not copied: a socket exists only while a process listens on it",
        );
        return;
    }

    let result = if meta.nlink > 1 {
        match ctx.links.claim((meta.dev, meta.ino), meta.nlink) {
            Claim::First(first) => {
                let r = sync_entry(ctx, node, work, i, &meta, have.as_ref());
                if let Ok(out) = &r {
                    first.done(relpath::join(&node.rel, name.to_bytes()), out.ino());
                }
                r
            }
            Claim::Copied { dst_rel, dst_ino } => {
                if have.is_some_and(|h| h.ino == dst_ino) {
                    stats.unchanged.fetch_add(1, Relaxed);
                    ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, None);
                    return;
                }
                match link_to(
                    ctx,
                    &dst_rel,
                    dst,
                    name,
                    (meta.uid, meta.gid),
                    node.hidden && have.is_none(),
                ) {
                    Ok(()) => {
                        stats.linked.fetch_add(1, Relaxed);
                        ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, None);
                        tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), "linked");
                        return;
                    }
                    Err(e) => {
                        ctx.journal.note(
                            &relpath::join(&node.rel, name.to_bytes()),
                            format!("copied on its own: cannot hard-link to its first name: {e}"),
                        );
                        sync_entry(ctx, node, work, i, &meta, have.as_ref())
                    }
                }
            }
        }
    } else {
        sync_entry(ctx, node, work, i, &meta, have.as_ref())
    };
    // The source's change time goes into the manifest where the placed entry has the extended
    // attributes the source had after that change time was read. A new copy has them unless
    // applying some failed.
    let mut ctime = None;
    match result {
        Ok(Outcome::Copied {
            bytes,
            hash,
            attrs_applied,
            placed,
            ..
        }) => {
            if attrs_applied {
                ctime = Some(meta.ctime);
            }
            stats.copied.fetch_add(1, Relaxed);
            stats.bytes_copied.fetch_add(bytes, Relaxed);
            tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), bytes, "copied");
            if let Some(h) = hash {
                ctx.record_placed(chunk, dst, &node.rel, name, (h, bytes), ctime, placed);
                return;
            }
        }
        Ok(Outcome::Updated { .. }) => {
            stats.updated.fetch_add(1, Relaxed);
            tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), "attributes updated");
        }
        Ok(Outcome::Unchanged { .. }) => {
            stats.unchanged.fetch_add(1, Relaxed);
        }
        Ok(Outcome::Linked { entry, .. }) => {
            // Linked only when its extended attributes were found (or known) to be the source's.
            ctime = Some(meta.ctime);
            stats.unchanged.fetch_add(1, Relaxed);
            if let (Some(e), Some(c)) = (entry, chunk.as_mut()) {
                c.push(name.to_bytes(), &e);
                return;
            }
        }
        Err((op, e)) => return ctx.fail(&node.rel, name.to_bytes(), op, e),
    }
    ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, ctime);
}

/// Creates a hard link named `name` in `dir` to the target entry at `dst_rel` (`fresh`: `dir`
/// has no entry of that name, see [`make_entry`]).
fn link_to(
    ctx: &Ctx<'_>,
    dst_rel: &[u8],
    dir: BorrowedFd<'_>,
    name: &CStr,
    owner: Id,
    fresh: bool,
) -> std::io::Result<()> {
    let (parent_rel, base) = relpath::split(dst_rel);
    let mut parent: Option<OwnedFd> = None;
    for comp in parent_rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let c = CString::new(comp).map_err(std::io::Error::other)?;
        let at = parent.as_ref().map_or(ctx.dst_root, |p| p.as_fd());
        let open = |n: &CStr| {
            ctx.owners.retry_target(&[], &[at], || {
                openat(
                    at,
                    n,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(Into::into)
            })
        };
        let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        // A new directory still being filled has its temporary name, and gets its own name
        // once complete, maybe between two of these calls: one of the three finds it.
        let fd = match open(&c) {
            Err(e) if missing(&e) => match new_dir_name(comp) {
                Some(t) => match open(&t) {
                    Err(e) if missing(&e) => open(&c),
                    r => r,
                },
                None => Err(e),
            },
            r => r,
        };
        parent = Some(fd?);
    }
    let at = parent.as_ref().map_or(ctx.dst_root, |p| p.as_fd());
    let base = CString::new(base).map_err(std::io::Error::other)?;
    // With protected_hardlinks, only the file's owner (or CAP_FOWNER) may link it.
    let (made, ()) = make_entry(ctx, owner, &[dir, at], name, fresh, |n| {
        linkat(at, base.as_c_str(), dir, n, AtFlags::empty()).map_err(Into::into)
    })?;
    place(ctx, dir, &made, name)
}

fn sync_entry(
    ctx: &Ctx<'_>,
    node: &DirNode<'_>,
    work: &DirWork,
    i: usize,
    meta: &Meta,
    have: Option<&Meta>,
) -> std::result::Result<Outcome, Failure> {
    let e = Entry {
        ctx,
        node,
        src: work.src.as_fd(),
        dst: node.dst.as_fd(),
        name: work.listing.name(i),
        meta,
        have,
        previous: &work.previous,
    };
    if have.is_none()
        && let Some(r) = &node.link_ref
        && let Some(out) = reuse(&e, r.as_fd())
    {
        return Ok(out);
    }
    match meta.kind {
        Kind::File => sync_file(&e),
        Kind::Symlink => sync_symlink(&e),
        Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => sync_special(&e),
        Kind::Dir | Kind::Socket => unreachable!("handled by the caller"),
    }
}

/// One non-directory source entry being mirrored: where it is, what it is, and what the target
/// has under its name.
#[derive(Clone, Copy)]
pub(super) struct Entry<'e, 'a> {
    pub(super) ctx: &'e Ctx<'a>,
    pub(super) node: &'e DirNode<'a>,
    pub(super) src: BorrowedFd<'e>,
    pub(super) dst: BorrowedFd<'e>,
    pub(super) name: &'e CStr,
    pub(super) meta: &'e Meta,
    pub(super) have: Option<&'e Meta>,
    /// What the previous manifest says about this directory's files.
    pub(super) previous: &'e PreviousFiles,
}

/// The name a new entry was made under by [`make_entry`].
enum Made {
    /// Its own name: the target had no entry of that name.
    Final,
    /// A temporary name, renamed over the existing entry by [`place`] once complete.
    Tmp(TmpName),
}

impl Made {
    /// The name the entry has now, given the name it is made for.
    fn current<'n>(&'n self, name: &'n CStr) -> &'n CStr {
        match self {
            Made::Final => name,
            Made::Tmp(t) => t.as_cstr(),
        }
    }
}

/// Puts a finished entry in place: renames a temporary one over the existing entry (as the
/// directory's owner if the mover may not write there); on failure it is removed.
fn place(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, made: &Made, name: &CStr) -> std::io::Result<()> {
    let Made::Tmp(tmp) = made else {
        return Ok(());
    };
    let t = tmp.as_cstr();
    let r = ctx.owners.retry_target(&[], &[dir], || {
        renameat(dir, t, dir, name).map_err(Into::into)
    });
    if r.is_err() {
        discard(ctx, dir, made, name);
    }
    r
}

/// Makes a new entry for `name` in the directory `within[0]` with `make` (as the mover, else as
/// `owner` or the owner of a directory in `within`).
///
/// A mirror shows no half-written file under a real name, even after a run that was killed: an
/// entry is made under a fresh temporary name (the next one when one is taken) and renamed into
/// place by [`place`] once complete. In a hidden directory (a snapshot being made, or a new
/// directory of a mirror, each given its own name by a rename once complete) an entry that has
/// no name there yet (`fresh`) is made under its own name instead: nobody sees the folder before
/// it is complete, the next run removes or takes up a killed run's folder, and the rename it
/// spares is, after the copy itself, the most costly step of placing a small file. A fresh name
/// that turns out to be taken falls back to a temporary one.
fn make_entry<R: Send>(
    ctx: &Ctx<'_>,
    owner: Id,
    within: &[BorrowedFd<'_>],
    name: &CStr,
    fresh: bool,
    make: impl Fn(&CStr) -> std::io::Result<R> + Send + Sync,
) -> std::io::Result<(Made, R)> {
    if fresh {
        match ctx.owners.retry_target(&[owner], within, || make(name)) {
            Ok(r) => return Ok((Made::Final, r)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        let tmp = ctx.tmp_name();
        match ctx
            .owners
            .retry_target(&[owner], within, || make(tmp.as_cstr()))
        {
            Ok(r) => return Ok((Made::Tmp(tmp), r)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes a new entry that will not be used.
fn discard(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, made: &Made, name: &CStr) {
    let n = made.current(name);
    let _ = ctx.owners.retry_target(&[], &[dir], || {
        unlinkat(dir, n, AtFlags::empty()).map_err(Into::into)
    });
}

/// Reports an attribute failure on an entry whose content is in place: the run goes on, the
/// entry is listed as failed.
fn attr_failure(ctx: &Ctx<'_>, node: &DirNode<'_>, name: &CStr, e: OpError) {
    ctx.fail(&node.rel, name.to_bytes(), e.op, e.err);
}

/// Brings the attributes of an existing target entry whose content is equal in line with the
/// source.
fn update_in_place(e: &Entry<'_, '_>, have: &Meta) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        ..
    } = *e;
    let dir_id = node.src_id;
    let want_x = ctx
        .owners
        .source_xattrs(src, dir_id, name, meta)
        .map_err(|e| ("read xattrs", e))?;
    let have_x = ctx
        .owners
        .target_xattrs(dst, name, have.kind, (have.uid, have.gid))
        .map_err(|e| ("read target xattrs", e))?;
    if attrs::same_basic(meta, have) && want_x == have_x {
        return Ok(Outcome::Unchanged { ino: have.ino });
    }
    let r = if meta.kind == Kind::File {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = ctx
            .owners
            .open_in(dst, name, flags)
            .map_err(|e| ("open target", e))?;
        attrs::apply(
            Handle::Fd(fd.as_fd()),
            meta,
            Some(have),
            &want_x,
            Some(&have_x),
            Some(ctx.owners),
        )
    } else {
        attrs::apply(
            Handle::At(dst, name),
            meta,
            Some(have),
            &want_x,
            Some(&have_x),
            Some(ctx.owners),
        )
    };
    if let Err(e) = r {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Updated { ino: have.ino })
}

fn sync_file(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        have,
        ..
    } = *e;
    if let Some(h) = have.filter(|h| {
        h.kind == Kind::File
            && h.size == meta.size
            && h.mtime == meta.mtime
            // A target file linked to other names while the source is not: rewrite it apart.
            && !(meta.nlink == 1 && h.nlink > 1)
    }) {
        let equal = if ctx.opts.checksum {
            let a = ctx
                .open_source_file(src, node.src_id, name, meta)
                .map_err(|e| ("open", e))?;
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let b = ctx
                .owners
                .open_in(dst, name, flags)
                .map_err(|e| ("open target", e))?;
            same_content(&a, &b).map_err(|e| ("compare", e))?
        } else {
            true
        };
        if equal {
            return update_in_place(e, h);
        }
    }

    let sfd = ctx
        .open_source_file(src, node.src_id, name, meta)
        .map_err(|e| ("open", e))?;
    // The listing's attributes are used as they are: if the file changes during the copy, its
    // target keeps the older mtime, and the next run sees the difference and copies it again.
    let read_x = || xattr::read(xattr::Target::Fd(sfd.as_fd()));
    let want_x = ctx
        .owners
        .retry_entry(sfd.as_fd(), (meta.uid, meta.gid), read_x)
        .map_err(|e| ("read xattrs", e))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let owner = (meta.uid, meta.gid);
    // A file that belongs to its final owner from the start is made with its final mode bits
    // (less the umask), so that neither chown nor chmod follows: nobody can open it who may
    // not open the copy once complete. Any other starts as 0600 until its attributes are
    // applied: one made as another identity, one with setuid, setgid or sticky bits, and one in
    // a directory with a default ACL (which would give named users the bits too).
    let final_mode = node.new_owner == Some(owner) && meta.perm & 0o7000 == 0 && !node.default_acl;
    let (made, dfd) = make_entry(
        ctx,
        owner,
        &[dst],
        name,
        node.hidden && have.is_none(),
        |t| {
            let mode = if final_mode && !crate::owner::acting_as_owner() {
                meta.perm
            } else {
                0o600
            };
            openat(dst, t, flags, Mode::from_raw_mode(mode)).map_err(Into::into)
        },
    )
    .map_err(|e| ("create", e))?;
    // What it got, read back rather than assumed (the umask, a file made under another identity).
    let start = if final_mode { stat_fd(&dfd).ok() } else { None };
    // A manifest being recorded wants the content's hash: a small file gets it on the way.
    let copied = match ctx.record {
        Some(_) => ctx.copier.copy_small_hashed(sfd.as_fd(), dfd.as_fd(), meta),
        None => Ok(None),
    }
    .and_then(|done| match done {
        Some((n, h)) => Ok((n, Some(h))),
        None => Ok((ctx.copier.copy(sfd.as_fd(), dfd.as_fd(), meta)?, None)),
    });
    let (bytes, hash) = match copied {
        Ok(c) => c,
        Err(e) => {
            discard(ctx, dst, &made, name);
            return Err(("copy", e));
        }
    };
    let applied = attrs::apply_new(
        Handle::Fd(dfd.as_fd()),
        meta,
        start.as_ref(),
        &want_x,
        node.inherited(),
        Some(ctx.owners),
    );
    let ino = match &start {
        Some(m) => m.ino,
        None if meta.nlink > 1 => stat_fd(&dfd).map(|m| m.ino).unwrap_or(0),
        None => 0,
    };
    // The manifest describes the copy as it is on disk, read through the descriptor: no lookup
    // by name. A new file in a directory without a default ACL has no extended attribute the
    // mover copies unless it set one.
    let placed = match (ctx.record, hash) {
        (Some(_), Some(_)) => stat_fd(&dfd).ok().and_then(|m| {
            let x = if want_x.is_empty() && node.inherited().is_some() {
                manifest::xattr_digest(&want_x)
            } else {
                manifest::xattr_digest(&xattr::read(xattr::Target::Fd(dfd.as_fd())).ok()?)
            };
            Some((m, x))
        }),
        _ => None,
    };
    drop(dfd);
    if let Err(e) = place(ctx, dst, &made, name) {
        return Err(("rename", e));
    }
    let attrs_applied = applied.is_ok();
    if let Err(e) = applied {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Copied {
        bytes,
        ino,
        hash,
        attrs_applied,
        placed,
    })
}

fn sync_symlink(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        have,
        ..
    } = *e;
    let dir_id = node.src_id;
    let target = ctx
        .owners
        .retry(&[dir_id], || {
            readlinkat(src, name, Vec::new()).map_err(Into::into)
        })
        .map_err(|e| ("readlink", e))?;
    if let Some(h) = have.filter(|h| h.kind == Kind::Symlink) {
        let current = ctx
            .owners
            .retry_target(&[], &[dst], || {
                readlinkat(dst, name, Vec::new()).map_err(Into::into)
            })
            .map_err(|e| ("readlink target", e))?;
        if current == target {
            return update_in_place(e, h);
        }
    }
    make_new(e, "symlink", |t| {
        symlinkat(target.as_c_str(), dst, t).map_err(Into::into)
    })
}

fn sync_special(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        dst, meta, have, ..
    } = *e;
    if let Some(h) =
        have.filter(|h| h.kind == meta.kind && (meta.kind == Kind::Fifo || h.rdev == meta.rdev))
    {
        return update_in_place(e, h);
    }
    let rdev = if meta.kind == Kind::Fifo {
        0
    } else {
        meta.rdev
    };
    let kind = meta.kind.file_type();
    make_new(e, "mknod", |t| {
        mknodat(dst, t, kind, Mode::from_raw_mode(0o600), rdev).map_err(Into::into)
    })
}

/// Makes a new symlink or special file for the source entry with `make` (`op` names it in
/// errors), gives it the source's attributes and puts it in place.
fn make_new(
    e: &Entry<'_, '_>,
    op: &'static str,
    make: impl Fn(&CStr) -> std::io::Result<()> + Send + Sync,
) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        have,
        ..
    } = *e;
    let want_x = ctx
        .owners
        .source_xattrs(src, node.src_id, name, meta)
        .map_err(|e| ("read xattrs", e))?;
    let fresh = node.hidden && have.is_none();
    let (made, ()) =
        make_entry(ctx, (meta.uid, meta.gid), &[dst], name, fresh, make).map_err(|e| (op, e))?;
    place_new(e, made, &want_x, 0)
}

/// Applies attributes to a freshly made symlink or special file, then puts it in place.
fn place_new(
    e: &Entry<'_, '_>,
    made: Made,
    want_x: &Xattrs,
    bytes: u64,
) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        dst,
        name,
        meta,
        ..
    } = *e;
    let applied = attrs::apply(
        Handle::At(dst, made.current(name)),
        meta,
        None,
        want_x,
        node.inherited(),
        Some(ctx.owners),
    );
    let ino = if meta.nlink > 1 {
        let t = made.current(name);
        ctx.owners
            .retry_target(&[], &[dst], || stat_at(dst, t))
            .map(|m| m.ino)
            .unwrap_or(0)
    } else {
        0
    };
    if let Err(e) = place(ctx, dst, &made, name) {
        return Err(("rename", e));
    }
    let attrs_applied = applied.is_ok();
    if let Err(e) = applied {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Copied {
        bytes,
        ino,
        hash: None,
        attrs_applied,
        placed: None,
    })
}
