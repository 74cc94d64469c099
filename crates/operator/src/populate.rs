//! The volume populator: a new claim whose `spec.dataSourceRef` names a Restore (apiGroup
//! `pvc-backup.io`, kind `Restore`, one without `spec.target`) is filled with that Restore's
//! snapshot before any pod can mount it. GitOps can then declare "this claim starts from that
//! backup".
//!
//! Kubernetes leaves such a claim unbound: no provisioner makes a volume for a data source it
//! does not know (an in-tree one says so in a ProvisioningFailed Event). The operator then does
//! what Kubernetes' volume populators do:
//!
//! 1. it makes a *prime* claim, `CLAIM-populate-ID`, in the claim's namespace: the claim's
//!    spec without the data source, owned by the claim, on the node the scheduler chose for the
//!    claim when its class waits for the first consumer;
//! 2. the restore workflow of `pvc-backup restore PRIME --from BACKUP` fills the prime claim;
//! 3. the prime claim's volume is handed to the claim (its `claimRef` pointed at the claim) and
//!    Kubernetes' PV controller binds the claim to it;
//! 4. the restore's Job and the prime claim, left without a volume, are deleted.
//!
//! A pod that uses the claim waits, unscheduled, until step 3: no pod sees it empty. Each step
//! checks what the last one left, so an operator that restarts midway goes on where it stopped.
//! The Restore's status shows the last claim it filled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster::api;
use cluster::connect::Kube;
use cluster::run::Observer;
use cluster::workflow::MoverSettings;
use cluster::workflow::restore as flow;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use resources::common::Phase;
use resources::restore::Restore;
use serde_json::json;

use crate::run::{self, Ended, Log, now, run_id, tell};
use crate::{Context, Error, status};

/// The label on a prime claim: the uid of the claim it fills.
pub const PRIME_LABEL: &str = "pvc-backup.io/populates";

/// The annotation in which the scheduler names the node of a claim whose class waits for the
/// first consumer.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// How long the PV controller may take to bind the claim to the filled volume.
const BIND_TIMEOUT: Duration = Duration::from_secs(300);

/// The Restore a claim's `spec.dataSourceRef` names, if it names one: its name, and the
/// namespace the reference gives (cross-namespace references are refused).
pub fn restore_named(claim: &PersistentVolumeClaim) -> Option<(String, Option<String>)> {
    let source = claim.spec.as_ref()?.data_source_ref.as_ref()?;
    (source.api_group.as_deref() == Some(resources::GROUP) && source.kind == "Restore")
        .then(|| (source.name.clone(), source.namespace.clone()))
}

/// The prime claim of claim `claim`, filled in run `run`: at most 253 characters.
pub fn prime_name(claim: &str, run: &str) -> String {
    let mut base = claim.to_owned();
    base.truncate(253 - "-populate-".len() - run.len());
    format!("{}-populate-{run}", base.trim_end_matches(['-', '.']))
}

