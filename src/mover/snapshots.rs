//! `pvc-backup mover snapshots`: list the snapshots (or block versions) in a backup folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::block::fatal_in;
use super::copy::human_bytes;
use super::init_logging;

/// Arguments of `pvc-backup mover snapshots`.
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// The backup folder.
    dst: PathBuf,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the snapshots of DST.
pub(super) fn run(a: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    if store::Target::new(&a.dst).holds_block_versions() {
        return block_snapshots(&a.dst, a.json);
    }
    let list = match mover::snapshot::list(&a.dst) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pvc-backup mover snapshots: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:<8} {:<10}",
        "SNAPSHOT", "ENTRIES", "SIZE", "UNIQUE", "RESULT", "VERIFIED"
    );
    for s in &list {
        let opt = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or("?".to_string(), f);
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:<8} {:<10}{}",
            s.id,
            opt(s.entries, &|n| n.to_string()),
            opt(s.bytes, &human_bytes),
            human_bytes(s.unique_bytes),
            s.result.as_deref().unwrap_or("?"),
            s.verified.as_deref().unwrap_or("never"),
            if s.latest { "  <- latest" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `mover snapshots` of a folder of block versions.
fn block_snapshots(dst: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let list = match block::versions::list(dst) {
        Ok(l) => l,
        Err(e) => return Ok(fatal_in("snapshots", &e, false)),
    };
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8} {:<8} {:<8} {:<10}",
        "VERSION", "SIZE", "ALLOCATED", "UNIQUE", "CHANGED", "IMAGE", "RESULT", "VERIFIED"
    );
    let hb = human_bytes;
    for v in &list {
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>8} {:<8} {:<8} {:<10}{}",
            v.id,
            hb(v.size),
            hb(v.allocated_bytes),
            hb(v.unique_bytes),
            v.changed_chunks.map_or("?".to_string(), |n| n.to_string()),
            v.method.as_deref().unwrap_or("?"),
            v.result.as_deref().unwrap_or("?"),
            v.verified.as_deref().unwrap_or("never"),
            if v.latest { "  <- latest" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
