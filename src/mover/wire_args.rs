//! The flags `mover send` and `mover receive` share, and how their result is shown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use contract::{ExitCode as Exit, Progress, Summary};
use wire::frame::Conn;
use wire::keys::Side;
use wire::net::{self, Listener};
use wire::tls::Timeouts;

use super::ImpersonateArg;
use crate::output::{self, Output};

/// How to reach the other side, and with which keys.
#[derive(Debug, clap::Args)]
pub struct WireArgs {
    /// The folder holding this side's key and certificate and the other side's certificate
    /// (made by `pvc-backup mover keys`).
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
    /// Seconds a peer has to complete the TLS handshake before it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds the other side may stay silent once connected before the transfer is given up
    /// (a busy side sends a keepalive every quarter of this; give both sides the same).
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub idle_timeout: f64,
    /// When to act as each entry's owner (root_squash NFS, no CAP_DAC_OVERRIDE).
    #[arg(long, value_enum, default_value_t = ImpersonateArg::Auto)]
    pub impersonate: ImpersonateArg,
    /// Print the summary as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Log each entry as it is handled (-vv for more).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

impl WireArgs {
    /// The handshake deadline and the longest silence.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs_f64(self.handshake_timeout.clamp(0.1, 3600.0)),
            idle: Duration::from_secs_f64(self.idle_timeout.clamp(0.2, 86400.0)),
        }
    }

    /// How the result is shown.
    pub fn output(&self) -> Output {
        Output {
            json: self.json,
            bar: false,
            quiet: self.quiet,
            verbose: self.verbose > 0,
        }
    }
}

/// Where the connection comes from: this side listens or connects.
pub enum Peer {
    /// Listening; connections are taken one after another.
    Listen(Listener),
    /// Connecting to `HOST:PORT`.
    Connect(String),
}

impl Peer {
    /// Sets up TLS for `side` from `--keys` and listens on `listen` or prepares to connect to
    /// `to`. A listening side says where on stderr (`listening on ADDR:PORT`).
    pub fn open(
        cmd: &str,
        side: Side,
        w: &WireArgs,
        listen: Option<&str>,
        to: Option<&str>,
    ) -> Result<(Peer, wire::keys::Identity), Exit> {
        let id =
            wire::keys::load(&w.keys, side).map_err(|e| output::failed(cmd, &e, e.exit_code()))?;
        match (listen, to) {
            (Some(addr), None) => {
                let config = wire::tls::server_config(&id)
                    .map_err(|e| output::failed(cmd, &e, e.exit_code()))?;
                let l = Listener::bind(addr, config, w.timeouts())
                    .map_err(|e| output::failed(cmd, &e, e.exit_code()))?;
                eprintln!("pvc-backup mover {cmd}: listening on {}", l.local_addr());
                Ok((Peer::Listen(l), id))
            }
            (None, Some(addr)) => Ok((Peer::Connect(addr.to_string()), id)),
            _ => Err(output::failed(
                cmd,
                "give exactly one of --listen ADDR:PORT and the address of the other side",
                Exit::Usage,
            )),
        }
    }

    /// The next authenticated connection, and the peer's address.
    pub fn next(&self, id: &wire::keys::Identity, w: &WireArgs) -> wire::Result<(Conn, String)> {
        let (stream, addr) = match self {
            Peer::Listen(l) => l.next()?,
            Peer::Connect(addr) => net::connect(addr, wire::tls::client_config(id)?, w.timeouts())?,
        };
        Ok((Conn::new(stream, w.timeouts().idle), addr.to_string()))
    }
}

/// Prints the end of a transfer like the end of a sync, and gives its exit code.
pub fn finish(
    cmd: &str,
    out: Output,
    summary: &Summary,
    extra: Option<(serde_json::Value, String)>,
) -> anyhow::Result<Exit> {
    let done = Progress {
        phase: "done".into(),
        entries_done: summary.entries.total,
        entries_known: summary.entries.total,
        bytes_done: summary.bytes.total,
        bytes_known: summary.bytes.total,
        bytes_copied: summary.bytes.copied,
        errors: summary.entries.failed,
        scan_complete: true,
        rate_bytes_per_sec: 0,
        elapsed_ms: summary.duration_ms,
    };
    output::summary::tree_copy(cmd, out, &done, summary, extra)?;
    Ok(Exit::try_from(summary.exit_code).unwrap_or(Exit::Fatal))
}

/// The exit code of a transfer that ended with an error (printed).
pub fn failed(cmd: &str, e: &wire::Error) -> ExitCode {
    output::failed(cmd, e, e.exit_code()).into()
}
