//! `pvc-backup migrate CLAIM --storage-class SC`: move a claim's data to another storage class
//! with the workload stopped only for the last changes.
//!
//! 1. Copy into a new claim `CLAIM-SC` while the workload runs (most of the data).
//! 2. Scale the workload to zero, copy what changed since, and verify the copy against the
//!    source (`mover verify --against`): every entry, attribute and byte.
//! 3. Cut over: point the workload's volume at the new claim (recording the old one), or with
//!    `--keep-name` give the new volume the claim's name (old volume set to `Retain` first and
//!    kept, `Released`, as the way back).
//! 4. Scale the workload back up.
//!
//! Nothing of the source is deleted before the verification succeeded; a failure at any step
//! leaves the workload on its original data and scales it back up. `rollback` undoes a
//! migration.
//!
//! Each step is recorded ([`PROGRESS`] on the claim; with `--keep-name`, also on the old volume
//! once both are kept, since the claim is deleted and recreated): the same command run again
//! after an interruption goes on from the first step not done, with the workload, its replica
//! count and the volumes from the record.

use std::time::Duration;

use contract::MoverCommand;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{self, ROLE_LABEL, SOURCE_LABEL, SOURCE_MOUNT, TARGET_MOUNT};
use crate::objects::claim::{self, ClaimRequest, Role};
use crate::objects::mover::{MoverJob, Placement};
use crate::objects::{self, volume};
use crate::run::{Observer, Outcome};
use crate::workflow::progress::{PROGRESS, Progress, Steps};
use crate::workflow::steps::{self, mount};
use crate::workflow::{self, MoverSettings};
use crate::workload::{self, ClaimUse, ScaledDown, Workload};
use crate::{Error, Result, placement};

pub mod across;
mod cutover;
mod record;
mod rollback;

use cutover::{finish, warm_copy};
use record::{clear, pinned_from, recorded, save};
pub use rollback::{RollbackReport, rollback, rollback_plan};

/// Annotation on the new claim of a migration: the claim it was migrated from.
pub const MIGRATED_FROM: &str = "pvc-backup.io/migrated-from";

/// How long deleting and rebinding a claim may take.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(120);

/// What to migrate, where to.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    /// The claim.
    pub claim: String,
    /// The storage class to move to.
    pub storage_class: String,
    /// The workload to stop and repoint (default: the one whose pods use the claim).
    pub workload: Option<Workload>,
    /// Keep the claim's name: rebind it to the new volume instead of repointing the workload.
    pub keep_name: bool,
    /// Size of the new claim (default and minimum: the source's capacity).
    pub size: Option<String>,
    /// How long the workload's pods may take to stop.
    pub scale_timeout: Duration,
    /// The run's id in its Jobs' names, for a caller that takes the same run up again after a
    /// restart and must find the Jobs it created (the operator gives its resource's); `None`
    /// gives a fresh one. A run that goes on from a record on the claim keeps the record's id.
    pub run: Option<String>,
}

impl MigrateRequest {
    /// The new claim's name: `CLAIM-SC` (with `--keep-name`, a temporary name until the cut-over).
    pub fn target(&self) -> String {
        format!("{}-{}", self.claim, self.storage_class)
    }
}

/// The objects a migration creates, in order.
#[derive(Debug, Clone)]
pub struct MigratePlan {
    /// The new claim, when it does not exist yet.
    pub create_claim: Option<PersistentVolumeClaim>,
    /// The copy (run twice: with the workload running, then stopped).
    pub copy: MoverJob,
    /// The verification of the copy against the source.
    pub verify: MoverJob,
}

impl MigratePlan {
    /// The plan's objects as JSON, in the order they are created.
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        if let Some(c) = &self.create_claim {
            out.push(objects::to_value(c)?);
        }
        out.push(objects::to_value(&self.copy.job())?);
        out.push(objects::to_value(&self.verify.job())?);
        Ok(out)
    }
}

fn is_our_target(existing: &PersistentVolumeClaim, source: &str) -> bool {
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    workflow::backup::managed(existing)
        && labels.get(SOURCE_LABEL).map(String::as_str) == Some(source)
        && labels.get(ROLE_LABEL).map(String::as_str) == Some(Role::Migrate.as_str())
}

