//! Progress reports, one per line of `--progress json`.

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
