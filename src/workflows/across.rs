//! The flags of a copy between two movers, into another namespace or cluster, that `clone` and
//! `migrate` share: where to (`--to-namespace`, `--to-kubeconfig`, `--to-context`) and how the
//! movers reach each other (`--expose`, `--to-address`, `--compress`).

use cluster::connect::{ConnectOptions, Kube};
use cluster::objects::claim::Role;
use cluster::objects::wire::Expose;
use cluster::workflow::MoverSettings;
use cluster::workflow::across::{self, AcrossReport, AcrossRequest, OtherCluster, WireKeys};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::{KubeArgs, OutputArgs, plan_or_run};

/// `--expose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExposeArg {
    /// A ClusterIP Service, dialled by its DNS name (within one cluster).
    Clusterip,
    /// A NodePort Service, dialled at a node's address.
    Nodeport,
    /// A LoadBalancer Service, dialled at the address the load balancer gives it.
    Loadbalancer,
    /// An OpenShift Route with TLS passthrough, dialled at its host on port 443.
    Route,
}

/// `--via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaArg {
    /// Through this command's machine: both movers listen, and the command joins a
    /// port-forward to each (no Service; every byte crosses this machine's network).
    Local,
}

/// Where a copy between two movers goes, and how they reach each other.
#[derive(Debug, Clone, clap::Args)]
pub struct AcrossFlags {
    /// Into this namespace instead of the source's: a receiving mover there and a sending mover
    /// beside the source, joined by mutual TLS through a Service (see docs/kubernetes.md).
    /// Filesystem claims only.
    #[arg(long, value_name = "NAMESPACE")]
    pub to_namespace: Option<String>,
    /// Into another cluster, reached with this kubeconfig: a receiving mover there and a sending
    /// mover beside the source, joined by mutual TLS through a NodePort (or --expose
    /// loadbalancer) Service. The namespace is --to-namespace, else the context's.
    #[arg(long, value_name = "FILE")]
    pub to_kubeconfig: Option<std::path::PathBuf>,
    /// The context of --to-kubeconfig (or, without it, of this command's kubeconfig) that
    /// reaches the other cluster.
    #[arg(long, value_name = "NAME")]
    pub to_context: Option<String>,
    /// How the sending mover reaches the receiving one: the Service's name (clusterip, the
    /// default within a cluster), a port on the nodes (nodeport, the default into another
    /// cluster), a load balancer's address (loadbalancer) or an OpenShift Route with TLS
    /// passthrough (route).
    #[arg(long, value_enum, value_name = "HOW")]
    pub expose: Option<ExposeArg>,
    /// The host the sending mover dials instead of the one found (the receiving pod's node, the
    /// load balancer's address, or the Route's host, which stays the name asked for): a name or
    /// IP address the source's cluster reaches.
    #[arg(long, value_name = "HOST")]
    pub to_address: Option<String>,
    /// Carry the bytes through this machine (local): for namespaces or clusters where neither
    /// mover can reach the other. Both movers listen; the command port-forwards to each and
    /// joins the two (TLS stays between the movers). No Service; needs get and create on
    /// pods/portforward in both namespaces. Not with --expose or --to-address.
    #[arg(long, value_enum, value_name = "HOW")]
    pub via: Option<ViaArg>,
    /// Between two movers (--to-namespace, --to-kubeconfig, --to-context): compress file
    /// content on the wire (worth it when the network is slower than the disks).
    #[arg(long)]
    pub compress: bool,
}

impl AcrossFlags {
    /// Whether the copy goes into another namespace or cluster.
    pub fn is_across(&self) -> bool {
        self.to_namespace.is_some() || self.to_kubeconfig.is_some() || self.to_context.is_some()
    }

    /// Refuses the flags that only a copy between two movers takes, when it is not one.
    pub fn refuse_within(&self) -> anyhow::Result<()> {
        for (given, flag) in [
            (self.compress, "--compress"),
            (self.expose.is_some(), "--expose"),
            (self.to_address.is_some(), "--to-address"),
            (self.via.is_some(), "--via"),
        ] {
            if given {
                anyhow::bail!(
                    "{flag} applies to a copy between two movers: add --to-namespace, \
                     --to-kubeconfig or --to-context, or leave {flag} out"
                );
            }
        }
        Ok(())
    }

