//! The end of a copy: the summary as JSON on stdout for a program, the summary lines on stderr
//! for a person, and the errors that stopped a copy.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use contract::{Progress, Summary};

use super::{Output, human_bytes, json_line};

/// Prints the end of a tree copy (`sync`, `backup`, `restore`): with JSON the last progress line
/// `done`, then the summary or the command's own document (`extra`'s value); on stderr the human
/// summary, after `extra`'s line, unless quiet and all went well.
pub fn tree_copy(
    cmd: &str,
    out: Output,
    done: &Progress,
    summary: &Summary,
    extra: Option<(serde_json::Value, String)>,
) -> anyhow::Result<()> {
    if out.json {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", serde_json::to_string(done)?)?;
        match &extra {
            Some((json, _)) => writeln!(stdout, "{}", serde_json::to_string(json)?)?,
            None => writeln!(stdout, "{}", serde_json::to_string(summary)?)?,
        }
    }
    if !out.quiet || summary.exit_code != 0 {
        let mut text = tree_lines(cmd, summary);
        if let Some((_, line)) = extra {
            text = format!("pvc-backup mover {cmd}: {line}\n{text}");
        }
        eprintln!("{text}");
    }
    Ok(())
}

/// The human summary of a tree copy, with the first failed entries.
fn tree_lines(cmd: &str, s: &Summary) -> String {
    let e = &s.entries;
    let mut line = format!(
        "pvc-backup mover {cmd}: {}: {} entries ({} copied, {} linked, {} updated, {} unchanged, \
         {} deleted{}{}), {} of {} copied in {:.1}s",
        s.result,
        e.total,
        e.copied,
        e.linked,
        e.updated,
        e.unchanged,
        e.deleted,
        if e.skipped > 0 {
            format!(", {} skipped", e.skipped)
        } else {
            String::new()
        },
        if e.excluded > 0 {
            format!(", {} excluded", e.excluded)
        } else {
            String::new()
        },
        human_bytes(s.bytes.copied),
        human_bytes(s.bytes.total),
        s.duration_ms as f64 / 1000.0
    );
    if e.failed > 0 {
        line.push_str(&format!(
            "\n{} entries FAILED; the summary in the target's {}/{} lists each:",
            e.failed,
            store::layout::STATE_DIR,
            store::layout::LAST_SYNC_C.to_string_lossy()
        ));
        for err in s.errors.iter().take(20) {
            line.push_str(&format!("\n  {}: {}: {}", err.path, err.op, err.error));
        }
    }
    line
}

/// The line that reports a file backup's snapshot, printed before its summary.
pub fn snapshot_made(r: &mover::snapshot::BackupReport) -> String {
    format!(
        "snapshot {}{}{}",
        r.snapshot,
        r.previous.as_ref().map_or(String::new(), |p| format!(
            " (unchanged entries linked to {p})"
        )),
        removed_note(&r.removed, &r.cleaned),
    )
}

/// What a backup run removed besides making its snapshot (empty when nothing), for the line that
/// reports the snapshot: file and block backups say it alike.
fn removed_note(removed: &[String], cleaned: &[String]) -> String {
    let mut note = String::new();
    if !removed.is_empty() {
        note.push_str(&format!("; removed by retention: {}", removed.join(", ")));
    }
    if !cleaned.is_empty() {
        note.push_str(&format!(
            "; removed left-overs of runs that died: {}",
            cleaned.join(", ")
        ));
    }
    note
}

