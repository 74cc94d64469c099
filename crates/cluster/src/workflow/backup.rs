//! `pvc-backup backup CLAIM`: versioned backups of a claim into another claim.
//!
//! Ensures the target claim (default `CLAIM-backup`, at least the source's size), runs the mover
//! in a Job next to the workload (source read-only at /source, target at /backup), follows its
//! progress and records the result on the target claim. With a CSI snapshot first, the copy is
//! taken from a claim restored from the snapshot, so the workload keeps running undisturbed and
//! the backup is of one moment.

use contract::{Excludes, MoverCommand, Retention};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use serde_json::Value;

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{self, MANAGED_BY, SOURCE_MOUNT, TARGET_MOUNT};
use crate::objects::claim::{self, ClaimRequest, Role};
use crate::objects::mover::{Mount, MoverJob, Placement};
use crate::objects::repository::{self, RepositoryTarget};
use crate::objects::{self, snapshot};
use crate::run::{Observer, Outcome};
use crate::workflow::stopped::{BACKUP_STEPS, StoppedFor};
use crate::workflow::{self, MoverSettings, steps};
use crate::{Error, Result, placement};

/// What to back up, and where.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// The source claim.
    pub claim: String,
    /// The target claim (default `CLAIM-backup`).
    pub to: Option<String>,
    /// Storage class of a target claim to create.
    pub storage_class: Option<String>,
    /// Size of a target claim to create (at least the source's capacity).
    pub size: Option<String>,
    /// Back up only this folder of the source (the original's BCK_FOLDER).
    pub subdir: Option<String>,
    /// Which snapshots to keep.
    pub retention: Retention,
    /// Copy from a CSI VolumeSnapshot of the source instead of the live claim.
    pub from_snapshot: bool,
    /// The VolumeSnapshotClass (the cluster's default if `None`).
    pub snapshot_class: Option<String>,
    /// Scale the workloads using the claim to zero for the copy, and back up afterwards.
    pub scale_down: bool,
    /// The run's id in its Job's name (`CLAIM-backup-RUN`), for a caller that takes the same
    /// run up again after a restart and must find the Job it created, not start a second one
    /// (the operator gives its Backup's); `None` gives a fresh one. A `scale_down` run that
    /// goes on from a record on the claim keeps the record's id.
    pub run: Option<String>,
    /// Back up into this restic-format repository instead of a claim: no target claim, the
    /// source alone is mounted, and the password and keys come from the named Secret.
    pub repository: Option<RepositoryTarget>,
    /// With `repository`: create the repository when it does not exist yet.
    pub init: bool,
}

impl BackupRequest {
    /// The arguments a recorded `--scale-down` backup must be run again with, as a command line
    /// would give them.
    pub fn arguments(&self) -> String {
        let mut a = match &self.repository {
            Some(r) => format!(
                "--scale-down --repository {} --repository-secret {}",
                r.url, r.secret
            ),
            None => format!("--scale-down --to {}", self.target()),
        };
        if let Some(d) = &self.subdir {
            a.push_str(&format!(" --subdir {d}"));
        }
        if self.from_snapshot {
            a.push_str(" --from-snapshot");
        }
        a
    }

    /// The name of the run's Job, `CLAIM-backup-RUN`: with [`run`](Self::run) the same each
    /// time, else with a fresh id.
    pub fn job_name(&self) -> String {
        let prefix = format!("{}-backup", self.claim);
        match &self.run {
            Some(run) => workflow::job_name_in_run(&prefix, run),
            None => workflow::job_name(&prefix),
        }
    }

    /// Where the backup goes, as a user names it: the repository's URL, or the target claim.
    pub fn destination(&self) -> String {
        match &self.repository {
            Some(r) => r.url.clone(),
            None => self.target(),
        }
    }

    /// The target claim's name (with a repository: the name a schedule takes by default).
    pub fn target(&self) -> String {
        self.to
            .clone()
            .unwrap_or_else(|| format!("{}-backup", self.claim))
    }
}

/// The objects a backup creates, in order.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// The target claim, when it does not exist yet.
    pub create_claim: Option<PersistentVolumeClaim>,
    /// The VolumeSnapshot and the claim restored from it, with `--from-snapshot`.
    pub snapshot: Option<(Value, PersistentVolumeClaim)>,
    /// The mover Job.
    pub job: MoverJob,
}

impl BackupPlan {
    /// The plan's objects as JSON, in the order they are created.
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        if let Some(c) = &self.create_claim {
            out.push(objects::to_value(c)?);
        }
        if let Some((snap, scratch)) = &self.snapshot {
            out.push(snap.clone());
            out.push(objects::to_value(scratch)?);
        }
        out.push(objects::to_value(&self.job.job())?);
        Ok(out)
    }
}

