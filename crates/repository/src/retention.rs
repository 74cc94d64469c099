//! `--keep-*` on a repository: the snapshots of a series the rules do not keep are forgotten,
//! then the data only they used is pruned, as `restic forget --prune` does.

use jiff::Zoned;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{IndexedIds, KeepOptions, PruneOptions, Repository};
use store::retention::Policy;

use crate::open::describe;
use crate::{Error, Result};

/// rustic's keep options for the mover's `--keep-*` rules.
pub fn keep_options(p: &Policy) -> KeepOptions {
    let n = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let mut k = KeepOptions::default();
    k.keep_last = n(p.last);
    k.keep_hourly = n(p.hourly);
    k.keep_daily = n(p.daily);
    k.keep_weekly = n(p.weekly);
    k.keep_monthly = n(p.monthly);
    k
}

/// Applies `policy` to the series of `newest` (same host and paths) and prunes. Returns the
/// ids of the forgotten snapshots. The newest snapshot is always kept.
pub(crate) fn apply<S: IndexedIds>(
    repo: &Repository<S>,
    url: &str,
    policy: &Policy,
    newest: &SnapshotFile,
) -> Result<Vec<String>> {
    let err = |e: Box<rustic_core::RusticError>| Error::repo(url, describe(&e));
    let series: Vec<SnapshotFile> = repo
        .get_all_snapshots()
        .map_err(err)?
        .into_iter()
        .filter(|s| s.hostname == newest.hostname && s.paths == newest.paths)
        .collect();
    let now = Zoned::now();
    let decided = keep_options(policy).apply(series, &now).map_err(err)?;
    let forget: Vec<_> = decided
        .into_iter()
        .filter(|f| !f.keep && f.snapshot.id != newest.id)
        .map(|f| f.snapshot.id)
        .collect();
    if forget.is_empty() {
        return Ok(Vec::new());
    }
    repo.delete_snapshots(&forget).map_err(err)?;
    let prune = PruneOptions::default();
    let plan = repo.prune_plan(&prune).map_err(err)?;
    repo.prune(&prune, plan).map_err(err)?;
    Ok(forget.iter().map(|id| crate::open::hex(id)).collect())
}
