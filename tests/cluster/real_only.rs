//! What only a real API server can judge, so these run only with `PVC_BACKUP_TEST_CLUSTER=real`
//! (elsewhere they print why they skip): RBAC with the roles `manifests` documents, Pod
//! Security, the ValidatingAdmissionPolicy and the webhook, server-side validation of every
//! object pvc-backup ships, the pvc-backup.io resources' definitions (schema and CEL rules, their
//! cron rule held against the CronJob's validation), a schedule fired by the real CronJob
//! controller, and the operator carrying out each kind (real_only/operator.rs). Verdicts are the
//! API server's own (its 403s, `kubectl auth can-i`), data is judged on the host with rsync.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};
use testcluster::fake::ClaimOptions;
use testcluster::real::Settings;

mod migrate;
mod operator;
mod repository;
mod route;

use crate::util::{
    Cluster, assert_holds, assert_latest_snapshot_holds, claim_with_data, cluster,
    deployment_using, expect_code, run,
};

/// A real cluster's namespace, or `None` after printing why the test skips (a failure under
/// CI=true; scripts/test.sh runs these only against the local cluster).
fn real(test: &str) -> Option<Cluster> {
    if Settings::from_env().is_none() {
        testkit::skip::skip(
            test,
            "needs a real cluster: `scripts/local-cluster.sh up`, `eval \"$(scripts/local-cluster.sh \
             env)\"` and PVC_BACKUP_TEST_CLUSTER=real",
        );
        return None;
    }
    Some(cluster())
}

/// Runs kubectl (the one `scripts/local-cluster.sh env` puts first on PATH) as the admin of the
/// test's namespace, with `stdin`.
fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write to kubectl");
    }
    child.wait_with_output().expect("kubectl ends")
}

/// `kubectl apply -f -` of `yaml`, which must succeed. Tests running at once apply the same
/// ClusterRoles: one whose create lost that race applies again, then finds them there.
fn apply(c: &Cluster, yaml: &[u8]) {
    let mut out = kubectl(c, &["apply", "-f", "-"], Some(yaml));
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("AlreadyExists") {
        out = kubectl(c, &["apply", "-f", "-"], Some(yaml));
    }
    expect_code(&out, 0);
}

/// What `pvc-backup manifests ARGS` prints, for the test's namespace and image.
fn manifests(c: &Cluster, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .arg("manifests")
        .args(["--backup-namespace", c.ns(), "--image", &c.image()])
        .args(args)
        .output()
        .expect("run pvc-backup manifests");
    expect_code(&out, 0);
    out.stdout
}

/// Cluster-scoped objects a test makes (bindings, policies): deleted when the test ends,
/// whatever happened, since the namespace's deletion does not take them.
struct ClusterScoped<'a> {
    c: &'a Cluster,
    objects: Vec<String>,
}

impl Drop for ClusterScoped<'_> {
    fn drop(&mut self) {
        for o in &self.objects {
            let _ = kubectl(
                self.c,
                &["delete", "--ignore-not-found", "--wait=false", o],
                None,
            );
        }
    }
}

/// A kubeconfig for service account `sa` of the test's namespace: a TokenRequest token, the
/// admin kubeconfig's server and CA, the namespace as the context's.
fn kubeconfig_of(c: &Cluster, sa: &str) -> tempfile::TempPath {
    let out = kubectl(c, &["create", "token", sa, "--duration", "1h"], None);
    expect_code(&out, 0);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let admin: Value =
        serde_json::from_slice(&std::fs::read(c.kubeconfig()).unwrap()).expect("JSON kubeconfig");
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa, "namespace": c.ns()}}],
        "current-context": sa});
    let file = tempfile::Builder::new()
        .prefix("pvcb-sa-kubeconfig-")
        .tempfile()
        .unwrap();
    serde_json::to_writer(&file, &config).unwrap();
    file.into_temp_path()
}

/// Runs the binary with another kubeconfig.
fn run_with(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
        .output()
        .expect("run pvc-backup")
}

/// A service account `name` bound in the test's namespace to the ClusterRole pvc-backup-operator
/// and cluster-wide to pvc-backup-volumes, as docs/install.md says to grant them.
fn person<'a>(c: &'a Cluster, name: &str) -> (tempfile::TempPath, ClusterScoped<'a>) {
    let ns = c.ns();
    let binding = format!("pvc-backup-volumes-{ns}-{name}");
    apply(
        c,
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": format!("pvc-backup-operator-{name}"), "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pvc-backup-operator"},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": binding},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pvc-backup-volumes"},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}]})
        .to_string()
        .as_bytes(),
    );
    let guard = ClusterScoped {
        c,
        objects: vec![format!("clusterrolebinding/{binding}")],
    };
    (kubeconfig_of(c, name), guard)
}

