//! `pvc-backup schedule`, `schedules` and `unschedule`: backups on a schedule (CronJobs).

use std::process::ExitCode;

use cluster::workflow::backup::BackupRequest;
use cluster::workflow::schedule::{self as flow, ScheduleRequest};
use serde_json::json;

use super::{
    KubeArgs, MoverFlags, OutputArgs, RepositoryFlags, RetentionArgs, plan_or_run, with_cluster,
};

/// Arguments of `pvc-backup schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// The claim to back up.
    claim: String,
    /// When to run, in cron form: minute hour day-of-month month day-of-week (e.g. "0 2 * * *"),
    /// or @daily, @hourly, @weekly, @monthly, @yearly, "@every 6h".
    #[arg(long, value_name = "EXPR")]
    cron: String,
    /// The time zone of the schedule, e.g. Europe/Berlin (default: the cluster's controller's).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// The CronJob's name (default: the backup claim's name, or CLAIM-repository).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The claim to back up into; created when missing (default: CLAIM-backup).
    #[arg(long, value_name = "NAME", conflicts_with = "repository")]
    to: Option<String>,
    #[command(flatten)]
    repository: RepositoryFlags,
    /// With --repository: create the repository on the first run when it does not exist yet.
    #[arg(long, requires = "repository")]
    init: bool,
    /// Storage class of the backup claim when it is created.
    #[arg(long, value_name = "CLASS", conflicts_with = "repository")]
    storage_class: Option<String>,
    /// Size of the backup claim when it is created (default and minimum: the source's).
    #[arg(long, value_name = "QUANTITY")]
    size: Option<String>,
    /// Back up only this folder of the claim.
    #[arg(long, value_name = "DIR")]
    subdir: Option<String>,
    #[command(flatten)]
    keep: RetentionArgs,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    mover: MoverFlags,
}

/// Arguments of `pvc-backup schedules`.
#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// List the schedules of all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `pvc-backup unschedule`.
#[derive(Debug, clap::Args)]
pub struct UnscheduleArgs {
    /// The claim whose scheduled backups to remove (the backups themselves stay).
    claim: String,
    /// Only the schedule into this backup claim.
    #[arg(long, value_name = "NAME", conflicts_with = "repository")]
    to: Option<String>,
    /// Only the schedule into this restic-format repository (its URL, as `schedules` shows it).
    #[arg(long, value_name = "URL")]
    repository: Option<String>,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `pvc-backup schedule`.
pub fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let request = ScheduleRequest {
        backup: BackupRequest {
            claim: args.claim.clone(),
            to: args.to.clone(),
            storage_class: args.storage_class.clone(),
            size: args.size.clone(),
            subdir: args.subdir.clone(),
            retention: args.keep.retention(),
            from_snapshot: false,
            snapshot_class: None,
            scale_down: false,
            run: None,
            repository: args.repository.target(),
            init: args.init,
        },
        cron: args.cron.clone(),
        time_zone: args.time_zone.clone(),
        name: args.name.clone(),
    };
    // Refuse a bad expression before anything else, even before contacting the cluster.
    cluster::cron::check(&request.cron)?;
    let settings = args.mover.settings()?;
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            let source = cluster::workflow::backup::offline_source(
                &request.backup,
                &args.kube.offline_namespace(),
                "Filesystem",
            )?;
            let plan = flow::plan(&request, &settings, &source, None, Default::default())?;
            Ok(plan.objects()?)
        },
        async |kube| {
            Ok(flow::plan_from_cluster(kube, &request, &settings)
                .await?
                .objects()?)
        },
        async |kube, console| Ok(flow::run(kube, &request, &settings, console).await?),
    )?;
    let Some((_, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let human = format!(
        "{} CronJob {}: backs up claim {} into {} on \"{}\"",
        if report.replaced {
            "updated"
        } else {
            "created"
        },
        report.name,
        request.backup.claim,
        report.target,
        request.cron
    );
    args.output
        .print_result(&serde_json::to_value(&report)?, &human)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `pvc-backup schedules`.
pub fn schedules(args: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let list = with_cluster(&args.kube, async |kube| {
        Ok(flow::list(kube, args.all_namespaces).await?)
    })?;
    let mut human = format!(
        "{:<20} {:<28} {:<24} {:<24} {:<16} {}",
        "NAMESPACE", "NAME", "SOURCE", "TARGET", "SCHEDULE", "LAST SUCCESS"
    );
    for s in &list {
        human.push_str(&format!(
            "\n{:<20} {:<28} {:<24} {:<24} {:<16} {}",
            s.namespace,
            s.name,
            s.source,
            s.target,
            s.schedule,
            s.last_success.as_deref().unwrap_or("-")
        ));
    }
    if list.is_empty() {
        human = "no scheduled backups".to_owned();
    }
    args.output.print_result(&json!({"items": list}), &human)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `pvc-backup unschedule`.
pub fn unschedule(args: UnscheduleArgs) -> anyhow::Result<ExitCode> {
    let removed = with_cluster(&args.kube, async |kube| {
        let into = match (&args.to, &args.repository) {
            (Some(to), _) => flow::Destination::Claim(to),
            (None, Some(url)) => flow::Destination::Repository(url),
            (None, None) => flow::Destination::Any,
        };
        Ok(flow::unschedule(kube, &args.claim, into).await?)
    })?;
    let human = format!(
        "removed CronJob {} (the backup claims and repositories and their snapshots are kept)",
        removed.join(", ")
    );
    args.output
        .print_result(&json!({"removed": removed}), &human)?;
    Ok(ExitCode::SUCCESS)
}
