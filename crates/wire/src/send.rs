//! The sending side: list the source, then send the content of the files the receiver asks for.
//!
//! The source is read as `mover sync` reads it: relative to directory descriptors, never
//! following a symlink, and as each entry's owner where the mover itself is refused
//! ([`mover::owner::Owners`]).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use contract::{ExitCode, Summary};
use mover::exclude::Excludes;
use mover::listing::Listing;
use mover::meta::{Kind, Meta, stat_at, stat_fd};
use mover::owner::{Id, Impersonate, Owners};
use mover::{preflight, relpath, xattr};
use rustix::fs::{FileType, OFlags, SeekFrom, readlinkat, seek};
use rustix::io::{Errno, pread};
use store::layout::STATE_DIR;

use crate::frame::{Conn, DATA_CHUNK};
use crate::message::{Attrs, Message};
use crate::{Error, PROTOCOL_VERSION, Result, delta};

/// Settings of the sending side.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Send only this folder of the source (relative, inside it, no symlinks).
    pub subdir: Option<PathBuf>,
    /// Send an empty source (the receiver then empties its target) instead of refusing.
    pub allow_empty: bool,
    /// When to read source entries as their owners.
    pub impersonate: Impersonate,
    /// Compress file content with zstd (each chunk that shrinks is sent compressed).
    pub compress: bool,
    /// What the transfer leaves out (`--exclude` and its family), as `mover sync` does: a left
    /// out entry is listed as such, so that the receiver keeps its entry of that name (or
    /// removes it, with `--delete-excluded`).
    pub excludes: Excludes,
}

/// The zstd level of `--compress`: fast, and most of what higher levels gain on typical data.
const ZSTD_LEVEL: i32 = 3;

/// What a finished send reports: the receiver's summary and what went over the wire.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The receiver's summary of the transfer.
    pub summary: Summary,
    /// Files whose content was sent.
    pub files_sent: u64,
    /// Bytes of file content sent (holes are not sent).
    pub bytes_sent: u64,
    /// What that content took on the wire (less than `bytes_sent` when compressed).
    pub wire_bytes: u64,
}

/// What went over the wire for file content, counted as it goes: a transfer that breaks keeps
/// what it sent until then, so the attempts of one run add up (see `send --retry-for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Files whose content was sent whole.
    pub files: u64,
    /// Bytes of file content sent, those of files cut off included.
    pub bytes: u64,
    /// What that content took on the wire.
    pub wire: u64,
}

/// A directory of the source, for reaching its files again when their content is asked for.
struct DirRef {
    parent: Option<usize>,
    name: CString,
    id: Id,
}

/// A regular file of the source, by number.
struct FileRef {
    dir: usize,
    name: CString,
    meta: Meta,
}

/// The files listed between two pauses of the listing ([`Message::ListPause`]): each side keeps
/// the records of one batch, whatever the number of files in the source. At each pause the
/// sender waits for the receiver's requests, so fewer pauses mean less waiting: 65,536 files
/// keep a re-run of 100,000 files to two pauses and each side under 64 MiB at a million files.
pub const BATCH_FILES: usize = 64 << 10;

struct Walk<'a> {
    conn: &'a mut Conn,
    owners: &'a Owners,
    root: BorrowedFd<'a>,
    opts: &'a SendOptions,
    sent: &'a mut Sent,
    checksum: bool,
    excludes: &'a Excludes,
    /// The path of the directory being listed, relative to the root sent.
    rel: Vec<u8>,
    dirs: Vec<DirRef>,
    /// The files listed since the last pause, numbered from `base`.
    files: Vec<FileRef>,
    base: u64,
    groups: HashMap<(u64, u64), u64>,
    /// Cleared when the kernel refuses O_NOATIME (see [`Owners::open_source_file`]).
    noatime: AtomicBool,
}

/// Sends the tree at `src` over `conn` (whose handshake is done) and returns the receiver's
/// summary. A refusal on this side (missing or empty source) is sent to the receiver too, so
/// both sides end with the same exit code.
pub fn send(conn: &mut Conn, src: &Path, opts: &SendOptions) -> Result<SendReport> {
    let mut sent = Sent::default();
    let summary = send_counted(conn, src, opts, &mut sent)?;
    Ok(SendReport {
        summary,
        files_sent: sent.files,
        bytes_sent: sent.bytes,
        wire_bytes: sent.wire,
    })
}

