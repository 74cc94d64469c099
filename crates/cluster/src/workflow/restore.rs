//! `pvc-backup restore CLAIM --from BACKUP`: bring a backup's snapshot back, by copying it into
//! the claim (the workload stopped meanwhile) or, with `--swap`, by pointing the workload's
//! volume at the snapshot inside the backup claim; and `pvc-backup rollback KIND/NAME`, which
//! points a workload back at the claims recorded before pvc-backup changed them.

use std::collections::BTreeMap;
use std::time::Duration;

use contract::{Listing, MoverCommand};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use serde_json::{Value, json};

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{self, SOURCE_MOUNT, TARGET_MOUNT};
use crate::objects;
use crate::objects::claim::Role;
use crate::objects::mover::{MoverJob, Placement};
use crate::objects::repository::{self, RepositoryTarget};
use crate::run::{self, Observer, Outcome};
use crate::workflow::progress::{PROGRESS, Progress, Steps};
use crate::workflow::steps::{self, mount};
use crate::workflow::stopped::{RESTORE_STEPS, StoppedFor};
use crate::workflow::{self, MoverSettings};
use crate::workload::{self, ClaimUse, ScaledDown, SubPath, Workload};
use crate::{Error, Result, placement};

/// Annotation on a backup claim that a workload runs on after `restore --swap`: the workload
/// and the snapshot (`deployment/web snapshots/ID`). Backups into that claim would change what
/// the workload uses; `rollback` removes the annotation.
pub const SWAPPED_INTO: &str = "pvc-backup.io/swapped-into";

/// What to restore, from where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The claim to restore (the workload's).
    pub claim: String,
    /// The backup claim (with `repository`: the repository's URL, as messages name it).
    pub from: String,
    /// Restore from this restic-format repository instead of a backup claim; the password
    /// and keys come from the named Secret.
    pub repository: Option<RepositoryTarget>,
    /// With `repository`: the snapshot series (`mover backup --host`) whose newest snapshot
    /// `latest` is; default `NAMESPACE/CLAIM`, the series of backups of this claim.
    pub host: Option<String>,
    /// The snapshot: its name or `latest`.
    pub snapshot: String,
    /// The workload to stop (copy) or repoint (swap); default: the one whose pods use the claim.
    pub workload: Option<Workload>,
    /// Point the workload at the snapshot in the backup claim instead of copying it.
    pub swap: bool,
    /// How long the workload's pods may take to stop.
    pub scale_timeout: Duration,
    /// The run's id in its Jobs' names, for a caller that takes the same run up again after a
    /// restart and must find the Jobs it created (the operator gives its resource's); `None`
    /// gives a fresh one. A run that goes on from a record on the claim keeps the record's id.
    pub run: Option<String>,
}

impl RestoreRequest {
    fn check(&self) -> Result<()> {
        names::check_name("claim", &self.claim, 253)?;
        if let Some(r) = &self.repository {
            r.check()?;
            if self.swap {
                return Err(Error::Invalid(
                    "--swap points a workload at a snapshot inside a backup claim; a \
                     repository's snapshots must be copied out: leave out --swap"
                        .to_owned(),
                ));
            }
        } else {
            names::check_name("backup claim", &self.from, 253)?;
        }
        if self.repository.is_none() && self.claim == self.from {
            return Err(Error::Invalid(format!(
                "claim {} cannot be restored from itself: give the backup claim with --from",
                self.claim
            )));
        }
        let id_ok = self.snapshot == store::layout::LATEST
            || (!self.snapshot.is_empty()
                && self
                    .snapshot
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                && !self.snapshot.starts_with('.'));
        if !id_ok {
            return Err(Error::Invalid(format!(
                "--snapshot {:?} is not a snapshot name: give one listed by `pvc-backup mover \
                 snapshots`, or latest",
                self.snapshot
            )));
        }
        Ok(())
    }
}

