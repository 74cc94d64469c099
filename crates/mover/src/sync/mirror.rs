//! The run: prepare the workers' shared state, walk the tree on the pool, then write what the
//! run leaves in the target (metadata manifest, manifest, summary).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use rustix::fs::{FileType, Mode, OFlags, openat};

use crate::content::Copier;
use crate::exclude::Excludes;
use crate::hardlink::HardLinks;
use crate::listing::Listing;
use crate::manifest::Recorder;
use crate::meta::{Kind, Meta, stat_at, stat_fd};
use crate::metalog;
use crate::owner::{Id, Owners};
use crate::preflight;
use crate::relpath;
use contract::summary::{EntryError, Summary};

use crate::summary::{Journal, Stats};
use crate::xattr;
use crate::{Error, Result};
use store::layout::STATE_DIR;

use super::dir::{DirNode, has_default_acl, new_owner, process_dir};
use super::{Mirror, Options, default_threads};

impl Mirror {
    pub(super) fn mirror(&self) -> Result<Summary> {
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
            let state = root
                .and_then(|r| openat(&r, store::layout::STATE_DIR_C, flags, Mode::empty()).ok());
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
        let summary = crate::summary::summarize(
            "sync",
            relpath::display(self.src_path.as_os_str().as_encoded_bytes()),
            &self.dst_path,
            (started, t0),
            stats,
            &ctx.journal,
        );
        crate::summary::write_last_sync(&self.owners, state, &self.dst_path, &summary)?;
        Ok(summary)
    }

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

/// What the workers share.
pub(super) struct Ctx<'a> {
    pub(super) opts: &'a Options,
    pub(super) stats: &'a Stats,
    pub(super) journal: Journal,
    pub(super) links: HardLinks,
    pub(super) copier: Copier,
    pub(super) dst_root: BorrowedFd<'a>,
    pub(super) tmp_seq: AtomicU64,
    pub(super) pid: u32,
    pub(super) noatime: AtomicBool,
    pub(super) owners: &'a Owners,
    /// Unprivileged run: what cannot be applied is recorded here.
    unprivileged: Option<metalog::Writer>,
    /// Attributes recorded by an unprivileged run into the source, applied instead of the ones
    /// on disk.
    recorded: Option<HashMap<Vec<u8>, metalog::Recorded>>,
    /// The manifest this pass writes, if any.
    pub(super) record: Option<&'a Recorder>,
    /// The whole target is hidden until the run ends (a snapshot being made), so every new
    /// entry is made under its own name (see [`make_entry`](super::entry::make_entry)).
    staged: bool,
    /// Whom the mover's own new entries belong to: its effective uid and gid.
    pub(super) creator: Id,
    /// Set when a write found the target full: the workers stop taking up entries.
    full: AtomicBool,
    /// The failure that found the target full.
    first_full: std::sync::Mutex<Option<EntryError>>,
}

impl Ctx<'_> {
    /// The attributes the copy of a source entry gets: the ones recorded in the source's
    /// metadata manifest where it has one, and in an unprivileged run only what this mover can
    /// apply (the rest recorded, when `record`).
    pub(super) fn wanted(&self, rel: impl FnOnce() -> Vec<u8>, meta: Meta, record: bool) -> Meta {
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

    /// Records a failed entry. A failure for lack of room stops the run: the first is recorded
    /// and the workers take up nothing more; those of writes already under way are not listed.
    pub(super) fn fail(
        &self,
        dir: &[u8],
        name: &[u8],
        op: &str,
        err: impl std::fmt::Display + 'static,
    ) {
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
    pub(super) fn stopping(&self) -> bool {
        self.full.load(Relaxed)
    }
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
