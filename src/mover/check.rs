//! `pvc-backup mover check`: whether a copy with the current privileges would be complete.

use std::path::PathBuf;
use std::process::ExitCode;

use super::copy::human_bytes;
use super::{ImpersonateArg, init_logging};

/// Arguments of `pvc-backup mover check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The source folder.
    src: PathBuf,
    /// Check only this folder of SRC.
    #[arg(long, value_name = "DIR")]
    subdir: Option<PathBuf>,
    /// When to act as each entry's owner.
    #[arg(long, value_enum, default_value_t = ImpersonateArg::Auto)]
    impersonate: ImpersonateArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Walks SRC and reports what a copy would meet.
pub(super) fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    let report = match mover::check::check(&a.src, a.subdir.as_deref(), a.impersonate.into()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvc-backup mover check: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::from(report.exit_code));
    }
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
    Ok(ExitCode::from(report.exit_code))
}
