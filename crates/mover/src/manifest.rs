//! The manifest of a snapshot: every entry with its type, size, mode, owner, mtime, a digest of
//! its extended attributes and the BLAKE3 hash of its content, so that `verify` can prove later
//! that the copy is still what was written.
//!
//! Format (all integers LEB128 varints, signed ones zigzag-encoded), after the 8-byte magic
//! `PVCBMAN3`: the time the run that wrote it started (a `0`, or a `1` followed by seconds
//! (signed) and nanoseconds), then a sequence of records, each starting with a tag byte.
//!
//! - tag 1, directory: the path of a directory relative to the root (`len`, bytes; empty for the
//!   root). The entries that follow are in it.
//! - tag 2, entry: `name` (`len`, bytes), kind (u8: 0 file, 1 dir, 2 symlink, 3 fifo, 4 char
//!   device, 5 block device), mode, uid, gid, size, mtime seconds (signed), mtime nanoseconds,
//!   inode, rdev, the source's change time when the entry was placed (`0` when not recorded,
//!   else `1 +` its seconds minus the mtime's seconds (signed), then its nanoseconds minus the
//!   mtime's (signed): usually two bytes), a 16-byte digest of the extended attributes (all zero
//!   when there are none), and for files and symlinks a 32-byte BLAKE3 hash of the content (of
//!   the target, for a symlink).
//! - tag 3, index (last, optional): where each directory's files and symlinks are, so that a
//!   later run can read those of one directory without reading the whole manifest: the number of
//!   directories, then for each its path (`len`, bytes), the number of ranges and each range
//!   (offset of its first entry from the start of the file, length in bytes). A range holds
//!   entries of that directory only, among them every file and symlink of it; ranges of other
//!   entries only may be left out. After the index come the offset of its tag byte (8 bytes,
//!   little-endian) and the 8 bytes `PVCBIDX1`. Readers of all entries stop at the tag.
//!
//! Manifests with the magic `PVCBMAN2` are the same without an index; those with `PVCBMAN1`
//! (older versions) have no start time and no change times either. Both are read as such.
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

const MAGIC: &[u8; 8] = b"PVCBMAN3";
/// The second format: no directory index.
const MAGIC_V2: &[u8; 8] = b"PVCBMAN2";
/// The first format, without start time and change times.
const MAGIC_V1: &[u8; 8] = b"PVCBMAN1";
/// The last 8 bytes of a manifest that ends with a directory index.
const INDEX_MARK: &[u8; 8] = b"PVCBIDX1";
/// The bytes after the index: its offset and [`INDEX_MARK`].
const TRAILER: u64 = 16;

/// How much older than the start of the run that recorded it a source's change time must be for
/// a later run to trust that the source entry is still what that run saw. Change times are
/// taken from a coarse clock (a tick of up to 10 ms, whole seconds on some filesystems, the
/// server's clock on network filesystems): a change made during the run, in the same tick as an
/// earlier change, leaves the change time as it was. Two seconds cover all of these, and a clock
/// skew of the source's filesystem of up to about a second.
pub const CHANGE_MARGIN: Ts = Ts { sec: 2, nsec: 0 };

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
    /// The source entry's change time (ctime) as seen when this entry was placed, when the run
    /// that placed it knows the entry's extended attributes were then the source's; `None` in
    /// manifests of older versions and for entries placed otherwise.
    pub ctime: Option<Ts>,
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

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
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
    put(out, zigzag(e.mtime.sec));
    put(out, u64::from(e.mtime.nsec));
    put(out, e.ino);
    put(out, e.rdev);
    match e.ctime {
        None => put(out, 0),
        // Relative to the mtime, which it usually equals or follows closely (a difference too
        // large to encode is left unrecorded).
        Some(c) => match zigzag(c.sec.wrapping_sub(e.mtime.sec)).checked_add(1) {
            Some(d) => {
                put(out, d);
                put(out, zigzag(i64::from(c.nsec) - i64::from(e.mtime.nsec)));
            }
            None => put(out, 0),
        },
    }
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

