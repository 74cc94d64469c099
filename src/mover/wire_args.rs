//! The flags `mover send` and `mover receive` share, and how their result is shown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use contract::{ExitCode as Exit, Progress, Summary};
use wire::frame::Conn;
use wire::keys::Side;
use wire::net::{self, Listener};
use wire::tls::Timeouts;

use super::ImpersonateArg;
use crate::output::{self, Output};

/// How to reach the other side, and with which keys: what every command on the wire shares.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// The folder holding this side's key and certificate and the other side's certificate
    /// (made by `pvc-backup mover keys`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Seconds a peer has to complete the TLS handshake before it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub handshake_timeout: f64,
    /// Seconds the other side may stay silent once connected before the transfer is given up
    /// (a busy side sends a keepalive every quarter of this; give both sides the same).
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub idle_timeout: f64,
    /// When the connection drops, connect again (or, listening, wait for the peer again) for
    /// this long, then go on with the transfer: `90s`, `5m`, `1h`; 0 (the default) gives up
    /// at once. Give both sides a value.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub retry_for: Duration,
    /// The name to ask for in the TLS hello (SNI) when this side connects: the host of an
    /// OpenShift Route with TLS passthrough, whose router picks the backend by it. Not checked
    /// against the certificate, which is pinned.
    #[arg(long, value_name = "NAME", default_value = wire::tls::SERVER_NAME)]
    pub server_name: String,
}

impl ConnArgs {
    /// The handshake deadline and the longest silence.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs_f64(self.handshake_timeout.clamp(0.1, 3600.0)),
            idle: Duration::from_secs_f64(self.idle_timeout.clamp(0.2, 86400.0)),
        }
    }
}

/// What `mover send` and `mover receive` share: the connection (with `--keys` required), and
/// how entries are read or written and the result shown.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("keys-dir").required(true).args(["keys"])))]
pub struct WireArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
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
    /// `to`. A listening side says where on stderr (`listening on ADDR:PORT`); with
    /// `tls_client` it starts the TLS handshake on each connection it accepts, as a connecting
    /// side does.
    pub fn open(
        cmd: &str,
        side: Side,
        w: &ConnArgs,
        listen: Option<&str>,
        to: Option<&str>,
        tls_client: bool,
    ) -> Result<(Peer, wire::keys::Identity), Exit> {
        wire::tls::check_server_name(&w.server_name)
            .map_err(|e| output::failed(cmd, &e, e.exit_code()))?;
        let keys = w.keys.as_deref().ok_or_else(|| {
            output::failed(
                cmd,
                "give --keys DIR (made by `pvc-backup mover keys`)",
                Exit::Usage,
            )
        })?;
        let id =
            wire::keys::load(keys, side).map_err(|e| output::failed(cmd, &e, e.exit_code()))?;
        match (listen, to) {
            (Some(addr), None) => {
                let fail = |e: wire::Error| output::failed(cmd, &e, e.exit_code());
                let handshake = if tls_client {
                    net::Handshake::Client(wire::tls::client_config(&id).map_err(fail)?)
                } else {
                    net::Handshake::Server(wire::tls::server_config(&id).map_err(fail)?)
                };
                let l = Listener::bind(addr, handshake, w.timeouts())
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

    /// The next authenticated connection, and the peer's address. After a connection
    /// dropped (`again`), a listening side waits for the peer and a connecting side tries
    /// again (with growing pauses) for `--retry-for`; a first connection is tried that long too.
    pub fn next(
        &self,
        id: &wire::keys::Identity,
        w: &ConnArgs,
        again: bool,
    ) -> wire::Result<(Conn, String)> {
        let deadline = Instant::now() + w.retry_for;
        let (stream, addr) = match self {
            Peer::Listen(l) => l.next_until(again.then_some(deadline))?,
            Peer::Connect(addr) => net::connect_until(
                addr,
                wire::tls::client_config(id)?,
                w.timeouts(),
                &w.server_name,
                deadline,
            )?,
        };
        Ok((Conn::new(stream, w.timeouts().idle), addr.to_string()))
    }
}

/// Whether a transfer that ended with `e` is tried again: a connection that broke (not a
/// refusal, a bad certificate or a protocol violation), with `--retry-for` given.
pub fn retry(cmd: &str, w: &ConnArgs, e: &wire::Error) -> bool {
    let again = !w.retry_for.is_zero() && matches!(e, wire::Error::Net { .. });
    if again {
        eprintln!(
            "pvc-backup mover {cmd}: {e}; trying again for {} s",
            w.retry_for.as_secs()
        );
    }
    again
}

/// A duration: a number of seconds, or a number with `s`, `m` or `h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (give 90s, 5m or 1h)"))?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    n.checked_mul(per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
