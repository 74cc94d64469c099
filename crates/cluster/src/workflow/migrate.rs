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

use std::collections::BTreeMap;
use std::time::Duration;

use contract::{ExitCode, MoverCommand};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{self, ROLE_LABEL, SOURCE_LABEL, SOURCE_MOUNT, TARGET_MOUNT};
use crate::objects::claim::{self, ClaimRequest, Role};
use crate::objects::mover::{MoverJob, Placement};
use crate::objects::{self, volume};
use crate::run::{self, Observer, Outcome};
use crate::workflow::progress::{PROGRESS, Progress, Steps};
use crate::workflow::steps::{self, mount};
use crate::workflow::{self, MoverSettings};
use crate::workload::{self, ClaimUse, ScaledDown, Workload};
use crate::{Error, Result, placement};

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

/// Where the copies run once the workload is stopped, as recorded.
fn pinned_from(recorded: &str) -> Result<Placement> {
    #[derive(serde::Deserialize)]
    struct Pinned {
        node: String,
        #[serde(default)]
        tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    }
    let p: Pinned = serde_json::from_str(recorded).map_err(|source| Error::Decode {
        what: "the node recorded for the copies".to_owned(),
        source,
    })?;
    Ok(Placement::Node {
        node: p.node,
        tolerations: p.tolerations,
    })
}

/// The record of a migration of the claim: on the claim, or with `--keep-name` on its old
/// volume (while the claim is recreated), whichever went further; and the object it is on.
async fn recorded(
    kube: &Kube,
    request: &MigrateRequest,
    current: Option<&PersistentVolumeClaim>,
) -> Result<(Option<Progress>, String)> {
    let on_claim = format!("pvc/{} -n {}", request.claim, kube.namespace);
    let mut found = match current {
        Some(c) => Progress::read(c.metadata.annotations.as_ref(), &on_claim)?
            .map(|p| (p, on_claim.clone())),
        None => None,
    };
    let old_volume = found
        .as_ref()
        .and_then(|(p, _)| p.get(OLD_VOLUME).map(str::to_owned));
    let volumes = match (current, old_volume) {
        _ if !request.keep_name => Vec::new(),
        (Some(_), None) => Vec::new(),
        (Some(_), Some(pv)) => {
            match api::get_opt(&api::cluster(kube), "PersistentVolume", &pv).await? {
                Some(v) => vec![v],
                None => Vec::new(),
            }
        }
        // The claim is being recreated: its old volume keeps the record meanwhile.
        (None, _) => {
            let pvs: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = api::cluster(kube);
            pvs.list(&Default::default())
                .await
                .map_err(Error::api("list PersistentVolumes"))?
                .items
        }
    };
    for pv in volumes {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let claimed = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claimed.and_then(|r| r.namespace.as_deref()) != Some(kube.namespace.as_str()) {
            continue;
        }
        let holder = format!("pv/{name}");
        let Some(p) = Progress::read(pv.metadata.annotations.as_ref(), &holder)? else {
            continue;
        };
        if p.claim != request.claim {
            continue;
        }
        let further = found
            .as_ref()
            .is_none_or(|(f, _)| request.steps().went_further(&p, f));
        if further {
            found = Some((p, holder));
        }
    }
    Ok(match found {
        Some((p, holder)) => (Some(p), holder),
        None => (None, on_claim),
    })
}

/// Writes the record where it must be: on the claim (unless it is gone for the moment) and,
/// with `--keep-name` once the volumes are kept, on the old volume.
async fn save(kube: &Kube, request: &MigrateRequest, progress: &Progress) -> Result<()> {
    write(kube, request, progress, true).await
}

/// Removes the record from wherever it is.
async fn clear(kube: &Kube, request: &MigrateRequest, progress: &Progress) -> Result<()> {
    write(kube, request, progress, false).await
}

async fn write(
    kube: &Kube,
    request: &MigrateRequest,
    progress: &Progress,
    keep: bool,
) -> Result<()> {
    let on_volume = request.keep_name && request.steps().is_done(progress, RETAIN);
    if on_volume && let Some(pv) = progress.get(OLD_VOLUME) {
        let value = keep.then(|| progress.to_annotation());
        let patch = json!({"metadata": {"annotations": {PROGRESS: value}}});
        steps::patch_volume(kube, pv, &patch).await?;
    }
    match workflow::record_progress(kube, &request.claim, keep.then_some(progress)).await {
        Ok(()) => Ok(()),
        // Between its removal and its recreation, the old volume holds the record.
        Err(e) if e.is_not_found() && on_volume => Ok(()),
        Err(e) => Err(e),
    }
}