#[test]
fn every_workflow_runs_with_only_the_roles_manifests_documents() {
    let Some(c) = real("documented_roles") else {
        return;
    };
    apply(&c, &manifests(&c, &[]));
    let (alice, _bindings) = person(&c, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    let as_alice = |args: &[&str]| {
        let out = run_with(&c, &alice, args);
        expect_code(&out, 0);
        out
    };

    as_alice(&["backup", "data", "--keep-last", "3"]);
    assert_latest_snapshot_holds(&c, "data-backup", &src);
    as_alice(&["clone", "data", "--to", "copy", "--method", "copy"]);
    assert_holds(&c, "copy", &src);
    let (_keep, reference) = crate::util::reference_copy(&src);
    std::fs::write(src.join("a.txt"), b"damaged\n").unwrap();
    as_alice(&["restore", "data", "--from", "data-backup"]);
    assert_holds(&c, "data", &reference);
    as_alice(&["schedule", "data", "--cron", "0 3 * * *"]);
    as_alice(&["schedules"]);
    as_alice(&["unschedule", "data"]);
    as_alice(&["list"]);
    as_alice(&["migrate", "data", "--storage-class", "other"]);
    let claim: PersistentVolumeClaim = c.get(c.ns(), "data-other").expect("the new claim");
    assert_eq!(
        claim.spec.unwrap().storage_class_name.as_deref(),
        Some("other")
    );
    assert_holds(&c, "data-other", &reference);
    as_alice(&["migrate", "--rollback", "data"]);
}

#[test]
fn one_missing_permission_stops_the_cli_before_it_changes_anything() {
    let Some(c) = real("missing_permission") else {
        return;
    };
    apply(&c, &manifests(&c, &[]));
    claim_with_data(&c, "data", ClaimOptions::default());
    // The documented role, less one verb: creating Jobs.
    let mut role = serde_json::to_value(cluster::install::operator_cluster_role()).unwrap();
    let mut rules = Vec::new();
    for mut r in role["rules"].as_array().unwrap().clone() {
        if r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "jobs")
        {
            let mut cron = r.clone();
            cron["resources"] = json!(["cronjobs"]);
            rules.push(cron);
            r["resources"] = json!(["jobs"]);
            r["verbs"] = json!(
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|v| *v != "create")
                    .collect::<Vec<_>>()
            );
        }
        rules.push(r);
    }
    role["rules"] = json!(rules);
    role["kind"] = json!("Role");
    role["metadata"] = json!({"name": "almost", "namespace": c.ns()});
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "List", "items": [role,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bob", "namespace": c.ns()}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "almost-bob", "namespace": c.ns()},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "almost"},
             "subjects": [{"kind": "ServiceAccount", "name": "bob", "namespace": c.ns()}]}]})
        .to_string()
        .as_bytes(),
    );
    let bob = kubeconfig_of(&c, "bob");
    let out = run_with(&c, &bob, &["backup", "data"]);
    expect_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("you may not create jobs.batch in namespace")
            && err.contains("pvc-backup-operator"),
        "{err}"
    );
    // Nothing was made: the API server holds no backup claim and no Job.
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-backup")
            .is_none()
    );
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
}

#[test]
fn the_movers_service_account_may_do_nothing_in_the_api() {
    let Some(c) = real("mover_account") else {
        return;
    };
    apply(&c, &manifests(&c, &[]));
    let who = format!("system:serviceaccount:{}:pvc-backup-deployer", c.ns());
    for (verb, resource) in [
        ("get", "pods"),
        ("list", "pods"),
        ("create", "pods"),
        ("get", "secrets"),
        ("list", "configmaps"),
        ("get", "persistentvolumeclaims"),
        ("create", "jobs.batch"),
        ("patch", "deployments.apps"),
        ("create", "serviceaccounts/token"),
        ("get", "nodes"),
        ("list", "persistentvolumes"),
        (
            "use",
            "securitycontextconstraints.security.openshift.io/privileged",
        ),
    ] {
        let out = kubectl(&c, &["auth", "can-i", verb, resource, "--as", &who], None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(answer, "no", "{who} may {verb} {resource}");
    }
}

/// Sets the namespace's Pod Security `enforce` level.
fn enforce(c: &Cluster, level: &str) {
    let out = kubectl(
        c,
        &[
            "label",
            "--overwrite",
            "namespace",
            c.ns(),
            &format!("pod-security.kubernetes.io/enforce={level}"),
        ],
        None,
    );
    expect_code(&out, 0);
}

#[test]
fn pod_security_admits_the_mover_under_baseline_and_the_unprivileged_one_under_restricted() {
    let Some(c) = real("pod_security") else {
        return;
    };
    apply(&c, &manifests(&c, &[]));
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    enforce(&c, "baseline");
    let out = run(&c, &["backup", "data"]);
    expect_code(&out, 0);
    assert_latest_snapshot_holds(&c, "data-backup", &src);

    enforce(&c, "restricted");
    // Refused at once with the way out named, not after --start-timeout.
    let out = run(&c, &["backup", "data", "--start-timeout", "600"]);
    expect_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pod-security.kubernetes.io/enforce=restricted")
            && err.contains("--unprivileged"),
        "{err}"
    );
    // An unprivileged mover reads what anyone may read: a claim of such files is copied whole.
    let open = c
        .add_bound_claim(c.ns(), "open", ClaimOptions::default())
        .unwrap();
    testkit::tree::Tree::new(&open)
        .file(b"readme", b"for everyone\n")
        .file(b"docs/a", &[3u8; 10_000])
        .mode(b"docs/a", 0o644);
    // Without capabilities the mover writes only where its user may: a freshly provisioned
    // volume's root is root's, and the mover says so and stops.
    let out = run(
        &c,
        &["backup", "open", "--unprivileged", "--to", "open-denied"],
    );
    expect_code(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/backup") && err.contains("Permission denied"),
        "{err}"
    );
    // A target whose root belongs to the image's user (as an administrator or the volume's
    // fsGroup hands it over) takes the copy.
    let target = c
        .add_bound_claim(c.ns(), "open-backup", ClaimOptions::default())
        .unwrap();
    std::os::unix::fs::chown(&target, Some(65532), Some(65532)).unwrap();
    let out = run(&c, &["backup", "open", "--unprivileged"]);
    expect_code(&out, 0);
    let dir = c.volume_dir(c.ns(), "open-backup").unwrap();
    let snap = crate::util::latest_snapshot(&dir);
    assert_eq!(
        std::fs::read(snap.join("readme")).unwrap(),
        b"for everyone\n"
    );
    assert_eq!(std::fs::read(snap.join("docs/a")).unwrap(), [3u8; 10_000]);
}

