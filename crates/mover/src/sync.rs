//! The mirror: make a target directory an exact copy of a source directory.
//!
//! Each directory is a task on a pool of worker threads: it lists both sides, removes what the
//! source lacks, opens (or creates) its subdirectories and spawns a task for each, and hands its
//! other entries to the pool in batches. A directory's own attributes (owner, mode, ACLs, mtime)
//! are applied when the last task below it ends, so its mtime is set after its contents and a
//! read-only directory is filled before it becomes read-only.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RenameFlags, linkat, mkdirat, mknodat, openat, readlinkat,
    renameat, renameat_with, symlinkat, unlinkat,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use crate::attrs::{self, Handle, OpError};
use crate::content::{Copier, same_content};
use crate::exclude::{self, Excludes};
use crate::hardlink::{Claim, HardLinks};
use crate::listing::Listing;
use crate::manifest::{self, Chunk, PreviousFiles, Recorder};
use crate::meta::{Kind, Meta, Ts, stat_at, stat_fd};
use crate::metalog;
use crate::owner::{Id, Impersonate, Owners};
use crate::preflight::{self, StateDir};
use crate::relpath;
use contract::ExitCode;
use contract::summary::{EntryError, SCHEMA, Summary};

use crate::summary::{Journal, Stats, rfc3339};
use crate::xattr::{self, Xattrs};
use crate::{Error, Result, STATE_DIR};

/// Settings of a sync.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Mirror only this folder of the source (relative, inside the source, no symlinks).
    pub subdir: Option<PathBuf>,
    /// Compare content of files whose size and mtime are equal too.
    pub checksum: bool,
    /// Mirror an empty source (deleting everything in the target) instead of refusing.
    pub allow_empty: bool,
    /// Worker threads; 0 picks a number from the CPUs this process may use.
    pub threads: usize,
    /// Count the source in a separate pass ahead of the copy, so progress knows totals early.
    pub count_ahead: bool,
    /// When to read source entries as their owners (see [`crate::owner`]).
    pub impersonate: Impersonate,
    /// Keep target entries the source lacks (restore into a tree without removing anything).
    pub no_delete: bool,
    /// Record a manifest with content hashes of the mirror (`TARGET/.pvc-backup/manifest`),
    /// for `verify` without the source.
    pub manifest: bool,
    /// Flush the target's filesystem to the disk at the end of the run (`syncfs`), and fail when
    /// a write did not reach it.
    pub fsync: bool,
    /// What to leave out of the copy (see [`crate::exclude`]).
    pub excludes: Excludes,
    /// Do not compare the target's free space and inodes with what the copy needs before
    /// writing (see [`crate::space`]).
    pub no_space_check: bool,
}

/// Default worker count: file copying waits on I/O as much as on CPU, so twice the CPUs this
/// process may use (cgroup quota and affinity included), at least 4.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * 2).clamp(4, 64)
}

/// A prepared sync: roots opened, checks passed, target locked.
#[derive(Debug)]
pub struct Sync {
    opts: Options,
    src_path: PathBuf,
    dst_path: PathBuf,
    src: OwnedFd,
    dst: OwnedFd,
    state: StateDir,
    stats: Arc<Stats>,
    owners: Owners,
    /// Where an unprivileged run's metadata manifest goes (the state folder when `None`).
    meta_dir: Option<OwnedFd>,
    /// A previous copy whose unchanged entries are hard-linked instead of copied.
    reference: Option<OwnedFd>,
    /// Where the copy pass records the manifest of what it places (versioned backups).
    record: Option<Arc<Recorder>>,
    /// The target is a new folder that becomes visible only as a whole, once complete (a
    /// snapshot being made): its entries need no temporary names of their own.
    staged: bool,
}

impl Sync {
    /// Points a prepared sync at another target inside the locked one: `target` (a new, empty
    /// folder) is filled, entries equal to those in `reference` are hard-linked to them, and an
    /// unprivileged run's manifest goes to `meta_dir` (given only to unprivileged runs). Used
    /// for versioned backups.
    pub(crate) fn retarget(
        mut self,
        target: OwnedFd,
        target_path: PathBuf,
        meta_dir: Option<OwnedFd>,
        reference: Option<OwnedFd>,
    ) -> Sync {
        self.dst = target;
        self.dst_path = target_path;
        self.meta_dir = meta_dir;
        self.reference = reference;
        self.staged = true;
        self
    }

    /// Has the copy pass record every entry it places in `recorder`, so the new tree needs no
    /// second walk for its manifest. Used for versioned backups, whose target starts empty.
    pub(crate) fn record_into(mut self, recorder: Arc<Recorder>) -> Sync {
        self.record = Some(recorder);
        self
    }

