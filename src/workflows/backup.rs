//! `pvc-backup backup CLAIM`: versioned backups of a claim into another claim.

use std::process::ExitCode;

use cluster::run::Outcome;
use cluster::workflow;
use cluster::workflow::backup::{self as flow, BackupRequest};
use contract::Report;
use serde_json::json;

use super::{KubeArgs, MoverFlags, OutputArgs, RepositoryFlags, RetentionArgs, plan_or_run};

/// Volume modes, for planning without a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VolumeMode {
    /// A filesystem claim.
    Filesystem,
    /// A raw block claim.
    Block,
}

impl VolumeMode {
    /// The claim's `spec.volumeMode`.
    pub fn name(self) -> &'static str {
        match self {
            VolumeMode::Filesystem => "Filesystem",
            VolumeMode::Block => "Block",
        }
    }
}

/// Arguments of `pvc-backup backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The claim to back up.
    claim: String,
    /// The claim to back up into; created when missing (default: CLAIM-backup).
    #[arg(long, value_name = "NAME", conflicts_with = "repository")]
    to: Option<String>,
    #[command(flatten)]
    repository: RepositoryFlags,
    /// With --repository: create the repository when it does not exist yet.
    #[arg(long, requires = "repository")]
    init: bool,
    /// Storage class of the backup claim when it is created (default: the source's).
    #[arg(long, value_name = "CLASS", conflicts_with = "repository")]
    storage_class: Option<String>,
    /// Size of the backup claim when it is created (default and minimum: the source's capacity).
    #[arg(long, value_name = "QUANTITY")]
    size: Option<String>,
    /// Back up only this folder of the claim (the original's BCK_FOLDER).
    #[arg(long, value_name = "DIR")]
    subdir: Option<String>,
    #[command(flatten)]
    keep: RetentionArgs,
    /// Take a CSI VolumeSnapshot first and copy from a claim restored from it: a point-in-time
    /// backup while the workload keeps running, with no node pinning.
    #[arg(long)]
    from_snapshot: bool,
    /// The VolumeSnapshotClass for --from-snapshot (default: the cluster's default class).
    #[arg(long, value_name = "CLASS", requires = "from_snapshot")]
    snapshot_class: Option<String>,
    /// Scale the workloads that use the claim to zero for the copy and back up afterwards
    /// (needed for a ReadWriteOncePod claim in use, and for a backup of one moment without CSI
    /// snapshots).
    #[arg(long, conflicts_with = "from_snapshot")]
    scale_down: bool,
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

impl BackupArgs {
    /// The workflow's request.
    fn request(&self) -> BackupRequest {
        BackupRequest {
            claim: self.claim.clone(),
            to: self.to.clone(),
            storage_class: self.storage_class.clone(),
            size: self.size.clone(),
            subdir: self.subdir.clone(),
            retention: self.keep.retention(),
            from_snapshot: self.from_snapshot,
            snapshot_class: self.snapshot_class.clone(),
            scale_down: self.scale_down,
            run: None,
            repository: self.repository.target(),
            init: self.init,
        }
    }
}

/// Runs `pvc-backup backup`.
pub fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let request = args.request();
    let settings = args.mover.settings()?;
    let ran = plan_or_run(
        &args.kube,
        &args.output,
        || {
            let namespace = args.kube.offline_namespace();
            let source =
                flow::offline_source(&request, &namespace, args.source_volume_mode.name())?;
            let plan = flow::plan(
                &request,
                &settings,
                &source,
                None,
                Default::default(),
                &workflow::job_name(&format!("{}-backup", request.claim)),
            )?;
            Ok(plan.objects()?)
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
    let Some(outcome) = &report.outcome else {
        let human = format!(
            "Job {job} started; follow it with `kubectl logs -f job/{job} -n {ns}`",
            job = report.job,
            ns = kube.namespace
        );
        args.output.print_result(
            &json!({"target": report.target, "job": report.job, "detached": true}),
            &human,
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let value = json!({
        "source": request.claim,
        "target": report.target,
        "createdClaim": report.created_claim,
        "job": report.job,
        "node": outcome.node,
        "exitCode": outcome.exit_code,
        "summary": outcome.summaries.last(),
    });
    let human = describe(
        "backup",
        &format!("claim {}", request.claim),
        &report.target,
        outcome,
    );
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1)))
}

/// One line saying how a mover run from `source` (`claim NAME`, `repository URL`) into `target`
/// ended.
pub fn describe(what: &str, source: &str, target: &str, outcome: &Outcome) -> String {
    let report = outcome
        .summaries
        .last()
        .map(Report::read)
        .unwrap_or_default();
    let result = match contract::ExitCode::from_code(outcome.exit_code) {
        Some(contract::ExitCode::Ok) => "done".to_owned(),
        Some(contract::ExitCode::Partial) => {
            "partial: some entries failed (listed above and in the summary)".to_owned()
        }
        Some(contract::ExitCode::Refused) => {
            "refused: the source is empty or missing, so nothing was changed".to_owned()
        }
        _ => format!("failed with exit code {}", outcome.exit_code),
    };
    let mut line = format!("{what} of {source} into {target}: {result}");
    if let Some(snapshot) = &report.snapshot {
        // A repository's snapshot ids are 64 hex digits: restic's short form is the first 8.
        let restic_id = snapshot.len() == 64 && snapshot.bytes().all(|b| b.is_ascii_hexdigit());
        let shown = if restic_id { &snapshot[..8] } else { snapshot };
        line.push_str(&format!("; snapshot {shown}"));
    }
    if let Some(entries) = &report.entries {
        let bytes = report.bytes.clone().unwrap_or_default();
        line.push_str(&format!(
            "; {} entries, {} copied of {}",
            entries.total,
            cluster::quantity::human(u128::from(bytes.copied)),
            cluster::quantity::human(u128::from(bytes.total)),
        ));
    }
    if let Some(ms) = report.duration_ms {
        line.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    line
}
