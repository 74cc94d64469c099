//! `pvc-backup clone CLAIM --to NAME`: one or N copies of a claim.

use std::process::ExitCode;

use cluster::connect::{ConnectOptions, Kube};
use cluster::objects::wire::Expose;
use cluster::workflow;
use cluster::workflow::across::{self, AcrossRequest, OtherCluster, WireKeys};
use cluster::workflow::clone::{self as flow, CloneRequest, Method};
use serde_json::json;

use super::backup::{VolumeMode, describe};
use super::{KubeArgs, MoverFlags, OutputArgs, plan_or_run};

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// A CSI clone when source and copies share a CSI storage class (a copy if the clone does
    /// not bind in time); a copy otherwise.
    Auto,
    /// A CSI clone only (a claim whose dataSource is the source).
    Csi,
    /// The mover copies the files (or the device).
    Copy,
}

/// `--expose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExposeArg {
    /// A ClusterIP Service, dialled by its DNS name (within one cluster).
    Clusterip,
    /// A NodePort Service, dialled at a node's address.
    Nodeport,
    /// A LoadBalancer Service, dialled at the address the load balancer gives it.
    Loadbalancer,
}

/// `--via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaArg {
    /// Through this command's machine: both movers listen, and the command joins a
    /// port-forward to each (no Service; every byte crosses this machine's network).
    Local,
}

/// Arguments of `pvc-backup clone`.
#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    /// The claim to copy.
    claim: String,
    /// The copy's name; with --count N the copies are NAME-1 ... NAME-N.
    #[arg(long, value_name = "NAME")]
    to: String,
    /// How many copies.
    #[arg(long, value_name = "N", default_value_t = 1)]
    count: u32,
    /// Storage class of the copies (default: the source's).
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Size of the copies (default and minimum: the source's capacity).
    #[arg(long, value_name = "QUANTITY")]
    size: Option<String>,
    /// How the copies are made.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    method: MethodArg,
    /// Scale the workloads that use the claim to zero for the copy and back up afterwards
    /// (needed for a ReadWriteOncePod claim in use, and for a copy of one moment).
    #[arg(long)]
    scale_down: bool,
    /// Make the copy in this namespace instead of the source's: a receiving mover there and a
    /// sending mover beside the source, joined by mutual TLS through a Service, or through
    /// this machine with --via local (see docs/kubernetes.md). Filesystem claims, one copy.
    #[arg(long, value_name = "NAMESPACE")]
    to_namespace: Option<String>,
    /// Make the copy in another cluster, reached with this kubeconfig: a receiving mover there
    /// and a sending mover beside the source, joined by mutual TLS through a NodePort (or
    /// --expose loadbalancer) Service. The namespace is --to-namespace, else the context's.
    #[arg(long, value_name = "FILE")]
    to_kubeconfig: Option<std::path::PathBuf>,
    /// The context of --to-kubeconfig (or, without it, of this command's kubeconfig) that
    /// reaches the other cluster.
    #[arg(long, value_name = "NAME")]
    to_context: Option<String>,
    /// How the sending mover reaches the receiving one: the Service's name (clusterip, the
    /// default within a cluster), a port on the nodes (nodeport, the default into another
    /// cluster) or a load balancer's address (loadbalancer).
    #[arg(long, value_enum, value_name = "HOW")]
    expose: Option<ExposeArg>,
    /// The host the sending mover dials instead of the one found (the receiving pod's node, or
    /// the load balancer's address): a name or IP address the source's cluster reaches.
    #[arg(long, value_name = "HOST")]
    to_address: Option<String>,
    /// Carry the bytes through this machine (local): for namespaces or clusters where neither
    /// mover can reach the other. Both movers listen; the command port-forwards to each and
    /// joins the two (TLS stays between the movers). No Service; needs get and create on
    /// pods/portforward in both namespaces. Not with --expose or --to-address.
    #[arg(long, value_enum, value_name = "HOW")]
    via: Option<ViaArg>,
    /// Between two movers (--to-namespace, --to-kubeconfig, --to-context): compress file
    /// content on the wire (worth it when the network is slower than the disks).
    #[arg(long)]
    compress: bool,
    /// With --dry-run=client: the source claim's volume mode (it cannot be read).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = VolumeMode::Filesystem)]
    source_volume_mode: VolumeMode,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    mover: MoverFlags,
}

impl CloneArgs {
    /// The source claim as far as the flags tell it, for `--dry-run=client` (no cluster).
    fn offline_source(&self) -> anyhow::Result<k8s_openapi::api::core::v1::PersistentVolumeClaim> {
        let backup_like = workflow::backup::BackupRequest {
            claim: self.claim.clone(),
            size: self.size.clone(),
            ..Default::default()
        };
        Ok(workflow::backup::offline_source(
            &backup_like,
            &self.kube.offline_namespace(),
            self.source_volume_mode.name(),
        )?)
    }

