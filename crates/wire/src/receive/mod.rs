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
//!
//! Pass 1 is in `listing.rs`, pass 2 in `content.rs`, pass 3 here; `place.rs` makes new
//! entries under temporary names and renames them into place.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use contract::Summary;
use mover::attrs::{self, Handle};
use mover::content::Copier;
use mover::listing::Listing;
use mover::meta::{Meta, stat_fd};
use mover::owner::{Impersonate, Owners};
use mover::summary::Journal;
use mover::xattr::Xattrs;
use mover::{Stats, preflight, relpath};
use rustix::fs::OFlags;
use store::lock::StateDir;

use crate::frame::Conn;
use crate::message::Message;
use crate::send::unexpected;
use crate::{Error, PROTOCOL_VERSION, Result};

mod content;
pub(crate) use content::expand;
mod listing;
mod place;

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
    /// Flush the target's filesystem to the disk before the summary is written and sent.
    pub fsync: bool,
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
    /// The previous snapshot, when receiving a new one ([`receive_snapshot`]).
    reference: Option<OwnedFd>,
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
        Err(e) => Err(refuse(conn, e)),
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
            reference: None,
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
        self.run_then(conn, source, |_, _| Ok(())).map(|(s, ())| s)
    }

    /// As [`Receiver::run`], with `then` run on the summary before the sender hears of it: an
    /// error there is sent to the sender as the transfer's result.
    fn run_then<R>(
        self,
        conn: &mut Conn,
        source: &str,
        then: impl FnOnce(&Summary, &Owners) -> mover::Result<R>,
    ) -> Result<(Summary, R)> {
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
                return Err(crate::hello_mismatch(0, version, side));
            }
            other => return Err(unexpected("hello", &other)),
        }
        let mut s = Session {
            owners: &self.owners,
            stats: &self.stats,
            journal: Journal::default(),
            opts: &self.opts,
            root: self.dst.as_fd(),
            reference: self.reference.as_ref().map(|r| r.as_fd()),
            ref_cache: None,
            dirs: Vec::new(),
            files: Vec::new(),
            base: 0,
            linked: std::collections::HashMap::new(),
            stack: Vec::new(),
            links: Vec::new(),
            wanted: Vec::new(),
            bases: Vec::new(),
            basis_chunk: std::collections::HashMap::new(),
            resumed: std::collections::HashSet::new(),
            basis_in_reference: std::collections::HashSet::new(),
            skip_depth: 0,
            cache: None,
            seq: AtomicU64::new(0),
            copier: Copier::default(),
        };
        let result = s.listing(conn).and_then(|()| s.batch(conn));
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
        // Also reports a write that failed in the background since the target was opened; the
        // sender hears of it, rather than of a connection closed before the summary.
        if self.opts.fsync
            && let Err(e) = rustix::fs::syncfs(&self.dst)
        {
            let e = Error::from(mover::Error::Io {
                what: "cannot flush to the disk the writes into",
                path: self.dst_path.display().to_string(),
                source: e.into(),
            });
            let _ = conn.send(&Message::Abort {
                code: e.exit_code().code(),
                message: format!("the receiver stopped: {e}"),
            });
            let _ = conn.flush();
            return Err(e);
        }
        self.stats.scan_complete.store(true, Relaxed);
        let summary = mover::summary::summarize(
            "receive",
            source.to_string(),
            &self.dst_path,
            (started, t0),
            &self.stats,
            &s.journal,
        );
        mover::summary::write_last_sync(
            &self.owners,
            self.state.dir.as_fd(),
            &self.dst_path,
            &summary,
        )?;
        let after = match then(&summary, &self.owners) {
            Ok(r) => r,
            Err(e) => {
                let e = Error::from(e);
                let _ = conn.send(&Message::Abort {
                    code: e.exit_code().code(),
                    message: format!("the receiver stopped: {e}"),
                });
                let _ = conn.flush();
                return Err(e);
            }
        };
        let json = serde_json::to_vec(&summary).expect("a summary serializes");
        conn.send(&Message::Done(json))?;
        conn.flush()?;
        Ok((summary, after))
    }
}

