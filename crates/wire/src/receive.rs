//! The receiving side: compare the sender's listing with the target, ask only for the files
//! that differ, write each under a temporary name and rename it into place, apply every
//! attribute, and remove what the source lacks, as `mover sync` does.
//!
//! Every name the sender gives is checked to be one path component ([`crate::name`]) and every
//! target directory is opened relative to its parent with `O_NOFOLLOW`, so nothing the sender
//! says can reach outside the target: a symlink it had made earlier is an entry like any
//! other, replaced (never followed) when a directory or file of that name comes.
//!
//! The work is done in three passes over what the sender listed:
//!
//! 1. while the listing arrives: directories are made or opened, entries whose content is
//!    equal get their attributes, symlinks and special files are made, and what the source
//!    lacks is removed;
//! 2. the files that differ are received and placed, then the extra names of hard-linked files
//!    are linked;
//! 3. each directory gets its attributes, deepest first, so its times are set after its
//!    content and a read-only directory is filled before it becomes read-only.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use contract::Summary;
use mover::attrs::{self, Handle};
use mover::content::{Copier, write_all_at};
use mover::listing::Listing;
use mover::meta::{Kind, Meta, stat_at, stat_fd};
use mover::owner::{Id, Impersonate, Owners};
use mover::summary::Journal;
use mover::xattr::Xattrs;
use mover::{Stats, preflight, relpath};
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ftruncate, linkat, mkdirat, mknodat, openat, readlinkat,
    renameat, symlinkat, unlinkat,
};
use store::layout::STATE_DIR;
use store::lock::StateDir;

use crate::frame::Conn;
use crate::message::{Attrs, Message};
use crate::send::{content_hash, unexpected};
use crate::{Error, PROTOCOL_VERSION, Result, delta, name};

/// The deepest directory a sender may list; deeper is refused as a protocol violation (each
/// level holds one open descriptor while the listing goes on).
pub const MAX_DEPTH: usize = 4096;

/// Settings of the receiving side.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// Compare files of equal size and mtime by content (the sender sends their hashes).
    pub checksum: bool,
    /// Keep target entries the source lacks.
    pub no_delete: bool,
    /// When to act as an entry's owner in the target.
    pub impersonate: Impersonate,
}

