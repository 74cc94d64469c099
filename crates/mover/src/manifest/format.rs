//! The on-disk format of a manifest, its encoding and its reading.
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
use std::io;
use std::ops::Range;

use crate::meta::{Kind, Ts};

use super::Entry;

pub(super) const MAGIC: &[u8; 8] = b"PVCBMAN3";
/// The second format: no directory index.
pub(super) const MAGIC_V2: &[u8; 8] = b"PVCBMAN2";
/// The first format, without start time and change times.
pub(super) const MAGIC_V1: &[u8; 8] = b"PVCBMAN1";
/// The last 8 bytes of a manifest that ends with a directory index.
pub(super) const INDEX_MARK: &[u8; 8] = b"PVCBIDX1";
/// The bytes after the index: its offset and [`INDEX_MARK`].
pub(super) const TRAILER: u64 = 16;

pub(super) fn kind_code(k: Kind) -> u8 {
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

pub(super) fn put(out: &mut Vec<u8>, mut v: u64) {
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

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(super) fn encode_entry(out: &mut Vec<u8>, name: &[u8], e: &Entry) {
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
pub(super) enum Record<'a> {
    /// The directory the following entries are in.
    Dir(&'a [u8]),
    /// An entry of the current directory: its name and attributes (with an empty path).
    Entry(&'a [u8], Entry),
}

/// The header of a manifest: the time the run that wrote it started.
pub(super) fn encode_header(out: &mut Vec<u8>, started: Option<Ts>) {
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
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// Whether entries carry a change time (the second format and later).
    pub(super) v2: bool,
    /// Whether an index may end the records (the third format).
    pub(super) v3: bool,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the first record, and the start time the header holds.
    pub(super) fn new(data: &'a [u8]) -> io::Result<(Reader<'a>, Option<Ts>)> {
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

    pub(super) fn get(&mut self) -> io::Result<u64> {
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

    pub(super) fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| bad("truncated"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn next(&mut self) -> io::Result<Option<Record<'a>>> {
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

/// Where each directory's entries are in a manifest: byte ranges, by directory path.
pub(super) type Dirs = HashMap<Vec<u8>, Vec<Range<u64>>>;

/// The index of a manifest whose records end at `at`, with the trailer that locates it.
pub(super) fn encode_index(index: &Dirs, at: u64) -> Vec<u8> {
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

/// Entries of one directory, encoded, to be added to a manifest in one piece.
#[derive(Debug)]
pub struct Chunk {
    pub(super) buf: Vec<u8>,
    /// Where in `buf` the directory's path is; the entries follow it.
    pub(super) rel: Range<usize>,
    pub(super) entries: u64,
    /// Whether a file or a symlink is among the entries (only those are looked up later).
    pub(super) files: bool,
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