/// Prints the end of `mover backup` of a block volume: the report as JSON, the version made and
/// the summary line.
pub fn block_backup(out: Output, r: &block::versions::BackupReport) -> anyhow::Result<()> {
    if out.json {
        json_line(r)?;
    }
    if !out.quiet || r.summary.exit_code != 0 {
        print_errors(&r.summary.errors, out.verbose);
        if r.result == "ok" {
            let how = match (&r.previous, r.method) {
                (Some(p), block::versions::method::REFLINK) => {
                    format!(
                        "cloned from {p} (reflink), {} chunks changed",
                        r.changed_chunks
                    )
                }
                (Some(p), _) => format!(
                    "full image: {}; {} chunks changed since {p}",
                    r.reflink_error.as_deref().unwrap_or("no reflinks"),
                    r.changed_chunks
                ),
                (None, _) => format!("first version, {} chunks of data", r.changed_chunks),
            };
            eprintln!(
                "pvc-backup mover backup: version {} ({how}){}",
                r.snapshot,
                removed_note(&r.removed, &r.cleaned),
            );
        } else {
            eprintln!(
                "pvc-backup mover backup: FAILED: {} chunks could not be copied; no version was made",
                r.summary.errors.len()
            );
        }
        eprintln!("pvc-backup mover backup: {}", r.summary.human_line());
    }
    Ok(())
}

/// Prints the end of `mover restore` of a block version: the summary as JSON, the errors and the
/// summary line.
pub fn block_restore(out: Output, summary: &block::Summary) -> anyhow::Result<()> {
    if out.json {
        json_line(summary)?;
    }
    if !out.quiet || summary.exit_code != 0 {
        print_errors(&summary.errors, out.verbose);
        eprintln!("pvc-backup mover restore: {}", summary.human_line());
    }
    Ok(())
}

/// Prints the end of `mover block`: the summary as JSON, the errors unless quiet, and always the
/// summary line.
pub fn block_copy(out: Output, summary: &block::Summary) -> anyhow::Result<()> {
    if out.json {
        json_line(summary)?;
    }
    if !out.quiet {
        print_errors(&summary.errors, out.verbose);
    }
    eprintln!("pvc-backup: {}", summary.human_line());
    Ok(())
}

/// Says what `mover block` is about to copy (with `-v`): both sides, their kind and how they are
/// read and written, the size and the workers.
pub fn block_start(src: &Path, dst: &Path, job: &block::Job, threads: usize) {
    let (src_direct, dst_direct) = job.is_direct();
    eprintln!(
        "pvc-backup: {} ({}, {}) -> {} ({}, {}): {} bytes in {} chunks, {} workers",
        src.display(),
        job.source_kind().name(),
        io_mode(src_direct),
        dst.display(),
        job.destination_kind().name(),
        io_mode(dst_direct),
        job.size(),
        job.chunks(),
        threads,
    );
}

fn io_mode(direct: bool) -> &'static str {
    if direct {
        "O_DIRECT"
    } else {
        "page cache + DONTNEED"
    }
}

/// Error lines printed without `-v`; the JSON summary always has them all.
const ERRORS_SHOWN: usize = 20;

/// Prints chunk errors on stderr: the first [`ERRORS_SHOWN`], or all of them.
fn print_errors(errors: &[block::ChunkError], all: bool) {
    let shown = if all { errors.len() } else { ERRORS_SHOWN };
    for e in errors.iter().take(shown) {
        eprintln!(
            "pvc-backup: {} error at byte {} (+{}): {}",
            e.phase, e.offset, e.len, e.reason
        );
    }
    if errors.len() > shown {
        eprintln!(
            "pvc-backup: {} more errors (all are in the JSON summary of --progress json)",
            errors.len() - shown
        );
    }
}

/// Reports an error that stopped `mover block` and returns its exit code.
pub fn fatal(e: &block::Error, json: bool) -> ExitCode {
    stopped("pvc-backup: error", e, json)
}

/// Reports an error that stopped a block command of `mover CMD` (`backup`, `restore`, ...) and
/// returns its exit code.
pub fn fatal_in(cmd: &str, e: &block::Error, json: bool) -> ExitCode {
    stopped(&format!("pvc-backup mover {cmd}"), e, json)
}

/// The error as JSON on stdout (with `json`) and after `prefix` on stderr.
fn stopped(prefix: &str, e: &block::Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if json {
        let v = serde_json::json!({ "error": e.to_string(), "exit_code": code.code() });
        println!("{v}");
    }
    eprintln!("{prefix}: {e}");
    ExitCode::from(code)
}
