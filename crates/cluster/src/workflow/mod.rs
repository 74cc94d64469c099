//! Workflows: what a command does against the cluster, step by step, built on the pure object
//! builders. Each command's workflow can also stop short and return its plan (the objects it
//! would create), which is what `--dry-run` prints.

pub mod across;
pub mod backup;
pub mod clone;
pub mod list;
pub mod migrate;
pub mod progress;
pub mod relay;
pub mod restore;
pub mod schedule;
pub mod steps;
pub mod stopped;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contract::{Excludes, ExitCode, Report};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ResourceRequirements};
use kube::api::DeleteParams;
use serde_json::{Value, json};

use crate::api;
use crate::connect::Kube;
use crate::names::{self, LAST_RUN_ANNOTATION};
use crate::objects::mover::JobLimits;
use crate::run::{Outcome, RunOptions};
use crate::security::Privilege;
use crate::{Error, Result};

/// Whether and how a command only shows what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    /// Do it.
    #[default]
    No,
    /// Read the cluster (claims, the pods using them) to plan exactly, change nothing.
    Cluster,
    /// Do not contact the cluster at all: plan from the command line alone.
    Client,
}

/// Refuses excludes for a block claim, which is copied as a whole device.
pub fn check_no_excludes_for_block(excludes: &Excludes, claim: &str) -> Result<()> {
    if excludes.is_empty() && !excludes.delete_excluded {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "claim {claim} is a Block claim, copied as a whole device: --exclude, \
         --exclude-from, --exclude-caches and --delete-excluded apply to Filesystem claims; \
         leave them out"
    )))
}

/// How the mover pod is run.
#[derive(Debug, Clone)]
pub struct MoverSettings {
    /// The pvc-backup image.
    pub image: String,
    /// Root with five capabilities, or unprivileged.
    pub privilege: Privilege,
    /// CPU and memory requests and limits of the mover.
    pub resources: Option<ResourceRequirements>,
    /// Retries, deadline and clean-up of the Job.
    pub limits: JobLimits,
    /// Waiting for the pod to start.
    pub run: RunOptions,
    /// Create the Job and return without following it.
    pub detach: bool,
    /// What the copies leave out.
    pub excludes: Excludes,
}

impl Default for MoverSettings {
    fn default() -> Self {
        MoverSettings {
            image: names::DEFAULT_IMAGE.to_owned(),
            privilege: Privilege::Mover,
            resources: None,
            limits: JobLimits::default(),
            run: RunOptions::default(),
            detach: false,
            excludes: Excludes::default(),
        }
    }
}

/// Reads a claim of the namespace; a missing claim is an error that says where it looked.
pub async fn get_claim(kube: &Kube, name: &str) -> Result<PersistentVolumeClaim> {
    match find_claim(kube, name).await? {
        Some(claim) => Ok(claim),
        None => Err(claim_not_found(kube, name)),
    }
}

/// The error for a claim that does not exist: where it was looked for and how to list the claims.
pub(crate) fn claim_not_found(kube: &Kube, name: &str) -> Error {
    Error::NotFound(format!(
        "claim {name} not found in namespace {ns}; `kubectl get pvc -n {ns}` lists the \
         claims there (use -n to choose another namespace)",
        ns = kube.namespace
    ))
}

/// Reads a claim of the namespace, `None` when it does not exist.
pub async fn find_claim(kube: &Kube, name: &str) -> Result<Option<PersistentVolumeClaim>> {
    api::get_opt(&api::namespaced(kube), "claim", name).await
}

/// Creates a claim.
pub async fn create_claim(
    kube: &Kube,
    claim: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    api::create(&api::namespaced(kube), "claim", &name, claim).await
}

/// Deletes a claim (used only for claims this run created and nothing was copied into).
pub async fn delete_claim(kube: &Kube, name: &str) -> Result<()> {
    api::delete::<PersistentVolumeClaim>(
        &api::namespaced(kube),
        "claim",
        name,
        &DeleteParams::default(),
    )
    .await
}

/// Whether a claim is Bound.
pub fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Waits until a claim is Bound and returns it, `None` when it is not within `timeout`; a claim
/// that does not exist is an error. Claims of a `WaitForFirstConsumer` class bind only once a
/// pod uses them, so callers wait only where binding must come first (CSI clones).
pub async fn wait_bound(
    kube: &Kube,
    name: &str,
    timeout: Duration,
) -> Result<Option<PersistentVolumeClaim>> {
    let waited = api::wait_for(
        api::namespaced(kube),
        "claim",
        name,
        timeout,
        |c: Option<&PersistentVolumeClaim>| c.is_none_or(is_bound),
    )
    .await?;
    match waited {
        Some(Some(claim)) => Ok(Some(claim)),
        Some(None) => Err(claim_not_found(kube, name)),
        None => Ok(None),
    }
}

