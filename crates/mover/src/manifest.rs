//! The manifest of a snapshot: every entry with its type, size, mode, owner, mtime, a digest of
//! its extended attributes and the BLAKE3 hash of its content, so that `verify` can prove later
//! that the copy is still what was written.
//!
//! Format (all integers LEB128 varints, signed ones zigzag-encoded), after the 8-byte magic
//! `PVCBMAN1`: a sequence of records, each starting with a tag byte.
//!
//! - tag 1, directory: the path of a directory relative to the root (`len`, bytes; empty for the
//!   root). The entries that follow are in it.
//! - tag 2, entry: `name` (`len`, bytes), kind (u8: 0 file, 1 dir, 2 symlink, 3 fifo, 4 char
//!   device, 5 block device), mode, uid, gid, size, mtime seconds (signed), mtime nanoseconds,
//!   inode, rdev, a 16-byte digest of the extended attributes (all zero when there are none),
//!   and for files and symlinks a 32-byte BLAKE3 hash of the content (of the target, for a
//!   symlink).
//!
//! A name is stored once, so an entry takes about 60 bytes plus its name: a million entries fit
//! in tens of MiB.
//!
//! Order: directory records come in no particular order (they are written as parallel workers
//! finish), and one directory may have several records, each followed by some of its entries;
//! readers group entries by directory and never rely on order.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rustix::fs::{Mode, OFlags, openat, readlinkat};

use crate::listing::Listing;
use crate::meta::{Kind, Meta, Ts, stat_at};
use crate::xattr::{self, Xattrs};

const MAGIC: &[u8; 8] = b"PVCBMAN1";

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root.
    pub path: Vec<u8>,
    /// Type.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: Ts,
    /// Inode number when written (lets a later snapshot reuse the hash of a shared inode).
    pub ino: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Digest of the extended attributes (zero when none).
    pub xattrs: [u8; 16],
    /// BLAKE3 of the content (files) or the target (symlinks); zero otherwise.
    pub hash: [u8; 32],
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink => 2,
        Kind::Fifo => 3,
        Kind::CharDevice => 4,
        Kind::BlockDevice => 5,
        Kind::Socket => 6,
    }
}

