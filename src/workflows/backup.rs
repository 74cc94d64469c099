//! `pvc-backup backup CLAIM`: versioned backups of a claim into another claim, in the claim's
//! namespace or (`--to-namespace`, `--to-kubeconfig`) in another one, by two movers over the
//! wire.

use std::process::ExitCode;

use cluster::run::Outcome;
use cluster::workflow;
use cluster::workflow::backup::{self as flow, BackupRequest};
use contract::Report;
use serde_json::json;

use super::across::{AcrossFlags, plan_or_run_across};
use super::{KubeArgs, MoverFlags, OutputArgs, RepositoryFlags, RetentionArgs, plan_or_run};
use cluster::objects::claim::Role;

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
    #[command(flatten)]
    across: AcrossFlags,
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
    if args.across.is_across() {
        return backup_across(args);
    }
    args.across.refuse_within()?;
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

/// `pvc-backup backup CLAIM --to-namespace NS` (or `--to-kubeconfig`): the backup claim is in
/// another namespace or cluster; a receiving mover there adds the snapshot (`mover receive
/// --snapshot`), fed by a sending mover beside the source, over mutual TLS with a key pair made
/// here for this run.
fn backup_across(args: BackupArgs) -> anyhow::Result<ExitCode> {
    for (given, flag, why) in [
        (
            args.repository.target().is_some(),
            "--repository",
            "a repository is reached by the mover beside the claim; leave --to-namespace out",
        ),
        (
            args.from_snapshot,
            "--from-snapshot",
            "back up a claim restored from a snapshot by naming it, or leave --to-namespace out",
        ),
        (
            args.scale_down,
            "--scale-down",
            "stop the workload yourself for the run, or leave --to-namespace out",
        ),
        (
            args.subdir.is_some(),
            "--subdir",
            "leave --subdir out to back up the whole claim, or --to-namespace out",
        ),
        (
            args.mover.detached(),
            "--detach",
            "the run's keys and Service are removed when it ends, so it must be followed to \
             its end; leave --detach out",
        ),
    ] {
        if given {
            anyhow::bail!("{flag} with a backup into another namespace or cluster: {why}");
        }
    }
    let settings = args.mover.settings()?;
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| format!("{}-backup", args.claim));
    let mut request = args
        .across
        .request(&args.kube, &args.claim, &to, Role::Backup)?;
    request.storage_class = args.storage_class.clone();
    request.size = args.size.clone();
    request.snapshot = Some(args.keep.retention());
    let ran = plan_or_run_across(&args.kube, &args.output, &request, &settings, || {
        let namespace = args.kube.offline_namespace();
        Ok(flow::offline_source(
            &args.request(),
            &namespace,
            args.source_volume_mode.name(),
        )?)
    })?;
    let Some((kube, report)) = ran else {
        return Ok(ExitCode::SUCCESS);
    };
    let target = format!("{}/{}", report.namespace, report.target);
    let value = json!({
        "source": request.claim,
        "sourceNamespace": kube.namespace,
        "target": report.target,
        "namespace": report.namespace,
        "address": report.address,
        "createdClaim": report.created,
        "jobs": report.jobs(),
        "exitCode": report.exit_code(),
        "summary": report.receiver.summaries.last(),
    });
    let human = describe(
        "backup",
        &format!("claim {}/{}", kube.namespace, request.claim),
        &target,
        &report.receiver,
    );
    args.output.print_result(&value, &human)?;
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
}
