//! Building the manifest of a tree already on disk.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags, openat, readlinkat};

use crate::listing::Listing;
use crate::meta::{Kind, Meta, Ts, stat_at};
use crate::xattr;

use super::format::{Chunk, encode_header};
use super::{Entry, hash_fd, xattr_digest};

/// The entry as found on disk: attributes, attribute digest and content hash.
pub fn describe(
    dir: BorrowedFd<'_>,
    name: &CStr,
    m: &Meta,
    path: Vec<u8>,
    hash: Option<[u8; 32]>,
) -> io::Result<Entry> {
    let xattrs = xattr_digest(&xattr::read(xattr::Target::At(dir, name))?);
    let hash = match (m.kind, hash) {
        (_, Some(h)) => h,
        (Kind::File, None) => {
            let fd = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            hash_fd(fd.as_fd())?
        }
        (Kind::Symlink, None) => {
            *blake3::hash(readlinkat(dir, name, Vec::new())?.as_bytes()).as_bytes()
        }
        _ => [0; 32],
    };
    Ok(Entry::from_meta(m, path, xattrs, hash))
}

/// Hashes known from a previous manifest, by inode: a file hard-linked from the previous
/// snapshot keeps its inode, size and mtime, and its content was hashed then.
pub type Known = HashMap<u64, (u64, Ts, [u8; 32])>;

/// What a previous manifest says about its files, for reuse.
pub fn known(entries: &[Entry]) -> Known {
    entries
        .iter()
        .filter(|e| e.kind == Kind::File)
        .map(|e| (e.ino, (e.size, e.mtime, e.hash)))
        .collect()
}

/// Writes the manifest of the tree at `root` to `out`, hashing file content in parallel, except
/// files whose inode, size and mtime `known` already has. Returns the number of entries and of
/// bytes hashed.
pub fn build(root: BorrowedFd<'_>, known: &Known, out: std::fs::File) -> io::Result<(u64, u64)> {
    let w = Mutex::new(BufWriter::new(out));
    let mut header = Vec::new();
    encode_header(&mut header, None);
    w.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(&header)?;
    let counts = Mutex::new((0u64, 0u64));
    let first_err: Mutex<Option<io::Error>> = Mutex::new(None);
    let fail = |e: io::Error| {
        first_err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    };
    let root = root.try_clone_to_owned()?;
    rayon::scope(|s| walk(s, root, Vec::new(), true, known, &w, &counts, &fail));
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut w = w.into_inner().unwrap_or_else(|p| p.into_inner());
    w.flush()?;
    w.get_ref().sync_data()?;
    Ok(counts.into_inner().unwrap_or_else(|p| p.into_inner()))
}

#[allow(clippy::too_many_arguments)]
fn walk<'s>(
    s: &rayon::Scope<'s>,
    dir: OwnedFd,
    rel: Vec<u8>,
    is_root: bool,
    known: &'s Known,
    w: &'s Mutex<BufWriter<std::fs::File>>,
    counts: &'s Mutex<(u64, u64)>,
    fail: &'s (dyn Fn(io::Error) + Sync),
) {
    let listing = match Listing::read(&dir) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let mut chunk = Chunk::new(&rel, listing.len());
    let (mut n, mut hashed) = (0u64, 0u64);
    for i in 0..listing.len() {
        let name = listing.name(i);
        if is_root && name.to_bytes() == store::layout::STATE_DIR.as_bytes() {
            continue;
        }
        let m = match stat_at(&dir, name) {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        if m.kind == Kind::Socket {
            continue;
        }
        let reuse = (m.kind == Kind::File)
            .then(|| {
                known
                    .get(&m.ino)
                    .filter(|k| k.0 == m.size && k.1 == m.mtime)
                    .map(|k| k.2)
            })
            .flatten();
        if m.kind == Kind::File && reuse.is_none() {
            hashed += m.size;
        }
        let path = crate::relpath::join(&rel, name.to_bytes());
        match describe(dir.as_fd(), name, &m, Vec::new(), reuse) {
            Ok(e) => chunk.push(name.to_bytes(), &e),
            Err(e) => {
                return fail(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", crate::relpath::display(&path)),
                ));
            }
        }
        n += 1;
        if m.kind == Kind::Dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match openat(&dir, name, flags, Mode::empty()) {
                Ok(sub) => s.spawn(move |s| walk(s, sub, path, false, known, w, counts, fail)),
                Err(e) => return fail(e.into()),
            }
        }
    }
    if let Err(e) = w
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(&chunk.buf)
    {
        return fail(e);
    }
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    c.0 += n;
    c.1 += hashed;
}