/// Plans a migration from the source claim and the new claim if it exists.
pub fn plan(
    request: &MigrateRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    existing_target: Option<&PersistentVolumeClaim>,
    placement: Placement,
    job_name: &str,
) -> Result<MigratePlan> {
    names::check_name("claim", &request.claim, 253)?;
    let target = request.target();
    names::check_name("new claim", &target, 253)?;
    let class = source
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone());
    if class.as_deref() == Some(request.storage_class.as_str()) {
        return Err(Error::Invalid(format!(
            "claim {} is on storage class {} already",
            request.claim, request.storage_class
        )));
    }
    let create_claim = match existing_target {
        Some(t) if !is_our_target(t, &request.claim) => {
            return Err(Error::Invalid(format!(
                "claim {target} exists and was not made by pvc-backup to migrate {}: delete or \
                 rename it first",
                request.claim
            )));
        }
        Some(t) => {
            let its_class = t
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref());
            if its_class != Some(request.storage_class.as_str()) {
                return Err(Error::Invalid(format!(
                    "claim {target} (left by an earlier migration) is on storage class {}, not \
                     {}: delete it and retry",
                    its_class.unwrap_or("(none)"),
                    request.storage_class
                )));
            }
            None
        }
        None => Some(claim::claim(&ClaimRequest::like(
            source,
            &target,
            Role::Migrate,
            Some(&request.storage_class),
            request.size.as_deref(),
        )?)),
    };
    let namespace = source.metadata.namespace.clone().unwrap_or_default();
    let block = steps::is_block(source);
    let mounts = vec![
        mount("source", &request.claim, SOURCE_MOUNT, true, block),
        mount("backup", &target, TARGET_MOUNT, false, block),
    ];
    let mut copy = steps::mover_job(
        settings,
        job_name,
        &namespace,
        &request.claim,
        Role::Migrate,
    );
    copy.mounts = mounts.clone();
    copy.placement = placement.clone();
    let mut verify = steps::mover_job(
        settings,
        &steps::suffixed(job_name, "verify"),
        &namespace,
        &request.claim,
        Role::Migrate,
    );
    verify.mounts = mounts;
    verify.placement = placement;
    if block {
        workflow::check_no_excludes_for_block(&settings.excludes, &request.claim)?;
        copy.args = MoverCommand::Block {
            src: SOURCE_MOUNT.to_owned(),
            dst: TARGET_MOUNT.to_owned(),
        }
        .args();
        verify.args = MoverCommand::BlockCompare {
            src: SOURCE_MOUNT.to_owned(),
            dst: TARGET_MOUNT.to_owned(),
        }
        .args();
    } else {
        // On the disk before it is verified and the source is let go (`--fsync`): the new claim
        // may stay mounted on the node after the pod ends, its writes still in the page cache.
        copy.args = MoverCommand::Sync {
            src: SOURCE_MOUNT.to_owned(),
            dst: TARGET_MOUNT.to_owned(),
            also: Vec::new(),
            fsync: true,
            excludes: settings.excludes.clone(),
        }
        .args();
        // What the copy left out is left out of the comparison too.
        verify.args = MoverCommand::VerifyAgainst {
            dst: TARGET_MOUNT.to_owned(),
            src: SOURCE_MOUNT.to_owned(),
            excludes: settings.excludes.clone(),
        }
        .args();
    }
    Ok(MigratePlan {
        create_claim,
        copy,
        verify,
    })
}

/// Reads what the plan needs and plans (also for `--dry-run`).
///
/// `pinned` is where the Jobs run once the workload is stopped (found before stopping it);
/// otherwise they go next to the pods using the claim.
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    job_name: &str,
    pinned: Option<Placement>,
) -> Result<MigratePlan> {
    let source = workflow::get_claim(kube, &request.claim).await?;
    let pods = match pinned {
        Some(_) => Vec::new(),
        None => placement::pods(kube).await?,
    };
    plan_with(kube, request, settings, &source, &pods, job_name, pinned).await
}

