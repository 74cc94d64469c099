//! Helpers that make the tests read like the situations they check.

use std::path::PathBuf;

use admission::Policy;
use serde_json::{Value, json};

/// The service account every case guards.
pub const SA: &str = "pvc-backup-deployer";

/// A digest used by the digest cases.
pub fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// The policy of the public fixtures (`cases.json`).
pub fn fixture_policy() -> Policy {
    Policy::from_strings(SA, &["dev/backup:latest"]).unwrap()
}

/// The richer policy of the cases written here.
pub fn own_policy() -> Policy {
    Policy::from_strings(
        SA,
        &[
            "dev/backup:latest".to_owned(),
            "quay.io/pvc-backup/*".to_owned(),
            format!("registry.example.com:5000/mover@{}", digest('a')),
            "ghcr.io/pvc-backup/pvc-backup:*".to_owned(),
        ],
    )
    .unwrap()
}

/// The admission fixtures: `tests/fixtures/admission` of the repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/admission")
}

/// One situation: an AdmissionReview, the policy it is judged under, and the right verdict.
#[derive(Debug, Clone)]
pub struct Case {
    /// Name, for failure messages.
    pub name: String,
    /// The AdmissionReview request.
    pub review: Value,
    /// Which policy: the fixtures' or the own one.
    pub own_policy: bool,
    /// Whether it must be allowed.
    pub allowed: bool,
    /// Words the denial message must contain (container names and reasons).
    pub must_name: Vec<String>,
}

impl Case {
    /// The policy the case is judged under.
    pub fn policy(&self) -> Policy {
        if self.own_policy {
            own_policy()
        } else {
            fixture_policy()
        }
    }
}

/// The public fixtures, with their verdicts from `cases.json`.
pub fn fixture_cases() -> Vec<Case> {
    let dir = fixtures_dir();
    let table: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(table["policy"]["service_account"], SA);
    assert_eq!(
        table["policy"]["allowed_images"],
        json!(["dev/backup:latest"])
    );
    let mut cases = Vec::new();
    for case in table["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let review: Value =
            serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let allowed = case["allowed"].as_bool().unwrap();
        let must_name = if allowed {
            Vec::new()
        } else {
            let spec = &review["request"]["object"]["spec"];
            ["containers", "initContainers"]
                .iter()
                .filter_map(|f| spec[f].as_array())
                .flatten()
                .filter(|c| c["image"] != "dev/backup:latest")
                .map(|c| format!("\"{}\"", c["name"].as_str().unwrap()))
                .collect()
        };
        cases.push(Case {
            name: file.to_owned(),
            review,
            own_policy: false,
            allowed,
            must_name,
        });
    }
    assert_eq!(cases.len(), 10, "cases.json lists ten fixtures");
    cases
}

/// An AdmissionReview of `version` (`v1` or `v1beta1`) for one object.
pub fn review(
    version: &str,
    group: &str,
    kind: &str,
    resource: &str,
    operation: &str,
    object: Value,
) -> Value {
    json!({
        "apiVersion": format!("admission.k8s.io/{version}"),
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "dev", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
        }
    })
}

/// A pod under the guarded service account with these containers.
pub fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"serviceAccountName": SA, "containers": containers},
    })
}

/// A mover container.
pub fn mover(name: &str) -> Value {
    json!({"name": name, "image": "dev/backup:latest", "args": ["mover", "sync", "/source", "/backup"]})
}

/// A pod spec wrapped as the template of a workload of `kind`.
pub fn workload(api_version: &str, kind: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": spec});
    let workload_spec = if kind == "CronJob" {
        json!({"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": template}}})
    } else {
        json!({"selector": {"matchLabels": {"app": "x"}}, "template": template})
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "w", "namespace": "shop"}, "spec": workload_spec})
}