/// Receives one transfer as a new snapshot of the store `dst`, laid out as `mover backup` lays
/// its snapshots out (see [`mover::snapshot`]): the files equal to the previous snapshot's are
/// hard-linked from it and not sent, a changed large file is sent against its version there,
/// and the snapshot is named, pointed at by `latest` and given its manifest before the sender
/// hears the result; retention (`policy`) follows a run in which nothing failed. A run that
/// dies leaves its partial snapshot, which the next one takes up ([`Incoming`]).
///
/// [`Incoming`]: mover::snapshot::Incoming
pub fn receive_snapshot(
    conn: &mut Conn,
    dst: &Path,
    opts: ReceiveOptions,
    policy: store::retention::Policy,
    source: &str,
) -> Result<mover::snapshot::BackupReport> {
    let prepared = (|| -> mover::Result<_> {
        let owners = Owners::new(opts.impersonate);
        let root = preflight::open_remote_target(dst, &owners)?;
        let state = preflight::lock_target(root.as_fd(), dst, &owners)?;
        let incoming = mover::snapshot::Incoming::begin(
            &owners,
            root.as_fd(),
            state.dir.as_fd(),
            dst,
            policy,
        )?;
        if let Some(old) = incoming.taken_up() {
            tracing::info!("going on with the partial snapshot {old} of a run that did not end");
        }
        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned().map_err(|source| mover::Error::Io {
                what: "cannot use",
                path: dst.display().to_string(),
                source,
            })
        };
        let receiver = Receiver {
            dst_path: incoming.target_path(),
            dst: dup(incoming.target())?,
            reference: incoming.reference().map(dup).transpose()?,
            state,
            owners,
            stats: Arc::new(Stats::default()),
            opts,
        };
        Ok((receiver, incoming))
    })();
    match prepared {
        Ok((receiver, incoming)) => {
            let (_, report) = receiver.run_then(conn, source, move |summary, owners| {
                incoming.complete(owners, summary.clone())
            })?;
            Ok(report)
        }
        Err(e) => Err(refuse(conn, e)),
    }
}

