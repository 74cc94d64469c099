//! The objects that run the operator in a cluster (`pvc-backup manifests --operator`): its
//! service account with the least rights it needs, a Deployment of two replicas that elect a
//! leader on a Lease, a PodDisruptionBudget and the Service of its metrics.

use serde_json::{Value, json};

/// The name of the operator's Deployment, service account, Lease, Service and RBAC objects.
pub const NAME: &str = "pvc-backup-operator";

/// The port of `/metrics`, `/healthz` and `/readyz`.
pub const METRICS_PORT: u16 = 8080;

/// The ClusterRole of what only the operator does: the pvc-backup.io resources and their
/// status, and Events. What a run needs (claims, Jobs, pods and their logs, workloads, snapshots) is the
/// ClusterRole `pvc-backup-operator` the commands' users get too.
pub const CONTROLLER_ROLE: &str = "pvc-backup-controller";

/// The resources of the pvc-backup.io group, by their plural names.
pub const PLURALS: [&str; 5] = [
    "backups",
    "backupschedules",
    "restores",
    "clones",
    "migrations",
];

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "pvc-backup", "app.kubernetes.io/component": "operator"})
}

/// The operator's objects in `namespace`, running `image` (which the mover pods run too).
pub fn objects(namespace: &str, image: &str) -> Vec<Value> {
    let status: Vec<String> = PLURALS.iter().map(|p| format!("{p}/status")).collect();
    let sa = json!([{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]);
    let selector = labels();
    let probe = |path: &str| {
        json!({
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CONTROLLER_ROLE, "labels": labels()},
            "rules": [
                {"apiGroups": [resources::GROUP], "resources": PLURALS,
                 "verbs": ["get", "list", "watch", "patch", "update"]},
                {"apiGroups": [resources::GROUP], "resources": status,
                 "verbs": ["get", "patch", "update"]},
                // A BackupSchedule's Backups: made at each firing, deleted beyond its history.
                {"apiGroups": [resources::GROUP], "resources": ["backups"],
                 "verbs": ["create", "delete"]},
                // The Events that tell a run's start and end.
                {"apiGroups": ["events.k8s.io"], "resources": ["events"],
                 "verbs": ["create", "patch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CONTROLLER_ROLE, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": CONTROLLER_ROLE},
            "subjects": sa.clone(),
        }),
        // The runs themselves, in every namespace: what a person running the commands gets.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{NAME}-runs"), "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": cluster::names::OPERATOR_CLUSTER_ROLE},
            "subjects": sa.clone(),
        }),
        // Storage classes, and the volumes a Migration with keepName rebinds: cluster-scoped.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{NAME}-volumes"), "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": cluster::names::VOLUMES_CLUSTER_ROLE},
            "subjects": sa.clone(),
        }),
        // The Lease, in its own namespace only.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": format!("{NAME}-lease"), "namespace": namespace,
                         "labels": labels()},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "resourceNames": [NAME], "verbs": ["get", "update"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": format!("{NAME}-lease"), "namespace": namespace,
                         "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": format!("{NAME}-lease")},
            "subjects": sa.clone(),
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
            "spec": {
                "replicas": 2,
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": selector.clone()},
                "template": {
                    "metadata": {"labels": selector.clone()},
                    "spec": {
                        "serviceAccountName": NAME,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 30,
                        // No user named: the image's (65532), or on OpenShift one of the
                        // project's range, as restricted-v2 wants.
                        "securityContext": {
                            "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "operator",
                            "image": image,
                            "args": ["operator", "--leader-elect", "--metrics-address",
                                     format!("0.0.0.0:{METRICS_PORT}")],
                            "env": [
                                {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                                {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                                {"name": "PVC_BACKUP_IMAGE", "value": image},
                            ],
                            "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                            "livenessProbe": probe("/healthz"),
                            "readinessProbe": probe("/readyz"),
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "32Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "privileged": false,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector.clone()}},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": format!("{NAME}-metrics"), "namespace": namespace,
                         "labels": labels()},
            "spec": {
                "selector": selector.clone(),
                "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_gets_its_own_rights_and_runs_restricted() {
        let objects = objects("pvc-backup", "localhost/pvc-backup:dev");
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRoleBinding",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment",
                "PodDisruptionBudget",
                "Service"
            ]
        );
        // Its own ClusterRole reaches only its group, and writes Events: no secret, no pod.
        let role = &objects[1];
        for rule in role["rules"].as_array().unwrap() {
            let group = &rule["apiGroups"];
            assert!(
                *group == json!(["pvc-backup.io"])
                    || (*group == json!(["events.k8s.io"])
                        && rule["verbs"] == json!(["create", "patch"])),
                "{rule}"
            );
        }
        let pod = &objects[7]["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(container["args"][1], "--leader-elect");
        assert!(pod["securityContext"].get("runAsUser").is_none());
    }
}
