//! `pvc-backup mover sync`: make DST a mirror of SRC, then each `--also` folder a mirror of DST.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
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
    if let Some(bad) = overlapping_also(&a.src, &a.dst, &a.also) {
        return Ok(output::failed("sync", bad, Exit::Usage.into()));
    }
    let first = copy_code(
        "sync",
        &a.copy,
        |opts| mover::Mirror::prepare(&a.src, &a.dst, opts),
        mover::Mirror::stats,
        |job| job.run().map(|s| (s, None)),
    )?;
    // The extra copies mirror what DST now holds, so they are only worth making from a DST
    // that was written (done or partial), never after a refusal or a fatal error.
    if !Exit::try_from(first).is_ok_and(Exit::wrote_target) {
        return Ok(ExitCode::from(first));
    }
    let mut worst = first;
    for extra in &a.also {
        let code = copy_code(
            &format!("sync (also {})", extra.display()),
            &a.copy,
            // DST already is the --subdir, and an empty one was accepted by the first copy.
            |opts| {
                let opts = mover::Options {
                    subdir: None,
                    allow_empty: true,
                    ..opts
                };
                mover::Mirror::prepare(&a.dst, extra, opts)
            },
            mover::Mirror::stats,
            |job| job.run().map(|s| (s, None)),
        )?;
        if code != Exit::Ok && (worst == Exit::Ok || code != Exit::Partial) {
            worst = code;
        }
    }
    Ok(ExitCode::from(worst))
}

/// Refuses an `--also` folder that is SRC, DST or another one, or lies inside or around one of
/// them: the mirror would copy into its own source or delete another copy's files.
fn overlapping_also(src: &Path, dst: &Path, also: &[PathBuf]) -> Option<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    let (src, dst) = (abs(src), abs(dst));
    for (i, extra) in also.iter().enumerate() {
        let e = abs(extra);
        for (what, other) in [("SRC", &src), ("DST", &dst)] {
            if nested(&e, other) {
                return Some(format!(
                    "--also {} overlaps {what} {}: give a folder outside both",
                    extra.display(),
                    other.display()
                ));
            }
        }
        if let Some(prev) = also[..i].iter().find(|p| nested(&e, &abs(p))) {
            return Some(format!(
                "--also {} overlaps --also {}: give each copy its own folder",
                extra.display(),
                prev.display()
            ));
        }
    }
    None
}
