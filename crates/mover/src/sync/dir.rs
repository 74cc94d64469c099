//! One directory of the mirror: list both sides, remove what the source lacks, make or open
//! the subdirectories and hand the other entries out in batches; a directory's attributes are
//! applied when everything below it is done.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, mkdirat, renameat, renameat_with};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use crate::Result;
use crate::attrs::{self, Handle, OpError};
use crate::exclude;
use crate::listing::Listing;
use crate::manifest::{self, Chunk, PreviousFiles};
use crate::meta::{Kind, Meta, stat_at, stat_fd};
use crate::owner::Id;
use crate::relpath;
use crate::xattr::{self, Xattrs};
use store::layout::STATE_DIR;

use super::entry::handle_entry;
use super::mirror::Ctx;

/// What a directory that a mirror makes is called until everything in it is complete: this
/// prefix before its own name. Entries inside such a directory go straight to their names.
const NEW_DIR_PREFIX: &[u8] = b".pvcb-new.";

/// The temporary name of the new directory `name`, if it fits in a file name.
pub(crate) fn new_dir_name(name: &[u8]) -> Option<CString> {
    if NEW_DIR_PREFIX.len() + name.len() > 255 {
        return None;
    }
    let mut n = Vec::with_capacity(NEW_DIR_PREFIX.len() + name.len() + 1);
    n.extend_from_slice(NEW_DIR_PREFIX);
    n.extend_from_slice(name);
    CString::new(n).ok()
}

/// A target directory being filled. When the last reference goes (its own task and every task
/// below it are done), its attributes are applied.
pub(super) struct DirNode<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    // Keeps the parent alive, so a parent is finished only after all its children.
    pub(super) parent: Option<Arc<DirNode<'a>>>,
    pub(super) rel: Vec<u8>,
    pub(super) dst: OwnedFd,
    /// Whom to act as when looking up entries in the source directory: its owner on disk, or
    /// the identity that opened it when its owner bits refuse (see [`crate::access`]).
    pub(super) src_id: Id,
    /// Whether the target directory has a default ACL, which new entries inherit.
    pub(super) default_acl: bool,
    /// The same directory in a previous copy, whose unchanged entries are hard-linked.
    pub(super) link_ref: Option<OwnedFd>,
    /// Made by this run, so empty when it is entered: there is nothing in it to read.
    pub(super) made: bool,
    /// Nobody sees what is made in it before the run is done with it: it or a directory above
    /// it has a temporary name, or the whole target is staged. New entries go straight to
    /// their names.
    pub(super) hidden: bool,
    /// The temporary name it has in its parent, replaced by its own name once it is complete.
    pub(super) pending: Option<CString>,
    /// Whom a file the mover makes in it belongs to from the start, when known (see
    /// [`new_owner`]).
    pub(super) new_owner: Option<Id>,
    pub(super) want: Meta,
    pub(super) want_x: Xattrs,
}

impl DirNode<'_> {
    /// The attributes a new entry starts with in this directory, when known: none, unless a
    /// default ACL passes some on (then they are read from the entry).
    pub(super) fn inherited(&self) -> Option<&'static Xattrs> {
        static NONE: Xattrs = Xattrs::new();
        (!self.default_acl).then_some(&NONE)
    }
}

/// Whom a file the mover makes in a target directory with attributes `dir` belongs to: the
/// mover's uid, and its gid or, in a setgid directory, the directory's.
pub(super) fn new_owner(creator: Id, dir: &Meta) -> Id {
    let gid = if dir.perm & 0o2000 != 0 {
        dir.gid
    } else {
        creator.1
    };
    (creator.0, gid)
}

/// Whether an open target directory has a default ACL.
pub(super) fn has_default_acl(ctx: &Ctx<'_>, dir: BorrowedFd<'_>) -> bool {
    let names = ctx
        .owners
        .retry_target(&[], &[dir], || xattr::names_only(xattr::Target::Fd(dir)));
    // When in doubt, read each new entry's attributes.
    names.map_or(true, |n| {
        n.iter()
            .any(|n| n.as_bytes() == b"system.posix_acl_default")
    })
}

