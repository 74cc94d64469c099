//! `pvc-backup mover verify`: check snapshots against their manifests or a live source.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::repository::RepositoryArgs;
use super::{ExcludeArgs, init_logging};
use crate::output;

/// Arguments of `pvc-backup mover verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The backup folder (or a mirror, with --against). Leave it out with --repository.
    #[arg(required_unless_present = "repository", conflicts_with = "repository")]
    dst: Option<PathBuf>,
    #[command(flatten)]
    repo: RepositoryArgs,
    /// With --repository: also read every pack and check the hashes of its content (restic's
    /// `check --read-data`).
    #[arg(long, requires = "repository")]
    read_data: bool,
    /// Which snapshot: its name, `latest` or `all`.
    #[arg(long, value_name = "ID", default_value = store::layout::LATEST)]
    snapshot: String,
    /// Compare with this live source instead of the manifest.
    #[arg(long, value_name = "SRC")]
    against: Option<PathBuf>,
    /// With --against: leave out what the copy left out (the same --exclude, --exclude-from
    /// and --exclude-caches flags).
    #[command(flatten)]
    excludes: ExcludeArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Verifies the snapshots of DST (block versions or folder snapshots).
pub(super) fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    match a.repo.open("verify") {
        Ok(Some(repo)) => return super::repository::verify(repo, a.read_data, a.json),
        Ok(None) => {}
        Err(code) => return Ok(code),
    }
    let Some(dst) = a.dst else {
        return Ok(output::failed(
            "verify",
            "give DST or --repository",
            Exit::Usage.into(),
        ));
    };
    if store::Target::new(&dst).holds_block_versions() || dst.is_file() {
        return block_verify(&dst, &a.snapshot, a.against.as_deref(), a.json);
    }
    if a.excludes.given() && (a.against.is_none() || a.excludes.delete_excluded) {
        return Ok(output::failed(
            "verify",
            "--exclude, --exclude-from and --exclude-caches apply to a comparison with a live \
             source (--against SRC), and --delete-excluded to copies; leave them out",
            Exit::Usage.into(),
        ));
    }
    let excludes = match a.excludes.excludes() {
        Ok(e) => e,
        Err(e) => return Ok(output::failed("verify", &e, e.exit_code().into())),
    };
    let results =
        match mover::verify::verify_excluding(&dst, &a.snapshot, a.against.as_deref(), &excludes) {
            Ok(r) => r,
            Err(e) => return Ok(output::failed("verify", &e, e.exit_code().into())),
        };
    if a.json {
        output::reports::verified_json(&results, mover::verify::Outcome::ok)?;
    } else {
        output::reports::verified_trees(&results);
    }
    Ok(verdict(results.iter().all(|(_, o)| o.ok())))
}

/// `mover verify` of block versions (`dst` a backup folder) or of one image file with its
/// manifest (`dst` an image file).
fn block_verify(
    dst: &Path,
    which: &str,
    against: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let threads = block::default_threads();
    let result = if dst.is_file() {
        match against {
            None => block::versions::check_image(dst, threads, &mut |_| {}),
            Some(src) => block::versions::against_source(src, dst, threads, &mut |_| {}),
        }
        .map(|c| vec![(dst.display().to_string(), c)])
    } else {
        block::versions::verify(dst, which, against, threads, &mut |_| {})
    };
    let results = match result {
        Ok(r) => r,
        Err(e) => return Ok(output::summary::fatal_in("verify", &e, false)),
    };
    if json {
        output::reports::verified_json(&results, block::versions::ImageCheck::ok)?;
    } else {
        output::reports::verified_images(&results);
    }
    Ok(verdict(results.iter().all(|(_, c)| c.ok())))
}

/// Exit 0 when every snapshot checked out, 23 when one did not.
fn verdict(ok: bool) -> ExitCode {
    if ok { Exit::Ok } else { Exit::Partial }.into()
}
