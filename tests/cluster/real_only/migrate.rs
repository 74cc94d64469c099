//! `pvc-backup migrate --to-namespace`: two movers carry the claim's data into a claim of the
//! same name in another namespace, through kube-proxy; rsync judges the copy on the host, the
//! real API server holds the workloads' replica counts. The command is killed once on the way
//! and run again.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;
use testcluster::fake::ClaimOptions;

use super::{
    apply, assert_no_transfer_left, block_claim_and_copy, manifests, person_in_both, real, run_with,
};
use crate::resume::run_killed_when;
use crate::util::{
    Cluster, assert_holds, claim_with_data, cluster, deployment_using, expect_code, reference_copy,
    wait_running_with,
};

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

#[test]
fn a_migration_into_another_namespace_stops_the_workload_here_and_starts_it_there() {
    let Some(c) = real("migrate_across_namespaces") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    // Someone with the documented role in both namespaces, and nothing more.
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    // The workload as it will run there: deployed beforehand, stopped, on a claim of that name.
    lab.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": lab.ns()},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}))
        .expect("create the workload there");
    let (_keep, before) = reference_copy(&src);

    // Killed (SIGKILL) as the final copy begins, with the workload stopped and the movers of that
    // copy starting: the record on the claim keeps where it stood.
    let args = ["migrate", "data", "--to-namespace", lab.ns(), "--start"];
    let lines = run_killed_when(&c, &alice, &args, |line| {
        line.contains("copying what changed")
    });
    let lines = lines.expect("killed as the final copy began");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("scaling deployment/web to zero")),
        "{lines:#?}"
    );
    let here: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(replicas(&here), Some(0));
    let source: PersistentVolumeClaim = c.get(c.ns(), "data").unwrap();
    let record = &source.metadata.annotations.unwrap_or_default()["pvc-backup.io/progress"];
    assert!(record.contains("\"done\":\"scale-down\""), "{record}");

    // The same command again goes on from there: the interrupted copy's movers are removed, the
    // final copy and the verification run, the workload starts there.
    let out = run_with(
        &c,
        &alice,
        &[
            "migrate",
            "data",
            "--to-namespace",
            lab.ns(),
            "--start",
            "-o",
            "json",
        ],
    );
    expect_code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["workload"], "deployment/web", "{report:#}");
    assert_eq!(report["replicas"], 1, "{report:#}");
    assert_eq!(report["started"], true, "{report:#}");
    // The final copy and the verification by content (the first copy was done before the kill).
    assert_eq!(
        report["jobs"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    let verification = &report["summaries"][1]["entries"];
    assert_eq!(verification["copied"], 0, "{report:#}");
    assert_eq!(verification["updated"], 0, "{report:#}");

    // The data is there, judged by rsync, and still here as it was.
    assert_holds(&lab, "data", &before);
    assert_holds(&c, "data", &before);
    // The workload runs there on it, and stays stopped here with its count kept.
    assert!(wait_running_with(&lab, "web-", "data"));
    let there: Deployment = lab.get(lab.ns(), "web").unwrap();
    assert_eq!(replicas(&there), Some(1));
    let here: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(replicas(&here), Some(0));
    assert_eq!(
        here.metadata.annotations.unwrap_or_default()["pvc-backup.io/scaled-down-from"],
        "1"
    );
    let source: PersistentVolumeClaim = c.get(c.ns(), "data").unwrap();
    let marks = source.metadata.annotations.unwrap_or_default();
    assert!(!marks.contains_key("pvc-backup.io/progress"), "{marks:?}");
    let away: serde_json::Value =
        serde_json::from_str(&marks["pvc-backup.io/migrated-away"]).unwrap();
    assert_eq!(away, json!({"namespace": lab.ns(), "claim": "data"}));
    let copy: PersistentVolumeClaim = lab.get(lab.ns(), "data").unwrap();
    assert_eq!(
        copy.metadata.annotations.unwrap_or_default()["pvc-backup.io/migrated-from"],
        format!("{}/data", c.ns())
    );
    assert_no_transfer_left(&c, &lab);

    // Migrating again would overwrite what the workload writes there now: refused.
    let again = run_with(&c, &alice, &["migrate", "data", "--to-namespace", lab.ns()]);
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.code() != Some(0) && why.contains("was migrated already"),
        "{why}"
    );
}

/// A Deployment `name` of `replicas` pods in the namespace of `c` that use claim `claim` as a raw
/// device (`volumeDevices`), as a database on a Block volume does.
fn device_workload(c: &Cluster, name: &str, claim: &str, replicas: i32) {
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": c.ns()},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"],
                        "volumeDevices": [{"name": "disk", "devicePath": "/dev/xvda"}]}],
                    "volumes": [{"name": "disk", "persistentVolumeClaim": {"claimName": claim}}]}}}}))
        .expect("create the workload");
}

#[test]
fn a_block_claim_migrates_into_another_namespace_chunk_by_chunk_and_its_workload_starts_there() {
    // Block claims are loop devices here, which the fake cluster does not give its pods.
    let Some(c) = real("migrate_block_across_namespaces") else {
        return;
    };
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let (image, copy) = block_claim_and_copy(&c, &lab);
    device_workload(&c, "db", "disk", 1);
    assert!(
        wait_running_with(&c, "db-", "disk"),
        "the workload never ran"
    );
    device_workload(&lab, "db", "disk", 0);

    let out = run_with(
        &c,
        &alice,
        &[
            "migrate",
            "disk",
            "--to-namespace",
            lab.ns(),
            "--start",
            "-o",
            "json",
        ],
    );
    expect_code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["workload"], "deployment/db", "{report:#}");
    assert_eq!(report["started"], true, "{report:#}");
    let summaries = report["summaries"].as_array().expect("summaries");
    // The live copy wrote the data chunks (2, 3 and 15) and zeroed the stale one (5); the copy
    // with the workload stopped and the verification found every chunk equal.
    assert_eq!(summaries.len(), 3, "{report:#}");
    assert_eq!(summaries[0]["chunks_written"], 3, "{report:#}");
    assert_eq!(summaries[0]["chunks_zeroed"], 1, "{report:#}");
    for later in &summaries[1..] {
        assert_eq!(later["chunks_equal"], 16, "{report:#}");
        assert_eq!(later["chunks_written"], 0, "{report:#}");
    }
    // cmp(1) judges the volume there against the one here, byte for byte.
    let cmp = std::process::Command::new("cmp")
        .arg(&image)
        .arg(&copy)
        .output()
        .expect("run cmp");
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let claim: PersistentVolumeClaim = lab.get(lab.ns(), "disk").expect("the claim there");
    assert_eq!(
        claim.spec.unwrap_or_default().volume_mode.as_deref(),
        Some("Block")
    );
    // The workload runs there on its device, and stays stopped here.
    assert!(wait_running_with(&lab, "db-", "disk"));
    let here: Deployment = c.get(c.ns(), "db").unwrap();
    assert_eq!(replicas(&here), Some(0));
    assert_no_transfer_left(&c, &lab);
}
