//! `pvc-backup operator`: the controllers of the pvc-backup.io resources.

use std::path::PathBuf;
use std::process::ExitCode;

use cluster::connect::ConnectOptions;
use cluster::workflow::MoverSettings;

/// Arguments of `pvc-backup operator`.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// The kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the pod's service
    /// account inside a cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Carry out the resources of this namespace only (default: of every namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// The pvc-backup image the mover pods run (a resource's spec.mover cannot change it).
    #[arg(long, value_name = "IMAGE", env = "PVC_BACKUP_IMAGE",
          default_value = cluster::names::DEFAULT_IMAGE)]
    image: String,
    /// Act only while holding a Lease, so that several replicas can run and one acts (the
    /// others take over when it stops renewing it).
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's namespace (default: POD_NAMESPACE, then --namespace, then the context's).
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// The Lease's name.
    #[arg(
        long,
        value_name = "NAME",
        default_value = operator::install::NAME,
        requires = "leader_elect"
    )]
    lease_name: String,
    /// This replica's name in the Lease (default: POD_NAME, then the host's name, with the
    /// process id).
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a replica keeps the Lease without renewing it; it renews every third of that.
    #[arg(long, value_name = "SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(3..=300), requires = "leader_elect")]
    lease_duration: u64,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (default: not at all).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_address: Option<std::net::SocketAddr>,
}

/// Runs the operator until SIGINT or SIGTERM.
pub fn run(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    crate::logging::server();
    crate::workflows::runtime()?.block_on(async {
        let kube = cluster::connect::connect(&ConnectOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            namespace: args.namespace.clone(),
        })
        .await?;
        let lease = args.leader_elect.then(|| operator::LeaseOptions {
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| kube.namespace.clone()),
            name: args.lease_name.clone(),
            identity: args.identity.clone().unwrap_or_else(default_identity),
            duration: std::time::Duration::from_secs(args.lease_duration),
        });
        let options = operator::Options {
            namespace: args.namespace.clone(),
            settings: MoverSettings {
                image: args.image.clone(),
                ..MoverSettings::default()
            },
            lease,
            metrics_address: args.metrics_address,
        };
        operator::run(kube.client, options).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The host's name and the process id: unique among replicas that name no identity.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{host}-{}", std::process::id())
}
