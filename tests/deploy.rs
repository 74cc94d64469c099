//! The files users apply agree with what the binary prints: the Kustomize directories in
//! `deploy/kustomize` hold the objects of `pvc-backup manifests`, read as files and as
//! `kubectl kustomize` builds them, and every object reads back through the k8s-openapi types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde_json::Value;
use testkit::skip::need_tools;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_stream(what: &str, yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The objects `pvc-backup ARGS` prints as YAML (with the default image); the run must succeed.
fn printed_objects(args: &[&str]) -> Vec<Value> {
    let out = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(args)
        .env_remove("PVC_BACKUP_IMAGE")
        .output()
        .expect("run pvc-backup");
    assert!(
        out.status.success(),
        "pvc-backup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_stream(
        &format!("the output of pvc-backup {args:?}"),
        &String::from_utf8(out.stdout).unwrap(),
    )
}

/// What `pvc-backup manifests ARGS` prints, as objects.
fn manifests(args: &[&str]) -> Vec<Value> {
    printed_objects(&[&["manifests"], args].concat())
}

/// The objects a kustomization lists under `resources` (files and directories, recursively),
/// without its patches: what a Kustomize build starts from.
fn kustomization_resources(dir: &Path) -> Vec<Value> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let k: Value = serde_saphyr::from_str(&text).unwrap();
    let mut objects = Vec::new();
    for r in k["resources"].as_array().expect("resources") {
        let path = dir.join(r.as_str().unwrap());
        if path.is_dir() {
            objects.extend(kustomization_resources(&path));
        } else {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            objects.extend(parse_stream(&path.display().to_string(), &text));
        }
    }
    objects
}

fn key(o: &Value) -> String {
    format!(
        "{} {} {}/{}",
        o["apiVersion"].as_str().unwrap_or("?"),
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?"),
    )
}

/// Both lists hold the same objects, in any order, numbers compared by value (YAML tools write
/// `0.0` as `0`); the message names each difference.
fn assert_same_objects(what: &str, got: &[Value], want: &[Value]) {
    let index = |objects: &[Value]| -> BTreeMap<String, Value> {
        let mut map = BTreeMap::new();
        for o in objects {
            assert!(
                map.insert(key(o), numbers_as_floats(o)).is_none(),
                "{what}: {} twice",
                key(o)
            );
        }
        map
    };
    let (got, want) = (index(got), index(want));
    let mut problems = Vec::new();
    for (k, w) in &want {
        match got.get(k) {
            None => problems.push(format!("missing {k}")),
            Some(g) if g != w => problems.push(format!(
                "{k} differs:\n  file/build: {}\n  manifests:  {}",
                serde_json::to_string(g).unwrap(),
                serde_json::to_string(w).unwrap()
            )),
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("extra {k}"));
    }
    assert!(
        problems.is_empty(),
        "{what} disagrees with `pvc-backup manifests` (rewrite the files from its output):\n{}",
        problems.join("\n")
    );
}

/// Reads `object` as `T` and writes it back: nothing may be lost or changed.
fn round_trip<T: DeserializeOwned + serde::Serialize>(object: &Value) {
    let typed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid {}: {e}", key(object), object["kind"]));
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        object,
        "a field of {} did not survive the k8s-openapi types",
        key(object)
    );
}

/// Every number as a float: a schema's bounds are floats in the k8s-openapi types (`minimum:
/// 0.0`), and YAML writes a whole float as an integer (`minimum: 0`); the value is the same.
fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// [`round_trip`] for a definition, whose schema's numbers may change form but not value.
fn crd_round_trip(object: &Value) {
    let typed: CustomResourceDefinition = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid definition: {e}", key(object)));
    assert_eq!(
        numbers_as_floats(&serde_json::to_value(&typed).unwrap()),
        numbers_as_floats(object),
        "a field of {} did not survive the k8s-openapi types",
        key(object)
    );
}

fn check_types(objects: &[Value]) {
    for o in objects {
        match o["kind"].as_str().unwrap() {
            "ServiceAccount" => round_trip::<ServiceAccount>(o),
            "RoleBinding" => round_trip::<RoleBinding>(o),
            "ClusterRole" => round_trip::<ClusterRole>(o),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(o),
            "Role" => round_trip::<Role>(o),
            "CustomResourceDefinition" => crd_round_trip(o),
            "Namespace" => round_trip::<Namespace>(o),
            "Deployment" => round_trip::<Deployment>(o),
            "Service" => round_trip::<Service>(o),
            "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(o),
            "ValidatingWebhookConfiguration" => round_trip::<ValidatingWebhookConfiguration>(o),
            // Not Kubernetes types: cert-manager's and OpenShift's.
            "Issuer" | "Certificate" | "SecurityContextConstraints" => {}
            other => panic!("unexpected kind {other} in {}", key(o)),
        }
    }
}