/// The mover Job that copies the snapshot back into the claim.
pub fn restore_job(
    request: &RestoreRequest,
    settings: &MoverSettings,
    target: &PersistentVolumeClaim,
    placement: Placement,
    job_name: &str,
) -> Result<MoverJob> {
    request.check()?;
    let namespace = target.metadata.namespace.clone().unwrap_or_default();
    let mut job = steps::mover_job(
        settings,
        job_name,
        &namespace,
        &request.claim,
        Role::Restore,
    );
    if let Some(r) = &request.repository {
        if steps::is_block(target) {
            return Err(Error::Invalid(format!(
                "claim {} is a Block claim: a repository holds folders, not block volumes",
                request.claim
            )));
        }
        if !settings.excludes.is_empty() || settings.excludes.delete_excluded {
            return Err(Error::Invalid(
                "a restore from a repository restores the whole snapshot: leave out --exclude"
                    .to_owned(),
            ));
        }
        job.args = MoverCommand::RepositoryRestore {
            repository: r.url.clone(),
            target: SOURCE_MOUNT.to_owned(),
            snapshot: request.snapshot.clone(),
            host: request
                .host
                .clone()
                .unwrap_or_else(|| repository::host(&namespace, &request.claim)),
        }
        .args();
        job.mounts = vec![mount("source", &request.claim, SOURCE_MOUNT, false, false)];
        job.env = r.env();
        job.placement = placement;
        return Ok(job);
    }
    // The claims keep their usual places: the workload's claim at /source, the backup at
    // /backup; only the direction of the copy changes.
    job.args = MoverCommand::Restore {
        backup: TARGET_MOUNT.to_owned(),
        target: SOURCE_MOUNT.to_owned(),
        snapshot: request.snapshot.clone(),
        fsync: true,
        excludes: settings.excludes.clone(),
    }
    .args();
    if steps::is_block(target) {
        workflow::check_no_excludes_for_block(&settings.excludes, &request.claim)?;
    }
    job.mounts = vec![
        mount("backup", &request.from, TARGET_MOUNT, true, false),
        mount(
            "source",
            &request.claim,
            SOURCE_MOUNT,
            false,
            steps::is_block(target),
        ),
    ];
    job.placement = placement;
    Ok(job)
}

/// The mover Job that lists the backup claim's snapshots (for `--swap`, which needs a name).
pub fn listing_job(
    request: &RestoreRequest,
    settings: &MoverSettings,
    namespace: &str,
    placement: Placement,
    job_name: &str,
) -> MoverJob {
    let mut job = steps::mover_job(settings, job_name, namespace, &request.claim, Role::Restore);
    job.args = MoverCommand::Snapshots {
        dst: TARGET_MOUNT.to_owned(),
    }
    .args();
    job.mounts = vec![mount("backup", &request.from, TARGET_MOUNT, true, false)];
    job.placement = placement;
    job
}

/// The snapshot `wanted` (a name or `latest`) in the listing printed by `mover snapshots
/// --json`, checked to exist and to be complete.
pub fn pick_snapshot(listing: &Listing, wanted: &str, backup: &str) -> Result<String> {
    let names = listing.ids();
    let found = if wanted == store::layout::LATEST {
        listing.latest()
    } else {
        names.iter().copied().find(|id| *id == wanted)
    };
    let Some(found) = found else {
        return Err(Error::Invalid(if names.is_empty() {
            format!("backup claim {backup} holds no snapshot: run pvc-backup backup first")
        } else {
            format!(
                "backup claim {backup} has no snapshot {wanted}; it has: {}",
                names.join(", ")
            )
        }));
    };
    if listing.is_block() {
        return Err(Error::Invalid(format!(
            "backup claim {backup} holds versions of a block volume (image files): a workload \
             cannot run on an image file; restore by copying (without --swap)"
        )));
    }
    Ok(found.to_owned())
}

/// The objects a restore creates (for `--dry-run`).
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The Job: the copy, or for `--swap` the listing of snapshots.
    pub job: MoverJob,
}

impl RestorePlan {
    /// The plan's objects as JSON.
    pub fn objects(&self) -> Result<Vec<Value>> {
        Ok(vec![objects::to_value(&self.job.job())?])
    }
}

/// Reads what the plan needs and plans (also for `--dry-run`). Call it before the workload is
/// stopped: the copy runs on the node its pods run on, where the volume stays attached.
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &RestoreRequest,
    settings: &MoverSettings,
) -> Result<RestorePlan> {
    request.check()?;
    let target = workflow::get_claim(kube, &request.claim).await?;
    let backup = backup_claim(kube, request).await?;
    let job_name = workflow::job_name(&format!("{}-restore", request.claim));
    plan_with(kube, request, settings, &target, backup.as_ref(), &job_name).await
}

