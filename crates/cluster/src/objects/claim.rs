//! Target claims: the backup, clone or migration claim made for a source claim.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::names::{self, MANAGED_BY, ROLE_LABEL, SOURCE_LABEL};
use crate::{Error, Result, quantity};

/// What a claim made by pvc-backup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds versioned backups of the source.
    Backup,
    /// A copy of the source, used on its own.
    Clone,
    /// The source's successor on another storage class.
    Migrate,
    /// A restore into the source from its backup (Jobs only; no claim is made).
    Restore,
    /// Temporary: a claim restored from a VolumeSnapshot, removed after the copy.
    Scratch,
}

impl Role {
    /// The value of the role label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backup => "backup",
            Role::Clone => "clone",
            Role::Migrate => "migrate",
            Role::Restore => "restore",
            Role::Scratch => "scratch",
        }
    }
}

/// What the target claim should be.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Its name.
    pub name: String,
    /// Its namespace (the source's).
    pub namespace: String,
    /// The source claim's name (recorded as a label).
    pub source: String,
    /// What it is for.
    pub role: Role,
    /// Requested size.
    pub size: Quantity,
    /// Storage class; `None` uses the cluster's default.
    pub storage_class: Option<String>,
    /// Access modes.
    pub access_modes: Vec<String>,
    /// `Filesystem` or `Block`.
    pub volume_mode: String,
    /// A `dataSource` (CSI clone of a claim, or restore of a VolumeSnapshot).
    pub data_source: Option<TypedLocalObjectReference>,
}

impl ClaimRequest {
    /// The request for a claim like `source` (same size or `size` if given, same access and
    /// volume mode), named `name`, on `storage_class` (the source's when `None`).
    ///
    /// Refuses a `size` smaller than the source's capacity: the copy could not fit.
    pub fn like(
        source: &PersistentVolumeClaim,
        name: &str,
        role: Role,
        storage_class: Option<&str>,
        size: Option<&str>,
    ) -> Result<ClaimRequest> {
        let source_name = source.metadata.name.clone().unwrap_or_default();
        names::check_name("claim name", name, 253)?;
        let spec = source.spec.clone().unwrap_or_default();
        let capacity = capacity(source);
        let size = match (size, &capacity) {
            (Some(asked), Some(have)) => {
                if quantity::bytes(asked)? < quantity::bytes(&have.0)? {
                    return Err(Error::Invalid(format!(
                        "--size {asked} is smaller than claim {source_name}'s capacity {}: \
                         the copy would not fit; give at least {}",
                        have.0, have.0
                    )));
                }
                Quantity(asked.to_owned())
            }
            (Some(asked), None) => {
                quantity::bytes(asked)?;
                Quantity(asked.to_owned())
            }
            (None, Some(have)) => have.clone(),
            (None, None) => {
                return Err(Error::Invalid(format!(
                    "claim {source_name} states no size: give the target's size with --size"
                )));
            }
        };
        let access_modes = spec
            .access_modes
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
        Ok(ClaimRequest {
            name: name.to_owned(),
            namespace: source.metadata.namespace.clone().unwrap_or_default(),
            source: source_name,
            role,
            size,
            storage_class: storage_class.map(str::to_owned).or(spec.storage_class_name),
            access_modes,
            volume_mode: spec.volume_mode.unwrap_or_else(|| "Filesystem".to_owned()),
            data_source: None,
        })
    }
}

/// The capacity of a claim: what it was given (status) or, before binding, what it asked for.
pub fn capacity(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage").cloned())
        .or_else(|| {
            claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage").cloned())
        })
}

/// The labels of every object pvc-backup makes for `source` in `role`.
pub fn labels(source: &str, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (SOURCE_LABEL.to_owned(), source.to_owned()),
        (ROLE_LABEL.to_owned(), role.as_str().to_owned()),
    ])
}

/// The claim object for a request.
pub fn claim(req: &ClaimRequest) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: Some(req.namespace.clone()),
            labels: Some(labels(&req.source, req.role)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(req.access_modes.clone()),
            storage_class_name: req.storage_class.clone(),
            volume_mode: Some(req.volume_mode.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), req.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            data_source: req.data_source.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