/// The mover command of a backup.
pub fn mover_command(request: &BackupRequest, excludes: &Excludes) -> MoverCommand {
    mover_command_in(request, excludes, "")
}

/// The mover command of a backup of a claim in `namespace` (which names a repository's
/// snapshot series).
fn mover_command_in(request: &BackupRequest, excludes: &Excludes, namespace: &str) -> MoverCommand {
    if let Some(r) = &request.repository {
        return MoverCommand::RepositoryBackup {
            src: SOURCE_MOUNT.to_owned(),
            repository: r.url.clone(),
            host: r
                .host
                .clone()
                .unwrap_or_else(|| repository::host(namespace, &request.claim)),
            init: request.init,
            retention: request.retention,
            subdir: request.subdir.clone(),
            excludes: excludes.clone(),
        };
    }
    MoverCommand::Backup {
        src: SOURCE_MOUNT.to_owned(),
        dst: TARGET_MOUNT.to_owned(),
        retention: request.retention,
        subdir: request.subdir.clone(),
        excludes: excludes.clone(),
    }
}

/// A stand-in for the source claim when planning without a cluster (`--dry-run=client`).
pub fn offline_source(
    request: &BackupRequest,
    namespace: &str,
    volume_mode: &str,
) -> Result<PersistentVolumeClaim> {
    // A backup into a repository makes no claim: the source's size is never read.
    let placeholder = request.repository.as_ref().map(|_| "1Gi".to_owned());
    let Some(size) = request.size.as_ref().or(placeholder.as_ref()) else {
        return Err(Error::Invalid(
            "--dry-run=client cannot read the source claim's size: give --size".to_owned(),
        ));
    };
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(request.claim.clone()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            volume_mode: Some(volume_mode.to_owned()),
            resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity(size.clone()))].into()),
                ..Default::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

/// Plans a backup from what is known: the source claim, the target claim if it exists, and
/// where the mover must run.
pub fn plan(
    request: &BackupRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    existing_target: Option<&PersistentVolumeClaim>,
    placement: Placement,
    job_name: &str,
) -> Result<BackupPlan> {
    names::check_name("claim", &request.claim, 253)?;
    let target = request.target();
    if target == request.claim {
        return Err(Error::Invalid(format!(
            "the target claim {target} is the source claim: name another with --to"
        )));
    }
    let namespace = source.metadata.namespace.clone().unwrap_or_default();
    let source_block = source.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block");
    if source_block {
        workflow::check_no_excludes_for_block(&settings.excludes, &request.claim)?;
    }
    if let Some(r) = &request.repository {
        r.check()?;
        if request.to.is_some() || request.storage_class.is_some() {
            return Err(Error::Invalid(
                "--to and --storage-class describe a backup claim; a backup into a \
                 repository has none: leave them out"
                    .to_owned(),
            ));
        }
        if source_block {
            return Err(Error::Invalid(format!(
                "claim {} is a Block claim: a repository holds folders; back it up into a \
                 claim instead (leave out --repository)",
                request.claim
            )));
        }
        if settings.excludes.delete_excluded {
            return Err(Error::Invalid(
                "--delete-excluded applies to backup claims, not to a repository".to_owned(),
            ));
        }
    } else if request.init {
        return Err(Error::Invalid(
            "--init creates a repository: give --repository too".to_owned(),
        ));
    }
    let create_claim = match existing_target {
        _ if request.repository.is_some() => None,
        Some(t) => {
            if t.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
                return Err(Error::Invalid(format!(
                    "the target claim {target} is a Block claim: backups are stored as files; \
                     name a Filesystem claim with --to, or a new name"
                )));
            }
            // A workload runs on one of its snapshots since `restore --swap`: a new snapshot's
            // retention could remove that one.
            if let Some(user) = t
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::workflow::restore::SWAPPED_INTO))
            {
                return Err(Error::Invalid(format!(
                    "the target claim {target} is in use by {user} since restore --swap: back \
                     up into another claim with --to, or switch the workload back first \
                     (pvc-backup rollback)"
                )));
            }
            None
        }
        None => {
            let mut req = ClaimRequest::like(
                source,
                &target,
                Role::Backup,
                request.storage_class.as_deref(),
                request.size.as_deref(),
            )?;
            // Versions of a block volume are image files: the backup claim is a filesystem,
            // used by the mover alone.
            req.volume_mode = "Filesystem".to_owned();
            req.access_modes = vec!["ReadWriteOnce".to_owned()];
            Some(claim::claim(&req))
        }
    };
    let mut source_claim = request.claim.clone();
    let mut snapshot = None;
    let mut placement = placement;
    if request.from_snapshot {
        let snap_name = job_name.to_owned();
        let labels = claim::labels(&request.claim, Role::Scratch);
        let snap = snapshot::volume_snapshot(
            &snap_name,
            &namespace,
            &request.claim,
            request.snapshot_class.as_deref(),
            &labels,
        );
        let mut req = ClaimRequest::like(source, &snap_name, Role::Scratch, None, None)?;
        req.access_modes = vec!["ReadWriteOnce".to_owned()];
        req.data_source = Some(snapshot::data_source(&snap_name));
        snapshot = Some((snap, claim::claim(&req)));
        source_claim = snap_name;
        // A claim restored from a snapshot is attached nowhere yet.
        placement = Placement::Anywhere;
    }
    let mut mounts = vec![Mount {
        volume: "source".to_owned(),
        claim: source_claim,
        path: SOURCE_MOUNT.to_owned(),
        read_only: true,
        block: source_block,
    }];
    if request.repository.is_none() {
        mounts.push(Mount {
            volume: "backup".to_owned(),
            claim: target,
            path: TARGET_MOUNT.to_owned(),
            read_only: false,
            block: false,
        });
    }
    let job = MoverJob {
        name: job_name.to_owned(),
        args: mover_command_in(request, &settings.excludes, &namespace).args(),
        namespace,
        source: request.claim.clone(),
        role: Role::Backup,
        image: settings.image.clone(),
        privilege: settings.privilege,
        mounts,
        placement,
        resources: settings.resources.clone(),
        limits: settings.limits,
        extra_labels: Default::default(),
        env: request
            .repository
            .as_ref()
            .map(RepositoryTarget::env)
            .unwrap_or_default(),
        keys: None,
        port: None,
    };
    Ok(BackupPlan {
        create_claim,
        snapshot,
        job,
    })
}