/// The backup claim, read; `None` for a restore from a repository.
async fn backup_claim(
    kube: &Kube,
    request: &RestoreRequest,
) -> Result<Option<PersistentVolumeClaim>> {
    match request.repository {
        Some(_) => Ok(None),
        None => Ok(Some(workflow::get_claim(kube, &request.from).await?)),
    }
}

/// [`plan_from_cluster`] with the claim to restore and the backup claim already read.
async fn plan_with(
    kube: &Kube,
    request: &RestoreRequest,
    settings: &MoverSettings,
    target: &PersistentVolumeClaim,
    backup: Option<&PersistentVolumeClaim>,
    job_name: &str,
) -> Result<RestorePlan> {
    let Some(backup) = backup else {
        let placement = steps::pin_to_users(kube, &[target]).await?;
        return Ok(RestorePlan {
            job: restore_job(request, settings, target, placement, job_name)?,
        });
    };
    if request.swap {
        let placement = placement::place(kube, &[backup], &[]).await?;
        return Ok(RestorePlan {
            job: listing_job(request, settings, &kube.namespace, placement, job_name),
        });
    }
    let placement = steps::pin_to_users(kube, &[target, backup]).await?;
    Ok(RestorePlan {
        job: restore_job(request, settings, target, placement, job_name)?,
    })
}

/// How a restore ended.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// The claim restored.
    pub claim: String,
    /// The backup claim.
    pub from: String,
    /// The snapshot (its name after a swap; as asked for a copy).
    pub snapshot: String,
    /// The workload stopped and started (copy) or repointed (swap).
    pub workload: Option<String>,
    /// The volume of the workload that now uses the backup claim (swap).
    pub volume: Option<String>,
    /// The copy's result (copy, unless detached).
    pub outcome: Option<Outcome>,
    /// The Job left running (`--detach`).
    pub detached: Option<String>,
}