/// A pod under the guarded service account, as JSON.
fn guarded_pod(c: &Cluster, name: &str, image: &str, command: Option<&[&str]>) -> Value {
    let mut ctr = json!({"name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["mover", "check", "/"]});
    if let Some(cmd) = command {
        ctr["command"] = json!(cmd);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": c.ns()},
        "spec": {"serviceAccountName": "pvc-backup-deployer", "restartPolicy": "Never",
            "automountServiceAccountToken": false, "containers": [ctr]}})
}

/// Asserts that the API server refuses `obj` with a 403 whose message names the guard.
fn refused(c: &Cluster, obj: Value, what: &str) {
    match c.create_value(obj) {
        Ok(_) => panic!("{what} was admitted"),
        Err(e) => assert!(
            e.code == 403 && e.message.contains("only the pvc-backup mover may use"),
            "{what}: {e}"
        ),
    }
}

/// The checks both guards must pass: the mover admitted (a real backup runs), and the API
/// server's own 403 for another image, a changed command, an ephemeral container and a
/// Deployment whose template breaks the policy.
fn guard_holds(c: &Cluster) {
    // A policy or webhook takes a moment to be in force: wait until busybox-like pods are refused.
    let ready = c.wait_for(Duration::from_secs(60), |c| {
        let probe = guarded_pod(c, "probe", &c.app_image(), Some(&["sh"]));
        match c.create_value(probe) {
            Ok(_) => {
                let _ = kubectl(c, &["delete", "pod", "probe", "--wait=false"], None);
                false
            }
            Err(e) => e.code == 403,
        }
    });
    assert!(ready, "the guard never came into force");
    let src = claim_with_data(c, "data", ClaimOptions::default());
    let out = run(c, &["backup", "data"]);
    expect_code(&out, 0);
    assert_latest_snapshot_holds(c, "data-backup", &src);

    refused(
        c,
        guarded_pod(c, "tools", &c.app_image(), None),
        "another image",
    );
    refused(
        c,
        guarded_pod(c, "shell", &c.image(), Some(&["/bin/sh"])),
        "the mover image with another command",
    );
    refused(
        c,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sneaky", "namespace": c.ns()},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sneaky"}},
                "template": {"metadata": {"labels": {"app": "sneaky"}},
                    "spec": {"serviceAccountName": "pvc-backup-deployer",
                        "containers": [{"name": "c", "image": c.app_image()}]}}}}),
        "a Deployment whose template breaks the policy",
    );
    // An ephemeral container added to an admitted mover pod.
    c.create_value(guarded_pod(c, "mover", &c.image(), None))
        .expect("the mover's own pod is admitted");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(c.client(), c.ns());
        let patch = json!({"spec": {"ephemeralContainers": [{"name": "debug",
            "image": c.app_image(), "command": ["sh"], "stdin": true, "tty": true}]}});
        api.patch_ephemeral_containers(
            "mover",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
    });
    match result {
        Ok(_) => panic!("an ephemeral container was added to a guarded pod"),
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403 && s.message.contains("only the pvc-backup mover may use"),
            "{s:?}"
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_admission_policy_admits_the_mover_and_refuses_the_rest_with_the_api_servers_403() {
    let Some(c) = real("admission_policy") else {
        return;
    };
    // The webhook's test labels its namespace too: one of the two at a time.
    let _alone = c.alone_with("admission");
    let yaml = manifests(&c, &["--admission-policy"]);
    apply(&c, &yaml);
    let _policy = ClusterScoped {
        c: &c,
        objects: vec![
            "validatingadmissionpolicy/pvc-backup-deployer-guard".into(),
            "validatingadmissionpolicybinding/pvc-backup-deployer-guard".into(),
        ],
    };
    let out = kubectl(
        &c,
        &["label", "namespace", c.ns(), "denysabck=enabled"],
        None,
    );
    expect_code(&out, 0);
    guard_holds(&c);
}

#[test]
fn the_webhook_served_by_our_image_admits_the_mover_refuses_the_rest_and_fails_closed() {
    let Some(c) = real("webhook") else {
        return;
    };
    // The policy's test labels its namespace too: one of the two at a time.
    let _alone = c.alone_with("admission");
    let webhook_ns = format!("{}-webhook", c.ns());
    // A CA and the webhook's certificate, made here as a person without cert-manager would.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        expect_code(&out, 0);
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    let host = format!("pvc-backup-webhook.{webhook_ns}.svc");
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={host}"),
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(d.join("ext"), format!("subjectAltName=DNS:{host}\n")).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "tls.crt",
    ]);
    let yaml = manifests(
        &c,
        &[
            "--webhook",
            "--namespace",
            &webhook_ns,
            "--ca-bundle",
            d.join("ca.crt").to_str().unwrap(),
        ],
    );
    let _objects = ClusterScoped {
        c: &c,
        objects: vec![
            format!("namespace/{webhook_ns}"),
            "validatingwebhookconfiguration/pvc-backup-deployer-guard".into(),
        ],
    };
    // The namespace first, then its Secret, then the rest.
    let out = kubectl(&c, &["create", "namespace", &webhook_ns], None);
    expect_code(&out, 0);
    let out = kubectl(
        &c,
        &[
            "-n",
            &webhook_ns,
            "create",
            "secret",
            "tls",
            "pvc-backup-webhook-tls",
            "--cert",
            d.join("tls.crt").to_str().unwrap(),
            "--key",
            d.join("tls.key").to_str().unwrap(),
        ],
        None,
    );
    expect_code(&out, 0);
    apply(&c, &yaml);
    let out = kubectl(
        &c,
        &[
            "-n",
            &webhook_ns,
            "rollout",
            "status",
            "deployment/pvc-backup-webhook",
            "--timeout",
            "180s",
        ],
        None,
    );
    expect_code(&out, 0);
    let out = kubectl(
        &c,
        &["label", "namespace", c.ns(), "denysabck=enabled"],
        None,
    );
    expect_code(&out, 0);
    guard_holds(&c);

    // With the webhook gone and failurePolicy Fail, nothing under the account is admitted.
    let out = kubectl(
        &c,
        &[
            "-n",
            &webhook_ns,
            "scale",
            "deployment/pvc-backup-webhook",
            "--replicas",
            "0",
        ],
        None,
    );
    expect_code(&out, 0);
    let closed = c.wait_for(Duration::from_secs(90), |c| {
        match c.create_value(guarded_pod(c, "when-down", &c.image(), None)) {
            Ok(_) => {
                let _ = kubectl(c, &["delete", "pod", "when-down", "--wait=false"], None);
                false
            }
            Err(e) => e.message.contains("failed calling webhook"),
        }
    });
    assert!(closed, "a pod was admitted while the webhook was down");
}

