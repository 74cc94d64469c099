//! The workloads that use a claim: Deployments, StatefulSets and OpenShift DeploymentConfigs.
//!
//! Workflows scale them to zero so nothing writes while the last changes are copied, scale them
//! back to the count they had, and point a pod template's volume at another claim (recording the
//! previous claim in an annotation so that `rollback` can point it back). All three kinds are
//! handled through the dynamic API, so a DeploymentConfig (which k8s-openapi does not know) goes
//! through the same code as the built-in kinds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::connect::Kube;
use crate::placement;
use crate::{Error, Result};

mod scale;
mod volume;

pub use scale::{
    ScaledDown, counts_to_restore, scale_down, scale_down_to_zero, scale_down_users, stopped_then,
    wait_unused,
};
pub use volume::{
    ClaimUse, Repointed, RolledBack, SWAPPED_SUB_PATHS, SubPath, change_sub_paths, claim_use,
    point_volume, previous_claims, repoint, roll_back, rollback,
};

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
}
