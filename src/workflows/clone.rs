//! `pvc-backup clone CLAIM --to NAME`: one or N copies of a claim.

use std::process::ExitCode;

use cluster::objects::claim::Role;
use cluster::workflow;
use cluster::workflow::clone::{self as flow, CloneRequest, Method};
use serde_json::json;

use super::across::{AcrossFlags, plan_or_run_across};
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
    #[command(flatten)]
    across: AcrossFlags,
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
    if args.across.is_across() {
        return across(args);
    }
    args.across.refuse_within()?;
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
    let settings = args.mover.settings()?;
    let mut request = args
        .across
        .request(&args.kube, &args.claim, &args.to, Role::Clone)?;
    request.storage_class = args.storage_class.clone();
    request.size = args.size.clone();
    request.scale_down = args.scale_down;
    let ran = plan_or_run_across(&args.kube, &args.output, &request, &settings, || {
        args.offline_source()
    })?;
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
    let value = json!({
        "source": request.claim,
        "sourceNamespace": kube.namespace,
        "targets": [report.target],
        "namespace": report.namespace,
        "address": report.address,
        "method": "copy",
        "createdClaims": created,
        "scaled": report.scaled,
        "jobs": report.jobs(),
        "exitCode": report.exit_code(),
        "summaries": report.receiver.summaries,
    });
    args.output.print_result(&value, &lines.join("\n"))?;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
