//! `pvc-backup webhook`: the validating admission webhook server.

use std::process::ExitCode;

/// Arguments of `pvc-backup webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {}

/// Runs the webhook server until SIGTERM.
pub fn run(_args: WebhookArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the webhook is not built yet")
}