/// As [`send`], adding what is sent to `sent` as it goes (also when the transfer fails), and
/// returning the receiver's summary.
pub fn send_counted(
    conn: &mut Conn,
    src: &Path,
    opts: &SendOptions,
    sent: &mut Sent,
) -> Result<Summary> {
    let owners = Owners::new(opts.impersonate);
    let root = match open_root(src, opts, &owners) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = conn.send(&Message::Abort {
                code: e.exit_code().code(),
                message: format!("the sender refused: {e}"),
            });
            let _ = conn.flush();
            // The peer's first message (its hello) is read, so that closing this connection
            // with it unread does not reset the connection before the peer has read why.
            let _ = conn.recv();
            return Err(e.into());
        }
    };
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        side: 0,
        checksum: false,
    })?;
    let checksum = match conn.recv()? {
        Message::Hello {
            version: PROTOCOL_VERSION,
            side: 1,
            checksum,
        } => checksum,
        Message::Hello { version, side, .. } => {
            return Err(crate::hello_mismatch(1, version, side));
        }
        other => return Err(unexpected("hello", &other)),
    };
    let root_meta = stat_fd(&root).map_err(|e| io_fatal("cannot stat the source", src, e))?;
    let root_id = (root_meta.uid, root_meta.gid);
    let root_x = owners
        .retry_entry(root.as_fd(), root_id, || {
            xattr::read(xattr::Target::Fd(root.as_fd()))
        })
        .map_err(|e| io_fatal("cannot read the extended attributes of", src, e))?;
    let mut walk = Walk {
        conn,
        owners: &owners,
        root: root.as_fd(),
        opts,
        sent,
        checksum,
        excludes: &opts.excludes,
        rel: Vec::new(),
        dirs: vec![DirRef {
            parent: None,
            name: CString::default(),
            id: root_id,
        }],
        files: Vec::new(),
        base: 0,
        groups: HashMap::new(),
        noatime: AtomicBool::new(true),
    };
    walk.conn
        .send(&Message::Root(Attrs::from_meta(&root_meta, &root_x)))?;
    walk.dir(root.as_fd(), 0, true)?;
    walk.conn.send(&Message::ListEnd)?;
    walk.batch()?;
    let conn = walk.conn;
    match conn.recv()? {
        Message::Done(json) => serde_json::from_slice(&json)
            .map_err(|e| Error::protocol(format!("the receiver's summary is not valid: {e}"))),
        Message::Abort { code, message } => Err(remote(code, message)),
        other => Err(unexpected("summary", &other)),
    }
}

fn open_root(src: &Path, opts: &SendOptions, owners: &Owners) -> mover::Result<OwnedFd> {
    let fd = preflight::open_source(src, opts.subdir.as_deref(), owners)?;
    if !opts.allow_empty
        && preflight::is_empty_source(fd.as_fd()).map_err(|e| mover::Error::Io {
            what: "cannot read source",
            path: src.display().to_string(),
            source: e,
        })?
    {
        return Err(mover::Error::SourceEmpty {
            path: src.display().to_string(),
        });
    }
    Ok(fd)
}

fn io_fatal(what: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Mover(mover::Error::Io {
        what,
        path: path.display().to_string(),
        source: e,
    })
}

/// The error for a peer's [`Message::Abort`].
pub(crate) fn remote(code: u8, message: String) -> Error {
    Error::Remote {
        side: "peer",
        code: ExitCode::from_code(i32::from(code)).unwrap_or(ExitCode::Fatal),
        message,
    }
}

/// The error for a message that is not the one the protocol expects here.
pub(crate) fn unexpected(wanted: &str, got: &Message) -> Error {
    match got {
        Message::Abort { code, message } => remote(*code, message.clone()),
        _ => Error::protocol(format!(
            "expected a {wanted} message, got a {} message",
            got.name()
        )),
    }
}

