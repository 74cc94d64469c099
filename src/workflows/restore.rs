//! `pvc-backup restore CLAIM --from BACKUP` and `pvc-backup rollback KIND/NAME`.

use std::process::ExitCode;
use std::time::Duration;

use cluster::workflow::restore::{self as flow, RestoreRequest};
use cluster::workload::Workload;
use serde_json::json;

use super::backup::describe;
use super::{KubeArgs, MoverFlags, OutputArgs, RepositoryFlags, plan_or_run};

/// Arguments of `pvc-backup restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The claim to restore (the one the workload uses).
    claim: String,
    /// The backup claim (made by pvc-backup backup).
    #[arg(
        long,
        value_name = "BACKUP",
        required_unless_present = "repository",
        conflicts_with = "repository"
    )]
    from: Option<String>,
    #[command(flatten)]
    repository: RepositoryFlags,
    /// With --repository: take `latest` from the backups of this claim, as NAMESPACE/CLAIM
    /// (default: the claim restored; give the original's when restoring into another claim).
    #[arg(long, value_name = "NAMESPACE/CLAIM", requires = "repository")]
    host: Option<String>,
    /// Which snapshot: its name (see `pvc-backup mover snapshots`; in a repository its id or a
    /// unique prefix), or latest.
    #[arg(long, value_name = "ID", default_value = store::layout::LATEST)]
    snapshot: String,
    /// The workload to stop (or, with --swap, to repoint), as KIND/NAME; default: the one whose
    /// pods use the claim.
    #[arg(long, value_name = "KIND/NAME")]
    workload: Option<Workload>,
    /// Copy nothing: point the workload's volume at the snapshot inside the backup claim,
    /// recording the claim it used (`pvc-backup rollback KIND/NAME` switches back).
    #[arg(long)]
    swap: bool,
    /// Seconds the workload's pods may take to stop.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    scale_timeout: u64,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    mover: MoverFlags,
}

/// Runs `pvc-backup restore`.
pub fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let request = RestoreRequest {
        claim: args.claim.clone(),
        from: args
            .from
            .clone()
            .or_else(|| args.repository.target().map(|r| r.url))
            .unwrap_or_default(),
        repository: args.repository.target(),
        host: args.host.clone(),
        snapshot: args.snapshot.clone(),
        workload: args.workload.clone(),
        swap: args.swap,
        scale_timeout: Duration::from_secs(args.scale_timeout),
        run: None,
    };
    let settings = args.mover.settings()?;
    if settings.detach && args.swap {
        anyhow::bail!("--detach cannot be used with --swap: the swap needs the snapshot's name");
    }
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            anyhow::bail!(
                "restore needs the claims and the workload: use --dry-run (which reads the \
                 cluster and changes nothing) instead of --dry-run=client"
            )
        },
        async |kube| {
            Ok(flow::plan_from_cluster(kube, &request, &settings)
                .await?
                .objects()?)
        },
        async |kube, console| Ok(flow::run(kube, &request, &settings, console).await?),
    )?;
    let Some((kube, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let workload = report.workload.clone().unwrap_or_default();
    let (human, code) = if args.swap {
        (
            format!(
                "{workload} now uses snapshot {} of claim {} (volume {}) instead of claim {}; \
                 `pvc-backup rollback {workload} -n {}` switches back",
                report.snapshot,
                report.from,
                report.volume.as_deref().unwrap_or_default(),
                report.claim,
                kube.namespace
            ),
            0,
        )
    } else if let Some(job) = &report.detached {
        (
            format!(
                "Job {job} started; the workload stays scaled down: follow the Job with \
                 `kubectl logs -f job/{job} -n {ns}`, then scale {workload} back up with \
                 `pvc-backup rollback {workload} -n {ns}`",
                ns = kube.namespace
            ),
            0,
        )
    } else {
        let outcome = report.outcome.as_ref();
        let mut line = outcome
            .map(|o| {
                let from = match args.repository.target() {
                    Some(r) => format!("repository {}", r.url),
                    None => format!("claim {}", report.from),
                };
                describe("restore", &from, &report.claim, o)
            })
            .unwrap_or_default();
        if report.workload.is_some() {
            line.push_str(&format!("; {workload} was stopped and started again"));
        }
        (line, outcome.map_or(0, |o| o.exit_code))
    };
    let value = json!({
        "claim": report.claim,
        "from": report.from,
        "snapshot": report.snapshot,
        "swap": args.swap,
        "workload": report.workload,
        "volume": report.volume,
        "job": report.outcome.as_ref().map(|o| o.job.clone()).or(report.detached.clone()),
        "detached": report.detached.is_some(),
        "exitCode": code,
        "summary": report.outcome.as_ref().and_then(|o| o.summaries.last().cloned()),
    });
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Arguments of `pvc-backup rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The workload, as KIND/NAME (deployment/web, sts/db, dc/app).
    workload: Workload,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `pvc-backup rollback`.
pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            anyhow::bail!(
                "rollback changes the workload as it is in the cluster: use --dry-run (which \
                 reads it and changes nothing) instead of --dry-run=client"
            )
        },
        async |kube| Ok(flow::rollback_plan(kube, &args.workload).await?),
        async |kube, console| Ok(flow::rollback(kube, &args.workload, console).await?),
    )?;
    let Some((_, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut lines: Vec<String> = report
        .volumes
        .iter()
        .map(|(volume, from, to)| {
            format!(
                "{}: volume {volume} uses claim {to} again (instead of {from})",
                report.workload
            )
        })
        .collect();
    if let Some(n) = report.replicas {
        lines.push(format!(
            "{}: scaled back to {n} replicas (a --scale-down run had left it at zero)",
            report.workload
        ));
    }
    if lines.is_empty() {
        lines.push(format!("{}: nothing to change", report.workload));
    }
    let human = lines.join("\n");
    let value = json!({
        "workload": report.workload,
        "volumes": report.volumes.iter().map(|(v, from, to)| json!({"volume": v, "from": from, "to": to})).collect::<Vec<_>>(),
        "replicas": report.replicas,
    });
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::SUCCESS)
}
