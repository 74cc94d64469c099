//! `pvc-backup mover receive DST`: make DST a mirror of what a `mover send` on another machine
//! sends, over mutual TLS; with `--snapshot`, add a snapshot of it to the backup folder DST.

use std::path::PathBuf;
use std::process::ExitCode;

use contract::ExitCode as Exit;
use wire::keys::Side;
use wire::receive::ReceiveOptions;

use super::backup::KeepArgs;
use super::init_logging;
use super::wire_args::{Peer, WireArgs, failed, finish, retry};

/// Arguments of `pvc-backup mover receive`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("peer").required(true).args(["from", "listen"])))]
pub struct ReceiveArgs {
    /// The target folder (in the mover pod: /backup); created if missing.
    dst: PathBuf,
    /// Listen at ADDR:PORT for the sender to connect (`mover send --to`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Connect to the sender listening at HOST:PORT (`mover send --listen`).
    #[arg(long, value_name = "HOST:PORT")]
    from: Option<String>,
    /// With --listen, serve transfers one after another instead of exiting after the first.
    #[arg(long, requires = "listen")]
    keep_listening: bool,
    /// Also compare the content of files whose size and mtime are equal (the sender reads and
    /// hashes every file).
    #[arg(long, short = 'c')]
    checksum: bool,
    /// Keep entries of the target that the source lacks, instead of removing them.
    #[arg(long)]
    no_delete: bool,
    /// Flush the target's filesystem to the disk before reporting success (to the sender too).
    #[arg(long)]
    fsync: bool,
    /// Add a snapshot of the source to the backup folder DST, as `mover backup` does on one
    /// machine (snapshots/ID, latest; files unchanged since the previous snapshot are
    /// hard-linked from it and not sent), instead of making DST a mirror. A transfer that
    /// breaks leaves its partial snapshot, which the next one fills further.
    #[arg(long, conflicts_with = "no_delete")]
    snapshot: bool,
    #[command(flatten)]
    keep: KeepArgs,
    #[command(flatten)]
    wire: WireArgs,
}

/// Receives one transfer (or, with --keep-listening, one after another) and exits with the
/// result of the last one.
pub(super) fn run(a: ReceiveArgs) -> anyhow::Result<ExitCode> {
    init_logging(a.wire.verbose, a.wire.quiet);
    let policy = a.keep.policy();
    if policy.is_set() && !a.snapshot {
        return Ok(crate::output::failed(
            "receive",
            "--keep-* applies to snapshots: add --snapshot to keep versions in DST, or leave \
             --keep-* out to mirror the source",
            Exit::Usage.into(),
        ));
    }
    let (peer, id) = match Peer::open(
        "receive",
        Side::Receiver,
        &a.wire.conn,
        a.listen.as_deref(),
        a.from.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code.into()),
    };
    let opts = ReceiveOptions {
        checksum: a.checksum,
        no_delete: a.no_delete,
        impersonate: a.wire.impersonate.into(),
        fsync: a.fsync,
    };
    let mut again = false;
    loop {
        let code = match peer.next(&id, &a.wire.conn, again) {
            Ok((mut conn, from)) => {
                let received = if a.snapshot {
                    wire::receive::receive_snapshot(&mut conn, &a.dst, opts.clone(), policy, &from)
                        .map(|r| {
                            let line = crate::output::summary::snapshot_made(&r);
                            let json = serde_json::to_value(&r).unwrap_or_default();
                            (r.summary, Some((json, line)))
                        })
                } else {
                    wire::receive::receive(&mut conn, &a.dst, opts.clone(), &from)
                        .map(|s| (s, None))
                };
                match received {
                    Ok((summary, extra)) => {
                        again = false;
                        finish("receive", a.wire.output(), &summary, extra)?
                    }
                    Err(e) if retry("receive", &a.wire.conn, &e) => {
                        again = true;
                        continue;
                    }
                    Err(e) => {
                        let _ = failed("receive", &e);
                        e.exit_code()
                    }
                }
            }
            Err(e) => {
                again = false;
                let _ = failed("receive", &e);
                e.exit_code()
            }
        };
        if !a.keep_listening {
            return Ok(code.into());
        }
        if code != Exit::Ok {
            eprintln!(
                "pvc-backup mover receive: that transfer ended with exit code {}; listening for the next",
                code.code()
            );
        }
    }
}
