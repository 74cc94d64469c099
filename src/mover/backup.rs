//! `pvc-backup mover backup`: a new snapshot of a folder, or a new version of a block volume.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::block::parse_chunk_size;
use super::copy::copy_command;
use super::repository::{BackupSettings, RepositoryArgs};
use super::{CopyArgs, block_threads, not_for_block};
use crate::output::{self, Output, progress::Display};

/// Arguments of `pvc-backup mover backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// The backup folder (in the mover pod: /backup); created if missing. Leave it out with
    /// --repository.
    #[arg(required_unless_present = "repository", conflicts_with = "repository")]
    dst: Option<PathBuf>,
    #[command(flatten)]
    repo: RepositoryArgs,
    /// With --repository: create the repository when it does not exist yet.
    #[arg(long, requires = "repository")]
    init: bool,
    /// With --repository: the snapshot's host name (default: this machine's). Snapshots of one
    /// host and path form a series: retention counts within it, and the newest is the parent
    /// whose unchanged files are not read again.
    #[arg(long, value_name = "NAME", requires = "repository")]
    host: Option<String>,
    /// With --repository: tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG", requires = "repository")]
    tags: Vec<String>,
    #[command(flatten)]
    keep: KeepArgs,
    /// Back up SRC as a block volume even though it is a regular file (a raw disk image); a block
    /// device always is one. Each snapshot is then a sparse image of the volume.
    #[arg(long)]
    block: bool,
    /// Bytes per chunk of a block volume's snapshots, a multiple of 4K [default: 4M].
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk_size)]
    chunk_size: Option<u64>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Retention: which snapshots to keep after a run in which nothing failed.
#[derive(Debug, Clone, clap::Args)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
}

impl KeepArgs {
    /// The retention policy the flags give.
    pub fn policy(&self) -> store::retention::Policy {
        store::retention::Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

/// Backs SRC up into DST: as a block volume when it is one (or --block), else as a folder.
pub(super) fn run(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let policy = a.keep.policy();
    let repo = match a.repo.open("backup") {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if let Some(repo) = repo {
        if a.block || a.chunk_size.is_some() {
            return Ok(output::failed(
                "backup",
                "--block and --chunk-size apply to backup folders; a repository holds folders",
                Exit::Usage.into(),
            ));
        }
        let settings = BackupSettings {
            src: &a.src,
            init: a.init,
            host: a.host,
            tags: a.tags,
            keep: policy,
        };
        return super::repository::backup(repo, settings, &a.copy);
    }
    let Some(dst) = a.dst else {
        return Ok(output::failed(
            "backup",
            "give DST or --repository",
            Exit::Usage.into(),
        ));
    };
    let is_device = std::fs::metadata(&a.src)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
    if a.block || is_device {
        if let Some(code) = not_for_block("backup", &a.copy) {
            return Ok(code);
        }
        let options = block::versions::BackupOptions {
            copy: block::Options {
                chunk_size: a.chunk_size.unwrap_or(block::DEFAULT_CHUNK_SIZE),
                threads: block_threads(&a.copy),
                ..block::Options::default()
            },
            policy,
        };
        return block_backup(&a.src, &dst, &options, a.copy.output());
    }
    if a.chunk_size.is_some() {
        return Ok(output::failed(
            "backup",
            format_args!(
                "--chunk-size applies to block volumes only ({} is not a block device; add \
                 --block to back up an image file as a volume)",
                a.src.display()
            ),
            Exit::Usage.into(),
        ));
    }
    copy_command(
        "backup",
        &a.copy,
        |opts| mover::snapshot::Backup::prepare(&a.src, &dst, opts, policy),
        mover::snapshot::Backup::stats,
        |job| {
            job.run().map(|r| {
                let line = output::summary::snapshot_made(&r);
                let json = serde_json::to_value(&r).unwrap_or_default();
                (r.summary, Some((json, line)))
            })
        },
    )
}

/// `mover backup` of a block volume: adds a version (a sparse image) to DST.
fn block_backup(
    src: &Path,
    dst: &Path,
    options: &block::versions::BackupOptions,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let result =
        Display::new(out).around(|progress| block::versions::backup(src, dst, options, progress));
    let r = match result {
        Ok(r) => r,
        Err(e) => return Ok(output::summary::fatal_in("backup", &e, out.json)),
    };
    output::summary::block_backup(out, &r)?;
    Ok(ExitCode::from(r.summary.exit_code))
}
