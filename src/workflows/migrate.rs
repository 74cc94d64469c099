//! `pvc-backup migrate CLAIM --storage-class SC` and `migrate --rollback CLAIM`.

use std::process::ExitCode;
use std::time::Duration;

use cluster::workflow;
use cluster::workflow::migrate::{self as flow, MigrateRequest};
use cluster::workload::Workload;
use serde_json::json;

use super::{KubeArgs, MoverFlags, OutputArgs, plan_or_run};

/// Arguments of `pvc-backup migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The claim to move.
    claim: String,
    /// The storage class to move it to.
    #[arg(long, value_name = "CLASS", required_unless_present = "rollback")]
    storage_class: Option<String>,
    /// The workload to stop and repoint, as KIND/NAME (deployment/web, sts/db, dc/app);
    /// default: the one whose pods use the claim.
    #[arg(long, value_name = "KIND/NAME")]
    workload: Option<Workload>,
    /// Keep the claim's name: the claim is recreated on the new volume (the old volume is kept,
    /// reclaim policy Retain). The only way for a StatefulSet's volumeClaimTemplates.
    #[arg(long)]
    keep_name: bool,
    /// Size of the new claim (default and minimum: the source's capacity).
    #[arg(long, value_name = "QUANTITY")]
    size: Option<String>,
    /// Seconds the workload's pods may take to stop.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    scale_timeout: u64,
    /// Undo a migration of CLAIM: back to the original claim (or, after --keep-name, to the
    /// original volume). The data written since stays in the new claim.
    #[arg(long, conflicts_with_all = ["keep_name", "size"])]
    rollback: bool,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    mover: MoverFlags,
}

/// Runs `pvc-backup migrate`.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if args.rollback {
        return rollback(args);
    }
    let request = MigrateRequest {
        claim: args.claim.clone(),
        storage_class: args.storage_class.clone().unwrap_or_default(),
        workload: args.workload.clone(),
        keep_name: args.keep_name,
        size: args.size.clone(),
        scale_timeout: Duration::from_secs(args.scale_timeout),
        run: None,
    };
    let settings = args.mover.settings()?;
    if settings.detach {
        anyhow::bail!(
            "--detach cannot be used with migrate: the cut-over waits for the copies and the \
             verification"
        );
    }
    let job_name = workflow::job_name(&format!("{}-migrate", request.claim));
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            anyhow::bail!(
                "migrate needs the source claim's size, class and users: use --dry-run (which \
                 reads the cluster and changes nothing) instead of --dry-run=client"
            )
        },
        async |kube| {
            let plan = flow::plan_from_cluster(kube, &request, &settings, &job_name, None).await?;
            Ok(plan.objects()?)
        },
        async |kube, console| Ok(flow::run(kube, &request, &settings, console).await?),
    )?;
    let Some((_, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut human = if args.keep_name {
        format!(
            "migrated claim {} to storage class {}: it is now bound to volume {}; the old volume \
             {} is kept (Released, reclaim policy Retain) as the way back",
            report.claim, request.storage_class, report.new_volume, report.old_volume
        )
    } else {
        format!(
            "migrated claim {} to claim {} on storage class {}{}; claim {} is kept as the way back",
            report.claim,
            report.now_used,
            request.storage_class,
            report
                .workload
                .as_ref()
                .map(|w| format!(" and pointed {w} at it"))
                .unwrap_or_default(),
            report.claim
        )
    };
    for n in &report.notes {
        human.push_str(&format!("\nnote: {n}"));
    }
    let value = json!({
        "claim": report.claim,
        "storageClass": request.storage_class,
        "keepName": args.keep_name,
        "nowUsed": report.now_used,
        "workload": report.workload,
        "oldVolume": report.old_volume,
        "newVolume": report.new_volume,
        "jobs": report.outcomes.iter().map(|o| o.job.clone()).collect::<Vec<_>>(),
        "verified": true,
        "notes": report.notes,
    });
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::SUCCESS)
}

fn rollback(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let class = args.storage_class.as_deref();
    let workload = args.workload.as_ref();
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            anyhow::bail!(
                "migrate --rollback reads what the migration recorded: use --dry-run (which \
                 reads the cluster and changes nothing) instead of --dry-run=client"
            )
        },
        async |kube| Ok(flow::rollback_plan(kube, &args.claim, class, workload).await?),
        async |kube, console| {
            let timeout = Duration::from_secs(args.scale_timeout);
            Ok(flow::rollback(kube, &args.claim, class, workload, timeout, console).await?)
        },
    )?;
    let Some((_, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let human = match &report.volume {
        Some(v) => format!(
            "claim {} is bound to its original volume {v} again; the data written since the \
             migration is in claim {}",
            report.claim, report.newer_data
        ),
        None => format!(
            "{} uses claim {} again; the data written since the migration is in claim {}",
            report.workload.as_deref().unwrap_or("the workload"),
            report.claim,
            report.newer_data
        ),
    };
    let value = json!({
        "claim": report.claim,
        "workload": report.workload,
        "volume": report.volume,
        "newerData": report.newer_data,
    });
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::SUCCESS)
}