impl Drop for DirNode<'_> {
    fn drop(&mut self) {
        let ctx = self.ctx;
        // A run that stopped leaves an unfinished folder under its temporary name, to be taken
        // up by the next run.
        if ctx.stopping() {
            return;
        }
        let result = (|| -> Result<(), OpError> {
            let have = stat_fd(&self.dst).map_err(|e| OpError::new("stat", e))?;
            let have_x = ctx
                .owners
                .retry_target(&[], &[self.dst.as_fd()], || {
                    attrs::read_xattrs(Handle::Fd(self.dst.as_fd()))
                })
                .map_err(|e| OpError::new("xattr", e))?;
            if attrs::same_basic(&self.want, &have) && have_x == self.want_x {
                return Ok(());
            }
            attrs::apply(
                Handle::Fd(self.dst.as_fd()),
                &self.want,
                Some(&have),
                &self.want_x,
                Some(&have_x),
                Some(ctx.owners),
            )
            .map(|_| ())
        })();
        if let Err(e) = result {
            ctx.fail(&self.rel, b"", e.op, e.err);
        }
        // The directory's entry, now that its attributes are final (the root has none).
        if let Some(rec) = ctx.record
            && !self.rel.is_empty()
        {
            let dst = self.dst.as_fd();
            let described = stat_fd(dst).and_then(|m| {
                let x = ctx
                    .owners
                    .retry_target(&[], &[dst], || xattr::read(xattr::Target::Fd(dst)))?;
                Ok(manifest::Entry::from_meta(
                    &m,
                    Vec::new(),
                    manifest::xattr_digest(&x),
                    [0; 32],
                ))
            });
            let (parent, name) = relpath::split(&self.rel);
            match described {
                Ok(e) => {
                    let mut chunk = Chunk::new(parent, 1);
                    chunk.push(name, &e);
                    rec.add(chunk);
                }
                Err(e) => rec.fail(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", relpath::display(&self.rel)),
                )),
            }
        }
        // Complete, attributes included: it gets its own name. Its parent's times are applied
        // after this (the parent outlives its children), so the rename leaves no trace there.
        if let (Some(tmp), Some(parent)) = (&self.pending, &self.parent) {
            let renamed = CString::new(relpath::split(&self.rel).1)
                .map_err(std::io::Error::other)
                .and_then(|name| {
                    let pd = parent.dst.as_fd();
                    ctx.owners
                        .retry_target(&[], &[pd], || rename_new(pd, tmp, &name))
                });
            if let Err(e) = renamed {
                ctx.fail(&self.rel, b"", "rename", e);
            }
        }
    }
}

/// Renames `tmp` to `name` in `dir`, never over an entry that appeared under that name meanwhile
/// (plainly where the filesystem has no `RENAME_NOREPLACE`, as NFS: a directory still replaces
/// only an empty directory then).
fn rename_new(dir: BorrowedFd<'_>, tmp: &CStr, name: &CStr) -> std::io::Result<()> {
    match renameat_with(dir, tmp, dir, name, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL) | Err(Errno::NOSYS) => renameat(dir, tmp, dir, name),
        r => r,
    }
    .map_err(Into::into)
}

/// One directory's source entries, shared by the batches that handle them.
pub(super) struct DirWork {
    pub(super) src: OwnedFd,
    pub(super) listing: Listing,
    pub(super) metas: Vec<Option<Meta>>,
    /// The type of the target entry of the same name, when there is one.
    pub(super) present: Vec<Option<FileType>>,
    /// Source directories missing in the target that a killed run left under their temporary
    /// names, in order: they are taken up where that run stopped.
    adopt: Vec<u32>,
    /// What the previous manifest says about the files of this directory, when recording one.
    pub(super) previous: PreviousFiles,
}

const BATCH_ENTRIES: usize = 256;
const BATCH_BYTES: u64 = 64 << 20;

