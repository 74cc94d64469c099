//! `pvc-backup mover check`: whether a copy with the current privileges would be complete.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{ImpersonateArg, init_logging};
use crate::output;

/// Arguments of `pvc-backup mover check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The source folder.
    src: PathBuf,
    /// Check only this folder of SRC.
    #[arg(long, value_name = "DIR")]
    subdir: Option<PathBuf>,
    /// When to act as each entry's owner.
    #[arg(long, value_enum, default_value_t = ImpersonateArg::Auto)]
    impersonate: ImpersonateArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Walks SRC and reports what a copy would meet.
pub(super) fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    let report = match mover::check::check(&a.src, a.subdir.as_deref(), a.impersonate.into()) {
        Ok(r) => r,
        Err(e) => return Ok(output::failed("check", &e, e.exit_code().into())),
    };
    if a.json {
        output::json_line(&report)?;
    } else {
        output::reports::check(&report);
    }
    Ok(ExitCode::from(report.exit_code))
}
