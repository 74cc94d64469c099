//! `pvc-backup migrate CLAIM --storage-class SC`, `migrate CLAIM --to-namespace NS` (or
//! `--to-kubeconfig FILE`) and `migrate --rollback CLAIM`.

use std::process::ExitCode;
use std::time::Duration;

use cluster::objects::claim::Role;
use cluster::workflow;
use cluster::workflow::migrate::across::MigrateAcrossRequest;
use cluster::workflow::migrate::{self as flow, MigrateRequest};
use cluster::workload::Workload;
use serde_json::json;

use super::across::{AcrossFlags, connect_other, fresh_keys, other_options, plan_objects};
use super::{KubeArgs, MoverFlags, OutputArgs, plan_or_run};

/// Arguments of `pvc-backup migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The claim to move.
    claim: String,
    /// The storage class to move it to (with --to-namespace or --to-kubeconfig: the class of
    /// the claim there; default: the source's).
    #[arg(long, value_name = "CLASS", required_unless_present_any = ["rollback", "to_namespace", "to_kubeconfig", "to_context"])]
    storage_class: Option<String>,
    /// The workload to stop and repoint (into another namespace or cluster: to stop, and with
    /// --start to start there), as KIND/NAME (deployment/web, sts/db, dc/app); default: the one
    /// whose pods use the claim.
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
    /// Into another namespace or cluster: once the copy is verified, scale the workload of the
    /// same kind and name there (created beforehand with 0 replicas) to the source's count.
    #[arg(long)]
    start: bool,
    #[command(flatten)]
    across: AcrossFlags,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    mover: MoverFlags,
}

/// `--dry-run=client`: a migration's plan needs the cluster.
fn offline_refused() -> anyhow::Result<Vec<serde_json::Value>> {
    anyhow::bail!(
        "migrate needs the source claim's size, class and users: use --dry-run (which reads the \
         cluster and changes nothing) instead of --dry-run=client"
    )
}

/// Runs `pvc-backup migrate`.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if args.rollback {
        if args.across.is_across() || args.start {
            anyhow::bail!(
                "--rollback undoes a migration to another storage class; a migration into \
                 another namespace or cluster left the source claim as it was: scale its \
                 workload up again (its count is in annotation pvc-backup.io/scaled-down-from)"
            );
        }
        return rollback(args);
    }
    if args.across.is_across() {
        return across(args);
    }
    args.across.refuse_within()?;
    if args.start {
        anyhow::bail!(
            "--start applies to a migration into another namespace or cluster: within one, the \
             workload is started again on the new claim anyway"
        );
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
        offline_refused,
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

/// `pvc-backup migrate CLAIM --to-namespace NS` (or `--to-kubeconfig FILE`): the data moves to
/// a claim of the same name there, through two movers.
fn across(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if args.keep_name {
        anyhow::bail!(
            "--keep-name with --to-namespace or --to-kubeconfig: the claim there always has the \
             source's name; leave --keep-name out"
        );
    }
    let settings = args.mover.settings()?;
    if settings.detach {
        anyhow::bail!(
            "--detach cannot be used with migrate: the workload is stopped until the copies and \
             the verification end"
        );
    }
    let mut copy = args
        .across
        .request(&args.kube, &args.claim, &args.claim, Role::Migrate)?;
    copy.storage_class = args.storage_class.clone();
    copy.size = args.size.clone();
    let request = MigrateAcrossRequest {
        copy,
        workload: args.workload.clone(),
        start: args.start,
        scale_timeout: Duration::from_secs(args.scale_timeout),
    };
    let other_options = other_options(&request.copy);
    let keys = fresh_keys()?;
    let run_name = workflow::job_name(&format!("{}-migrate", request.copy.claim));
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        offline_refused,
        async |kube| plan_objects(kube, &request.copy, &settings, &keys, &run_name).await,
        async |kube, console| {
            let other = connect_other(other_options.as_ref()).await?;
            Ok(
                flow::across::run(kube, &request, &settings, &keys, other.as_ref(), console)
                    .await?,
            )
        },
    )?;
    let Some((kube, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let place = match &request.copy.cluster {
        Some(other) => format!("namespace {} of {other}", report.namespace),
        None => format!("namespace {}", report.namespace),
    };
    let mut human = format!(
        "migrated claim {} from namespace {} into {place} and verified it",
        report.claim, kube.namespace
    );
    if let Some((w, n)) = &report.workload {
        human.push_str(&format!(
            "\n{w} stays scaled to zero in namespace {} (it had {n}); claim {} there keeps the \
             data as it was",
            kube.namespace, report.claim
        ));
        if report.started {
            human.push_str(&format!("\n{w} in {place} scaled to {n}"));
        }
    }
    for n in &report.notes {
        human.push_str(&format!("\nnote: {n}"));
    }
    let value = json!({
        "claim": report.claim,
        "sourceNamespace": kube.namespace,
        "namespace": report.namespace,
        "cluster": request.copy.cluster.as_ref().map(ToString::to_string),
        "workload": report.workload.as_ref().map(|(w, _)| w),
        "replicas": report.workload.as_ref().map(|(_, n)| n),
        "started": report.started,
        "addresses": report.transfers.iter().map(|t| t.address.clone()).collect::<Vec<_>>(),
        "jobs": report.transfers.iter().map(|t| t.receiver.job.clone()).collect::<Vec<_>>(),
        "verified": true,
        "summaries": report.transfers.iter().flat_map(|t| t.receiver.summaries.clone()).collect::<Vec<_>>(),
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