pub(super) fn process_dir<'s, 'a: 's>(
    s: &rayon::Scope<'s>,
    ctx: &'a Ctx<'a>,
    node: Arc<DirNode<'a>>,
    src: OwnedFd,
) {
    let stats = ctx.stats;
    if ctx.stopping() {
        return;
    }
    let is_root = node.rel.is_empty();
    let listing = match Listing::read(&src) {
        Ok(l) => l,
        Err(e) => {
            // Without the source's list the target's entries cannot be judged: leave them.
            ctx.journal.error(stats, &node.rel, "read directory", e);
            return;
        }
    };
    let dst_listing = if node.made {
        Ok(Listing::default())
    } else {
        Listing::read(&node.dst)
    };
    let dst_listing = match dst_listing {
        Ok(l) => l,
        Err(e) => {
            ctx.journal
                .error(stats, &node.rel, "read target directory", e);
            return;
        }
    };

    // Stat the source entries; one that vanished or cannot be stat'ed is an error, and the
    // target's entry of that name is kept.
    let mut metas = Vec::with_capacity(listing.len());
    let mut found = 0u64;
    let mut found_bytes = 0u64;
    // Source entries left out by an exclude: the target's entry of the same name is kept.
    let mut left_out: Vec<usize> = Vec::new();
    let excludes = !ctx.opts.excludes.is_empty();
    for i in 0..listing.len() {
        let name = listing.name(i);
        if is_root && name.to_bytes() == STATE_DIR.as_bytes() {
            metas.push(None);
            continue;
        }
        let dir_id = node.src_id;
        let stat = ctx.owners.retry(&[dir_id], || stat_at(&src, name));
        let excluded = excludes
            && match &stat {
                Ok(m) => ctx.opts.excludes.leaves_out(
                    ctx.owners,
                    src.as_fd(),
                    dir_id,
                    &relpath::join(&node.rel, name.to_bytes()),
                    name,
                    m,
                ),
                // An entry that cannot even be stat'ed may still be left out by name.
                Err(_) => ctx.opts.excludes.matches(
                    &relpath::join(&node.rel, name.to_bytes()),
                    listing.dtype(i) == FileType::Directory,
                ),
            };
        if excluded {
            stats.excluded.fetch_add(1, Relaxed);
            left_out.push(i);
            metas.push(None);
            continue;
        }
        found += 1;
        match stat {
            Ok(m) => {
                if m.kind == Kind::File {
                    found_bytes += m.size;
                }
                metas.push(Some(m));
            }
            Err(e) => {
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "vanished during the run".to_string()
                } else {
                    e.to_string()
                };
                ctx.fail(&node.rel, name.to_bytes(), "stat", what);
                stats.entries_done.fetch_add(1, Relaxed);
                metas.push(None);
            }
        }
    }
    stats.entries_found.fetch_add(found, Relaxed);
    stats.bytes_found.fetch_add(found_bytes, Relaxed);

    // Merge the two sorted lists: note what both have and what only the target has.
    let mut present = vec![None; listing.len()];
    let mut extraneous = Vec::new();
    let mut j = 0;
    for (i, slot) in present.iter_mut().enumerate() {
        let name = listing.name_bytes(i);
        while j < dst_listing.len() && dst_listing.name_bytes(j) < name {
            extraneous.push(j);
            j += 1;
        }
        if j < dst_listing.len() && dst_listing.name_bytes(j) == name {
            if left_out.binary_search(&i).is_ok() {
                // Left out of the copy: the target's entry stays unless --delete-excluded.
                if ctx.opts.excludes.delete_excluded() {
                    extraneous.push(j);
                }
            } else {
                *slot = Some(dst_listing.dtype(j));
            }
            j += 1;
        }
    }
    extraneous.extend(j..dst_listing.len());
    // A new directory a killed run left under its temporary name is kept and filled on.
    let mut adopt = Vec::new();
    if !node.hidden {
        extraneous.retain(|&j| {
            let Some(own) = dst_listing.name_bytes(j).strip_prefix(NEW_DIR_PREFIX) else {
                return true;
            };
            let dir_like = matches!(
                dst_listing.dtype(j),
                FileType::Directory | FileType::Unknown
            );
            match listing.find(own) {
                Some(i)
                    if dir_like
                        && present[i].is_none()
                        && metas[i].is_some_and(|m| m.kind == Kind::Dir) =>
                {
                    adopt.push(i as u32);
                    false
                }
                _ => true,
            }
        });
        adopt.sort_unstable();
    }
    for j in extraneous {
        remove_extraneous(ctx, &node, &dst_listing, j, is_root);
    }
    drop(dst_listing);

    // Subdirectories each get a task, which opens them: descriptors are held only by
    // directories being worked on, not by every directory waiting in the queue.
    let previous = ctx
        .record
        .map(|r| r.previous_files(&node.rel))
        .unwrap_or_default();
    let work = Arc::new(DirWork {
        src,
        listing,
        metas,
        present,
        adopt,
        previous,
    });
    let mut others: Vec<u32> = Vec::new();
    for i in 0..work.listing.len() {
        let Some(meta) = work.metas[i] else { continue };
        if meta.kind != Kind::Dir {
            others.push(i as u32);
            continue;
        }
        let (work, node) = (work.clone(), node.clone());
        s.spawn(move |s| enter_dir(s, ctx, node, work, i));
    }

    let mut start = 0;
    let mut bytes = 0u64;
    for k in 0..others.len() {
        bytes += work.metas[others[k] as usize].map_or(0, |m| m.size);
        let last = k + 1 == others.len();
        if last || k + 1 - start >= BATCH_ENTRIES || bytes >= BATCH_BYTES {
            let batch = others[start..=k].to_vec();
            let (work, node) = (work.clone(), node.clone());
            if last {
                // This thread goes on with the last batch itself.
                handle_batch(ctx, &node, &work, &batch);
            } else {
                s.spawn(move |_| handle_batch(ctx, &node, &work, &batch));
            }
            start = k + 1;
            bytes = 0;
        }
    }
}

