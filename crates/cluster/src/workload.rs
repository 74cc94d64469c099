//! The workloads that use a claim: Deployments, StatefulSets and OpenShift DeploymentConfigs.
//!
//! Workflows scale them to zero so nothing writes while the last changes are copied, scale them
//! back to the count they had, and point a pod template's volume at another claim (recording the
//! previous claim in an annotation so that `rollback` can point it back). All three kinds are
//! handled through the dynamic API, so a DeploymentConfig (which k8s-openapi does not know) goes
//! through the same code as the built-in kinds.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::api;
use crate::connect::Kube;
use crate::placement;
use crate::run::Observer;
use crate::{Error, Result};

/// Annotation on a workload: the claims its volumes used before pvc-backup pointed them
/// elsewhere, as a JSON object from volume name to claim name. `rollback` reads it.
pub const PREVIOUS_CLAIMS: &str = "pvc-backup.io/previous-claims";

/// Annotation on a workload that pvc-backup scaled down: the replica count to return to. It
/// is set before scaling down and removed after scaling up, so a run that dies in between
/// leaves the count where the next run (or the user) finds it.
pub const SCALED_DOWN_FROM: &str = "pvc-backup.io/scaled-down-from";

/// How long scaling down may take before pvc-backup gives up and scales back up.
pub const DEFAULT_SCALE_TIMEOUT: Duration = Duration::from_secs(300);

/// The kinds of workload pvc-backup can scale and repoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps.openshift.io/v1` DeploymentConfig (OpenShift).
    DeploymentConfig,
}

impl Kind {
    /// The name kubectl prints (`deployment`, `statefulset`, `deploymentconfig`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DeploymentConfig => "deploymentconfig",
        }
    }

    /// The API resource, for the dynamic API.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
            Kind::DeploymentConfig => (
                "apps.openshift.io",
                "v1",
                "DeploymentConfig",
                "deploymentconfigs",
            ),
        };
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: format!("{group}/{version}"),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        }
    }
}

/// A workload named on the command line (`KIND/NAME`) or found from its pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for Workload {
    type Err = Error;

    /// Parses `KIND/NAME` as kubectl spells kinds: `deployment`, `deploy`, `deployments`,
    /// `deployment.apps`, `statefulset`, `sts`, `deploymentconfig`, `dc`, any case.
    fn from_str(s: &str) -> Result<Workload> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "workload {s:?} {why}: write KIND/NAME, with KIND deployment (deploy), \
                 statefulset (sts) or deploymentconfig (dc), e.g. deployment/web"
            ))
        };
        let (kind, name) = s.split_once('/').ok_or_else(|| bad("has no KIND/"))?;
        let kind = kind.to_ascii_lowercase();
        let kind =
            match kind.as_str() {
                "deployment" | "deploy" | "deployments" | "deployment.apps"
                | "deployments.apps" => Kind::Deployment,
                "statefulset" | "sts" | "statefulsets" | "statefulset.apps"
                | "statefulsets.apps" => Kind::StatefulSet,
                "deploymentconfig"
                | "dc"
                | "deploymentconfigs"
                | "deploymentconfig.apps.openshift.io"
                | "deploymentconfigs.apps.openshift.io" => Kind::DeploymentConfig,
                _ => return Err(bad("is not a kind pvc-backup can scale")),
            };
        crate::names::check_name("workload name", name, 253)?;
        Ok(Workload {
            kind,
            name: name.to_owned(),
        })
    }
}

impl Workload {
    fn api(&self, kube: &Kube) -> Api<DynamicObject> {
        Api::namespaced_with(
            kube.client.clone(),
            &kube.namespace,
            &self.kind.api_resource(),
        )
    }

    /// Reads the workload; a missing one is a clear error.
    pub async fn get(&self, kube: &Kube) -> Result<DynamicObject> {
        match self.api(kube).get_opt(&self.name).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(Error::NotFound(format!(
                "{self} does not exist in namespace {}: check the name (kubectl get {} -n {})",
                kube.namespace,
                self.kind.as_str(),
                kube.namespace
            ))),
            Err(e) => Err(Error::api(format!("read {self}"))(e)),
        }
    }

    /// Its wanted replica count (`spec.replicas`; 1 when unset, as the API server defaults it).
    pub async fn replicas(&self, kube: &Kube) -> Result<i32> {
        Ok(spec_replicas(&self.get(kube).await?))
    }

    /// Sets `spec.replicas` (every kind accepts a merge patch of it).
    pub async fn scale(&self, kube: &Kube, replicas: i32) -> Result<()> {
        self.patch(kube, json!({"spec": {"replicas": replicas}}))
            .await
            .map(|_| ())
    }

    async fn patch(&self, kube: &Kube, patch: Value) -> Result<DynamicObject> {
        self.api(kube)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::api(format!("update {self}")))
    }
}

