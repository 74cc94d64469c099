//! Before a workflow changes anything: may the caller do all it will do? Each verb on each
//! resource is asked of the API server with a SelfSubjectAccessReview (which every
//! authenticated user may create), so that a missing permission stops the command at once with
//! a message that names it, instead of half-way through with a claim made and a workload
//! stopped.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use crate::connect::Kube;
use crate::names::{OPERATOR_CLUSTER_ROLE, VOLUMES_CLUSTER_ROLE};
use crate::{Error, Result};

/// One verb on one resource (`group` empty for the core group; `subresource` like `log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// get, list, create, patch, delete, ...
    pub verb: &'static str,
    /// The API group ("" for core).
    pub group: &'static str,
    /// The resource, plural.
    pub resource: &'static str,
    /// A subresource ("log", "scale"), or "".
    pub subresource: &'static str,
    /// Whether the resource is cluster-scoped (PersistentVolumes, StorageClasses).
    pub cluster: bool,
}

const fn ns(verb: &'static str, group: &'static str, resource: &'static str) -> Permission {
    Permission {
        verb,
        group,
        resource,
        subresource: "",
        cluster: false,
    }
}

impl Permission {
    /// `VERB RESOURCE[/SUB][.GROUP]`, as kubectl names it.
    pub fn describe(&self) -> String {
        let mut r = self.resource.to_owned();
        if !self.subresource.is_empty() {
            r = format!("{r}/{}", self.subresource);
        }
        if !self.group.is_empty() {
            r = format!("{r}.{}", self.group);
        }
        format!("{} {r}", self.verb)
    }

    /// The ClusterRole pvc-backup ships that grants it.
    fn granted_by(&self) -> &'static str {
        if self.cluster {
            VOLUMES_CLUSTER_ROLE
        } else {
            OPERATOR_CLUSTER_ROLE
        }
    }
}

/// What every workflow that runs the mover does: read the claim, make the target claim, run
/// the Job and follow its pod, log and events (watched while it waits for them).
pub const MOVER_RUN: &[Permission] = &[
    ns("get", "", "persistentvolumeclaims"),
    ns("create", "", "persistentvolumeclaims"),
    ns("patch", "", "persistentvolumeclaims"),
    ns("list", "", "pods"),
    Permission {
        subresource: "log",
        ..ns("get", "", "pods")
    },
    ns("list", "", "events"),
    ns("get", "", "serviceaccounts"),
    ns("create", "batch", "jobs"),
    ns("get", "batch", "jobs"),
    ns("delete", "batch", "jobs"),
    ns("watch", "", "pods"),
    ns("watch", "", "events"),
    ns("watch", "batch", "jobs"),
    ns("watch", "", "persistentvolumeclaims"),
];

/// What stopping and starting a workload (`--scale-down`, restore, migrate) adds.
pub const SCALE: &[Permission] = &[
    ns("list", "apps", "deployments"),
    ns("list", "apps", "statefulsets"),
    ns("list", "apps", "replicasets"),
    ns("patch", "apps", "deployments"),
    ns("patch", "apps", "statefulsets"),
    Permission {
        subresource: "scale",
        ..ns("patch", "apps", "deployments")
    },
    Permission {
        subresource: "scale",
        ..ns("patch", "apps", "statefulsets")
    },
];

/// What a migration that keeps the claim's name, or a swap, adds: the volume is kept and
/// rebound (cluster-scoped), and found again by its record when a run goes on.
pub const REBIND: &[Permission] = &[
    ns("delete", "", "persistentvolumeclaims"),
    Permission {
        cluster: true,
        ..ns("get", "", "persistentvolumes")
    },
    Permission {
        cluster: true,
        ..ns("patch", "", "persistentvolumes")
    },
    // A run that goes on while the claim is recreated finds its record on the old volume.
    Permission {
        cluster: true,
        ..ns("list", "", "persistentvolumes")
    },
];

/// What a copy into another namespace adds in each of the two namespaces: a Secret with that
/// side's keys, deleted at the end. It never reads a Secret.
pub const WIRE: &[Permission] = &[ns("create", "", "secrets"), ns("delete", "", "secrets")];

/// What a copy into another namespace adds in the copy's namespace: the Service in front of
/// the receiving mover.
pub const SERVICE: &[Permission] = &[ns("create", "", "services"), ns("delete", "", "services")];

/// What a copy through a LoadBalancer Service adds in the copy's namespace: reading the Service
/// for the address the load balancer gave it.
pub const SERVICE_STATUS: &[Permission] = &[ns("get", "", "services")];

