//! pvc-backup's Kubernetes resources, group `pvc-backup.io`, version `v1alpha1`: [`Backup`],
//! [`BackupSchedule`], [`Restore`], [`ClaimClone`] (kind `Clone`) and [`Migration`].
//!
//! Their definitions (CRDs) are generated from these types: the schema from the fields, what a
//! schema cannot say as CEL rules the API server checks (`x-kubernetes-validations`). Each spec
//! says what the command line's flags say; each run's status is a [`RunStatus`].

pub mod backup;
pub mod clone;
pub mod common;
pub mod migration;
pub mod restore;
pub mod schedule;

pub use backup::{Backup, BackupSpec};
pub use clone::{ClaimClone, CloneSpec};
pub use common::{Phase, RunStatus};
pub use migration::{Migration, MigrationSpec};
pub use restore::{Restore, RestoreSpec};
pub use schedule::{BackupSchedule, BackupScheduleSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind.
pub const GROUP: &str = "pvc-backup.io";

/// The version every kind is served and stored in.
pub const VERSION: &str = "v1alpha1";

/// The definitions of every kind, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Backup::crd(),
        BackupSchedule::crd(),
        Restore::crd(),
        ClaimClone::crd(),
        Migration::crd(),
    ]
}
