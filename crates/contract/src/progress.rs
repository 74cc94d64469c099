//! The mover's JSON lines (`--progress json`): progress while it works, then a summary; and how a
//! caller that reads them (the pod log) tells them apart from the mover's messages. The schema is
//! documented in `docs/progress.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One progress line of the mover.
///
/// A tree copy writes every field; a block copy (`mover block`) leaves out `bytes_copied`,
/// `errors` and `scan_complete`, which read as zero and `false`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Progress {
    /// `sync` while copying a tree (`copy` or `verify` for a block volume), `done` on the last
    /// line.
    pub phase: String,
    /// Entries handled (chunks, for a block volume).
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

/// What a line of the mover's output is.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A progress line.
    Progress(Progress),
    /// The summary of a run (a [`crate::Summary`], or a backup's report around one), as printed;
    /// [`crate::Report::read`] gives its typed view.
    Summary(Value),
    /// Anything else: the mover's messages (stderr), shown to the user as they are.
    Text(String),
}

impl Line {
    /// Classifies one line of output.
    pub fn parse(line: &str) -> Line {
        let trimmed = line.trim();
        if trimmed.starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(trimmed)
        {
            if crate::summary::is_summary(&value) {
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
}

/// What a block copy (`mover block`, and `mover backup` or `restore` of a block volume) prints
/// while it works: a subset of [`Progress`], with entries counting chunks.
pub mod block {
    use serde::Serialize;
    /// Which pass a progress report belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Phase {
        /// Reading, comparing and writing chunks.
        Copy,
        /// Reading both sides again and comparing BLAKE3 hashes.
        Verify,
        /// Everything finished; the counts are final.
        Done,
    }

    /// How far a phase has come. Entries are chunks.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Progress {
        /// The pass this report belongs to.
        pub phase: Phase,
        /// Chunks finished in this phase.
        pub entries_done: u64,
        /// Chunks this phase will handle in all.
        pub entries_known: u64,
        /// Bytes of the volume covered by finished chunks.
        pub bytes_done: u64,
        /// Size of the volume in bytes.
        pub bytes_known: u64,
        /// `bytes_done` per second since the phase started.
        pub rate_bytes_per_sec: u64,
        /// Milliseconds since the phase started (since the job started for [`Phase::Done`]).
        pub elapsed_ms: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_progress_summary_and_text_apart() {
        let p = Line::parse(
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
            Line::parse(r#"{"schema":1,"exit_code":0}"#),
            Line::Summary(_)
        ));
        assert_eq!(
            Line::parse("pvc-backup: error: boom\n"),
            Line::Text("pvc-backup: error: boom".into())
        );
        assert_eq!(Line::parse("{not json"), Line::Text("{not json".into()));
    }

    #[test]
    fn a_block_progress_line_reads_with_zero_for_what_it_leaves_out() {
        let written = block::Progress {
            phase: block::Phase::Copy,
            entries_done: 2,
            entries_known: 8,
            bytes_done: 4096,
            bytes_known: 16384,
            rate_bytes_per_sec: 5,
            elapsed_ms: 9,
        };
        let line = serde_json::to_string(&written).unwrap();
        assert_eq!(
            line,
            r#"{"phase":"copy","entries_done":2,"entries_known":8,"bytes_done":4096,"bytes_known":16384,"rate_bytes_per_sec":5,"elapsed_ms":9}"#
        );
        let line = line.as_str();
        let Line::Progress(p) = Line::parse(line) else {
            panic!("not progress: {line}");
        };
        assert_eq!(
            (p.phase.as_str(), p.bytes_done, p.errors),
            ("copy", 4096, 0)
        );
        assert!(!p.scan_complete);
    }

    #[test]
    fn field_names_are_the_documented_ones() {
        let p = Progress {
            phase: "done".into(),
            entries_done: 1,
            entries_known: 2,
            bytes_done: 3,
            bytes_known: 4,
            bytes_copied: 5,
            errors: 6,
            scan_complete: true,
            rate_bytes_per_sec: 7,
            elapsed_ms: 8,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            text,
            r#"{"phase":"done","entries_done":1,"entries_known":2,"bytes_done":3,"bytes_known":4,"bytes_copied":5,"errors":6,"scan_complete":true,"rate_bytes_per_sec":7,"elapsed_ms":8}"#
        );
        assert_eq!(serde_json::from_str::<Progress>(&text).unwrap(), p);
    }
}