    /// The opened source root (or `--subdir`).
    pub(crate) fn source_fd(&self) -> BorrowedFd<'_> {
        self.src.as_fd()
    }

    /// The settings of this run.
    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// The opened (and locked) target root.
    pub(crate) fn target_fd(&self) -> BorrowedFd<'_> {
        self.dst.as_fd()
    }

    /// The locked state folder of the target.
    pub(crate) fn state_fd(&self) -> BorrowedFd<'_> {
        self.state.dir.as_fd()
    }

    /// The acting-as-owner threads of this run.
    pub(crate) fn owners(&self) -> &Owners {
        &self.owners
    }

    /// Opens and checks source and target (free room included, unless `no_space_check`), and
    /// locks the target. Nothing in the target changes when this fails (a missing target folder
    /// is created only once every check passed).
    pub fn prepare(src: &Path, dst: &Path, opts: Options) -> Result<Sync> {
        Sync::prepare_with(src, dst, opts, true)
    }

    /// [`Sync::prepare`], checking the target's free room against a mirror only when
    /// `mirror_space` (a versioned backup checks it against its previous snapshot instead).
    pub(crate) fn prepare_with(
        src: &Path,
        dst: &Path,
        opts: Options,
        mirror_space: bool,
    ) -> Result<Sync> {
        let owners = Owners::new(opts.impersonate);
        let src_fd = preflight::open_source(src, opts.subdir.as_deref(), &owners)?;
        if !opts.allow_empty
            && preflight::is_empty_source(src_fd.as_fd())
                .map_err(|e| Error::io("cannot read source", src.display().to_string(), e))?
        {
            return Err(Error::SourceEmpty {
                path: src.display().to_string(),
            });
        }
        let dst_fd = preflight::open_target(dst, src_fd.as_fd(), src, &owners)?;
        if mirror_space && !opts.no_space_check {
            let (s, d) = (src_fd.as_fd(), dst_fd.as_fd());
            crate::space::check(s, d, Some(d), dst, &opts.excludes, false)?;
        }
        let state = preflight::lock_target(dst_fd.as_fd(), dst, &owners)?;
        Ok(Sync {
            opts,
            src_path: src.to_path_buf(),
            dst_path: dst.to_path_buf(),
            src: src_fd,
            dst: dst_fd,
            state,
            stats: Arc::new(Stats::default()),
            owners,
            meta_dir: None,
            reference: None,
            record: None,
            staged: false,
        })
    }

    /// Writes `TARGET/.pvc-backup/manifest` for the mirror, hashing only files whose inode,
    /// size or mtime changed since the previous manifest.
    fn write_manifest(&self, state: BorrowedFd<'_>) -> std::io::Result<()> {
        let previous = openat(
            state,
            c"manifest",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .and_then(|fd| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).ok()?;
            crate::manifest::parse(&data).ok()
        })
        .unwrap_or_default();
        let known = crate::manifest::known(&previous);
        drop(previous);
        self.owners.retry_target(&[], &[state], || {
            let f = openat(
                state,
                c"manifest.tmp",
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            crate::manifest::build(self.dst.as_fd(), &known, std::fs::File::from(f))?;
            renameat(state, c"manifest.tmp", state, c"manifest")?;
            Ok(())
        })
    }

    fn manifest_dir(&self) -> BorrowedFd<'_> {
        self.meta_dir
            .as_ref()
            .map_or(self.state.dir.as_fd(), |d| d.as_fd())
    }

    /// The run's counters, for progress display while [`Sync::run`] works.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Mirrors the source into the target and returns the summary (also written to
    /// `TARGET/.pvc-backup/last-sync.json`).
    pub fn run(self) -> Result<Summary> {
        self.run_keep(|_, _| Ok(())).map(|(s, ())| s)
    }

    /// Runs, then calls `after` while the target is still locked.
    pub(crate) fn run_keep<R>(
        self,
        after: impl FnOnce(&Summary, &Owners) -> Result<R>,
    ) -> Result<(Summary, R)> {
        let summary = self.mirror()?;
        let r = after(&summary, &self.owners)?;
        Ok((summary, r))
    }

    fn mirror(&self) -> Result<Summary> {
        let started = SystemTime::now();
        let t0 = Instant::now();
        let threads = if self.opts.threads == 0 {
            default_threads()
        } else {
            self.opts.threads
        };
        let stats = &*self.stats;
        let root_meta = stat_fd(&self.src)
            .map_err(|e| Error::io("cannot stat source", self.src_path.display().to_string(), e))?;
        let root_x = self
            .owners
            .retry_entry(self.src.as_fd(), (root_meta.uid, root_meta.gid), || {
                xattr::read(xattr::Target::Fd(self.src.as_fd()))
            })
            .map_err(|e| {
                Error::io(
                    "cannot read attributes of source",
                    self.src_path.display().to_string(),
                    e,
                )
            })?;
        // Without CAP_CHOWN, owners and setuid/setgid bits go to the metadata manifest.
        let unprivileged = if !crate::check::can_chown() {
            let egid = rustix::process::getegid().as_raw();
            Some(
                metalog::Writer::create(
                    self.manifest_dir(),
                    rustix::process::geteuid().as_raw(),
                    egid,
                )
                .map_err(|e| {
                    Error::io(
                        "cannot write metadata manifest in",
                        self.dst_path.display().to_string(),
                        e,
                    )
                })?,
            )
        } else {
            None
        };
        // A source that is the target of an unprivileged run carries the real attributes in its
        // manifest (at the root of the source, so with --subdir the keys get the subdir first).
        let recorded = {
            let root = match &self.opts.subdir {
                None => self.src.try_clone().ok(),
                Some(_) => preflight::open_source(&self.src_path, None, &self.owners).ok(),
            };
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let state = root.and_then(|r| openat(&r, c".pvc-backup", flags, Mode::empty()).ok());
            let read = match state {
                Some(state) => metalog::read(state.as_fd()).map_err(|e| {
                    Error::io(
                        "cannot read the metadata manifest of",
                        self.src_path.display().to_string(),
                        e,
                    )
                })?,
                None => None,
            };
            match (read, &self.opts.subdir) {
                (Some(map), Some(sub)) => {
                    let prefix = sub.as_os_str().as_encoded_bytes();
                    let prefix: Vec<u8> = prefix.strip_suffix(b"/").unwrap_or(prefix).to_vec();
                    Some(
                        map.into_iter()
                            .filter_map(|(k, v)| {
                                let rest = k.strip_prefix(prefix.as_slice())?;
                                match rest.first() {
                                    None => Some((Vec::new(), v)),
                                    Some(b'/') => Some((rest[1..].to_vec(), v)),
                                    Some(_) => None,
                                }
                            })
                            .collect(),
                    )
                }
                (m, _) => m,
            }
        };
        let dst_root = self
            .dst
            .try_clone()
            .map_err(|e| Error::io("cannot use target", self.dst_path.display().to_string(), e))?;
        let ctx = Ctx {
            opts: &self.opts,
            stats,
            journal: Journal::default(),
            links: HardLinks::default(),
            copier: Copier::default(),
            dst_root: self.dst.as_fd(),
            tmp_seq: AtomicU64::new(0),
            pid: std::process::id(),
            noatime: AtomicBool::new(true),
            owners: &self.owners,
            unprivileged,
            recorded,
            record: self.record.as_deref(),
            staged: self.staged,
            creator: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            full: AtomicBool::new(false),
            first_full: std::sync::Mutex::new(None),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("mover-{i}"))
            .build()
            .map_err(|e| Error::io("cannot start worker threads", "", std::io::Error::other(e)))?;
        let counting_done = AtomicBool::new(false);
        std::thread::scope(|ts| {
            if self.opts.count_ahead {
                let src = self.src.as_fd();
                let done = &counting_done;
                let excludes = &self.opts.excludes;
                ts.spawn(move || count_ahead(src, stats, excludes, done));
            }
            let src_root = self.src.try_clone();
            pool.scope(|s| {
                let root = Arc::new(DirNode {
                    ctx: &ctx,
                    parent: None,
                    rel: Vec::new(),
                    dst: dst_root,
                    src_id: (root_meta.uid, root_meta.gid),
                    default_acl: has_default_acl(&ctx, self.dst.as_fd()),
                    new_owner: stat_fd(self.dst.as_fd())
                        .ok()
                        .map(|m| new_owner(ctx.creator, &m)),
                    link_ref: self.reference.as_ref().and_then(|r| r.try_clone().ok()),
                    made: false,
                    hidden: ctx.staged,
                    pending: None,
                    want: ctx.wanted(Vec::new, root_meta, true),
                    want_x: root_x,
                });
                match src_root {
                    Ok(fd) => process_dir(s, &ctx, root, fd),
                    Err(e) => ctx.journal.error(stats, b"", "open", e),
                }
            });
            counting_done.store(true, Relaxed);
        });
        stats.scan_complete.store(true, Relaxed);
        if ctx.full.load(Relaxed) {
            return Err(self.target_full(&ctx));
        }

        let (errors, notes) = ctx.journal.take();
        let state = self.state.dir.as_fd();
        match ctx.unprivileged {
            Some(w) => w.finish(self.manifest_dir()).map_err(|e| {
                Error::io(
                    "cannot write metadata manifest in",
                    self.dst_path.display().to_string(),
                    e,
                )
            })?,
            None => metalog::remove(self.manifest_dir()),
        }
        if self.opts.manifest {
            self.write_manifest(state).map_err(|e| {
                Error::io(
                    "cannot write the manifest of",
                    self.dst_path.display().to_string(),
                    e,
                )
            })?;
        }
        if self.opts.fsync {
            // Also reports a write that failed in the background since the target was opened.
            rustix::fs::syncfs(&self.dst).map_err(|e| {
                Error::io(
                    "cannot flush to the disk the writes into",
                    self.dst_path.display().to_string(),
                    e.into(),
                )
            })?;
        }
        let (entries, bytes) = crate::summary::counts(stats);
        let partial = entries.failed > 0;
        let summary = Summary {
            schema: SCHEMA,
            command: "sync".into(),
            source: relpath::display(self.src_path.as_os_str().as_encoded_bytes()),
            target: relpath::display(self.dst_path.as_os_str().as_encoded_bytes()),
            started_at: rfc3339(started),
            duration_ms: t0.elapsed().as_millis() as u64,
            exit_code: if partial {
                ExitCode::Partial
            } else {
                ExitCode::Ok
            }
            .code(),
            result: if partial { "partial" } else { "ok" }.into(),
            entries,
            bytes,
            errors,
            notes,
        };
        let written = self.owners.retry_target(&[], &[state], || {
            write_state_file(state, c"last-sync.json", &summary)
        });
        written.map_err(|e| {
            Error::io(
                "cannot write summary into",
                self.dst_path.display().to_string(),
                e,
            )
        })?;
        Ok(summary)
    }
}

