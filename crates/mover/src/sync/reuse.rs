//! Reuse of a previous copy: an entry unchanged since then is hard-linked from it, not copied.

use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, OFlags, linkat, readlinkat};

use crate::content::same_content;
use crate::manifest;
use crate::meta::{Kind, Meta, stat_at};

use super::entry::{Entry, Outcome};

/// Hard-links the entry from the previous copy `reference` when it is unchanged there: same type,
/// size, mtime, owner, mode and extended attributes, and for a symlink the same target (with
/// `--checksum`, the same content too). Returns `None` when it must be copied.
///
/// When the previous manifest shows the source entry is still the one the previous run placed
/// (same change time, old enough: see [`PreviousFiles::unchanged`]) and the previous copy's
/// entry is still the one that manifest lists (same inode, type, size, mtime, mode, owner), the
/// extended attributes of neither are read and a symlink's target is not read: the manifest
/// holds them.
///
/// [`PreviousFiles::unchanged`]: manifest::PreviousFiles::unchanged
pub(super) fn reuse(e: &Entry<'_, '_>, reference: BorrowedFd<'_>) -> Option<Outcome> {
    let Entry {
        ctx,
        dst,
        name,
        meta,
        ..
    } = *e;
    if !matches!(meta.kind, Kind::File | Kind::Symlink) {
        return None;
    }
    let old = ctx
        .owners
        .retry_target(&[], &[reference], || stat_at(reference, name))
        .ok()?;
    let same = old.kind == meta.kind
        && old.size == meta.size
        && old.mtime == meta.mtime
        && old.uid == meta.uid
        && old.gid == meta.gid
        && (meta.kind == Kind::Symlink || old.perm == meta.perm);
    if !same {
        return None;
    }
    let recorded = if ctx.opts.checksum {
        None
    } else {
        e.previous.unchanged(name.to_bytes(), meta).filter(|p| {
            p.ino == old.ino
                && p.kind == old.kind
                && p.size == old.size
                && p.mtime == old.mtime
                && (old.kind == Kind::Symlink || p.mode == old.perm)
                && (p.uid, p.gid) == (old.uid, old.gid)
        })
    };
    let (hash, xattrs) = match recorded {
        Some(p) => (Some(p.hash), p.xattrs),
        None => compare_in_full(e, reference, &old)?,
    };
    let linked = ctx
        .owners
        .retry_target(&[(old.uid, old.gid)], &[dst, reference], || {
            linkat(reference, name, dst, name, AtFlags::empty()).map_err(Into::into)
        });
    // Too many links (EMLINK), a reference gone or on another filesystem: copy instead.
    linked.ok()?;
    // The link is the reference's inode: its manifest entry is the reference's attributes, and
    // a file keeps the hash the previous manifest recorded for it (read again when none did).
    // The source's change time is recorded: its extended attributes were found (or known) to be
    // the reference's after it was read.
    let entry = ctx.record.and_then(|_| {
        let hash = hash.or_else(|| e.previous.hash(name.to_bytes(), &old))?;
        Some(manifest::Entry::from_meta(&old, Vec::new(), xattrs, hash).with_ctime(meta.ctime))
    });
    Some(Outcome::Linked {
        ino: old.ino,
        entry,
    })
}

/// Compares a source entry with the previous copy's entry `old` whose basic attributes are
/// equal: a symlink's target, the content with `--checksum`, and the extended attributes of
/// both. Returns the symlink target's hash (for the manifest) and the digest of the extended
/// attributes when equal, `None` when the entry must be copied.
fn compare_in_full(
    e: &Entry<'_, '_>,
    reference: BorrowedFd<'_>,
    old: &Meta,
) -> Option<(Option<[u8; 32]>, [u8; 16])> {
    let Entry {
        ctx,
        node,
        src,
        name,
        meta,
        ..
    } = *e;
    let mut hash = None;
    if meta.kind == Kind::Symlink {
        let a = ctx.owners.retry(&[node.src_id], || {
            readlinkat(src, name, Vec::new()).map_err(Into::into)
        });
        let b = ctx.owners.retry_target(&[], &[reference], || {
            readlinkat(reference, name, Vec::new()).map_err(Into::into)
        });
        let a = a.ok()?;
        if a != b.ok()? {
            return None;
        }
        hash = Some(*blake3::hash(a.as_bytes()).as_bytes());
    } else if ctx.opts.checksum {
        let a = ctx.open_source_file(src, node.src_id, name, meta).ok()?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let b = ctx.owners.open_in(reference, name, flags).ok()?;
        if !same_content(&a, &b).ok()? {
            return None;
        }
    }
    let want_x = ctx
        .owners
        .source_xattrs(src, node.src_id, name, meta)
        .ok()?;
    let old_x = ctx
        .owners
        .target_xattrs(reference, name, old.kind, (old.uid, old.gid))
        .ok()?;
    (want_x == old_x).then(|| (hash, manifest::xattr_digest(&old_x)))
}