/// The header of a manifest: the time the run that wrote it started.
fn encode_header(out: &mut Vec<u8>, started: Option<Ts>) {
    out.extend_from_slice(MAGIC);
    match started {
        None => put(out, 0),
        Some(t) => {
            put(out, 1);
            put(out, zigzag(t.sec));
            put(out, u64::from(t.nsec));
        }
    }
}

/// Reads the records of a manifest one by one.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Whether entries carry a change time (the second format and later).
    v2: bool,
    /// Whether an index may end the records (the third format).
    v3: bool,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the first record, and the start time the header holds.
    fn new(data: &'a [u8]) -> io::Result<(Reader<'a>, Option<Ts>)> {
        let magic = data.get(..8);
        if magic == Some(MAGIC_V1.as_slice()) {
            return Ok((
                Reader {
                    data,
                    pos: 8,
                    v2: false,
                    v3: false,
                },
                None,
            ));
        }
        let v3 = magic == Some(MAGIC.as_slice());
        if !v3 && magic != Some(MAGIC_V2.as_slice()) {
            return Err(bad("not a pvc-backup manifest"));
        }
        let mut r = Reader {
            data,
            pos: 8,
            v2: true,
            v3,
        };
        let started = match r.get()? {
            0 => None,
            1 => {
                let sec = unzigzag(r.get()?);
                let nsec = u32::try_from(r.get()?).map_err(|_| bad("bad start time"))?;
                Some(Ts { sec, nsec })
            }
            _ => return Err(bad("bad header")),
        };
        Ok((r, started))
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
                let sec = unzigzag(self.get()?);
                let nsec = self.get()? as u32;
                let ino = self.get()?;
                let rdev = self.get()?;
                let ctime = match self.v2 {
                    false => None,
                    true => match self.get()? {
                        0 => None,
                        d => {
                            let csec = sec.wrapping_add(unzigzag(d - 1));
                            let cnsec = i64::from(nsec) + unzigzag(self.get()?);
                            let cnsec = u32::try_from(cnsec)
                                .ok()
                                .filter(|n| *n < 1_000_000_000)
                                .ok_or_else(|| bad("bad change time"))?;
                            Some(Ts {
                                sec: csec,
                                nsec: cnsec,
                            })
                        }
                    },
                };
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
                    ctime,
                    xattrs,
                    hash,
                };
                Ok(Some(Record::Entry(name, e)))
            }
            // The index comes last: the records end here.
            3 if self.v3 => Ok(None),
            _ => Err(bad("unknown record")),
        }
    }
}

