//! Where the mover must run: a ReadWriteOnce claim attached to a running pod's node can only be
//! mounted on that node, so the mover goes there (this replaces the original's NODE parameter).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::api;
use crate::connect::Kube;
use crate::objects::mover::Placement;
use crate::{Error, Result};

/// A pod that has a claim mounted.
#[derive(Debug, Clone)]
pub struct User {
    /// The pod's name.
    pub pod: String,
    /// Its node, once scheduled.
    pub node: Option<String>,
    /// The pod itself.
    pub object: Pod,
}

/// Whether `pod` mounts the claim `claim`.
pub fn mounts(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vols| {
            vols.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|p| p.claim_name == claim)
            })
        })
}

/// Whether `pod` still holds its volumes (not finished; a terminating pod still does).
pub fn holds_volumes(pod: &Pod) -> bool {
    !has_finished(pod)
}

/// Whether `pod` has ended for good: its phase says so, or, with restart policy `Never`, every
/// container has terminated. The kubelet reports the phase a moment after the last container
/// ends, and a mover pod (restart policy `Never`) whose container has exited runs nothing more.
pub fn has_finished(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return true;
    }
    let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    never
        && !containers.is_empty()
        && containers
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// The pods of the namespace that hold `claim`.
pub async fn users(kube: &Kube, claim: &str) -> Result<Vec<User>> {
    Ok(users_in(&pods(kube).await?, claim))
}

/// The pods of the namespace, to find the users of several claims with one read.
pub async fn pods(kube: &Kube) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = api::namespaced(kube);
    let what = format!("pods in namespace {}", kube.namespace);
    api::list(&pods, &what, &ListParams::default()).await
}

/// The pods among `pods` that hold `claim`.
pub fn users_in(pods: &[Pod], claim: &str) -> Vec<User> {
    pods.iter()
        .filter(|p| mounts(p, claim) && holds_volumes(p))
        .map(|p| User {
            pod: p.metadata.name.clone().unwrap_or_default(),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            object: p.clone(),
        })
        .collect()
}

/// Decides where a mover that mounts `claims` must run, from the pods using them.
///
/// `ignore_pods` are left out (the pods of a workload the caller scales down first).
pub fn decide(
    claims: &[&PersistentVolumeClaim],
    users: &[(String, Vec<User>)],
    ignore_pods: &[String],
) -> Result<Placement> {
    let mut placement = Placement::Anywhere;
    for claim in claims {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let modes = claim
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default();
        let its_users: Vec<&User> = users
            .iter()
            .filter(|(c, _)| *c == name)
            .flat_map(|(_, u)| u.iter())
            .filter(|u| !ignore_pods.contains(&u.pod))
            .collect();
        if its_users.is_empty() {
            continue;
        }
        let many_nodes = modes
            .iter()
            .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany");
        if modes.iter().any(|m| m == "ReadWriteOncePod") {
            let pods: Vec<&str> = its_users.iter().map(|u| u.pod.as_str()).collect();
            return Err(Error::Failed(format!(
                "claim {name} is ReadWriteOncePod and in use by pod {}: no other pod may mount \
                 it while that one runs. Add --scale-down to stop the workload for the copy and \
                 start it again afterwards, or take a point-in-time copy with --from-snapshot",
                pods.join(", ")
            )));
        }
        if many_nodes {
            continue;
        }
        let Some(user) = its_users.iter().find(|u| u.node.is_some()) else {
            continue;
        };
        let node = user.node.clone().unwrap_or_default();
        match &placement {
            Placement::Node { node: other, .. } if *other != node => {
                return Err(Error::Failed(format!(
                    "the claims are attached to different nodes ({other} and {node}): one pod \
                     cannot mount both; stop one of the workloads (--scale-down) and retry"
                )));
            }
            _ => {}
        }
        let tolerations = user
            .object
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        placement = Placement::Node { node, tolerations };
    }
    Ok(placement)
}

/// Looks up the pods using `claims` and decides where the mover runs.
pub async fn place(
    kube: &Kube,
    claims: &[&PersistentVolumeClaim],
    ignore_pods: &[String],
) -> Result<Placement> {
    let mut all = Vec::new();
    for claim in claims {
        let name = claim.metadata.name.clone().unwrap_or_default();
        all.push((name.clone(), users(kube, &name).await?));
    }
    decide(claims, &all, ignore_pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(restart: &str, phase: &str, states: &[&str]) -> Pod {
        let statuses: Vec<_> = states
            .iter()
            .map(|s| {
                json!({"name": "c", "ready": false, "restartCount": 0, "image": "i",
                "imageID": "", "state": {*s: if *s == "terminated" {json!({"exitCode": 0})}
                    else {json!({})}}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c"}]},
            "status": {"phase": phase, "containerStatuses": statuses}
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_has_finished_by_its_phase_or_once_a_never_restarted_container_exited() {
        assert!(has_finished(&pod("Always", "Succeeded", &["terminated"])));
        assert!(has_finished(&pod("Never", "Failed", &[])));
        // The kubelet has not reported the phase yet; the container will not run again.
        assert!(has_finished(&pod("Never", "Running", &["terminated"])));
        assert!(!holds_volumes(&pod("Never", "Running", &["terminated"])));
        // A workload's container that exited is restarted.
        assert!(!has_finished(&pod("Always", "Running", &["terminated"])));
        assert!(!has_finished(&pod("Never", "Running", &["running"])));
        assert!(!has_finished(&pod("Never", "Pending", &[])));
        assert!(!has_finished(&pod(
            "Never",
            "Running",
            &["terminated", "running"]
        )));
    }
}
