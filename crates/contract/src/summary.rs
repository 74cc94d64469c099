//! The summary of a run: what the mover prints last with `--progress json` and writes to the
//! target's state folder, and the typed view a caller reads from that line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version a [`Summary`] carries.
pub const SCHEMA: u32 = 1;

/// One entry that failed; the run goes on and ends with exit code 23.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct EntryError {
    /// Path relative to the source root (bytes that are not UTF-8 escaped).
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

/// The result of a tree copy, printed with `--progress json` and written to the target's state
/// folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// Schema version of this document ([`SCHEMA`]).
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
    /// Each failed entry with its error (a bounded list; `entries.failed` is exact).
    pub errors: Vec<EntryError>,
    /// Notes (sockets not copied, ...).
    pub notes: Vec<Note>,
}

/// Whether a JSON line of the mover is a summary: a [`Summary`] (it has `schema`), a backup's
/// report around one (it has a `summary` object), or a block copy's summary (`mover block`, on
/// one machine or over the wire: it has `chunk_size` and `chunks_equal`).
pub fn is_summary(value: &Value) -> bool {
    value.get("schema").is_some()
        || value.get("summary").is_some_and(Value::is_object)
        || is_block_summary(value)
}

/// Whether a JSON line is a block copy's summary (`mover block`, on one machine or over the
/// wire): it has `chunk_size` and `chunks_equal`, and counts chunks where others count entries.
pub fn is_block_summary(value: &Value) -> bool {
    value.get("chunk_size").is_some() && value.get("chunks_equal").is_some()
}

/// What a caller reads from a summary line, whichever command printed it: `mover sync` and
/// `mover restore` print a [`Summary`]; `mover backup` prints a report with the snapshot's name
/// and the copy's summary inside (a block volume's summary has no entry or byte counts), and so
/// do `mover backup --repository` and `mover restore --repository` (`kind: repository`, the
/// snapshot's id, restic's own counts beside a [`Summary`]). Each field is read on its own, so
/// one a command does not print is `None` (or empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The snapshot a backup made.
    pub snapshot: Option<String>,
    /// Entry counts of the copy.
    pub entries: Option<EntryCounts>,
    /// Byte counts of the copy.
    pub bytes: Option<ByteCounts>,
    /// Wall time of the copy in milliseconds.
    pub duration_ms: Option<u64>,
    /// The entries that failed.
    pub errors: Vec<EntryError>,
    /// A backup's: the snapshots left after its retention, newest first.
    pub kept: Vec<crate::snapshots::SnapshotRecord>,
}

impl Report {
    /// The typed view of a summary line.
    pub fn read(value: &Value) -> Report {
        let counts = match value.get("summary") {
            Some(inner) if inner.is_object() => inner,
            _ => value,
        };
        fn field<T: for<'de> Deserialize<'de>>(v: &Value, name: &str) -> Option<T> {
            v.get(name).and_then(|f| T::deserialize(f).ok())
        }
        Report {
            snapshot: field(value, "snapshot"),
            entries: field(counts, "entries"),
            bytes: field(counts, "bytes"),
            duration_ms: field(counts, "duration_ms"),
            errors: field(counts, "errors").unwrap_or_default(),
            kept: field(value, "kept").unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> Summary {
        Summary {
            schema: SCHEMA,
            command: "sync".into(),
            source: "/source".into(),
            target: "/backup".into(),
            started_at: "2026-11-25T02:00:00Z".into(),
            duration_ms: 1500,
            exit_code: 23,
            result: "partial".into(),
            entries: EntryCounts {
                total: 10,
                copied: 7,
                failed: 1,
                ..EntryCounts::default()
            },
            bytes: ByteCounts {
                total: 4096,
                copied: 2048,
            },
            errors: vec![EntryError {
                path: "a/b".into(),
                op: "read".into(),
                error: "Permission denied (os error 13)".into(),
            }],
            notes: vec![Note {
                path: "sock".into(),
                note: "socket not copied".into(),
            }],
        }
    }

    #[test]
    fn a_summary_round_trips_with_its_documented_field_names() {
        let s = summary();
        let v = serde_json::to_value(&s).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bytes",
                "command",
                "duration_ms",
                "entries",
                "errors",
                "exit_code",
                "notes",
                "result",
                "schema",
                "source",
                "started_at",
                "target"
            ]
        );
        assert_eq!(v["entries"]["excluded"], 0);
        assert_eq!(v["errors"][0]["op"], "read");
        assert_eq!(serde_json::from_value::<Summary>(v).unwrap(), s);
    }