impl Sync {
    /// The error of a run that stopped when the target was full, with how much more room the
    /// rest of the copy needs than its filesystem has free now.
    fn target_full(&self, ctx: &Ctx<'_>) -> Error {
        let first = ctx
            .first_full
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| EntryError {
                path: String::new(),
                op: "write".into(),
                error: "No space left on device".into(),
            });
        let target = relpath::display(self.dst_path.as_os_str().as_encoded_bytes());
        let free = crate::space::free(self.dst.as_fd());
        // A versioned backup compares with its previous snapshot, a mirror with itself.
        let reference = if self.staged {
            self.reference.as_ref().map(|r| r.as_fd())
        } else {
            Some(self.dst.as_fd())
        };
        let need = crate::space::need(
            self.src.as_fd(),
            reference,
            &self.opts.excludes,
            self.staged,
        );
        let advice = match free {
            Ok(free) if !need.fits(&free) => {
                let more = need.beyond(&free);
                let what = match (more.bytes, more.inodes) {
                    (b, 0) => crate::space::show_bytes(b),
                    (0, i) => crate::space::show_inodes(Some(i)),
                    (b, i) => format!(
                        "{} and {}",
                        crate::space::show_bytes(b),
                        crate::space::show_inodes(Some(i))
                    ),
                };
                format!(
                    "The rest of the copy needs about {what} more than the {} and {} free now: \
                     make room there or give the volume more space, then run again",
                    crate::space::show_bytes(free.bytes),
                    crate::space::show_inodes(free.inodes)
                )
            }
            Ok(free) => format!(
                "The filesystem says {} and {} are free, about what the rest needs ({} and {}): \
                 a quota, or another writer, may be taking the room. Make room there, then run \
                 again",
                crate::space::show_bytes(free.bytes),
                crate::space::show_inodes(free.inodes),
                crate::space::show_bytes(need.bytes),
                crate::space::show_inodes(Some(need.inodes))
            ),
            Err(e) => {
                format!("Its free space cannot be read ({e}): make room there, then run again")
            }
        };
        Error::TargetFull {
            target,
            path: first.path,
            op: first.op,
            error: first.error,
            advice,
        }
    }
}

/// Whether an error means the target has no room left: no space, or the owner's quota spent.
fn out_of_room(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Writes a JSON document into the state folder under a temporary name, then renames it.
pub(crate) fn write_state_file(
    dir: BorrowedFd<'_>,
    name: &CStr,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let tmp = CString::new(format!("{}.tmp", name.to_string_lossy())).expect("no NUL");
    let fd = openat(
        dir,
        tmp.as_c_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = std::io::BufWriter::new(std::fs::File::from(fd));
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    f.flush()?;
    renameat(dir, tmp.as_c_str(), dir, name)?;
    Ok(())
}

/// What the workers share.
struct Ctx<'a> {
    opts: &'a Options,
    stats: &'a Stats,
    journal: Journal,
    links: HardLinks,
    copier: Copier,
    dst_root: BorrowedFd<'a>,
    tmp_seq: AtomicU64,
    pid: u32,
    noatime: AtomicBool,
    owners: &'a Owners,
    /// Unprivileged run: what cannot be applied is recorded here.
    unprivileged: Option<metalog::Writer>,
    /// Attributes recorded by an unprivileged run into the source, applied instead of the ones
    /// on disk.
    recorded: Option<HashMap<Vec<u8>, metalog::Recorded>>,
    /// The manifest this pass writes, if any.
    record: Option<&'a Recorder>,
    /// The whole target is hidden until the run ends (a snapshot being made), so every new
    /// entry is made under its own name (see [`make_entry`]).
    staged: bool,
    /// Whom the mover's own new entries belong to: its effective uid and gid.
    creator: Id,
    /// Set when a write found the target full: the workers stop taking up entries.
    full: AtomicBool,
    /// The failure that found the target full.
    first_full: std::sync::Mutex<Option<EntryError>>,
}

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

/// A temporary name, unique in this run; created with O_EXCL (or its equivalent) and retried on
/// collision. Left-overs of a killed run are extraneous entries the next run removes.
struct TmpName([u8; 48]);

impl TmpName {
    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.0).expect("NUL-terminated")
    }
}

