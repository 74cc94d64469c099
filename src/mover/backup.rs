//! `pvc-backup mover backup`: a new snapshot of a folder, or a new version of a block volume.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::block::{Display, Output, fatal_in, parse_chunk_size, print_errors};
use super::copy::{copy_command, removed_note};
use super::{CopyArgs, block_output, block_threads, not_for_block};

/// Arguments of `pvc-backup mover backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// The backup folder (in the mover pod: /backup); created if missing.
    dst: PathBuf,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days (UTC).
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
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

/// Backs SRC up into DST: as a block volume when it is one (or --block), else as a folder.
pub(super) fn run(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let policy = store::retention::Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
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
        return block_backup(&a.src, &a.dst, &options, block_output(&a.copy));
    }
    if a.chunk_size.is_some() {
        eprintln!(
            "pvc-backup mover backup: --chunk-size applies to block volumes only ({} is not a \
             block device; add --block to back up an image file as a volume)",
            a.src.display()
        );
        return Ok(Exit::Usage.into());
    }
    copy_command(
        "backup",
        &a.copy,
        |opts| mover::snapshot::Backup::prepare(&a.src, &a.dst, opts, policy),
        mover::snapshot::Backup::stats,
        |job| {
            job.run().map(|r| {
                let line = format!(
                    "snapshot {}{}{}",
                    r.snapshot,
                    r.previous.as_ref().map_or(String::new(), |p| format!(
                        " (unchanged entries linked to {p})"
                    )),
                    removed_note(&r.removed, &r.cleaned),
                );
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
    let mut display = Display::new(out.json, out.bar);
    let result = block::versions::backup(src, dst, options, &mut |p| display.show(p));
    display.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return Ok(fatal_in("backup", &e, out.json)),
    };
    if out.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    if !out.quiet || r.summary.exit_code != 0 {
        print_errors(&r.summary.errors, out.verbose);
        if r.result == "ok" {
            let how = match (&r.previous, r.method) {
                (Some(p), block::versions::method::REFLINK) => {
                    format!(
                        "cloned from {p} (reflink), {} chunks changed",
                        r.changed_chunks
                    )
                }
                (Some(p), _) => format!(
                    "full image: {}; {} chunks changed since {p}",
                    r.reflink_error.as_deref().unwrap_or("no reflinks"),
                    r.changed_chunks
                ),
                (None, _) => format!("first version, {} chunks of data", r.changed_chunks),
            };
            eprintln!(
                "pvc-backup mover backup: version {} ({how}){}",
                r.snapshot,
                removed_note(&r.removed, &r.cleaned),
            );
        } else {
            eprintln!(
                "pvc-backup mover backup: FAILED: {} chunks could not be copied; no version was made",
                r.summary.errors.len()
            );
        }
        eprintln!("pvc-backup mover backup: {}", r.summary.human_line());
    }
    Ok(ExitCode::from(r.summary.exit_code))
}
