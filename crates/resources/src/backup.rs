//! `Backup`: one versioned backup of a claim into a backup claim, as `pvc-backup backup`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ClaimSource, Keep, Mover, Repository, RunStatus};

/// One backup of a claim: a new snapshot in its backup claim (or a restic-format repository),
/// then retention.
// kube's printcolumn(...) lists repeat `type_ = "..."`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pvc-backup.io",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "RunStatus",
    category = "pvc-backup",
    doc = "One backup of a claim into its backup claim or a restic-format repository (pvc-backup backup).",
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
pub struct BackupSpec {
    /// The claim to back up.
    pub source: ClaimSource,
    /// Where and how: the backup claim, retention, consistency and the mover.
    #[serde(flatten)]
    pub options: BackupOptions,
}

/// What a backup does with its source, shared by a Backup and a BackupSchedule's template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupOptions {
    /// The backup claim, created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<BackupTarget>,
    /// Back up only this folder of the claim, relative to its root (`a/b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = crate::common::relative_folder())]
    #[schemars(length(min = 1, max = 4096))]
    pub subdir: Option<String>,
    /// Which snapshots to keep after this one is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Keep>,
    /// How a consistent copy is made while the claim is in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// How the mover pod runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover: Option<Mover>,
}

/// Where the snapshots go: the backup claim (the default), or a restic-format repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.repository) || (!has(self.claim) && !has(self.storageClassName) && !has(self.size))"
).message(
    "give either a backup claim (claim, storageClassName, size) or a repository, not both"
))]
pub struct BackupTarget {
    /// The backup claim's name (default: the source's name with `-backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::common::of_this_namespace(),
        validation = crate::common::claim_name()
    )]
    #[schemars(length(min = 1, max = 253))]
    pub claim: Option<String>,
    /// Its storage class when it is created (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Its size when it is created (default and minimum: the source's capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// A restic-format repository instead of a backup claim: the mover pod mounts only the
    /// source and writes a snapshot into the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
}

/// How a backup copies a claim that is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.snapshotClassName) || self.method == 'Snapshot'").message(
        "snapshotClassName is for method: Snapshot only"
    )
)]
pub struct Consistency {
    /// `Live` copies the files while the workload runs; `ScaleDown` stops the workloads that
    /// use the claim for the copy and starts them again; `Snapshot` takes a CSI VolumeSnapshot
    /// first and copies a claim restored from it.
    #[serde(default)]
    pub method: Method,
    /// The VolumeSnapshotClass for `Snapshot` (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class_name: Option<String>,
}

/// How a consistent copy is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Method {
    /// Copy while the workload runs.
    #[default]
    Live,
    /// Stop the workloads that use the claim for the copy.
    ScaleDown,
    /// Copy a CSI VolumeSnapshot of the claim.
    Snapshot,
}