/// Restores a snapshot: by copying it into the claim with the workload stopped, or with
/// `swap` by pointing the workload's volume at it.
pub async fn run(
    kube: &Kube,
    request: &RestoreRequest,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<RestoreReport> {
    request.check()?;
    let secret = crate::workflow::backup::secret_permissions(request.repository.as_ref());
    access::check(kube, &[access::MOVER_RUN, access::SCALE, secret]).await?;
    let target = workflow::get_claim(kube, &request.claim).await?;
    let backup = backup_claim(kube, request).await?;
    if let Some(r) = &request.repository {
        crate::workflow::backup::check_repository(kube, r).await?;
    }
    let mut report = RestoreReport {
        claim: request.claim.clone(),
        from: request.from.clone(),
        snapshot: request.snapshot.clone(),
        ..RestoreReport::default()
    };
    if let (true, Some(backup)) = (request.swap, &backup) {
        let claims = (&target, backup);
        swap(kube, request, settings, claims, &mut report, observer).await?;
        return Ok(report);
    }
    let mut stopped = StoppedFor::begin(
        RESTORE_STEPS,
        &target,
        &kube.namespace,
        &request.arguments(),
    )?
    .named(request.run.as_deref());
    // A run that was interrupted stopped it: its pods are gone, the record names it.
    let workload = match stopped.recorded()? {
        Some(recorded) => recorded.into_iter().next(),
        None => workload::resolve(kube, request.workload.as_ref(), &request.claim).await?,
    };
    report.workload = workload.as_ref().map(ToString::to_string);
    let job_name = stopped.job_name(&format!("{}-restore", request.claim));
    // Any pod left writing would mix its writes with the restored files; the copy an
    // interrupted run started is this run's own, followed below.
    for user in placement::users(kube, &request.claim).await? {
        if run::is_of_job(&user.object, &job_name) {
            continue;
        }
        let owner = workload::owner_of(kube, &user.object).await?;
        if owner.is_none() || owner != workload {
            return Err(Error::Invalid(format!(
                "pod {} ({}) uses claim {} too and would keep writing to it during the \
                 restore: stop it first, or name its workload with --workload",
                user.pod,
                owner.map_or("no workload".to_owned(), |o| o.to_string()),
                request.claim
            )));
        }
    }
    let plan = plan_with(kube, request, settings, &target, backup.as_ref(), &job_name).await?;
    let guard = match &workload {
        Some(w) => {
            observer.step(&format!("scaling {w} to zero"));
            stopped
                .stop(kube, std::slice::from_ref(w), request.scale_timeout)
                .await?
        }
        None => ScaledDown::default(),
    };
    let result = async {
        observer.step(&format!(
            "restoring snapshot {} of {} into claim {}",
            request.snapshot, request.from, request.claim
        ));
        steps::run_mover(kube, &plan.job, settings, settings.detach, observer)
            .await
            .map(|o| (o, plan.job.name.clone()))
    }
    .await;
    // A detached copy still runs: the workload must stay stopped until it is done.
    let (outcome, job) = if matches!(result, Ok((None, _))) {
        stopped.leave_down(kube, guard).await?;
        result?
    } else {
        stopped.start_after(kube, guard, observer, result).await?
    };
    match outcome {
        Some(o) => report.outcome = Some(o),
        None => report.detached = Some(job),
    }
    Ok(report)
}

/// The steps of `restore --swap`.
pub const SWAP_STEPS: Steps = Steps {
    workflow: "restore --swap",
    names: &[LIST, POINT, MARK],
};

const LIST: &str = "read-snapshots";
const POINT: &str = "repoint";
const MARK: &str = "mark-backup";

// What the record keeps for later steps.
const WORKLOAD: &str = "workload";
const SNAPSHOT: &str = "snapshot";
const VOLUME: &str = "volume";

impl RestoreRequest {
    /// The arguments a recorded restore must be run again with, as a command line would give
    /// them.
    pub fn arguments(&self) -> String {
        let mut a = match &self.repository {
            Some(r) => {
                let mut a = format!(
                    "--repository {} --repository-secret {} --snapshot {}",
                    r.url, r.secret, self.snapshot
                );
                if let Some(h) = &self.host {
                    a.push_str(&format!(" --host {h}"));
                }
                a
            }
            None => format!("--from {} --snapshot {}", self.from, self.snapshot),
        };
        if self.swap {
            a.push_str(" --swap");
        }
        if let Some(w) = &self.workload {
            a.push_str(&format!(" --workload {w}"));
        }
        a
    }
}

/// `--swap`; `claims` are the claim to restore and the backup claim, as read. Its record,
/// [`PROGRESS`], is on the claim restored, which the swap never changes; the same command run
/// again after an interruption goes on from the first step not done.
async fn swap(
    kube: &Kube,
    request: &RestoreRequest,
    settings: &MoverSettings,
    (target, backup): (&PersistentVolumeClaim, &PersistentVolumeClaim),
    report: &mut RestoreReport,
    observer: &mut dyn Observer,
) -> Result<()> {
    let holder = format!("pvc/{} -n {}", request.claim, kube.namespace);
    let found = Progress::read(target.metadata.annotations.as_ref(), &holder)?;
    let resuming = found.is_some();
    let mut progress =
        SWAP_STEPS.resume_or_start(found, &request.claim, &request.arguments(), &holder)?;
    let w: Workload = if resuming {
        observer.step(&format!(
            "going on with the swap of claim {} recorded in {holder} (last step done: {})",
            request.claim,
            progress.done.as_deref().unwrap_or("none")
        ));
        progress.get(WORKLOAD).unwrap_or_default().parse()?
    } else {
        let w = swap_checks(kube, request, target).await?;
        progress.set(WORKLOAD, w.to_string());
        workflow::record_progress(kube, &request.claim, Some(&progress)).await?;
        w
    };
    report.workload = Some(w.to_string());
    let result = swap_steps(
        kube,
        request,
        settings,
        backup,
        &w,
        &mut progress,
        report,
        observer,
    )
    .await;
    match result {
        Ok(()) => workflow::record_progress(kube, &request.claim, None).await,
        // Nothing was changed yet: nothing to go on with.
        Err(e) if !SWAP_STEPS.is_done(&progress, POINT) => {
            let cleared = workflow::record_progress(kube, &request.claim, None).await;
            Error::with_undo(Err(e), cleared)
        }
        Err(e) => Err(e.context(format!(
            "the swap stopped half-way, as annotation {PROGRESS} on claim {} records: run the \
             same command again to finish it",
            request.claim
        ))),
    }
}

/// What a swap checks before it changes anything; returns the workload to repoint.
async fn swap_checks(
    kube: &Kube,
    request: &RestoreRequest,
    target: &PersistentVolumeClaim,
) -> Result<Workload> {
    let Some(w) = workload::resolve(kube, request.workload.as_ref(), &request.claim).await? else {
        return Err(Error::Invalid(format!(
            "no workload uses claim {}: name the one to point at the backup with --workload \
             KIND/NAME",
            request.claim
        )));
    };
    if steps::is_block(target) {
        return Err(Error::Invalid(format!(
            "claim {} is a Block claim; its backups are image files a workload cannot run \
             on: restore by copying (without --swap)",
            request.claim
        )));
    }
    match workload::claim_use(&w.get(kube).await?, &request.claim)? {
        Some(ClaimUse::Volume(_)) => Ok(w),
        Some(ClaimUse::Template(t)) => Err(Error::Invalid(format!(
            "claim {} comes from the volumeClaimTemplates entry {t:?} of {w}, which cannot \
             point elsewhere: restore by copying (without --swap)",
            request.claim
        ))),
        None => Err(Error::Invalid(format!(
            "{w} has no volume that uses claim {}: name the workload that does with \
             --workload",
            request.claim
        ))),
    }
}

/// The swap's steps, each skipped when the record says it was done.
#[allow(clippy::too_many_arguments)]
async fn swap_steps(
    kube: &Kube,
    request: &RestoreRequest,
    settings: &MoverSettings,
    backup: &PersistentVolumeClaim,
    w: &Workload,
    progress: &mut Progress,
    report: &mut RestoreReport,
    observer: &mut dyn Observer,
) -> Result<()> {
    if !SWAP_STEPS.is_done(progress, LIST) {
        observer.step(&format!("reading the snapshots of {}", request.from));
        let job_name =
            workflow::job_name_in_run(&format!("{}-restore", request.claim), &progress.run);
        let plan = plan_with(kube, request, settings, backup, Some(backup), &job_name).await?;
        let outcome =
            steps::run_mover_ok(kube, &plan.job, settings, "listing the snapshots", observer)
                .await?;
        let listing = outcome
            .messages
            .iter()
            .rev()
            .find_map(|l| {
                let l = l.trim();
                l.starts_with('[')
                    .then(|| serde_json::from_str::<Listing>(l).ok())
                    .flatten()
            })
            .ok_or_else(|| {
                Error::Failed(format!(
                    "the snapshot listing of {} (Job {}) printed no list",
                    request.from, outcome.job
                ))
            })?;
        let id = pick_snapshot(&listing, &request.snapshot, &request.from)?;
        // The snapshot picked stays the one used, even if a backup makes another the latest.
        progress.set(SNAPSHOT, id);
        SWAP_STEPS.complete(progress, LIST);
        workflow::record_progress(kube, &request.claim, Some(progress)).await?;
    }
    let id = progress.get(SNAPSHOT).unwrap_or_default().to_owned();
    let folder = store::layout::snapshot_path(&id);
    if !SWAP_STEPS.is_done(progress, POINT) {
        observer.step(&format!(
            "pointing {w} at {folder} of claim {}",
            request.from
        ));
        // An interrupted run may have pointed it already.
        let obj = w.get(kube).await?;
        let volume = match (
            workload::claim_use(&obj, &request.claim)?,
            workload::claim_use(&obj, &request.from)?,
        ) {
            (None, Some(ClaimUse::Volume(v))) => v,
            _ => {
                workload::point_volume(
                    kube,
                    w,
                    &request.claim,
                    &request.from,
                    true,
                    SubPath::Under(&folder),
                )
                .await?
                .volume
            }
        };
        progress.set(VOLUME, volume);
        SWAP_STEPS.complete(progress, POINT);
        workflow::record_progress(kube, &request.claim, Some(progress)).await?;
    }
    if !SWAP_STEPS.is_done(progress, MARK) {
        observer.step(&format!(
            "marking claim {} as the one {w} runs on",
            request.from
        ));
        workflow::annotate_claim(
            kube,
            &request.from,
            BTreeMap::from([(SWAPPED_INTO.to_owned(), format!("{w} {folder}"))]),
        )
        .await?;
        SWAP_STEPS.complete(progress, MARK);
    }
    report.snapshot = id;
    report.volume = progress.get(VOLUME).map(str::to_owned);
    Ok(())
}

/// The workload as `rollback` would write it (for `--dry-run`).
pub async fn rollback_plan(kube: &Kube, w: &Workload) -> Result<Vec<Value>> {
    let mut obj = w.get(kube).await?;
    workload::roll_back(&mut obj, w)?;
    Ok(vec![objects::to_value(&obj)?])
}

/// What `rollback` did.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    /// The workload.
    pub workload: String,
    /// Each volume pointed back: (volume, claim it left, claim it uses again).
    pub volumes: Vec<(String, String, String)>,
    /// The replica count given back to a workload a `--scale-down` run left at zero.
    pub replicas: Option<i32>,
}

