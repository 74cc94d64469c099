//! CSI VolumeSnapshots (`snapshot.storage.k8s.io/v1`, not part of k8s-openapi): a point-in-time
//! copy of a claim, and the claim restored from it.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The API group of VolumeSnapshots.
pub const GROUP: &str = "snapshot.storage.k8s.io";

/// The API resource, for the dynamic client.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// A VolumeSnapshot of `claim`, with `labels`, of class `class` (the default class if `None`).
pub fn volume_snapshot(
    name: &str,
    namespace: &str,
    claim: &str,
    class: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut spec = json!({"source": {"persistentVolumeClaimName": claim}});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    })
}

/// The `dataSource` of a claim restored from the snapshot `name`.
pub fn data_source(name: &str) -> TypedLocalObjectReference {
    TypedLocalObjectReference {
        api_group: Some(GROUP.to_owned()),
        kind: "VolumeSnapshot".to_owned(),
        name: name.to_owned(),
    }
}

/// Whether a VolumeSnapshot is ready, failed (with the driver's message) or still in progress.
pub fn state(snapshot: &Value) -> Result<bool, String> {
    let status = &snapshot["status"];
    if let Some(message) = status["error"]["message"].as_str() {
        return Err(message.to_owned());
    }
    Ok(status["readyToUse"].as_bool() == Some(true))
}
