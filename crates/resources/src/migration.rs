//! `Migration`: a claim moved to another storage class and its workload cut over, as `pvc-backup
//! migrate`; `rollback: true` goes back.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{ClaimSource, Mover, RunStatus, WorkloadRef};

/// A claim moved to another storage class, its workload cut over.
// kube's printcolumn(...) lists repeat `type_ = "..."`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pvc-backup.io",
    version = "v1alpha1",
    kind = "Migration",
    namespaced,
    status = "RunStatus",
    category = "pvc-backup",
    doc = "A claim moved to another storage class, its workload cut over (pvc-backup migrate).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.storageClassName"),
    printcolumn(name = "Rollback", type_ = "boolean", json_path = ".spec.rollback"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.rollback || has(self.storageClassName)").message(
        "storageClassName is required: the class to move the claim to (or rollback: true to go \
         back)"
    ),
    validation = Rule::new("!self.rollback || (!self.keepName && !has(self.size))").message(
        "rollback goes back to what the migration recorded: keepName and size are not for it"
    )
)]
pub struct MigrationSpec {
    /// The claim to move.
    pub source: ClaimSource,
    /// The storage class to move it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// The workload to stop and repoint (default: the one whose pods use the claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// Keep the claim's name: the claim is made again on the new volume (the old volume is
    /// kept, reclaim policy Retain). The only way for a StatefulSet's volumeClaimTemplates.
    #[serde(default)]
    pub keep_name: bool,
    /// The new claim's size (default and minimum: the source's capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Seconds the workload's pods may take to stop; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub scale_timeout_seconds: Option<i32>,
    /// Go back: the workload uses the original claim (or volume) again. The data written since
    /// the migration stays in the new claim.
    #[serde(default)]
    pub rollback: bool,
    /// How the mover pod runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover: Option<Mover>,
}
