//! `pvc-backup manifests`: install YAML for kubectl, GitOps and OpenShift.

use std::process::ExitCode;

/// Arguments of `pvc-backup manifests`.
#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {}

/// Prints the requested manifests as YAML on stdout.
pub fn run(_args: ManifestsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("manifests are not built yet")
}
