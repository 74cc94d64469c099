//! Running a tree copy (`sync`, `backup`, `restore`): options from the flags, progress while it
//! works, then the summary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use contract::{ExitCode as Exit, Summary};
use mover::Stats;

use super::{CopyArgs, init_logging};
use crate::output::{self, progress::TreeProgress};

/// Runs a copy (`sync` or `backup`): progress while it works, then the summary. `run` may give
/// a JSON document to print instead of the summary and a line to add to the human summary.
pub(super) fn copy_command<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<ExitCode> {
    copy_code(cmd, c, prepare, stats_of, run).map(ExitCode::from)
}

/// [`copy_command`], returning the mover's exit code.
pub(super) fn copy_code<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<Exit> {
    init_logging(c.verbose, c.quiet);
    if c.excludes.delete_excluded && c.no_delete {
        return Ok(output::failed(
            cmd,
            "--delete-excluded deletes what --no-delete keeps; give one of them",
            Exit::Usage,
        ));
    }
    let excludes = match c.excludes.excludes() {
        Ok(e) => e,
        Err(e) => return Ok(output::failed(cmd, &e, e.exit_code())),
    };
    let out = c.output();
    let opts = mover::Options {
        subdir: c.subdir.clone(),
        checksum: c.checksum,
        allow_empty: c.allow_empty,
        threads: c.threads,
        count_ahead: out.shows_progress(),
        impersonate: c.impersonate.into(),
        no_delete: c.no_delete,
        manifest: c.manifest,
        fsync: c.fsync,
        excludes,
        no_space_check: c.no_space_check,
    };
    let job = match prepare(opts) {
        Ok(j) => j,
        Err(e) => return Ok(output::failed(cmd, &e, e.exit_code())),
    };
    let stats = stats_of(&job);
    let interval = Duration::from_secs_f64(c.progress_interval.max(0.05));
    let progress = TreeProgress::start(out, stats.clone(), interval);
    let result = run(job);
    progress.stop();
    let (summary, extra) = match result {
        Ok(s) => s,
        Err(e) => return Ok(output::failed(cmd, &e, e.exit_code())),
    };
    let done = stats.event("done", Duration::from_millis(summary.duration_ms), 0);
    output::summary::tree_copy(cmd, out, &done, &summary, extra)?;
    // A copy's summary says done or partial.
    Ok(Exit::try_from(summary.exit_code).unwrap_or(Exit::Fatal))
}