fn own(name: &str, review: Value, allowed: bool, must_name: &[&str]) -> Case {
    Case {
        name: name.to_owned(),
        review,
        own_policy: true,
        allowed,
        must_name: must_name.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn pod_case(name: &str, containers: Value, allowed: bool, must_name: &[&str]) -> Case {
    own(
        name,
        review("v1", "", "Pod", "pods", "CREATE", pod(containers)),
        allowed,
        must_name,
    )
}

fn pod_spec_case(name: &str, spec: Value, allowed: bool, must_name: &[&str]) -> Case {
    let mut object = pod(json!([]));
    object["spec"] = spec;
    own(
        name,
        review("v1", "", "Pod", "pods", "CREATE", object),
        allowed,
        must_name,
    )
}

/// The cases written here: UPDATE, ephemeral containers, templates, commands, privileges, host
/// access, digests and spellings.
pub fn own_cases() -> Vec<Case> {
    let bad = json!([{"name": "shell", "image": "busybox"}]);
    let mut cases = vec![
        own(
            "update_allowed",
            review("v1", "", "Pod", "pods", "UPDATE", pod(json!([mover("m")]))),
            true,
            &[],
        ),
        own(
            "update_denied",
            review("v1", "", "Pod", "pods", "UPDATE", pod(bad.clone())),
            false,
            &["\"shell\"", "busybox"],
        ),
        own(
            "delete_is_not_checked",
            review("v1", "", "Pod", "pods", "DELETE", pod(bad.clone())),
            true,
            &[],
        ),
        own(
            "v1beta1_update_denied",
            review("v1beta1", "", "Pod", "pods", "UPDATE", pod(bad.clone())),
            false,
            &["\"shell\""],
        ),
    ];
    // Ephemeral containers arrive through the pods/ephemeralcontainers subresource.
    let mut debug = pod(json!([mover("m")]));
    debug["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "targetContainerName": "m"}]);
    let mut r = review("v1", "", "Pod", "pods", "UPDATE", debug.clone());
    r["request"]["subResource"] = json!("ephemeralcontainers");
    cases.push(own(
        "ephemeral_container_denied",
        r,
        false,
        &["ephemeral container \"debugger\"", "busybox"],
    ));
    let mut ok_debug = debug;
    ok_debug["spec"]["ephemeralContainers"][0]["image"] = json!("quay.io/pvc-backup/debug:1");
    let mut r = review("v1", "", "Pod", "pods", "UPDATE", ok_debug);
    r["request"]["subResource"] = json!("ephemeralcontainers");
    cases.push(own("ephemeral_container_allowed", r, true, &[]));
    // Status updates cannot change what runs.
    let mut r = review("v1", "", "Pod", "pods", "UPDATE", pod(bad.clone()));
    r["request"]["subResource"] = json!("status");
    cases.push(own("status_subresource_not_checked", r, true, &[]));

    // Workload templates.
    let bad_spec =
        json!({"serviceAccountName": SA, "containers": [{"name": "shell", "image": "busybox"}]});
    let good_spec = json!({"serviceAccountName": SA, "containers": [mover("m")]});
    for (group, version, kind, resource) in [
        ("apps", "apps/v1", "Deployment", "deployments"),
        ("apps", "apps/v1", "ReplicaSet", "replicasets"),
        ("apps", "apps/v1", "StatefulSet", "statefulsets"),
        ("apps", "apps/v1", "DaemonSet", "daemonsets"),
        ("batch", "batch/v1", "Job", "jobs"),
        ("batch", "batch/v1", "CronJob", "cronjobs"),
        (
            "apps.openshift.io",
            "apps.openshift.io/v1",
            "DeploymentConfig",
            "deploymentconfigs",
        ),
    ] {
        let name = kind.to_lowercase();
        cases.push(own(
            &format!("{name}_template_denied"),
            review(
                "v1",
                group,
                kind,
                resource,
                "CREATE",
                workload(version, kind, bad_spec.clone()),
            ),
            false,
            &[kind, "\"w\"", "\"shell\""],
        ));
        cases.push(own(
            &format!("{name}_template_allowed"),
            review(
                "v1",
                group,
                kind,
                resource,
                "UPDATE",
                workload(version, kind, good_spec.clone()),
            ),
            true,
            &[],
        ));
    }
    // A Deployment whose template names another service account is none of the guard's business.
    let other =
        json!({"serviceAccountName": "default", "containers": [{"name": "x", "image": "busybox"}]});
    cases.push(own(
        "deployment_other_sa",
        review(
            "v1",
            "apps",
            "Deployment",
            "deployments",
            "CREATE",
            workload("apps/v1", "Deployment", other),
        ),
        true,
        &[],
    ));

    // Commands.
    cases.push(pod_case(
        "command_override_denied",
        json!([{"name": "m", "image": "dev/backup", "command": ["/bin/sh", "-c", "id"]}]),
        false,
        &["\"m\"", "/bin/sh", "entrypoint"],
    ));
    cases.push(pod_case(
        "command_is_the_entrypoint",
        json!([{"name": "m", "image": "dev/backup", "command": ["/pvc-backup", "mover", "sync"]}]),
        true,
        &[],
    ));
    cases.push(pod_case(
        "empty_command",
        json!([{"name": "m", "image": "dev/backup", "command": []}]),
        true,
        &[],
    ));

    // Privileges.
    cases.push(pod_case(
        "privileged_denied",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {"privileged": true}}]),
        false,
        &["\"m\"", "privileged"],
    ));
    cases.push(pod_case(
        "not_privileged",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {"privileged": false,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "CAP_SETUID", "SETGID"]}}}]),
        true,
        &[],
    ));
    cases.push(pod_case(
        "extra_capability_denied",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {
            "capabilities": {"add": ["CHOWN", "SYS_ADMIN", "NET_RAW"]}}}]),
        false,
        &["\"SYS_ADMIN\"", "\"NET_RAW\""],
    ));
    cases.push(pod_case(
        "capability_all_denied",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {"capabilities": {"add": ["ALL"]}}}]),
        false,
        &["\"ALL\""],
    ));
    cases.push(pod_case(
        "lower_case_capability_denied",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {"capabilities": {"add": ["sys_admin"]}}}]),
        false,
        &["\"sys_admin\""],
    ));
    cases.push(pod_case(
        "windows_host_process_denied",
        json!([{"name": "m", "image": "dev/backup", "securityContext": {"windowsOptions": {"hostProcess": true}}}]),
        false,
        &["hostProcess"],
    ));
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        cases.push(pod_spec_case(
            &format!("{field}_denied"),
            json!({"serviceAccountName": SA, "containers": [mover("m")], field: true}),
            false,
            &[field],
        ));
        cases.push(pod_spec_case(
            &format!("{field}_false_allowed"),
            json!({"serviceAccountName": SA, "containers": [mover("m")], field: false}),
            true,
            &[],
        ));
    }
    cases.push(pod_spec_case(
        "host_path_denied",
        json!({"serviceAccountName": SA, "containers": [mover("m")], "volumes": [
            {"name": "source", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "root", "hostPath": {"path": "/"}}]}),
        false,
        &["volume \"root\"", "hostPath"],
    ));
    cases.push(pod_spec_case(
        "claims_allowed",
        json!({"serviceAccountName": SA, "containers": [mover("m")], "volumes": [
            {"name": "source", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
            {"name": "backup", "persistentVolumeClaim": {"claimName": "data-backup"}}]}),
        true,
        &[],
    ));
    cases.push(pod_spec_case(
        "everything_named",
        json!({"serviceAccount": SA, "hostPID": true,
            "initContainers": [{"name": "init", "image": "alpine", "securityContext": {"privileged": true}}],
            "containers": [mover("m"), {"name": "side", "image": "nginx", "command": ["nginx"]}],
            "volumes": [{"name": "h", "hostPath": {"path": "/var/run"}}]}),
        false,
        &["init container \"init\"", "container \"side\"", "hostPID", "volume \"h\"", "privileged", "nginx"],
    ));
    cases.push(pod_case(
        "no_image_denied",
        json!([{"name": "m"}]),
        false,
        &["no image"],
    ));

    // Digests and spellings.
    let d = digest('a');
    let e = digest('e');
    for (name, image, allowed) in [
        (
            "digest_pinned",
            format!("registry.example.com:5000/mover@{d}"),
            true,
        ),
        (
            "digest_with_tag",
            format!("registry.example.com:5000/mover:v9@{d}"),
            true,
        ),
        (
            "digest_other",
            format!("registry.example.com:5000/mover@{e}"),
            false,
        ),
        (
            "digest_other_repository",
            format!("registry.example.com:5000/evil@{d}"),
            false,
        ),
        (
            "tag_rule_ignores_digest",
            format!("dev/backup:latest@{e}"),
            false,
        ),
        (
            "docker_io_spelling",
            "docker.io/dev/backup:latest".to_owned(),
            true,
        ),
        (
            "index_docker_io_spelling",
            "index.docker.io/dev/backup".to_owned(),
            true,
        ),
        ("other_tag", "dev/backup:v2".to_owned(), false),
        (
            "prefix_below",
            "quay.io/pvc-backup/mover:1.2".to_owned(),
            true,
        ),
        (
            "prefix_deeper",
            "quay.io/pvc-backup/a/b@".to_owned() + &d,
            true,
        ),
        (
            "prefix_is_not_below_itself",
            "quay.io/pvc-backup".to_owned(),
            false,
        ),
        (
            "prefix_string_bypass",
            "quay.io/pvc-backupevil/shell".to_owned(),
            false,
        ),
        (
            "prefix_other_registry",
            "quay.io.evil.com/pvc-backup/mover".to_owned(),
            false,
        ),
        (
            "repository_any_tag",
            "ghcr.io/pvc-backup/pvc-backup:0.1.0".to_owned(),
            true,
        ),
        (
            "repository_digest",
            format!("ghcr.io/pvc-backup/pvc-backup@{e}"),
            true,
        ),
        (
            "repository_sub_path",
            "ghcr.io/pvc-backup/pvc-backup/x:1".to_owned(),
            false,
        ),
        (
            "upper_case_is_a_registry",
            "Dev/backup:latest".to_owned(),
            false,
        ),
        (
            "upper_case_path_invalid",
            "dev/Backup:latest".to_owned(),
            false,
        ),
        ("trailing_space", "dev/backup:latest ".to_owned(), false),
        ("empty_image", String::new(), false),
    ] {
        let must: Vec<&str> = if allowed {
            vec![]
        } else {
            vec!["\"m\"", "is not allowed"]
        };
        cases.push(pod_case(
            &format!("image_{name}"),
            json!([{"name": "m", "image": image}]),
            allowed,
            &must,
        ));
    }
    // generateName shows in the message when there is no name yet.
    let mut unnamed = pod(bad);
    unnamed["metadata"] = json!({"generateName": "backup-", "namespace": "shop"});
    cases.push(own(
        "generate_name",
        review("v1", "", "Pod", "pods", "CREATE", unnamed),
        false,
        &["Pod \"backup-\""],
    ));
    cases
}

/// Every case: the public fixtures and the ones written here.
pub fn all_cases() -> Vec<Case> {
    let mut cases = fixture_cases();
    cases.extend(own_cases());
    cases
}
