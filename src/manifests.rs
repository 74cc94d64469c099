//! `pvc-backup manifests`: install YAML for kubectl, GitOps and OpenShift.
//!
//! Always the install objects (the mover's service account and RoleBinding, the ClusterRoles,
//! with `--openshift` the SCC); `--webhook` and `--admission-policy` add the guard, `--crds` the
//! definitions of the pvc-backup.io resources, `--operator` those and the operator.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use admission::Policy;
use admission::manifests::{self, NamespaceScope, WebhookInstall, WebhookTls};
use admission::policy::{DEFAULT_ENTRYPOINT, DEFAULT_SERVICE_ACCOUNT};
use anyhow::Context as _;
use cluster::install::{self, Install};
use cluster::names::DEFAULT_IMAGE;

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
    /// A namespace whose claims are backed up: it gets the mover's service account and its
    /// RoleBinding. Repeatable. Without it they carry no namespace and land in the one
    /// `kubectl apply` uses.
    #[arg(long = "backup-namespace", value_name = "NAMESPACE")]
    backup_namespaces: Vec<String>,
    /// For OpenShift: add the SecurityContextConstraints the mover needs, and take the webhook's
    /// certificate from the service CA unless --webhook-tls or --ca-bundle says otherwise.
    #[arg(long)]
    openshift: bool,
    /// Add the admission webhook: its Namespace, Deployment (2 replicas), PodDisruptionBudget,
    /// Service and ValidatingWebhookConfiguration.
    #[arg(long)]
    webhook: bool,
    /// Add the ValidatingAdmissionPolicy and its binding: the same guard with no server
    /// (Kubernetes 1.30 and later).
    #[arg(long)]
    admission_policy: bool,
    /// Add the definitions of the pvc-backup.io resources (Backup, BackupSchedule, Restore,
    /// Clone, Migration) that `pvc-backup operator` carries out.
    #[arg(long)]
    crds: bool,
    /// Add the operator: the definitions (as --crds), its Namespace, service account and RBAC,
    /// a Deployment of 2 replicas electing a leader, a PodDisruptionBudget and the Service of
    /// its metrics.
    #[arg(long)]
    operator: bool,
    /// Guard every namespace except the system ones (and the webhook's own), instead of the
    /// namespaces labelled denysabck=enabled.
    #[arg(long)]
    all_namespaces: bool,
    /// The namespace the webhook and the operator run in.
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
    /// Where the webhook's certificate comes from [default: cert-manager; with --openshift:
    /// openshift].
    #[arg(long, value_enum, conflicts_with = "ca_bundle")]
    webhook_tls: Option<TlsSource>,
    /// Use a certificate made by hand (secret pvc-backup-webhook-tls) signed by this PEM CA.
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    /// Seconds the API server waits for the webhook before failing the request.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    webhook_timeout: i32,
}

/// Prints the requested manifests as YAML on stdout.
pub fn run(args: ManifestsArgs) -> anyhow::Result<ExitCode> {
    let mut objects = install::objects(&Install {
        namespaces: args.backup_namespaces.clone(),
        openshift: args.openshift,
    })
    .context("invalid --backup-namespace")?;
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
    if args.webhook || args.operator {
        let namespace = install::webhook_namespace(&args.namespace)
            .context("invalid --namespace for the webhook and the operator")?;
        objects.push(serde_json::to_value(namespace).context("cannot serialise the Namespace")?);
    }
    if args.webhook {
        let tls = match (&args.ca_bundle, args.webhook_tls) {
            (Some(path), _) => WebhookTls::CaBundle(
                std::fs::read(path)
                    .with_context(|| format!("cannot read the CA bundle {}", path.display()))?,
            ),
            (None, Some(TlsSource::CertManager)) => WebhookTls::CertManager,
            (None, Some(TlsSource::Openshift)) => WebhookTls::OpenShift,
            (None, None) if args.openshift => WebhookTls::OpenShift,
            (None, None) => WebhookTls::CertManager,
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
    if args.crds || args.operator {
        for crd in resources::crds() {
            objects.push(serde_json::to_value(crd).context("cannot serialise a definition")?);
        }
    }
    if args.operator {
        objects.extend(operator::install::objects(&args.namespace, &args.image));
    }
    let yaml = manifests::to_yaml(&objects)?;
    std::io::stdout()
        .lock()
        .write_all(yaml.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
