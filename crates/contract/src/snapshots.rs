//! The listing `mover snapshots --json` prints: the snapshots of a folder's backup, or the
//! versions of a block volume's backup, newest first.

use serde::{Deserialize, Serialize};

/// One snapshot of a folder, as `mover snapshots` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its name.
    pub id: String,
    /// When it was taken, RFC 3339.
    pub time: String,
    /// Whether `latest` points at it.
    pub latest: bool,
    /// Entries in it (from the run's summary; `None` when the summary is missing).
    pub entries: Option<u64>,
    /// Bytes of regular files in it.
    pub bytes: Option<u64>,
    /// Space taken by files no other snapshot shares (allocated bytes of files with one link):
    /// what removing this snapshot would free.
    pub unique_bytes: u64,
    /// `ok` or `partial`, from the run's summary.
    pub result: Option<String>,
    /// The result of its last verification, when it was verified.
    pub verified: Option<String>,
}

/// One snapshot of a folder as its records tell it, without reading the snapshot itself: what a
/// backup's summary lists as `kept` (the snapshots left after its retention), cheap to make
/// however large the snapshots are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Its name.
    pub id: String,
    /// When it was taken, RFC 3339.
    pub time: String,
    /// Whether `latest` points at it.
    pub latest: bool,
    /// Entries in it (`None` when its run's summary is missing).
    pub entries: Option<u64>,
    /// Bytes of regular files in it.
    pub bytes: Option<u64>,
    /// `ok` or `partial`, from its run's summary.
    pub result: Option<String>,
    /// When it was last verified, RFC 3339.
    pub verified_at: Option<String>,
    /// The result of that verification: `ok`, or `failed` with the count of differences.
    pub verified: Option<String>,
}

/// One version of a block volume, as `mover snapshots` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Its name.
    pub id: String,
    /// When it was taken, RFC 3339.
    pub time: String,
    /// Whether `latest` points at it.
    pub latest: bool,
    /// Size of the volume in bytes (the image's apparent size).
    pub size: u64,
    /// Bytes the image allocates (`st_blocks`), shared extents included.
    pub allocated_bytes: u64,
    /// Bytes of the image's extents that no other file shares (`FIEMAP` without the shared flag):
    /// what removing this version would free. Without `FIEMAP` (tmpfs), the allocated bytes.
    pub unique_bytes: u64,
    /// Chunks changed since the version before it, from the run record.
    pub changed_chunks: Option<u64>,
    /// How the image was made (`reflink` or `full`), from the run record.
    pub method: Option<String>,
    /// `ok`, from the run record.
    pub result: Option<String>,
    /// The result of its last verification, when it was verified.
    pub verified: Option<String>,
}

/// What `mover snapshots --json` prints: one JSON list, of snapshots or of versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Listing {
    /// The versions of a block volume (sparse images). Tried first: a version has every field
    /// a snapshot requires.
    Block(Vec<VersionInfo>),
    /// The snapshots of a folder.
    Tree(Vec<SnapshotInfo>),
}

impl Listing {
    /// The names, newest first.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Listing::Block(list) => list.iter().map(|v| v.id.as_str()).collect(),
            Listing::Tree(list) => list.iter().map(|s| s.id.as_str()).collect(),
        }
    }

    /// The name `latest` points at, if it points at one listed.
    pub fn latest(&self) -> Option<&str> {
        match self {
            Listing::Block(list) => list.iter().find(|v| v.latest).map(|v| v.id.as_str()),
            Listing::Tree(list) => list.iter().find(|s| s.latest).map(|s| s.id.as_str()),
        }
    }

    /// Whether these are versions of a block volume.
    pub fn is_block(&self) -> bool {
        matches!(self, Listing::Block(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_back_as_the_kind_it_was_written_as() {
        let tree = Listing::Tree(vec![SnapshotInfo {
            id: "2026-11-26T02-00-00Z".into(),
            time: "2026-11-26T02:00:00Z".into(),
            latest: true,
            entries: Some(3),
            bytes: None,
            unique_bytes: 4096,
            result: Some("ok".into()),
            verified: None,
        }]);
        let block = Listing::Block(vec![VersionInfo {
            id: "2026-11-26T02-00-00Z".into(),
            time: "2026-11-26T02:00:00Z".into(),
            latest: false,
            size: 1 << 20,
            allocated_bytes: 4096,
            unique_bytes: 4096,
            changed_chunks: Some(1),
            method: Some("full".into()),
            result: Some("ok".into()),
            verified: None,
        }]);
        for listing in [tree, block] {
            let text = serde_json::to_string(&listing).unwrap();
            assert!(text.starts_with("[{\"id\":"), "{text}");
            assert_eq!(serde_json::from_str::<Listing>(&text).unwrap(), listing);
        }
        let empty: Listing = serde_json::from_str("[]").unwrap();
        assert!(empty.ids().is_empty() && empty.latest().is_none());
    }
}
