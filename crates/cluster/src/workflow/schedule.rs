//! `pvc-backup schedule CLAIM --cron EXPR`: backups on a schedule, as a CronJob that runs the same
//! mover pod `pvc-backup backup` runs; `schedules` lists them and `unschedule` removes them
//! (the backup claim and its snapshots stay).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde::Serialize;

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{self, MANAGED_BY, ROLE_LABEL, SCHEDULE_ANNOTATION, SOURCE_LABEL};
use crate::objects::claim::Role;
use crate::objects::mover::Placement;
use crate::run::Observer;
use crate::workflow::backup::{self, BackupRequest};
use crate::workflow::{self, MoverSettings};
use crate::{Error, Result, cron, placement};

/// Label on a scheduled backup's CronJob: the target claim.
pub const TARGET_LABEL: &str = "pvc-backup.io/target";

/// Annotation on the CronJob of a schedule into a repository: the repository's URL (which no
/// label value can hold).
pub const REPOSITORY_ANNOTATION: &str = "pvc-backup.io/repository";

/// Labels of a pod that say which pod it is rather than which workload it belongs to.
const POD_SPECIFIC: [&str; 6] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
];

/// A scheduled backup.
#[derive(Debug, Clone)]
pub struct ScheduleRequest {
    /// What each run does (`from_snapshot` is not possible on a schedule).
    pub backup: BackupRequest,
    /// The cron expression.
    pub cron: String,
    /// The time zone of the schedule (an IANA name), the controller's when `None`.
    pub time_zone: Option<String>,
    /// The CronJob's name (default: the target claim's).
    pub name: Option<String>,
}

impl ScheduleRequest {
    /// The CronJob's name (default: the target claim's, or `CLAIM-repository`).
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| match self.backup.repository {
                Some(_) => format!("{}-repository", self.backup.claim),
                None => self.backup.target(),
            })
    }
}

/// The objects a schedule creates.
#[derive(Debug, Clone)]
pub struct SchedulePlan {
    /// The target claim, when missing.
    pub create_claim: Option<PersistentVolumeClaim>,
    /// The CronJob.
    pub cron_job: CronJob,
}

impl SchedulePlan {
    /// The objects as JSON, in order.
    pub fn objects(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        if let Some(c) = &self.create_claim {
            out.push(crate::objects::to_value(c)?);
        }
        out.push(crate::objects::to_value(&self.cron_job)?);
        Ok(out)
    }
}

/// The labels that find a workload's pods again, from one of its pods.
pub fn workload_labels(pod_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    pod_labels
        .iter()
        .filter(|(k, _)| !POD_SPECIFIC.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Plans a schedule.
pub fn plan(
    request: &ScheduleRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    existing_target: Option<&PersistentVolumeClaim>,
    placement: Placement,
) -> Result<SchedulePlan> {
    cron::check(&request.cron)?;
    if request.backup.from_snapshot {
        return Err(Error::Invalid(
            "--from-snapshot cannot be scheduled: the mover pod has no access to the API to \
             take snapshots; schedule `pvc-backup backup --from-snapshot` from a CI system \
             instead"
                .to_owned(),
        ));
    }
    let name = request.name();
    names::check_name("schedule name", &name, 52)?;
    let b = backup::plan(
        &request.backup,
        settings,
        source,
        existing_target,
        placement,
        &name,
    )?;
    let mut job = b.job;
    if request.backup.repository.is_none() {
        job.extra_labels
            .insert(TARGET_LABEL.to_owned(), request.backup.target());
    }
    let mut cron_job = job.cron_job(&request.cron, request.time_zone.as_deref());
    if let Some(r) = &request.backup.repository {
        cron_job
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REPOSITORY_ANNOTATION.to_owned(), r.url.clone());
    }
    // Scheduled runs may retry once: nobody is watching to run them again.
    if let Some(spec) = cron_job
        .spec
        .as_mut()
        .and_then(|s| s.job_template.spec.as_mut())
    {
        spec.backoff_limit = Some(spec.backoff_limit.unwrap_or(0).max(1));
    }
    Ok(SchedulePlan {
        create_claim: b.create_claim,
        cron_job,
    })
}

/// Reads what the plan needs and plans.
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &ScheduleRequest,
    settings: &MoverSettings,
) -> Result<SchedulePlan> {
    let source = workflow::get_claim(kube, &request.backup.claim).await?;
    let target = match request.backup.repository {
        Some(_) => None,
        None => workflow::find_claim(kube, &request.backup.target()).await?,
    };
    // The node of a ReadWriteOnce claim can change between runs: prefer the node of the pods
    // that use it, whichever it is then.
    let users = placement::users(kube, &request.backup.claim).await?;
    let pinned = placement::decide(
        &[&source],
        &[(request.backup.claim.clone(), users.clone())],
        &[],
    )?;
    let placement = match (pinned, users.first()) {
        (Placement::Node { tolerations, .. }, Some(user)) => Placement::NextTo {
            labels: workload_labels(&user.object.metadata.labels.clone().unwrap_or_default()),
            tolerations,
        },
        _ => Placement::Anywhere,
    };
    plan(request, settings, &source, target.as_ref(), placement)
}

/// What `schedule` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleReport {
    /// The CronJob.
    pub name: String,
    /// The target claim, or the repository's URL.
    pub target: String,
    /// Whether the target claim was created.
    pub created_claim: bool,
    /// Whether an existing schedule was replaced.
    pub replaced: bool,
}