#[test]
fn every_object_pvc_backup_ships_is_accepted_by_the_api_servers_dry_run() {
    let Some(c) = real("server_dry_run") else {
        return;
    };
    let dry = |what: &str, yaml: &[u8]| {
        let out = kubectl(&c, &["apply", "--dry-run=server", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "{what} was refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // One CA certificate, as a person would pass (a whole system bundle would not fit the
    // annotation `kubectl apply` keeps).
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=dry-run-ca", "-keyout"])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    expect_code(&out, 0);
    let ca = ca.to_str().unwrap().to_owned();
    // The webhook's namespace comes in the same stream, and a dry run does not create it: the
    // objects in it are judged with it existing.
    let webhook_ns = format!("{}-webhook", c.ns());
    let _objects = ClusterScoped {
        c: &c,
        objects: vec![format!("namespace/{webhook_ns}")],
    };
    expect_code(&kubectl(&c, &["create", "namespace", &webhook_ns], None), 0);
    for args in [
        vec![],
        vec!["--openshift"],
        vec!["--admission-policy"],
        vec!["--admission-policy", "--all-namespaces"],
        vec!["--webhook", "--namespace", &webhook_ns, "--ca-bundle", &ca],
        vec!["--openshift", "--webhook", "--namespace", &webhook_ns],
        vec!["--openshift", "--admission-policy"],
        vec!["--operator", "--namespace", &webhook_ns],
        vec!["--openshift", "--operator", "--namespace", &webhook_ns],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
            .arg("manifests")
            .args(&args)
            .output()
            .unwrap();
        expect_code(&out, 0);
        dry(&format!("manifests {}", args.join(" ")), &out.stdout);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for base in [
        "deploy/kustomize/mover",
        "deploy/kustomize/openshift",
        "deploy/kustomize/operator",
    ] {
        let out = kubectl(&c, &["kustomize", root.join(base).to_str().unwrap()], None);
        expect_code(&out, 0);
        // The OpenShift and operator bases' objects live in `pvc-backup`; here they go to the
        // test's webhook namespace, as `kustomize edit set namespace` would put them.
        let yaml = String::from_utf8(out.stdout).unwrap().replace(
            "namespace: pvc-backup\n",
            &format!("namespace: {webhook_ns}\n"),
        );
        dry(base, yaml.as_bytes());
    }
    // The OpenShift templates' objects, with their parameters filled in as `oc process` would.
    for t in [
        "backup-block",
        "backup-shared",
        "backup-block-scheduled",
        "backup-shared-scheduled",
        "verify-backup",
    ] {
        let path = root.join(format!("deploy/openshift/{t}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let template: Value = serde_saphyr::from_str(&text).expect("a template");
        let mut objects = serde_json::to_string(&template["objects"]).unwrap();
        for p in template["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let value = match name {
                "PVC_NAME" => "data",
                "PVC_BCK" => "data-backup",
                "NODE" => "pvcb-node",
                _ => p["value"].as_str().unwrap_or("x"),
            };
            objects = objects.replace(&format!("${{{name}}}"), value);
        }
        let list = json!({"apiVersion": "v1", "kind": "List",
            "items": serde_json::from_str::<Value>(&objects).unwrap()});
        dry(t, list.to_string().as_bytes());
    }
}

#[test]
fn a_copy_into_another_namespace_holds_the_whole_tree_and_leaves_no_keys_behind() {
    // Two movers joined through a Service: the fake cluster runs no network between pods.
    let Some(c) = real("across_namespaces") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    // Someone with the documented role in both namespaces, and nothing more.
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());

    let out = run_with(
        &c,
        &alice,
        &[
            "clone",
            "data",
            "--to",
            "data",
            "--to-namespace",
            lab.ns(),
            "-o",
            "json",
        ],
    );
    expect_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["namespace"], lab.ns(), "{report:#}");
    assert_eq!(report["createdClaims"], json!(["data"]), "{report:#}");
    let summary = &report["summaries"][0];
    assert_eq!(summary["command"], "receive", "{report:#}");
    assert!(summary["entries"]["total"].as_u64() > Some(5), "{report:#}");
    assert_holds(&lab, "data", &src);
    let copy: PersistentVolumeClaim = lab.get(lab.ns(), "data").expect("the copy");
    let labels = copy.metadata.labels.unwrap_or_default();
    assert_eq!(labels["pvc-backup.io/source-namespace"], c.ns());
    let last: Value = serde_json::from_str(
        &copy.metadata.annotations.unwrap_or_default()["pvc-backup.io/last-run"],
    )
    .unwrap();
    assert_eq!(last["result"], "ok", "{last}");

    // The keys, the Service and both movers are gone from both namespaces.
    assert_no_transfer_left(&c, &lab);

    // A second run brings the copy up to date, sending only what changed.
    std::fs::write(src.join("a.txt"), b"changed\n").unwrap();
    let again = run_json_with(
        &c,
        &alice,
        &[
            "clone",
            "data",
            "--to",
            "data",
            "--to-namespace",
            lab.ns(),
            "-o",
            "json",
        ],
    );
    assert_eq!(again["createdClaims"], json!([]), "{again:#}");
    assert_eq!(
        again["summaries"][0]["bytes"]["copied"],
        b"changed\n".len(),
        "{again:#}"
    );
    assert_holds(&lab, "data", &src);
}

#[test]
fn a_backup_into_another_namespace_adds_snapshots_there_that_link_what_did_not_change() {
    // Two movers joined through a Service: the fake cluster runs no network between pods.
    let Some(c) = real("backup_across_namespaces") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let backup = |keep: &str| {
        run_json_with(
            &c,
            &alice,
            &[
                "backup",
                "data",
                "--to-namespace",
                lab.ns(),
                "--keep-last",
                keep,
                "-o",
                "json",
            ],
        )
    };
    // The snapshot a run made, from its report, and its folder in the backup claim's volume.
    let snapshot = |report: &Value| -> (String, std::path::PathBuf) {
        let id = report["summary"]["snapshot"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot in {report:#}"))
            .to_owned();
        let volume = lab
            .volume_dir(lab.ns(), "data-backup")
            .expect("the backup claim has a volume");
        let dir = volume.join("snapshots").join(&id);
        (id, dir)
    };
    let same = |reference: &Path, dir: &Path| {
        let diff = testkit::oracle::rsync_itemize(reference, dir, &[]);
        assert!(diff.is_empty(), "{} differs: {diff:#?}", dir.display());
    };

    let first = backup("2");
    assert_eq!(first["exitCode"], 0, "{first:#}");
    assert_eq!(first["namespace"], lab.ns(), "{first:#}");
    assert_eq!(first["target"], "data-backup", "{first:#}");
    assert_eq!(first["createdClaim"], true, "{first:#}");
    let (id1, snap1) = snapshot(&first);
    same(&src, &snap1);
    let volume = snap1.parent().unwrap().parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::read_link(volume.join("latest")).unwrap(),
        Path::new("snapshots").join(&id1)
    );
    let claim: PersistentVolumeClaim = lab.get(lab.ns(), "data-backup").expect("the backup claim");
    let labels = claim.metadata.labels.unwrap_or_default();
    assert_eq!(labels["pvc-backup.io/role"], "backup");
    assert_eq!(labels["pvc-backup.io/source-namespace"], c.ns());
    let last: Value = serde_json::from_str(
        &claim.metadata.annotations.unwrap_or_default()["pvc-backup.io/last-run"],
    )
    .unwrap();
    assert_eq!(last["snapshot"], id1.as_str(), "{last}");
    assert_no_transfer_left(&c, &lab);

    // One file changes: only it crosses, the rest is linked from the first snapshot.
    use std::os::unix::fs::MetadataExt as _;
    let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
    std::fs::write(src.join("sub/b.bin"), [8u8; 100_000]).unwrap();
    let second = backup("2");
    assert_eq!(second["exitCode"], 0, "{second:#}");
    assert_eq!(second["createdClaim"], false, "{second:#}");
    assert_eq!(second["summary"]["previous"], id1.as_str(), "{second:#}");
    assert_eq!(
        second["summary"]["summary"]["bytes"]["copied"], 100_000,
        "{second:#}"
    );
    let (_, snap2) = snapshot(&second);
    same(&src, &snap2);
    assert_eq!(ino(&snap1.join("a.txt")), ino(&snap2.join("a.txt")));
    assert_ne!(ino(&snap1.join("sub/b.bin")), ino(&snap2.join("sub/b.bin")));

    // Nothing changes, one snapshot is kept: the two before go.
    let third = backup("1");
    assert_eq!(third["exitCode"], 0, "{third:#}");
    assert_eq!(
        third["summary"]["summary"]["bytes"]["copied"], 0,
        "{third:#}"
    );
    let removed = third["summary"]["removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(removed.len(), 2, "{third:#}");
    let (_, snap3) = snapshot(&third);
    same(&src, &snap3);
    assert!(!snap1.exists() && !snap2.exists());
    assert_no_transfer_left(&c, &lab);
}

#[test]
fn a_block_claim_is_copied_into_another_namespace_chunk_by_chunk() {
    // Block claims are loop devices here, which the fake cluster does not give its movers.
    let Some(c) = real("block_across_namespaces") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let (image, copy) = block_claim_and_copy(&c, &lab);
    // cmp(1) judges the copy's volume against the source's, byte for byte.
    let same = |a: &std::path::Path, b: &std::path::Path| {
        let out = Command::new("cmp").arg(a).arg(b).output().expect("run cmp");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let clone = [
        "clone",
        "disk",
        "--to",
        "disk",
        "--to-namespace",
        lab.ns(),
        "-o",
        "json",
    ];
    let first = run_json_with(&c, &alice, &clone);
    assert_eq!(first["createdClaims"], json!(["disk"]), "{first:#}");
    let summary = &first["summaries"][0];
    // 16 chunks of 4 MiB: the pattern (10 to 13 MiB) spans chunks 2 and 3, the end chunk 15;
    // the stale megabyte of chunk 5 is zeroed.
    assert_eq!(summary["chunks"], 16, "{first:#}");
    assert_eq!(summary["chunks_written"], 3, "{first:#}");
    assert_eq!(summary["chunks_zeroed"], 1, "{first:#}");
    same(&image, &copy);
    let claim: PersistentVolumeClaim = lab.get(lab.ns(), "disk").expect("the copy");
    let spec = claim.spec.unwrap_or_default();
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    assert_no_transfer_left(&c, &lab);

    // Run again after one block of the source changed: one chunk crosses the wire.
    write_at(&image, (40 << 20) + 4096, b"changed");
    let again = run_json_with(&c, &alice, &clone);
    assert_eq!(again["createdClaims"], json!([]), "{again:#}");
    let summary = &again["summaries"][0];
    assert_eq!(summary["chunks_written"], 1, "{again:#}");
    assert_eq!(summary["chunks_equal"], 15, "{again:#}");
    same(&image, &copy);
}

#[test]
fn a_copy_through_this_machine_joins_two_port_forwards_again_and_leaves_nothing_behind() {
    // The API server and the kubelet carry the port-forwards; the fake cluster has neither.
    let Some(c) = real("via_local") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    // The documented role in both namespaces, and nothing more: it grants pods/portforward.
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let args = [
        "clone",
        "data",
        "--to",
        "data",
        "--to-namespace",
        lab.ns(),
        "--via",
        "local",
        "-o",
        "json",
    ];
    let out = run_with(&c, &alice, &args);
    expect_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["address"], "local", "{report:#}");
    assert_eq!(report["createdClaims"], json!(["data"]), "{report:#}");
    let err = String::from_utf8_lossy(&out.stderr);
    // The sender listened too: no mover dialled the other.
    assert!(
        err.contains("mover send: listening on 0.0.0.0:7443"),
        "{err}"
    );
    assert_holds(&lab, "data", &src);
    assert_no_transfer_left(&c, &lab);
    // A second run sends only what changed.
    std::fs::write(src.join("a.txt"), b"changed\n").unwrap();
    let again = run_json_with(&c, &alice, &args);
    assert_eq!(
        again["summaries"][0]["bytes"]["copied"],
        b"changed\n".len(),
        "{again:#}"
    );
    assert_holds(&lab, "data", &src);

    // A port-forward cut in the middle of a large file: the command joins the movers again,
    // and they go on from where they were.
    let mut big = std::fs::File::create(src.join("big.bin")).unwrap();
    std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 384 << 20),
        &mut big,
    )
    .unwrap();
    drop(big);
    let child = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(&args[..args.len() - 2])
        .arg("--kubeconfig")
        .arg(&alice)
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pvc-backup");
    let copy = lab.volume_dir(lab.ns(), "data").expect("the copy's folder");
    let part = || {
        std::fs::read_dir(&copy).ok()?.find_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".pvcb-part.")
                .then(|| e.metadata().map(|m| m.len()).unwrap_or(0))
        })
    };
    let arrived = c.wait_for(Duration::from_secs(120), |_| {
        part().is_some_and(|n| n >= 32 << 20)
    });
    assert!(
        arrived,
        "the large file did not start arriving: {:?}",
        part()
    );
    let cut = cut_bulk_connections(child.id());
    assert!(
        !cut.is_empty(),
        "no connection of the command carried the file"
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("joined the movers again"), "{err}");
    eprintln!("cut the connections from local ports {cut:?}:\n{err}");
    assert_holds(&lab, "data", &src);
}

#[test]
fn a_copy_through_this_machine_into_another_cluster_port_forwards_with_each_sides_credentials() {
    // One API server plays both clusters, as above: the receiving mover's port-forward is
    // opened with the other kubeconfig's identity, bound in its own namespace only.
    let Some(c) = real("via_local_across_clusters") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    apply(&lab, &manifests(&lab, &[]));
    let (alice, _alices) = person(&c, "alice");
    let (bob, _bobs) = person(&lab, "bob");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let report = run_json_with(
        &c,
        &alice,
        &[
            "clone",
            "data",
            "--to",
            "data",
            "--to-kubeconfig",
            bob.to_str().unwrap(),
            "--via",
            "local",
            "-o",
            "json",
        ],
    );
    assert_eq!(report["namespace"], lab.ns(), "{report:#}");
    assert_eq!(report["address"], "local", "{report:#}");
    assert_holds(&lab, "data", &src);
    assert_no_transfer_left(&c, &lab);
}

/// Cuts (`ss -K`) the TCP connections of process `pid` that carried over 8 MiB either way: the
/// port-forwards of a copy through this machine, not its API requests. Their local ports.
fn cut_bulk_connections(pid: u32) -> Vec<String> {
    let ss = |args: &[&str]| {
        let o = Command::new("ss").args(args).output().expect("run ss");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let listing = ss(&["-tnpiH", "state", "established"]);
    let mut cut = Vec::new();
    let mut lines = listing.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.contains(&format!("pid={pid},")) {
            continue;
        }
        let Some(local) = line.split_whitespace().nth(2) else {
            continue;
        };
        let info = lines.peek().copied().unwrap_or_default();
        let bytes = |key: &str| -> u64 {
            info.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        if bytes("bytes_received:").max(bytes("bytes_acked:")) > 8 << 20 {
            let port = local.rsplit(':').next().unwrap_or_default().to_owned();
            ss(&["-K", "-tn", &format!("sport = :{port}")]);
            cut.push(port);
        }
    }
    cut
}

/// [`person`], also bound to the ClusterRole pvc-backup-operator in `other`'s namespace.
fn person_in_both<'a>(
    c: &'a Cluster,
    other: &Cluster,
    name: &str,
) -> (tempfile::TempPath, ClusterScoped<'a>) {
    let made = person(c, name);
    apply(
        c,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("pvc-backup-operator-{name}"), "namespace": other.ns()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pvc-backup-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": c.ns()}]})
        .to_string()
        .as_bytes(),
    );
    made
}

/// A Block claim `disk` of 64 MiB in the namespace of `c` (a loop device), with data in its
/// chunks 2, 3 and 15 (of 4 MiB), and a Block volume reserved for a claim `disk` in that of
/// `lab` (the provisioner here makes no Block volumes), holding a stale megabyte in chunk 5
/// where the source has zeros: the images behind both.
fn block_claim_and_copy(c: &Cluster, lab: &Cluster) -> (std::path::PathBuf, std::path::PathBuf) {
    let block = || ClaimOptions {
        size: "64Mi".into(),
        block: true,
        ..ClaimOptions::default()
    };
    let image = c
        .add_bound_claim(c.ns(), "disk", block())
        .expect("a Block claim");
    let copy = lab
        .add_volume_for(lab.ns(), "disk", block())
        .expect("a volume for the copy");
    let pattern: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    write_at(&image, 10 << 20, &pattern);
    write_at(&image, 60 << 20, b"the end of the source");
    write_at(&copy, 20 << 20, &[0xee; 1 << 20]);
    (image, copy)
}

/// Writes `data` into `file` at byte `at` and flushes it: the image file behind a loop device.
fn write_at(file: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// Waits (two minutes at most) until no Secret, Service, pod or Job of a transfer is left in the
/// namespace of `c` or that of `lab`, and fails with what is left otherwise.
fn assert_no_transfer_left(c: &Cluster, lab: &Cluster) {
    let gone = c.wait_for(Duration::from_secs(120), |c| {
        transfer_leftovers(c, c.ns()).is_empty() && transfer_leftovers(c, lab.ns()).is_empty()
    });
    assert!(
        gone,
        "left behind: {:?} {:?}",
        transfer_leftovers(c, c.ns()),
        transfer_leftovers(c, lab.ns())
    );
}

/// The Secrets, Services, pods (of a transfer) and Jobs left in namespace `ns`.
fn transfer_leftovers(c: &Cluster, ns: &str) -> Vec<String> {
    let ours = |l: Option<&std::collections::BTreeMap<String, String>>| {
        l.is_some_and(|l| l.contains_key("pvc-backup.io/transfer"))
    };
    let mut names = Vec::new();
    for s in c.list::<k8s_openapi::api::core::v1::Secret>(Some(ns)) {
        if ours(s.metadata.labels.as_ref()) {
            names.push(format!("secret/{}", s.metadata.name.unwrap_or_default()));
        }
    }
    for s in c.list::<k8s_openapi::api::core::v1::Service>(Some(ns)) {
        if ours(s.metadata.labels.as_ref()) {
            names.push(format!("service/{}", s.metadata.name.unwrap_or_default()));
        }
    }
    for p in c.list::<k8s_openapi::api::core::v1::Pod>(Some(ns)) {
        if ours(p.metadata.labels.as_ref()) {
            names.push(format!("pod/{}", p.metadata.name.unwrap_or_default()));
        }
    }
    for j in c.list::<Job>(Some(ns)) {
        names.push(format!("job/{}", j.metadata.name.unwrap_or_default()));
    }
    names
}

#[test]
fn a_copy_into_another_cluster_goes_through_a_node_port_then_a_load_balancer() {
    // One API server plays both clusters: each side is reached with its own kubeconfig and
    // credentials, and may act in its own namespace only.
    let Some(c) = real("across_clusters") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    apply(&lab, &manifests(&lab, &[]));
    let (alice, _alices) = person(&c, "alice");
    let (bob, _bobs) = person(&lab, "bob");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    // Alice alone may not make the receiving side.
    let refused = run_with(
        &c,
        &alice,
        &["clone", "data", "--to", "data", "--to-namespace", lab.ns()],
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refused.status.code() != Some(0) && why.contains("you may not") && why.contains(lab.ns()),
        "{why}"
    );
    let bob_file = bob.to_str().unwrap();

    // Into "the other cluster" (bob's kubeconfig, whose context names his namespace), through a
    // node port: the sending mover dials the receiving pod's node.
    let out = run_with(
        &c,
        &alice,
        &[
            "clone",
            "data",
            "--to",
            "data",
            "--to-kubeconfig",
            bob_file,
            "-o",
            "json",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    expect_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["namespace"], lab.ns(), "{report:#}");
    assert_eq!(report["createdClaims"], json!(["data"]), "{report:#}");
    let node_ip = {
        let o = kubectl(
            &c,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
            ],
            None,
        );
        expect_code(&o, 0);
        String::from_utf8(o.stdout).unwrap()
    };
    let dialled = report["address"].as_str().unwrap_or_default();
    let (host, port) = dialled
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no address in {report:#}\n{err}"));
    assert_eq!(host, node_ip, "{err}");
    assert!(
        (30000..=32767).contains(&port.trim().parse::<u32>().unwrap()),
        "{err}"
    );
    assert_holds(&lab, "data", &src);
    assert_no_transfer_left(&c, &lab);

    // Again through a LoadBalancer Service, with this test as the load balancer: it gives the
    // Service the node's address, as MetalLB would, and kube-proxy routes it.
    std::fs::write(src.join("a.txt"), b"changed again\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(["clone", "data", "--to", "data", "--to-kubeconfig", bob_file])
        .args(["--expose", "loadbalancer", "-o", "json", "--kubeconfig"])
        .arg(&alice)
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let balanced = lab.wait_for(Duration::from_secs(120), |lab| {
        let services = lab.list::<k8s_openapi::api::core::v1::Service>(Some(lab.ns()));
        let Some(svc) = services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        else {
            return false;
        };
        let name = svc.metadata.name.clone().unwrap();
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": node_ip}]}}});
        let o = kubectl(
            lab,
            &[
                "patch",
                "service",
                &name,
                "-n",
                lab.ns(),
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch.to_string(),
            ],
            None,
        );
        o.status.success()
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        balanced,
        "no LoadBalancer Service appeared: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    let again: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        again["address"],
        format!("{node_ip}:7443"),
        "{again:#}\n{err}"
    );
    assert_eq!(again["createdClaims"], json!([]), "{again:#}");
    assert_eq!(
        again["summaries"][0]["bytes"]["copied"],
        b"changed again\n".len(),
        "{again:#}"
    );
    assert_holds(&lab, "data", &src);
}

/// Runs the binary with another kubeconfig; it must succeed and print JSON.
fn run_json_with(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> Value {
    let out = run_with(c, kubeconfig, args);
    expect_code(&out, 0);
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn a_block_claim_is_backed_up_as_an_image_of_the_whole_volume() {
    // The fake kubelet gives a Block claim to the mover as an image file, which `mover backup`
    // rightly takes for a folder that is not one; a real node gives a device node.
    let Some(c) = real("block_claim") else {
        return;
    };
    // The volume is a loop device over this file (a `local` PV).
    let image = c
        .add_bound_claim(
            c.ns(),
            "disk",
            ClaimOptions {
                size: "64Mi".into(),
                block: true,
                ..ClaimOptions::default()
            },
        )
        .expect("a Block claim");
    let content: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    write_at(&image, 8 << 20, &content);
    let out = run(&c, &["backup", "disk"]);
    expect_code(&out, 0);
    let dir = c
        .volume_dir(c.ns(), "disk-backup")
        .expect("the backup claim's folder");
    let version = crate::util::latest_snapshot(&dir).join("volume.img");
    // cmp(1) as the judge: the version holds the volume byte for byte.
    let cmp = std::process::Command::new("cmp")
        .arg(&image)
        .arg(&version)
        .output()
        .expect("run cmp");
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
}

#[test]
fn a_per_minute_schedule_is_fired_by_the_cronjob_controller() {
    let Some(c) = real("cronjob_controller") else {
        return;
    };
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let out = run(&c, &["schedule", "data", "--cron", "* * * * *"]);
    expect_code(&out, 0);
    // Within two minutes the controller makes a Job (owned by the CronJob) and it succeeds.
    let fired = c.wait_for(Duration::from_secs(180), |c| {
        c.list::<Job>(Some(c.ns())).iter().any(|j| {
            j.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.kind == "CronJob"))
                && j.status.as_ref().and_then(|s| s.succeeded) == Some(1)
        })
    });
    assert!(fired, "no scheduled Job succeeded:\n{}", c.dump());
    assert_latest_snapshot_holds(&c, "data-backup", &src);
    let out = run(&c, &["unschedule", "data"]);
    expect_code(&out, 0);
}

/// The pvc-backup.io definitions of a test, removed when it goes with every object of theirs:
/// the operator's finalizers are taken off first, since no operator may be left to do it.
struct Resources<'a> {
    c: &'a Cluster,
    _definitions: ClusterScoped<'a>,
    /// Dropped last: the next test may install the definitions once these are deleted.
    _alone: Option<testcluster::real::Alone>,
}

impl Drop for Resources<'_> {
    fn drop(&mut self) {
        let kinds: Vec<String> = ::operator::install::PLURALS
            .iter()
            .map(|p| format!("{p}.pvc-backup.io"))
            .collect();
        let out = kubectl(self.c, &["get", &kinds.join(","), "-A", "-o", "json"], None);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for item in list["items"].as_array().into_iter().flatten() {
            let meta = &item["metadata"];
            let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
                continue;
            };
            let kind = item["kind"].as_str().unwrap_or_default().to_lowercase();
            let _ = kubectl(
                self.c,
                &[
                    "patch",
                    "-n",
                    ns,
                    &format!("{kind}.pvc-backup.io/{name}"),
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
                None,
            );
        }
    }
}

/// Installs the pvc-backup.io definitions (cluster-wide) as a user does, from `pvc-backup
/// manifests --crds`, and waits until the API server serves them; they are removed when the
/// returned guard goes. Tests that install them run one at a time (they delete them at the end).
fn install_resources(c: &Cluster) -> Resources<'_> {
    let alone = c.alone_with("definitions");
    let printed = manifests(c, &["--crds"]);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&printed)).unwrap();
    let crds: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 5, "manifests --crds gives the five kinds");
    let names: Vec<String> = crds
        .iter()
        .map(|crd| format!("crd/{}", crd["metadata"]["name"].as_str().unwrap()))
        .collect();
    // The test before removed its definitions without waiting: one still terminating would
    // accept this apply and then go, taking the kind with it.
    let mut gone = vec!["wait", "--for=delete", "--timeout=120s"];
    gone.extend(names.iter().map(String::as_str));
    expect_code(&kubectl(c, &gone, None), 0);
    let guard = ClusterScoped {
        c,
        objects: names.clone(),
    };
    apply(c, cluster::objects::to_yaml(&crds).unwrap().as_bytes());
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(names.iter().map(String::as_str));
    expect_code(&kubectl(c, &wait, None), 0);
    Resources {
        c,
        _definitions: guard,
        _alone: alone,
    }
}

