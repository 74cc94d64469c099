//! `pvc-backup mover ...`: the copy engine's commands.

use std::process::ExitCode;

use clap::Subcommand;

use crate::block_cmd;

/// Arguments of `pvc-backup mover`.
#[derive(Debug, clap::Args)]
pub struct MoverArgs {
    #[command(subcommand)]
    command: MoverCommand,
}

#[derive(Debug, Subcommand)]
enum MoverCommand {
    /// Copy a raw block device or image file to another, writing only what differs.
    Block(block_cmd::BlockArgs),
}

/// Runs a mover subcommand and returns its exit code.
pub fn run(args: MoverArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MoverCommand::Block(a) => block_cmd::run(a),
    }
}