impl Walk<'_> {
    /// Lists one directory (already announced) and everything below it.
    fn dir(&mut self, fd: BorrowedFd<'_>, d: usize, is_root: bool) -> Result<()> {
        let dir_id = self.dirs[d].id;
        let listing = match Listing::read(fd) {
            Ok(l) => l,
            Err(e) => {
                return self.conn.send(&Message::Unreadable {
                    name: Vec::new(),
                    op: "read directory".into(),
                    error: e.to_string(),
                });
            }
        };
        for i in 0..listing.len() {
            let name = listing.name(i);
            if is_root && name.to_bytes() == STATE_DIR.as_bytes() {
                continue;
            }
            let is_dir = listing.dtype(i) == FileType::Directory;
            match self.entry(fd, d, dir_id, name, is_dir) {
                Ok(()) => {}
                Err((_, Failure::Wire(e))) => return Err(*e),
                Err((op, Failure::Io(e))) => {
                    tracing::error!(name = %relpath::display(name.to_bytes()), "{op}: {e}");
                    self.conn.send(&Message::Unreadable {
                        name: name.to_bytes().to_vec(),
                        op: op.into(),
                        error: e.to_string(),
                    })?;
                }
            }
            if self.files.len() >= BATCH_FILES {
                self.conn.send(&Message::ListPause)?;
                self.batch()?;
            }
        }
        Ok(())
    }

    /// Reads the receiver's requests for the files listed since the last pause and sends
    /// them; then forgets them (numbers go on from there).
    fn batch(&mut self) -> Result<()> {
        let (wanted, bases) = read_wants(self.conn, self.base, self.files.len())?;
        for n in wanted {
            let f = &self.files[(n - self.base) as usize];
            let at = (self.owners, self.root, &self.dirs[..], &self.noatime);
            if send_file(self.conn, at, f, n, self.opts, bases.get(&n), self.sent)? {
                self.sent.files += 1;
            }
        }
        self.base += self.files.len() as u64;
        self.files.clear();
        Ok(())
    }

    /// Lists one entry (`listed_dir`: the directory listing says it is a folder); an error
    /// reading it on this side is returned for the receiver's record.
    fn entry(
        &mut self,
        fd: BorrowedFd<'_>,
        d: usize,
        dir_id: Id,
        name: &CStr,
        listed_dir: bool,
    ) -> std::result::Result<(), (&'static str, Failure)> {
        let owners = self.owners;
        let excluding = !self.excludes.is_empty();
        let meta = match owners.retry(&[dir_id], || stat_at(fd, name)) {
            Ok(m) => m,
            // An entry that cannot even be stat'ed may still be left out by name.
            Err(_) if excluding && self.excludes.matches(&self.rel_of(name), listed_dir) => {
                return self.excluded(name);
            }
            Err(e) => return Err(("stat", Failure::Io(e))),
        };
        if excluding && self.left_out(fd, dir_id, name, &meta) {
            return self.excluded(name);
        }
        let id = (meta.uid, meta.gid);
        if meta.kind == Kind::Dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let sub = owners
                .open_as(fd, dir_id, name, Some(id), flags)
                .map_err(|e| ("open directory", Failure::Io(e)))?;
            let x = owners
                .retry_entry(sub.as_fd(), id, || {
                    xattr::read(xattr::Target::Fd(sub.as_fd()))
                })
                .map_err(|e| ("read xattrs", Failure::Io(e)))?;
            self.conn
                .send(&Message::Dir {
                    name: name.to_bytes().to_vec(),
                    attrs: Attrs::from_meta(&meta, &x),
                })
                .map_err(|e| ("send", Failure::Wire(Box::new(e))))?;
            self.dirs.push(DirRef {
                parent: Some(d),
                name: name.to_owned(),
                id,
            });
            let sub_d = self.dirs.len() - 1;
            let inner = self.rel_of(name);
            let outer = std::mem::replace(&mut self.rel, inner);
            let listed = self.dir(sub.as_fd(), sub_d, false);
            self.rel = outer;
            listed.map_err(|e| ("send", Failure::Wire(Box::new(e))))?;
            return self
                .conn
                .send(&Message::Up)
                .map_err(|e| ("send", Failure::Wire(Box::new(e))));
        }
        let x = if meta.kind == Kind::Socket {
            xattr::Xattrs::default()
        } else {
            owners
                .source_xattrs(fd, dir_id, name, &meta)
                .map_err(|e| ("read xattrs", Failure::Io(e)))?
        };
        let target = if meta.kind == Kind::Symlink {
            owners
                .retry(&[dir_id], || {
                    readlinkat(fd, name, Vec::new()).map_err(Into::into)
                })
                .map_err(|e| ("readlink", Failure::Io(e)))?
                .into_bytes()
        } else {
            Vec::new()
        };
        let (mut group, mut hash) = (None, None);
        if meta.kind == Kind::File {
            let n = self.base + self.files.len() as u64;
            if meta.nlink > 1 {
                group = Some(*self.groups.entry((meta.dev, meta.ino)).or_insert(n));
            }
            if self.checksum {
                let f = owners
                    .open_source_file(fd, dir_id, name, &meta, &self.noatime)
                    .map_err(|e| ("open", Failure::Io(e)))?;
                hash = Some(hash_file(f.as_fd(), meta.size).map_err(|e| ("read", Failure::Io(e)))?);
            }
            self.files.push(FileRef {
                dir: d,
                name: name.to_owned(),
                meta,
            });
        }
        self.conn
            .send(&Message::Entry {
                name: name.to_bytes().to_vec(),
                attrs: Attrs::from_meta(&meta, &x),
                target,
                group,
                hash,
            })
            .map_err(|e| ("send", Failure::Wire(Box::new(e))))
    }
}

