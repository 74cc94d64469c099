//! `pvc-backup mover block`: copy a raw block volume or image file.
//!
//! Thin: parse, call `block::run`, print progress and the summary, map the result to the mover's
//! exit codes (0 equal, 1 fatal, 2 usage, 23 partial, 254 missing or empty source).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::{self, Output, progress::Display};

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

impl From<ProgressMode> for output::ProgressMode {
    fn from(mode: ProgressMode) -> Self {
        match mode {
            ProgressMode::Auto => output::ProgressMode::Auto,
            ProgressMode::Json => output::ProgressMode::Json,
            ProgressMode::None => output::ProgressMode::None,
        }
    }
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
    let out = Output::new(args.progress.into(), args.quiet, args.verbose > 0);
    let job = match block::Job::open(&args.src, &args.dst, &options) {
        Ok(job) => job,
        Err(e) => return Ok(output::summary::fatal(&e, out.json)),
    };
    if args.verbose > 0 {
        output::summary::block_start(&args.src, &args.dst, &job, options.threads);
    }
    let result = Display::new(out).around(|progress| job.run(progress));
    let summary = match result {
        Ok(s) => s,
        Err(e) => return Ok(output::summary::fatal(&e, out.json)),
    };
    output::summary::block_copy(out, &summary)?;
    Ok(ExitCode::from(summary.exit_code))
}
