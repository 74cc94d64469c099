//! Steps that clone, migrate and restore share: run a mover Job (or leave it running), read why
//! a claim does not bind, wait for a claim to be gone, and change PersistentVolumes.

use std::time::Duration;

use contract::{ExitCode, Report};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use crate::api;
use crate::connect::Kube;
use crate::objects::claim::Role;
use crate::objects::mover::{Mount, MoverJob, Placement};
use crate::run::{self, Observer, Outcome};
use crate::workflow::MoverSettings;
use crate::{Error, Result};

/// A mover Job with the settings of the command line; the caller fills in its arguments,
/// mounts and placement.
pub fn mover_job(
    settings: &MoverSettings,
    name: &str,
    namespace: &str,
    source: &str,
    role: Role,
) -> MoverJob {
    MoverJob {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        source: source.to_owned(),
        role,
        image: settings.image.clone(),
        privilege: settings.privilege,
        args: Vec::new(),
        mounts: Vec::new(),
        placement: Placement::Anywhere,
        resources: settings.resources.clone(),
        limits: settings.limits,
        extra_labels: Default::default(),
        env: Vec::new(),
        keys: None,
        port: None,
    }
}

/// A mount of a claim in the mover pod.
pub fn mount(volume: &str, claim: &str, path: &str, read_only: bool, block: bool) -> Mount {
    Mount {
        volume: volume.to_owned(),
        claim: claim.to_owned(),
        path: path.to_owned(),
        read_only,
        block,
    }
}

/// Where a mover must run once the pods using `claims` stop: on the node they run on, for a
/// claim attached to one node (ReadWriteOnce, ReadWriteOncePod). Its volume stays attached
/// there for a while after the pods are gone, and a mover on another node would meet a
/// Multi-Attach error; the pods' tolerations let the mover onto that node. Call it before
/// stopping them.
pub async fn pin_to_users(kube: &Kube, claims: &[&PersistentVolumeClaim]) -> Result<Placement> {
    let pods = crate::placement::pods(kube).await?;
    Ok(pin_to(claims, &pods))
}

/// [`pin_to_users`] with the pods of the namespace already read.
pub fn pin_to(claims: &[&PersistentVolumeClaim], pods: &[Pod]) -> Placement {
    for claim in claims {
        let modes = claim
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default();
        if modes
            .iter()
            .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany")
        {
            continue;
        }
        let name = claim.metadata.name.clone().unwrap_or_default();
        let users = crate::placement::users_in(pods, &name);
        if let Some(u) = users.into_iter().find(|u| u.node.is_some()) {
            return Placement::Node {
                node: u.node.unwrap_or_default(),
                tolerations: u
                    .object
                    .spec
                    .and_then(|s| s.tolerations)
                    .unwrap_or_default(),
            };
        }
    }
    Placement::Anywhere
}

/// Whether a claim is ReadWriteOncePod (no second pod may mount it while one runs).
pub fn is_read_write_once_pod(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"))
}

/// Whether a claim is a raw block claim.
pub fn is_block(claim: &PersistentVolumeClaim) -> bool {
    claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block")
}

/// `name-suffix`, shortened so that it stays a valid Job name (63 characters at most).
pub fn suffixed(name: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let mut head: String = name.chars().take(room).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}-{suffix}")
}

/// Runs a mover Job to its end; with `detach`, creates it and returns `None`.
pub async fn run_mover(
    kube: &Kube,
    job: &MoverJob,
    settings: &MoverSettings,
    detach: bool,
    observer: &mut dyn Observer,
) -> Result<Option<Outcome>> {
    let job = job.job();
    if detach {
        let name = job.metadata.name.clone().unwrap_or_default();
        observer.step(&format!("creating Job {name}"));
        api::create(&api::namespaced(kube), "Job", &name, &job).await?;
        return Ok(None);
    }
    run::run_job(kube, &job, &settings.run, observer)
        .await
        .map(Some)
}

/// Runs a mover Job that must succeed (exit 0): anything else is an error carrying the
/// mover's last messages. `what` names the step ("the final copy").
pub async fn run_mover_ok(
    kube: &Kube,
    job: &MoverJob,
    settings: &MoverSettings,
    what: &str,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let outcome = run_mover(kube, job, settings, false, observer)
        .await?
        .ok_or_else(|| Error::Failed(format!("{what} did not run")))?;
    if outcome.exit_code != ExitCode::Ok {
        return Err(Error::Failed(format!(
            "{what} (Job {}) ended with exit code {}{}",
            outcome.job,
            outcome.exit_code,
            failure_text(&outcome)
        )));
    }
    Ok(outcome)
}

