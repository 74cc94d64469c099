//! `pvc-backup manifests`: install YAML for kubectl, GitOps and OpenShift.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use admission::Policy;
use admission::manifests::{self, NamespaceScope, WebhookInstall, WebhookTls};
use admission::policy::{DEFAULT_ENTRYPOINT, DEFAULT_SERVICE_ACCOUNT};
use anyhow::Context as _;

/// The image of this release, which runs the mover and the webhook.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/pvc-backup/pvc-backup:", env!("CARGO_PKG_VERSION"));

/// Where the webhook's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsSource {
    /// cert-manager issues it and injects the CA (Issuer and Certificate included).
    CertManager,
    /// OpenShift's service CA issues it and injects the CA.
    Openshift,
}

/// Arguments of `pvc-backup manifests`.
#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {
    /// Print the admission webhook: Deployment (2 replicas), PodDisruptionBudget, Service and
    /// ValidatingWebhookConfiguration.
    #[arg(long)]
    webhook: bool,
    /// Print the ValidatingAdmissionPolicy and its binding: the same guard with no server
    /// (Kubernetes 1.30 and later).
    #[arg(long)]
    admission_policy: bool,
    /// Guard every namespace except the system ones (and the webhook's own), instead of the
    /// namespaces labelled denysabck=enabled.
    #[arg(long)]
    all_namespaces: bool,
    /// The namespace the webhook runs in.
    #[arg(long, value_name = "NAMESPACE", default_value = "pvc-backup")]
    namespace: String,
    /// The pvc-backup image (runs the mover and the webhook).
    #[arg(long, value_name = "IMAGE", env = "PVC_BACKUP_IMAGE", default_value = DEFAULT_IMAGE)]
    image: String,
    /// An image the guarded service account may run (default: --image). Repeatable; forms as
    /// for `pvc-backup webhook --allowed-image`.
    #[arg(long = "allowed-image", value_name = "REF")]
    allowed_images: Vec<String>,
    /// The service account only the mover may use.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SERVICE_ACCOUNT)]
    service_account: String,
    /// The mover image's entrypoint, the only command a guarded container may set. Repeatable.
    #[arg(long = "mover-entrypoint", value_name = "PATH", default_value = DEFAULT_ENTRYPOINT)]
    mover_entrypoints: Vec<String>,
    /// Where the webhook's certificate comes from.
    #[arg(long, value_enum, default_value_t = TlsSource::CertManager, conflicts_with = "ca_bundle")]
    webhook_tls: TlsSource,
    /// Use a certificate made by hand (secret pvc-backup-webhook-tls) signed by this PEM CA.
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    /// Seconds the API server waits for the webhook before failing the request.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    webhook_timeout: i32,
}

/// Prints the requested manifests as YAML on stdout.
pub fn run(args: ManifestsArgs) -> anyhow::Result<ExitCode> {
    if !args.webhook && !args.admission_policy {
        anyhow::bail!("say what to print: --webhook, --admission-policy, or both");
    }
    let allowed = if args.allowed_images.is_empty() {
        vec![args.image.clone()]
    } else {
        args.allowed_images.clone()
    };
    let policy = Policy::from_strings(&args.service_account, &allowed)
        .and_then(|p| p.with_entrypoints(args.mover_entrypoints.clone()))
        .context("invalid policy settings")?;
    let scope = if args.all_namespaces {
        NamespaceScope::AllButSystem
    } else {
        NamespaceScope::Labelled
    };
    let mut objects = Vec::new();
    if args.webhook {
        let tls = match (&args.ca_bundle, args.webhook_tls) {
            (Some(path), _) => WebhookTls::CaBundle(
                std::fs::read(path)
                    .with_context(|| format!("cannot read the CA bundle {}", path.display()))?,
            ),
            (None, TlsSource::CertManager) => WebhookTls::CertManager,
            (None, TlsSource::Openshift) => WebhookTls::OpenShift,
        };
        objects.extend(manifests::webhook_objects(&WebhookInstall {
            namespace: args.namespace.clone(),
            image: args.image.clone(),
            policy: policy.clone(),
            scope: scope.clone(),
            tls,
            timeout_seconds: args.webhook_timeout,
        }));
    }
    if args.admission_policy {
        objects.extend(manifests::admission_policy_objects(&policy, &scope));
    }
    let yaml = manifests::to_yaml(&objects)?;
    std::io::stdout()
        .lock()
        .write_all(yaml.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