/// The documents of a fixture file of the resources crate.
fn resource_fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/resources/tests/fixtures")
        .join(name);
    serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `kubectl create -f -` of one object in the test's namespace, with strict field validation and,
/// with `dry`, only judged (`--dry-run=server`).
fn create(c: &Cluster, obj: &Value, dry: bool) -> Output {
    let mut args = vec!["create", "-n", c.ns(), "--validate=strict", "-f", "-"];
    if dry {
        args.push("--dry-run=server");
    }
    kubectl(c, &args, Some(obj.to_string().as_bytes()))
}

#[test]
fn the_api_server_judges_the_resources_by_their_definitions() {
    let Some(c) = real("resources") else {
        return;
    };
    let _crds = install_resources(&c);

    // Every example is accepted, and kubectl shows a run's phase, snapshot and size.
    for doc in resource_fixture("valid.yaml") {
        let out = create(&c, &doc, false);
        assert!(
            out.status.success(),
            "{} was refused: {}",
            doc["metadata"]["name"],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = json!({"status": {"phase": "Succeeded", "snapshot": "2026-12-06T02-00-00Z",
        "stats": {"entries": 3, "bytes": 4096, "bytesCopied": 4096, "failed": 0}}});
    let out = kubectl(
        &c,
        &[
            "patch",
            "-n",
            c.ns(),
            "backup.pvc-backup.io/data-now",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
    expect_code(&out, 0);
    let out = kubectl(&c, &["get", "-n", c.ns(), "backups.pvc-backup.io"], None);
    expect_code(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "SNAPSHOT", "SIZE", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        ["data-now", "Succeeded", "2026-12-06T02-00-00Z", "4096"],
        "{table}"
    );
    // The category lists every kind: each valid example, of all five, is there.
    let out = kubectl(&c, &["get", "-n", c.ns(), "pvc-backup", "-o", "name"], None);
    expect_code(&out, 0);
    let listed = String::from_utf8_lossy(&out.stdout);
    let valid = resource_fixture("valid.yaml");
    assert_eq!(listed.lines().count(), valid.len(), "{listed}");
    for doc in &valid {
        let name = format!(
            "{}.pvc-backup.io/{}",
            doc["kind"].as_str().unwrap().to_lowercase(),
            doc["metadata"]["name"].as_str().unwrap()
        );
        assert!(listed.lines().any(|l| l == name), "{name} not in: {listed}");
    }

    // Every refused spec is refused, with the message of what refuses it.
    for doc in resource_fixture("refused.yaml") {
        let expected = doc["metadata"]["annotations"]["test.pvc-backup.io/message"]
            .as_str()
            .unwrap();
        let out = create(&c, &doc, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{}: expected a refusal holding {expected:?}, got: {stderr}",
            doc["metadata"]["name"]
        );
    }

    // The schedule's cron rule takes what the CronJob's validation takes.
    for schedule in [
        "0 2 * * *",
        "*/15 * * * 1-5",
        "0,30 8-18/2 1,15 jan-jun mon-fri",
        "59 23 31 12 6",
        "0 0 ? * SUN",
        "@daily",
        "@every 1h30m",
        "* * * *",
        "61 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 7",
        "every night",
        "TZ=UTC 0 2 * * *",
        "0 2 * * * *",
    ] {
        let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "cron-check"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": c.image()}]}}}}}});
        let ours = json!({"apiVersion": "pvc-backup.io/v1alpha1", "kind": "BackupSchedule",
            "metadata": {"name": "cron-check"},
            "spec": {"schedule": schedule, "source": {"claim": "data"}}});
        let theirs = create(&c, &cronjob, true).status.success();
        let mine = create(&c, &ours, true);
        assert_eq!(
            mine.status.success(),
            theirs,
            "{schedule:?}: the CronJob's validation says {theirs}, the BackupSchedule's: {}",
            String::from_utf8_lossy(&mine.stderr)
        );
    }
}
