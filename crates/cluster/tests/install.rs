//! The install objects: each reads back through the k8s-openapi types unchanged, the SCC admits
//! exactly the mover's pod and no more, and the roles grant what their documentation says.
//!
//! The SCC and RBAC checks below are small re-statements of OpenShift's SCC admission and of
//! Kubernetes' RBAC rule matching, written from their documentation, not from the builders.

use cluster::install::{self, Install};
use cluster::names;
use cluster::security::{self, Privilege};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSecurityContext, PodSpec, SecurityContext, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Reads `object` as `T` and writes it back: nothing may be lost or changed.
fn round_trip<T: DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let typed: T = serde_json::from_value(object.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        object,
        "a field did not survive the k8s-openapi types"
    );
    typed
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}@{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
                o["metadata"]["namespace"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn plain_install_is_the_roles_and_one_unplaced_account() {
    let objects = install::objects(&Install::default()).unwrap();
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/backuper@-",
            "ClusterRole/pvc-backup-operator@-",
            "ClusterRole/pvc-backup-volumes@-",
            "ServiceAccount/pvc-backup-deployer@-",
            "RoleBinding/backuper@-",
        ]
    );
    for o in &objects {
        match o["kind"].as_str().unwrap() {
            "ClusterRole" => {
                round_trip::<ClusterRole>(o);
            }
            "ServiceAccount" => {
                let sa: ServiceAccount = round_trip(o);
                assert_eq!(sa.automount_service_account_token, Some(false));
            }
            "RoleBinding" => {
                let rb: RoleBinding = round_trip(o);
                assert_eq!(rb.role_ref.kind, "ClusterRole");
                assert_eq!(rb.role_ref.name, "backuper");
                let subjects = rb.subjects.unwrap();
                assert_eq!(subjects.len(), 1);
                assert_eq!(subjects[0].kind, "ServiceAccount");
                assert_eq!(subjects[0].name, "pvc-backup-deployer");
                // Without a namespace, RBAC takes the binding's own for the account.
                assert_eq!(subjects[0].namespace, None);
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn each_namespace_gets_its_own_account_and_binding_once() {
    let objects = install::objects(&Install {
        namespaces: vec!["shop".into(), "db".into(), "shop".into()],
        openshift: true,
    })
    .unwrap();
    assert_eq!(
        kinds(&objects),
        [
            "SecurityContextConstraints/pvc-backup-mover@-",
            "ClusterRole/backuper@-",
            "ClusterRole/pvc-backup-operator@-",
            "ClusterRole/pvc-backup-volumes@-",
            "ServiceAccount/pvc-backup-deployer@shop",
            "RoleBinding/backuper@shop",
            "ServiceAccount/pvc-backup-deployer@db",
            "RoleBinding/backuper@db",
        ]
    );
    for o in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
        let rb: RoleBinding = round_trip(o);
        assert_eq!(
            rb.subjects.unwrap()[0].namespace,
            rb.metadata.namespace,
            "the binding must name the account of its own namespace"
        );
    }
}

#[test]
fn a_bad_namespace_is_refused_by_name() {
    for bad in ["Shop", "a.b", "-x", ""] {
        let err = install::objects(&Install {
            namespaces: vec!["ok".into(), bad.into()],
            openshift: false,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(&format!("{bad:?}")), "{err}");
        assert!(err.contains("namespace"), "{err}");
    }
    assert!(install::webhook_namespace("pvc.backup").is_err());
    let ns: Namespace = round_trip(
        &serde_json::to_value(install::webhook_namespace("pvc-backup").unwrap()).unwrap(),
    );
    assert_eq!(
        ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

/// Whether `role` lets a subject do `verb` on `resource` (possibly `name`) of `group`, by
/// Kubernetes' rule matching: every listed field must match, `*` matches anything.
fn allows(role: &ClusterRole, group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    let any = |list: &Option<Vec<String>>, item: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == item))
    };
    role.rules.as_ref().unwrap().iter().any(|r| {
        any(&r.api_groups, group)
            && any(&r.resources, resource)
            && r.verbs.iter().any(|v| v == "*" || v == verb)
            && match (&r.resource_names, name) {
                (None, _) => true,
                (Some(names), Some(n)) => names.iter().any(|x| x == n),
                (Some(names), None) => names.is_empty(),
            }
    })
}

#[test]
fn backuper_may_use_the_mover_scc_and_nothing_else() {
    let role = install::backuper_cluster_role();
    let scc = ("security.openshift.io", "securitycontextconstraints");
    assert!(allows(&role, scc.0, scc.1, "use", Some("pvc-backup-mover")));
    for other in ["privileged", "anyuid", "restricted-v2", "hostaccess"] {
        assert!(!allows(&role, scc.0, scc.1, "use", Some(other)), "{other}");
    }
    for (group, resource, verb) in [
        (scc.0, scc.1, "update"),
        (scc.0, scc.1, "get"),
        ("", "pods", "get"),
        ("", "secrets", "get"),
        ("", "persistentvolumeclaims", "list"),
    ] {
        assert!(
            !allows(&role, group, resource, verb, Some("pvc-backup-mover")),
            "{resource} {verb}"
        );
    }
    assert_eq!(role.rules.unwrap().len(), 1);
}

#[test]
fn operator_role_covers_the_workflows_and_stays_in_the_namespace() {
    let role = install::operator_cluster_role();
    for (group, resource, verb) in [
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "persistentvolumeclaims", "patch"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("", "events", "watch"),
        ("", "serviceaccounts", "get"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("batch", "cronjobs", "update"),
        ("apps", "deployments/scale", "update"),
        ("apps", "statefulsets/scale", "patch"),
        ("apps", "statefulsets", "patch"),
        ("apps", "replicasets", "get"),
        ("apps.openshift.io", "deploymentconfigs/scale", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("", "secrets", "create"),
        ("", "secrets", "delete"),
        ("", "services", "create"),
        ("", "services", "delete"),
    ] {
        assert!(
            allows(&role, group, resource, verb, None),
            "{group}/{resource} {verb}"
        );
    }
    // Nothing that reads secrets, runs code in other pods, or grants rights.
    for (group, resource, verb) in [
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "secrets", "update"),
        ("", "services", "patch"),
        ("", "pods/exec", "create"),
        ("", "pods", "create"),
        ("", "serviceaccounts", "create"),
        ("", "persistentvolumes", "patch"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("apps", "deployments", "delete"),
    ] {
        assert!(
            !allows(&role, group, resource, verb, None),
            "{group}/{resource} {verb}"
        );
    }
    let volumes = install::volumes_cluster_role();
    assert!(allows(&volumes, "", "persistentvolumes", "patch", None));
    assert!(allows(
        &volumes,
        "storage.k8s.io",
        "storageclasses",
        "list",
        None
    ));
    assert!(!allows(&volumes, "", "persistentvolumes", "delete", None));
    assert!(!allows(&volumes, "", "persistentvolumeclaims", "get", None));
}

#[test]
fn the_operator_role_grants_every_namespaced_right_the_commands_ask_for() {
    use cluster::access;
    let role = install::operator_cluster_role();
    let asked = [
        access::MOVER_RUN,
        access::SCALE,
        access::REBIND,
        access::WIRE,
        access::SERVICE,
        access::PORT_FORWARD,
        access::SCHEDULE,
    ]
    .concat();
    for p in asked.iter().filter(|p| !p.cluster) {
        let resource = if p.subresource.is_empty() {
            p.resource.to_owned()
        } else {
            format!("{}/{}", p.resource, p.subresource)
        };
        assert!(
            allows(&role, p.group, &resource, p.verb, None),
            "{}",
            p.describe()
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// Why OpenShift's SCC admission would refuse `pod` under `scc`, or `None` when it admits it.
fn scc_refuses(scc: &Value, pod: &PodSpec) -> Option<String> {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    if pod.host_network == Some(true) && scc["allowHostNetwork"] != true {
        return Some("host network".into());
    }
    if pod.host_pid == Some(true) && scc["allowHostPID"] != true {
        return Some("host PID".into());
    }
    if pod.host_ipc == Some(true) && scc["allowHostIPC"] != true {
        return Some("host IPC".into());
    }
    let allowed_volumes = strings(&scc["volumes"]);
    for v in pod.volumes.iter().flatten() {
        let kind = serde_json::to_value(v).unwrap();
        let kind = kind
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "name")
            .cloned()
            .unwrap();
        if !allowed_volumes.contains(&kind) && !allowed_volumes.contains(&"*".to_owned()) {
            return Some(format!("volume type {kind}"));
        }
    }
    if let Some(g) = pod_sc.fs_group
        && scc["fsGroup"]["type"] != "RunAsAny"
    {
        return Some(format!("fsGroup {g}"));
    }
    for c in &pod.containers {
        let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) && scc["allowPrivilegedContainer"] != true {
            return Some("privileged".into());
        }
        if sc.allow_privilege_escalation != Some(false) && scc["allowPrivilegeEscalation"] == false
        {
            return Some("privilege escalation not disabled".into());
        }
        if scc["readOnlyRootFilesystem"] == true && sc.read_only_root_filesystem != Some(true) {
            return Some("writable root filesystem".into());
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        let allowed = strings(&scc["allowedCapabilities"]);
        for add in caps.add.iter().flatten() {
            if !allowed.contains(add) && !allowed.contains(&"*".to_owned()) {
                return Some(format!("capability {add}"));
            }
        }
        let dropped = caps.drop.unwrap_or_default();
        for required in strings(&scc["requiredDropCapabilities"]) {
            if !dropped.contains(&required) && !dropped.contains(&"ALL".to_owned()) {
                return Some(format!("{required} not dropped"));
            }
        }
        let uid = sc.run_as_user.or(pod_sc.run_as_user);
        match scc["runAsUser"]["type"].as_str().unwrap() {
            "RunAsAny" => {}
            "MustRunAsNonRoot" if uid.is_some_and(|u| u != 0) => {}
            other => return Some(format!("runAsUser {other} with uid {uid:?}")),
        }
        let seccomp = sc
            .seccomp_profile
            .clone()
            .or(pod_sc.seccomp_profile.clone())
            .map(|p| p.type_);
        let as_scc = match seccomp.as_deref() {
            Some("RuntimeDefault") => "runtime/default",
            Some("Unconfined") => "unconfined",
            _ => "",
        };
        let profiles = strings(&scc["seccompProfiles"]);
        if !profiles.is_empty() && !profiles.iter().any(|p| p == "*" || p == as_scc) {
            return Some(format!("seccomp {seccomp:?}"));
        }
    }
    None
}

fn mover_pod(privilege: Privilege) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(security::pod(privilege)),
        containers: vec![Container {
            name: "mover".into(),
            security_context: Some(security::container(privilege)),
            ..Container::default()
        }],
        volumes: Some(
            serde_json::from_value(json!([
                {"name": "source", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
                {"name": "backup", "persistentVolumeClaim": {"claimName": "data-backup"}},
            ]))
            .unwrap(),
        ),
        ..PodSpec::default()
    }
}

#[test]
fn scc_admits_the_mover_in_both_modes() {
    let scc = install::security_context_constraints();
    assert_eq!(scc_refuses(&scc, &mover_pod(Privilege::Mover)), None);
    assert_eq!(
        scc_refuses(&scc, &mover_pod(Privilege::Unprivileged { uid: None })),
        None
    );
}

#[test]
fn scc_refuses_anything_beyond_the_mover() {
    let scc = install::security_context_constraints();
    let with_container = |f: &dyn Fn(&mut SecurityContext)| {
        let mut pod = mover_pod(Privilege::Mover);
        f(pod.containers[0].security_context.as_mut().unwrap());
        scc_refuses(&scc, &pod)
    };
    for extra in [
        "SYS_ADMIN",
        "NET_ADMIN",
        "DAC_READ_SEARCH",
        "SYS_PTRACE",
        "MKNOD",
    ] {
        let refused = with_container(&|sc| {
            sc.capabilities
                .as_mut()
                .unwrap()
                .add
                .as_mut()
                .unwrap()
                .push(extra.into())
        });
        assert_eq!(refused, Some(format!("capability {extra}")));
    }
    assert!(with_container(&|sc| sc.capabilities.as_mut().unwrap().drop = None).is_some());
    assert!(with_container(&|sc| sc.privileged = Some(true)).is_some());
    assert!(with_container(&|sc| sc.allow_privilege_escalation = None).is_some());
    assert!(with_container(&|sc| sc.read_only_root_filesystem = Some(false)).is_some());
    let mut pod = mover_pod(Privilege::Mover);
    pod.host_pid = Some(true);
    assert!(scc_refuses(&scc, &pod).is_some());
    let mut pod = mover_pod(Privilege::Mover);
    pod.volumes
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"name": "host", "hostPath": {"path": "/"}})).unwrap());
    assert_eq!(scc_refuses(&scc, &pod), Some("volume type hostPath".into()));
}

#[test]
fn scc_fields_say_what_it_is_for() {
    let scc = install::security_context_constraints();
    assert_eq!(scc["apiVersion"], "security.openshift.io/v1");
    assert_eq!(scc["metadata"]["name"], names::SCC);
    assert_eq!(
        strings(&scc["allowedCapabilities"]),
        security::CAPABILITIES.map(str::to_owned)
    );
    assert_eq!(strings(&scc["requiredDropCapabilities"]), ["ALL"]);
    for host in [
        "allowHostDirVolumePlugin",
        "allowHostIPC",
        "allowHostNetwork",
        "allowHostPID",
        "allowHostPorts",
        "allowPrivilegedContainer",
        "allowPrivilegeEscalation",
    ] {
        assert_eq!(scc[host], false, "{host}");
    }
    // A MustRunAs fsGroup would make the kubelet re-group every file of the claims.
    assert_eq!(scc["fsGroup"]["type"], "RunAsAny");
    assert_eq!(scc["supplementalGroups"]["type"], "RunAsAny");
    assert_eq!(scc["users"], json!([]));
    assert_eq!(scc["groups"], json!([]));
    let description = scc["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap();
    for word in ["pvc-backup", "mover", "backuper", "pvc-backup-deployer"] {
        assert!(description.contains(word), "{description}");
    }
    for cap in security::CAPABILITIES {
        assert!(description.contains(cap), "{description}");
    }
    // The YAML form reads back the same.
    let yaml = serde_saphyr::to_string(&scc).unwrap();
    let back: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, scc);
}

#[test]
fn mover_pod_security_context_is_what_the_scc_expects() {
    // The pod context carries no fsGroup or supplemental groups: with them the kubelet would
    // change the files it is about to copy.
    let pod: PodSecurityContext = security::pod(Privilege::Mover);
    assert_eq!(pod.fs_group, None);
    assert_eq!(pod.supplemental_groups, None);
}
