//! `pvc-backup mover block`: copy a raw block volume or image file.

use std::process::ExitCode;

/// Arguments of `pvc-backup mover block`.
#[derive(Debug, clap::Args)]
pub struct BlockArgs {}

/// Copies SRC to DST block by block and returns the mover's exit code.
pub fn run(_args: BlockArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("block copies are not built yet")
}
