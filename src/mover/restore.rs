//! `pvc-backup mover restore`: copy a snapshot (or a block version) back into a target.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::copy::copy_command;
use super::{CopyArgs, block_threads, not_for_block};
use crate::output::{self, Output, progress::Display};

/// Arguments of `pvc-backup mover restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup folder (the DST of `mover backup`).
    backup: PathBuf,
    /// Where to restore to; created if missing.
    target: PathBuf,
    /// Which snapshot: its name, or `latest`.
    #[arg(long, value_name = "ID", default_value = store::layout::LATEST)]
    snapshot: String,
    /// Block volumes: after restoring, read both sides again and compare BLAKE3 per chunk.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Restores a snapshot of BACKUP into TARGET.
pub(super) fn run(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    if store::Target::new(&a.backup).holds_block_versions() {
        if let Some(code) = not_for_block("restore", &a.copy) {
            return Ok(code);
        }
        let options = block::Options {
            threads: block_threads(&a.copy),
            verify: a.verify,
            ..block::Options::default()
        };
        return block_restore(&a.backup, &a.snapshot, &a.target, &options, a.copy.output());
    }
    if a.verify {
        return Ok(output::failed(
            "restore",
            format_args!(
                "--verify applies to block volumes; check a restored folder with `pvc-backup \
                 mover verify {} --against {}`",
                a.target.display(),
                a.backup.display()
            ),
            Exit::Usage.into(),
        ));
    }
    let from = match store::Target::new(&a.backup)
        .resolve(&a.snapshot)
        .map_err(mover::Error::from)
    {
        Ok(p) => p,
        Err(e) => return Ok(output::failed("restore", &e, e.exit_code().into())),
    };
    copy_command(
        "restore",
        &a.copy,
        |opts| mover::Mirror::prepare(&from, &a.target, opts),
        mover::Mirror::stats,
        |job| job.run().map(|s| (s, None)),
    )
}

/// `mover restore` of a block version onto a device or image file.
fn block_restore(
    dst: &Path,
    which: &str,
    target: &Path,
    options: &block::Options,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let result = Display::new(out)
        .around(|progress| block::versions::restore(dst, which, target, options, progress));
    let summary = match result {
        Ok(s) => s,
        Err(e) => return Ok(output::summary::fatal_in("restore", &e, out.json)),
    };
    output::summary::block_restore(out, &summary)?;
    Ok(ExitCode::from(summary.exit_code))
}
