//! `pvc-backup mover snapshots`: list the snapshots (or block versions) in a backup folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use contract::Listing;

use super::init_logging;
use super::repository::RepositoryArgs;
use crate::output;

/// Arguments of `pvc-backup mover snapshots`.
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// The backup folder. Leave it out with --repository.
    #[arg(required_unless_present = "repository", conflicts_with = "repository")]
    dst: Option<PathBuf>,
    #[command(flatten)]
    repo: RepositoryArgs,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the snapshots of DST.
pub(super) fn run(a: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    match a.repo.open("snapshots") {
        Ok(Some(repo)) => return super::repository::snapshots(repo, a.json),
        Ok(None) => {}
        Err(code) => return Ok(code),
    }
    let Some(dst) = a.dst else {
        return Ok(output::failed(
            "snapshots",
            "give DST or --repository",
            contract::ExitCode::Usage.into(),
        ));
    };
    if store::Target::new(&dst).holds_block_versions() {
        return block_snapshots(&dst, a.json);
    }
    let list = match mover::snapshot::list(&dst) {
        Ok(l) => l,
        Err(e) => return Ok(output::failed("snapshots", &e, e.exit_code().into())),
    };
    if a.json {
        output::json_line(&Listing::Tree(list))?;
    } else {
        output::reports::snapshots(&list);
    }
    Ok(ExitCode::SUCCESS)
}

/// `mover snapshots` of a folder of block versions.
fn block_snapshots(dst: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let list = match block::versions::list(dst) {
        Ok(l) => l,
        Err(e) => return Ok(output::summary::fatal_in("snapshots", &e, false)),
    };
    if json {
        output::json_line(&Listing::Block(list))?;
    } else {
        output::reports::versions(&list);
    }
    Ok(ExitCode::SUCCESS)
}