/// A target opened, checked and locked, ready to receive one transfer.
#[derive(Debug)]
pub struct Receiver {
    dst_path: PathBuf,
    dst: OwnedFd,
    state: StateDir,
    owners: Owners,
    stats: Arc<Stats>,
    opts: ReceiveOptions,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Receives one transfer into `dst` over `conn`: prepares the target (a refusal is sent to the
/// sender, so both sides end with its exit code), then runs. `source` names the sender in the
/// summary.
pub fn receive(conn: &mut Conn, dst: &Path, opts: ReceiveOptions, source: &str) -> Result<Summary> {
    match Receiver::prepare(dst, opts) {
        Ok(r) => r.run(conn, source),
        Err(e) => {
            let _ = conn.send(&Message::Abort {
                code: e.exit_code().code(),
                message: format!("the receiver refused: {e}"),
            });
            let _ = conn.flush();
            // The peer's first message (its hello) is read, so that closing this connection
            // with it unread does not reset the connection before the peer has read why.
            let _ = conn.recv();
            Err(e.into())
        }
    }
}

impl Receiver {
    /// Opens the target (creating it, not its parents, when missing) and takes its lock.
    pub fn prepare(dst: &Path, opts: ReceiveOptions) -> mover::Result<Receiver> {
        let owners = Owners::new(opts.impersonate);
        let fd = preflight::open_remote_target(dst, &owners)?;
        let state = preflight::lock_target(fd.as_fd(), dst, &owners)?;
        Ok(Receiver {
            dst_path: dst.to_path_buf(),
            dst: fd,
            state,
            owners,
            stats: Arc::new(Stats::default()),
            opts,
        })
    }

    /// The run's counters, for progress display while [`Receiver::run`] works.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Receives the transfer, writes the summary into `TARGET/.pvc-backup/last-sync.json`,
    /// sends it to the sender and returns it. A protocol violation by the sender ends the
    /// transfer with an error (exit code 1); what was placed until then stays.
    pub fn run(self, conn: &mut Conn, source: &str) -> Result<Summary> {
        let started = SystemTime::now();
        let t0 = Instant::now();
        conn.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            side: 1,
            checksum: self.opts.checksum,
        })?;
        match conn.recv()? {
            Message::Hello {
                version: PROTOCOL_VERSION,
                side: 0,
                ..
            } => {}
            Message::Hello { version, side, .. } => {
                return Err(Error::protocol(format!(
                    "the peer says it is side {side} of protocol {version}; a sender of \
                     protocol {PROTOCOL_VERSION} was expected (are both sides the same \
                     pvc-backup version?)"
                )));
            }
            other => return Err(unexpected("hello", &other)),
        }
        let mut s = Session {
            owners: &self.owners,
            stats: &self.stats,
            journal: Journal::default(),
            opts: &self.opts,
            root: self.dst.as_fd(),
            dirs: Vec::new(),
            files: Vec::new(),
            stack: Vec::new(),
            links: Vec::new(),
            wanted: Vec::new(),
            bases: Vec::new(),
            basis_chunk: std::collections::HashMap::new(),
            resumed: std::collections::HashSet::new(),
            skip_depth: 0,
            cache: None,
            seq: AtomicU64::new(0),
            copier: Copier::default(),
        };
        let result = s.listing(conn).and_then(|()| {
            for chunk in s.wanted.chunks(64 << 10) {
                conn.send(&Message::Want(chunk.to_vec()))?;
            }
            for (file, chunk, hashes) in std::mem::take(&mut s.bases) {
                s.basis_chunk.insert(file, chunk);
                conn.send(&Message::Basis {
                    file,
                    chunk,
                    hashes,
                })?;
            }
            conn.send(&Message::WantEnd)?;
            s.contents(conn)
        });
        if let Err(e) = result {
            // Over a broken connection there is nobody to tell; a sender that tries again
            // must not read this as a refusal.
            if !matches!(e, Error::Net { .. }) {
                let _ = conn.send(&Message::Abort {
                    code: e.exit_code().code(),
                    message: format!("the receiver stopped: {e}"),
                });
                let _ = conn.flush();
            }
            return Err(e);
        }
        s.links();
        s.dir_attrs();
        self.stats.scan_complete.store(true, Relaxed);
        let summary = mover::summary::summarize(
            "receive",
            source.to_string(),
            &self.dst_path,
            (started, t0),
            &self.stats,
            &s.journal,
        );
        mover::summary::write_last_sync(&self.owners, self.state.dir.as_fd(), &self.dst_path, &summary)?;
        let json = serde_json::to_vec(&summary).expect("a summary serializes");
        conn.send(&Message::Done(json))?;
        conn.flush()?;
        Ok(summary)
    }
}

/// A target directory named by the sender.
struct DirRec {
    parent: Option<usize>,
    name: CString,
    rel: Vec<u8>,
    meta: Meta,
    want_x: Xattrs,
}

/// A directory whose listing is arriving.
struct Open {
    dir: usize,
    fd: OwnedFd,
    /// The target's entries, and which of them the source has.
    target: Listing,
    seen: Vec<bool>,
    /// The last name listed here (names come in increasing byte order, each once).
    last: Option<Vec<u8>>,
    /// Keep every target entry: the sender could not read this directory's listing.
    keep_all: bool,
}

/// A regular file the sender listed, by number.
struct FileRec {
    /// Its directory; `None` inside a directory that could not be made (never asked for).
    dir: Option<usize>,
    name: CString,
    meta: Meta,
    want_x: Xattrs,
    group: Option<u64>,
    /// The target inode holding its content once placed or found equal.
    ino: Option<u64>,
}

struct Session<'a> {
    owners: &'a Owners,
    stats: &'a Stats,
    journal: Journal,
    opts: &'a ReceiveOptions,
    root: BorrowedFd<'a>,
    dirs: Vec<DirRec>,
    files: Vec<FileRec>,
    stack: Vec<Open>,
    /// Files whose content is another listed file's (extra names of a hard-linked file).
    links: Vec<usize>,
    /// Files to ask for, in increasing order.
    wanted: Vec<u64>,
    /// Of those, the ones whose older version in the target is offered as a basis: number,
    /// chunk size, hashes (see [`crate::delta`]).
    bases: Vec<(u64, u32, Vec<[u8; 32]>)>,
    /// The chunk size of each file sent against a basis.
    basis_chunk: std::collections::HashMap<u64, u32>,
    /// Files whose basis is what an earlier, broken transfer left of them (see
    /// [`part_name`]): they are completed in place.
    resumed: std::collections::HashSet<u64>,
    /// Inside a directory that could not be made: how deep.
    skip_depth: usize,
    /// The last target directory opened by number.
    cache: Option<(usize, OwnedFd)>,
    seq: AtomicU64,
    /// Copies the unchanged chunks of a file from its older version.
    copier: Copier,
}