fn namespaced_part(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .filter(|o| o["kind"] == "ServiceAccount" || o["kind"] == "RoleBinding")
        .collect()
}

#[test]
fn kustomize_files_hold_what_manifests_prints() {
    let base = kustomization_resources(&repo().join("deploy/kustomize/base"));
    check_types(&base);
    assert_same_objects("deploy/kustomize/base", &base, &manifests(&["--webhook"]));
    let mover = kustomization_resources(&repo().join("deploy/kustomize/mover"));
    assert_same_objects(
        "deploy/kustomize/mover",
        &mover,
        &namespaced_part(manifests(&[])),
    );
    let operator = kustomization_resources(&repo().join("deploy/kustomize/operator"));
    check_types(&operator);
    assert_same_objects(
        "deploy/kustomize/operator",
        &operator,
        &manifests(&["--operator"]),
    );
    // The overlay's own resource is the SCC; its patches are checked by the build below.
    let scc_file = repo().join("deploy/kustomize/openshift/scc.yaml");
    let scc = parse_stream("scc.yaml", &std::fs::read_to_string(scc_file).unwrap());
    let printed: Vec<Value> = manifests(&["--openshift"])
        .into_iter()
        .filter(|o| o["kind"] == "SecurityContextConstraints")
        .collect();
    assert_eq!(printed.len(), 1);
    assert_same_objects("deploy/kustomize/openshift/scc.yaml", &scc, &printed);
}

fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_stream(dir, &String::from_utf8(out.stdout).unwrap())
}

#[test]
fn kustomize_builds_what_manifests_prints() {
    if !need_tools("kustomize_builds_what_manifests_prints", &["kubectl"]) {
        return;
    }
    let base = kustomize("deploy/kustomize/base");
    check_types(&base);
    assert_same_objects("kubectl kustomize base", &base, &manifests(&["--webhook"]));
    let operator = kustomize("deploy/kustomize/operator");
    check_types(&operator);
    assert_same_objects(
        "kubectl kustomize operator",
        &operator,
        &manifests(&["--operator"]),
    );
    let openshift = kustomize("deploy/kustomize/openshift");
    check_types(&openshift);
    assert_same_objects(
        "kubectl kustomize openshift",
        &openshift,
        &manifests(&["--openshift", "--webhook"]),
    );
    assert_same_objects(
        "kubectl kustomize mover",
        &kustomize("deploy/kustomize/mover"),
        &namespaced_part(manifests(&[])),
    );
}