/// [`plan_from_cluster`] with the source claim and the pods of the namespace already read
/// (`pods` is not looked at when `pinned` is given).
async fn plan_with(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    pods: &[k8s_openapi::api::core::v1::Pod],
    job_name: &str,
    pinned: Option<Placement>,
) -> Result<MigratePlan> {
    let target = workflow::find_claim(kube, &request.target()).await?;
    let placement = match pinned {
        Some(p) => p,
        // No second pod may mount it while the workload runs: the copy waits for the stop.
        None if steps::is_read_write_once_pod(source) => steps::pin_to(&[source], pods),
        None => {
            let mut claims = vec![source];
            claims.extend(target.as_ref());
            let users: Vec<_> = claims
                .iter()
                .map(|c| {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    let users = placement::users_in(pods, &name);
                    (name, users)
                })
                .collect();
            placement::decide(&claims, &users, &[])?
        }
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

/// How a migration ended.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    /// The claim migrated.
    pub claim: String,
    /// The claim the workload uses now (the same name with `--keep-name`).
    pub now_used: String,
    /// The workload stopped and started again.
    pub workload: Option<String>,
    /// The volume the data was on (kept).
    pub old_volume: String,
    /// The volume the data is on now.
    pub new_volume: String,
    /// The copy with the workload running, the final copy and the verification.
    pub outcomes: Vec<Outcome>,
    /// Things the user should know (files that changed during the first copy, ...).
    pub notes: Vec<String>,
}

/// The steps of a migration that repoints the workload at the new claim.
pub const STEPS: Steps = Steps {
    workflow: "migrate",
    names: &[
        CREATE, FIRST_COPY, STOP, FINAL_COPY, VERIFY, REPOINT, MARK, START,
    ],
};

/// The steps of a migration with `--keep-name`: the claim is recreated on the new volume.
pub const KEEP_NAME_STEPS: Steps = Steps {
    workflow: "migrate",
    names: &[
        CREATE,
        FIRST_COPY,
        STOP,
        FINAL_COPY,
        VERIFY,
        RETAIN,
        REMOVE_TEMPORARY,
        REMOVE_CLAIM,
        BIND,
        MARK,
        START,
    ],
};

const CREATE: &str = "create-claim";
const FIRST_COPY: &str = "first-copy";
const STOP: &str = "scale-down";
const FINAL_COPY: &str = "final-copy";
const VERIFY: &str = "verify";
const REPOINT: &str = "repoint";
const RETAIN: &str = "retain-volumes";
const REMOVE_TEMPORARY: &str = "remove-temporary-claim";
const REMOVE_CLAIM: &str = "remove-claim";
const BIND: &str = "bind-claim";
const MARK: &str = "mark";
const START: &str = "scale-up";

// What the record keeps for later steps.
const WORKLOAD: &str = "workload";
const OLD_VOLUME: &str = "oldVolume";
const NEW_VOLUME: &str = "newVolume";
const PINNED: &str = "pinnedTo";
const CREATED: &str = "createdClaim";
const ORIGINAL: &str = "originalClaim";

impl MigrateRequest {
    fn steps(&self) -> Steps {
        if self.keep_name {
            KEEP_NAME_STEPS
        } else {
            STEPS
        }
    }

    /// The arguments a recorded migration must be run again with, as a command line would
    /// give them.
    pub fn arguments(&self) -> String {
        let mut a = format!("--storage-class {}", self.storage_class);
        if self.keep_name {
            a.push_str(" --keep-name");
        }
        if let Some(w) = &self.workload {
            a.push_str(&format!(" --workload {w}"));
        }
        if let Some(s) = &self.size {
            a.push_str(&format!(" --size {s}"));
        }
        a
    }
}

/// Runs a migration, or goes on with one that was interrupted (its record,
/// [`PROGRESS`](crate::workflow::progress::PROGRESS), is on the claim, or with `--keep-name`
/// on the old volume while the claim is recreated).
pub async fn run(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<MigrateReport> {
    let rebind: &[access::Permission] = if request.keep_name {
        access::REBIND
    } else {
        &[]
    };
    access::check(
        kube,
        &[access::MOVER_RUN, access::SCALE, access::MIGRATE, rebind],
    )
    .await?;
    let steps = request.steps();
    let current = workflow::find_claim(kube, &request.claim).await?;
    let (found, holder) = recorded(kube, request, current.as_ref()).await?;
    let resuming = found.is_some();
    let mut progress =
        steps.resume_or_start(found, &request.claim, &request.arguments(), &holder)?;
    if let (false, Some(run)) = (resuming, &request.run) {
        progress.run = run.clone();
    }
    let mut report = MigrateReport {
        claim: request.claim.clone(),
        now_used: request.claim.clone(),
        ..MigrateReport::default()
    };
    let (source, exclusive_in_use) = if resuming {
        observer.step(&format!(
            "going on with the migration of claim {} recorded in {holder} (last step done: {})",
            request.claim,
            progress.done.as_deref().unwrap_or("none")
        ));
        let source = match (current, progress.get(ORIGINAL)) {
            (Some(c), _) if !request.keep_name || !steps.is_done(&progress, REMOVE_CLAIM) => c,
            // Removed, and not yet recreated: as it was recorded.
            (_, Some(kept)) => serde_json::from_str(kept).map_err(|source| Error::Decode {
                what: format!("the claim {} kept in {holder}", request.claim),
                source,
            })?,
            (Some(c), None) => c,
            (None, None) => return Err(workflow::claim_not_found(kube, &request.claim)),
        };
        // A ReadWriteOncePod claim still in use cannot be read beside its workload.
        let exclusive_in_use = !steps.is_done(&progress, FIRST_COPY)
            && steps::is_read_write_once_pod(&source)
            && !placement::users(kube, &request.claim).await?.is_empty();
        (source, exclusive_in_use)
    } else {
        let Some(source) = current else {
            return Err(workflow::claim_not_found(kube, &request.claim));
        };
        let exclusive_in_use = start(kube, request, settings, &source, &mut progress).await?;
        (source, exclusive_in_use)
    };
    let workload: Option<Workload> = progress.get(WORKLOAD).map(str::parse).transpose()?;
    report.workload = workload.as_ref().map(ToString::to_string);
    report.old_volume = progress.get(OLD_VOLUME).unwrap_or_default().to_owned();
    let pinned = match progress.get(PINNED) {
        Some(p) => pinned_from(p)?,
        None => Placement::Anywhere,
    };
    let target = request.target();

    // 1. The bulk of the data, with the workload running.
    let early = async {
        if !steps.is_done(&progress, CREATE) {
            let plan = plan_with(
                kube,
                request,
                settings,
                &source,
                &[],
                "unused",
                Some(pinned.clone()),
            )
            .await?;
            if let Some(c) = &plan.create_claim {
                observer.step(&format!(
                    "creating claim {target} on storage class {}",
                    request.storage_class
                ));
                let name = c.metadata.name.clone().unwrap_or_default();
                if api::create_or_keep(&api::namespaced(kube), "claim", &name, c).await? {
                    progress.set(CREATED, "true");
                }
            }
            steps.complete(&mut progress, CREATE);
            save(kube, request, &progress).await?;
        }
        if !steps.is_done(&progress, FIRST_COPY) {
            if exclusive_in_use {
                report.notes.push(format!(
                    "claim {} is ReadWriteOncePod and in use, so nothing could read it while \
                     the workload ran: it was copied once, with the workload stopped",
                    request.claim
                ));
            } else {
                let job =
                    workflow::job_name_in_run(&format!("{}-migrate", request.claim), &progress.run);
                let plan = plan_with(
                    kube,
                    request,
                    settings,
                    &source,
                    &placement::pods(kube).await?,
                    &job,
                    None,
                )
                .await?;
                let created = progress.get(CREATED).is_some();
                warm_copy(
                    kube,
                    request,
                    settings,
                    &plan,
                    created,
                    &mut report,
                    observer,
                )
                .await?;
            }
            steps.complete(&mut progress, FIRST_COPY);
            save(kube, request, &progress).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = early {
        // Nothing was changed that the record must keep.
        let cleared = clear(kube, request, &progress).await;
        return Error::with_undo(Err(e), cleared);
    }

    // 2. The rest, with the workload stopped; then the proof and the cut-over.
    let must_stop = steps.any_pending(&progress, FINAL_COPY, MARK);
    let guard = match &workload {
        Some(w) if must_stop => {
            let counts = match progress.stopped_workloads()? {
                c if !c.is_empty() => c,
                _ => {
                    let c = workload::counts_to_restore(kube, std::slice::from_ref(w)).await?;
                    progress.set_stopped(&c);
                    save(kube, request, &progress).await?;
                    c
                }
            };
            observer.step(&format!("scaling {w} to zero"));
            let stopped = workload::scale_down_to_zero(
                kube,
                &counts,
                &[&request.claim],
                request.scale_timeout,
            )
            .await;
            match stopped {
                Ok(g) => g,
                Err(e) => {
                    let e = workload::stopped_then(
                        e,
                        format!(
                            "the migration stopped; the workload runs on its original data \
                             (claim {})",
                            request.claim
                        ),
                    );
                    if !switched(steps, &progress) {
                        let cleared = clear(kube, request, &progress).await;
                        return Error::with_undo(Err(e), cleared);
                    }
                    return Err(e);
                }
            }
        }
        Some(_) => ScaledDown::left_by_earlier_run(progress.stopped_workloads()?),
        None => ScaledDown::default(),
    };
    if must_stop {
        steps.complete(&mut progress, STOP);
    }
    let result = finish(
        kube,
        request,
        settings,
        &source,
        pinned,
        &mut progress,
        &mut report,
        observer,
    )
    .await;
    let finished = result.is_ok();
    let clean = !switched(steps, &progress);
    let result = result.map_err(|e| {
        if clean {
            e.context(format!(
                "the migration stopped; the workload keeps its original data (claim {})",
                request.claim
            ))
        } else {
            e.context(format!(
                "the migration stopped half-way, as annotation {PROGRESS} records: run the same \
                 command again to finish it"
            ))
        }
    });
    let result = guard.scale_up_after(kube, observer, result).await;
    let result = match result {
        Ok(()) => {
            steps.complete(&mut progress, START);
            clear(kube, request, &progress).await
        }
        Err(e) if finished => Err(e.context(format!(
            "the migration is done (the workload now uses claim {}), but the workload was not \
             started again: run the same command again to start it",
            report.now_used
        ))),
        Err(e) if clean => {
            let cleared = clear(kube, request, &progress).await;
            Error::with_undo(Err(e), cleared)
        }
        Err(e) => Err(e),
    };
    result.map(|()| report)
}

/// Whether the cut-over began: from there on, a failure leaves the record for a run that goes on.
fn switched(steps: Steps, progress: &Progress) -> bool {
    steps.is_past(progress, VERIFY)
}

/// The checks and decisions of a fresh migration, recorded before its first step: the workload
/// to stop, the old volume, where the copies run once the workload is stopped. Returns whether
/// the claim is ReadWriteOncePod and in use (copied once, with the workload stopped).
async fn start(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    progress: &mut Progress,
) -> Result<bool> {
    let old_volume = steps::bound_volume(source)?;
    // Copying again into the claim the workload now uses would overwrite what it wrote since.
    if let Some(to) = source
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(volume::MIGRATED_TO))
    {
        return Err(Error::Invalid(format!(
            "claim {} was migrated to claim {to} already (annotation {}): there is nothing left \
             to do. `pvc-backup migrate --rollback {}` undoes that migration",
            request.claim,
            volume::MIGRATED_TO,
            request.claim
        )));
    }
    if steps::storage_class(kube, Some(&request.storage_class))
        .await?
        .is_none()
    {
        return Err(Error::Invalid(format!(
            "storage class {} does not exist: `kubectl get storageclass` lists them",
            request.storage_class
        )));
    }
    // The pods and their owners, read once: who uses the claim decides the workload to stop,
    // whether anything else writes to it, and where the copies run.
    let pods = placement::pods(kube).await?;
    let users = placement::users_in(&pods, &request.claim);
    let owners = workload::owners(kube, &users).await?;
    let workload = match &request.workload {
        Some(w) => Some(w.clone()),
        None => workload::pick(
            &request.claim,
            workload::workloads_of(&request.claim, &users, &owners)?,
        )?,
    };
    if let Some(w) = &workload {
        match workload::claim_use(&w.get(kube).await?, &request.claim)? {
            Some(ClaimUse::Template(t)) if !request.keep_name => {
                return Err(Error::Invalid(format!(
                    "claim {} comes from the volumeClaimTemplates entry {t:?} of {w}: its pods \
                     always use claims of that name, so only --keep-name can migrate it",
                    request.claim
                )));
            }
            None if !request.keep_name => {
                return Err(Error::Invalid(format!(
                    "{w} has no volume that uses claim {}: name the workload that does with \
                     --workload, or use --keep-name",
                    request.claim
                )));
            }
            _ => {}
        }
    }
    // Another workload's pods would keep writing while the last changes are copied.
    for (user, owner) in users.iter().zip(owners) {
        if owner.is_none() || owner != workload {
            return Err(Error::Invalid(format!(
                "pod {} ({}) uses claim {} too and would keep writing to it while the last \
                 changes are copied: stop it first, or migrate with that workload named in \
                 --workload",
                user.pod,
                owner.map_or("no workload".to_owned(), |o| o.to_string()),
                request.claim
            )));
        }
    }
    // Checks the new claim and the copies as planned, before anything is changed.
    plan_with(kube, request, settings, source, &pods, "check", None).await?;
    if let Some(w) = &workload {
        progress.set(WORKLOAD, w.to_string());
    }
    progress.set(OLD_VOLUME, old_volume);
    if let Placement::Node { node, tolerations } = steps::pin_to(&[source], &pods) {
        progress.set(
            PINNED,
            json!({"node": node, "tolerations": tolerations}).to_string(),
        );
    }
    save(kube, request, progress).await?;
    Ok(steps::is_read_write_once_pod(source) && !users.is_empty())
}
