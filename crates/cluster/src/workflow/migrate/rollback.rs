//! `migrate --rollback`: the workload back on its original data, from what the migration
//! recorded.

use super::cutover::{bind_claim_to, keeper, recreated};
use super::{CLAIM_TIMEOUT, MIGRATED_FROM};
use crate::api;
use crate::connect::Kube;
use crate::objects::{self, volume};
use crate::run::Observer;
use crate::workflow::steps::{self};
use crate::workflow::{self};
use crate::workload::{self, Workload};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

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