#[test]
fn manifests_names_each_backup_namespace_and_refuses_bad_ones() {
    let objects = manifests(&["--backup-namespace", "shop", "--backup-namespace", "db"]);
    let placed: Vec<String> = namespaced_part(objects).iter().map(key).collect();
    assert_eq!(
        placed,
        [
            "v1 ServiceAccount shop/pvc-backup-deployer",
            "rbac.authorization.k8s.io/v1 RoleBinding shop/backuper",
            "v1 ServiceAccount db/pvc-backup-deployer",
            "rbac.authorization.k8s.io/v1 RoleBinding db/backuper",
        ]
    );
    let out = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["manifests", "--backup-namespace", "Shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"Shop\"") && err.contains("--backup-namespace"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing is printed on an error");
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let run = |args: &[&str]| {
        let out = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for word in [
        "manifests",
        "--backup-namespace",
        "mover",
        "sync",
        "--subdir",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(run(&["completions", "zsh"]).contains("#compdef pvc-backup"));
    let page = run(&["man"]);
    assert!(page.contains(".TH pvc-backup 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    for page in [
        "pvc-backup.1",
        "pvc-backup-mover.1",
        "pvc-backup-mover-sync.1",
        "pvc-backup-manifests.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    // man(1) itself reads the page when it is installed: an independent check of the roff.
    if testkit::skip::have_tool("man") {
        let out = Command::new("man")
            .arg(dir.path().join("pvc-backup-mover-sync.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--subdir"), "{text}");
    }
}

/// The objects of an OpenShift template processed as `oc process` does: `${NAME}` in every
/// string becomes the parameter's value (given, else its default). A required parameter with no
/// value, or a reference to an undeclared one, fails the test.
fn process(path: &str, given: &[(&str, &str)]) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let template: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(template["apiVersion"], "template.openshift.io/v1", "{path}");
    assert_eq!(template["kind"], "Template", "{path}");
    let mut values = BTreeMap::new();
    for p in template["parameters"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let value = given
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| p["value"].as_str().map(str::to_owned));
        match value {
            Some(v) => {
                values.insert(name.to_owned(), v);
            }
            None if p["required"] == true => panic!("{path}: required parameter {name} not given"),
            None => {
                values.insert(name.to_owned(), String::new());
            }
        }
    }
    for (k, _) in given {
        assert!(values.contains_key(*k), "{path} has no parameter {k}");
    }
    fn substitute(v: &mut Value, values: &BTreeMap<String, String>, path: &str) {
        match v {
            Value::String(s) => {
                while let Some(start) = s.find("${") {
                    let end = start + s[start..].find('}').unwrap();
                    let name = &s[start + 2..end];
                    let value = values
                        .get(name)
                        .unwrap_or_else(|| panic!("{path}: ${{{name}}} is not a parameter"));
                    s.replace_range(start..=end, value);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, values, path)),
            Value::Object(o) => o.values_mut().for_each(|x| substitute(x, values, path)),
            _ => {}
        }
    }
    let mut objects = template["objects"].as_array().unwrap().clone();
    for o in &mut objects {
        substitute(o, &values, path);
    }
    // Every parameter is used somewhere.
    let all = serde_json::to_string(&template["objects"]).unwrap()
        + template["message"].as_str().unwrap_or("");
    for name in values.keys() {
        assert!(
            all.contains(&format!("${{{name}}}")),
            "{path}: {name} is never used"
        );
    }
    objects
}

/// What the CLI would create, planned offline.
fn cli(args: &[&str]) -> Vec<Value> {
    let offline = [
        "--dry-run=client",
        "-o",
        "yaml",
        "-n",
        "shop",
        "--size",
        "1Gi",
    ];
    printed_objects(&[args, &offline].concat())
}

/// Where a processed template may differ from the CLI's object, made equal: an empty `nodeName`
/// is no node (as the API server reads it), the folder is part of the source path (a template
/// cannot leave out `--subdir`), and the namespace is the one `oc create` uses.
fn as_the_cli_would(mut o: Value, pod: &str, namespace: &str) -> Value {
    o["metadata"]["namespace"] = Value::from(namespace);
    let pod = o.pointer_mut(pod).unwrap();
    let spec = pod["spec"].as_object_mut().unwrap();
    assert_eq!(spec.remove("nodeName"), Some(Value::from("")));
    let args = &mut spec["containers"][0]["args"];
    assert_eq!(args[2], "/source/");
    args[2] = Value::from("/source");
    o
}

const RETENTION: [&str; 6] = [
    "--keep-daily",
    "7",
    "--keep-weekly",
    "4",
    "--keep-monthly",
    "6",
];

#[test]
fn openshift_job_templates_make_the_clis_job() {
    let mut cli_args = vec!["backup", "data", "--to", "data-backup"];
    cli_args.extend(RETENTION);
    let planned = cli(&cli_args);
    let job = planned.iter().find(|o| o["kind"] == "Job").unwrap();
    let name = job["metadata"]["name"].as_str().unwrap();
    let suffix = name.strip_prefix("data-backup-").unwrap();
    let params = [
        ("PVC_NAME", "data"),
        ("PVC_BCK", "data-backup"),
        ("SUFFIX", suffix),
    ];
    let block = process("deploy/openshift/backup-block.yaml", &params);
    let shared = process("deploy/openshift/backup-shared.yaml", &params);
    // The two differ in their descriptions, for the kinds of storage they are for.
    assert_eq!(block, shared);
    assert_eq!(
        block.len(),
        1,
        "a template makes nothing with a fixed name but the Job"
    );
    round_trip::<k8s_openapi::api::batch::v1::Job>(&block[0]);
    assert_eq!(
        as_the_cli_would(block[0].clone(), "/spec/template", "shop"),
        *job
    );
    // NODE pins the pod; BCK_FOLDER narrows the source.
    let pinned = process(
        "deploy/openshift/backup-block.yaml",
        &[
            ("PVC_NAME", "data"),
            ("PVC_BCK", "data-backup"),
            ("NODE", "worker-2"),
            ("BCK_FOLDER", "www/uploads"),
        ],
    );
    let spec = &pinned[0]["spec"]["template"]["spec"];
    assert_eq!(spec["nodeName"], "worker-2");
    assert_eq!(spec["containers"][0]["args"][2], "/source/www/uploads");
    assert_eq!(
        spec["containers"][0]["image"],
        cluster::names::DEFAULT_IMAGE
    );
}

#[test]
fn openshift_scheduled_templates_make_the_clis_cronjob() {
    let mut cli_args = vec![
        "schedule",
        "data",
        "--to",
        "data-backup",
        "--cron",
        "30 1 * * *",
    ];
    cli_args.extend(RETENTION);
    let planned = cli(&cli_args);
    let cron = planned.iter().find(|o| o["kind"] == "CronJob").unwrap();
    let params = [
        ("PVC_NAME", "data"),
        ("PVC_BCK", "data-backup"),
        ("SCHEDULE", "30 1 * * *"),
    ];
    let block = process("deploy/openshift/backup-block-scheduled.yaml", &params);
    let shared = process("deploy/openshift/backup-shared-scheduled.yaml", &params);
    assert_eq!(block, shared);
    assert_eq!(block.len(), 1);
    round_trip::<k8s_openapi::api::batch::v1::CronJob>(&block[0]);
    assert_eq!(
        as_the_cli_would(block[0].clone(), "/spec/jobTemplate/spec/template", "shop"),
        *cron
    );
}

#[test]
fn openshift_files_hold_what_manifests_prints() {
    let read = |f: &str| {
        let path = repo().join("deploy/openshift").join(f);
        parse_stream(f, &std::fs::read_to_string(path).unwrap())
    };
    let printed = manifests(&["--openshift"]);
    let of = |kinds: &[&str]| -> Vec<Value> {
        printed
            .iter()
            .filter(|o| kinds.contains(&o["kind"].as_str().unwrap()))
            .cloned()
            .collect()
    };
    assert_same_objects(
        "deploy/openshift/scc.yaml",
        &read("scc.yaml"),
        &of(&["SecurityContextConstraints"]),
    );
    assert_same_objects(
        "deploy/openshift/cluster-roles.yaml",
        &read("cluster-roles.yaml"),
        &of(&["ClusterRole"]),
    );
    assert_same_objects(
        "deploy/openshift/namespace.yaml",
        &read("namespace.yaml"),
        &of(&["ServiceAccount", "RoleBinding"]),
    );
}

#[test]
fn openshift_verify_template_runs_the_movers_pod_on_the_backup_claim() {
    let verify = process(
        "deploy/openshift/verify-backup.yaml",
        &[("PVC_BCK", "data-backup"), ("SNAPSHOT", "all")],
    );
    assert_eq!(verify.len(), 1);
    round_trip::<k8s_openapi::api::batch::v1::Job>(&verify[0]);
    let backup = process(
        "deploy/openshift/backup-shared.yaml",
        &[("PVC_NAME", "data"), ("PVC_BCK", "data-backup")],
    );
    let mut v = verify[0]["spec"]["template"]["spec"].clone();
    let mut b = backup[0]["spec"]["template"]["spec"].clone();
    assert_eq!(
        v["containers"][0]["args"],
        serde_json::json!(["mover", "verify", "/backup", "--snapshot", "all", "--json"])
    );
    // The same pod but for its arguments and the source claim it does not mount.
    for spec in [&mut v, &mut b] {
        spec["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("args");
    }
    b["volumes"].as_array_mut().unwrap().remove(0);
    b["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    assert_eq!(v, b);
}

#[test]
fn the_exclude_flags_of_backup_reach_the_mover_pod_and_the_mover_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("excludes");
    std::fs::write(
        &list,
        "# from a file, read where the command runs\n/cache/\n",
    )
    .unwrap();
    let planned = cli(&[
        "backup",
        "data",
        "--exclude",
        "*.log",
        "--exclude-from",
        list.to_str().unwrap(),
        "--exclude-caches",
    ]);
    let job = planned.iter().find(|o| o["kind"] == "Job").unwrap();
    let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let tail: Vec<&str> = args[4..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "--progress",
            "json",
            "--exclude=/cache/",
            "--exclude=*.log",
            "--exclude-caches"
        ]
    );
    // The mover, given those arguments with two local folders as the claims, leaves out what
    // they say.
    let src = dir.path().join("source");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("cache/blob"), b"left out").unwrap();
    std::fs::write(src.join("app.log"), b"left out").unwrap();
    std::fs::write(src.join("data"), b"kept").unwrap();
    let backup = dir.path().join("backup");
    let mut run: Vec<String> = args.clone();
    run[2] = src.to_str().unwrap().to_owned();
    run[3] = backup.to_str().unwrap().to_owned();
    let out = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{run:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = backup.join("latest");
    assert!(latest.join("data").exists());
    assert!(!latest.join("app.log").exists());
    assert!(!latest.join("cache").exists());

    // A pattern the mover would refuse fails here, before anything is made.
    let out = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args([
            "backup",
            "data",
            "--dry-run=client",
            "-n",
            "shop",
            "--size",
            "1Gi",
        ])
        .args(["--exclude", "a[z-a]"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a[z-a]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
