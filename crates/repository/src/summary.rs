//! The mover's summary ([`contract::Summary`]) of a backup into a repository or a restore from
//! one, carried inside each report: a caller (the cluster commands, the operator) reads the same
//! counts whether a run copied into a claim or into a repository.

use std::time::{Duration, SystemTime};

use contract::ExitCode;
use contract::summary::{ByteCounts, EntryCounts, EntryError, SCHEMA, Summary};

use crate::source::Failure;

/// At most this many failed entries are listed in a summary (`entries.failed` counts them all).
const MAX_ERRORS: usize = 1000;

/// The start and wall time of a run, as a summary gives them.
pub(crate) struct Timing {
    started: SystemTime,
    elapsed: Duration,
}

impl Timing {
    /// A run that started at `started` and has just ended.
    pub(crate) fn since(started: SystemTime) -> Timing {
        Timing {
            started,
            elapsed: started.elapsed().unwrap_or_default(),
        }
    }
}

/// A summary of `command` from `source` into `target` with these counts; the result word and
/// exit code follow from the failures.
pub(crate) fn summary(
    command: &str,
    source: &str,
    target: &str,
    timing: &Timing,
    entries: EntryCounts,
    bytes: ByteCounts,
    failed: &[Failure],
) -> Summary {
    let exit = if failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Partial
    };
    Summary {
        schema: SCHEMA,
        command: command.to_owned(),
        source: source.to_owned(),
        target: target.to_owned(),
        started_at: store::id::rfc3339(timing.started),
        duration_ms: u64::try_from(timing.elapsed.as_millis()).unwrap_or(u64::MAX),
        exit_code: exit.code(),
        result: if failed.is_empty() { "ok" } else { "partial" }.to_owned(),
        entries: EntryCounts {
            failed: failed.len() as u64,
            ..entries
        },
        bytes,
        errors: failed
            .iter()
            .take(MAX_ERRORS)
            .map(|f| EntryError {
                path: f.path.clone(),
                op: "read".to_owned(),
                error: f.error.clone(),
            })
            .collect(),
        notes: Vec::new(),
    }
}
