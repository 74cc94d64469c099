//! The migration's copies and its cut-over: the warm copy with the workload running, then the
//! last copy, the verification and the switch to the new claim (or, with `--keep-name`, the new
//! volume bound under the claim's name).

use super::record::save;
use super::{
    BIND, CLAIM_TIMEOUT, FINAL_COPY, MARK, MIGRATED_FROM, MigratePlan, MigrateReport,
    MigrateRequest, NEW_VOLUME, OLD_VOLUME, ORIGINAL, REMOVE_CLAIM, REMOVE_TEMPORARY, REPOINT,
    RETAIN, VERIFY, WORKLOAD, plan_with,
};
use crate::api;
use crate::connect::Kube;
use crate::objects::claim::{self, Role};
use crate::objects::mover::Placement;
use crate::objects::volume;
use crate::run::{self, Observer};
use crate::workflow::progress::{PROGRESS, Progress};
use crate::workflow::steps::{self};
use crate::workflow::{self, MoverSettings};
use crate::workload::{self, ClaimUse, Workload};
use crate::{Error, Result, placement};
use contract::ExitCode;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;
use std::collections::BTreeMap;

/// The first copy, with the workload running: most of the data moves while it still serves.
pub(super) async fn warm_copy(
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
pub(super) async fn finish(
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
pub(super) async fn rebind(
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
                "{}; giving claim {claim} back its volume {old_pv}",
                e.full_message()
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
pub(super) async fn bind_claim_to(
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
pub(super) fn recreated(
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
pub(super) fn keeper(current: &PersistentVolumeClaim, new_class: &str) -> PersistentVolumeClaim {
    let claim = current.metadata.name.clone().unwrap_or_default();
    let mut like = current.clone();
    like.metadata.name = Some(format!("{claim}-{new_class}"));
    let mut labels = like.metadata.labels.clone().unwrap_or_default();
    labels.extend(claim::labels(&claim, Role::Migrate));
    like.metadata.labels = Some(labels);
    like
}
