//! Progress while a command works: JSON lines on stdout for a caller, a bar on stderr for a
//! person. A tree copy's progress is read from its counters by a thread of its own
//! ([`TreeProgress`]); a block copy reports each step ([`Display`]); a cluster workflow shows its
//! steps and the mover pod's progress ([`Console`]).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cluster::run::Observer;
use contract::Progress;
use contract::progress::block::{self, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use mover::Stats;

use super::Output;

/// Shows a tree copy's progress from its counters until stopped: a JSON line every interval, or
/// a bar.
pub struct TreeProgress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TreeProgress {
    /// Starts showing the progress of the copy that counts in `stats`, as `out` asks (without
    /// progress output there is nothing to wake up for, and no thread).
    pub fn start(out: Output, stats: Arc<Stats>, interval: Duration) -> TreeProgress {
        let done = Arc::new(AtomicBool::new(false));
        let thread = out.shows_progress().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                if out.json {
                    json_lines(&stats, &done, interval);
                } else {
                    tree_bar(&stats, &done);
                }
            })
        });
        TreeProgress { done, thread }
    }

    /// Stops showing progress (the bar is removed) once the copy is done.
    pub fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

fn json_lines(stats: &Stats, done: &AtomicBool, interval: Duration) {
    let t0 = Instant::now();
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

fn tree_bar(stats: &Stats, done: &AtomicBool) {
    let t0 = Instant::now();
    let bar = copy_bar();
    while !sleep_until_done(done, Duration::from_millis(200)) {
        let ev = stats.event("sync", t0.elapsed(), 0);
        bar.set_length(ev.bytes_known);
        bar.set_position(ev.bytes_done);
        let eta = if ev.scan_complete {
            format!(" ETA {}", indicatif::HumanDuration(bar.eta()))
        } else {
            " (counting)".to_string()
        };
        bar.set_message(format!("{}{eta}", entries_message(&ev)));
    }
    bar.finish_and_clear();
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

/// The bar of a tree copy, here or in the mover pod.
fn copy_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} \
             {binary_bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `done/known entries`, and the errors when there are any.
fn entries_message(p: &Progress) -> String {
    format!(
        "{}/{} entries{}",
        p.entries_done,
        p.entries_known,
        if p.errors > 0 {
            format!(", {} errors", p.errors)
        } else {
            String::new()
        }
    )
}

/// Shows block progress reports: JSON lines on stdout, or a bar on stderr, or nothing.
pub struct Display {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Display {
    /// A display as `out` asks: JSON lines, or a progress bar, or nothing.
    pub fn new(out: Output) -> Self {
        Display {
            json: out.json,
            bar: (out.bar && !out.json).then(|| block_bar(0)),
        }
    }

    /// Shows one report.
    pub fn show(&mut self, p: &block::Progress) {
        if self.json {
            // A closed stdout must not stop the copy; the exit code still tells.
            if let Ok(line) = serde_json::to_string(p) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        } else if let Some(bar) = &self.bar {
            let prefix = match p.phase {
                Phase::Copy => "copy",
                Phase::Verify => "verify",
                Phase::Done => "done",
            };
            bar.set_prefix(prefix);
            bar.set_length(p.bytes_known);
            bar.set_position(p.bytes_done);
        }
    }

    /// Runs `work` with this display as its progress, then removes the bar.
    pub fn around<T>(mut self, work: impl FnOnce(&mut dyn FnMut(&block::Progress)) -> T) -> T {
        let result = work(&mut |p| self.show(p));
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        result
    }
}

fn block_bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{prefix:>6} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Shows a workflow's steps on stderr and the mover's progress as a bar (on a terminal).
pub struct Console {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Console {
    /// A console; `quiet` drops the step lines (machine output on stdout keeps stderr quiet too).
    pub fn new(quiet: bool) -> Console {
        Console { bar: None, quiet }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Console {
    fn step(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("pvc-backup: {message}")),
            None => eprintln!("pvc-backup: {message}"),
        }
    }

    fn progress(&mut self, p: &Progress) {
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = self.bar.get_or_insert_with(copy_bar);
        bar.set_length(p.bytes_known);
        bar.set_position(p.bytes_done);
        bar.set_message(entries_message(p));
    }

    fn text(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("mover: {line}")),
            None => eprintln!("mover: {line}"),
        }
    }
}
