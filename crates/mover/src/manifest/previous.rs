//! A previous snapshot's manifest, read by directory for the next run.

use std::collections::HashMap;
use std::io;

use crate::meta::{Kind, Meta, Ts};

use super::format::{Dirs, INDEX_MARK, Reader, Record, TRAILER};
use super::{CHANGE_MARGIN, Entry};

/// A previous snapshot's manifest, indexed by directory: a new snapshot looks up the hashes of
/// the files it shares with it one directory at a time. A manifest that ends with an index is
/// read one directory at a time, as workers need it; an older one is read whole and indexed.
#[derive(Debug)]
pub struct Previous {
    pub(super) data: Data,
    v2: bool,
    started: Option<Ts>,
    pub(super) dirs: Dirs,
}

/// Where the entries of a previous manifest are read from.
#[derive(Debug)]
pub(super) enum Data {
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
    pub(super) entries: Vec<(Box<[u8]>, Entry)>,
    /// Change times before this one are older than the previous run by [`CHANGE_MARGIN`].
    trusted_before: Option<Ts>,
}

impl PreviousFiles {
    pub(super) fn get(&self, name: &[u8]) -> Option<&Entry> {
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
