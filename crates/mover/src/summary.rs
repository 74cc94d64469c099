//! Counting a run: the counters behind its progress lines and its summary, whose types belong to
//! the mover's contract (`contract::progress`, `contract::summary`). Paths are shown with
//! [`crate::relpath::display`].

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use contract::summary::{ByteCounts, EntryCounts, EntryError, Note, SCHEMA};
use contract::{ExitCode, Progress, Summary};

use crate::owner::Owners;
use crate::{Error, Result};

/// At most this many errors and notes are kept in a summary; the counts stay exact.
pub const MAX_LISTED: usize = 10_000;

/// Counters of a run, updated by the workers and read by whoever shows progress.
#[derive(Debug, Default)]
pub struct Stats {
    /// Source entries found by the copy pass so far.
    pub entries_found: AtomicU64,
    /// Source entries found by the counting pass (when it runs).
    pub entries_counted: AtomicU64,
    /// Source entries handled (copied, linked, updated, unchanged, failed or skipped).
    pub entries_done: AtomicU64,
    /// Bytes of source regular files found by the copy pass.
    pub bytes_found: AtomicU64,
    /// Bytes of source regular files found by the counting pass.
    pub bytes_counted: AtomicU64,
    /// Bytes of source regular files handled.
    pub bytes_done: AtomicU64,
    /// Bytes written (or reflinked) into the target.
    pub bytes_copied: AtomicU64,
    /// Entries created or rewritten in the target.
    pub copied: AtomicU64,
    /// Names created as hard links to an entry copied in this run or unchanged.
    pub linked: AtomicU64,
    /// Entries whose content was equal but whose attributes were updated in place.
    pub updated: AtomicU64,
    /// Entries already equal.
    pub unchanged: AtomicU64,
    /// Target entries removed because the source lacks them.
    pub deleted: AtomicU64,
    /// Source entries that cannot be copied by design (sockets).
    pub skipped: AtomicU64,
    /// Source entries left out by an exclude (a folder counts once, its content not at all).
    pub excluded: AtomicU64,
    /// Entries that failed.
    pub failed: AtomicU64,
    /// Set when the counting pass (or, without one, the copy pass) has seen every directory.
    pub scan_complete: AtomicBool,
}

/// Errors and notes collected during a run.
#[derive(Debug, Default)]
pub struct Journal {
    errors: Mutex<Vec<EntryError>>,
    notes: Mutex<Vec<Note>>,
}

impl Journal {
    /// Records a failed entry.
    pub fn error(&self, stats: &Stats, path: &[u8], op: &str, error: impl std::fmt::Display) {
        stats.failed.fetch_add(1, Relaxed);
        let e = EntryError {
            path: crate::relpath::display(path),
            op: op.to_string(),
            error: error.to_string(),
        };
        tracing::error!(path = %e.path, op = %e.op, "{}", e.error);
        let mut v = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < MAX_LISTED {
            v.push(e);
        }
    }

    /// Records a note.
    pub fn note(&self, path: &[u8], note: impl Into<String>) {
        let n = Note {
            path: crate::relpath::display(path),
            note: note.into(),
        };
        tracing::warn!(path = %n.path, "{}", n.note);
        let mut v = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < MAX_LISTED {
            v.push(n);
        }
    }

    /// Takes what was recorded.
    pub fn take(&self) -> (Vec<EntryError>, Vec<Note>) {
        let e = std::mem::take(&mut *self.errors.lock().unwrap_or_else(|p| p.into_inner()));
        let n = std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()));
        (e, n)
    }
}

impl Stats {
    /// A progress event from the current counters.
    pub fn event(&self, phase: &str, elapsed: Duration, rate: u64) -> Progress {
        let max = |a: &AtomicU64, b: &AtomicU64| a.load(Relaxed).max(b.load(Relaxed));
        Progress {
            phase: phase.to_string(),
            entries_done: self.entries_done.load(Relaxed),
            entries_known: max(&self.entries_found, &self.entries_counted),
            bytes_done: self.bytes_done.load(Relaxed),
            bytes_known: max(&self.bytes_found, &self.bytes_counted),
            bytes_copied: self.bytes_copied.load(Relaxed),
            errors: self.failed.load(Relaxed),
            scan_complete: self.scan_complete.load(Relaxed),
            rate_bytes_per_sec: rate,
            elapsed_ms: elapsed.as_millis() as u64,
        }
    }
}

/// The entry and byte counts of a summary, from a run's counters.
pub fn counts(stats: &Stats) -> (EntryCounts, ByteCounts) {
    let g = |a: &AtomicU64| a.load(Relaxed);
    (
        EntryCounts {
            total: g(&stats.entries_found),
            copied: g(&stats.copied),
            linked: g(&stats.linked),
            updated: g(&stats.updated),
            unchanged: g(&stats.unchanged),
            deleted: g(&stats.deleted),
            skipped: g(&stats.skipped),
            excluded: g(&stats.excluded),
            failed: g(&stats.failed),
        },
        ByteCounts {
            total: g(&stats.bytes_found),
            copied: g(&stats.bytes_copied),
        },
    )
}

/// The summary of a run of `command` whose work is done: the counts in `stats`, the errors and
/// notes `journal` recorded (taken from it), and the result, partial when an entry failed.
/// `started` is when the run began, by the wall clock and by the monotonic one; `source` is
/// shown as given, `target` through [`crate::relpath::display`].
pub fn summarize(
    command: &str,
    source: String,
    target: &Path,
    started: (SystemTime, Instant),
    stats: &Stats,
    journal: &Journal,
) -> Summary {
    let (errors, notes) = journal.take();
    let (entries, bytes) = counts(stats);
    let partial = entries.failed > 0;
    Summary {
        schema: SCHEMA,
        command: command.into(),
        source,
        target: crate::relpath::display(target.as_os_str().as_encoded_bytes()),
        started_at: store::id::rfc3339(started.0),
        duration_ms: started.1.elapsed().as_millis() as u64,
        exit_code: if partial {
            ExitCode::Partial
        } else {
            ExitCode::Ok
        }
        .code(),
        result: if partial { "partial" } else { "ok" }.into(),
        entries,
        bytes,
        errors,
        notes,
    }
}

/// Writes `summary` as `last-sync.json` into `state`, the state folder of the target at
/// `target` (as the folder's owner where the mover itself may not write there).
pub fn write_last_sync(
    owners: &Owners,
    state: BorrowedFd<'_>,
    target: &Path,
    summary: &Summary,
) -> Result<()> {
    owners
        .retry_target(&[], &[state], || {
            crate::sync::write_state_file(state, store::layout::LAST_SYNC_C, summary)
        })
        .map_err(|e| Error::io("cannot write summary into", target.display().to_string(), e))
}