    fn request(&self) -> CloneRequest {
        CloneRequest {
            claim: self.claim.clone(),
            to: self.to.clone(),
            count: self.count,
            storage_class: self.storage_class.clone(),
            size: self.size.clone(),
            method: match self.method {
                MethodArg::Auto => Method::Auto,
                MethodArg::Csi => Method::Csi,
                MethodArg::Copy => Method::Copy,
            },
            scale_down: self.scale_down,
            run: None,
        }
    }
}

/// Runs `pvc-backup clone`.
pub fn run(args: CloneArgs) -> anyhow::Result<ExitCode> {
    if args.to_namespace.is_some() || args.to_kubeconfig.is_some() || args.to_context.is_some() {
        return across(args);
    }
    for (given, flag) in [
        (args.compress, "--compress"),
        (args.expose.is_some(), "--expose"),
        (args.to_address.is_some(), "--to-address"),
        (args.via.is_some(), "--via"),
    ] {
        if given {
            anyhow::bail!(
                "{flag} applies to a copy between two movers: add --to-namespace, \
                 --to-kubeconfig or --to-context, or leave {flag} out"
            );
        }
    }
    let request = args.request();
    let settings = args.mover.settings()?;
    let job_name = workflow::job_name(&format!("{}-clone", request.claim));
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            let mut source = args.offline_source()?;
            // Without a cluster the class is unknown: a CSI clone is planned only when asked
            // for, and then in the class named (or the cluster's default).
            if let Some(spec) = source.spec.as_mut() {
                spec.storage_class_name = request.storage_class.clone();
            }
            let existing = vec![None; request.targets().len()];
            let plan = flow::plan(
                &request,
                &settings,
                &source,
                &existing,
                None,
                Default::default(),
                &job_name,
            )?;
            Ok(plan.objects()?)
        },
        async |kube| {
            let (plan, _) =
                flow::plan_from_cluster(kube, &request, &settings, &job_name, None).await?;
            Ok(plan.objects()?)
        },
        async |kube, console| Ok(flow::run(kube, &request, &settings, console).await?),
    )?;
    let Some((kube, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut lines = Vec::new();
    if let Some(why) = &report.fell_back {
        lines.push(format!("CSI clone given up ({why}); copied instead"));
    }
    match report.method {
        Method::Csi => lines.push(format!(
            "CSI clone{} of claim {}: {} (bound)",
            if report.targets.len() > 1 { "s" } else { "" },
            request.claim,
            report.targets.join(", ")
        )),
        _ => {
            for job in &report.detached {
                lines.push(format!(
                    "Job {job} started; follow it with `kubectl logs -f job/{job} -n {}`",
                    kube.namespace
                ));
            }
            for (i, target) in report.targets.iter().enumerate() {
                // One Job wrote every copy (a summary each), or one Job per copy (block).
                let outcome = match report.outcomes.len() {
                    1 => report.outcomes.first().map(|o| {
                        let mut one = o.clone();
                        one.summaries = o.summaries.get(i).cloned().into_iter().collect();
                        one
                    }),
                    _ => report.outcomes.get(i).cloned(),
                };
                if let Some(o) = outcome {
                    lines.push(describe(
                        "copy",
                        &format!("claim {}", request.claim),
                        target,
                        &o,
                    ));
                }
            }
        }
    }
    if !report.scaled.is_empty() {
        lines.push(format!(
            "scaled down and back up: {}",
            report.scaled.join(", ")
        ));
    }
    let value = json!({
        "source": request.claim,
        "targets": report.targets,
        "method": report.method.as_str(),
        "fellBack": report.fell_back,
        "createdClaims": report.created,
        "scaled": report.scaled,
        "jobs": report.outcomes.iter().map(|o| o.job.clone()).chain(report.detached.clone()).collect::<Vec<_>>(),
        "detached": !report.detached.is_empty(),
        "exitCode": report.exit_code(),
        "summaries": report.outcomes.iter().flat_map(|o| o.summaries.clone()).collect::<Vec<_>>(),
    });
    args.output.print_result(&value, &lines.join("\n"))?;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}

/// `pvc-backup clone CLAIM --to NAME --to-namespace NS`: the copy in another namespace, made by
/// two movers over the wire with a key pair made here for this run.
fn across(args: CloneArgs) -> anyhow::Result<ExitCode> {
    if args.count != 1 {
        anyhow::bail!(
            "--count {} with --to-namespace: a copy into another namespace makes one copy; run \
             the command once per copy",
            args.count
        );
    }
    if args.method == MethodArg::Csi {
        anyhow::bail!(
            "--method csi with --to-namespace: a CSI clone stays in its source's namespace; \
             leave --method out (the movers copy)"
        );
    }
    if args.mover.detached() {
        anyhow::bail!(
            "--detach with --to-namespace: the run's keys and Service are removed when it ends, \
             so it must be followed to its end; leave --detach out"
        );
    }
    if args.via.is_some() {
        for (given, flag) in [
            (args.expose.is_some(), "--expose"),
            (args.to_address.is_some(), "--to-address"),
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
    let settings = args.mover.settings()?;
    let cluster =
        (args.to_kubeconfig.is_some() || args.to_context.is_some()).then(|| OtherCluster {
            kubeconfig: args
                .to_kubeconfig
                .clone()
                .or_else(|| args.kube.kubeconfig().map(Into::into)),
            context: args.to_context.clone(),
        });
    let namespace = match (&args.to_namespace, &cluster) {
        (Some(ns), _) => ns.clone(),
        (None, Some(other)) => cluster::connect::context_namespace(
            other.kubeconfig.as_deref(),
            other.context.as_deref(),
        )?,
        (None, None) => unreachable!("across() runs with --to-namespace or another cluster"),
    };
    let mut request = AcrossRequest {
        claim: args.claim.clone(),
        to: args.to.clone(),
        namespace,
        storage_class: args.storage_class.clone(),
        size: args.size.clone(),
        scale_down: args.scale_down,
        compress: args.compress,
        expose: Expose::ClusterIp,
        address: args.to_address.clone(),
        via_local: args.via == Some(ViaArg::Local),
        cluster,
    };
    request.expose = match args.expose {
        Some(ExposeArg::Clusterip) => Expose::ClusterIp,
        Some(ExposeArg::Nodeport) => Expose::NodePort,
        Some(ExposeArg::Loadbalancer) => Expose::LoadBalancer,
        None => request.default_expose(),
    };
    let other_options = request.cluster.as_ref().map(|o| ConnectOptions {
        kubeconfig: o.kubeconfig.clone(),
        context: o.context.clone(),
        namespace: Some(request.namespace.clone()),
    });
    // A fresh pair for every run (and every dry run), as `mover keys` makes one.
    let pair = wire::keys::Pair::generate()?;
    let keys = WireKeys {
        sender: pair.files_for(wire::keys::Side::Sender),
        receiver: pair.files_for(wire::keys::Side::Receiver),
    };
    let run_name = workflow::job_name(&format!("{}-clone", request.claim));
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            let source = args.offline_source()?;
            let plan = across::plan(
                &request,
                &settings,
                &source,
                None,
                &keys,
                &run_name,
                Default::default(),
                Default::default(),
            )?;
            Ok(plan.objects()?)
        },
        async |kube| {
            let other = connect_other(other_options.as_ref()).await?;
            let plan = across::plan_from_cluster(
                kube,
                &request,
                &settings,
                &keys,
                &run_name,
                other.as_ref(),
            )
            .await?;
            Ok(plan.objects()?)
        },
        async |kube, console| {
            let other = connect_other(other_options.as_ref()).await?;
            Ok(across::run(kube, &request, &settings, &keys, other.as_ref(), console).await?)
        },
    )?;
    let Some((kube, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let target = format!("{}/{}", report.namespace, report.target);
    let mut lines = vec![describe(
        "copy",
        &format!("{}/{}", kube.namespace, request.claim),
        &target,
        &report.receiver,
    )];
    if !report.scaled.is_empty() {
        lines.push(format!(
            "scaled down and back up: {}",
            report.scaled.join(", ")
        ));
    }
    let created: Vec<&String> = report
        .created
        .then_some(&report.target)
        .into_iter()
        .collect();
    let jobs: Vec<&String> = std::iter::once(&report.receiver.job)
        .chain(report.sender.as_ref().map(|s| &s.job))
        .collect();
    let value = json!({
        "source": request.claim,
        "sourceNamespace": kube.namespace,
        "targets": [report.target],
        "namespace": report.namespace,
        "address": report.address,
        "method": "copy",
        "createdClaims": created,
        "scaled": report.scaled,
        "jobs": jobs,
        "exitCode": report.exit_code(),
        "summaries": report.receiver.summaries,
    });
    args.output.print_result(&value, &lines.join("\n"))?;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}

/// Connects to the other cluster of a copy, when there is one.
async fn connect_other(options: Option<&ConnectOptions>) -> anyhow::Result<Option<Kube>> {
    match options {
        Some(o) => Ok(Some(cluster::connect::connect(o).await?)),
        None => Ok(None),
    }
}