/// The failed entries of a run, or its last messages, to put in an error.
pub fn failure_text(outcome: &Outcome) -> String {
    let mut parts = Vec::new();
    for s in &outcome.summaries {
        for e in Report::read(s).errors.iter().take(10) {
            parts.push(format!("{}: {}: {}", e.path, e.op, e.error));
        }
    }
    if parts.is_empty() {
        parts = outcome
            .messages
            .iter()
            .rev()
            .take(5)
            .rev()
            .cloned()
            .collect();
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// The last warning event about an object (its reason and message), if any.
pub async fn last_warning(kube: &Kube, name: &str) -> Result<Option<String>> {
    let events: Api<Event> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let mut list = events
        .list(&lp)
        .await
        .map_err(Error::api(format!("list events of {name}")))?
        .items;
    list.retain(|e| e.type_.as_deref() == Some("Warning"));
    list.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    });
    Ok(list.last().map(|e| {
        format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or_default(),
            e.message.as_deref().unwrap_or_default()
        )
    }))
}

/// Waits until claim `name` no longer exists (its protection finalizer is released once no
/// pod uses it).
pub async fn wait_claim_gone(kube: &Kube, name: &str, timeout: Duration) -> Result<()> {
    let gone = api::wait_for(
        api::namespaced::<PersistentVolumeClaim>(kube),
        "claim",
        name,
        timeout,
        |c: Option<&PersistentVolumeClaim>| c.is_none(),
    )
    .await?;
    if gone.is_some() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "claim {name} was not removed within {} s (a pod may still use it: `kubectl describe \
         pvc {name} -n {}`)",
        timeout.as_secs(),
        kube.namespace
    )))
}

/// Deletes claim `name` and waits until it is gone.
///
/// A finished pod still holds the claims it mounted: the API server's pvc-protection keeps a
/// claim while any pod names it, whatever the pod's phase. So the finished Jobs of pvc-backup
/// whose pods mount the claim are deleted first (their pods with them), or the claim would stay
/// Terminating until the Jobs' time to live runs out.
pub async fn delete_claim_and_wait(kube: &Kube, name: &str, timeout: Duration) -> Result<()> {
    super::delete_claim(kube, name).await?;
    for job in finished_jobs_using(kube, name).await? {
        crate::run::delete_job(kube, &job).await?;
    }
    wait_claim_gone(kube, name, timeout).await
}

/// The Jobs of pvc-backup whose finished pods mount claim `claim` (see
/// [`crate::placement::has_finished`]).
async fn finished_jobs_using(kube: &Kube, claim: &str) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let (key, value) = crate::names::MANAGED_BY;
    let lp = ListParams::default().labels(&format!("{key}={value}"));
    let list = pods.list(&lp).await.map_err(Error::api(format!(
        "list the pods of pvc-backup's Jobs using claim {claim}"
    )))?;
    let mut jobs = Vec::new();
    for pod in list.items {
        let finished = crate::placement::has_finished(&pod);
        let mounts = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim)
                })
            });
        if !(finished && mounts) {
            continue;
        }
        for owner in pod.metadata.owner_references.unwrap_or_default() {
            if owner.kind == "Job" && !jobs.contains(&owner.name) {
                jobs.push(owner.name);
            }
        }
    }
    Ok(jobs)
}

/// Reads a PersistentVolume.
pub async fn get_volume(kube: &Kube, name: &str) -> Result<PersistentVolume> {
    api::get(&api::cluster(kube), "PersistentVolume", name).await
}

/// Applies a merge patch to a PersistentVolume.
pub async fn patch_volume(kube: &Kube, name: &str, patch: &Value) -> Result<PersistentVolume> {
    api::patch_merge(&api::cluster(kube), "PersistentVolume", name, patch).await
}

/// The volume a claim is bound to; an error naming the claim when it is not bound.
pub fn bound_volume(claim: &PersistentVolumeClaim) -> Result<String> {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    match claim.spec.as_ref().and_then(|s| s.volume_name.clone()) {
        Some(v) if phase == Some("Bound") => Ok(v),
        _ => Err(Error::Failed(format!(
            "claim {name} is not bound to a volume ({}); wait until it is Bound",
            phase.unwrap_or("no status")
        ))),
    }
}

/// Waits until a claim is bound to volume `volume`.
pub async fn wait_bound_to(
    kube: &Kube,
    claim: &str,
    volume: &str,
    timeout: Duration,
) -> Result<()> {
    if let Some(c) = super::wait_bound(kube, claim, timeout).await?
        && c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(volume)
    {
        return Ok(());
    }
    let why = last_warning(kube, claim).await?.unwrap_or_default();
    Err(Error::Failed(format!(
        "claim {claim} did not bind to PersistentVolume {volume} within {} s{}",
        timeout.as_secs(),
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        }
    )))
}

/// A storage class, `None` when it does not exist or none is named.
pub async fn storage_class(kube: &Kube, name: Option<&str>) -> Result<Option<StorageClass>> {
    let Some(name) = name else {
        return Ok(None);
    };
    api::get_opt(&api::cluster(kube), "StorageClass", name).await
}

/// Whether a storage class provisions through a CSI driver (which can clone a claim); in-tree
/// provisioners are named `kubernetes.io/...`.
pub fn is_csi(class: &StorageClass) -> bool {
    !class.provisioner.starts_with("kubernetes.io/") && class.provisioner.contains('.')
}

/// Whether a storage class binds only once a pod uses the claim.
pub fn waits_for_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}