/// Creates (or updates) the schedule.
pub async fn run(
    kube: &Kube,
    request: &ScheduleRequest,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<ScheduleReport> {
    let secret = backup::secret_permissions(request.backup.repository.as_ref());
    access::check(kube, &[access::SCHEDULE, secret]).await?;
    if let Some(r) = &request.backup.repository {
        backup::check_repository(kube, r).await?;
    }
    let plan = plan_from_cluster(kube, request, settings).await?;
    let target = request.backup.destination();
    let name = request.name();
    if let Some(claim) = &plan.create_claim {
        observer.step(&format!("creating claim {target}"));
        workflow::create_claim(kube, claim).await?;
    }
    let cron_jobs: Api<CronJob> = api::namespaced(kube);
    let existing = api::get_opt(&cron_jobs, "CronJob", &name).await?;
    let replaced = if let Some(old) = existing {
        if !is_ours(&old) {
            return Err(Error::Failed(format!(
                "a CronJob named {name} exists and was not made by pvc-backup; choose another \
                 name with --name"
            )));
        }
        let mut new = plan.cron_job.clone();
        new.metadata.resource_version = old.metadata.resource_version.clone();
        observer.step(&format!("updating CronJob {name}"));
        api::replace(&cron_jobs, "CronJob", &name, &new).await?;
        true
    } else {
        observer.step(&format!("creating CronJob {name}"));
        api::create(&cron_jobs, "CronJob", &name, &plan.cron_job).await?;
        false
    };
    if request.backup.repository.is_none() {
        workflow::annotate_claim(
            kube,
            &target,
            BTreeMap::from([(SCHEDULE_ANNOTATION.to_owned(), name.clone())]),
        )
        .await?;
    }
    Ok(ScheduleReport {
        name,
        target,
        created_claim: plan.create_claim.is_some(),
        replaced,
    })
}

fn is_ours(c: &CronJob) -> bool {
    c.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// A scheduled backup, as `schedules` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    /// The CronJob's namespace.
    pub namespace: String,
    /// The CronJob's name.
    pub name: String,
    /// The claim backed up.
    pub source: String,
    /// The claim backed up into, or the repository's URL.
    pub target: String,
    /// The cron expression.
    pub schedule: String,
    /// Its time zone, if set.
    pub time_zone: Option<String>,
    /// Whether it is suspended.
    pub suspended: bool,
    /// When a run was last started.
    pub last_schedule: Option<String>,
    /// When a run last succeeded.
    pub last_success: Option<String>,
    /// Runs going on now.
    pub active: usize,
}

/// Lists the scheduled backups of the namespace (or of all namespaces).
pub async fn list(kube: &Kube, all_namespaces: bool) -> Result<Vec<ScheduleInfo>> {
    let api: Api<CronJob> = if all_namespaces {
        Api::all(kube.client.clone())
    } else {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    };
    let lp = ListParams::default().labels(&format!(
        "{}={},{ROLE_LABEL}={}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        Role::Backup.as_str()
    ));
    let items = api::list(&api, "CronJobs", &lp).await?;
    let mut out: Vec<ScheduleInfo> = items
        .into_iter()
        .map(|c| {
            let labels = c.metadata.labels.clone().unwrap_or_default();
            let spec = c.spec.clone().unwrap_or_default();
            let status = c.status.clone().unwrap_or_default();
            ScheduleInfo {
                namespace: c.metadata.namespace.clone().unwrap_or_default(),
                name: c.metadata.name.clone().unwrap_or_default(),
                source: labels.get(SOURCE_LABEL).cloned().unwrap_or_default(),
                target: labels
                    .get(TARGET_LABEL)
                    .or_else(|| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(REPOSITORY_ANNOTATION))
                    })
                    .cloned()
                    .unwrap_or_default(),
                schedule: spec.schedule,
                time_zone: spec.time_zone,
                suspended: spec.suspend.unwrap_or(false),
                last_schedule: status.last_schedule_time.map(|t| t.0.to_string()),
                last_success: status.last_successful_time.map(|t| t.0.to_string()),
                active: status.active.map_or(0, |a| a.len()),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// Which of a claim's scheduled backups to remove.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// All of them.
    Any,
    /// Those into this backup claim.
    Claim(&'a str),
    /// Those into the repository at this URL.
    Repository(&'a str),
}

/// Removes the scheduled backups of `claim` (only those `into` one place, when given). The
/// backup claims, repositories and their snapshots stay. Returns the CronJobs removed.
pub async fn unschedule(kube: &Kube, claim: &str, into: Destination<'_>) -> Result<Vec<String>> {
    let api: Api<CronJob> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut selector = format!(
        "{}={},{ROLE_LABEL}={},{SOURCE_LABEL}={claim}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        Role::Backup.as_str()
    );
    if let Destination::Claim(to) = into {
        selector.push_str(&format!(",{TARGET_LABEL}={to}"));
    }
    let mut items = api::list(&api, "CronJobs", &ListParams::default().labels(&selector)).await?;
    // A URL cannot be a label value: a repository schedule names its repository in an
    // annotation, compared here.
    if let Destination::Repository(url) = into {
        items.retain(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REPOSITORY_ANNOTATION))
                .is_some_and(|u| u == url)
        });
    }
    if items.is_empty() {
        return Err(Error::NotFound(format!(
            "claim {claim} has no scheduled backup{} in namespace {}; `pvc-backup schedules` \
             lists them",
            match into {
                Destination::Any => String::new(),
                Destination::Claim(t) => format!(" into {t}"),
                Destination::Repository(u) => format!(" into repository {u}"),
            },
            kube.namespace
        )));
    }
    let mut removed = Vec::new();
    for c in items {
        let name = c.metadata.name.clone().unwrap_or_default();
        api::delete(&api, "CronJob", &name, &DeleteParams::background()).await?;
        removed.push(name);
    }
    Ok(removed)
}