impl Ctx<'_> {
    /// The attributes the copy of a source entry gets: the ones recorded in the source's
    /// metadata manifest where it has one, and in an unprivileged run only what this mover can
    /// apply (the rest recorded, when `record`).
    fn wanted(&self, rel: impl FnOnce() -> Vec<u8>, meta: Meta, record: bool) -> Meta {
        if self.recorded.is_none() && self.unprivileged.is_none() {
            return meta;
        }
        let rel = rel();
        let mut meta = meta;
        if let Some(r) = self.recorded.as_ref().and_then(|m| m.get(&rel)) {
            (meta.uid, meta.gid, meta.perm) = (r.uid, r.gid, r.mode);
        }
        match &self.unprivileged {
            Some(w) => {
                if record && let Err(e) = w.record(&rel, &meta) {
                    self.fail(&rel, b"", "record metadata", e);
                }
                w.applicable(&meta)
            }
            None => meta,
        }
    }

    fn tmp_name(&self) -> TmpName {
        let mut buf = [0u8; 48];
        let seq = self.tmp_seq.fetch_add(1, Relaxed);
        let mut w = &mut buf[..47];
        let _ = write!(w, ".pvcb-tmp.{}.{}", self.pid, seq);
        TmpName(buf)
    }

    /// Adds the target entry `name` of `dir` (in the directory `rel`) to the manifest as it is
    /// on disk now; a file's content is read and hashed unless `previous` holds its hash.
    /// `ctime` is the source's change time, given when the entry was placed with the extended
    /// attributes the source had then.
    fn record_on_disk(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        previous: &PreviousFiles,
        ctime: Option<Ts>,
    ) {
        self.record_entry(chunk, dir, rel, name, ctime, |m| {
            previous.hash(name.to_bytes(), m).map(|h| (h, 0))
        });
    }

    /// Adds the file `name` the copy just placed in `dir` to the manifest with the hash of the
    /// `bytes` it copied. The attributes are the ones read from disk, as applied: `placed` when
    /// the copy read them through its descriptor, else read here.
    #[allow(clippy::too_many_arguments)]
    fn record_placed(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        (hash, bytes): ([u8; 32], u64),
        ctime: Option<Ts>,
        placed: Option<(Meta, [u8; 16])>,
    ) {
        if let (Some(rec), Some(c), Some((m, x))) = (self.record, chunk.as_mut(), placed)
            && m.size == bytes
        {
            rec.hashed(bytes);
            let mut e = manifest::Entry::from_meta(&m, Vec::new(), x, hash);
            e.ctime = ctime;
            c.push(name.to_bytes(), &e);
            return;
        }
        self.record_entry(chunk, dir, rel, name, ctime, |m| {
            (m.size == bytes).then_some((hash, bytes))
        });
    }

    /// Adds `name` of `dir` to the manifest as it is on disk now, with the source's change time
    /// `ctime` and the hash `known` gives (and the bytes hashed to get it), reading and hashing
    /// a file's content when it gives none.
    fn record_entry(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        ctime: Option<Ts>,
        known: impl Fn(&Meta) -> Option<([u8; 32], u64)> + std::marker::Sync,
    ) {
        let (Some(rec), Some(chunk)) = (self.record, chunk.as_mut()) else {
            return;
        };
        let described = self.owners.retry_target(&[], &[dir], || {
            let m = stat_at(dir, name)?;
            let known = known(&m);
            let e = manifest::describe(dir, name, &m, Vec::new(), known.map(|(h, _)| h))?;
            let hashed = match known {
                Some((_, bytes)) => bytes,
                None if m.kind == Kind::File => e.size,
                None => 0,
            };
            Ok((e, hashed))
        });
        match described {
            Ok((mut e, hashed)) => {
                rec.hashed(hashed);
                e.ctime = ctime;
                chunk.push(name.to_bytes(), &e);
            }
            Err(e) => rec.fail(std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e}",
                    relpath::display(&relpath::join(rel, name.to_bytes()))
                ),
            )),
        }
    }

    /// Records a failed entry. A failure for lack of room stops the run: the first is recorded
    /// and the workers take up nothing more; those of writes already under way are not listed.
    fn fail(&self, dir: &[u8], name: &[u8], op: &str, err: impl std::fmt::Display + 'static) {
        let path = if name.is_empty() {
            dir.to_vec()
        } else {
            relpath::join(dir, name)
        };
        let any: &dyn std::any::Any = &err;
        if let Some(e) = any.downcast_ref::<std::io::Error>()
            && out_of_room(e)
        {
            if self.full.swap(true, Relaxed) {
                return;
            }
            *self.first_full.lock().unwrap_or_else(|p| p.into_inner()) = Some(EntryError {
                path: relpath::display(&path),
                op: op.to_string(),
                error: e.to_string(),
            });
        }
        self.journal.error(self.stats, &path, op, err);
    }

    /// Whether the run stops because the target is full.
    fn stopping(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// Whether the source entry `name` of `dir` (looked up as `dir_id`), at `rel`, is left out
    /// of the copy: matched by an exclude pattern, or a folder tagged as a cache.
    fn left_out(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        rel: &[u8],
        name: &CStr,
        meta: &Meta,
    ) -> bool {
        let ex = &self.opts.excludes;
        let is_dir = meta.kind == Kind::Dir;
        if ex.matches(&relpath::join(rel, name.to_bytes()), is_dir) {
            return true;
        }
        if !(is_dir && ex.caches()) {
            return false;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let owner = (meta.uid, meta.gid);
        let Ok(fd) = self.owners.open_as(dir, dir_id, name, Some(owner), flags) else {
            return false;
        };
        self.owners
            .retry_entry(fd.as_fd(), owner, || exclude::is_cache_dir(fd.as_fd()))
            .unwrap_or(false)
    }

    /// Opens a source file for reading, without changing its access time where allowed, as
    /// the mover or else as its owner (`dir_id` owns the directory, `meta` is the file's).
    fn open_source_file(
        &self,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        name: &CStr,
        meta: &Meta,
    ) -> std::io::Result<OwnedFd> {
        let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if self.owners.mode() != Impersonate::Always {
            let own = if self.noatime.load(Relaxed) {
                match openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
                    Err(Errno::PERM) => {
                        self.noatime.store(false, Relaxed);
                        openat(dir, name, base, Mode::empty())
                    }
                    r => r,
                }
            } else {
                openat(dir, name, base, Mode::empty())
            };
            match own {
                Err(e)
                    if (e == Errno::ACCESS || e == Errno::PERM)
                        && self.owners.mode() == Impersonate::Auto => {}
                r => return r.map_err(Into::into),
            }
        }
        // As its owner, O_NOATIME is always allowed.
        self.owners.open_as(
            dir,
            dir_id,
            name,
            Some((meta.uid, meta.gid)),
            base | OFlags::NOATIME,
        )
    }
}

