//! `pvc-backup mover verify`: check snapshots against their manifests or a live source.

use contract::ExitCode as Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::block::fatal_in;
use super::copy::human_bytes;
use super::{ExcludeArgs, init_logging};

/// Arguments of `pvc-backup mover verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The backup folder (or a mirror, with --against).
    dst: PathBuf,
    /// Which snapshot: its name, `latest` or `all`.
    #[arg(long, value_name = "ID", default_value = store::layout::LATEST)]
    snapshot: String,
    /// Compare with this live source instead of the manifest.
    #[arg(long, value_name = "SRC")]
    against: Option<PathBuf>,
    /// With --against: leave out what the copy left out (the same --exclude, --exclude-from
    /// and --exclude-caches flags).
    #[command(flatten)]
    excludes: ExcludeArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Verifies the snapshots of DST (block versions or folder snapshots).
pub(super) fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    init_logging(0, false);
    if store::Target::new(&a.dst).holds_block_versions() || a.dst.is_file() {
        return block_verify(&a.dst, &a.snapshot, a.against.as_deref(), a.json);
    }
    if a.excludes.given() && (a.against.is_none() || a.excludes.delete_excluded) {
        eprintln!(
            "pvc-backup mover verify: --exclude, --exclude-from and --exclude-caches apply to a \
             comparison with a live source (--against SRC), and --delete-excluded to copies; \
             leave them out"
        );
        return Ok(Exit::Usage.into());
    }
    let excludes = match a.excludes.excludes() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pvc-backup mover verify: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let results =
        match mover::verify::verify_excluding(&a.dst, &a.snapshot, a.against.as_deref(), &excludes)
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pvc-backup mover verify: {e}");
                return Ok(ExitCode::from(e.exit_code()));
            }
        };
    let ok = results.iter().all(|(_, o)| o.ok());
    if a.json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, o)| serde_json::json!({"snapshot": id, "ok": o.ok(), "outcome": o}))
            .collect();
        println!("{}", serde_json::to_string(&list)?);
    } else {
        for (id, o) in &results {
            let head = if o.ok() { "ok" } else { "FAILED" };
            println!(
                "{id}: {head}: {} entries, {} read, {} differences",
                o.entries,
                human_bytes(o.bytes_read),
                o.differences_total
            );
            for d in &o.differences {
                println!("  {}: {}", d.path, d.what);
            }
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Partial }.into())
}

/// `mover verify` of block versions (`dst` a backup folder) or of one image file with its
/// manifest (`dst` an image file).
fn block_verify(
    dst: &Path,
    which: &str,
    against: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let threads = block::default_threads();
    let result = if dst.is_file() {
        match against {
            None => block::versions::check_image(dst, threads, &mut |_| {}),
            Some(src) => block::versions::against_source(src, dst, threads, &mut |_| {}),
        }
        .map(|c| vec![(dst.display().to_string(), c)])
    } else {
        block::versions::verify(dst, which, against, threads, &mut |_| {})
    };
    let results = match result {
        Ok(r) => r,
        Err(e) => return Ok(fatal_in("verify", &e, false)),
    };
    let ok = results.iter().all(|(_, c)| c.ok());
    if json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, c)| serde_json::json!({"snapshot": id, "ok": c.ok(), "outcome": c}))
            .collect();
        println!("{}", serde_json::to_string(&list)?);
    } else {
        for (id, c) in &results {
            println!(
                "{id}: {}: {} chunks against {}, {} read, {} bad chunks",
                if c.ok() { "ok" } else { "FAILED" },
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
    Ok(if ok { Exit::Ok } else { Exit::Partial }.into())
}