/// How a backup ended.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The target claim.
    pub target: String,
    /// Whether this run created it.
    pub created_claim: bool,
    /// The Job.
    pub job: String,
    /// The mover's result; `None` when detached.
    pub outcome: Option<Outcome>,
}

/// Reads what the plan needs from the cluster and plans (also for `--dry-run`).
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &BackupRequest,
    settings: &MoverSettings,
) -> Result<BackupPlan> {
    let source = workflow::get_claim(kube, &request.claim).await?;
    let job_name = workflow::job_name(&format!("{}-backup", request.claim));
    plan_with(kube, request, settings, &source, &job_name).await
}

/// [`plan_from_cluster`] with the source claim already read.
async fn plan_with(
    kube: &Kube,
    request: &BackupRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    job_name: &str,
) -> Result<BackupPlan> {
    let target = match request.repository {
        Some(_) => None,
        None => workflow::find_claim(kube, &request.target()).await?,
    };
    let placement = if request.from_snapshot {
        Placement::Anywhere
    } else {
        // Pods of workloads that --scale-down stops do not pin the mover.
        let ignore: Vec<String> = if request.scale_down {
            placement::users(kube, &request.claim)
                .await?
                .into_iter()
                .map(|u| u.pod)
                .collect()
        } else {
            Vec::new()
        };
        placement::place(kube, &[source], &ignore).await?
    };
    plan(
        request,
        settings,
        source,
        target.as_ref(),
        placement,
        job_name,
    )
}

/// Runs a backup; with `scale_down`, the workloads using the claim are stopped for the copy and
/// scaled back up afterwards, whatever happened.
pub async fn run(
    kube: &Kube,
    request: &BackupRequest,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<BackupReport> {
    let scale: &[access::Permission] = if request.scale_down {
        access::SCALE
    } else {
        &[]
    };
    let secret = secret_permissions(request.repository.as_ref());
    access::check(kube, &[access::MOVER_RUN, scale, secret]).await?;
    // The source must exist before anything is scaled, and so must the repository's Secret.
    let source = workflow::get_claim(kube, &request.claim).await?;
    if let Some(r) = &request.repository {
        check_repository(kube, r).await?;
    }
    if !request.scale_down {
        let job_name = request.job_name();
        return backup(kube, request, settings, &source, &job_name, observer).await;
    }
    let mut stopped =
        StoppedFor::begin(BACKUP_STEPS, &source, &kube.namespace, &request.arguments())?
            .named(request.run.as_deref());
    let guard = stopped.stop_users(kube, observer).await?;
    let job_name = stopped.job_name(&format!("{}-backup", request.claim));
    let result = backup(kube, request, settings, &source, &job_name, observer).await;
    stopped.start_after(kube, guard, observer, result).await
}

async fn backup(
    kube: &Kube,
    request: &BackupRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    job_name: &str,
    observer: &mut dyn Observer,
) -> Result<BackupReport> {
    let plan = plan_with(kube, request, settings, source, job_name).await?;
    let target = request.destination();
    let created_claim = plan.create_claim.is_some();
    if let Some(claim) = &plan.create_claim {
        observer.step(&format!("creating claim {target}"));
        workflow::create_claim(kube, claim).await?;
    }
    let result = match &plan.snapshot {
        None => steps::run_mover(kube, &plan.job, settings, settings.detach, observer).await,
        Some((snap, scratch)) => {
            let r = async {
                take_snapshot(kube, snap, settings, observer).await?;
                observer.step(&format!(
                    "restoring the snapshot into temporary claim {}",
                    scratch.metadata.name.as_deref().unwrap_or_default()
                ));
                workflow::create_claim(kube, scratch).await?;
                steps::run_mover(kube, &plan.job, settings, settings.detach, observer).await
            }
            .await;
            // The snapshot and its claim are temporary, whatever happened.
            let cleaned = remove_snapshot(kube, snap, scratch, observer).await;
            match (r, cleaned) {
                (Ok(o), Ok(())) => Ok(o),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e),
            }
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            // A claim this run made and never copied into is removed with the Job.
            if created_claim && e.is_stop() {
                let _ = workflow::delete_claim(kube, &target).await;
            }
            return Err(e);
        }
    };
    if let Some(o) = &outcome {
        match &request.repository {
            Some(r) => workflow::record_repository_run(kube, &request.claim, &r.url, o).await?,
            None => workflow::record_run(kube, &target, o).await?,
        }
    }
    Ok(BackupReport {
        target,
        created_claim,
        job: plan.job.name.clone(),
        outcome,
    })
}