/// A target directory being filled. When the last reference goes (its own task and every task
/// below it are done), its attributes are applied.
struct DirNode<'a> {
    ctx: &'a Ctx<'a>,
    // Keeps the parent alive, so a parent is finished only after all its children.
    parent: Option<Arc<DirNode<'a>>>,
    rel: Vec<u8>,
    dst: OwnedFd,
    /// Whom to act as when looking up entries in the source directory: its owner on disk, or
    /// the identity that opened it when its owner bits refuse (see [`crate::access`]).
    src_id: Id,
    /// Whether the target directory has a default ACL, which new entries inherit.
    default_acl: bool,
    /// The same directory in a previous copy, whose unchanged entries are hard-linked.
    link_ref: Option<OwnedFd>,
    /// Made by this run, so empty when it is entered: there is nothing in it to read.
    made: bool,
    /// Nobody sees what is made in it before the run is done with it: it or a directory above
    /// it has a temporary name, or the whole target is staged. New entries go straight to
    /// their names.
    hidden: bool,
    /// The temporary name it has in its parent, replaced by its own name once it is complete.
    pending: Option<CString>,
    /// Whom a file the mover makes in it belongs to from the start, when known (see
    /// [`new_owner`]).
    new_owner: Option<Id>,
    want: Meta,
    want_x: Xattrs,
}

impl DirNode<'_> {
    /// The attributes a new entry starts with in this directory, when known: none, unless a
    /// default ACL passes some on (then they are read from the entry).
    fn inherited(&self) -> Option<&'static Xattrs> {
        static NONE: Xattrs = Xattrs::new();
        (!self.default_acl).then_some(&NONE)
    }
}

/// Whom a file the mover makes in a target directory with attributes `dir` belongs to: the
/// mover's uid, and its gid or, in a setgid directory, the directory's.
fn new_owner(creator: Id, dir: &Meta) -> Id {
    let gid = if dir.perm & 0o2000 != 0 {
        dir.gid
    } else {
        creator.1
    };
    (creator.0, gid)
}

/// Whether an open target directory has a default ACL.
fn has_default_acl(ctx: &Ctx<'_>, dir: BorrowedFd<'_>) -> bool {
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
struct DirWork {
    src: OwnedFd,
    listing: Listing,
    metas: Vec<Option<Meta>>,
    /// The type of the target entry of the same name, when there is one.
    present: Vec<Option<FileType>>,
    /// Source directories missing in the target that a killed run left under their temporary
    /// names, in order: they are taken up where that run stopped.
    adopt: Vec<u32>,
    /// What the previous manifest says about the files of this directory, when recording one.
    previous: PreviousFiles,
}

const BATCH_ENTRIES: usize = 256;
const BATCH_BYTES: u64 = 64 << 20;

fn process_dir<'s, 'a: 's>(
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
                Ok(m) => ctx.left_out(src.as_fd(), dir_id, &node.rel, name, m),
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

/// What happened to one non-directory entry.
enum Outcome {
    /// Made anew; a file copied through the mover's buffer comes with its content hash.
    /// `attrs_applied` is false when applying some attribute failed (an error already reported).
    Copied {
        bytes: u64,
        ino: u64,
        hash: Option<[u8; 32]>,
        attrs_applied: bool,
        /// With a hash, when recording: the copy's attributes and extended attributes' digest
        /// as on disk once placed.
        placed: Option<(Meta, [u8; 16])>,
    },
    Updated {
        ino: u64,
    },
    Unchanged {
        ino: u64,
    },
    /// Hard-linked from the previous copy; its manifest entry when recording one and its hash
    /// is known without reading it.
    Linked {
        ino: u64,
        entry: Option<manifest::Entry>,
    },
}

impl Outcome {
    fn ino(&self) -> u64 {
        match *self {
            Outcome::Copied { ino, .. }
            | Outcome::Updated { ino }
            | Outcome::Unchanged { ino }
            | Outcome::Linked { ino, .. } => ino,
        }
    }
}

type Failure = (&'static str, std::io::Error);

fn handle_entry(
    ctx: &Ctx<'_>,
    node: &DirNode<'_>,
    work: &DirWork,
    i: usize,
    chunk: &mut Option<Chunk>,
) {
    let stats = ctx.stats;
    if ctx.stopping() {
        return;
    }
    let Some(meta) = work.metas[i] else { return };
    let name = work.listing.name(i);
    let meta = ctx.wanted(
        || relpath::join(&node.rel, name.to_bytes()),
        meta,
        meta.kind != Kind::Socket,
    );
    let dst = node.dst.as_fd();
    stats.entries_done.fetch_add(1, Relaxed);
    if meta.kind == Kind::File {
        stats.bytes_done.fetch_add(meta.size, Relaxed);
    }

    // The target entry of the same name, if any; a directory there goes first.
    let mut have = None;
    if work.present[i].is_some() {
        match ctx.owners.retry_target(&[], &[dst], || stat_at(dst, name)) {
            Ok(m) if m.kind == Kind::Dir || meta.kind == Kind::Socket => {
                match ctx
                    .owners
                    .retry_target(&[], &[dst], || crate::remove::remove(dst, name))
                {
                    Ok(n) => {
                        stats.deleted.fetch_add(n, Relaxed);
                    }
                    Err(e) => return ctx.fail(&node.rel, name.to_bytes(), "delete", e),
                }
            }
            Ok(m) => have = Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return ctx.fail(&node.rel, name.to_bytes(), "stat target", e),
        }
    }
    if meta.kind == Kind::Socket {
        stats.skipped.fetch_add(1, Relaxed);
        ctx.journal.note(
            &relpath::join(&node.rel, name.to_bytes()),
            "socket not copied: a socket exists only while a process listens on it",
        );
        return;
    }

    let result = if meta.nlink > 1 {
        match ctx.links.claim((meta.dev, meta.ino), meta.nlink) {
            Claim::First(first) => {
                let r = sync_entry(ctx, node, work, i, &meta, have.as_ref());
                if let Ok(out) = &r {
                    first.done(relpath::join(&node.rel, name.to_bytes()), out.ino());
                }
                r
            }
            Claim::Copied { dst_rel, dst_ino } => {
                if have.is_some_and(|h| h.ino == dst_ino) {
                    stats.unchanged.fetch_add(1, Relaxed);
                    ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, None);
                    return;
                }
                match link_to(
                    ctx,
                    &dst_rel,
                    dst,
                    name,
                    (meta.uid, meta.gid),
                    node.hidden && have.is_none(),
                ) {
                    Ok(()) => {
                        stats.linked.fetch_add(1, Relaxed);
                        ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, None);
                        tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), "linked");
                        return;
                    }
                    Err(e) => {
                        ctx.journal.note(
                            &relpath::join(&node.rel, name.to_bytes()),
                            format!("copied on its own: cannot hard-link to its first name: {e}"),
                        );
                        sync_entry(ctx, node, work, i, &meta, have.as_ref())
                    }
                }
            }
        }
    } else {
        sync_entry(ctx, node, work, i, &meta, have.as_ref())
    };
    // The source's change time goes into the manifest where the placed entry has the extended
    // attributes the source had after that change time was read. A new copy has them unless
    // applying some failed.
    let mut ctime = None;
    match result {
        Ok(Outcome::Copied {
            bytes,
            hash,
            attrs_applied,
            placed,
            ..
        }) => {
            if attrs_applied {
                ctime = Some(meta.ctime);
            }
            stats.copied.fetch_add(1, Relaxed);
            stats.bytes_copied.fetch_add(bytes, Relaxed);
            tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), bytes, "copied");
            if let Some(h) = hash {
                ctx.record_placed(chunk, dst, &node.rel, name, (h, bytes), ctime, placed);
                return;
            }
        }
        Ok(Outcome::Updated { .. }) => {
            stats.updated.fetch_add(1, Relaxed);
            tracing::debug!(path = %relpath::display(&relpath::join(&node.rel, name.to_bytes())), "attributes updated");
        }
        Ok(Outcome::Unchanged { .. }) => {
            stats.unchanged.fetch_add(1, Relaxed);
        }
        Ok(Outcome::Linked { entry, .. }) => {
            // Linked only when its extended attributes were found (or known) to be the source's.
            ctime = Some(meta.ctime);
            stats.unchanged.fetch_add(1, Relaxed);
            if let (Some(e), Some(c)) = (entry, chunk.as_mut()) {
                c.push(name.to_bytes(), &e);
                return;
            }
        }
        Err((op, e)) => return ctx.fail(&node.rel, name.to_bytes(), op, e),
    }
    ctx.record_on_disk(chunk, dst, &node.rel, name, &work.previous, ctime);
}

