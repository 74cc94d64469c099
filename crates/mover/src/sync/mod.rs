//! The mirror: make a target directory an exact copy of a source directory.
//!
//! Each directory is a task on a pool of worker threads: it lists both sides, removes what the
//! source lacks, opens (or creates) its subdirectories and spawns a task for each, and hands its
//! other entries to the pool in batches. A directory's own attributes (owner, mode, ACLs, mtime)
//! are applied when the last task below it ends, so its mtime is set after its contents and a
//! read-only directory is filled before it becomes read-only.

mod dir;
mod entry;
mod mirror;
mod record;
mod reuse;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exclude::Excludes;
use crate::manifest::Recorder;
use crate::owner::{Impersonate, Owners};
use crate::preflight;
use contract::Summary;
use store::lock::StateDir;

use crate::summary::Stats;
use crate::{Error, Result};

pub(crate) use dir::new_dir_name;
pub use record::write_state_file;

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

/// A prepared mirror run: roots opened, checks passed, target locked.
#[derive(Debug)]
pub struct Mirror {
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

impl Mirror {
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
    ) -> Mirror {
        self.dst = target;
        self.dst_path = target_path;
        self.meta_dir = meta_dir;
        self.reference = reference;
        self.staged = true;
        self
    }

    /// Has the copy pass record every entry it places in `recorder`, so the new tree needs no
    /// second walk for its manifest. Used for versioned backups, whose target starts empty.
    pub(crate) fn record_into(mut self, recorder: Arc<Recorder>) -> Mirror {
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
    pub fn prepare(src: &Path, dst: &Path, opts: Options) -> Result<Mirror> {
        Mirror::prepare_with(src, dst, opts, true)
    }

    /// [`Mirror::prepare`], checking the target's free room against a mirror only when
    /// `mirror_space` (a versioned backup checks it against its previous snapshot instead).
    pub(crate) fn prepare_with(
        src: &Path,
        dst: &Path,
        opts: Options,
        mirror_space: bool,
    ) -> Result<Mirror> {
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
        Ok(Mirror {
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

    /// The run's counters, for progress display while [`Mirror::run`] works.
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
}
