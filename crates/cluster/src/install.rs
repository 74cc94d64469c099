//! The objects an administrator installs once so that backups can run: the mover's service
//! account and its binding in each namespace with claims to back up, the ClusterRoles, and on
//! OpenShift the SecurityContextConstraints that admit the mover pod.
//!
//! `pvc-backup manifests`, the Kustomize base in `deploy/kustomize` and the OpenShift templates
//! in `deploy/openshift` all print or hold these objects; tests compare them, so they agree.
//!
//! The mover itself needs no API access (its pod mounts no token). The only right its service
//! account gets is `use` on the SCC, through the ClusterRole `backuper` bound by a RoleBinding
//! in each namespace, the role-based SCC access the original BackupEr recommended: a RoleBinding
//! cannot reach another namespace, and binding a second namespace needs no change to the SCC.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::names::{
    CLUSTER_ROLE, MOVER_ROLE_BINDING, OPERATOR_CLUSTER_ROLE, SCC, SERVICE_ACCOUNT,
    VOLUMES_CLUSTER_ROLE, check_namespace,
};
use crate::security::{CAPABILITIES, OPENSHIFT_SECCOMP_PROFILE};
use crate::{Error, Result};

/// What `pvc-backup manifests` installs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Install {
    /// Namespaces whose claims are backed up: each gets the mover's service account and its
    /// RoleBinding. Empty: one copy without a namespace, for `kubectl apply -n NAMESPACE` or a
    /// Kustomize overlay to place.
    pub namespaces: Vec<String>,
    /// Add the SecurityContextConstraints the mover needs on OpenShift.
    pub openshift: bool,
}

/// The annotation OpenShift shows as an object's description (`oc describe`, the console).
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// What the SCC is for, as its description says.
pub const SCC_DESCRIPTION: &str = "pvc-backup-mover: admits pvc-backup's mover pods, which copy \
    one claim to another. Root in the container with exactly CHOWN, DAC_OVERRIDE, FOWNER, \
    SETUID and SETGID (to read every file and restore its owner and mode), every other \
    capability dropped, no privilege escalation, read-only root filesystem, seccomp \
    runtime/default, no host namespaces, ports or host paths, and fsGroup RunAsAny so that no \
    group is forced onto the volumes. Granted through the ClusterRole backuper, bound to the \
    service account pvc-backup-deployer by a RoleBinding in each namespace.";

fn labels(component: &str) -> Option<std::collections::BTreeMap<String, String>> {
    Some(
        [
            ("app.kubernetes.io/name", "pvc-backup"),
            ("app.kubernetes.io/component", component),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    )
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// The mover's service account in `namespace` (none: the namespace it is applied to). It mounts
/// no token by default: the mover talks to no API server.
pub fn service_account(namespace: Option<&str>) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SERVICE_ACCOUNT.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: labels("mover"),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The ClusterRole `backuper`: `use` of the mover's SCC and nothing else.
pub fn backuper_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.to_owned()),
            labels: labels("mover"),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            resource_names: strings(&[SCC]),
            ..rule(
                &["security.openshift.io"],
                &["securitycontextconstraints"],
                &["use"],
            )
        }]),
        ..ClusterRole::default()
    }
}

/// The RoleBinding of `backuper` to the mover's service account in `namespace` (none: the
/// namespace it is applied to, which is also where the API server then looks for the account).
///
/// Named `backuper`, as `oc adm policy add-role-to-user backuper -z pvc-backup-deployer` names
/// it, so a namespace set up that way by hand gets the same object, not a second one.
pub fn backuper_role_binding(namespace: Option<&str>) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(MOVER_ROLE_BINDING.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: labels("mover"),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: CLUSTER_ROLE.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SERVICE_ACCOUNT.to_owned(),
            namespace: namespace.map(str::to_owned),
            ..Subject::default()
        }]),
    }
}

/// The ClusterRole for the people and pipelines that run `pvc-backup backup`, `clone`,
/// `migrate`, `restore`, `schedule` and `list` in a namespace. Bind it with a RoleBinding per
/// namespace; it holds namespaced resources only.
pub fn operator_cluster_role() -> ClusterRole {
    const READ: &[&str] = &["get", "list", "watch"];
    const MANAGE: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(OPERATOR_CLUSTER_ROLE.to_owned()),
            labels: labels("operator"),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            // Source, target and swapped claims.
            rule(&[""], &["persistentvolumeclaims"], MANAGE),
            // The mover's pod: where it runs, its progress (log) and why it waits (events).
            rule(&[""], &["pods", "events"], READ),
            rule(&[""], &["pods/log"], &["get"]),
            // To say so before starting when the mover's account is missing.
            rule(&[""], &["serviceaccounts"], &["get"]),
            rule(&["batch"], &["jobs", "cronjobs"], MANAGE),
            // A copy into another namespace or cluster: each side's keys in a Secret and the
            // receiving mover's Service, made for one run and deleted after it. Secrets are
            // never read; a Service is, for the address a load balancer gave it.
            rule(&[""], &["secrets"], &["create", "delete"]),
            rule(&[""], &["services"], &["create", "delete", "get"]),
            // `--expose route` on OpenShift: a Route with TLS passthrough in front of that
            // Service, read for the host the cluster gave it.
            rule(
                &["route.openshift.io"],
                &["routes"],
                &["create", "delete", "get"],
            ),
            // A copy through the command's machine (`--via local`) port-forwards to each mover
            // pod: a WebSocket, which the API server authorizes as get (before 1.35) and create.
            // It reaches any port of any pod in the namespace, as `kubectl port-forward` does.
            rule(&[""], &["pods/portforward"], &["get", "create"]),
            // Workloads that use a claim are scaled down for a consistent copy or a swap, and
            // their claim references changed; replica sets lead from a pod to its Deployment.
            rule(
                &["apps"],
                &["deployments", "statefulsets", "replicasets"],
                READ,
            ),
            rule(&["apps"], &["deployments", "statefulsets"], &["patch"]),
            rule(
                &["apps"],
                &["deployments/scale", "statefulsets/scale"],
                &["get", "update", "patch"],
            ),
            rule(&["apps.openshift.io"], &["deploymentconfigs"], READ),
            rule(&["apps.openshift.io"], &["deploymentconfigs"], &["patch"]),
            rule(
                &["apps.openshift.io"],
                &["deploymentconfigs/scale"],
                &["get", "update", "patch"],
            ),
            rule(
                &["snapshot.storage.k8s.io"],
                &["volumesnapshots"],
                &["get", "list", "watch", "create", "delete"],
            ),
        ]),
        ..ClusterRole::default()
    }
}