/// `spec.replicas` of a workload object.
pub fn spec_replicas(obj: &DynamicObject) -> i32 {
    obj.data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .map_or(1, |n| n as i32)
}

/// The pod template of a workload object.
pub fn pod_template(obj: &DynamicObject) -> Result<PodTemplateSpec> {
    let t = obj
        .data
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::from_value(t).map_err(|source| Error::Decode {
        what: format!(
            "the pod template of {} cannot be read",
            obj.metadata.name.clone().unwrap_or_default()
        ),
        source,
    })
}

fn controller_of(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

/// The workload that owns `pod`, following the owner chain as the controllers set it up:
/// pod → ReplicaSet → Deployment, pod → StatefulSet, pod → ReplicationController →
/// DeploymentConfig. `None` for a pod no scalable workload owns (a bare pod, a Job's pod, a
/// ReplicaSet of its own).
pub async fn owner_of(kube: &Kube, pod: &Pod) -> Result<Option<Workload>> {
    let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else {
        return Ok(None);
    };
    let workload = |kind, name: &str| {
        Some(Workload {
            kind,
            name: name.to_owned(),
        })
    };
    match owner.kind.as_str() {
        "StatefulSet" => Ok(workload(Kind::StatefulSet, &owner.name)),
        "ReplicaSet" => {
            let api: Api<ReplicaSet> = Api::namespaced(kube.client.clone(), &kube.namespace);
            let rs = api
                .get_opt(&owner.name)
                .await
                .map_err(Error::api(format!("read ReplicaSet {}", owner.name)))?;
            Ok(rs.and_then(|rs| {
                let o = controller_of(rs.metadata.owner_references.as_ref())?;
                (o.kind == "Deployment").then(|| workload(Kind::Deployment, &o.name))?
            }))
        }
        "ReplicationController" => {
            let api: Api<ReplicationController> =
                Api::namespaced(kube.client.clone(), &kube.namespace);
            let rc = api.get_opt(&owner.name).await.map_err(Error::api(format!(
                "read ReplicationController {}",
                owner.name
            )))?;
            Ok(rc.and_then(|rc| {
                let o = controller_of(rc.metadata.owner_references.as_ref())?;
                (o.kind == "DeploymentConfig").then(|| workload(Kind::DeploymentConfig, &o.name))?
            }))
        }
        _ => Ok(None),
    }
}

/// The workloads whose running pods mount `claim`. A pod that no Deployment, StatefulSet or
/// DeploymentConfig owns cannot be stopped and started again by pvc-backup: that is an error
/// naming it.
pub async fn users_of(kube: &Kube, claim: &str) -> Result<Vec<Workload>> {
    let users = placement::users(kube, claim).await?;
    let owners = owners(kube, &users).await?;
    workloads_of(claim, &users, &owners)
}

/// The workload that owns each of `users` (in their order; `None` for a pod none owns).
pub async fn owners(kube: &Kube, users: &[placement::User]) -> Result<Vec<Option<Workload>>> {
    let mut owners = Vec::new();
    for user in users {
        owners.push(owner_of(kube, &user.object).await?);
    }
    Ok(owners)
}

/// [`users_of`] from the pods using `claim` and their owners, as [`owners`] found them.
pub fn workloads_of(
    claim: &str,
    users: &[placement::User],
    owners: &[Option<Workload>],
) -> Result<Vec<Workload>> {
    let mut found = Vec::new();
    for (user, owner) in users.iter().zip(owners) {
        match owner.clone() {
            Some(w) => {
                if !found.contains(&w) {
                    found.push(w);
                }
            }
            None => {
                return Err(Error::Failed(format!(
                    "pod {} uses claim {claim} but no Deployment, StatefulSet or \
                     DeploymentConfig owns it, so pvc-backup cannot stop and restart it: delete \
                     the pod (or stop what runs it) and retry",
                    user.pod
                )));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The one workload a command acts on: the one named with `--workload`, or else the one found
/// using `claim` (`None` when no pod uses it). Several users are an error asking for
/// `--workload`.
pub async fn resolve(
    kube: &Kube,
    named: Option<&Workload>,
    claim: &str,
) -> Result<Option<Workload>> {
    if let Some(w) = named {
        w.get(kube).await?;
        return Ok(Some(w.clone()));
    }
    pick(claim, users_of(kube, claim).await?)
}

/// The one workload among those using `claim` (`None` when there is none); several are an
/// error asking for `--workload`.
pub fn pick(claim: &str, mut users: Vec<Workload>) -> Result<Option<Workload>> {
    match users.len() {
        0 => Ok(None),
        1 => Ok(users.pop()),
        _ => Err(Error::Invalid(format!(
            "claim {claim} is used by {}: name the one to act on with --workload KIND/NAME",
            users
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// Workloads pvc-backup scaled to zero, with the counts to give back: the guard of every step
/// that runs with workloads stopped.
///
/// Scale down with [`scale_down`], run the step, and hand its result to
/// [`ScaledDown::scale_up_after`], which scales back up whatever happened and combines the
/// errors one way ([`Error::with_undo`]). Dropping it does nothing; the count is also kept in
/// the [`SCALED_DOWN_FROM`] annotation on each workload, where a later `scale_down` (or
/// `rollback`) finds it if this process dies first.
#[derive(Debug, Default)]
#[must_use = "restore() scales the workloads back up"]
pub struct ScaledDown {
    workloads: Vec<(Workload, i32)>,
}

impl ScaledDown {
    /// The workloads and the replica counts they will get back.
    pub fn workloads(&self) -> &[(Workload, i32)] {
        &self.workloads
    }

    /// The guard of workloads an interrupted run stopped, with the counts its record keeps: what
    /// a run that goes on scales back up.
    pub fn left_by_earlier_run(workloads: Vec<(Workload, i32)>) -> ScaledDown {
        ScaledDown { workloads }
    }

    /// Whether nothing was scaled down.
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// Scales the workloads back up after a step that ran with them stopped, and returns the
    /// step's result: its error stays the primary one, and a failure to scale back up is
    /// attached to it (or is the error, when the step succeeded).
    pub async fn scale_up_after<T>(
        self,
        kube: &Kube,
        observer: &mut dyn Observer,
        step: Result<T>,
    ) -> Result<T> {
        if let Some(message) = self.scaling_up() {
            observer.step(&message);
        }
        let restored = self.restore(kube).await;
        Error::with_undo(step, restored)
    }

    /// Leaves the workloads scaled down, for a step that goes on after this process (a detached
    /// copy): their [`SCALED_DOWN_FROM`] annotations keep the counts for `rollback`.
    pub fn leave_down(self) {}

    /// The step line for scaling back up; `None` when nothing was scaled down.
    fn scaling_up(&self) -> Option<String> {
        match self.workloads.as_slice() {
            [] => None,
            [(w, _)] => Some(format!("scaling {w} back up")),
            _ => Some("scaling the workloads back up".to_owned()),
        }
    }

    /// Scales every workload back to its count and removes the annotation. Tries all of them
    /// even when one fails, and reports every failure with the command that finishes the job.
    async fn restore(self, kube: &Kube) -> Result<()> {
        let mut failures = Vec::new();
        for (w, n) in &self.workloads {
            let patch = json!({
                "metadata": {"annotations": {SCALED_DOWN_FROM: null}},
                "spec": {"replicas": n},
            });
            if let Err(e) = w.patch(kube, patch).await {
                failures.push(format!(
                    "{e} (run: kubectl scale {w} --replicas={n} -n {})",
                    kube.namespace
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "could not scale back up: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Scales `workloads` to zero and waits until no pod holds any of `claims` any more.
///
/// The previous replica count is written to each workload's [`SCALED_DOWN_FROM`] annotation
/// first. A workload already at zero with that annotation (left by a run that died) keeps the
/// annotated count as the one to return to. If the pods are not gone within `timeout`, the
/// workloads are scaled back up and the error names the pods still running.
pub async fn scale_down(
    kube: &Kube,
    workloads: &[Workload],
    claims: &[&str],
    timeout: Duration,
) -> Result<ScaledDown> {
    let counts = counts_to_restore(kube, workloads).await?;
    scale_down_to_zero(kube, &counts, claims, timeout).await
}

/// The replica count each of `workloads` gets back once it was stopped: its count now, or the
/// one in its [`SCALED_DOWN_FROM`] annotation when it is at zero with one (left by a run that
/// died).
pub async fn counts_to_restore(
    kube: &Kube,
    workloads: &[Workload],
) -> Result<Vec<(Workload, i32)>> {
    let mut counts = Vec::new();
    for w in workloads {
        let obj = w.get(kube).await?;
        let current = spec_replicas(&obj);
        let annotated = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SCALED_DOWN_FROM))
            .and_then(|v| v.parse::<i32>().ok());
        let back_to = match annotated {
            Some(n) if current == 0 => n,
            _ => current,
        };
        counts.push((w.clone(), back_to));
    }
    Ok(counts)
}

/// [`scale_down`] with the counts to give back known (from [`counts_to_restore`], or from a
/// workflow's record when it goes on after an interruption: never the zero seen then).
/// Stopping a workload already at zero is harmless, so a step that was half done can be done
/// again.
pub async fn scale_down_to_zero(
    kube: &Kube,
    counts: &[(Workload, i32)],
    claims: &[&str],
    timeout: Duration,
) -> Result<ScaledDown> {
    let mut done = ScaledDown::default();
    for (w, back_to) in counts {
        let back_to = *back_to;
        let patch = json!({
            "metadata": {"annotations": {SCALED_DOWN_FROM: back_to.to_string()}},
            "spec": {"replicas": 0},
        });
        if let Err(e) = w.patch(kube, patch).await {
            let back = done.restore(kube).await;
            return Error::with_undo(Err(e), back);
        }
        done.workloads.push((w.clone(), back_to));
    }
    if let Err(e) = wait_unused(kube, claims, timeout).await {
        let back = done.restore(kube).await;
        return Error::with_undo(Err(e), back)
            .map_err(|e| stopped_then(e, "the workloads were scaled back up"));
    }
    Ok(done)
}

/// `context` attached to a step's error, unless undoing what came before the step failed too
/// (then what the undo left is what the user must know first).
pub fn stopped_then(e: Error, context: impl Into<String>) -> Error {
    match e {
        Error::UndoFailed { .. } => e,
        e => e.context(context),
    }
}

/// Scales down the workloads that use `claim` (found from its pods) and waits for their pods
/// to be gone: what `--scale-down` does. Nothing using the claim gives an empty guard.
pub async fn scale_down_users(kube: &Kube, claim: &str, timeout: Duration) -> Result<ScaledDown> {
    let users = users_of(kube, claim).await?;
    scale_down(kube, &users, &[claim], timeout).await
}

/// Waits until no pod holds any of `claims`.
pub async fn wait_unused(kube: &Kube, claims: &[&str], timeout: Duration) -> Result<()> {
    let watched = api::wait_all(
        api::namespaced::<Pod>(kube),
        &format!("the pods in namespace {}", kube.namespace),
        watcher::Config::default(),
        timeout,
        |pods| holding(pods, claims).is_empty(),
    )
    .await?;
    if watched.done {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "pods {} still use claim {} after {} s of waiting for them to stop",
        holding(&watched.objects, claims).join(", "),
        claims.join(", "),
        timeout.as_secs()
    )))
}

/// The pods (sorted, once each) that still hold one of `claims`.
fn holding(pods: &[Arc<Pod>], claims: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| placement::holds_volumes(p) && claims.iter().any(|c| placement::mounts(p, c)))
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Where a claim appears in a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimUse {
    /// A volume of the pod template, which can be pointed at another claim.
    Volume(String),
    /// A StatefulSet's `volumeClaimTemplates` entry: each pod gets its own claim
    /// `TEMPLATE-STATEFULSET-ORDINAL`, which the template cannot be told to replace.
    Template(String),
}

/// How `claim` appears in `obj` (a workload), if it does.
pub fn claim_use(obj: &DynamicObject, claim: &str) -> Result<Option<ClaimUse>> {
    let template = pod_template(obj)?;
    let volumes = template.spec.and_then(|s| s.volumes).unwrap_or_default();
    if let Some(v) = volumes.iter().find(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|p| p.claim_name == claim)
    }) {
        return Ok(Some(ClaimUse::Volume(v.name.clone())));
    }
    let sts = obj.metadata.name.clone().unwrap_or_default();
    let templates = obj
        .data
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in templates {
        let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        // TEMPLATE-STS-ORDINAL, with a numeric ordinal.
        if let Some(rest) = claim.strip_prefix(&format!("{tname}-{sts}-"))
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Some(ClaimUse::Template(tname.to_owned())));
        }
    }
    Ok(None)
}

/// The claims recorded in a workload's [`PREVIOUS_CLAIMS`] annotation (volume → claim).
pub fn previous_claims(obj: &DynamicObject) -> Result<BTreeMap<String, String>> {
    annotation_map(obj, PREVIOUS_CLAIMS)
}

/// What [`point_volume`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repointed {
    /// The pod template volume.
    pub volume: String,
    /// The claim it used.
    pub from: String,
    /// The claim it uses now.
    pub to: String,
}

/// How the container mounts of a repointed volume change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubPath<'a> {
    /// They stay as they are.
    Keep,
    /// They show this folder of the new claim (`subPath` prefixed with it), as a swap onto a
    /// backup claim shows one of its snapshots. Recorded in [`SWAPPED_SUB_PATHS`].
    Under(&'a str),
}

/// Annotation on a workload: for each volume pvc-backup pointed at a folder of another claim,
/// the folder put in front of its mounts' `subPath` (JSON object, volume to folder).
pub const SWAPPED_SUB_PATHS: &str = "pvc-backup.io/swapped-sub-paths";

fn annotation_map(obj: &DynamicObject, key: &str) -> Result<BTreeMap<String, String>> {
    let Some(text) = obj.metadata.annotations.as_ref().and_then(|a| a.get(key)) else {
        return Ok(BTreeMap::new());
    };
    serde_json::from_str(text).map_err(|source| Error::Decode {
        what: format!(
            "annotation {key} of {} is not a JSON object of volume names (fix or remove it by \
             hand)",
            obj.metadata.name.clone().unwrap_or_default()
        ),
        source,
    })
}

fn set_annotation_map(obj: &mut DynamicObject, key: &str, map: &BTreeMap<String, String>) {
    let annotations = obj.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if map.is_empty() {
        annotations.remove(key);
    } else {
        annotations.insert(
            key.to_owned(),
            serde_json::to_string(map).unwrap_or_default(),
        );
    }
}

/// `sub` without the folder `prefix` in front (`None` for the folder itself).
fn strip_prefix(sub: Option<&str>, prefix: &str) -> Option<String> {
    let sub = sub?;
    match sub.strip_prefix(prefix) {
        Some("") => None,
        Some(rest) if rest.starts_with('/') => Some(rest.trim_start_matches('/').to_owned()),
        _ => Some(sub.to_owned()),
    }
}

/// Changes the `subPath` of every container mount of `volume` in `template`: the folder
/// `remove` taken away, then `add` put in front.
pub fn change_sub_paths(
    template: &mut PodTemplateSpec,
    volume: &str,
    remove: Option<&str>,
    add: Option<&str>,
) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for m in c.volume_mounts.iter_mut().flatten() {
            if m.name != volume {
                continue;
            }
            let mut sub = m.sub_path.clone().filter(|s| !s.is_empty());
            if let Some(r) = remove {
                sub = strip_prefix(sub.as_deref(), r);
            }
            if let Some(a) = add {
                sub = Some(match sub {
                    Some(rest) => format!("{a}/{rest}"),
                    None => a.to_owned(),
                });
            }
            m.sub_path = sub;
        }
    }
}

/// Points the pod template volume of `workload` that uses claim `from` at claim `to`.
///
/// With `record`, `from` is recorded in the [`PREVIOUS_CLAIMS`] annotation; a volume that
/// already has a recorded previous claim keeps it, so `rollback` returns to the claim used
/// before pvc-backup first changed it. Without `record` (a rollback), the volume's entry is
/// removed, and so is a folder recorded in [`SWAPPED_SUB_PATHS`]. `sub_path` says how the
/// volume's mounts change.
///
/// A StatefulSet claim that comes from its `volumeClaimTemplates` cannot be pointed elsewhere;
/// the error says to keep the claim's name (`migrate --keep-name`) instead.
pub async fn point_volume(
    kube: &Kube,
    workload: &Workload,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    update(kube, workload, |obj| {
        repoint(obj, workload, from, to, record, sub_path)
    })
    .await
}

/// Reads the workload, changes it with `change` and writes its spec and annotations back as a
/// JSON patch (the documented role grants `patch`, not `update`). The patch carries the
/// resourceVersion that was read, so a concurrent edit is a conflict, retried from a fresh
/// read, rather than a lost update.
async fn update<R>(
    kube: &Kube,
    workload: &Workload,
    mut change: impl FnMut(&mut DynamicObject) -> Result<R>,
) -> Result<R> {
    for _ in 0..5 {
        let mut obj = workload.get(kube).await?;
        let had_annotations = obj.metadata.annotations.is_some();
        let result = change(&mut obj)?;
        let patch = write_back(&obj, had_annotations)?;
        match workload
            .api(kube)
            .patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => return Ok(result),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(Error::api(format!("update {workload}"))(e)),
        }
    }
    Err(Error::Failed(format!(
        "{workload} kept changing while pvc-backup tried to update it; retry"
    )))
}

/// The JSON patch that writes `obj`'s spec and annotations over the stored object, on
/// condition that it is still at `obj`'s resourceVersion.
fn write_back(obj: &DynamicObject, had_annotations: bool) -> Result<json_patch::Patch> {
    let mut ops = vec![
        json!({"op": "add", "path": "/metadata/resourceVersion",
               "value": obj.metadata.resource_version}),
        json!({"op": "add", "path": "/spec", "value": obj.data.get("spec")}),
    ];
    match &obj.metadata.annotations {
        Some(a) => ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": a})),
        None if had_annotations => {
            ops.push(json!({"op": "remove", "path": "/metadata/annotations"}))
        }
        None => {}
    }
    serde_json::from_value(Value::Array(ops)).map_err(|source| Error::Decode {
        what: "cannot write a JSON patch".to_owned(),
        source,
    })
}

/// [`point_volume`] on a workload object in memory (what `--dry-run` shows).
pub fn repoint(
    obj: &mut DynamicObject,
    workload: &Workload,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    let volume = match claim_use(obj, from)? {
        Some(ClaimUse::Volume(v)) => v,
        Some(ClaimUse::Template(t)) => {
            return Err(Error::Invalid(format!(
                "claim {from} comes from the volumeClaimTemplates entry {t:?} of {workload}; a \
                 StatefulSet's pods always use the claims their template names, so the new data \
                 must take over the claim's name: use migrate --keep-name, or restore by \
                 copying (without --swap)"
            )));
        }
        None => {
            return Err(Error::Invalid(format!(
                "{workload} has no volume that uses claim {from}; name the workload that does \
                 with --workload KIND/NAME"
            )));
        }
    };
    repoint_volume(obj, workload, &volume, from, to, record, sub_path)
}

/// [`repoint`] of the volume named `volume` (which uses claim `from`).
fn repoint_volume(
    obj: &mut DynamicObject,
    workload: &Workload,
    volume: &str,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    let volume = volume.to_owned();
    let mut previous = previous_claims(obj)?;
    let mut folders = annotation_map(obj, SWAPPED_SUB_PATHS)?;
    let recorded_folder = folders.get(&volume).cloned();
    let (remove, add) = if record {
        previous
            .entry(volume.clone())
            .or_insert_with(|| from.to_owned());
        match sub_path {
            SubPath::Keep => (None, None),
            SubPath::Under(folder) => {
                folders.insert(volume.clone(), folder.to_owned());
                (recorded_folder, Some(folder.to_owned()))
            }
        }
    } else {
        previous.remove(&volume);
        folders.remove(&volume);
        (recorded_folder, None)
    };
    let mut template = pod_template(obj)?;
    if let Some(vols) = template.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
        for v in vols.iter_mut().filter(|v| v.name == volume) {
            if let Some(p) = v.persistent_volume_claim.as_mut() {
                p.claim_name = to.to_owned();
            }
        }
    }
    change_sub_paths(&mut template, &volume, remove.as_deref(), add.as_deref());
    set_annotation_map(obj, PREVIOUS_CLAIMS, &previous);
    set_annotation_map(obj, SWAPPED_SUB_PATHS, &folders);
    if let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(
            "template".to_owned(),
            serde_json::to_value(&template).map_err(|e| Error::Serialise {
                what: format!("the pod template of {workload}"),
                message: e.to_string(),
            })?,
        );
    }
    Ok(Repointed {
        volume,
        from: from.to_owned(),
        to: to.to_owned(),
    })
}

/// Points every volume recorded in the workload's [`PREVIOUS_CLAIMS`] annotation back at its
/// previous claim and removes the annotation, in one update. Returns what changed; an error
/// when nothing is recorded.
pub async fn rollback(kube: &Kube, workload: &Workload) -> Result<RolledBack> {
    update(kube, workload, |obj| roll_back(obj, workload)).await
}

/// What [`rollback`] changed.
#[derive(Debug, Clone, Default)]
pub struct RolledBack {
    /// The volumes pointed back at their previous claims.
    pub volumes: Vec<Repointed>,
    /// The replica count given back to a workload a `--scale-down` run left at zero (found in
    /// its [`SCALED_DOWN_FROM`] annotation).
    pub replicas: Option<i32>,
}

/// [`rollback`] on a workload object in memory (what `--dry-run` shows).
///
/// Points the volumes recorded in [`PREVIOUS_CLAIMS`] back at their claims, and gives a workload
/// left at zero replicas by a `--scale-down` run that died (its [`SCALED_DOWN_FROM`] annotation)
/// its count back. A workload someone scaled up since only loses the annotation.
pub fn roll_back(obj: &mut DynamicObject, workload: &Workload) -> Result<RolledBack> {
    let previous = previous_claims(obj)?;
    let annotations = obj.metadata.annotations.get_or_insert_default();
    let scaled_down = annotations.remove(SCALED_DOWN_FROM);
    if previous.is_empty() && scaled_down.is_none() {
        return Err(Error::Invalid(format!(
            "{workload} has neither a {PREVIOUS_CLAIMS} nor a {SCALED_DOWN_FROM} annotation: \
             pvc-backup did not point any of its volumes at another claim nor leave it scaled \
             down, so there is nothing to switch back"
        )));
    }
    let mut done = RolledBack::default();
    if let Some(count) = scaled_down {
        let count: i32 = count.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::Failed(format!(
                "{workload} has {SCALED_DOWN_FROM}: {count:?}, not a replica count; scale it \
                 with kubectl and remove the annotation"
            ))
        })?;
        if spec_replicas(obj) == 0 {
            obj.data["spec"]["replicas"] = json!(count);
            done.replicas = Some(count);
        }
    }
    for (volume, claim) in &previous {
        let volumes = pod_template(obj)?
            .spec
            .and_then(|s| s.volumes)
            .unwrap_or_default();
        let current = volumes
            .iter()
            .find(|v| &v.name == volume)
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|p| p.claim_name.clone())
            .ok_or_else(|| {
                Error::Failed(format!(
                    "{workload} no longer has a claim volume {volume:?}, recorded in \
                     {PREVIOUS_CLAIMS}; fix the annotation by hand"
                ))
            })?;
        done.volumes.push(repoint_volume(
            obj,
            workload,
            volume,
            &current,
            claim,
            false,
            SubPath::Keep,
        )?);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_as_kubectl_spells_them() {
        for (text, kind) in [
            ("deployment/web", Kind::Deployment),
            ("deploy/web", Kind::Deployment),
            ("Deployment.apps/web", Kind::Deployment),
            ("sts/web", Kind::StatefulSet),
            ("statefulset/web", Kind::StatefulSet),
            ("dc/web", Kind::DeploymentConfig),
            ("deploymentconfig/web", Kind::DeploymentConfig),
        ] {
            let w: Workload = text.parse().unwrap();
            assert_eq!((w.kind, w.name.as_str()), (kind, "web"), "{text}");
        }
        let w: Workload = "sts/db".parse().unwrap();
        assert_eq!(w.to_string(), "statefulset/db");
        for bad in ["web", "pod/web", "deployment/", "deployment/Web"] {
            let err = bad.parse::<Workload>().unwrap_err().to_string();
            assert!(err.contains("workload") || err.contains("name"), "{err}");
        }
    }

    #[test]
    fn only_pods_still_running_with_a_claim_hold_it() {
        let pod = |name: &str, claim: &str, phase: &str| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": name},
                    "spec": {"containers": [], "volumes": [
                        {"name": "v", "persistentVolumeClaim": {"claimName": claim}}
                    ]},
                    "status": {"phase": phase}
                }))
                .unwrap(),
            )
        };
        let pods = [
            pod("web-2", "data", "Running"),
            pod("web-1", "data", "Pending"),
            pod("done", "data", "Succeeded"),
            pod("other", "logs", "Running"),
        ];
        assert_eq!(holding(&pods, &["data"]), ["web-1", "web-2"]);
        assert_eq!(
            holding(&pods, &["data", "logs"]),
            ["other", "web-1", "web-2"]
        );
        assert!(holding(&pods, &["conf"]).is_empty());
    }

    #[test]
    fn the_guard_names_what_it_scales_up_and_an_undo_failure_outranks_context() {
        let w = |n: &str| {
            (
                Workload {
                    kind: Kind::Deployment,
                    name: n.into(),
                },
                2,
            )
        };
        assert_eq!(ScaledDown::default().scaling_up(), None);
        let one = ScaledDown {
            workloads: vec![w("web")],
        };
        assert_eq!(
            one.scaling_up().as_deref(),
            Some("scaling deployment/web back up")
        );
        let two = ScaledDown {
            workloads: vec![w("web"), w("api")],
        };
        assert_eq!(
            two.scaling_up().as_deref(),
            Some("scaling the workloads back up")
        );
        // A step that failed, with the workloads back up: what that means comes first.
        let step = Error::Failed("pods web-1 still use claim data".into());
        assert_eq!(
            stopped_then(step, "the workloads were scaled back up").full_message(),
            "the workloads were scaled back up: pods web-1 still use claim data"
        );
        // Scaling back up failed too: that is what the user must act on, then the step's error.
        let both = Error::with_undo::<()>(
            Err(Error::Failed("the final copy failed".into())),
            Err(Error::Failed(
                "could not scale back up: deployment/web".into(),
            )),
        )
        .unwrap_err();
        let kept = stopped_then(both, "the workloads were scaled back up");
        assert_eq!(
            kept.full_message(),
            "could not scale back up: deployment/web; before that: the final copy failed"
        );
        assert!(matches!(kept.primary(), Error::Failed(m) if m == "the final copy failed"));
    }

    #[test]
    fn the_workload_to_act_on_is_decided_from_the_claims_users_and_their_owners() {
        let user = |pod: &str| placement::User {
            pod: pod.to_owned(),
            node: None,
            object: Pod::default(),
        };
        let web: Workload = "deployment/web".parse().unwrap();
        let db: Workload = "sts/db".parse().unwrap();
        let users = [user("web-1"), user("web-2"), user("db-0")];
        let owners = [Some(web.clone()), Some(web.clone()), Some(db.clone())];
        let found = workloads_of("data", &users, &owners).unwrap();
        // Each once, in kind-then-name order.
        assert_eq!(found, [web.clone(), db.clone()]);
        let err = pick("data", found).unwrap_err().to_string();
        assert!(err.contains("--workload"), "{err}");
        assert_eq!(pick("data", vec![web.clone()]).unwrap(), Some(web.clone()));
        assert_eq!(pick("data", Vec::new()).unwrap(), None);
        // A pod no workload owns cannot be stopped and started again: it is named.
        let err = workloads_of("data", &[user("bare")], &[None])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pod bare uses claim data"), "{err}");
    }

    fn sts(json: Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_claim_is_a_template_volume_or_a_volume_claim_template() {
        let obj = sts(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "annotations": {PREVIOUS_CLAIMS: "{\"conf\":\"conf-old\"}"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "containers": [{"name": "db"}],
                    "volumes": [{"name": "conf", "persistentVolumeClaim": {"claimName": "conf"}}]
                }},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }
        }));
        assert_eq!(spec_replicas(&obj), 3);
        assert_eq!(
            claim_use(&obj, "conf").unwrap(),
            Some(ClaimUse::Volume("conf".into()))
        );
        assert_eq!(
            claim_use(&obj, "data-db-2").unwrap(),
            Some(ClaimUse::Template("data".into()))
        );
        assert_eq!(claim_use(&obj, "data-db-x").unwrap(), None);
        assert_eq!(claim_use(&obj, "data-other-0").unwrap(), None);
        assert_eq!(
            previous_claims(&obj).unwrap(),
            BTreeMap::from([("conf".to_owned(), "conf-old".to_owned())])
        );
    }

    #[test]
    fn a_swap_puts_its_folder_in_front_of_each_mount_and_takes_exactly_that_away() {
        let mut t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "data", "mountPath": "/i"}]}],
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "data", "mountPath": "/srv"},
                {"name": "data", "mountPath": "/etc/app", "subPath": "conf"},
                {"name": "other", "mountPath": "/o", "subPath": "x"}
            ]}]
        }}))
        .unwrap();
        let subs = |t: &PodTemplateSpec| -> Vec<Option<String>> {
            let s = t.spec.clone().unwrap();
            s.init_containers
                .unwrap()
                .into_iter()
                .chain(s.containers)
                .flat_map(|c| c.volume_mounts.unwrap_or_default())
                .map(|m| m.sub_path)
                .collect()
        };
        let some = |s: &str| Some(s.to_owned());
        change_sub_paths(&mut t, "data", None, Some("snapshots/A"));
        assert_eq!(
            subs(&t),
            [
                some("snapshots/A"),
                some("snapshots/A"),
                some("snapshots/A/conf"),
                some("x")
            ]
        );
        // A second swap replaces the folder instead of nesting it.
        change_sub_paths(&mut t, "data", Some("snapshots/A"), Some("snapshots/B"));
        assert_eq!(
            subs(&t),
            [
                some("snapshots/B"),
                some("snapshots/B"),
                some("snapshots/B/conf"),
                some("x")
            ]
        );
        change_sub_paths(&mut t, "data", Some("snapshots/B"), None);
        assert_eq!(subs(&t), [None, None, some("conf"), some("x")]);
        // A folder that only starts like the recorded one is the user's own.
        assert_eq!(
            strip_prefix(Some("snapshots/Bee"), "snapshots/B"),
            some("snapshots/Bee")
        );
    }
}