impl Walk<'_> {
    /// The path of entry `name` of the directory being listed, relative to the root sent.
    fn rel_of(&self, name: &CStr) -> Vec<u8> {
        relpath::join(&self.rel, name.to_bytes())
    }

    /// Whether an exclude leaves out entry `name` (of the directory `fd`), as `mover sync`
    /// decides.
    fn left_out(&self, fd: BorrowedFd<'_>, dir_id: Id, name: &CStr, meta: &Meta) -> bool {
        self.excludes
            .leaves_out(self.owners, fd, dir_id, &self.rel_of(name), name, meta)
    }

    /// Tells the receiver that entry `name` is left out.
    fn excluded(&mut self, name: &CStr) -> std::result::Result<(), (&'static str, Failure)> {
        self.conn
            .send(&Message::Excluded {
                name: name.to_bytes().to_vec(),
                delete: self.excludes.delete_excluded(),
            })
            .map_err(|e| ("send", Failure::Wire(Box::new(e))))
    }
}

/// Why an entry could not be listed: this side's file system, or the connection (which ends
/// the transfer).
enum Failure {
    Io(std::io::Error),
    Wire(Box<Error>),
}

/// The older version of a file the receiver has: chunk size and hashes (see [`crate::delta`]).
type Basis = (u32, Vec<[u8; 32]>);

/// Reads the receiver's requests: file numbers of the batch (`count` files from `base`), each
/// greater than the one before, and the bases it offers for some of them.
fn read_wants(conn: &mut Conn, base: u64, count: usize) -> Result<(Vec<u64>, HashMap<u64, Basis>)> {
    let mut all: Vec<u64> = Vec::new();
    let mut bases = HashMap::new();
    let end = base + count as u64;
    loop {
        match conn.recv()? {
            Message::Want(files) => {
                for f in files {
                    if !(base..end).contains(&f) || all.last().is_some_and(|&l| l >= f) {
                        return Err(Error::protocol(format!(
                            "the receiver asked for file {f}, which is out of order or not one \
                             of the {count} files listed since the last pause (from {base})"
                        )));
                    }
                    all.push(f);
                }
            }
            Message::Basis {
                file,
                chunk,
                hashes,
            } => {
                if all.binary_search(&file).is_err()
                    || !(delta::MIN_CHUNK..=delta::MAX_CHUNK).contains(&chunk)
                    || hashes.len() > delta::MAX_CHUNKS
                    || bases.insert(file, (chunk, hashes)).is_some()
                {
                    return Err(Error::protocol(format!(
                        "the receiver offered a basis for file {file} it did not ask for, twice, \
                         or with chunks of {chunk} bytes"
                    )));
                }
            }
            Message::WantEnd => return Ok((all, bases)),
            other => return Err(unexpected("request", &other)),
        }
    }
}