type Failure = (&'static str, io::Error);

/// An entry being made under a temporary name in its directory.
struct Tmp(CString);

/// Where a large file is received: a name derived from its own and from the source's size and
/// mtime, so that a transfer that breaks (a lost connection, either side killed) leaves it
/// where the next attempt finds it and goes on from its last verified chunk. A source that
/// changed since gives another name; the old one is then an entry the source lacks, and goes.
fn part_name(name: &CStr, meta: &Meta) -> CString {
    let mut h = blake3::Hasher::new();
    h.update(name.to_bytes());
    h.update(&meta.size.to_be_bytes());
    h.update(&meta.mtime.sec.to_be_bytes());
    h.update(&meta.mtime.nsec.to_be_bytes());
    let hex: String = h.finalize().as_bytes()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    CString::new(format!("{PART_PREFIX}{hex}")).expect("no NUL")
}

/// The start of the names of partly received files.
pub const PART_PREFIX: &str = ".pvcb-part.";

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Session<'_> {
    fn fail(&self, rel: &[u8], op: &str, e: impl std::fmt::Display) {
        self.journal.error(self.stats, rel, op, e);
    }

    fn rel_in(&self, dir: usize, name: &[u8]) -> Vec<u8> {
        relpath::join(&self.dirs[dir].rel, name)
    }

    /// Pass 1: reads the listing up to its end.
    fn listing(&mut self, conn: &mut Conn) -> Result<()> {
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
                self.push_open(0, fd);
            }
            other => return Err(unexpected("root", &other)),
        }
        loop {
            let msg = conn.recv()?;
            if self.skip_depth > 0 {
                match msg {
                    Message::Dir { .. } => self.skip_depth += 1,
                    Message::Up => self.skip_depth -= 1,
                    Message::Entry { name, attrs, .. } if attrs.kind == Kind::File => {
                        let name = name::component(&name)?;
                        self.files.push(FileRec {
                            dir: None,
                            name,
                            meta: attrs.meta(),
                            want_x: Xattrs::default(),
                            group: None,
                            ino: None,
                        });
                    }
                    Message::Entry { .. } | Message::Unreadable { .. } => {}
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

    fn push_open(&mut self, dir: usize, fd: OwnedFd) {
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
            fd,
            seen: vec![false; target.len()],
            target,
            last: None,
            keep_all,
        });
    }

    /// Checks a name of the current directory: one path component, after the previous one,
    /// not the mover's state folder at the root. Marks the target's entry of that name as kept.
    fn accept_name(&mut self, raw: &[u8]) -> Result<CString> {
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
        if let Some(j) = top.target.find(raw) {
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
                self.push_open(self.dirs.len() - 1, fd);
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
        let (dir, dfd) = (
            top.dir,
            top.fd.try_clone().map_err(|e| {
                Error::net("cannot duplicate the descriptor of a target directory", e)
            })?,
        );
        let dfd = dfd.as_fd();
        let rel = self.rel_in(dir, name.to_bytes());
        self.stats.entries_found.fetch_add(1, Relaxed);
        self.stats.entries_done.fetch_add(1, Relaxed);
        let number = if meta.kind == Kind::File {
            self.stats.bytes_found.fetch_add(meta.size, Relaxed);
            self.stats.bytes_done.fetch_add(meta.size, Relaxed);
            let n = self.files.len() as u64;
            if group.is_some_and(|g| g > n) {
                return Err(Error::protocol(format!(
                    "file {n} says it shares the content of file {}, listed later",
                    group.unwrap_or_default()
                )));
            }
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
                    self.links.push(n as usize);
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
                self.files[n as usize].ino = Some(h.ino);
                return self.update_in_place(dfd, name, meta, want_x, Some(h));
            }
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
                top.seen[j] = true;
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let hashes = self.owners.open_in(dfd, &part, flags).and_then(|fd| {
                    let m = stat_fd(&fd)?;
                    if m.kind != Kind::File || m.size > meta.size {
                        return Err(io::Error::other("not a partly received file"));
                    }
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
                        top.seen[j] = false;
                    }
                }
            }
        }
        if let Some(h) = have.filter(|h| {
            h.kind == Kind::File && h.size >= delta::DELTA_MIN && meta.size >= delta::DELTA_MIN
        }) && let Some(chunk) = delta::chunk_for(h.size)
        {
            // Worth a read of the older version: only its changed chunks then cross the wire.
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match self
                .owners
                .open_in(dfd, name, flags)
                .and_then(|fd| delta::hashes(fd.as_fd(), h.size, chunk))
            {
                Ok(hashes) => self.bases.push((n, chunk, hashes)),
                Err(e) => tracing::debug!("no basis for file {n}: {e}"),
            }
        }
        Ok(())
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

    fn tmp_name(&self) -> Tmp {
        let seq = self.seq.fetch_add(1, Relaxed);
        let name = format!(".pvcb-tmp.{}.{}", std::process::id(), seq);
        Tmp(CString::new(name).expect("no NUL"))
    }

    /// Makes a new entry under a fresh temporary name with `make` (as the mover, else as its
    /// owner or the directory's), retrying with the next name while one is taken.
    fn make_tmp<R: Send>(
        &self,
        dirs: &[BorrowedFd<'_>],
        owner: Id,
        make: impl Fn(&CStr) -> io::Result<R> + Send + Sync,
    ) -> io::Result<(Tmp, R)> {
        loop {
            let tmp = self.tmp_name();
            match self
                .owners
                .retry_target(&[owner], dirs, || make(tmp.0.as_c_str()))
            {
                Ok(r) => return Ok((tmp, r)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames a complete temporary entry over `name`; on failure it is removed.
    fn place(&self, dfd: BorrowedFd<'_>, tmp: &Tmp, name: &CStr) -> io::Result<()> {
        let r = self.owners.retry_target(&[], &[dfd], || {
            renameat(dfd, tmp.0.as_c_str(), dfd, name).map_err(Into::into)
        });
        if r.is_err() {
            self.discard(dfd, tmp);
        }
        r
    }

    fn discard(&self, dfd: BorrowedFd<'_>, tmp: &Tmp) {
        let _ = self.owners.retry_target(&[], &[dfd], || {
            unlinkat(dfd, tmp.0.as_c_str(), AtFlags::empty()).map_err(Into::into)
        });
    }

    /// A new symlink or special file: made under a temporary name, given its attributes,
    /// renamed into place.
    fn make_new(
        &self,
        dfd: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        want_x: &Xattrs,
        op: &'static str,
        make: impl Fn(&CStr) -> io::Result<()> + Send + Sync,
    ) -> std::result::Result<(), Failure> {
        let (tmp, ()) = self
            .make_tmp(&[dfd], (meta.uid, meta.gid), make)
            .map_err(|e| (op, e))?;
        let t = tmp.0.as_c_str();
        // What it got when made (a default ACL of the directory, say) is compared too.
        let have_x = attrs::read_xattrs(Handle::At(dfd, t)).ok();
        let applied = attrs::apply_new(
            Handle::At(dfd, t),
            meta,
            None,
            want_x,
            have_x.as_ref(),
            Some(self.owners),
        );
        self.place(dfd, &tmp, name).map_err(|e| ("rename", e))?;
        self.stats.copied.fetch_add(1, Relaxed);
        applied.map(|_| ()).map_err(|e| (e.op, e.err))
    }

    /// Opens target directory `d` again, from the root, one component at a time without
    /// following symlinks (the last one opened is kept for the next call).
    fn open_dir(&mut self, d: usize) -> io::Result<BorrowedFd<'_>> {
        if self.cache.as_ref().is_none_or(|(c, _)| *c != d) {
            let mut chain = Vec::new();
            let mut cur = Some(d);
            while let Some(i) = cur {
                chain.push(i);
                cur = self.dirs[i].parent;
            }
            let mut fd = self.root.try_clone_to_owned()?;
            for &i in chain.iter().rev().skip(1) {
                fd = self
                    .owners
                    .open_in(fd.as_fd(), &self.dirs[i].name, DIR_FLAGS)?;
            }
            self.cache = Some((d, fd));
        }
        Ok(self.cache.as_ref().expect("just set").1.as_fd())
    }

    /// Pass 2: receives the files asked for, in order.
    fn contents(&mut self, conn: &mut Conn) -> Result<()> {
        let wanted = std::mem::take(&mut self.wanted);
        for n in wanted {
            match conn.recv()? {
                Message::FileBegin { file, size } if file == n => {
                    self.receive_file(conn, n, size)?
                }
                Message::FileFailed { file, op, error } if file == n => {
                    let rel = self.file_rel(n as usize);
                    self.fail(&rel, &op, format!("on the sender: {error}"));
                }
                other => {
                    return Err(match other {
                        Message::FileBegin { file, .. } | Message::FileFailed { file, .. } => {
                            Error::protocol(format!(
                                "the sender sent file {file} where file {n} was expected"
                            ))
                        }
                        other => unexpected("file start", &other),
                    });
                }
            }
        }
        Ok(())
    }

    fn file_rel(&self, n: usize) -> Vec<u8> {
        let f = &self.files[n];
        match f.dir {
            Some(d) => self.rel_in(d, f.name.to_bytes()),
            None => f.name.to_bytes().to_vec(),
        }
    }

    /// Receives one file's content into a temporary file, then places it. A file the sender
    /// lies about (more or fewer bytes than announced, data beyond its size) fails, and its
    /// temporary file is removed; the frames up to its end are read and dropped.
    fn receive_file(&mut self, conn: &mut Conn, n: u64, size: u64) -> Result<()> {
        let rel = self.file_rel(n as usize);
        let f = &self.files[n as usize];
        let (d, name, meta, want_x) = (
            f.dir.expect("only files of made directories are asked for"),
            f.name.clone(),
            f.meta,
            f.want_x.clone(),
        );
        let resumed = self.resumed.contains(&n);
        let mut failure: Option<Failure> = None;
        if size != meta.size {
            failure = Some((
                "receive",
                io::Error::other(format!(
                    "the sender announced {size} bytes for a file it listed with {}",
                    meta.size
                )),
            ));
        }
        let made = match failure {
            Some(_) => None,
            None => match self
                .open_dir(d)
                .and_then(|dfd| dfd.try_clone_to_owned())
                .and_then(|dfd| {
                    let flags = OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC;
                    let owner = (meta.uid, meta.gid);
                    if resumed {
                        let part = part_name(&name, &meta);
                        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        let fd = self.owners.retry_target(&[owner], &[dfd.as_fd()], || {
                            openat(dfd.as_fd(), &part, flags, Mode::empty()).map_err(Into::into)
                        })?;
                        return Ok((dfd, Tmp(part), fd));
                    }
                    if meta.size >= delta::DELTA_MIN {
                        let part = part_name(&name, &meta);
                        let make = || {
                            openat(dfd.as_fd(), &part, flags, Mode::from_raw_mode(0o600))
                                .map_err(Into::into)
                        };
                        let made = match self.owners.retry_target(&[owner], &[dfd.as_fd()], make) {
                            // Left by an attempt whose basis could not be used (--no-delete).
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                                self.discard(dfd.as_fd(), &Tmp(part.clone()));
                                self.owners.retry_target(&[owner], &[dfd.as_fd()], make)
                            }
                            r => r,
                        };
                        if let Ok(fd) = made {
                            return Ok((dfd, Tmp(part), fd));
                        }
                    }
                    let (tmp, fd) = self.make_tmp(&[dfd.as_fd()], owner, |t| {
                        openat(dfd.as_fd(), t, flags, Mode::from_raw_mode(0o600))
                            .map_err(Into::into)
                    })?;
                    Ok((dfd, tmp, fd))
                }) {
                Ok(m) => Some(m),
                Err(e) => {
                    failure = Some(("create", e));
                    None
                }
            },
        };
        // The older version the sender's equal chunks are copied from.
        let basis = match (self.basis_chunk.get(&n), &made) {
            (Some(&chunk), Some((dfd, tmp, _))) => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let from = if resumed { &tmp.0 } else { &name };
                self.owners
                    .open_in(dfd.as_fd(), from, flags)
                    .ok()
                    .and_then(|fd| Some((stat_fd(&fd).ok()?.size, fd, chunk)))
            }
            _ => None,
        };
        let mut copied_here = 0u64;
        let mut received = 0u64;
        let mut end = 0u64;
        loop {
            let data = match conn.recv()? {
                Message::Data { offset, bytes } => Ok((offset, bytes)),
                Message::Compressed {
                    offset,
                    raw_len,
                    bytes,
                } => match expand(&bytes, raw_len) {
                    Some(b) => Ok((offset, b)),
                    None => Err(Message::Compressed {
                        offset,
                        raw_len,
                        bytes: Vec::new(),
                    }),
                },
                other => Err(other),
            };
            match data {
                Ok((_, _)) if failure.is_some() => {}
                Err(Message::Compressed { raw_len, .. }) => {
                    received += u64::from(raw_len);
                    failure.get_or_insert((
                        "receive",
                        io::Error::other(
                            "the sender sent compressed data that does not expand to its \
                             announced length",
                        ),
                    ));
                }
                Ok((offset, bytes)) => {
                    let len = bytes.len() as u64;
                    received += len;
                    if offset < end || offset.checked_add(len).is_none_or(|e| e > size) {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender sent bytes {offset} to {} of a file of {size} \
                                 bytes, overlapping or past its end",
                                offset.saturating_add(len)
                            )),
                        ));
                        continue;
                    }
                    end = offset + len;
                    let (_, _, fd) = made.as_ref().expect("made when no failure");
                    if let Err(e) = write_all_at(fd.as_fd(), &bytes, offset) {
                        failure = Some(("write", e));
                    }
                }
                Err(Message::Same { offset, len }) => {
                    if failure.is_some() {
                        continue;
                    }
                    let fits = basis.as_ref().is_some_and(|(have, _, chunk)| {
                        offset % u64::from(*chunk) == 0
                            && len <= u64::from(*chunk)
                            && offset >= end
                            && offset
                                .checked_add(len)
                                .is_some_and(|e| e <= size && e <= *have)
                    });
                    if !fits {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender said bytes {offset} to {} are unchanged, which the \
                                 older version in the target does not hold as one chunk",
                                offset.saturating_add(len)
                            )),
                        ));
                        continue;
                    }
                    if resumed {
                        // Already there, in the file being completed.
                        end = offset + len;
                        copied_here += len;
                        continue;
                    }
                    let (_, old, _) = basis.as_ref().expect("checked");
                    let (_, _, fd) = made.as_ref().expect("made when no failure");
                    match self
                        .copier
                        .copy_range(old.as_fd(), fd.as_fd(), offset, Some(len))
                    {
                        Ok(n) if n == len => {
                            end = offset + len;
                            copied_here += len;
                        }
                        Ok(_) => {
                            failure = Some((
                                "copy unchanged chunk",
                                io::Error::other("the older version became shorter"),
                            ))
                        }
                        Err(e) => failure = Some(("copy unchanged chunk", e)),
                    }
                }
                Err(Message::FileEnd { data_bytes }) => {
                    if failure.is_none() && data_bytes != received {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender announced {data_bytes} bytes of data and sent \
                                 {received}"
                            )),
                        ));
                    }
                    break;
                }
                Err(Message::FileFailed { file, op, error }) if file == n => {
                    if failure.is_none() {
                        failure = Some((
                            "read",
                            io::Error::other(format!("{op} on the sender: {error}")),
                        ));
                    }
                    break;
                }
                Err(other) => return Err(unexpected("data", &other)),
            }
        }
        let Some((dfd, tmp, fd)) = made else {
            let (op, e) = failure.expect("nothing made means a failure");
            self.fail(&rel, op, e);
            return Ok(());
        };
        if failure.is_none()
            && let Err(e) = ftruncate(&fd, size)
        {
            failure = Some(("truncate", e.into()));
        }
        if let Some((op, e)) = failure {
            drop(fd);
            self.discard(dfd.as_fd(), &tmp);
            self.fail(&rel, op, e);
            return Ok(());
        }
        let have_x = attrs::read_xattrs(Handle::Fd(fd.as_fd())).ok();
        let applied = attrs::apply_new(
            Handle::Fd(fd.as_fd()),
            &meta,
            None,
            &want_x,
            have_x.as_ref(),
            Some(self.owners),
        );
        let ino = stat_fd(&fd).map(|m| m.ino).ok();
        drop(fd);
        if let Err(e) = self.place(dfd.as_fd(), &tmp, &name) {
            self.fail(&rel, "rename", e);
            return Ok(());
        }
        self.files[n as usize].ino = ino;
        self.stats.copied.fetch_add(1, Relaxed);
        self.stats
            .bytes_copied
            .fetch_add(received + copied_here, Relaxed);
        if let Err(e) = applied {
            self.fail(&rel, e.op, e.err);
        }
        Ok(())
    }

    /// Pass 2, after the content: the extra names of hard-linked files.
    fn links(&mut self) {
        for n in std::mem::take(&mut self.links) {
            let rel = self.file_rel(n);
            let f = &self.files[n];
            let g = f.group.expect("a link has a group") as usize;
            let (d, name, owner) = (
                f.dir.expect("listed"),
                f.name.clone(),
                (f.meta.uid, f.meta.gid),
            );
            let first = &self.files[g];
            let (Some(first_ino), Some(first_dir)) = (first.ino, first.dir) else {
                self.fail(
                    &rel,
                    "link",
                    "the first name of this hard-linked file could not be copied",
                );
                continue;
            };
            let first_name = first.name.clone();
            let r = (|| -> std::result::Result<bool, Failure> {
                let src_dir = self
                    .open_dir(first_dir)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| ("open target directory", e))?;
                let dfd = self
                    .open_dir(d)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| ("open target directory", e))?;
                match self
                    .owners
                    .retry_target(&[], &[dfd.as_fd()], || stat_at(&dfd, &name))
                {
                    Ok(h) if h.ino == first_ino && h.kind == Kind::File => return Ok(false),
                    Ok(_) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(("stat target", e)),
                }
                let (tmp, ()) = self
                    .make_tmp(&[dfd.as_fd(), src_dir.as_fd()], owner, |t| {
                        linkat(&src_dir, &first_name, &dfd, t, AtFlags::empty()).map_err(Into::into)
                    })
                    .map_err(|e| ("link", e))?;
                self.place(dfd.as_fd(), &tmp, &name)
                    .map_err(|e| ("rename", e))?;
                Ok(true)
            })();
            match r {
                Ok(true) => {
                    self.stats.linked.fetch_add(1, Relaxed);
                }
                Ok(false) => {
                    self.stats.unchanged.fetch_add(1, Relaxed);
                }
                Err((op, e)) => self.fail(&rel, op, e),
            }
        }
    }

    /// Pass 3: directory attributes, deepest first (a directory is listed after its parent).
    fn dir_attrs(&mut self) {
        for d in (0..self.dirs.len()).rev() {
            let r = (|| -> std::result::Result<(), Failure> {
                let fd = self
                    .open_dir(d)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| ("open target directory", e))?;
                let have = stat_fd(&fd).map_err(|e| ("stat", e))?;
                let have_x = self
                    .owners
                    .retry_target(&[], &[fd.as_fd()], || {
                        attrs::read_xattrs(Handle::Fd(fd.as_fd()))
                    })
                    .map_err(|e| ("xattr", e))?;
                let rec = &self.dirs[d];
                if attrs::same_basic(&rec.meta, &have) && have_x == rec.want_x {
                    return Ok(());
                }
                attrs::apply(
                    Handle::Fd(fd.as_fd()),
                    &rec.meta,
                    Some(&have),
                    &rec.want_x,
                    Some(&have_x),
                    Some(self.owners),
                )
                .map(|_| ())
                .map_err(|e| (e.op, e.err))
            })();
            if let Err((op, e)) = r {
                let rel = self.dirs[d].rel.clone();
                self.fail(&rel, op, e);
            }
            // A directory opened later is not below this one: drop its descriptor.
            self.cache = None;
        }
    }
}

/// Expands a [`Message::Compressed`] frame's data, which must be exactly `raw_len` bytes, at most
/// one chunk: a frame that expands to more is refused before it is written anywhere.
fn expand(bytes: &[u8], raw_len: u32) -> Option<Vec<u8>> {
    if raw_len as usize > crate::frame::DATA_CHUNK {
        return None;
    }
    zstd::bulk::decompress(bytes, raw_len as usize)
        .ok()
        .filter(|b| b.len() == raw_len as usize)
}
