//! Claims and volumes of clones and migrations: a CSI clone claim (a `dataSource` naming the
//! source claim, no VolumeSnapshot needed), the PersistentVolume changes that keep a volume
//! when its claim goes (reclaim policy `Retain`) and reserve it for a claim of another name
//! (`claimRef`), and the claim recreated under the original name on the new volume.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::objects::claim::{ClaimRequest, claim};
use crate::{Error, Result};

/// Annotation on a PersistentVolume whose reclaim policy pvc-backup set to `Retain`: the
/// policy it had, so a rollback can give it back.
pub const RECLAIM_POLICY: &str = "pvc-backup.io/reclaim-policy";

/// Annotation on the claim recreated by `migrate --keep-name`: the volume it used before (kept,
/// `Released`, as the way back).
pub const MIGRATED_FROM_VOLUME: &str = "pvc-backup.io/migrated-from-volume";

/// Annotation on a claim whose data was migrated: where it went (`claim` or `claim@volume`).
pub const MIGRATED_TO: &str = "pvc-backup.io/migrated-to";

/// Annotations the API server and the volume controllers set on a claim; a recreated claim
/// must not carry them over (they describe the old binding).
const BINDING_ANNOTATIONS: [&str; 6] = [
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// The `dataSource` of a CSI clone of claim `source` (same namespace).
pub fn clone_source(source: &str) -> TypedLocalObjectReference {
    TypedLocalObjectReference {
        api_group: None,
        kind: "PersistentVolumeClaim".to_owned(),
        name: source.to_owned(),
    }
}

/// The claim of a CSI clone of `source`, as `req` describes it.
///
/// A CSI clone is made by the source's driver inside its storage class, with the same volume
/// mode and at least its size; anything else is refused here, before the API server (or a
/// claim that never binds) says so less clearly.
pub fn csi_clone(
    source: &PersistentVolumeClaim,
    req: &ClaimRequest,
) -> Result<PersistentVolumeClaim> {
    let spec = source.spec.clone().unwrap_or_default();
    let source_name = source.metadata.name.clone().unwrap_or_default();
    if req.storage_class != spec.storage_class_name {
        return Err(Error::Invalid(format!(
            "a CSI clone of claim {source_name} stays in its storage class {}; for storage \
             class {} use --method copy",
            spec.storage_class_name.as_deref().unwrap_or("(none)"),
            req.storage_class.as_deref().unwrap_or("(default)"),
        )));
    }
    let mut req = req.clone();
    req.data_source = Some(clone_source(&source_name));
    Ok(claim(&req))
}

/// A merge patch that sets a volume's reclaim policy to `Retain`, recording `previous` (its
/// policy before) in [`RECLAIM_POLICY`] unless one is recorded already.
pub fn retain_patch(pv: &PersistentVolume) -> Value {
    let previous = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Delete".to_owned());
    let recorded = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECLAIM_POLICY))
        .cloned();
    json!({
        "metadata": {"annotations": {RECLAIM_POLICY: recorded.unwrap_or(previous)}},
        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
    })
}

/// A merge patch that gives a volume back the reclaim policy recorded in [`RECLAIM_POLICY`]
/// and removes the annotation (`None` when nothing is recorded).
pub fn restore_policy_patch(pv: &PersistentVolume) -> Option<Value> {
    let recorded = pv.metadata.annotations.as_ref()?.get(RECLAIM_POLICY)?;
    Some(json!({
        "metadata": {"annotations": {RECLAIM_POLICY: null}},
        "spec": {"persistentVolumeReclaimPolicy": recorded},
    }))
}

/// A merge patch that reserves a volume for claim `namespace/name`: a `claimRef` without the
/// old claim's uid, which turns a `Released` volume `Available` for that claim only.
pub fn claim_ref_patch(namespace: &str, name: &str) -> Value {
    json!({
        "spec": {"claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": namespace,
            "name": name,
            "uid": null,
            "resourceVersion": null,
        }},
    })
}

/// The claim `original` recreated on volume `volume` (of storage class `storage_class`): same
/// name, labels, annotations (less those describing the old binding), access and volume mode
/// and requested size, with `spec.volumeName` so that it binds to that volume and no other.
/// `extra_annotations` are added (what pvc-backup records about the move).
pub fn rebound_claim(
    original: &PersistentVolumeClaim,
    volume: &str,
    storage_class: Option<&str>,
    extra_annotations: &[(&str, &str)],
) -> PersistentVolumeClaim {
    let spec = original.spec.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = original
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !BINDING_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    for (k, v) in extra_annotations {
        annotations.insert((*k).to_owned(), (*v).to_owned());
    }
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: original.metadata.name.clone(),
            namespace: original.metadata.namespace.clone(),
            labels: original.metadata.labels.clone(),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            resources: spec.resources,
            volume_mode: spec.volume_mode,
            storage_class_name: storage_class.map(str::to_owned),
            volume_name: Some(volume.to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