/// The first copy, with the workload running: most of the data moves while it still serves.
async fn warm_copy(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    plan: &MigratePlan,
    created: bool,
    report: &mut MigrateReport,
    observer: &mut dyn Observer,
) -> Result<()> {
    let target = request.target();
    observer.step("copying while the workload runs");
    let warm = steps::run_mover(kube, &plan.copy, settings, false, observer).await;
    let warm = match warm {
        Ok(Some(o)) if ExitCode::from_code(o.exit_code).is_some_and(ExitCode::wrote_target) => o,
        other => {
            if created {
                let _ = workflow::delete_claim(kube, &target).await;
            }
            return Err(match other {
                Err(e) => e,
                Ok(Some(o)) => Error::Failed(format!(
                    "the first copy (Job {}) ended with exit code {}{}; nothing was changed{}",
                    o.job,
                    o.exit_code,
                    steps::failure_text(&o),
                    if created {
                        format!(" and claim {target} was deleted")
                    } else {
                        String::new()
                    }
                )),
                Ok(None) => Error::Failed("the first copy did not run".to_owned()),
            });
        }
    };
    if warm.exit_code == ExitCode::Partial {
        report.notes.push(
            "some files changed or could not be read while the workload ran; the final copy \
             with the workload stopped took them"
                .to_owned(),
        );
    }
    report.outcomes.push(warm);

    Ok(())
}

/// Final copy, verification and cut-over, with the workload stopped; each step skipped when the
/// record says it was done.
#[allow(clippy::too_many_arguments)]
async fn finish(
    kube: &Kube,
    request: &MigrateRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    pinned: Placement,
    progress: &mut Progress,
    report: &mut MigrateReport,
    observer: &mut dyn Observer,
) -> Result<()> {
    let steps = request.steps();
    let target = request.target();
    if steps.any_pending(progress, FINAL_COPY, VERIFY) {
        let final_name =
            workflow::job_name_in_run(&format!("{}-final", request.claim), &progress.run);
        let verify_name = steps::suffixed(&final_name, "verify");
        // Nothing may write to the claim from here on: a pod of another workload would. The
        // copies an interrupted run started are this run's own, followed below.
        let users = placement::users(kube, &request.claim).await?;
        if let Some(u) = users.iter().find(|u| {
            !run::is_of_job(&u.object, &final_name) && !run::is_of_job(&u.object, &verify_name)
        }) {
            return Err(Error::Failed(format!(
                "pod {} still uses claim {}: stop what runs it (or name its workload with \
                 --workload) and retry",
                u.pod, request.claim
            )));
        }
        // The same Jobs, on the node where the workload ran: its volume may still be attached
        // there.
        let plan = plan_with(
            kube,
            request,
            settings,
            source,
            &[],
            &final_name,
            Some(pinned),
        )
        .await?;
        if !steps.is_done(progress, FINAL_COPY) {
            observer.step("copying the last changes with the workload stopped");
            let last =
                steps::run_mover_ok(kube, &plan.copy, settings, "the final copy", observer).await?;
            report.outcomes.push(last);
            steps.complete(progress, FINAL_COPY);
            save(kube, request, progress).await?;
        }
        observer.step("verifying the copy against the source");
        let verified = steps::run_mover_ok(
            kube,
            &plan.verify,
            settings,
            "the verification of the copy against the source",
            observer,
        )
        .await?;
        report.outcomes.push(verified);
        let target_claim = workflow::get_claim(kube, &target).await?;
        progress.set(NEW_VOLUME, steps::bound_volume(&target_claim)?);
        steps.complete(progress, VERIFY);
        save(kube, request, progress).await?;
    }
    report.new_volume = progress.get(NEW_VOLUME).unwrap_or_default().to_owned();
    if request.keep_name {
        return rebind(kube, request, source, progress, observer).await;
    }
    let workload: Option<Workload> = progress.get(WORKLOAD).map(str::parse).transpose()?;
    if !steps.is_done(progress, REPOINT) {
        if let Some(w) = &workload {
            observer.step(&format!("pointing {w} at claim {target}"));
            // An interrupted run may have pointed it already.
            let obj = w.get(kube).await?;
            let done = workload::claim_use(&obj, &request.claim)?.is_none()
                && matches!(
                    workload::claim_use(&obj, &target)?,
                    Some(ClaimUse::Volume(_))
                );
            if !done {
                workload::point_volume(
                    kube,
                    w,
                    &request.claim,
                    &target,
                    true,
                    workload::SubPath::Keep,
                )
                .await?;
            }
        }
        steps.complete(progress, REPOINT);
        save(kube, request, progress).await?;
    }
    if workload.is_none() {
        report.notes.push(format!(
            "no workload used claim {}; claim {target} holds the data now",
            request.claim
        ));
    }
    if !steps.is_done(progress, MARK) {
        observer.step(&format!(
            "recording the migration on claims {target} and {}",
            request.claim
        ));
        workflow::annotate_claim(
            kube,
            &target,
            BTreeMap::from([(MIGRATED_FROM.to_owned(), request.claim.clone())]),
        )
        .await?;
        steps.complete(progress, MARK);
        // The mark and the record go out together.
        workflow::annotate_claim(
            kube,
            &request.claim,
            BTreeMap::from([
                (volume::MIGRATED_TO.to_owned(), target.clone()),
                (PROGRESS.to_owned(), progress.to_annotation()),
            ]),
        )
        .await?;
    }
    report.now_used = target;
    Ok(())
}