    /// The transfer of `claim` into a claim named `to`: the other cluster from the flags (with
    /// `kube`'s kubeconfig when only --to-context is given), the namespace from
    /// --to-namespace or the other context, the exposure from --expose or its default.
    pub fn request(
        &self,
        kube: &KubeArgs,
        claim: &str,
        to: &str,
        role: Role,
    ) -> anyhow::Result<AcrossRequest> {
        if self.via.is_some() {
            for (given, flag) in [
                (self.expose.is_some(), "--expose"),
                (self.to_address.is_some(), "--to-address"),
            ] {
                if given {
                    anyhow::bail!(
                        "{flag} with --via local: the movers do not reach each other (no Service \
                         is made, no mover dials); the command joins them through port-forwards. \
                         Leave {flag} out, or --via local"
                    );
                }
            }
        }
        let cluster =
            (self.to_kubeconfig.is_some() || self.to_context.is_some()).then(|| OtherCluster {
                kubeconfig: self
                    .to_kubeconfig
                    .clone()
                    .or_else(|| kube.kubeconfig().map(Into::into)),
                context: self.to_context.clone(),
            });
        let namespace = match (&self.to_namespace, &cluster) {
            (Some(ns), _) => ns.clone(),
            (None, Some(other)) => cluster::connect::context_namespace(
                other.kubeconfig.as_deref(),
                other.context.as_deref(),
            )?,
            (None, None) => anyhow::bail!(
                "a copy between two movers needs --to-namespace, --to-kubeconfig or --to-context"
            ),
        };
        let mut request = AcrossRequest {
            claim: claim.to_owned(),
            to: to.to_owned(),
            namespace,
            storage_class: None,
            size: None,
            scale_down: false,
            compress: self.compress,
            expose: Expose::ClusterIp,
            address: self.to_address.clone(),
            via_local: self.via == Some(ViaArg::Local),
            cluster,
            checksum: false,
            role,
            snapshot: None,
        };
        request.expose = match self.expose {
            Some(ExposeArg::Clusterip) => Expose::ClusterIp,
            Some(ExposeArg::Nodeport) => Expose::NodePort,
            Some(ExposeArg::Loadbalancer) => Expose::LoadBalancer,
            Some(ExposeArg::Route) => Expose::Route,
            None => request.default_expose(),
        };
        Ok(request)
    }
}

/// How to reach the other cluster of `request`, when there is one.
pub fn other_options(request: &AcrossRequest) -> Option<ConnectOptions> {
    request.cluster.as_ref().map(|o| ConnectOptions {
        kubeconfig: o.kubeconfig.clone(),
        context: o.context.clone(),
        namespace: Some(request.namespace.clone()),
    })
}

/// Connects to the other cluster of a copy, when there is one.
pub async fn connect_other(options: Option<&ConnectOptions>) -> anyhow::Result<Option<Kube>> {
    match options {
        Some(o) => Ok(Some(cluster::connect::connect(o).await?)),
        None => Ok(None),
    }
}

/// The objects of `request`'s transfer for `--dry-run`: both namespaces (and clusters) read,
/// nothing changed.
pub async fn plan_objects(
    kube: &Kube,
    request: &AcrossRequest,
    settings: &MoverSettings,
    keys: &WireKeys,
    run: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let other = connect_other(other_options(request).as_ref()).await?;
    let plan =
        across::plan_from_cluster(kube, request, settings, keys, run, other.as_ref()).await?;
    Ok(plan.objects()?)
}

/// A fresh key pair for one run (and every dry run), as `mover keys` makes one.
pub fn fresh_keys() -> anyhow::Result<WireKeys> {
    let pair = wire::keys::Pair::generate()?;
    Ok(WireKeys {
        sender: pair.files_for(wire::keys::Side::Sender),
        receiver: pair.files_for(wire::keys::Side::Receiver),
    })
}

/// Plans (`--dry-run`) or runs the copy of `request` between two movers, with a key pair made
/// for this run alone: the objects of `--dry-run=client` are planned for the source that
/// `offline_source` describes (the claim cannot be read then).
pub fn plan_or_run_across(
    kube: &KubeArgs,
    output: &OutputArgs,
    request: &AcrossRequest,
    settings: &MoverSettings,
    offline_source: impl FnOnce() -> anyhow::Result<PersistentVolumeClaim>,
) -> anyhow::Result<Option<(Kube, AcrossReport)>> {
    let other_options = other_options(request);
    let keys = fresh_keys()?;
    let run_name = cluster::workflow::job_name(&format!("{}-{}", request.claim, request.verb()));
    plan_or_run(
        kube,
        output,
        || {
            let plan = across::plan(
                request,
                settings,
                &offline_source()?,
                None,
                &keys,
                &run_name,
                Default::default(),
                Default::default(),
            )?;
            Ok(plan.objects()?)
        },
        async |kube| plan_objects(kube, request, settings, &keys, &run_name).await,
        async |kube, console| {
            let other = connect_other(other_options.as_ref()).await?;
            Ok(across::run(kube, request, settings, &keys, other.as_ref(), console).await?)
        },
    )
}
