//! `mover snapshots --repository`: the snapshots a repository holds, oldest first.

use serde::Serialize;

use crate::location::{Location, S3Env};
use crate::open::{describe, open};
use crate::{Error, Result};

/// One snapshot of a repository.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Its id (64 hex digits); restic's short id is the first 8.
    pub id: String,
    /// When it was taken (RFC 3339, UTC).
    pub time: String,
    /// The host it was taken on (for the mover: what `--host` gave).
    pub host: String,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Files in it, when the snapshot records it.
    pub files: Option<u64>,
    /// Bytes of its files, when the snapshot records it.
    pub bytes: Option<u64>,
}

/// Lists the snapshots of the repository at `location`, oldest first.
pub fn list(location: &Location, password: &str, env: &S3Env) -> Result<Vec<Snapshot>> {
    let repo = open(location, password, false, env)?;
    let mut snaps = repo
        .get_all_snapshots()
        .map_err(|e| Error::repo(location.url(), describe(&e)))?;
    snaps.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(snaps
        .into_iter()
        .map(|s| Snapshot {
            id: crate::open::hex(&s.id),
            time: s.time.timestamp().to_string(),
            host: s.hostname.clone(),
            paths: s.paths.iter().map(ToString::to_string).collect(),
            tags: s.tags.iter().map(ToString::to_string).collect(),
            files: s.summary.as_ref().map(|x| x.total_files_processed),
            bytes: s.summary.as_ref().map(|x| x.total_bytes_processed),
        })
        .collect())
}