/// Tells the sender why the target was refused, and returns that error.
fn refuse(conn: &mut Conn, e: mover::Error) -> Error {
    let _ = conn.send(&Message::Abort {
        code: e.exit_code().code(),
        message: format!("the receiver refused: {e}"),
    });
    let _ = conn.flush();
    // The peer's first message (its hello) is read, so that closing this connection with it
    // unread does not reset the connection before the peer has read why.
    let _ = conn.recv();
    e.into()
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
    /// Shared, so that an entry's handling holds it while the session changes (a duplicated
    /// descriptor would cost two system calls per entry).
    fd: std::rc::Rc<OwnedFd>,
    /// The target's entries, and which of them the source has.
    target: Listing,
    seen: Vec<bool>,
    /// The last name listed here (names come in increasing byte order, each once).
    last: Option<Vec<u8>>,
    /// Keep every target entry: the sender could not read this directory's listing.
    keep_all: bool,
    /// The same directory in the previous snapshot, when receiving a new one and it has it.
    reference: Option<std::rc::Rc<OwnedFd>>,
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
    /// The previous snapshot's root, when receiving a new snapshot.
    reference: Option<BorrowedFd<'a>>,
    /// The last directory of the previous snapshot opened by number.
    ref_cache: Option<(usize, Option<OwnedFd>)>,
    dirs: Vec<DirRec>,
    /// The files listed since the last pause of the listing, numbered from `base`.
    files: Vec<FileRec>,
    /// The number of the first file in `files`.
    base: u64,
    /// The hard-linked files of earlier batches, by number: the extra names are linked once
    /// every batch is in.
    linked: std::collections::HashMap<u64, FileRec>,
    stack: Vec<Open>,
    /// Files whose content is another listed file's (extra names of a hard-linked file).
    links: Vec<u64>,
    /// Files of this batch to ask for, in increasing order.
    wanted: Vec<u64>,
    /// Of those, the ones whose older version in the target is offered as a basis: number,
    /// chunk size, hashes (see [`crate::delta`]).
    bases: Vec<(u64, u32, Vec<[u8; 32]>)>,
    /// The chunk size of each file sent against a basis.
    basis_chunk: std::collections::HashMap<u64, u32>,
    /// Files whose basis is what an earlier, broken transfer left of them (see
    /// [`part_name`]): they are completed in place.
    resumed: std::collections::HashSet<u64>,
    /// Files whose basis is their version in the previous snapshot.
    basis_in_reference: std::collections::HashSet<u64>,
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
pub fn part_name(name: &CStr, meta: &Meta) -> CString {
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

    /// The directories from the root's child down to `d` (none for the root itself).
    fn below_root(&self, d: usize) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut cur = Some(d);
        while let Some(i) = cur {
            chain.push(i);
            cur = self.dirs[i].parent;
        }
        chain.pop();
        chain.reverse();
        chain
    }

    /// Opens target directory `d` again, from the root, one component at a time without
    /// following symlinks (the last one opened is kept for the next call).
    fn open_dir(&mut self, d: usize) -> io::Result<BorrowedFd<'_>> {
        if self.cache.as_ref().is_none_or(|(c, _)| *c != d) {
            let mut fd = self.root.try_clone_to_owned()?;
            for i in self.below_root(d) {
                fd = self
                    .owners
                    .open_in(fd.as_fd(), &self.dirs[i].name, DIR_FLAGS)?;
            }
            self.cache = Some((d, fd));
        }
        Ok(self.cache.as_ref().expect("just set").1.as_fd())
    }

    /// Opens directory `d` of the previous snapshot, when receiving a new snapshot and it has
    /// that directory (the last one opened is kept for the next call).
    fn open_ref_dir(&mut self, d: usize) -> Option<BorrowedFd<'_>> {
        if self.ref_cache.as_ref().is_none_or(|(c, _)| *c != d) {
            let mut fd = self.reference.and_then(|r| r.try_clone_to_owned().ok());
            for i in self.below_root(d) {
                fd = fd.and_then(|f| {
                    self.owners
                        .open_in(f.as_fd(), &self.dirs[i].name, DIR_FLAGS)
                        .ok()
                });
            }
            self.ref_cache = Some((d, fd));
        }
        self.ref_cache
            .as_ref()
            .and_then(|(_, fd)| fd.as_ref())
            .map(|f| f.as_fd())
    }

    /// File `n`: of this batch, or a hard-linked one of an earlier batch.
    fn file_rec(&self, n: u64) -> Option<&FileRec> {
        match n.checked_sub(self.base) {
            Some(i) => self.files.get(usize::try_from(i).ok()?),
            None => self.linked.get(&n),
        }
    }

    fn file_rec_mut(&mut self, n: u64) -> Option<&mut FileRec> {
        match n.checked_sub(self.base) {
            Some(i) => self.files.get_mut(usize::try_from(i).ok()?),
            None => self.linked.get_mut(&n),
        }
    }

    /// The number the next file listed gets.
    fn next_file(&self) -> u64 {
        self.base + self.files.len() as u64
    }

    fn file_rel(&self, n: u64) -> Vec<u8> {
        match self.file_rec(n) {
            Some(FileRec {
                dir: Some(d), name, ..
            }) => self.rel_in(*d, name.to_bytes()),
            Some(f) => f.name.to_bytes().to_vec(),
            None => format!("file {n}").into_bytes(),
        }
    }

    /// Steps 2 and 3 for the files listed since the last pause (or the start): asks for those
    /// that differ, offering the bases found, and receives them; then forgets the batch but
    /// for its hard-linked files, whose extra names are linked at the end.
    fn batch(&mut self, conn: &mut Conn) -> Result<()> {
        for chunk in self.wanted.chunks(64 << 10) {
            conn.send(&Message::Want(chunk.to_vec()))?;
        }
        for (file, chunk, hashes) in std::mem::take(&mut self.bases) {
            self.basis_chunk.insert(file, chunk);
            conn.send(&Message::Basis {
                file,
                chunk,
                hashes,
            })?;
        }
        conn.send(&Message::WantEnd)?;
        self.contents(conn)?;
        let base = self.base;
        self.base = self.next_file();
        for (i, f) in self.files.drain(..).enumerate() {
            if f.group.is_some() {
                self.linked.insert(base + i as u64, f);
            }
        }
        self.basis_chunk.clear();
        self.resumed.clear();
        self.basis_in_reference.clear();
        Ok(())
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