/// `--keep-name`: the claim's name moves to the new volume; the old volume stays, `Released`,
/// with reclaim policy `Retain`. From the moment the claim is removed until it is bound again,
/// the record lives on the old volume.
async fn rebind(
    kube: &Kube,
    request: &MigrateRequest,
    source: &PersistentVolumeClaim,
    progress: &mut Progress,
    observer: &mut dyn Observer,
) -> Result<()> {
    let steps = request.steps();
    let claim = request.claim.clone();
    let target_name = request.target();
    let old_pv = progress.get(OLD_VOLUME).unwrap_or_default().to_owned();
    let new_pv = progress.get(NEW_VOLUME).unwrap_or_default().to_owned();
    let old_class = source
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone());
    if !steps.is_done(progress, RETAIN) {
        // Both volumes must survive their claims being deleted.
        observer.step(&format!(
            "setting reclaim policy Retain on PersistentVolumes {old_pv} and {new_pv}"
        ));
        // What recreating the claim needs, kept for a run that goes on once it is gone.
        let mut kept = volume::rebound_claim(source, &old_pv, old_class.as_deref(), &[]);
        if let Some(a) = kept.metadata.annotations.as_mut() {
            a.remove(PROGRESS);
        }
        progress.set(
            ORIGINAL,
            serde_json::to_string(&kept).map_err(|source| Error::Decode {
                what: format!("cannot record claim {claim}"),
                source,
            })?,
        );
        steps.complete(progress, RETAIN);
        for pv in [&new_pv, &old_pv] {
            let obj = steps::get_volume(kube, pv).await?;
            let mut patch = volume::retain_patch(&obj);
            if *pv == old_pv {
                patch["metadata"]["annotations"][PROGRESS] = json!(progress.to_annotation());
            }
            steps::patch_volume(kube, pv, &patch).await?;
        }
        save(kube, request, progress).await?;
    }
    if !steps.is_done(progress, REMOVE_TEMPORARY) {
        observer.step(&format!("removing the temporary claim {target_name}"));
        steps::delete_claim_and_wait(kube, &target_name, CLAIM_TIMEOUT).await?;
        steps.complete(progress, REMOVE_TEMPORARY);
        save(kube, request, progress).await?;
    }
    if !steps.is_done(progress, REMOVE_CLAIM) {
        observer.step(&format!(
            "removing claim {claim} (its volume {old_pv} is kept)"
        ));
        steps::delete_claim_and_wait(kube, &claim, CLAIM_TIMEOUT).await?;
        steps.complete(progress, REMOVE_CLAIM);
        save(kube, request, progress).await?;
    }
    if !steps.is_done(progress, BIND) {
        // The claim is created with the record in it.
        let record = progress.to_annotation();
        let result = bind_claim_to(
            kube,
            source,
            &new_pv,
            Some(&request.storage_class),
            &[(volume::MIGRATED_FROM_VOLUME, &old_pv), (PROGRESS, &record)],
            observer,
        )
        .await;
        if let Err(e) = result {
            // Give the claim back its old volume, with everything on it as it was.
            observer.step(&format!(
                "{e}; giving claim {claim} back its volume {old_pv}"
            ));
            let _ = steps::delete_claim_and_wait(kube, &claim, CLAIM_TIMEOUT).await;
            let back = bind_claim_to(kube, source, &old_pv, old_class.as_deref(), &[], observer)
                .await
                .map_err(|e2| {
                    e2.context(format!(
                        "giving claim {claim} back its volume {old_pv} failed too; both volumes \
                         are kept (Retain): recreate claim {claim} with spec.volumeName {old_pv}"
                    ))
                });
            if back.is_ok() {
                // Undone: nothing is left for a run to go on with.
                let patch = json!({"metadata": {"annotations": {PROGRESS: null}}});
                steps::patch_volume(kube, &old_pv, &patch).await?;
                progress.done = Some(VERIFY.to_owned());
            }
            return Error::with_undo(Err(e), back).map_err(|e| {
                workload::stopped_then(
                    e,
                    format!(
                        "claim {claim} is bound to its old volume {old_pv} again, the copy stays \
                         on volume {new_pv} (Released, Retain)"
                    ),
                )
            });
        }
        steps.complete(progress, BIND);
        save(kube, request, progress).await?;
    }
    if !steps.is_done(progress, MARK) {
        observer.step(&format!(
            "recording the migration on PersistentVolume {old_pv}"
        ));
        steps.complete(progress, MARK);
        let patch = json!({"metadata": {"annotations": {
            volume::MIGRATED_TO: format!("{}/{claim}@{new_pv}", kube.namespace),
            PROGRESS: progress.to_annotation(),
        }}});
        steps::patch_volume(kube, &old_pv, &patch).await?;
        save(kube, request, progress).await?;
    }
    Ok(())
}

