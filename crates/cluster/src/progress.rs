//! The mover's JSON lines, as read from its pod's log: progress while it works, then a summary.
//! The schema is documented in docs/mover.md.

use serde::Deserialize;
use serde_json::Value;

/// One progress line of the mover.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// `sync` while working (or the command's phase), `done` on the last line.
    pub phase: String,
    /// Source entries handled so far.
    pub entries_done: u64,
    /// Source entries known so far.
    pub entries_known: u64,
    /// Bytes of regular files handled.
    pub bytes_done: u64,
    /// Bytes of regular files known.
    pub bytes_known: u64,
    /// Bytes written into the target.
    pub bytes_copied: u64,
    /// Entries that failed so far.
    pub errors: u64,
    /// Whether the known totals are final.
    pub scan_complete: bool,
    /// Recent rate.
    pub rate_bytes_per_sec: u64,
    /// Time since the mover started.
    pub elapsed_ms: u64,
}

/// What a log line of the mover pod is.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A progress line.
    Progress(Progress),
    /// The summary of a run (the object with `schema`).
    Summary(Value),
    /// Anything else: the mover's messages (stderr), shown to the user as they are.
    Text(String),
}

/// The counts of a summary line (the `summary` inside a backup's report, or the line itself).
pub fn counts(summary: &Value) -> &Value {
    match summary.get("summary") {
        Some(inner) if inner.is_object() => inner,
        _ => summary,
    }
}

/// Classifies one log line.
pub fn parse(line: &str) -> Line {
    let trimmed = line.trim();
    if trimmed.starts_with('{')
        && let Ok(value) = serde_json::from_str::<Value>(trimmed)
    {
        // `mover sync` prints its summary; `mover backup` wraps it with the snapshot's name.
        if value.get("schema").is_some() || value.get("summary").is_some_and(Value::is_object) {
            return Line::Summary(value);
        }
        if value.get("phase").is_some()
            && let Ok(p) = serde_json::from_value::<Progress>(value)
        {
            return Line::Progress(p);
        }
    }
    Line::Text(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_progress_summary_and_text_apart() {
        let p = parse(
            r#"{"phase":"sync","entries_done":3,"entries_known":5,"bytes_done":10,"bytes_known":20,"bytes_copied":10,"errors":0,"scan_complete":true,"rate_bytes_per_sec":1,"elapsed_ms":7}"#,
        );
        match p {
            Line::Progress(p) => {
                assert_eq!((p.entries_done, p.bytes_known, p.elapsed_ms), (3, 20, 7));
                assert!(p.scan_complete);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"schema":1,"exit_code":0}"#),
            Line::Summary(_)
        ));
        assert_eq!(
            parse("pvc-backup: error: boom\n"),
            Line::Text("pvc-backup: error: boom".into())
        );
        assert_eq!(parse("{not json"), Line::Text("{not json".into()));
    }
}