/// Points the volumes of `w` back at the claims recorded before pvc-backup changed them
/// (`restore --swap`, `migrate`), removes the recorded sub-paths, and clears the marks left on
/// the claims it leaves; scales a workload a dead `--scale-down` run left at zero back up.
pub async fn rollback(
    kube: &Kube,
    w: &Workload,
    observer: &mut dyn Observer,
) -> Result<RollbackReport> {
    observer.step(&format!("pointing {w} back at its previous claims"));
    let done = workload::rollback(kube, w).await?;
    let claims: Api<PersistentVolumeClaim> = api::namespaced(kube);
    for r in &done.volumes {
        let Some(left) = workflow::find_claim(kube, &r.from).await? else {
            continue;
        };
        let annotations = left.metadata.annotations.unwrap_or_default();
        let mut patch = serde_json::Map::new();
        if annotations
            .get(SWAPPED_INTO)
            .is_some_and(|v| v.starts_with(&format!("{w} ")))
        {
            patch.insert(SWAPPED_INTO.to_owned(), Value::Null);
        }
        if !patch.is_empty() {
            let patch = json!({"metadata": {"annotations": patch}});
            api::patch_merge(&claims, "claim", &r.from, &patch).await?;
        }
        // A migration's old claim no longer has a successor in use.
        if let Some(back) = workflow::find_claim(kube, &r.to).await?
            && back
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::objects::volume::MIGRATED_TO))
                == Some(&r.from)
        {
            let patch = json!({"metadata": {"annotations": {
                crate::objects::volume::MIGRATED_TO: null
            }}});
            api::patch_merge(&claims, "claim", &r.to, &patch).await?;
        }
    }
    Ok(RollbackReport {
        workload: w.to_string(),
        volumes: done
            .volumes
            .into_iter()
            .map(|r| (r.volume, r.from, r.to))
            .collect(),
        replicas: done.replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_picked_by_name_or_as_the_latest() {
        let snapshot = |id: &str, latest: bool| contract::snapshots::SnapshotInfo {
            id: id.into(),
            time: String::new(),
            latest,
            entries: None,
            bytes: None,
            unique_bytes: 0,
            result: Some("ok".into()),
            verified: None,
        };
        let listing = Listing::Tree(vec![
            snapshot("2026-11-25T02-00-00Z", false),
            snapshot("2026-11-26T02-00-00Z", true),
        ]);
        assert_eq!(
            pick_snapshot(&listing, "latest", "b").unwrap(),
            "2026-11-26T02-00-00Z"
        );
        assert_eq!(
            pick_snapshot(&listing, "2026-11-25T02-00-00Z", "b").unwrap(),
            "2026-11-25T02-00-00Z"
        );
        let err = pick_snapshot(&listing, "2020-01-01T00-00-00Z", "b")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2026-11-25T02-00-00Z, 2026-11-26T02-00-00Z"),
            "{err}"
        );
        assert!(
            pick_snapshot(&Listing::Tree(Vec::new()), "latest", "b")
                .unwrap_err()
                .to_string()
                .contains("no snapshot")
        );
        let block = Listing::Block(vec![contract::snapshots::VersionInfo {
            id: "x".into(),
            time: String::new(),
            latest: true,
            size: 4096,
            allocated_bytes: 4096,
            unique_bytes: 4096,
            changed_chunks: None,
            method: None,
            result: None,
            verified: None,
        }]);
        assert!(
            pick_snapshot(&block, "latest", "b")
                .unwrap_err()
                .to_string()
                .contains("block volume")
        );
    }

    #[test]
    fn snapshot_names_that_could_leave_the_folder_are_refused() {
        let req = |snapshot: &str| RestoreRequest {
            claim: "data".into(),
            from: "data-backup".into(),
            repository: None,
            host: None,
            snapshot: snapshot.into(),
            workload: None,
            swap: true,
            scale_timeout: Duration::from_secs(1),
            run: None,
        };
        assert!(req("latest").check().is_ok());
        assert!(req("2026-11-26T02-00-00Z").check().is_ok());
        for bad in ["../x", "a/b", "", ".partial-x"] {
            assert!(req(bad).check().is_err(), "{bad}");
        }
    }
}