/// Mirrors the entries `batch` of `work`, recording what was placed as one chunk of the
/// manifest.
fn handle_batch(ctx: &Ctx<'_>, node: &DirNode<'_>, work: &DirWork, batch: &[u32]) {
    let mut chunk = ctx.record.map(|_| Chunk::new(&node.rel, batch.len()));
    for &i in batch {
        handle_entry(ctx, node, work, i as usize, &mut chunk);
    }
    if let (Some(rec), Some(chunk)) = (ctx.record, chunk) {
        rec.add(chunk);
    }
}

/// Opens the source subdirectory `i` of `work` and its target counterpart, then mirrors it.
fn enter_dir<'s, 'a: 's>(
    s: &rayon::Scope<'s>,
    ctx: &'a Ctx<'a>,
    node: Arc<DirNode<'a>>,
    work: Arc<DirWork>,
    i: usize,
) {
    if ctx.stopping() {
        return;
    }
    ctx.stats.entries_done.fetch_add(1, Relaxed);
    let Some(meta) = work.metas[i] else { return };
    let name = work.listing.name(i);
    let owner = (meta.uid, meta.gid);
    let (src_sub, via) = match ctx.owners.open_as_via(
        work.src.as_fd(),
        node.src_id,
        name,
        Some(owner),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
    ) {
        Ok(opened) => opened,
        Err(e) => return ctx.fail(&node.rel, name.to_bytes(), "open directory", e),
    };
    // Whoever could open it searches it: its owner, or a member its owner bits do not let in.
    let src_id = via.map_or(owner, |a| a.id);
    let read_x = || xattr::read(xattr::Target::Fd(src_sub.as_fd()));
    let want_x = match ctx.owners.retry_entry(src_sub.as_fd(), owner, read_x) {
        Ok(x) => x,
        Err(e) => {
            ctx.fail(&node.rel, name.to_bytes(), "read xattrs", e);
            Xattrs::default()
        }
    };
    // A new directory gets its own name once complete, unless nobody sees it meanwhile anyway
    // (or the source has an entry of its temporary name). One a killed run left under that name
    // is there already: opened, not made.
    let adopted = work.adopt.binary_search(&(i as u32)).is_ok();
    let tmp = if adopted {
        new_dir_name(name.to_bytes())
    } else if node.hidden || work.present[i].is_some() {
        None
    } else {
        new_dir_name(name.to_bytes()).filter(|t| work.listing.find(t.to_bytes()).is_none())
    };
    let present = if adopted {
        Some(FileType::Unknown)
    } else {
        work.present[i]
    };
    let (dst_sub, made, new_owner) =
        match prepare_dir(ctx, node.dst.as_fd(), name, present, tmp.as_deref(), &meta) {
            Ok(made) => made,
            Err((op, e)) => return ctx.fail(&node.rel, name.to_bytes(), op, e),
        };
    let rel = relpath::join(&node.rel, name.to_bytes());
    // A directory made in this run has no default ACL until its attributes are applied; one a
    // killed run left may have its final ones already.
    let default_acl = !made && has_default_acl(ctx, dst_sub.as_fd());
    let link_ref = node.link_ref.as_ref().and_then(|r| {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        ctx.owners.open_in(r.as_fd(), name, flags).ok()
    });
    drop(work);
    let want = ctx.wanted(|| rel.clone(), meta, true);
    let child = Arc::new(DirNode {
        ctx,
        hidden: node.hidden || tmp.is_some(),
        parent: Some(node),
        rel,
        dst: dst_sub,
        src_id,
        default_acl,
        link_ref,
        made,
        pending: tmp,
        new_owner,
        want,
        want_x,
    });
    process_dir(s, ctx, child, src_sub);
}

