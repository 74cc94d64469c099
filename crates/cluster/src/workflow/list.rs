//! `pvc-backup list`: the claims pvc-backup made (backups, clones, migrations), their source,
//! their last run as recorded on them, and their schedule; and the restic-format repositories
//! claims were backed up into, with the last such run as recorded on the claim.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::Result;
use crate::api;
use crate::connect::Kube;
use crate::names::{
    LAST_REPOSITORY_RUN_ANNOTATION, LAST_RUN_ANNOTATION, MANAGED_BY, ROLE_LABEL, SOURCE_LABEL,
};
use crate::objects::claim::capacity;
use crate::workflow::schedule::{self, ScheduleInfo};

/// A claim made by pvc-backup, or a repository a claim was backed up into.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its namespace.
    pub namespace: String,
    /// Its name (a repository's: its URL).
    pub name: String,
    /// `backup`, `clone`, `migrate`, or `repository`.
    pub role: String,
    /// The claim it was made from.
    pub source: String,
    /// Its capacity.
    pub size: Option<String>,
    /// Its storage class.
    pub storage_class: Option<String>,
    /// Its phase (`Bound`, `Pending`, ...).
    pub phase: Option<String>,
    /// The last run into it (see `workflow::last_run`), if any.
    pub last_run: Option<Value>,
    /// The schedules that back up into it.
    pub schedules: Vec<ScheduleInfo>,
}

/// Lists what pvc-backup made in the namespace (or in all namespaces).
pub async fn list(kube: &Kube, all_namespaces: bool) -> Result<Vec<Entry>> {
    let api: Api<PersistentVolumeClaim> = if all_namespaces {
        Api::all(kube.client.clone())
    } else {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    };
    // Every claim: a source claim backed up into a repository carries that run's record.
    let claims = api::list(&api, "claims", &ListParams::default()).await?;
    let schedules = schedule::list(kube, all_namespaces).await?;
    let mut out: Vec<Entry> = claims
        .iter()
        .filter_map(|c| repository_entry(c, &schedules))
        .collect();
    out.extend(claims.into_iter().filter_map(|c| {
        let labels = c.metadata.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1) {
            return None;
        }
        let role = labels.get(ROLE_LABEL).cloned().unwrap_or_default();
        if role == "scratch" {
            return None;
        }
        let namespace = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        let last_run = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LAST_RUN_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok());
        Some(Entry {
            schedules: schedules
                .iter()
                .filter(|s| s.namespace == namespace && s.target == name)
                .cloned()
                .collect(),
            role,
            source: labels.get(SOURCE_LABEL).cloned().unwrap_or_default(),
            size: capacity(&c).map(|q| q.0),
            storage_class: c.spec.as_ref().and_then(|s| s.storage_class_name.clone()),
            phase: c.status.as_ref().and_then(|s| s.phase.clone()),
            last_run,
            namespace,
            name,
        })
    }));
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// The repository claim `c` was last backed up into, from its record; `None` when it has none.
fn repository_entry(c: &PersistentVolumeClaim, schedules: &[ScheduleInfo]) -> Option<Entry> {
    let last_run: Value = c
        .metadata
        .annotations
        .as_ref()?
        .get(LAST_REPOSITORY_RUN_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())?;
    let url = last_run["repository"].as_str()?.to_owned();
    let namespace = c.metadata.namespace.clone().unwrap_or_default();
    let claim = c.metadata.name.clone().unwrap_or_default();
    Some(Entry {
        schedules: schedules
            .iter()
            .filter(|s| s.namespace == namespace && s.source == claim && s.target == url)
            .cloned()
            .collect(),
        role: "repository".to_owned(),
        source: claim,
        size: None,
        storage_class: None,
        phase: None,
        last_run: Some(last_run),
        namespace,
        name: url,
    })
}
