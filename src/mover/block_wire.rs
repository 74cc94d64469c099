//! `pvc-backup mover block SRC --to HOST:PORT` and `mover block DST --listen ADDR:PORT` (or
//! `--from`, `--listen --send`): a block copy whose two sides are on different machines, over
//! the same mutual TLS as `mover send` and `mover receive`.
//!
//! Thin: check which options make sense on which side, connect or listen, call
//! `wire::volume::send` or `receive`, and print progress and the summary as the local
//! `mover block` does. Both sides end with the receiver's exit code.

use std::process::ExitCode;

use contract::ExitCode as Exit;
use wire::keys::Side;
use wire::volume::{BlockReceiveOptions, BlockSendOptions, BlockSent};

use super::block::BlockArgs;
use super::wire_args::{Peer, failed, retry};
use crate::output::{self, progress::Display};

/// Runs the side the arguments name and returns the mover's exit code.
pub(super) fn run(a: BlockArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(a.verbose, a.quiet);
    let sending = a.to.is_some() || a.send;
    if let Err(e) = check(&a, sending) {
        return Ok(output::failed("block", e, Exit::Usage).into());
    }
    if sending { send(a) } else { receive(a) }
}

/// Refuses what cannot work over the network, naming the side where it belongs.
fn check(a: &BlockArgs, sending: bool) -> Result<(), String> {
    if a.dst.is_some() {
        return Err(
            "with --to, --listen or --from give one path: SRC on the sending side, DST on the \
             receiving side"
                .into(),
        );
    }
    if a.verify_only {
        return Err(
            "--verify-only compares two local volumes; it does not work over the network".into(),
        );
    }
    let wrong: &[(bool, &str)] = if sending {
        &[(a.no_manifest, "--no-manifest")]
    } else {
        &[
            (a.verify, "--verify"),
            (a.no_compare, "--no-compare"),
            (a.compress, "--compress"),
            (a.chunk_size.is_some(), "--chunk-size"),
        ]
    };
    match wrong.iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(format!(
            "{flag} is for the {} side of a copy over the network: give it there",
            if sending { "receiving" } else { "sending" }
        )),
        None => Ok(()),
    }
}

fn send(a: BlockArgs) -> anyhow::Result<ExitCode> {
    let listen = a.listen.as_deref();
    let (peer, id) = match Peer::open(
        "block",
        Side::Sender,
        &a.conn,
        listen,
        a.to.as_deref(),
        a.tls_client,
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code.into()),
    };
    let opts = BlockSendOptions {
        copy: a.options(),
        compress: a.compress,
    };
    let out = a.output();
    let mut sent = BlockSent::default();
    let mut again = false;
    let result = Display::new(out).around(|progress| {
        loop {
            let (mut conn, _) = peer.next(&id, &a.conn, again)?;
            match wire::volume::send(&mut conn, &a.src, &opts, &mut sent, progress) {
                Err(e) if retry("block", &a.conn, &e) => again = true,
                r => return r,
            }
        }
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => return Ok(fatal(&e, out.json)),
    };
    if out.json {
        let mut v = serde_json::to_value(&summary)?;
        v["sent"] = serde_json::to_value(sent)?;
        output::json_line(&v)?;
    }
    output::summary::block_copy(output::Output { json: false, ..out }, &summary)?;
    eprintln!(
        "pvc-backup: sent {} chunks of data ({} bytes, {} on the wire) and {} zero chunks",
        sent.chunks, sent.bytes, sent.wire_bytes, sent.zero_chunks
    );
    Ok(ExitCode::from(summary.exit_code))
}

fn receive(a: BlockArgs) -> anyhow::Result<ExitCode> {
    let (peer, id) = match Peer::open(
        "block",
        Side::Receiver,
        &a.conn,
        a.listen.as_deref(),
        a.from.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code.into()),
    };
    let opts = BlockReceiveOptions { copy: a.options() };
    let out = a.output();
    let mut again = false;
    let result = Display::new(out).around(|progress| {
        loop {
            let (mut conn, from) = peer.next(&id, &a.conn, again)?;
            match wire::volume::receive(&mut conn, &a.src, &opts, &from, progress) {
                Err(e) if retry("block", &a.conn, &e) => again = true,
                r => return r,
            }
        }
    });
    match result {
        Ok(summary) => {
            output::summary::block_copy(out, &summary)?;
            Ok(ExitCode::from(summary.exit_code))
        }
        Err(e) => Ok(fatal(&e, out.json)),
    }
}

/// Reports a transfer that stopped, as the local `mover block` reports a copy that could not
/// start: `{"error", "exit_code"}` on stdout with `--progress json`, the reason on stderr.
fn fatal(e: &wire::Error, json: bool) -> ExitCode {
    if json {
        let v = serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code().code() });
        println!("{v}");
    }
    failed("block", e)
}
