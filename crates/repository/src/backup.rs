//! `mover backup --repository`: a new snapshot of a folder in a restic-format repository.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use contract::ExitCode;
use contract::summary::{ByteCounts, EntryCounts};
use mover::exclude::Excludes;
use mover::owner::{Impersonate, Owners};
use rustic_core::{BackupOptions as RusticBackup, SnapshotOptions};
use serde::Serialize;

use crate::location::{Location, S3Env};
use crate::open::{describe, open};
use crate::retention;
use crate::source::{Failure, Failures, Source};
use crate::{Error, Result};
use store::retention::Policy;

/// Settings of a backup into a repository.
#[derive(Debug, Default)]
pub struct Options {
    /// Back up only this folder of the source (relative, no `..`, no symlinks).
    pub subdir: Option<PathBuf>,
    /// When to read entries as their owners.
    pub impersonate: Impersonate,
    /// What to leave out.
    pub excludes: Excludes,
    /// Back up an empty source instead of refusing it.
    pub allow_empty: bool,
    /// The snapshot's host name (default: this machine's). Snapshots of the same host and path
    /// are one series: the newest is the parent whose unchanged files are not read again, and
    /// retention counts within it.
    pub host: Option<String>,
    /// Tags of the snapshot.
    pub tags: Vec<String>,
    /// Which snapshots of the series to keep afterwards; the others are forgotten and pruned.
    pub keep: Policy,
    /// Create the repository when it does not exist.
    pub init: bool,
}

/// What a backup into a repository did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `repository`: tells this report from a backup folder's.
    pub kind: &'static str,
    /// The new snapshot's id.
    pub snapshot: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// The path the snapshot records.
    pub path: String,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot (not read again).
    pub files_unmodified: u64,
    /// Folders in the snapshot.
    pub dirs: u64,
    /// Bytes of the files in the snapshot.
    pub bytes: u64,
    /// Bytes added to the repository, before compression (file content and folder listings).
    pub data_added: u64,
    /// Bytes of file content added to the repository, before compression.
    pub data_added_files: u64,
    /// Bytes added to the repository, as stored.
    pub data_added_packed: u64,
    /// Entries that could not be read: left out of the snapshot.
    pub failed: Vec<Failure>,
    /// Snapshots forgotten by the retention rules (their data is pruned).
    pub forgotten: Vec<String>,
    /// The mover's exit code: 0, or 23 when entries failed.
    pub exit_code: u8,
    /// The same run as every mover command sums one up: entries (files and folders) seen,
    /// files written (new or changed) and unchanged; bytes of the files and of new content
    /// added.
    pub summary: contract::Summary,
}

/// The folders above `path` in a snapshot of it: `/` and each parent.
fn parents(path: &Path) -> u64 {
    path.components().count().saturating_sub(1) as u64
}

/// Backs `src` up into the repository at `location`.
///
/// The source is opened and checked first (missing: exit 254; empty: exit 254 unless
/// `allow_empty`), then the repository is opened: nothing is written anywhere when either
/// fails. Entries that cannot be read are left out of the snapshot and listed in the report,
/// whose exit code is then 23.
pub fn backup(
    src: &Path,
    location: &Location,
    password: &str,
    env: &S3Env,
    opts: Options,
) -> Result<Report> {
    let started = std::time::SystemTime::now();
    let owners = Arc::new(Owners::new(opts.impersonate));
    let root = mover::preflight::open_source(src, opts.subdir.as_deref(), &owners)?;
    if !opts.allow_empty
        && mover::preflight::is_empty_source(root.as_fd()).map_err(|e| {
            Error::Source(mover::Error::Usage(format!(
                "cannot read the source {}: {e}",
                src.display()
            )))
        })?
    {
        return Err(mover::Error::SourceEmpty {
            path: src.display().to_string(),
        }
        .into());
    }
    let mut base = std::path::absolute(src).map_err(|e| {
        Error::Usage(format!(
            "cannot make {} an absolute path: {e}",
            src.display()
        ))
    })?;
    if let Some(sub) = &opts.subdir {
        base.push(sub);
    }
    let url = location.url();
    let repo = open(location, password, opts.init, env)?
        .to_indexed_ids()
        .map_err(|e| Error::repo(url, describe(&e)))?;

    let host = match opts.host {
        Some(h) => h,
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let mut snap_opts = SnapshotOptions::default().host(host.clone());
    for t in &opts.tags {
        snap_opts = snap_opts
            .add_tags(t)
            .map_err(|e| Error::Usage(format!("tag {t:?}: {}", describe(&e))))?;
    }
    let snap = snap_opts
        .to_snapshot()
        .map_err(|e| Error::repo(url, describe(&e)))?;

    let failures = Failures::default();
    let source =
        Source::new(root, base.clone(), owners, opts.excludes, failures.clone()).map_err(|e| {
            Error::Source(mover::Error::Usage(format!(
                "cannot read the source {}: {e}",
                src.display()
            )))
        })?;
    let snap = repo
        .archive(
            &RusticBackup::default(),
            &source,
            snap,
            std::slice::from_ref(&base),
        )
        .map_err(|e| Error::repo(url, format!("the backup failed: {}", describe(&e))))?;
    let failed = failures.take();

    let forgotten = if !opts.keep.is_set() {
        Vec::new()
    } else {
        retention::apply(&repo, url, &opts.keep, &snap)?
    };

    let s = snap.summary.clone().unwrap_or_default();
    let path = base.display().to_string();
    let summary = crate::summary::summary(
        "backup",
        &path,
        url,
        &crate::summary::Timing::since(started),
        EntryCounts {
            // The snapshot also holds a folder for each parent of the source's path (`/` of
            // `/source`): they are not the source's entries.
            total: (s.total_files_processed + s.total_dirs_processed)
                .saturating_sub(parents(&base)),
            copied: s.files_new + s.files_changed,
            unchanged: s.files_unmodified,
            ..EntryCounts::default()
        },
        ByteCounts {
            total: s.total_bytes_processed,
            copied: s.data_added_files,
        },
        &failed,
    );
    Ok(Report {
        kind: "repository",
        snapshot: crate::open::hex(&snap.id),
        time: snap.time.timestamp().to_string(),
        path,
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        dirs: s.total_dirs_processed,
        bytes: s.total_bytes_processed,
        data_added: s.data_added,
        data_added_files: s.data_added_files,
        data_added_packed: s.data_added_packed,
        exit_code: if failed.is_empty() {
            ExitCode::Ok.code()
        } else {
            ExitCode::Partial.code()
        },
        failed,
        forgotten,
        summary,
    })
}
