//! `mover verify --repository`: restic's `check` on a repository, reading every pack with
//! `--read-data`.

use rustic_core::CheckOptions;
use serde::Serialize;

use crate::location::{Location, S3Env};
use crate::open::{describe, open};
use crate::{Error, Result};

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether every pack's content was read and its hashes checked.
    pub read_data: bool,
    /// Errors: the repository is damaged.
    pub errors: Vec<String>,
    /// Findings that do not damage what the snapshots hold (say, a pack no index names).
    pub warnings: Vec<String>,
}

/// Checks the structure of the repository at `location` (index, packs, trees of every
/// snapshot), and with `read_data` the content of every pack.
pub fn verify(location: &Location, password: &str, env: &S3Env, read_data: bool) -> Result<Report> {
    let repo = open(location, password, false, env)?;
    let results = repo
        .check(CheckOptions::default().read_data(read_data))
        .map_err(|e| Error::repo(location.url(), describe(&e)))?;
    let mut report = Report {
        read_data,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for (level, e) in results.0 {
        let text = e.to_string();
        if format!("{level:?}") == "Error" {
            report.errors.push(text);
        } else {
            report.warnings.push(text);
        }
    }
    Ok(report)
}