/// Creates a hard link named `name` in `dir` to the target entry at `dst_rel` (`fresh`: `dir`
/// has no entry of that name, see [`make_entry`]).
fn link_to(
    ctx: &Ctx<'_>,
    dst_rel: &[u8],
    dir: BorrowedFd<'_>,
    name: &CStr,
    owner: Id,
    fresh: bool,
) -> std::io::Result<()> {
    let (parent_rel, base) = relpath::split(dst_rel);
    let mut parent: Option<OwnedFd> = None;
    for comp in parent_rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let c = CString::new(comp).map_err(std::io::Error::other)?;
        let at = parent.as_ref().map_or(ctx.dst_root, |p| p.as_fd());
        let open = |n: &CStr| {
            ctx.owners.retry_target(&[], &[at], || {
                openat(
                    at,
                    n,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(Into::into)
            })
        };
        let missing = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        // A new directory still being filled has its temporary name, and gets its own name
        // once complete, maybe between two of these calls: one of the three finds it.
        let fd = match open(&c) {
            Err(e) if missing(&e) => match new_dir_name(comp) {
                Some(t) => match open(&t) {
                    Err(e) if missing(&e) => open(&c),
                    r => r,
                },
                None => Err(e),
            },
            r => r,
        };
        parent = Some(fd?);
    }
    let at = parent.as_ref().map_or(ctx.dst_root, |p| p.as_fd());
    let base = CString::new(base).map_err(std::io::Error::other)?;
    // With protected_hardlinks, only the file's owner (or CAP_FOWNER) may link it.
    let (made, ()) = make_entry(ctx, owner, &[dir, at], name, fresh, |n| {
        linkat(at, base.as_c_str(), dir, n, AtFlags::empty()).map_err(Into::into)
    })?;
    place(ctx, dir, &made, name)
}

fn sync_entry(
    ctx: &Ctx<'_>,
    node: &DirNode<'_>,
    work: &DirWork,
    i: usize,
    meta: &Meta,
    have: Option<&Meta>,
) -> std::result::Result<Outcome, Failure> {
    let e = Entry {
        ctx,
        node,
        src: work.src.as_fd(),
        dst: node.dst.as_fd(),
        name: work.listing.name(i),
        meta,
        have,
        previous: &work.previous,
    };
    if have.is_none()
        && let Some(r) = &node.link_ref
        && let Some(out) = reuse(&e, r.as_fd())
    {
        return Ok(out);
    }
    match meta.kind {
        Kind::File => sync_file(&e),
        Kind::Symlink => sync_symlink(&e),
        Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => sync_special(&e),
        Kind::Dir | Kind::Socket => unreachable!("handled by the caller"),
    }
}

