//! The reports of the mover commands that read without copying (`snapshots`, `verify`,
//! `check`), as tables and lines on stdout.

use contract::snapshots::{SnapshotInfo, VersionInfo};
use serde::Serialize;

use super::{human_bytes, json_line};

/// Prints the snapshots of a file backup as a table.
pub fn snapshots(list: &[SnapshotInfo]) {
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:<8} {:<10}",
        "SNAPSHOT", "ENTRIES", "SIZE", "UNIQUE", "RESULT", "VERIFIED"
    );
    for s in list {
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
}

/// Prints the versions of a block volume's backup as a table.
pub fn versions(list: &[VersionInfo]) {
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>8} {:<8} {:<8} {:<10}",
        "VERSION", "SIZE", "ALLOCATED", "UNIQUE", "CHANGED", "IMAGE", "RESULT", "VERIFIED"
    );
    let hb = human_bytes;
    for v in list {
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
}

/// Prints verification results as one JSON list: each snapshot's name, whether it is `ok`, and
/// its outcome.
pub fn verified_json<T: Serialize>(
    results: &[(String, T)],
    ok: impl Fn(&T) -> bool,
) -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = results
        .iter()
        .map(|(id, o)| serde_json::json!({"snapshot": id, "ok": ok(o), "outcome": o}))
        .collect();
    json_line(&list)
}

/// Prints the verification of file snapshots: a line each, then its differences.
pub fn verified_trees(results: &[(String, mover::verify::Outcome)]) {
    for (id, o) in results {
        println!(
            "{id}: {}: {} entries, {} read, {} differences",
            verdict(o.ok()),
            o.entries,
            human_bytes(o.bytes_read),
            o.differences_total
        );
        for d in &o.differences {
            println!("  {}: {}", d.path, d.what);
        }
    }
}

/// Prints the verification of block images: a line each, then its bad chunks.
pub fn verified_images(results: &[(String, block::versions::ImageCheck)]) {
    for (id, c) in results {
        println!(
            "{id}: {}: {} chunks against {}, {} read, {} bad chunks",
            verdict(c.ok()),
            c.chunks,
            c.against,
            human_bytes(c.bytes_read),
            c.errors.len()
        );
        for e in &c.errors {
            println!("  byte {} (+{}): {}", e.offset, e.len, e.reason);
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

/// Prints what `mover check` found: the source, the privileges, owners and groups, the entries
/// read as another identity, and whether a copy would be complete.
pub fn check(report: &mover::check::CheckReport) {
    let p = &report.privileges;
    println!(
        "source {}: {} entries, {}",
        report.source,
        report.entries,
        human_bytes(report.bytes)
    );
    println!(
        "running as uid {} with capabilities [{}]{}",
        p.euid,
        p.capabilities.join(" "),
        if p.can_act_as_owners {
            ", can act as each owner"
        } else {
            ""
        }
    );
    let ids = |v: &[mover::check::IdCount]| {
        v.iter()
            .map(|c| format!("{} ({} entries, {})", c.id, c.entries, human_bytes(c.bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("owners (uid): {}", ids(&report.owners));
    println!("groups (gid): {}", ids(&report.groups));
    if report.identities_total > 0 {
        println!(
            "{} entries refuse their owner and are read as another identity:",
            report.identities_total
        );
        for u in &report.identities {
            println!(
                "  {}: as uid {} gid {} ({})",
                u.path,
                u.uid,
                u.gid,
                u.via.describe()
            );
        }
    }
    if report.complete {
        println!("complete: a copy with these privileges would read everything");
    } else {
        println!(
            "INCOMPLETE: {} entries cannot be read with these privileges:",
            report.unreadable_total
        );
        for e in &report.unreadable {
            println!("  {}: {}: {}", e.path, e.op, e.error);
        }
    }
}