/// A Job name: `prefix-xxxxx`, at most 63 characters (the name is also a label value).
pub fn job_name(prefix: &str) -> String {
    job_name_in_run(prefix, &job_suffix())
}

/// The Job name `prefix-RUN` of a run whose id is `run` (from [`job_suffix`]): the same each
/// time a recorded run goes on, so that it finds the Jobs it created before.
pub fn job_name_in_run(prefix: &str, run: &str) -> String {
    let mut p: String = prefix.chars().take(57).collect();
    while p.ends_with(['-', '.']) {
        p.pop();
    }
    format!("{p}-{run}")
}

/// Five characters that tell two runs apart (in Job names and run records).
pub fn job_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (nanos ^ (u128::from(std::process::id()) << 64)) as u64;
    let mut suffix = String::new();
    for _ in 0..5 {
        // xorshift: enough to keep two runs started at once apart.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let c = b"bcdfghjklmnpqrstvwxz2456789"[(x % 27) as usize];
        suffix.push(c as char);
    }
    suffix
}

/// The summary of a run as recorded on its target claim (annotation `pvc-backup.io/last-run`).
pub fn last_run(outcome: &Outcome, at: &str) -> Value {
    let last = outcome
        .summaries
        .last()
        .map(Report::read)
        .unwrap_or_default();
    let result = match ExitCode::from_code(outcome.exit_code) {
        Some(ExitCode::Ok) => "ok",
        Some(ExitCode::Partial) => "partial",
        Some(ExitCode::Refused) => "refused-empty-source",
        _ => "failed",
    };
    let (entries, bytes) = (last.entries.as_ref(), last.bytes.as_ref());
    json!({
        "at": at,
        "job": outcome.job,
        "exitCode": outcome.exit_code,
        "result": result,
        "snapshot": last.snapshot,
        "entries": entries.map(|e| e.total),
        "failed": entries.map(|e| e.failed),
        "bytes": bytes.map(|b| b.total),
        "bytesCopied": bytes.map(|b| b.copied),
        "durationMs": last.duration_ms,
    })
}

/// Records a run on its target claim, so `pvc-backup list` can show it.
pub async fn record_run(kube: &Kube, claim: &str, outcome: &Outcome) -> Result<()> {
    let at = crate::workflow::now_rfc3339();
    let value = last_run(outcome, &at).to_string();
    annotate_claim(
        kube,
        claim,
        BTreeMap::from([(LAST_RUN_ANNOTATION.to_owned(), value)]),
    )
    .await
}

/// Records a backup into the repository at `url` on its source claim, so `pvc-backup list` can
/// show it: the record [`record_run`] writes, with the repository's URL.
pub async fn record_repository_run(
    kube: &Kube,
    claim: &str,
    url: &str,
    outcome: &Outcome,
) -> Result<()> {
    let at = crate::workflow::now_rfc3339();
    let mut value = last_run(outcome, &at);
    value["repository"] = json!(url);
    annotate_claim(
        kube,
        claim,
        BTreeMap::from([(
            names::LAST_REPOSITORY_RUN_ANNOTATION.to_owned(),
            value.to_string(),
        )]),
    )
    .await
}

/// Sets annotations on a claim (a merge patch: other annotations are kept).
pub async fn annotate_claim(
    kube: &Kube,
    claim: &str,
    annotations: BTreeMap<String, String>,
) -> Result<()> {
    let patch = json!({"metadata": {"annotations": annotations}});
    api::patch_merge::<PersistentVolumeClaim>(&api::namespaced(kube), "claim", claim, &patch)
        .await?;
    Ok(())
}

/// Writes a workflow's record on a claim ([`progress::PROGRESS`]), or removes it (`None`).
pub async fn record_progress(
    kube: &Kube,
    claim: &str,
    progress: Option<&progress::Progress>,
) -> Result<()> {
    let value = progress.map(progress::Progress::to_annotation);
    let patch = json!({"metadata": {"annotations": {progress::PROGRESS: value}}});
    api::patch_merge::<PersistentVolumeClaim>(&api::namespaced(kube), "claim", claim, &patch)
        .await?;
    Ok(())
}

/// The current time, RFC 3339 in UTC with whole seconds (`2026-11-25T02:00:00Z`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_a_run_is_rfc3339_in_utc_with_whole_seconds() {
        let at = now_rfc3339();
        // 2026-11-25T02:00:00Z
        assert_eq!(at.len(), 20, "{at}");
        assert!(at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
        let parsed: jiff::Timestamp = at.parse().unwrap();
        assert_eq!(parsed.subsec_nanosecond(), 0);
    }

    #[test]
    fn job_names_fit_in_a_label_value() {
        let long = "a".repeat(80);
        let n = job_name(&long);
        assert!(n.len() <= 63, "{n}");
        names::check_name("job", &n, 63).unwrap();
        let n = job_name("data-backup");
        assert!(n.starts_with("data-backup-") && n.len() == "data-backup-".len() + 5);
    }
}