    #[test]
    fn a_summary_without_excluded_reads_as_zero_excluded() {
        let mut v = serde_json::to_value(summary()).unwrap();
        v["entries"].as_object_mut().unwrap().remove("excluded");
        let s: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(s.entries.excluded, 0);
    }

    #[test]
    fn a_report_reads_a_summary_and_a_backup_around_one() {
        let s = serde_json::to_value(summary()).unwrap();
        assert!(is_summary(&s));
        let r = Report::read(&s);
        assert_eq!(r.snapshot, None);
        assert_eq!(r.entries.as_ref().map(|e| e.total), Some(10));
        assert_eq!(r.bytes.as_ref().map(|b| b.copied), Some(2048));
        assert_eq!((r.duration_ms, r.errors.len()), (Some(1500), 1));

        let backup = json!({"snapshot": "2026-11-25T02-00-00Z", "previous": null, "summary": s});
        assert!(is_summary(&backup));
        let r = Report::read(&backup);
        assert_eq!(r.snapshot.as_deref(), Some("2026-11-25T02-00-00Z"));
        assert_eq!(r.entries.map(|e| e.failed), Some(1));
    }

    #[test]
    fn a_repository_report_is_read_through_its_summary() {
        let mut inner = summary();
        inner.command = "backup".into();
        inner.target = "s3:http://10.0.0.1:8333/bucket/shop".into();
        let report = json!({
            "kind": "repository",
            "snapshot": "4f1c0d2e9a",
            "files_new": 7,
            "failed": [{"path": "a/b", "error": "Permission denied (os error 13)"}],
            "forgotten": [],
            "exit_code": 23,
            "summary": inner,
        });
        assert!(is_summary(&report));
        let r = Report::read(&report);
        assert_eq!(r.snapshot.as_deref(), Some("4f1c0d2e9a"));
        assert_eq!(r.entries.map(|e| (e.total, e.copied)), Some((10, 7)));
        assert_eq!((r.duration_ms, r.errors.len()), (Some(1500), 1));
    }

    #[test]
    fn a_block_backup_report_has_no_counts_but_its_time() {
        let block = json!({
            "kind": "block",
            "snapshot": "2026-11-25T02-00-00Z",
            "summary": {"size": 4096, "duration_ms": 12, "exit_code": 0, "errors": []},
        });
        let r = Report::read(&block);
        assert_eq!(r.snapshot.as_deref(), Some("2026-11-25T02-00-00Z"));
        assert_eq!((r.entries, r.bytes, r.duration_ms), (None, None, Some(12)));
        assert!(!is_summary(&json!({"phase": "sync"})));
    }

    #[test]
    fn a_block_copys_summary_is_a_summary_without_entry_counts() {
        let copy = json!({
            "source": "/dev/a", "destination": "/dev/b", "size": 8388608,
            "chunk_size": 4194304, "chunks": 2, "chunks_written": 1, "chunks_equal": 1,
            "errors": [], "duration_ms": 7, "exit_code": 0,
        });
        assert!(is_summary(&copy) && is_block_summary(&copy));
        let r = Report::read(&copy);
        assert_eq!((r.entries, r.bytes, r.duration_ms), (None, None, Some(7)));
        // A progress line of a block copy is not one, nor a copy of folders' summary.
        assert!(!is_block_summary(&serde_json::to_value(summary()).unwrap()));
        assert!(!is_summary(
            &json!({"phase": "copy", "chunk_size": 4194304, "done": 1})
        ));
    }
}
