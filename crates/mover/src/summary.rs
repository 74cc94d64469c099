//! Counting, progress events and the summary of a run.
//!
//! Progress and summary are JSON; their schema is documented in `docs/progress.md`. Paths are
//! shown with [`crate::relpath::display`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

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

/// One entry that failed; the run goes on and ends with exit code 23.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryError {
    /// Path relative to the source root (escaped, see [`crate::relpath::display`]).
    pub path: String,
    /// What was being done: `read`, `stat`, `open`, `copy`, `chown`, `chmod`, `xattr`, ...
    pub op: String,
    /// What the kernel said.
    pub error: String,
}

/// Something worth knowing that is not an error (a socket that was not copied).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Note {
    /// Path relative to the source root.
    pub path: String,
    /// What happened.
    pub note: String,
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

/// One line of `--progress json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProgressEvent {
    /// `sync` while copying, `done` on the last line.
    pub phase: String,
    /// Entries handled.
    pub entries_done: u64,
    /// Entries known to exist so far (final once `scan_complete`).
    pub entries_known: u64,
    /// Bytes of regular files handled.
    pub bytes_done: u64,
    /// Bytes of regular files known so far (final once `scan_complete`).
    pub bytes_known: u64,
    /// Bytes written into the target.
    pub bytes_copied: u64,
    /// Entries that failed so far.
    pub errors: u64,
    /// Whether the totals are final.
    pub scan_complete: bool,
    /// Bytes handled per second over the last interval.
    pub rate_bytes_per_sec: u64,
    /// Time since the start, in milliseconds.
    pub elapsed_ms: u64,
}

impl Stats {
    /// A progress event from the current counters.
    pub fn event(&self, phase: &str, elapsed: Duration, rate: u64) -> ProgressEvent {
        let max = |a: &AtomicU64, b: &AtomicU64| a.load(Relaxed).max(b.load(Relaxed));
        ProgressEvent {
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

/// Entry counts of a summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryCounts {
    /// Source entries seen.
    pub total: u64,
    /// Entries created or rewritten.
    pub copied: u64,
    /// Names created as hard links.
    pub linked: u64,
    /// Entries whose attributes were updated in place.
    pub updated: u64,
    /// Entries already equal.
    pub unchanged: u64,
    /// Target entries removed.
    pub deleted: u64,
    /// Source entries not copied by design (sockets).
    pub skipped: u64,
    /// Source entries left out by `--exclude` or `--exclude-caches` (a folder counts once).
    #[serde(default)]
    pub excluded: u64,
    /// Entries that failed.
    pub failed: u64,
}

/// Byte counts of a summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ByteCounts {
    /// Bytes of source regular files.
    pub total: u64,
    /// Bytes written (or reflinked) into the target.
    pub copied: u64,
}

/// The result of a run, printed with `--progress json` and written to the target's state folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// Schema version of this document.
    pub schema: u32,
    /// The command: `sync`.
    pub command: String,
    /// Source path as given.
    pub source: String,
    /// Target path as given.
    pub target: String,
    /// Start time, RFC 3339 in UTC.
    pub started_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The mover's exit code: 0 done, 23 some entries failed.
    pub exit_code: u8,
    /// `ok` or `partial`.
    pub result: String,
    /// Entry counts.
    pub entries: EntryCounts,
    /// Byte counts.
    pub bytes: ByteCounts,
    /// Each failed entry with its error (at most [`MAX_LISTED`]; `entries.failed` is exact).
    pub errors: Vec<EntryError>,
    /// Notes (sockets not copied, ...).
    pub notes: Vec<Note>,
}

impl Summary {
    pub(crate) fn counts(stats: &Stats) -> (EntryCounts, ByteCounts) {
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
}

/// Formats a time as RFC 3339 in UTC with seconds (`2026-11-25T02:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::retention::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // date -u -d @951782400 +%FT%TZ
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        // date -u -d @1795572000 +%FT%TZ
        assert_eq!(at(1_795_572_000), "2026-11-25T02:00:00Z");
    }
}
