//! `Clone`: copies of a claim, as `pvc-backup clone`.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ClaimSource, Mover, RunStatus};
use crate::restore::NewClaim;

/// Copies of a claim.
// kube's printcolumn(...) lists repeat `type_ = "..."`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "pvc-backup.io",
    version = "v1alpha1",
    kind = "Clone",
    root = "ClaimClone",
    namespaced,
    status = "RunStatus",
    category = "pvc-backup",
    doc = "Copies of a claim (pvc-backup clone).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.stats.bytes"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CloneSpec {
    /// The claim to copy.
    pub source: ClaimSource,
    /// The copies.
    pub target: CloneTarget,
    /// How the copies are made: `Auto` (a CSI clone where the driver can, else the mover), `Csi`
    /// or `Copy`.
    #[serde(default)]
    pub method: CloneMethod,
    /// Stop the workloads that use the claim for the copy, and start them again afterwards.
    #[serde(default)]
    pub scale_down: bool,
    /// How the mover pod runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover: Option<Mover>,
}

/// The copies a Clone makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloneTarget {
    /// The copy's name; with a count N above 1 the copies are NAME-1 ... NAME-N.
    #[x_kube(
        validation = crate::common::of_this_namespace(),
        validation = crate::common::claim_name()
    )]
    #[schemars(length(min = 1, max = 240))]
    pub name: String,
    /// How many copies (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub count: Option<i32>,
    /// The copies' storage class and size.
    #[serde(flatten)]
    pub claim: NewClaim,
}

/// How a Clone copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CloneMethod {
    /// A CSI clone where the driver can make one, else the mover.
    #[default]
    Auto,
    /// Only a CSI clone.
    Csi,
    /// Only the mover.
    Copy,
}