/// What reading a repository's Secret adds to a workflow's permissions: nothing when there is
/// no repository or its Secret is not read.
pub fn secret_permissions(repository: Option<&RepositoryTarget>) -> &'static [access::Permission] {
    match repository {
        Some(r) if r.checks_secret() => access::REPOSITORY,
        _ => &[],
    }
}

/// Checks that the repository's Secret exists in the namespace with every key the mover needs,
/// before any object is made (unless it is not to be read: then only the URL and name).
pub async fn check_repository(kube: &Kube, repository: &RepositoryTarget) -> Result<()> {
    repository.check()?;
    if !repository.checks_secret() {
        return Ok(());
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = api::namespaced(kube);
    let secret = api::get_opt(&secrets, "Secret", &repository.secret).await?;
    repository.check_secret(&kube.namespace, secret.as_ref())
}

async fn take_snapshot(
    kube: &Kube,
    snap: &Value,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<()> {
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &snapshot::api_resource(),
    );
    let name = snap["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    observer.step(&format!("taking VolumeSnapshot {name}"));
    let object: DynamicObject =
        serde_json::from_value(snap.clone()).map_err(|e| Error::Serialise {
            what: "VolumeSnapshot".to_owned(),
            message: e.to_string(),
        })?;
    snapshots
        .create(&PostParams::default(), &object)
        .await
        .map_err(Error::api(format!(
            "create VolumeSnapshot {name} (are CSI snapshots installed?)"
        )))?;
    let timeout = settings.run.start_timeout;
    let settled = |s: Option<&DynamicObject>| {
        s.is_none_or(|s| snapshot::state(&serde_json::to_value(s).unwrap_or_default()) != Ok(false))
    };
    let waited = api::wait_for(snapshots, "VolumeSnapshot", &name, timeout, settled).await?;
    let Some(current) = waited else {
        return Err(Error::Failed(format!(
            "VolumeSnapshot {name} was not ready within {} s; check that the claim's \
             storage class has a CSI driver with snapshots and a VolumeSnapshotClass \
             (--snapshot-class), or raise --start-timeout",
            timeout.as_secs()
        )));
    };
    let Some(current) = current else {
        return Err(Error::Failed(format!(
            "VolumeSnapshot {name} was deleted while pvc-backup waited for it to be ready; \
             run the backup again"
        )));
    };
    match snapshot::state(&serde_json::to_value(&current).unwrap_or_default()) {
        Err(message) => Err(Error::Failed(format!(
            "VolumeSnapshot {name} failed: {message}; check --snapshot-class and that the \
             claim's CSI driver supports snapshots"
        ))),
        Ok(_) => Ok(()),
    }
}

async fn remove_snapshot(
    kube: &Kube,
    snap: &Value,
    scratch: &PersistentVolumeClaim,
    observer: &mut dyn Observer,
) -> Result<()> {
    let scratch_name = scratch.metadata.name.clone().unwrap_or_default();
    observer.step(&format!(
        "removing the temporary claim and VolumeSnapshot {scratch_name}"
    ));
    workflow::delete_claim(kube, &scratch_name).await?;
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &snapshot::api_resource(),
    );
    let name = snap["metadata"]["name"].as_str().unwrap_or_default();
    api::delete(&snapshots, "VolumeSnapshot", name, &DeleteParams::default()).await
}

/// Whether a claim was made by pvc-backup.
pub fn managed(claim: &PersistentVolumeClaim) -> bool {
    claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}
