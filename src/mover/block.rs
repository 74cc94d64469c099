//! `pvc-backup mover block`: copy a raw block volume or image file.
//!
//! Thin: parse, call `block::run`, print progress and the summary, map the result to the mover's
//! exit codes (0 equal, 1 fatal, 2 usage, 23 partial, 254 missing or empty source).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use contract::progress::block::{Phase, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A progress bar on stderr when it is a terminal, nothing otherwise.
    Auto,
    /// One JSON object per line on stdout, then a JSON summary.
    Json,
    /// Nothing but the final summary line on stderr.
    None,
}

/// Arguments of `pvc-backup mover block`.
#[derive(Debug, clap::Args)]
pub struct BlockArgs {
    /// Source: a block device or a raw image file.
    pub src: PathBuf,
    /// Destination: a block device at least as large as SRC, or an image file (created sparse when
    /// missing, resized to SRC's size).
    pub dst: PathBuf,
    /// After copying, read both sides again and compare the BLAKE3 hash of every chunk; a mismatch
    /// exits 23.
    #[arg(long)]
    pub verify: bool,
    /// Write nothing: only compare SRC and DST chunk by chunk with BLAKE3 (exit 0 when equal, 23
    /// when not).
    #[arg(long, conflicts_with = "verify")]
    pub verify_only: bool,
    /// Do not read DST to compare: write every data chunk and zero every zero chunk with the
    /// device's zeroing command. The fastest first copy onto a new device; not incremental.
    #[arg(long, conflicts_with = "verify_only")]
    pub no_compare: bool,
    /// Bytes per chunk, a multiple of 4K (e.g. 1M, 4M, 16M).
    #[arg(long, default_value = "4M", value_parser = parse_chunk_size)]
    pub chunk_size: u64,
    /// Workers reading and writing at once [default: four times the usable CPUs, 4 to 16].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Do not write the manifest of chunk hashes (DST.pvcb-manifest.json) next to an image DST.
    #[arg(long)]
    pub no_manifest: bool,
    /// Print no progress bar and no per-chunk error lines (the summary line stays).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print the I/O mode before starting and every chunk error.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Parses a chunk size argument (a size, multiple of 4K, 4K to 1G).
pub fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let n = block::parse_size(text)?;
    let opts = block::Options {
        chunk_size: n,
        ..block::Options::default()
    };
    opts.validate().map_err(|e| e.to_string())?;
    Ok(n)
}

/// Error lines printed without `-v`; the JSON summary always has them all.
const ERRORS_SHOWN: usize = 20;

/// Copies SRC to DST block by block and returns the mover's exit code.
pub fn run(args: BlockArgs) -> anyhow::Result<ExitCode> {
    let options = block::Options {
        chunk_size: args.chunk_size,
        threads: args
            .threads
            .map_or_else(block::default_threads, usize::from),
        verify: args.verify,
        verify_only: args.verify_only,
        manifest: !args.no_manifest,
        no_compare: args.no_compare,
    };
    let json = args.progress == ProgressMode::Json;
    let job = match block::Job::open(&args.src, &args.dst, &options) {
        Ok(job) => job,
        Err(e) => return Ok(fatal(&e, json)),
    };
    if args.verbose > 0 {
        let (src_direct, dst_direct) = job.is_direct();
        eprintln!(
            "pvc-backup: {} ({}, {}) -> {} ({}, {}): {} bytes in {} chunks, {} workers",
            args.src.display(),
            job.source_kind().name(),
            io_mode(src_direct),
            args.dst.display(),
            job.destination_kind().name(),
            io_mode(dst_direct),
            job.size(),
            job.chunks(),
            options.threads,
        );
    }
    let mut display = Display::new(
        json,
        args.progress == ProgressMode::Auto && !args.quiet && std::io::stderr().is_terminal(),
    );
    let result = job.run(&mut |p| display.show(p));
    display.finish();
    let summary = match result {
        Ok(s) => s,
        Err(e) => return Ok(fatal(&e, json)),
    };
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    if !args.quiet {
        print_errors(&summary.errors, args.verbose > 0);
    }
    eprintln!("pvc-backup: {}", summary.human_line());
    Ok(ExitCode::from(summary.exit_code))
}

/// Prints chunk errors on stderr: the first [`ERRORS_SHOWN`], or all of them.
pub(super) fn print_errors(errors: &[block::ChunkError], all: bool) {
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

/// Shows block progress reports: JSON lines on stdout, or a bar on stderr, or nothing.
pub struct Display {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Display {
    /// A display printing JSON lines (`json`) or a progress bar (`bar`).
    pub fn new(json: bool, bar: bool) -> Self {
        Display {
            json,
            bar: (bar && !json).then(|| new_bar(0)),
        }
    }

    /// Shows one report.
    pub fn show(&mut self, p: &Progress) {
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

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn io_mode(direct: bool) -> &'static str {
    if direct {
        "O_DIRECT"
    } else {
        "page cache + DONTNEED"
    }
}

fn new_bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    let style = ProgressStyle::with_template(
        "{prefix:>6} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Reports an error that stopped the copy and returns its exit code.
fn fatal(e: &block::Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if json {
        let v = serde_json::json!({ "error": e.to_string(), "exit_code": code });
        println!("{v}");
    }
    eprintln!("pvc-backup: error: {e}");
    ExitCode::from(code)
}

/// How a block command run from `mover backup`, `restore` or `verify` shows itself.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON progress lines and a JSON result on stdout.
    pub json: bool,
    /// A progress bar on stderr.
    pub bar: bool,
    /// Only errors and the final line.
    pub quiet: bool,
    /// Every chunk error.
    pub verbose: bool,
}

/// Reports an error of a versioned command (`backup`, `restore`, ...) and returns its exit code.
pub(super) fn fatal_in(cmd: &str, e: &block::Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if json {
        let v = serde_json::json!({ "error": e.to_string(), "exit_code": code });
        println!("{v}");
    }
    eprintln!("pvc-backup mover {cmd}: {e}");
    ExitCode::from(code)
}