/// Opens the source directory `d` again, from the root, one component at a time without
/// following symlinks.
fn open_dir(
    owners: &Owners,
    root: BorrowedFd<'_>,
    dirs: &[DirRef],
    d: usize,
) -> std::io::Result<OwnedFd> {
    let mut chain = Vec::new();
    let mut cur = Some(d);
    while let Some(i) = cur {
        chain.push(i);
        cur = dirs[i].parent;
    }
    let mut fd = root.try_clone_to_owned()?;
    let mut id = dirs[0].id;
    for &i in chain.iter().rev().skip(1) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        fd = owners.open_as(fd.as_fd(), id, &dirs[i].name, Some(dirs[i].id), flags)?;
        id = dirs[i].id;
    }
    Ok(fd)
}

/// Sends the content of file `n`: its regions of data up to its listed size, adding them to
/// `total`. Returns `false` when it could not be read (the receiver is told and records the
/// failure).
fn send_file(
    conn: &mut Conn,
    (owners, root, dirs, noatime): (&Owners, BorrowedFd<'_>, &[DirRef], &AtomicBool),
    f: &FileRef,
    n: u64,
    opts: &SendOptions,
    basis: Option<&Basis>,
    total: &mut Sent,
) -> Result<bool> {
    let fail = |conn: &mut Conn, op: &str, e: std::io::Error| {
        tracing::error!(file = %relpath::display(f.name.to_bytes()), "{op}: {e}");
        conn.send(&Message::FileFailed {
            file: n,
            op: op.into(),
            error: e.to_string(),
        })
        .map(|()| false)
    };
    let opened = open_dir(owners, root, dirs, f.dir).and_then(|dir| {
        owners.open_source_file(dir.as_fd(), dirs[f.dir].id, &f.name, &f.meta, noatime)
    });
    let fd = match opened {
        Ok(fd) => fd,
        Err(e) => return fail(conn, "open", e),
    };
    conn.send(&Message::FileBegin {
        file: n,
        size: f.meta.size,
    })?;
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut sent = 0u64;
    let size = f.meta.size;
    let mut send = |conn: &mut Conn, buf: &mut [u8], start: u64, end: u64| {
        send_region(
            conn,
            fd.as_fd(),
            buf,
            (start, end),
            opts.compress,
            (&mut sent, &mut *total),
        )
    };
    // Against a basis, chunk by chunk: equal ones are named, not sent. Holes would be read as
    // data, so a sparse file is sent whole.
    if let Some((chunk, hashes)) = basis.filter(|_| !f.meta.looks_sparse()) {
        let chunk = u64::from(*chunk);
        let mut off = 0u64;
        for i in 0.. {
            if off >= size {
                break;
            }
            let len = (size - off).min(chunk);
            let same = match hashes.get(i) {
                Some(want) => match delta::hash_range(fd.as_fd(), off, len, &mut buf) {
                    Ok(Some(h)) => h == *want,
                    Ok(None) => false,
                    Err(e) => return fail(conn, "read", e),
                },
                None => false,
            };
            if same {
                conn.send(&Message::Same { offset: off, len })?;
            } else if let Err(e) = send(conn, &mut buf, off, off + len)? {
                return fail(conn, "read", e);
            }
            off += len;
        }
    } else {
        let mut off = 0u64;
        while off < size {
            // The next region of data; holes are not sent.
            let (start, end) = if f.meta.looks_sparse() {
                match seek(&fd, SeekFrom::Data(off)) {
                    Ok(d) if d >= size => break,
                    Ok(d) => {
                        let h = seek(&fd, SeekFrom::Hole(d)).map_or(size, |h| h.min(size));
                        (d, h)
                    }
                    Err(Errno::NXIO) => break,
                    Err(_) => (off, size),
                }
            } else {
                (off, size)
            };
            if let Err(e) = send(conn, &mut buf, start, end)? {
                return fail(conn, "read", e);
            }
            off = end;
        }
    }
    conn.send(&Message::FileEnd { data_bytes: sent })?;
    Ok(true)
}

/// Sends bytes `start..end` of `fd` as data frames (compressed where that shrinks them),
/// adding to the file's bytes sent and to the transfer's counts. The inner error is a read failure on
/// this side (the file then fails); the outer one, the connection's.
fn send_region(
    conn: &mut Conn,
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    (start, end): (u64, u64),
    compress: bool,
    (sent, total): (&mut u64, &mut Sent),
) -> Result<std::io::Result<()>> {
    let mut pos = start;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let got = match pread(fd, &mut buf[..want], pos) {
            Ok(0) => {
                return Ok(Err(std::io::Error::other(
                    "the file became shorter while it was being sent; the next run sends it \
                     again",
                )));
            }
            Ok(g) => g,
            Err(Errno::INTR) => continue,
            Err(e) => return Ok(Err(e.into())),
        };
        total.wire += send_bytes(conn, pos, &buf[..got], compress)?;
        pos += got as u64;
        *sent += got as u64;
        total.bytes += got as u64;
    }
    Ok(Ok(()))
}