fn code_kind(c: u8) -> Option<Kind> {
    Some(match c {
        0 => Kind::File,
        1 => Kind::Dir,
        2 => Kind::Symlink,
        3 => Kind::Fifo,
        4 => Kind::CharDevice,
        5 => Kind::BlockDevice,
        6 => Kind::Socket,
        _ => return None,
    })
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Digest of a set of extended attributes (zero for none).
pub fn xattr_digest(x: &Xattrs) -> [u8; 16] {
    if x.is_empty() {
        return [0; 16];
    }
    let mut h = blake3::Hasher::new();
    for (n, v) in x.iter() {
        h.update(&(n.to_bytes().len() as u64).to_le_bytes());
        h.update(n.to_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let mut d = [0; 16];
    d.copy_from_slice(&h.finalize().as_bytes()[..16]);
    d
}

/// BLAKE3 of everything readable from `fd`.
pub fn hash_fd(fd: BorrowedFd<'_>) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::from(fd.try_clone_to_owned()?);
    h.update_reader(&mut f)?;
    Ok(*h.finalize().as_bytes())
}

fn encode_entry(out: &mut Vec<u8>, name: &[u8], e: &Entry) {
    out.push(2);
    put_bytes(out, name);
    out.push(kind_code(e.kind));
    put(out, u64::from(e.mode));
    put(out, u64::from(e.uid));
    put(out, u64::from(e.gid));
    put(out, e.size);
    put(out, ((e.mtime.sec << 1) ^ (e.mtime.sec >> 63)) as u64);
    put(out, u64::from(e.mtime.nsec));
    put(out, e.ino);
    put(out, e.rdev);
    out.extend_from_slice(&e.xattrs);
    if matches!(e.kind, Kind::File | Kind::Symlink) {
        out.extend_from_slice(&e.hash);
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("manifest: {what}"))
}

/// One record of a manifest.
enum Record<'a> {
    /// The directory the following entries are in.
    Dir(&'a [u8]),
    /// An entry of the current directory: its name and attributes (with an empty path).
    Entry(&'a [u8], Entry),
}

/// Reads the records of a manifest one by one.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> io::Result<Reader<'a>> {
        if data.get(..8) != Some(MAGIC.as_slice()) {
            return Err(bad("not a pvc-backup manifest"));
        }
        Ok(Reader { data, pos: 8 })
    }

    fn get(&mut self) -> io::Result<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *self.data.get(self.pos).ok_or_else(|| bad("truncated"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(bad("varint too long"));
            }
        }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| bad("truncated"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> io::Result<Option<Record<'a>>> {
        let Some(&tag) = self.data.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        match tag {
            1 => {
                let n = self.get()? as usize;
                Ok(Some(Record::Dir(self.take(n)?)))
            }
            2 => {
                let n = self.get()? as usize;
                let name = self.take(n)?;
                let kind = code_kind(self.take(1)?[0]).ok_or_else(|| bad("unknown type"))?;
                let mode = self.get()? as u32;
                let uid = self.get()? as u32;
                let gid = self.get()? as u32;
                let size = self.get()?;
                let z = self.get()?;
                let sec = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let nsec = self.get()? as u32;
                let ino = self.get()?;
                let rdev = self.get()?;
                let mut xattrs = [0; 16];
                xattrs.copy_from_slice(self.take(16)?);
                let mut hash = [0; 32];
                if matches!(kind, Kind::File | Kind::Symlink) {
                    hash.copy_from_slice(self.take(32)?);
                }
                let e = Entry {
                    path: Vec::new(),
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    mtime: Ts { sec, nsec },
                    ino,
                    rdev,
                    xattrs,
                    hash,
                };
                Ok(Some(Record::Entry(name, e)))
            }
            _ => Err(bad("unknown record")),
        }
    }
}

/// Reads a manifest.
pub fn parse(data: &[u8]) -> io::Result<Vec<Entry>> {
    let mut r = Reader::new(data)?;
    let mut dir: &[u8] = b"";
    let mut out = Vec::new();
    while let Some(rec) = r.next()? {
        match rec {
            Record::Dir(d) => dir = d,
            Record::Entry(name, mut e) => {
                e.path = crate::relpath::join(dir, name);
                out.push(e);
            }
        }
    }
    Ok(out)
}

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

impl Entry {
    /// The entry for attributes already read: `xattrs` is their [`xattr_digest`], `hash` the
    /// content hash (zero for entries without content).
    pub fn from_meta(m: &Meta, path: Vec<u8>, xattrs: [u8; 16], hash: [u8; 32]) -> Entry {
        Entry {
            path,
            kind: m.kind,
            mode: m.perm,
            uid: m.uid,
            gid: m.gid,
            size: if m.kind == Kind::Dir { 0 } else { m.size },
            mtime: m.mtime,
            ino: m.ino,
            rdev: m.rdev,
            xattrs,
            hash,
        }
    }
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
    w.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(MAGIC)?;
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
        if is_root && name.to_bytes() == crate::STATE_DIR.as_bytes() {
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

/// A previous snapshot's manifest, indexed by directory: a new snapshot looks up the hashes of
/// the files it shares with it one directory at a time, so only the encoded manifest and the
/// directory being worked on are held in memory.
#[derive(Debug, Default)]
pub struct Previous {
    data: Vec<u8>,
    dirs: HashMap<Vec<u8>, Vec<Range<usize>>>,
}

impl Previous {
    /// Indexes an encoded manifest; an error when it is not one (or is damaged).
    pub fn load(data: Vec<u8>) -> io::Result<Previous> {
        let mut dirs: HashMap<Vec<u8>, Vec<Range<usize>>> = HashMap::new();
        let mut r = Reader::new(&data)?;
        let mut open: Option<(&[u8], usize)> = None;
        let mut close = |open: Option<(&[u8], usize)>, end: usize| {
            if let Some((d, start)) = open
                && start < end
            {
                dirs.entry(d.to_vec()).or_default().push(start..end);
            }
        };
        loop {
            let at = r.pos;
            match r.next()? {
                None => {
                    close(open.take(), at);
                    break;
                }
                Some(Record::Dir(d)) => {
                    close(open.take(), at);
                    open = Some((d, r.pos));
                }
                Some(Record::Entry(..)) if open.is_none() => open = Some((b"", at)),
                Some(Record::Entry(..)) => {}
            }
        }
        Ok(Previous { data, dirs })
    }

    /// The regular files the previous manifest lists in the directory `rel`.
    pub fn files_in(&self, rel: &[u8]) -> PreviousFiles {
        let mut v: Vec<(Box<[u8]>, Hashed)> = Vec::new();
        for range in self.dirs.get(rel).into_iter().flatten() {
            let mut r = Reader {
                data: &self.data[..range.end],
                pos: range.start,
            };
            // Ranges were read once already: they decode.
            while let Ok(Some(rec)) = r.next() {
                if let Record::Entry(name, e) = rec
                    && e.kind == Kind::File
                {
                    let h = Hashed {
                        ino: e.ino,
                        size: e.size,
                        mtime: e.mtime,
                        hash: e.hash,
                    };
                    v.push((name.into(), h));
                }
            }
        }
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        PreviousFiles(v)
    }
}

/// The files of one directory of a previous manifest, by name.
#[derive(Debug, Default)]
pub struct PreviousFiles(Vec<(Box<[u8]>, Hashed)>);

/// What a manifest says about one file, enough to tell whether a file on disk is that one.
#[derive(Debug, Clone, Copy)]
struct Hashed {
    ino: u64,
    size: u64,
    mtime: Ts,
    hash: [u8; 32],
}

impl PreviousFiles {
    /// The recorded hash of the file `name`, when the file on disk (`m`) is the one recorded:
    /// same inode, size and mtime (a hard link to it keeps all three).
    pub fn hash(&self, name: &[u8], m: &Meta) -> Option<[u8; 32]> {
        let i = self.0.binary_search_by(|e| (*e.0).cmp(name)).ok()?;
        let h = self.0[i].1;
        (m.kind == Kind::File && h.ino == m.ino && h.size == m.size && h.mtime == m.mtime)
            .then_some(h.hash)
    }
}

/// Entries of one directory, encoded, to be added to a manifest in one piece.
#[derive(Debug)]
pub struct Chunk {
    buf: Vec<u8>,
    entries: u64,
}

impl Chunk {
    /// A chunk of entries in the directory `rel` (relative to the root, empty for the root).
    pub fn new(rel: &[u8], capacity: usize) -> Chunk {
        let mut buf = Vec::with_capacity(64 * capacity + rel.len() + 8);
        buf.push(1);
        put_bytes(&mut buf, rel);
        Chunk { buf, entries: 0 }
    }

    /// Adds the entry `name` of the chunk's directory (the entry's own path is not used).
    pub fn push(&mut self, name: &[u8], e: &Entry) {
        encode_entry(&mut self.buf, name, e);
        self.entries += 1;
    }
}

/// A manifest written while a tree is being made, by the workers that make it: each adds the
/// entries it placed, in chunks, as it goes. The first error is kept and makes [`finish`] fail,
/// since a manifest that misses an entry would make a good snapshot look damaged.
///
/// [`finish`]: Recorder::finish
#[derive(Debug)]
pub struct Recorder {
    out: Mutex<Option<BufWriter<std::fs::File>>>,
    previous: Option<Previous>,
    entries: AtomicU64,
    hashed: AtomicU64,
    error: Mutex<Option<io::Error>>,
}

impl Recorder {
    /// Starts a manifest in `out`; `previous` is the manifest of the tree the new one shares
    /// files with, whose hashes are reused.
    pub fn new(out: std::fs::File, previous: Option<Previous>) -> io::Result<Recorder> {
        let mut w = BufWriter::with_capacity(1 << 20, out);
        w.write_all(MAGIC)?;
        Ok(Recorder {
            out: Mutex::new(Some(w)),
            previous,
            entries: AtomicU64::new(0),
            hashed: AtomicU64::new(0),
            error: Mutex::new(None),
        })
    }

    /// The files the previous manifest lists in the directory `rel` (none without one).
    pub fn previous_files(&self, rel: &[u8]) -> PreviousFiles {
        self.previous
            .as_ref()
            .map(|p| p.files_in(rel))
            .unwrap_or_default()
    }

    /// Counts bytes read to hash content.
    pub fn hashed(&self, bytes: u64) {
        self.hashed.fetch_add(bytes, Relaxed);
    }

    /// Adds a chunk of entries.
    pub fn add(&self, chunk: Chunk) {
        if chunk.entries == 0 {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let written = match out.as_mut() {
            Some(w) => w.write_all(&chunk.buf),
            None => Err(io::Error::other("manifest already finished")),
        };
        drop(out);
        match written {
            Ok(()) => {
                self.entries.fetch_add(chunk.entries, Relaxed);
            }
            Err(e) => self.fail(e),
        }
    }

    /// Records that an entry could not be described: the manifest is not written.
    pub fn fail(&self, e: io::Error) {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    /// Writes out what is buffered and syncs it. Returns the number of entries and of bytes
    /// hashed, or the first error of any worker.
    pub fn finish(&self) -> io::Result<(u64, u64)> {
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let w = self.out.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut w = w.ok_or_else(|| io::Error::other("manifest already finished"))?;
        w.flush()?;
        w.get_ref().sync_data()?;
        Ok((self.entries.load(Relaxed), self.hashed.load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_encoding() {
        let e = Entry {
            path: b"d/\xffname".to_vec(),
            kind: Kind::File,
            mode: 0o4755,
            uid: 1001,
            gid: 3000,
            size: 1 << 40,
            mtime: Ts {
                sec: -5,
                nsec: 999_999_999,
            },
            ino: u64::MAX,
            rdev: 0,
            xattrs: [7; 16],
            hash: [9; 32],
        };
        let link = Entry {
            path: b"d/l".to_vec(),
            kind: Kind::Symlink,
            hash: [1; 32],
            ..e.clone()
        };
        let dev = Entry {
            path: b"d/dev".to_vec(),
            kind: Kind::CharDevice,
            rdev: 259,
            hash: [0; 32],
            ..e.clone()
        };
        let mut data = MAGIC.to_vec();
        data.push(1);
        put_bytes(&mut data, b"d");
        for x in [&e, &link, &dev] {
            encode_entry(&mut data, &x.path[2..], x);
        }
        assert_eq!(parse(&data).unwrap(), vec![e, link, dev]);
        assert!(
            parse(&data[..data.len() - 1]).is_err(),
            "a truncated manifest is an error"
        );
        assert!(parse(b"something else").is_err());
    }
}
