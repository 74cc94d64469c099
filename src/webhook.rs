//! `pvc-backup webhook`: the validating admission webhook server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use admission::policy::{DEFAULT_ENTRYPOINT, DEFAULT_SERVICE_ACCOUNT};
use admission::server::DEFAULT_BODY_LIMIT;
use admission::{Policy, ServerOptions};
use anyhow::Context as _;

/// Arguments of `pvc-backup webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address and port to listen on (HTTPS).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// PEM certificate chain; reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// PEM private key; reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// An image the guarded service account may run: REPOSITORY[:TAG], REPOSITORY[:TAG]@DIGEST,
    /// REPOSITORY:* (any tag) or PREFIX/* (any repository below PREFIX). Repeatable.
    #[arg(long = "allowed-image", value_name = "REF", required = true)]
    allowed_images: Vec<String>,
    /// The service account only the mover may use.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SERVICE_ACCOUNT)]
    service_account: String,
    /// The mover image's entrypoint, the only command a guarded container may set. Repeatable.
    #[arg(long = "mover-entrypoint", value_name = "PATH", default_value = DEFAULT_ENTRYPOINT)]
    mover_entrypoints: Vec<String>,
    /// Largest request body accepted, in bytes (larger: HTTP 413).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_BODY_LIMIT)]
    max_body_bytes: usize,
    /// Seconds between checks of the certificate files for a new certificate.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_interval: u64,
    /// Seconds a client has for the TLS handshake, the request headers and the body.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Seconds given to requests in flight after SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    shutdown_grace: u64,
}

/// Runs the webhook server until SIGTERM.
pub fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    crate::logging::server();
    let policy = Policy::from_strings(&args.service_account, &args.allowed_images)
        .and_then(|p| p.with_entrypoints(args.mover_entrypoints.clone()))
        .context("invalid policy settings")?;
    let mut options = ServerOptions::new(args.listen, args.tls_cert, args.tls_key);
    options.body_limit = args.max_body_bytes;
    options.reload_interval = Duration::from_secs(args.tls_reload_interval);
    options.request_timeout = Duration::from_secs(args.request_timeout);
    options.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    admission::server::run(policy, options)?;
    Ok(ExitCode::SUCCESS)
}