/// What a copy through an OpenShift Route adds in the copy's namespace: the Route in front of
/// the receiving mover's Service, read for the host the cluster gave it.
pub const ROUTE: &[Permission] = &[
    ns("create", "route.openshift.io", "routes"),
    ns("delete", "route.openshift.io", "routes"),
    ns("get", "route.openshift.io", "routes"),
];

/// What a copy through the command's own machine (`--via local`) adds in each of the two
/// namespaces: a port-forward to that side's mover pod (it makes no Service). The port-forward
/// is a WebSocket, which the API server authorizes as `get` up to Kubernetes 1.34 and as both
/// `get` and `create` from 1.35 on (`AuthorizePodWebsocketUpgradeCreatePermission`).
pub const PORT_FORWARD: &[Permission] = &[
    Permission {
        subresource: "portforward",
        ..ns("get", "", "pods")
    },
    Permission {
        subresource: "portforward",
        ..ns("create", "", "pods")
    },
];

/// What a migration adds: it checks the target StorageClass (cluster-scoped).
pub const MIGRATE: &[Permission] = &[Permission {
    cluster: true,
    ..ns("get", "storage.k8s.io", "storageclasses")
}];

/// What a backup into a repository, or a restore from one, adds on the command line: its Secret
/// is read to check that it holds the keys the mover needs before a Job is made. No role
/// pvc-backup ships grants it (the mover's pod gets the keys by `secretKeyRef`, which asks
/// nothing of whoever creates the Job); the built-in `edit` and `admin` roles do.
pub const REPOSITORY: &[Permission] = &[ns("get", "", "secrets")];

/// What a schedule needs.
pub const SCHEDULE: &[Permission] = &[
    ns("get", "", "persistentvolumeclaims"),
    ns("create", "", "persistentvolumeclaims"),
    ns("get", "", "serviceaccounts"),
    ns("create", "batch", "cronjobs"),
    ns("get", "batch", "cronjobs"),
];

/// Asks the API server about each permission; the first one refused stops the command with a
/// message that names the verb, the resource, the namespace and the ClusterRole that grants it.
pub async fn check(kube: &Kube, needs: &[&[Permission]]) -> Result<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(kube.client.clone());
    let mut seen = Vec::new();
    for p in needs.iter().flat_map(|n| n.iter()) {
        if seen.contains(p) {
            continue;
        }
        seen.push(*p);
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(p.verb.to_owned()),
                    group: Some(p.group.to_owned()),
                    resource: Some(p.resource.to_owned()),
                    subresource: (!p.subresource.is_empty()).then(|| p.subresource.to_owned()),
                    namespace: (!p.cluster).then(|| kube.namespace.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::api(format!(
                "ask the API server whether you may {}",
                p.describe()
            )))?;
        let allowed = answer.status.as_ref().is_some_and(|s| s.allowed);
        if !allowed {
            let place = if p.cluster {
                "(cluster-wide)".to_owned()
            } else {
                format!("in namespace {}", kube.namespace)
            };
            let binding = if p.cluster {
                format!("a ClusterRoleBinding to the ClusterRole {}", p.granted_by())
            } else if p.resource == "secrets" {
                format!(
                    "a RoleBinding in {} to a role that may read Secrets, such as the built-in \
                     ClusterRole edit ({} does not grant it)",
                    kube.namespace, OPERATOR_CLUSTER_ROLE
                )
            } else {
                format!(
                    "a RoleBinding in {} to the ClusterRole {}",
                    kube.namespace,
                    p.granted_by()
                )
            };
            return Err(Error::Failed(format!(
                "you may not {} {place}: the API server's RBAC refuses it, so nothing was \
                 changed. Ask for {binding} (see docs/install.md), or check with \
                 `kubectl auth can-i {} {}{}`",
                p.describe(),
                p.verb,
                p.resource,
                if p.cluster {
                    String::new()
                } else {
                    format!(" -n {}", kube.namespace)
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_named_as_kubectl_names_them() {
        assert_eq!(MOVER_RUN[4].describe(), "get pods/log");
        assert_eq!(SCALE[5].describe(), "patch deployments/scale.apps");
        assert_eq!(REBIND[2].describe(), "patch persistentvolumes");
        assert_eq!(REBIND[2].granted_by(), VOLUMES_CLUSTER_ROLE);
        assert_eq!(MOVER_RUN[7].describe(), "create jobs.batch");
    }
}