/// Hard-links the entry from the previous copy `reference` when it is unchanged there: same type,
/// size, mtime, owner, mode and extended attributes, and for a symlink the same target (with
/// `--checksum`, the same content too). Returns `None` when it must be copied.
///
/// When the previous manifest shows the source entry is still the one the previous run placed
/// (same change time, old enough: see [`PreviousFiles::unchanged`]) and the previous copy's
/// entry is still the one that manifest lists (same inode, type, size, mtime, mode, owner), the
/// extended attributes of neither are read and a symlink's target is not read: the manifest
/// holds them.
fn reuse(e: &Entry<'_, '_>, reference: BorrowedFd<'_>) -> Option<Outcome> {
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

/// One non-directory source entry being mirrored: where it is, what it is, and what the target
/// has under its name.
#[derive(Clone, Copy)]
struct Entry<'e, 'a> {
    ctx: &'e Ctx<'a>,
    node: &'e DirNode<'a>,
    src: BorrowedFd<'e>,
    dst: BorrowedFd<'e>,
    name: &'e CStr,
    meta: &'e Meta,
    have: Option<&'e Meta>,
    /// What the previous manifest says about this directory's files.
    previous: &'e PreviousFiles,
}

/// The name a new entry was made under by [`make_entry`].
enum Made {
    /// Its own name: the target had no entry of that name.
    Final,
    /// A temporary name, renamed over the existing entry by [`place`] once complete.
    Tmp(TmpName),
}

impl Made {
    /// The name the entry has now, given the name it is made for.
    fn current<'n>(&'n self, name: &'n CStr) -> &'n CStr {
        match self {
            Made::Final => name,
            Made::Tmp(t) => t.as_cstr(),
        }
    }
}

/// Puts a finished entry in place: renames a temporary one over the existing entry (as the
/// directory's owner if the mover may not write there); on failure it is removed.
fn place(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, made: &Made, name: &CStr) -> std::io::Result<()> {
    let Made::Tmp(tmp) = made else {
        return Ok(());
    };
    let t = tmp.as_cstr();
    let r = ctx.owners.retry_target(&[], &[dir], || {
        renameat(dir, t, dir, name).map_err(Into::into)
    });
    if r.is_err() {
        discard(ctx, dir, made, name);
    }
    r
}

/// Makes a new entry for `name` in the directory `within[0]` with `make` (as the mover, else as
/// `owner` or the owner of a directory in `within`).
///
/// A mirror shows no half-written file under a real name, even after a run that was killed: an
/// entry is made under a fresh temporary name (the next one when one is taken) and renamed into
/// place by [`place`] once complete. In a hidden directory (a snapshot being made, or a new
/// directory of a mirror, each given its own name by a rename once complete) an entry that has
/// no name there yet (`fresh`) is made under its own name instead: nobody sees the folder before
/// it is complete, the next run removes or takes up a killed run's folder, and the rename it
/// spares is, after the copy itself, the most costly step of placing a small file. A fresh name
/// that turns out to be taken falls back to a temporary one.
fn make_entry<R: Send>(
    ctx: &Ctx<'_>,
    owner: Id,
    within: &[BorrowedFd<'_>],
    name: &CStr,
    fresh: bool,
    make: impl Fn(&CStr) -> std::io::Result<R> + Send + std::marker::Sync,
) -> std::io::Result<(Made, R)> {
    if fresh {
        match ctx.owners.retry_target(&[owner], within, || make(name)) {
            Ok(r) => return Ok((Made::Final, r)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        let tmp = ctx.tmp_name();
        match ctx
            .owners
            .retry_target(&[owner], within, || make(tmp.as_cstr()))
        {
            Ok(r) => return Ok((Made::Tmp(tmp), r)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes a new entry that will not be used.
fn discard(ctx: &Ctx<'_>, dir: BorrowedFd<'_>, made: &Made, name: &CStr) {
    let n = made.current(name);
    let _ = ctx.owners.retry_target(&[], &[dir], || {
        unlinkat(dir, n, AtFlags::empty()).map_err(Into::into)
    });
}

/// Reports an attribute failure on an entry whose content is in place: the run goes on, the
/// entry is listed as failed.
fn attr_failure(ctx: &Ctx<'_>, node: &DirNode<'_>, name: &CStr, e: OpError) {
    ctx.fail(&node.rel, name.to_bytes(), e.op, e.err);
}

/// Brings the attributes of an existing target entry whose content is equal in line with the
/// source.
fn update_in_place(e: &Entry<'_, '_>, have: &Meta) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        ..
    } = *e;
    let dir_id = node.src_id;
    let want_x = ctx
        .owners
        .source_xattrs(src, dir_id, name, meta)
        .map_err(|e| ("read xattrs", e))?;
    let have_x = ctx
        .owners
        .target_xattrs(dst, name, have.kind, (have.uid, have.gid))
        .map_err(|e| ("read target xattrs", e))?;
    if attrs::same_basic(meta, have) && want_x == have_x {
        return Ok(Outcome::Unchanged { ino: have.ino });
    }
    let r = if meta.kind == Kind::File {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = ctx
            .owners
            .open_in(dst, name, flags)
            .map_err(|e| ("open target", e))?;
        attrs::apply(
            Handle::Fd(fd.as_fd()),
            meta,
            Some(have),
            &want_x,
            Some(&have_x),
            Some(ctx.owners),
        )
    } else {
        attrs::apply(
            Handle::At(dst, name),
            meta,
            Some(have),
            &want_x,
            Some(&have_x),
            Some(ctx.owners),
        )
    };
    if let Err(e) = r {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Updated { ino: have.ino })
}

fn sync_file(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        have,
        ..
    } = *e;
    if let Some(h) = have.filter(|h| {
        h.kind == Kind::File
            && h.size == meta.size
            && h.mtime == meta.mtime
            // A target file linked to other names while the source is not: rewrite it apart.
            && !(meta.nlink == 1 && h.nlink > 1)
    }) {
        let equal = if ctx.opts.checksum {
            let a = ctx
                .open_source_file(src, node.src_id, name, meta)
                .map_err(|e| ("open", e))?;
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let b = ctx
                .owners
                .open_in(dst, name, flags)
                .map_err(|e| ("open target", e))?;
            same_content(&a, &b).map_err(|e| ("compare", e))?
        } else {
            true
        };
        if equal {
            return update_in_place(e, h);
        }
    }

    let sfd = ctx
        .open_source_file(src, node.src_id, name, meta)
        .map_err(|e| ("open", e))?;
    // The listing's attributes are used as they are: if the file changes during the copy, its
    // target keeps the older mtime, and the next run sees the difference and copies it again.
    let read_x = || xattr::read(xattr::Target::Fd(sfd.as_fd()));
    let want_x = ctx
        .owners
        .retry_entry(sfd.as_fd(), (meta.uid, meta.gid), read_x)
        .map_err(|e| ("read xattrs", e))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let owner = (meta.uid, meta.gid);
    // A file that belongs to its final owner from the start is made with its final mode bits
    // (less the umask), so that neither chown nor chmod follows: nobody can open it who may
    // not open the copy once complete. Any other starts as 0600 until its attributes are
    // applied: one made as another identity, one with setuid, setgid or sticky bits, and one in
    // a directory with a default ACL (which would give named users the bits too).
    let final_mode = node.new_owner == Some(owner) && meta.perm & 0o7000 == 0 && !node.default_acl;
    let (made, dfd) = make_entry(
        ctx,
        owner,
        &[dst],
        name,
        node.hidden && have.is_none(),
        |t| {
            let mode = if final_mode && !crate::owner::acting_as_owner() {
                meta.perm
            } else {
                0o600
            };
            openat(dst, t, flags, Mode::from_raw_mode(mode)).map_err(Into::into)
        },
    )
    .map_err(|e| ("create", e))?;
    // What it got, read back rather than assumed (the umask, a file made under another identity).
    let start = if final_mode { stat_fd(&dfd).ok() } else { None };
    // A manifest being recorded wants the content's hash: a small file gets it on the way.
    let copied = match ctx.record {
        Some(_) => ctx.copier.copy_small_hashed(sfd.as_fd(), dfd.as_fd(), meta),
        None => Ok(None),
    }
    .and_then(|done| match done {
        Some((n, h)) => Ok((n, Some(h))),
        None => Ok((ctx.copier.copy(sfd.as_fd(), dfd.as_fd(), meta)?, None)),
    });
    let (bytes, hash) = match copied {
        Ok(c) => c,
        Err(e) => {
            discard(ctx, dst, &made, name);
            return Err(("copy", e));
        }
    };
    let applied = attrs::apply_new(
        Handle::Fd(dfd.as_fd()),
        meta,
        start.as_ref(),
        &want_x,
        node.inherited(),
        Some(ctx.owners),
    );
    let ino = match &start {
        Some(m) => m.ino,
        None if meta.nlink > 1 => stat_fd(&dfd).map(|m| m.ino).unwrap_or(0),
        None => 0,
    };
    // The manifest describes the copy as it is on disk, read through the descriptor: no lookup
    // by name. A new file in a directory without a default ACL has no extended attribute the
    // mover copies unless it set one.
    let placed = match (ctx.record, hash) {
        (Some(_), Some(_)) => stat_fd(&dfd).ok().and_then(|m| {
            let x = if want_x.is_empty() && node.inherited().is_some() {
                manifest::xattr_digest(&want_x)
            } else {
                manifest::xattr_digest(&xattr::read(xattr::Target::Fd(dfd.as_fd())).ok()?)
            };
            Some((m, x))
        }),
        _ => None,
    };
    drop(dfd);
    if let Err(e) = place(ctx, dst, &made, name) {
        return Err(("rename", e));
    }
    let attrs_applied = applied.is_ok();
    if let Err(e) = applied {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Copied {
        bytes,
        ino,
        hash,
        attrs_applied,
        placed,
    })
}

fn sync_symlink(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        have,
        ..
    } = *e;
    let dir_id = node.src_id;
    let target = ctx
        .owners
        .retry(&[dir_id], || {
            readlinkat(src, name, Vec::new()).map_err(Into::into)
        })
        .map_err(|e| ("readlink", e))?;
    if let Some(h) = have.filter(|h| h.kind == Kind::Symlink) {
        let current = ctx
            .owners
            .retry_target(&[], &[dst], || {
                readlinkat(dst, name, Vec::new()).map_err(Into::into)
            })
            .map_err(|e| ("readlink target", e))?;
        if current == target {
            return update_in_place(e, h);
        }
    }
    make_new(e, "symlink", |t| {
        symlinkat(target.as_c_str(), dst, t).map_err(Into::into)
    })
}

fn sync_special(e: &Entry<'_, '_>) -> std::result::Result<Outcome, Failure> {
    let Entry {
        dst, meta, have, ..
    } = *e;
    if let Some(h) =
        have.filter(|h| h.kind == meta.kind && (meta.kind == Kind::Fifo || h.rdev == meta.rdev))
    {
        return update_in_place(e, h);
    }
    let rdev = if meta.kind == Kind::Fifo {
        0
    } else {
        meta.rdev
    };
    let kind = meta.kind.file_type();
    make_new(e, "mknod", |t| {
        mknodat(dst, t, kind, Mode::from_raw_mode(0o600), rdev).map_err(Into::into)
    })
}

/// Makes a new symlink or special file for the source entry with `make` (`op` names it in
/// errors), gives it the source's attributes and puts it in place.
fn make_new(
    e: &Entry<'_, '_>,
    op: &'static str,
    make: impl Fn(&CStr) -> std::io::Result<()> + Send + std::marker::Sync,
) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        src,
        dst,
        name,
        meta,
        have,
        ..
    } = *e;
    let want_x = ctx
        .owners
        .source_xattrs(src, node.src_id, name, meta)
        .map_err(|e| ("read xattrs", e))?;
    let fresh = node.hidden && have.is_none();
    let (made, ()) =
        make_entry(ctx, (meta.uid, meta.gid), &[dst], name, fresh, make).map_err(|e| (op, e))?;
    place_new(e, made, &want_x, 0)
}

/// Applies attributes to a freshly made symlink or special file, then puts it in place.
fn place_new(
    e: &Entry<'_, '_>,
    made: Made,
    want_x: &Xattrs,
    bytes: u64,
) -> std::result::Result<Outcome, Failure> {
    let Entry {
        ctx,
        node,
        dst,
        name,
        meta,
        ..
    } = *e;
    let applied = attrs::apply(
        Handle::At(dst, made.current(name)),
        meta,
        None,
        want_x,
        node.inherited(),
        Some(ctx.owners),
    );
    let ino = if meta.nlink > 1 {
        let t = made.current(name);
        ctx.owners
            .retry_target(&[], &[dst], || stat_at(dst, t))
            .map(|m| m.ino)
            .unwrap_or(0)
    } else {
        0
    };
    if let Err(e) = place(ctx, dst, &made, name) {
        return Err(("rename", e));
    }
    let attrs_applied = applied.is_ok();
    if let Err(e) = applied {
        attr_failure(ctx, node, name, e);
    }
    Ok(Outcome::Copied {
        bytes,
        ino,
        hash: None,
        attrs_applied,
        placed: None,
    })
}

/// Counts the source's entries and bytes ahead of the copy, so progress can show totals and an
/// ETA early. Stops when the copy is done first. Subdirectories wait as names, not descriptors.
fn count_ahead(src: BorrowedFd<'_>, stats: &Stats, excludes: &Excludes, stop: &AtomicBool) {
    // A description of its own: a duplicate of the copy's descriptor would share the directory
    // offset, and two readers of one offset each see only part of the listing. When the root
    // cannot be opened again (only its owner may search it), there is no count.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(root) = openat(src, c".", flags, Mode::empty()) else {
        return;
    };
    let mut stack: Vec<(Arc<OwnedFd>, Option<CString>, Vec<u8>)> =
        vec![(Arc::new(root), None, Vec::new())];
    while let Some((parent, name, rel)) = stack.pop() {
        if stop.load(Relaxed) {
            return;
        }
        let is_root = name.is_none();
        let dir = match name {
            None => parent,
            Some(n) => match openat(
                &*parent,
                n.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => Arc::new(fd),
                Err(_) => continue,
            },
        };
        let Ok(listing) = Listing::read(&*dir) else {
            continue;
        };
        let mut entries = 0;
        let mut bytes = 0;
        for i in 0..listing.len() {
            let name = listing.name(i);
            if is_root && name.to_bytes() == STATE_DIR.as_bytes() {
                continue;
            }
            let dtype = listing.dtype(i);
            let path = || relpath::join(&rel, name.to_bytes());
            // Cache folders are found by the copy itself: counting them here only makes an
            // early total a little high.
            if !excludes.is_empty()
                && dtype != FileType::Unknown
                && excludes.matches(&path(), dtype == FileType::Directory)
            {
                continue;
            }
            entries += 1;
            if dtype == FileType::Directory {
                stack.push((dir.clone(), Some(name.to_owned()), path()));
            } else if dtype == FileType::RegularFile || dtype == FileType::Unknown {
                match stat_at(&*dir, name) {
                    Ok(m) if m.kind == Kind::File => bytes += m.size,
                    Ok(m) if m.kind == Kind::Dir => {
                        stack.push((dir.clone(), Some(name.to_owned()), path()))
                    }
                    _ => {}
                }
            }
        }
        stats.entries_counted.fetch_add(entries, Relaxed);
        stats.bytes_counted.fetch_add(bytes, Relaxed);
    }
    stats.scan_complete.store(true, Relaxed);
}