/// The prime claim of `claim`: its spec without the data source (nor a volume name), on the
/// scheduler's node if it chose one, owned by `claim` so that it goes when `claim` does.
pub fn prime(claim: &PersistentVolumeClaim, name: &str) -> PersistentVolumeClaim {
    let spec = claim.spec.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = claim
        .annotations()
        .get(SELECTED_NODE)
        .map(|node| (SELECTED_NODE.to_owned(), node.clone()))
        .into_iter()
        .collect();
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: claim.namespace(),
            labels: Some(
                [
                    (PRIME_LABEL.to_owned(), claim.uid().unwrap_or_default()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        crate::install::NAME.to_owned(),
                    ),
                ]
                .into(),
            ),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "PersistentVolumeClaim".to_owned(),
                name: claim.name_any(),
                uid: claim.uid().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            resources: spec.resources,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            volume_attributes_class_name: spec.volume_attributes_class_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The merge patch that hands volume of a prime claim to `claim`: the PV controller then binds
/// `claim` to it, as it binds a claim to a volume made for it.
pub fn hand_over(claim: &PersistentVolumeClaim) -> serde_json::Value {
    json!({"spec": {"claimRef": {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": claim.namespace(),
        "name": claim.name_any(),
        "uid": claim.uid(),
        "resourceVersion": null,
        "fieldPath": null,
    }}})
}

/// Reconciles one claim (the claim controller's reconciler): fills it if its data source is a
/// Restore and it has no volume yet.
pub async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let Some((restore_name, ref_namespace)) = restore_named(&claim) else {
        return Ok(Action::await_change());
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let uid = claim.uid().unwrap_or_default();
    let kube = Kube {
        client: ctx.client.clone(),
        namespace: namespace.clone(),
    };
    let reference = claim.object_ref(&());
    if claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_ref())
        .is_some()
    {
        // Filled and bound (or bound by someone else): nothing of a population stopped after
        // the hand-over is left behind.
        if !ctx.runs(&uid) {
            let run = run_id(&uid);
            remove_prime(&kube, &prime_name(&claim.name_any(), &run), &run).await?;
        }
        return Ok(Action::await_change());
    }
    if ctx.runs(&uid) {
        // Looked at again after the run: a failed one is tried again.
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    if let Some(other) = ref_namespace.filter(|n| *n != namespace) {
        let note = format!(
            "spec.dataSourceRef names Restore {restore_name} of namespace {other}; a claim is \
             filled only from a Restore of its own namespace: create the Restore in {namespace}"
        );
        refuse(&ctx, &reference, "DataSourceRefused", note).await;
        return Ok(Action::await_change());
    }
    let restores: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(restore) = api::get_opt(&restores, "Restore", &restore_name).await? else {
        let note = format!(
            "Restore {restore_name}, which spec.dataSourceRef names, does not exist in namespace \
             {namespace}: create it (with spec.source and no spec.target); the claim waits"
        );
        refuse(&ctx, &reference, "DataSourceMissing", note).await;
        // Its creation wakes the claim (the controller watches Restores).
        return Ok(Action::await_change());
    };
    if let Some(target) = &restore.spec.target {
        let note = format!(
            "Restore {restore_name} restores into claim {} by itself; a claim's data source is a \
             Restore without spec.target: create one for this claim",
            target.claim
        );
        refuse(&ctx, &reference, "DataSourceRefused", note).await;
        return Ok(Action::await_change());
    }
    if waits_for_node(&kube, &claim).await? {
        // The scheduler names a node once a pod uses the claim; that change wakes this again.
        return Ok(Action::await_change());
    }

    let run = run_id(&uid);
    let prime_claim = prime_name(&claim.name_any(), &run);
    let job = crate::restore::job_name(&prime_claim, &run);
    // The times of an earlier population of another claim are not this one's.
    let earlier = restore
        .status
        .clone()
        .filter(|s| s.job.as_deref() == Some(job.as_str()))
        .unwrap_or_default();
    let running = status::running(&earlier, &job, restore.meta().generation, now());
    run::patch_status::<Restore>(&restores, &restore_name, &running).await?;
    tell(
        &ctx,
        &reference,
        EventType::Normal,
        "Populating",
        format!("Job {job} fills the claim from Restore {restore_name}"),
    )
    .await;

    let settings = run::settings(&ctx.settings, &restore);
    let task_ctx = ctx.clone();
    let key = uid.clone();
    let task = tokio::spawn(async move {
        let mut log = Log {
            kind: "Restore",
            name: restore_name.clone(),
        };
        let result = populate(
            &kube,
            &claim,
            &restore,
            &prime_claim,
            &run,
            &settings,
            &mut log,
        )
        .await;
        let ended = run::final_status(&running, &result);
        tracing::info!(claim = %claim.name_any(), namespace = %kube.namespace, phase = ?ended.phase,
            "population ended");
        let reason = match ended.phase {
            Some(Phase::Succeeded) => "Populated",
            _ => "PopulationFailed",
        };
        let end = run::End {
            kind: "Restore",
            namespace: &kube.namespace,
            claim: &claim.name_any(),
            status: &ended,
        };
        end.tell(&task_ctx, &[&reference, &restore.object_ref(&())], reason)
            .await;
        let restores: Api<Restore> = Api::namespaced(task_ctx.client.clone(), &kube.namespace);
        if let Err(e) = run::patch_status::<Restore>(&restores, &restore_name, &ended).await {
            tracing::warn!(restore = %restore_name, error = %cluster::error::chain_text(&e),
                "status not written");
        }
        if result.is_err() {
            // Tried again (the steps done are kept) after a pause.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        task_ctx.forget(&key);
    });
    ctx.started(&uid, task.abort_handle());
    // Woken again when the claim is bound; a failed run is tried again from here.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Tells, in a Warning Event on the claim, why it is not filled.
async fn refuse(ctx: &Context, claim: &ObjectReference, reason: &str, note: String) {
    tell(ctx, claim, EventType::Warning, reason, note).await;
}

/// What the claim controller does with a reconcile that failed: logs it and tries again in 15 s.
pub fn error_policy(claim: Arc<PersistentVolumeClaim>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(claim = %claim.name_any(), namespace = ?claim.namespace(),
        error = %cluster::error::chain_text(error), "reconcile failed; trying again in 15 s");
    Action::requeue(Duration::from_secs(15))
}

/// Whether the claim's class binds at the first consumer and the scheduler has not chosen the
/// claim's node yet.
async fn waits_for_node(kube: &Kube, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
    if claim.annotations().contains_key(SELECTED_NODE) {
        return Ok(false);
    }
    let Some(class) = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
    else {
        return Ok(false);
    };
    let classes: Api<StorageClass> = api::cluster(kube);
    let class = api::get_opt(&classes, "storage class", &class).await?;
    Ok(class.and_then(|c| c.volume_binding_mode).as_deref() == Some("WaitForFirstConsumer"))
}

/// The steps, each safe to do again: the prime claim, filled; its volume handed to the claim;
/// the claim bound; the prime claim deleted.
async fn populate(
    kube: &Kube,
    claim: &PersistentVolumeClaim,
    restore: &Restore,
    prime_claim: &str,
    run: &str,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> cluster::Result<Ended> {
    let claims: Api<PersistentVolumeClaim> = api::namespaced(kube);
    let volumes: Api<PersistentVolume> = api::cluster(kube);
    let uid = claim.uid().unwrap_or_default();
    let mut request = crate::restore::request(restore, prime_claim, run);
    // From a repository, `latest` is the newest snapshot of the claim being filled (its series
    // NAMESPACE/CLAIM), not of the prime claim that stands in for it.
    if request.repository.is_some() && request.host.is_none() {
        request.host = Some(cluster::objects::repository::host(
            &kube.namespace,
            &claim.name_any(),
        ));
    }

    // A volume already handed over (an operator that stopped after step 3) is not filled again.
    let existing = api::get_opt(&claims, "claim", prime_claim).await?;
    let handed = match existing
        .as_ref()
        .and_then(|p| p.spec.as_ref()?.volume_name.clone())
    {
        Some(volume) => api::get_opt(&volumes, "volume", &volume)
            .await?
            .and_then(|v| v.spec?.claim_ref?.uid)
            .is_some_and(|u| u == uid),
        None => false,
    };
    let report = if handed {
        observer.step(&format!(
            "the volume of claim {prime_claim} was handed to claim {} already",
            claim.name_any()
        ));
        None
    } else {
        if existing.is_none() {
            observer.step(&format!("creating claim {prime_claim} to fill"));
            api::create_or_keep(&claims, "claim", prime_claim, &prime(claim, prime_claim)).await?;
        }
        let report = flow::run(kube, &request, settings, observer).await?;
        let Some(outcome) = &report.outcome else {
            return Err(cluster::Error::Failed(
                "the restore's Job was not followed".to_owned(),
            ));
        };
        // Only a complete copy is handed over: a pod must never start on part of the data.
        if contract::ExitCode::from_code(outcome.exit_code) != Some(contract::ExitCode::Ok) {
            return Err(cluster::Error::Failed(format!(
                "the restore into claim {prime_claim} did not complete (mover exit code {}); \
                 the claim stays unbound and is tried again: see the Job's log",
                outcome.exit_code
            )));
        }
        let filled = api::get(&claims, "claim", prime_claim).await?;
        let Some(volume) = filled.spec.and_then(|s| s.volume_name) else {
            return Err(cluster::Error::Failed(format!(
                "claim {prime_claim} was filled but has no volume"
            )));
        };
        observer.step(&format!(
            "handing volume {volume} to claim {}",
            claim.name_any()
        ));
        api::patch_merge(&volumes, "volume", &volume, &hand_over(claim)).await?;
        Some(report)
    };

    let name = claim.name_any();
    let bound = api::wait_for(
        claims.clone(),
        "claim",
        &name,
        BIND_TIMEOUT,
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
        },
    )
    .await?;
    if bound.is_none() {
        return Err(cluster::Error::Failed(format!(
            "claim {name} was not bound to its filled volume within {} s: see `kubectl describe \
             pvc {name}`",
            BIND_TIMEOUT.as_secs()
        )));
    }
    observer.step(&format!(
        "claim {name} is bound; deleting the restore's Job and claim {prime_claim}"
    ));
    remove_prime(kube, prime_claim, run).await?;
    Ok(Ended {
        // Handed over before a restart: the run's figures went with its Job's log.
        outcomes: report.and_then(|r| r.outcome).into_iter().collect(),
        said: Some(format!(
            "snapshot {} of {} {} filled claim {name} (volume populator)",
            request.snapshot,
            if request.repository.is_some() {
                "repository"
            } else {
                "claim"
            },
            request.from
        )),
        snapshot: Some(request.snapshot),
    })
}

/// Deletes the restore's Job, then prime claim `prime_claim` (either may be gone already). A
/// pod that used a claim, even one that has ended, keeps the claim from being deleted: the Job
/// goes first, with its pod (its figures are in the Restore's status by then).
async fn remove_prime(kube: &Kube, prime_claim: &str, run: &str) -> cluster::Result<()> {
    let job = crate::restore::job_name(prime_claim, run);
    cluster::run::delete_job(kube, &job).await?;
    let claims: Api<PersistentVolumeClaim> = api::namespaced(kube);
    api::delete(&claims, "claim", prime_claim, &DeleteParams::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::TypedObjectReference;

    fn claim(source: Option<TypedObjectReference>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("shop".into()),
                uid: Some("5f3a9b21-0000".into()),
                annotations: Some(
                    [
                        (SELECTED_NODE.to_owned(), "node-1".to_owned()),
                        ("other".to_owned(), "x".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some("fast".into()),
                data_source_ref: source.clone(),
                data_source: source.map(|s| {
                    k8s_openapi::api::core::v1::TypedLocalObjectReference {
                        api_group: s.api_group,
                        kind: s.kind,
                        name: s.name,
                    }
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    fn reference(group: &str, kind: &str) -> TypedObjectReference {
        TypedObjectReference {
            api_group: Some(group.into()),
            kind: kind.into(),
            name: "from-backup".into(),
            namespace: None,
        }
    }

    #[test]
    fn only_a_restore_of_pvc_backup_io_is_a_source_to_fill() {
        assert_eq!(
            restore_named(&claim(Some(reference("pvc-backup.io", "Restore")))),
            Some(("from-backup".to_owned(), None))
        );
        assert_eq!(
            restore_named(&claim(Some(reference("velero.io", "Restore")))),
            None
        );
        assert_eq!(
            restore_named(&claim(Some(reference("pvc-backup.io", "Backup")))),
            None
        );
        assert_eq!(restore_named(&claim(None)), None);
    }

    #[test]
    fn the_prime_claim_is_the_claim_without_its_source_on_its_node_and_owned_by_it() {
        let c = claim(Some(reference("pvc-backup.io", "Restore")));
        let p = prime(&c, &prime_name("data", "5f3a9"));
        assert_eq!(p.metadata.name.as_deref(), Some("data-populate-5f3a9"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
        let spec = p.spec.unwrap();
        assert!(spec.data_source_ref.is_none() && spec.data_source.is_none());
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            p.metadata
                .annotations
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![(SELECTED_NODE.to_owned(), "node-1".to_owned())]
        );
        assert_eq!(
            p.metadata.labels.unwrap()[PRIME_LABEL],
            "5f3a9b21-0000".to_owned()
        );
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("PersistentVolumeClaim", "data")
        );
        // A long claim name still gives a valid name.
        let long = "d".repeat(253);
        assert_eq!(prime_name(&long, "5f3a9").len(), 253);
    }

    #[test]
    fn the_hand_over_points_the_volume_at_the_claim_and_nothing_else() {
        let patch = hand_over(&claim(None));
        assert_eq!(
            patch,
            json!({"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": "shop", "name": "data", "uid": "5f3a9b21-0000",
                "resourceVersion": null, "fieldPath": null}}})
        );
    }
}