/// Reserves volume `pv` for `original`'s name and recreates the claim on it, waiting until it
/// is bound.
async fn bind_claim_to(
    kube: &Kube,
    original: &PersistentVolumeClaim,
    pv: &str,
    storage_class: Option<&str>,
    annotations: &[(&str, &str)],
    observer: &mut dyn Observer,
) -> Result<()> {
    let claim = original.metadata.name.clone().unwrap_or_default();
    observer.step(&format!("binding claim {claim} to PersistentVolume {pv}"));
    // Recreated already by a run that was interrupted: reserving the volume again would take
    // back the binding the controller completed.
    let made = workflow::find_claim(kube, &claim).await?.is_some_and(|c| {
        c.metadata.deletion_timestamp.is_none()
            && c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv)
    });
    if !made {
        steps::patch_volume(kube, pv, &volume::claim_ref_patch(&kube.namespace, &claim)).await?;
        let claim_object = recreated(original, pv, storage_class, annotations);
        api::create_or_keep(&api::namespaced(kube), "claim", &claim, &claim_object).await?;
    }
    steps::wait_bound_to(kube, &claim, pv, CLAIM_TIMEOUT).await
}

/// `original` as recreated on volume `pv`, without the marks of an earlier migration.
fn recreated(
    original: &PersistentVolumeClaim,
    pv: &str,
    storage_class: Option<&str>,
    annotations: &[(&str, &str)],
) -> PersistentVolumeClaim {
    // A volume without a class must be claimed with the empty class, or the default class
    // would be filled in and the claim would never bind.
    let class = storage_class.unwrap_or("");
    let mut claim = volume::rebound_claim(original, pv, Some(class), annotations);
    if let Some(a) = claim.metadata.annotations.as_mut() {
        a.remove(volume::MIGRATED_FROM_VOLUME);
        a.remove(volume::MIGRATED_TO);
        a.remove(PROGRESS);
        for (k, v) in annotations {
            a.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    claim
}

/// The claim that keeps the newer data reachable after `--rollback` of a `--keep-name`
/// migration: the migration's own name, `CLAIM-SC`.
fn keeper(current: &PersistentVolumeClaim, new_class: &str) -> PersistentVolumeClaim {
    let claim = current.metadata.name.clone().unwrap_or_default();
    let mut like = current.clone();
    like.metadata.name = Some(format!("{claim}-{new_class}"));
    let mut labels = like.metadata.labels.clone().unwrap_or_default();
    labels.extend(claim::labels(&claim, Role::Migrate));
    like.metadata.labels = Some(labels);
    like
}

/// What `migrate --rollback` did.
#[derive(Debug, Clone, Default)]
pub struct RollbackReport {
    /// The claim.
    pub claim: String,
    /// The workload pointed back (default migrations) or stopped and started (`--keep-name`).
    pub workload: Option<String>,
    /// The volume the claim is bound to again (`--keep-name`).
    pub volume: Option<String>,
    /// Where the data written since the migration is (a claim).
    pub newer_data: String,
}

/// Undoes a migration of `claim`: the workload uses the original claim (or, after
/// `--keep-name`, the claim is bound to its original volume) again. The new claim and its data
/// are kept.
pub async fn rollback(
    kube: &Kube,
    claim: &str,
    storage_class: Option<&str>,
    named: Option<&Workload>,
    scale_timeout: Duration,
    observer: &mut dyn Observer,
) -> Result<RollbackReport> {
    let current = workflow::get_claim(kube, claim).await?;
    let target = match migration_of(&current, storage_class)? {
        Migration::KeptName { old_volume } => {
            return rollback_keep_name(kube, &current, &old_volume, named, scale_timeout, observer)
                .await;
        }
        Migration::Repointed { target } => target,
    };
    let w = workload_on(kube, claim, &target, named).await?;
    observer.step(&format!("pointing {w} back at claim {claim}"));
    workload::point_volume(kube, &w, &target, claim, false, workload::SubPath::Keep).await?;
    remove_claim_annotation(kube, claim, volume::MIGRATED_TO).await?;
    Ok(RollbackReport {
        claim: claim.to_owned(),
        workload: Some(w.to_string()),
        volume: None,
        newer_data: target,
    })
}

/// What a claim's annotations say about its migration.
enum Migration {
    /// `--keep-name`: the claim was recreated; its old volume is kept.
    KeptName { old_volume: String },
    /// The workload was pointed at claim `target`.
    Repointed { target: String },
}

fn migration_of(current: &PersistentVolumeClaim, storage_class: Option<&str>) -> Result<Migration> {
    let claim = current.metadata.name.clone().unwrap_or_default();
    let annotations = current.metadata.annotations.clone().unwrap_or_default();
    if let Some(old_pv) = annotations.get(volume::MIGRATED_FROM_VOLUME) {
        return Ok(Migration::KeptName {
            old_volume: old_pv.clone(),
        });
    }
    let Some(target) = annotations.get(volume::MIGRATED_TO).cloned() else {
        return Err(Error::Invalid(format!(
            "claim {claim} shows no migration by pvc-backup (neither annotation {} nor {}): \
             there is nothing to roll back",
            volume::MIGRATED_TO,
            volume::MIGRATED_FROM_VOLUME
        )));
    };
    if let Some(sc) = storage_class {
        let expected = format!("{claim}-{sc}");
        if expected != target {
            return Err(Error::Invalid(format!(
                "claim {claim} was migrated to {target}, not {expected}"
            )));
        }
    }
    Ok(Migration::Repointed { target })
}

/// The workload to point back from `target` to `claim`: `named`, or the one using `target`.
async fn workload_on(
    kube: &Kube,
    claim: &str,
    target: &str,
    named: Option<&Workload>,
) -> Result<Workload> {
    if let Some(w) = named {
        return Ok(w.clone());
    }
    let users = workload::users_of(kube, target).await?;
    match users.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Invalid(format!(
            "no running workload uses claim {target}: name the one to point back at {claim} \
             with --workload KIND/NAME"
        ))),
        _ => Err(Error::Invalid(format!(
            "several workloads use claim {target}: name one with --workload"
        ))),
    }
}

