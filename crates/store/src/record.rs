//! The verification record kept for each snapshot (`.pvc-backup/snapshots/ID.verify.json`), the
//! same for snapshots of a tree and versions of a block volume.

use serde::{Deserialize, Serialize};

/// The recorded result of verifying one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verification {
    /// When it was verified, RFC 3339.
    pub verified_at: String,
    /// `ok`, or `failed` with the count of differences.
    pub result: String,
    /// Entries checked.
    pub entries: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

impl Verification {
    /// How `mover snapshots` shows it: `ok at 2026-11-25T02:00:00Z`.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.result, self.verified_at)
    }
}