fn remove_extraneous(ctx: &Ctx<'_>, node: &DirNode<'_>, dst: &Listing, j: usize, is_root: bool) {
    if ctx.opts.no_delete {
        return;
    }
    let name = dst.name(j);
    let ex = &ctx.opts.excludes;
    if !ex.is_empty() && !ex.delete_excluded() {
        // What an exclude matches in the target is left alone, as is a cache folder there.
        let d = node.dst.as_fd();
        let is_dir = match dst.dtype(j) {
            FileType::Unknown => ctx
                .owners
                .retry_target(&[], &[d], || stat_at(d, name))
                .is_ok_and(|m| m.kind == Kind::Dir),
            t => t == FileType::Directory,
        };
        if ex.matches(&relpath::join(&node.rel, name.to_bytes()), is_dir) {
            return;
        }
        if is_dir && ex.caches() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let tagged = ctx.owners.open_in(d, name, flags).is_ok_and(|fd| {
                ctx.owners
                    .retry_target(&[], &[fd.as_fd()], || exclude::is_cache_dir(fd.as_fd()))
                    .unwrap_or(false)
            });
            if tagged {
                return;
            }
        }
    }
    if is_root {
        let n = name.to_bytes();
        // The mover's own state, and the root lost+found of an ext4 target (fsck needs it).
        if n == STATE_DIR.as_bytes() || (n == b"lost+found" && dst.dtype(j) == FileType::Directory)
        {
            return;
        }
    }
    let dst = node.dst.as_fd();
    match ctx
        .owners
        .retry_target(&[], &[dst], || crate::remove::remove(dst, name))
    {
        Ok(n) => {
            tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), "deleted");
            ctx.stats.deleted.fetch_add(n, Relaxed);
        }
        Err(e) => ctx.fail(&node.rel, name.to_bytes(), "delete", e),
    }
}

/// Opens the target subdirectory `name`, replacing a non-directory and creating it when missing
/// (mode 0700 until its attributes are applied at the end); with whether this call made it, and
/// whom a file the mover makes in it belongs to when known (see [`new_owner`]).
/// With `tmp`, the directory is the one of that temporary name instead.
fn prepare_dir(
    ctx: &Ctx<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    present: Option<FileType>,
    tmp: Option<&CStr>,
    want: &Meta,
) -> std::result::Result<(OwnedFd, bool, Option<Id>), (&'static str, std::io::Error)> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let name = tmp.unwrap_or(name);
    let open = || ctx.owners.open_in(dst, name, flags);
    if present.is_some() {
        match open() {
            Ok(fd) => {
                let o = stat_fd(&fd).ok().map(|m| new_owner(ctx.creator, &m));
                return Ok((fd, false, o));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                let n = ctx
                    .owners
                    .retry_target(&[], &[dst], || crate::remove::remove(dst, name))
                    .map_err(|e| ("delete", e))?;
                ctx.stats.deleted.fetch_add(n, Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(("open target directory", e)),
        }
    }
    let made = ctx
        .owners
        .retry_target(&[(want.uid, want.gid)], &[dst], || {
            match mkdirat(dst, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => Ok(true),
                // Not made here: it may hold entries.
                Err(Errno::EXIST) => Ok(false),
                Err(e) => Err(e.into()),
            }
        });
    let made = made.map_err(|e| ("mkdir", e))?;
    let fd = open().map_err(|e| ("open target directory", e))?;
    // A directory that had to be made by another owner goes to its own owner at once (through
    // its descriptor, so CAP_CHOWN applies without search permission), so that entries of that
    // owner can be made inside it. The final attributes are applied when it is done.
    let m = stat_fd(&fd).ok();
    if let Some(m) = &m
        && (m.uid, m.gid) != (want.uid, want.gid)
        && m.uid != 0
    {
        let (uid, gid) = (Uid::from_raw(want.uid), Gid::from_raw(want.gid));
        let _ = rustix::fs::fchown(&fd, Some(uid), Some(gid));
        // Its group may have changed: leave what new files get unknown.
        return Ok((fd, made, None));
    }
    Ok((fd, made, m.map(|m| new_owner(ctx.creator, &m))))
}
