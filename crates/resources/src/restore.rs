//! `Restore`: a snapshot of a backup claim (or of a restic-format repository), restored into the
//! claim it came from (data only, in place) or into a new claim, as `pvc-backup restore`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Mover, Repository, RunStatus, WorkloadRef};

/// A snapshot restored into a claim.
// kube's printcolumn(...) lists repeat `type_ = "..."`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pvc-backup.io",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RunStatus",
    category = "pvc-backup",
    doc = "A snapshot of a backup claim restored into a claim (pvc-backup restore).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshot"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.stats.bytes"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.workload) || (has(self.target) && !has(self.target.create))"
    ).message(
        "workload is the one stopped while a claim is restored in place; a new claim \
         (target.create) or a claim filled as a data source (no target) has none"
    ),
    validation = Rule::new(
        "!has(self.source.repository) || !has(self.target) || !has(self.target.create) \
         || has(self.target.create.size)"
    ).message(
        "a claim created for a Restore from a repository needs target.create.size: a \
         repository holds no claim to take the size from"
    ),
    validation = Rule::new(
        "!has(self.source.repository) || !has(self.source.repository.init) \
         || !self.source.repository.init"
    ).message("init creates a repository, which a Restore only reads: leave it out")
)]
pub struct RestoreSpec {
    /// The backup claim (or repository) and the snapshot in it.
    pub source: RestoreSource,
    /// The claim the snapshot is restored into. Without it the Restore is a volume populator:
    /// it restores nothing by itself, and each new claim whose `spec.dataSourceRef` names it
    /// (apiGroup `pvc-backup.io`, kind `Restore`) is filled with the snapshot before any pod
    /// can mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RestoreTarget>,
    /// The workload to stop while the claim is restored in place (default: the one whose pods
    /// use it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// Seconds the workload's pods may take to stop; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub scale_timeout_seconds: Option<i32>,
    /// How the mover pod runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover: Option<Mover>,
}

/// A snapshot in a backup claim or in a restic-format repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.claim) != has(self.repository)").message(
    "give either claim (a backup claim) or repository, one of them"
))]
pub struct RestoreSource {
    /// The backup claim (made by a Backup or `pvc-backup backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::common::of_this_namespace(),
        validation = crate::common::claim_name()
    )]
    #[schemars(length(min = 1, max = 253))]
    pub claim: Option<String>,
    /// A restic-format repository instead of a backup claim; `latest` is the newest snapshot
    /// of its `host` series (default: `NAMESPACE/CLAIM` of the claim restored into).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// The snapshot's id (as `mover snapshots` lists it, or a Backup's status.snapshot; in a
    /// repository its id or a unique prefix), or `latest` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub snapshot: Option<String>,
}

/// The claim a snapshot is restored into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
pub struct RestoreTarget {
    /// The claim's name. Without `create` it must exist: its data is replaced in place, its
    /// workload stopped meanwhile. With `create` it must not exist yet.
    #[x_kube(
        validation = crate::common::of_this_namespace(),
        validation = crate::common::claim_name()
    )]
    #[schemars(length(min = 1, max = 253))]
    pub claim: String,
    /// Make the claim, sized and classed like the backed-up claim unless said here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<NewClaim>,
}

/// A claim a run makes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewClaim {
    /// Its storage class (default: the backup claim's; from a repository, the cluster's
    /// default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Its size (default: the backup claim's capacity; from a repository it must be given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
}
