//! `pvc-backup mover block`: copy a raw block volume or image file, here or (with `--to`,
//! `--listen` or `--from`) to or from another `mover block` over the wire (`block_wire.rs`).
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
#[command(group(clap::ArgGroup::new("peer").args(["to", "listen", "from"])))]
pub struct BlockArgs {
    /// Source: a block device or a raw image file. With --from, or --listen without --send,
    /// this side receives and this is the destination.
    pub src: PathBuf,
    /// Destination: a block device at least as large as SRC, or an image file (created sparse when
    /// missing, resized to SRC's size). Not given when the other side is over the network.
    pub dst: Option<PathBuf>,
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
    /// Bytes per chunk, a multiple of 4K (e.g. 1M, 4M, 16M) [default: 4M]. Over the network,
    /// the sender's.
    #[arg(long, value_parser = parse_chunk_size)]
    pub chunk_size: Option<u64>,
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
    /// Send SRC to the `mover block DST --listen` at HOST:PORT.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "keys",
        help_heading = "Over the network"
    )]
    pub to: Option<String>,
    /// Listen at ADDR:PORT for the other side: a sender (`--to`) to receive into DST from, or,
    /// with --send, a receiver (`--from`) to send SRC to.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        requires = "keys",
        help_heading = "Over the network"
    )]
    pub listen: Option<String>,
    /// Receive into DST from the `mover block SRC --listen --send` at HOST:PORT.
    #[arg(
        long,
        value_name = "HOST:PORT",
        requires = "keys",
        help_heading = "Over the network"
    )]
    pub from: Option<String>,
    /// With --listen: this side sends SRC (to a receiver that connects with --from).
    #[arg(long, requires = "listen", help_heading = "Over the network")]
    pub send: bool,
    /// With --listen --send: start the TLS handshake on the connection accepted, for a
    /// receiver that listens too, both joined by a relay.
    #[arg(long, requires = "send", help_heading = "Over the network")]
    pub tls_client: bool,
    /// Compress chunk data with zstd on the wire (sender; data that does not shrink is sent as
    /// it is).
    #[arg(long, help_heading = "Over the network")]
    pub compress: bool,
    #[command(flatten, next_help_heading = "Over the network")]
    pub conn: super::wire_args::ConnArgs,
}

impl BlockArgs {
    /// The copy settings these arguments give.
    pub fn options(&self) -> block::Options {
        block::Options {
            chunk_size: self.chunk_size.unwrap_or(block::DEFAULT_CHUNK_SIZE),
            threads: self
                .threads
                .map_or_else(block::default_threads, usize::from),
            verify: self.verify,
            verify_only: self.verify_only,
            manifest: !self.no_manifest,
            no_compare: self.no_compare,
        }
    }

    /// How progress and the summary are shown.
    pub fn output(&self) -> Output {
        Output::new(self.progress.into(), self.quiet, self.verbose > 0)
    }
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
    if args.to.is_some() || args.listen.is_some() || args.from.is_some() {
        return super::block_wire::run(args);
    }
    if args.compress {
        let e = "--compress is for a copy over the network (--to, --listen or --from)";
        return Ok(crate::output::failed("block", e, contract::ExitCode::Usage).into());
    }
    let Some(dst) = args.dst.clone() else {
        let e = "give SRC and DST, or one of them with --to, --listen or --from";
        return Ok(crate::output::failed("block", e, contract::ExitCode::Usage).into());
    };
    let options = args.options();
    let out = args.output();
    let job = match block::Job::open(&args.src, &dst, &options) {
        Ok(job) => job,
        Err(e) => return Ok(output::summary::fatal(&e, out.json)),
    };
    if args.verbose > 0 {
        output::summary::block_start(&args.src, &dst, &job, options.threads);
    }
    let result = Display::new(out).around(|progress| job.run(progress));
    let summary = match result {
        Ok(s) => s,
        Err(e) => return Ok(output::summary::fatal(&e, out.json)),
    };
    output::summary::block_copy(out, &summary)?;
    Ok(ExitCode::from(summary.exit_code))
}