/// Sends `data` (at most [`DATA_CHUNK`] bytes) as the content at `offset`: compressed with zstd
/// when `compress` is set and it shrinks, else as it is. Returns what it took on the wire.
pub(crate) fn send_bytes(conn: &mut Conn, offset: u64, data: &[u8], compress: bool) -> Result<u64> {
    match compress.then(|| zstd::bulk::compress(data, ZSTD_LEVEL)) {
        Some(Ok(z)) if z.len() < data.len() => {
            let wire = z.len() as u64;
            conn.send(&Message::Compressed {
                offset,
                raw_len: data.len() as u32,
                bytes: z,
            })?;
            Ok(wire)
        }
        _ => {
            conn.send_data(offset, data)?;
            Ok(data.len() as u64)
        }
    }
}

/// The BLAKE3 hash of a file's first `size` bytes.
fn hash_file(fd: BorrowedFd<'_>, size: u64) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(DATA_CHUNK as u64) as usize;
        match pread(fd, &mut buf[..want], pos) {
            Ok(0) => break,
            Ok(g) => {
                h.update(&buf[..g]);
                pos += g as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(*h.finalize().as_bytes())
}

/// The BLAKE3 hash of an open file's whole content, as [`Message::Entry`] carries it.
pub fn content_hash(fd: BorrowedFd<'_>) -> std::io::Result<[u8; 32]> {
    hash_file(fd, stat_fd(fd)?.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::replay::{frames, replay};

    fn wants(base: u64, count: usize, msgs: &[Message]) -> Result<(Vec<u64>, HashMap<u64, Basis>)> {
        read_wants(&mut replay(frames(msgs)), base, count)
    }

    #[test]
    fn a_batch_is_asked_for_by_its_own_numbers_only() {
        let (all, bases) = wants(
            100,
            3,
            &[
                Message::Want(vec![100, 102]),
                Message::Basis {
                    file: 102,
                    chunk: delta::MIN_CHUNK,
                    hashes: vec![[1; 32]],
                },
                Message::WantEnd,
            ],
        )
        .unwrap();
        assert_eq!(all, [100, 102]);
        assert_eq!(bases[&102].0, delta::MIN_CHUNK);
        for bad in [vec![99], vec![103], vec![101, 101], vec![102, 100]] {
            let r = wants(100, 3, &[Message::Want(bad.clone()), Message::WantEnd]);
            assert!(
                matches!(&r, Err(Error::Protocol(m)) if m.contains("since the last pause")),
                "{bad:?}: {r:?}"
            );
        }
        let r = wants(
            100,
            3,
            &[
                Message::Want(vec![100]),
                Message::Basis {
                    file: 101,
                    chunk: delta::MIN_CHUNK,
                    hashes: vec![],
                },
            ],
        );
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }
}
