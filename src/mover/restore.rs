//! `pvc-backup mover restore`: copy a snapshot (or a block version) back into a target.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::copy::copy_command;
use super::repository::RepositoryArgs;
use super::{CopyArgs, block_threads, not_for_block};
use crate::output::{self, Output, progress::Display};

/// Arguments of `pvc-backup mover restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup folder (the DST of `mover backup`); with --repository, leave it out and give
    /// only TARGET.
    #[arg(value_name = "BACKUP")]
    backup: PathBuf,
    /// Where to restore to; created if missing.
    #[arg(value_name = "TARGET", required_unless_present = "repository")]
    target: Option<PathBuf>,
    #[command(flatten)]
    repo: RepositoryArgs,
    /// Which snapshot: its name (in a repository: its id or a unique prefix), or `latest`.
    #[arg(long, value_name = "ID", default_value = store::layout::LATEST)]
    snapshot: String,
    /// With --repository: `latest` is the newest snapshot of this host (as `mover backup
    /// --host` named it), not of the whole repository.
    #[arg(long, value_name = "NAME", requires = "repository")]
    host: Option<String>,
    /// Block volumes: after restoring, read both sides again and compare BLAKE3 per chunk.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Restores a snapshot of BACKUP into TARGET.
pub(super) fn run(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    match a.repo.open("restore") {
        Ok(Some(repo)) => {
            if a.target.is_some() {
                return Ok(output::failed(
                    "restore",
                    "with --repository give only TARGET: the repository replaces BACKUP",
                    Exit::Usage.into(),
                ));
            }
            if a.verify {
                return Ok(output::failed(
                    "restore",
                    "--verify applies to block volumes; check a repository with `pvc-backup \
                     mover verify --repository URL --read-data`",
                    Exit::Usage.into(),
                ));
            }
            return super::repository::restore(repo, &a.backup, &a.snapshot, a.host, &a.copy);
        }
        Ok(None) => {}
        Err(code) => return Ok(code),
    }
    let target = a.target.clone().unwrap_or_default();
    if store::Target::new(&a.backup).holds_block_versions() {
        if let Some(code) = not_for_block("restore", &a.copy) {
            return Ok(code);
        }
        let options = block::Options {
            threads: block_threads(&a.copy),
            verify: a.verify,
            ..block::Options::default()
        };
        return block_restore(&a.backup, &a.snapshot, &target, &options, a.copy.output());
    }
    if a.verify {
        return Ok(output::failed(
            "restore",
            format_args!(
                "--verify applies to block volumes; check a restored folder with `pvc-backup \
                 mover verify {} --against {}`",
                target.display(),
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
        |opts| mover::Mirror::prepare(&from, &target, opts),
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