/// Reads a manifest.
pub fn parse(data: &[u8]) -> io::Result<Vec<Entry>> {
    let (mut r, _) = Reader::new(data)?;
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
            ctime: None,
            xattrs,
            hash,
        }
    }

    /// The entry with the source's change time `ctime` recorded: the source entry had it when
    /// its attributes were read, and the entry's extended attributes are the ones read then.
    pub fn with_ctime(self, ctime: Ts) -> Entry {
        Entry {
            ctime: Some(ctime),
            ..self
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
/// the files it shares with it one directory at a time. A manifest that ends with an index is
/// read one directory at a time, as workers need it; an older one is read whole and indexed.
#[derive(Debug)]
pub struct Previous {
    data: Data,
    v2: bool,
    started: Option<Ts>,
    dirs: Dirs,
}

/// Where each directory's entries are in a manifest: byte ranges, by directory path.
type Dirs = HashMap<Vec<u8>, Vec<Range<u64>>>;

/// Where the entries of a previous manifest are read from.
#[derive(Debug)]
enum Data {
    /// The whole manifest, read at once.
    Memory(Vec<u8>),
    /// The open manifest, whose index gave the ranges.
    File(std::fs::File),
}

impl Previous {
    /// Indexes an encoded manifest; an error when it is not one (or is damaged).
    pub fn load(data: Vec<u8>) -> io::Result<Previous> {
        let mut dirs = Dirs::new();
        let (mut r, started) = Reader::new(&data)?;
        let v2 = r.v2;
        let mut open: Option<(&[u8], usize)> = None;
        let mut close = |open: Option<(&[u8], usize)>, end: usize| {
            if let Some((d, start)) = open
                && start < end
            {
                dirs.entry(d.to_vec())
                    .or_default()
                    .push(start as u64..end as u64);
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
        Ok(Previous {
            data: Data::Memory(data),
            v2,
            started,
            dirs,
        })
    }

    /// Opens the manifest in `file`: through its index when it ends with one (only the header
    /// and the index are read now), else read whole as by [`load`](Previous::load).
    pub fn open(file: std::fs::File) -> io::Result<Previous> {
        match Previous::indexed(&file) {
            Some((started, dirs)) => Ok(Previous {
                data: Data::File(file),
                v2: true,
                started,
                dirs,
            }),
            None => {
                let mut data = Vec::new();
                let mut f = &file;
                io::Seek::seek(&mut f, io::SeekFrom::Start(0))?;
                io::Read::read_to_end(&mut f, &mut data)?;
                Previous::load(data)
            }
        }
    }

    /// The start time and the index of a manifest of the third format; `None` when it has no
    /// index or the index does not hold together (then the manifest is read whole).
    fn indexed(file: &std::fs::File) -> Option<(Option<Ts>, Dirs)> {
        use std::os::unix::fs::FileExt;
        let size = file.metadata().ok()?.len();
        let mut head = [0u8; 40];
        let n = usize::try_from(size.min(head.len() as u64)).ok()?;
        file.read_exact_at(&mut head[..n], 0).ok()?;
        let (r, started) = Reader::new(&head[..n]).ok()?;
        let header_end = r.pos as u64;
        if !r.v3 || size < header_end + TRAILER {
            return None;
        }
        let mut trailer = [0u8; TRAILER as usize];
        file.read_exact_at(&mut trailer, size - TRAILER).ok()?;
        if &trailer[8..] != INDEX_MARK {
            return None;
        }
        let at = u64::from_le_bytes(trailer[..8].try_into().ok()?);
        if at < header_end || at >= size - TRAILER {
            return None;
        }
        let mut index = vec![0u8; usize::try_from(size - TRAILER - at).ok()?];
        file.read_exact_at(&mut index, at).ok()?;
        let mut r = Reader {
            data: &index,
            pos: 0,
            v2: true,
            v3: true,
        };
        if r.take(1).ok()? != [3] {
            return None;
        }
        let ndirs = r.get().ok()?;
        let mut dirs = HashMap::new();
        for _ in 0..ndirs {
            let n = usize::try_from(r.get().ok()?).ok()?;
            let dir = r.take(n).ok()?.to_vec();
            let nranges = r.get().ok()?;
            let mut ranges = Vec::new();
            for _ in 0..nranges {
                let start = r.get().ok()?;
                let end = start.checked_add(r.get().ok()?)?;
                // Entries lie between the header and the index.
                if start < header_end || end > at {
                    return None;
                }
                ranges.push(start..end);
            }
            dirs.insert(dir, ranges);
        }
        (r.pos == index.len()).then_some((started, dirs))
    }

    /// When the run that wrote the manifest started (`None` for manifests of older versions).
    pub fn started(&self) -> Option<Ts> {
        self.started
    }

    /// The regular files and symlinks the previous manifest lists in the directory `rel`. A
    /// range that cannot be read or decoded gives what it held up to there: files not found
    /// are only read again.
    pub fn files_in(&self, rel: &[u8]) -> PreviousFiles {
        let mut v: Vec<(Box<[u8]>, Entry)> = Vec::new();
        let mut buf = Vec::new();
        for range in self.dirs.get(rel).into_iter().flatten() {
            let data: &[u8] = match &self.data {
                Data::Memory(d) => {
                    let (Ok(start), Ok(end)) =
                        (usize::try_from(range.start), usize::try_from(range.end))
                    else {
                        continue;
                    };
                    &d[..end][start..]
                }
                Data::File(f) => {
                    use std::os::unix::fs::FileExt;
                    let Ok(len) = usize::try_from(range.end - range.start) else {
                        continue;
                    };
                    buf.resize(len, 0);
                    if f.read_exact_at(&mut buf, range.start).is_err() {
                        continue;
                    }
                    &buf
                }
            };
            let mut r = Reader {
                data,
                pos: 0,
                v2: self.v2,
                v3: false,
            };
            while let Ok(Some(rec)) = r.next() {
                if let Record::Entry(name, e) = rec
                    && matches!(e.kind, Kind::File | Kind::Symlink)
                {
                    v.push((name.into(), e));
                }
            }
        }
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        PreviousFiles {
            entries: v,
            trusted_before: self.started.map(|s| s.minus(CHANGE_MARGIN)),
        }
    }
}

/// The files and symlinks of one directory of a previous manifest, by name.
#[derive(Debug, Default)]
pub struct PreviousFiles {
    entries: Vec<(Box<[u8]>, Entry)>,
    /// Change times before this one are older than the previous run by [`CHANGE_MARGIN`].
    trusted_before: Option<Ts>,
}

impl PreviousFiles {
    fn get(&self, name: &[u8]) -> Option<&Entry> {
        let i = self.entries.binary_search_by(|e| (*e.0).cmp(name)).ok()?;
        Some(&self.entries[i].1)
    }

    /// The recorded hash of the file `name`, when the file on disk (`m`) is the one recorded:
    /// same inode, size and mtime (a hard link to it keeps all three).
    pub fn hash(&self, name: &[u8], m: &Meta) -> Option<[u8; 32]> {
        let h = self.get(name)?;
        (m.kind == Kind::File
            && h.kind == Kind::File
            && h.ino == m.ino
            && h.size == m.size
            && h.mtime == m.mtime)
            .then_some(h.hash)
    }

    /// The recorded entry `name`, when the source entry `m` (as the copy wants it: owner and
    /// mode may come from a metadata manifest) is still what the previous run placed: same type,
    /// size, mtime, mode, owner, and the same change time as the one recorded, which is older
    /// than the previous run's start by [`CHANGE_MARGIN`]. Setting an extended attribute or an
    /// ACL, writing, chmod and chown all set the change time to the current time, and nothing
    /// lets a process set it to an older one, so the source's extended attributes are still the
    /// ones recorded. `None` when anything differs or is not recorded.
    pub fn unchanged(&self, name: &[u8], m: &Meta) -> Option<&Entry> {
        let trusted_before = self.trusted_before?;
        let e = self.get(name)?;
        let ctime = e.ctime?;
        (e.kind == m.kind
            && e.size == m.size
            && e.mtime == m.mtime
            && (m.kind == Kind::Symlink || e.mode == m.perm)
            && (e.uid, e.gid) == (m.uid, m.gid)
            && ctime == m.ctime
            && ctime < trusted_before)
            .then_some(e)
    }
}

/// Entries of one directory, encoded, to be added to a manifest in one piece.
#[derive(Debug)]
pub struct Chunk {
    buf: Vec<u8>,
    /// Where in `buf` the directory's path is; the entries follow it.
    rel: Range<usize>,
    entries: u64,
    /// Whether a file or a symlink is among the entries (only those are looked up later).
    files: bool,
}

impl Chunk {
    /// A chunk of entries in the directory `rel` (relative to the root, empty for the root).
    pub fn new(rel: &[u8], capacity: usize) -> Chunk {
        let mut buf = Vec::with_capacity(64 * capacity + rel.len() + 8);
        buf.push(1);
        put_bytes(&mut buf, rel);
        let end = buf.len();
        Chunk {
            buf,
            rel: end - rel.len()..end,
            entries: 0,
            files: false,
        }
    }

    /// Adds the entry `name` of the chunk's directory (the entry's own path is not used).
    pub fn push(&mut self, name: &[u8], e: &Entry) {
        encode_entry(&mut self.buf, name, e);
        self.entries += 1;
        self.files |= matches!(e.kind, Kind::File | Kind::Symlink);
    }
}

/// A manifest written while a tree is being made, by the workers that make it: each adds the
/// entries it placed, in chunks, as it goes. The first error is kept and makes [`finish`] fail,
/// since a manifest that misses an entry would make a good snapshot look damaged.
///
/// [`finish`]: Recorder::finish
#[derive(Debug)]
pub struct Recorder {
    out: Mutex<Option<Out>>,
    previous: Option<Previous>,
    entries: AtomicU64,
    hashed: AtomicU64,
    error: Mutex<Option<io::Error>>,
}

/// The manifest being written, and where each directory's entries went in it.
#[derive(Debug)]
struct Out {
    w: BufWriter<std::fs::File>,
    /// Bytes written so far.
    pos: u64,
    index: Dirs,
}

impl Recorder {
    /// Starts a manifest in `out` for a run that started at `started` (before it read anything
    /// of the source); `previous` is the manifest of the tree the new one shares files with,
    /// whose hashes are reused.
    pub fn new(
        out: std::fs::File,
        started: Ts,
        previous: Option<Previous>,
    ) -> io::Result<Recorder> {
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut header = Vec::new();
        encode_header(&mut header, Some(started));
        w.write_all(&header)?;
        Ok(Recorder {
            out: Mutex::new(Some(Out {
                w,
                pos: header.len() as u64,
                index: Dirs::new(),
            })),
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
            Some(o) => o.w.write_all(&chunk.buf).map(|()| {
                let len = chunk.buf.len() as u64;
                let entries = o.pos + chunk.rel.end as u64..o.pos + len;
                o.pos += len;
                let rel = &chunk.buf[chunk.rel.clone()];
                if !chunk.files {
                    return;
                }
                match o.index.get_mut(rel) {
                    Some(v) => v.push(entries),
                    None => {
                        o.index.insert(rel.to_vec(), vec![entries]);
                    }
                }
            }),
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

    /// Writes out what is buffered and the index, and syncs it. Returns the number of entries
    /// and of bytes hashed, or the first error of any worker.
    pub fn finish(&self) -> io::Result<(u64, u64)> {
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let o = self.out.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Out { mut w, pos, index } =
            o.ok_or_else(|| io::Error::other("manifest already finished"))?;
        w.write_all(&encode_index(&index, pos))?;
        w.flush()?;
        w.get_ref().sync_data()?;
        Ok((self.entries.load(Relaxed), self.hashed.load(Relaxed)))
    }
}

/// The index of a manifest whose records end at `at`, with the trailer that locates it.
fn encode_index(index: &Dirs, at: u64) -> Vec<u8> {
    let mut out = vec![3];
    put(&mut out, index.len() as u64);
    for (dir, ranges) in index {
        put_bytes(&mut out, dir);
        put(&mut out, ranges.len() as u64);
        for r in ranges {
            put(&mut out, r.start);
            put(&mut out, r.end - r.start);
        }
    }
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(INDEX_MARK);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
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
            ctime: Some(Ts {
                sec: 1_764_000_000,
                nsec: 3,
            }),
            xattrs: [7; 16],
            hash: [9; 32],
        }
    }

    #[test]
    fn entries_round_trip_through_the_encoding() {
        let e = sample();
        let link = Entry {
            path: b"d/l".to_vec(),
            kind: Kind::Symlink,
            ctime: None,
            hash: [1; 32],
            ..e.clone()
        };
        let dev = Entry {
            path: b"d/dev".to_vec(),
            kind: Kind::CharDevice,
            rdev: 259,
            ctime: Some(e.mtime),
            hash: [0; 32],
            ..e.clone()
        };
        let mut data = Vec::new();
        encode_header(&mut data, None);
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

    /// An entry as the first format wrote it (no change time).
    fn encode_v1(out: &mut Vec<u8>, name: &[u8], e: &Entry) {
        out.push(2);
        put_bytes(out, name);
        out.push(kind_code(e.kind));
        for v in [
            u64::from(e.mode),
            u64::from(e.uid),
            u64::from(e.gid),
            e.size,
        ] {
            put(out, v);
        }
        put(out, zigzag(e.mtime.sec));
        put(out, u64::from(e.mtime.nsec));
        put(out, e.ino);
        put(out, e.rdev);
        out.extend_from_slice(&e.xattrs);
        out.extend_from_slice(&e.hash);
    }

    #[test]
    fn manifests_of_the_first_format_are_read_without_change_times() {
        let e = Entry {
            ctime: None,
            ..sample()
        };
        let mut data = MAGIC_V1.to_vec();
        data.push(1);
        put_bytes(&mut data, b"d");
        encode_v1(&mut data, b"\xffname", &e);
        assert_eq!(parse(&data).unwrap(), vec![e.clone()]);
        let p = Previous::load(data).unwrap();
        assert_eq!(p.started(), None);
        let files = p.files_in(b"d");
        assert_eq!(
            files.get(b"\xffname"),
            Some(&Entry {
                path: Vec::new(),
                ..e
            })
        );
    }

    #[test]
    fn a_recorded_entry_is_trusted_only_with_an_old_enough_equal_change_time() {
        let started = Ts {
            sec: 1_764_000_010,
            nsec: 500,
        };
        let ctime = started.minus(CHANGE_MARGIN).minus(Ts { sec: 0, nsec: 1 });
        let e = Entry {
            ctime: Some(ctime),
            ..sample()
        };
        let encode = |started: Option<Ts>, e: &Entry| {
            let mut data = Vec::new();
            encode_header(&mut data, started);
            data.push(1);
            put_bytes(&mut data, b"d");
            encode_entry(&mut data, b"f", e);
            Previous::load(data).unwrap()
        };
        let m = Meta {
            kind: Kind::File,
            perm: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            blocks: 0,
            mtime: e.mtime,
            ctime,
            atime: e.mtime,
            ino: 1,
            dev: 1,
            nlink: 1,
            rdev: 0,
        };
        let p = encode(Some(started), &e);
        assert_eq!(p.started(), Some(started));
        assert!(p.files_in(b"d").unchanged(b"f", &m).is_some());
        assert!(p.files_in(b"d").unchanged(b"g", &m).is_none());
        assert!(p.files_in(b"e").unchanged(b"f", &m).is_none());
        // Any attribute that differs, a later change time, or a change time within the margin.
        let later = Ts {
            nsec: ctime.nsec + 1,
            ..ctime
        };
        for m in [
            Meta { size: 1, ..m },
            Meta { perm: 0o644, ..m },
            Meta { uid: 0, ..m },
            Meta { gid: 0, ..m },
            Meta { mtime: later, ..m },
            Meta { ctime: later, ..m },
            Meta {
                kind: Kind::Symlink,
                ..m
            },
        ] {
            assert!(p.files_in(b"d").unchanged(b"f", &m).is_none(), "{m:?}");
        }
        let recent = Entry {
            ctime: Some(later),
            ..e.clone()
        };
        let m_later = Meta { ctime: later, ..m };
        let p = encode(Some(started), &recent);
        assert!(p.files_in(b"d").unchanged(b"f", &m_later).is_none());
        // Without a start time or a change time, nothing is trusted.
        assert!(
            encode(None, &e)
                .files_in(b"d")
                .unchanged(b"f", &m)
                .is_none()
        );
        let unrecorded = Entry {
            ctime: None,
            ..e.clone()
        };
        let p = encode(Some(started), &unrecorded);
        assert!(p.files_in(b"d").unchanged(b"f", &m).is_none());
    }

    /// A manifest as a run writes it: several directories, one of them in several chunks.
    fn recorded() -> (std::fs::File, Vec<Entry>) {
        let file = tempfile::tempfile().unwrap();
        let started = Ts {
            sec: 1_764_000_000,
            nsec: 0,
        };
        let r = Recorder::new(file.try_clone().unwrap(), started, None).unwrap();
        let mut all = Vec::new();
        for (dir, names) in [
            (&b""[..], &[&b"top"[..]][..]),
            (b"a", &[b"x", b"y"]),
            (b"a/b", &[b"z"]),
            (b"a", &[b"w"]),
        ] {
            let mut chunk = Chunk::new(dir, names.len());
            for (i, name) in names.iter().enumerate() {
                let e = Entry {
                    path: crate::relpath::join(dir, name),
                    size: i as u64,
                    ..sample()
                };
                chunk.push(name, &e);
                all.push(e);
            }
            r.add(chunk);
            if dir == b"a" && all.len() == 3 {
                // A subdirectory's own entry comes in a chunk of its own.
                let mut chunk = Chunk::new(dir, 1);
                let e = Entry {
                    path: b"a/b".to_vec(),
                    kind: Kind::Dir,
                    hash: [0; 32],
                    ..sample()
                };
                chunk.push(b"b", &e);
                all.push(e);
                r.add(chunk);
            }
        }
        assert_eq!(r.finish().unwrap().0, 6);
        (file, all)
    }

    fn whole(mut f: &std::fs::File) -> Vec<u8> {
        let mut data = Vec::new();
        io::Seek::seek(&mut f, io::SeekFrom::Start(0)).unwrap();
        io::Read::read_to_end(&mut f, &mut data).unwrap();
        data
    }

    fn names(p: &Previous, dir: &[u8]) -> Vec<(Vec<u8>, u64)> {
        p.files_in(dir)
            .entries
            .iter()
            .map(|(n, e)| (n.to_vec(), e.size))
            .collect()
    }

    /// The files and symlinks of `dir` among the entries written, by name.
    fn written(all: &[Entry], dir: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut v: Vec<_> = all
            .iter()
            .filter(|e| matches!(e.kind, Kind::File | Kind::Symlink))
            .filter_map(|e| {
                let (d, name) = crate::relpath::split(&e.path);
                (d == dir).then(|| (name.to_vec(), e.size))
            })
            .collect();
        v.sort();
        v
    }

    const DIRS: [&[u8]; 4] = [b"", b"a", b"a/b", b"c"];

    #[test]
    fn a_recorded_manifest_is_read_one_directory_at_a_time_through_its_index() {
        let (file, all) = recorded();
        let data = whole(&file);
        assert!(data.starts_with(MAGIC) && data.ends_with(INDEX_MARK));
        // Readers of every entry stop at the index.
        assert_eq!(parse(&data).unwrap(), all);
        let indexed = Previous::open(file).unwrap();
        assert!(
            matches!(indexed.data, Data::File(_)),
            "read through its index"
        );
        // The chunk of the subdirectory's entry holds no file: it is not indexed.
        assert_eq!(indexed.dirs[&b"a"[..]].len(), 2);
        for dir in DIRS {
            assert_eq!(names(&indexed, dir), written(&all, dir), "{dir:?}");
        }
        assert_eq!(
            names(&indexed, b"a"),
            vec![(b"w".to_vec(), 0), (b"x".to_vec(), 0), (b"y".to_vec(), 1)]
        );
        assert_eq!(
            indexed.started(),
            Some(Ts {
                sec: 1_764_000_000,
                nsec: 0
            })
        );
    }

    #[test]
    fn a_manifest_whose_index_does_not_hold_together_is_read_whole() {
        let (file, all) = recorded();
        let good = whole(&file);
        let n = good.len();
        let at = u64::from_le_bytes(good[n - 16..n - 8].try_into().unwrap()) as usize;
        let damaged: Vec<(&str, Vec<u8>)> = vec![
            ("mark", {
                let mut d = good.clone();
                d[n - 1] ^= 1;
                d
            }),
            ("offset past the end", {
                let mut d = good.clone();
                d[n - 16..n - 8].copy_from_slice(&(n as u64).to_le_bytes());
                d
            }),
            ("offset not at the index", {
                let mut d = good.clone();
                d[n - 16..n - 8].copy_from_slice(&(at as u64 - 1).to_le_bytes());
                d
            }),
            ("index cut short", {
                let mut d = good[..at + 2].to_vec();
                d.extend_from_slice(&good[n - 16..]);
                d
            }),
            ("second format", {
                let mut d = good[..at].to_vec();
                d[..8].copy_from_slice(MAGIC_V2);
                d
            }),
        ];
        for (what, d) in damaged {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&d).unwrap();
            let p = Previous::open(f).unwrap();
            assert!(matches!(p.data, Data::Memory(_)), "{what}: read whole");
            for dir in DIRS {
                assert_eq!(names(&p, dir), written(&all, dir), "{what}: {dir:?}");
            }
        }
    }
}
