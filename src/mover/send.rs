//! `pvc-backup mover send SRC`: mirror SRC into a `mover receive` on another machine, over
//! mutual TLS.

use std::path::PathBuf;
use std::process::ExitCode;

use wire::keys::Side;
use wire::send::SendOptions;

use super::wire_args::{Peer, WireArgs, failed, finish, retry};
use super::{ExcludeArgs, init_logging};

/// Arguments of `pvc-backup mover send`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("peer").required(true).args(["to", "listen"])))]
pub struct SendArgs {
    /// The source folder (in the mover pod: /source).
    src: PathBuf,
    /// Connect to the receiver listening at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    to: Option<String>,
    /// Listen at ADDR:PORT for the receiver to connect (`mover receive --from`), for a source
    /// the receiver can reach but that cannot reach the receiver.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// With --listen: start the TLS handshake on the connection accepted, as if this side had
    /// connected. For a receiver that listens too, both reached by a relay that joins the two
    /// connections (`clone --via local`); the TLS stays end to end between the movers.
    #[arg(long, requires = "listen")]
    tls_client: bool,
    /// Send only this folder of SRC (relative, no `..`, no symlinks), like BCK_FOLDER.
    #[arg(long, value_name = "DIR")]
    subdir: Option<PathBuf>,
    /// Send an empty source (the receiver then deletes everything in its target); refused by
    /// default with exit code 254.
    #[arg(long)]
    allow_empty: bool,
    /// Compress file content with zstd on the wire (worth it on slow links; data that does not
    /// shrink is sent as it is).
    #[arg(long)]
    compress: bool,
    #[command(flatten)]
    excludes: ExcludeArgs,
    #[command(flatten)]
    wire: WireArgs,
}

/// Sends one transfer and exits with the receiver's result.
pub(super) fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    init_logging(a.wire.verbose, a.wire.quiet);
    // Checked before anything listens or connects.
    if a.tls_client && a.listen.is_none() {
        let e = "--tls-client applies to a sender that listens: add --listen ADDR:PORT, or leave \
                 --tls-client out (a sender that connects with --to is the TLS client anyway)";
        return Ok(crate::output::failed("send", e, contract::ExitCode::Usage).into());
    }
    let excludes = match a.excludes.excludes() {
        Ok(e) => e,
        Err(e) => return Ok(crate::output::failed("send", &e, e.exit_code()).into()),
    };
    let (peer, id) = match Peer::open(
        "send",
        Side::Sender,
        &a.wire.conn,
        a.listen.as_deref(),
        a.to.as_deref(),
        a.tls_client,
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code.into()),
    };
    let opts = SendOptions {
        subdir: a.subdir.clone(),
        allow_empty: a.allow_empty,
        impersonate: a.wire.impersonate.into(),
        compress: a.compress,
        excludes,
    };
    // What was sent over every attempt, those cut off included.
    let mut sent = wire::send::Sent::default();
    let mut again = false;
    let summary = loop {
        let (mut conn, _) = match peer.next(&id, &a.wire.conn, again) {
            Ok(c) => c,
            Err(e) => return Ok(failed("send", &e)),
        };
        match wire::send::send_counted(&mut conn, &a.src, &opts, &mut sent) {
            Ok(s) => break s,
            Err(e) if retry("send", &a.wire.conn, &e) => again = true,
            Err(e) => return Ok(failed("send", &e)),
        }
    };
    let json = serde_json::json!({
        "summary": summary,
        "sent": {
            "files": sent.files,
            "bytes": sent.bytes,
            "wire_bytes": sent.wire,
        },
    });
    let line = format!(
        "sent the content of {} files, {} bytes ({} on the wire)",
        sent.files, sent.bytes, sent.wire
    );
    Ok(finish("send", a.wire.output(), &summary, Some((json, line)))?.into())
}