/// The ClusterRole for migrations and swaps that rebind volumes: cluster-scoped objects only.
/// Bind it with a ClusterRoleBinding to those who migrate; a RoleBinding grants nothing of it.
pub fn volumes_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(VOLUMES_CLUSTER_ROLE.to_owned()),
            labels: labels("operator"),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            // Retain a volume before its claim is deleted, and point it at a new claim.
            rule(
                &[""],
                &["persistentvolumes"],
                &["get", "list", "watch", "patch"],
            ),
            rule(
                &["storage.k8s.io"],
                &["storageclasses"],
                &["get", "list", "watch"],
            ),
            rule(
                &["snapshot.storage.k8s.io"],
                &["volumesnapshotclasses"],
                &["get", "list", "watch"],
            ),
        ]),
        ..ClusterRole::default()
    }
}

/// The SecurityContextConstraints that admit the mover pod on OpenShift (an OpenShift type,
/// built as JSON; the tests check each field).
///
/// It allows exactly the mover's five capabilities and requires every other one dropped. Its
/// strategies are RunAsAny for users (the mover is root, or any user when unprivileged) and for
/// fsGroup and supplemental groups, because a MustRunAs fsGroup would make the kubelet change
/// the group and mode of every file on the claims. Nobody is listed in `users` or `groups`: the
/// RoleBindings of `backuper` grant it.
pub fn security_context_constraints() -> Value {
    json!({
        "apiVersion": "security.openshift.io/v1",
        "kind": "SecurityContextConstraints",
        "metadata": {
            "name": SCC,
            "labels": labels("mover"),
            "annotations": {DESCRIPTION_ANNOTATION: SCC_DESCRIPTION},
        },
        "allowHostDirVolumePlugin": false,
        "allowHostIPC": false,
        "allowHostNetwork": false,
        "allowHostPID": false,
        "allowHostPorts": false,
        "allowPrivilegeEscalation": false,
        "allowPrivilegedContainer": false,
        "allowedCapabilities": CAPABILITIES,
        // Empty rather than null: the CRD requires both fields, and `kubectl apply` drops a null
        // field before the API server sees it. Priority 0 sorts as no priority does.
        "defaultAddCapabilities": [],
        "requiredDropCapabilities": ["ALL"],
        "readOnlyRootFilesystem": true,
        "runAsUser": {"type": "RunAsAny"},
        "seLinuxContext": {"type": "MustRunAs"},
        "fsGroup": {"type": "RunAsAny"},
        "supplementalGroups": {"type": "RunAsAny"},
        "seccompProfiles": [OPENSHIFT_SECCOMP_PROFILE],
        "forbiddenSysctls": ["*"],
        "volumes": [
            "configMap",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ],
        "priority": 0,
        "users": [],
        "groups": [],
    })
}

/// The webhook's namespace. Its pods meet Pod Security "restricted", which it enforces.
pub fn webhook_namespace(name: &str) -> Result<Namespace> {
    check_namespace(name)?;
    Ok(Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [
                    ("app.kubernetes.io/name", "pvc-backup"),
                    ("pod-security.kubernetes.io/enforce", "restricted"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    })
}

fn to_value<T: serde::Serialize>(what: &str, object: &T) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| Error::Serialise {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// Every install object, in the order to apply them: the SCC (OpenShift), the ClusterRoles,
/// then each namespace's service account and RoleBinding (a namespace named twice gets them
/// once).
pub fn objects(install: &Install) -> Result<Vec<Value>> {
    let mut namespaces: Vec<&str> = Vec::new();
    for ns in &install.namespaces {
        check_namespace(ns)?;
        if !namespaces.contains(&ns.as_str()) {
            namespaces.push(ns);
        }
    }
    let mut objects = Vec::new();
    if install.openshift {
        objects.push(security_context_constraints());
    }
    objects.push(to_value("ClusterRole backuper", &backuper_cluster_role())?);
    objects.push(to_value(
        "ClusterRole pvc-backup-operator",
        &operator_cluster_role(),
    )?);
    objects.push(to_value(
        "ClusterRole pvc-backup-volumes",
        &volumes_cluster_role(),
    )?);
    let namespaces: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    for ns in namespaces {
        objects.push(to_value("ServiceAccount", &service_account(ns))?);
        objects.push(to_value("RoleBinding", &backuper_role_binding(ns))?);
    }
    Ok(objects)
}
