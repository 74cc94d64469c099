//! `pvc-backup list`: the claims pvc-backup made (backups, clones, migrations), their source,
//! their last run as recorded on them, and their schedule.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::Result;
use crate::api;
use crate::connect::Kube;
use crate::names::{LAST_RUN_ANNOTATION, MANAGED_BY, ROLE_LABEL, SOURCE_LABEL};
use crate::objects::claim::capacity;
use crate::workflow::schedule::{self, ScheduleInfo};

/// A claim made by pvc-backup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `backup`, `clone` or `migrate`.
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
    let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let claims = api::list(&api, "claims", &lp).await?;
    let schedules = schedule::list(kube, all_namespaces).await?;
    let mut out: Vec<Entry> = claims
        .into_iter()
        .filter_map(|c| {
            let labels = c.metadata.labels.clone().unwrap_or_default();
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
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}