/// The objects `migrate --rollback` would write (for `--dry-run`): the workload pointed back,
/// or the claim recreated on its old volume and the claim that keeps the newer data.
pub async fn rollback_plan(
    kube: &Kube,
    claim: &str,
    storage_class: Option<&str>,
    named: Option<&Workload>,
) -> Result<Vec<Value>> {
    let current = workflow::get_claim(kube, claim).await?;
    match migration_of(&current, storage_class)? {
        Migration::KeptName { old_volume } => {
            let new_pv = steps::bound_volume(&current)?;
            let old = steps::get_volume(kube, &old_volume).await?;
            let old_class = old.spec.as_ref().and_then(|s| s.storage_class_name.clone());
            let new_class = current
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default();
            Ok(vec![
                objects::to_value(&recreated(&current, &old_volume, old_class.as_deref(), &[]))?,
                objects::to_value(&recreated(
                    &keeper(&current, &new_class),
                    &new_pv,
                    Some(&new_class),
                    &[],
                ))?,
            ])
        }
        Migration::Repointed { target } => {
            let w = workload_on(kube, claim, &target, named).await?;
            let mut obj = w.get(kube).await?;
            workload::repoint(&mut obj, &w, &target, claim, false, workload::SubPath::Keep)?;
            Ok(vec![objects::to_value(&obj)?])
        }
    }
}

