//! Running a tree copy (`sync`, `backup`, `restore`): options from the flags, progress while it
//! works, then the summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contract::{ExitCode as Exit, Summary};
use mover::Stats;

use super::{CopyArgs, ProgressMode, init_logging};

/// Runs a copy (`sync` or `backup`): progress while it works, then the summary. `run` may give
/// a JSON document to print instead of the summary and a line to add to the human summary.
pub(super) fn copy_command<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<ExitCode> {
    copy_code(cmd, c, prepare, stats_of, run).map(ExitCode::from)
}

/// [`copy_command`], returning the exit code as a number.
pub(super) fn copy_code<J>(
    cmd: &str,
    c: &CopyArgs,
    prepare: impl FnOnce(mover::Options) -> mover::Result<J>,
    stats_of: impl Fn(&J) -> Arc<Stats>,
    run: impl FnOnce(J) -> mover::Result<(Summary, Option<(serde_json::Value, String)>)>,
) -> anyhow::Result<u8> {
    init_logging(c.verbose, c.quiet);
    if c.excludes.delete_excluded && c.no_delete {
        eprintln!(
            "pvc-backup mover {cmd}: --delete-excluded deletes what --no-delete keeps; give one \
             of them"
        );
        return Ok(Exit::Usage.code());
    }
    let excludes = match c.excludes.excludes() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    let mode = match c.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() && !c.quiet => ProgressMode::Bar,
        ProgressMode::Auto => ProgressMode::None,
        m => m,
    };
    let opts = mover::Options {
        subdir: c.subdir.clone(),
        checksum: c.checksum,
        allow_empty: c.allow_empty,
        threads: c.threads,
        count_ahead: matches!(mode, ProgressMode::Bar | ProgressMode::Json),
        impersonate: c.impersonate.into(),
        no_delete: c.no_delete,
        manifest: c.manifest,
        fsync: c.fsync,
        excludes,
        no_space_check: c.no_space_check,
    };
    let job = match prepare(opts) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    let stats = stats_of(&job);
    let done = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(c.progress_interval.max(0.05));
    // Without progress output there is nothing to wake up for.
    let reporter = (mode != ProgressMode::None).then(|| {
        let (stats, done) = (stats.clone(), done.clone());
        std::thread::spawn(move || report(mode, &stats, &done, interval))
    });
    let result = run(job);
    done.store(true, Ordering::Relaxed);
    if let Some(r) = reporter {
        let _ = r.join();
    }
    let (summary, extra) = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pvc-backup mover {cmd}: {e}");
            return Ok(e.exit_code());
        }
    };
    if mode == ProgressMode::Json {
        let mut out = std::io::stdout().lock();
        let last = stats.event("done", Duration::from_millis(summary.duration_ms), 0);
        writeln!(out, "{}", serde_json::to_string(&last)?)?;
        match &extra {
            Some((json, _)) => writeln!(out, "{}", serde_json::to_string(json)?)?,
            None => writeln!(out, "{}", serde_json::to_string(&summary)?)?,
        }
    }
    if !c.quiet || summary.exit_code != 0 {
        let mut text = human_summary(cmd, &summary);
        if let Some((_, line)) = extra {
            text = format!("pvc-backup mover {cmd}: {line}\n{text}");
        }
        eprintln!("{text}");
    }
    Ok(summary.exit_code)
}

fn human_summary(cmd: &str, s: &Summary) -> String {
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
            "\n{} entries FAILED; the summary in the target's .pvc-backup/last-sync.json lists each:",
            e.failed
        ));
        for err in s.errors.iter().take(20) {
            line.push_str(&format!("\n  {}: {}: {}", err.path, err.op, err.error));
        }
    }
    line
}

/// What a backup run removed besides making its snapshot (empty when nothing), for the line that
/// reports the snapshot: file and block backups say it alike.
pub(super) fn removed_note(removed: &[String], cleaned: &[String]) -> String {
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

pub(super) use mover::space::human_bytes;

fn report(mode: ProgressMode, stats: &Stats, done: &AtomicBool, interval: Duration) {
    let t0 = Instant::now();
    match mode {
        ProgressMode::Json => {
            let mut last = (Instant::now(), 0u64);
            while !sleep_until_done(done, interval) {
                let now = Instant::now();
                let bytes = stats.bytes_done.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = ((bytes.saturating_sub(last.1)) as f64 / secs) as u64;
                last = (now, bytes);
                let ev = stats.event("sync", t0.elapsed(), rate);
                if let Ok(line) = serde_json::to_string(&ev) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
        }
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} \
                     {binary_bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            while !sleep_until_done(done, Duration::from_millis(200)) {
                let ev = stats.event("sync", t0.elapsed(), 0);
                bar.set_length(ev.bytes_known);
                bar.set_position(ev.bytes_done);
                let eta = if ev.scan_complete {
                    format!(" ETA {}", indicatif::HumanDuration(bar.eta()))
                } else {
                    " (counting)".to_string()
                };
                bar.set_message(format!(
                    "{}/{} entries{}{}",
                    ev.entries_done,
                    ev.entries_known,
                    if ev.errors > 0 {
                        format!(", {} errors", ev.errors)
                    } else {
                        String::new()
                    },
                    eta
                ));
            }
            bar.finish_and_clear();
        }
        ProgressMode::Auto | ProgressMode::None => {}
    }
}

/// Sleeps up to `d`, waking early when the run is done; returns whether it is.
fn sleep_until_done(done: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if done.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
    done.load(Ordering::Relaxed)
}
