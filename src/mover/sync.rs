//! `pvc-backup mover sync`: make DST a mirror of SRC, then each `--also` folder a mirror of DST.

use mover::Mirror;
use mover::also::Also;
use std::path::PathBuf;
use std::process::ExitCode;

use super::CopyArgs;
use super::copy::copy_code;
use crate::output;

/// Arguments of `pvc-backup mover sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// The target folder (in the mover pod: /backup); created if missing.
    dst: PathBuf,
    /// Once DST is done, make DIR a mirror of DST too (repeatable): N copies read SRC once.
    #[arg(long, value_name = "DIR")]
    also: Vec<PathBuf>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// Mirrors SRC into DST and DST into each `--also` folder.
pub(super) fn run(a: SyncArgs) -> anyhow::Result<ExitCode> {
    let also = match Also::new(&a.src, &a.dst, &a.also) {
        Ok(also) => also,
        Err(e) => return Ok(output::failed("sync", &e, e.exit_code().into())),
    };
    let first = copy_code(
        "sync",
        &a.copy,
        |opts| Mirror::prepare(&a.src, &a.dst, opts),
        Mirror::stats,
        |job| job.run().map(|s| (s, None)),
    )?;
    let code = also.copy(first, |extra| {
        copy_code(
            &format!("sync (also {})", extra.folder().display()),
            &a.copy,
            |opts| extra.prepare(opts),
            Mirror::stats,
            |job| job.run().map(|s| (s, None)),
        )
    })?;
    Ok(code.into())
}