async fn remove_claim_annotation(kube: &Kube, claim: &str, key: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: null}}});
    api::patch_merge::<PersistentVolumeClaim>(&api::namespaced(kube), "claim", claim, &patch)
        .await?;
    Ok(())
}

async fn rollback_keep_name(
    kube: &Kube,
    current: &PersistentVolumeClaim,
    old_pv: &str,
    named: Option<&Workload>,
    scale_timeout: Duration,
    observer: &mut dyn Observer,
) -> Result<RollbackReport> {
    let claim = current.metadata.name.clone().unwrap_or_default();
    let new_pv = steps::bound_volume(current)?;
    let old = steps::get_volume(kube, old_pv).await.map_err(|e| {
        e.context(format!(
            "the volume {old_pv} claim {claim} was migrated from cannot be read; it may have \
             been deleted, and then there is no way back"
        ))
    })?;
    let new_class = current
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let old_class = old.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    let workloads = match named {
        Some(w) => vec![w.clone()],
        None => workload::users_of(kube, &claim).await?,
    };
    observer.step(&format!("stopping the workloads that use claim {claim}"));
    let guard = workload::scale_down(kube, &workloads, &[&claim], scale_timeout).await?;
    let result = async {
        let pv = steps::get_volume(kube, &new_pv).await?;
        steps::patch_volume(kube, &new_pv, &volume::retain_patch(&pv)).await?;
        observer.step(&format!(
            "removing claim {claim} (its volume {new_pv} is kept)"
        ));
        steps::delete_claim_and_wait(kube, &claim, CLAIM_TIMEOUT).await?;
        if let Err(e) =
            bind_claim_to(kube, current, old_pv, old_class.as_deref(), &[], observer).await
        {
            // Back onto the volume it had a moment ago, so the workload finds its data.
            let _ = steps::delete_claim_and_wait(kube, &claim, CLAIM_TIMEOUT).await;
            let annotations = [(volume::MIGRATED_FROM_VOLUME, old_pv)];
            let back = bind_claim_to(
                kube,
                current,
                &new_pv,
                Some(&new_class),
                &annotations,
                observer,
            )
            .await
            .map_err(|e2| {
                e2.context(format!(
                    "binding claim {claim} back to {new_pv} failed too; both volumes are kept \
                     (Retain): recreate claim {claim} with spec.volumeName {new_pv}"
                ))
            });
            return Error::with_undo(Err(e), back).map_err(|e| {
                workload::stopped_then(
                    e,
                    format!("claim {claim} is bound to {new_pv} again, as before the rollback"),
                )
            });
        }
        if let Some(p) = volume::restore_policy_patch(&steps::get_volume(kube, old_pv).await?) {
            steps::patch_volume(kube, old_pv, &p).await?;
        }
        let patch = json!({"metadata": {"annotations": {volume::MIGRATED_TO: null}}});
        steps::patch_volume(kube, old_pv, &patch).await?;
        // The newer data stays reachable under the migration's claim name.
        let like = keeper(current, &new_class);
        let keeper = like.metadata.name.clone().unwrap_or_default();
        bind_claim_to(kube, &like, &new_pv, Some(&new_class), &[], observer).await?;
        workflow::annotate_claim(
            kube,
            &keeper,
            BTreeMap::from([(MIGRATED_FROM.to_owned(), claim.clone())]),
        )
        .await?;
        Ok::<_, Error>(keeper)
    }
    .await;
    let keeper = guard.scale_up_after(kube, observer, result).await?;
    Ok(RollbackReport {
        claim,
        workload: (!workloads.is_empty()).then(|| {
            workloads
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }),
        volume: Some(old_pv.to_owned()),
        newer_data: keeper,
    })
}
