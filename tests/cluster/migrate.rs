//! `pvc-backup migrate` and `migrate --rollback` against the fake cluster: the data on the new
//! class is checked with rsync against a copy taken before, the objects through k8s-openapi.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::json;
use testcluster::fake::ClaimOptions;

use crate::util::Cluster;
use testkit::oracle::rsync_itemize;

use crate::util::{
    access_mode, add_fast_class, assert_holds, claim_with_data, cluster, deployment_using,
    expect_code, pods_labelled, reference_copy, run, run_failing, run_json, wait_running_with,
    yaml_docs,
};

fn class_of(c: &Cluster, claim: &str) -> Option<String> {
    c.get::<PersistentVolumeClaim>(c.ns(), claim)?
        .spec?
        .storage_class_name
}

fn volume_of(c: &Cluster, claim: &str) -> String {
    let claim: PersistentVolumeClaim = c.get(c.ns(), claim).expect("claim");
    claim.spec.and_then(|s| s.volume_name).expect("bound")
}

fn template_claims(c: &Cluster, deployment: &str) -> Vec<String> {
    let d: Deployment = c.get(c.ns(), deployment).unwrap();
    d.spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim.map(|p| p.claim_name))
        .collect()
}

#[test]
fn migrate_repoints_the_deployment_and_rollback_points_it_back() {
    let c = cluster();
    add_fast_class(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    let (_keep, before) = reference_copy(&src);

    let report = run_json(
        &c,
        &["migrate", "data", "--storage-class", "fast", "-o", "json"],
    );
    assert_eq!(report["nowUsed"], "data-fast", "{report}");
    assert_eq!(report["workload"], "deployment/web");
    // Copy with the workload running, final copy, verification.
    assert_eq!(report["jobs"].as_array().map(Vec::len), Some(3), "{report}");

    assert_eq!(class_of(&c, "data-fast").as_deref(), Some("fast"));
    assert_holds(&c, "data-fast", &before);
    // The workload uses the new claim and runs again; the old claim is untouched.
    assert_eq!(template_claims(&c, "web"), ["data-fast"]);
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(web.spec.as_ref().unwrap().replicas, Some(1));
    let annotations = web.metadata.annotations.clone().unwrap_or_default();
    let previous: serde_json::Value =
        serde_json::from_str(&annotations["pvc-backup.io/previous-claims"]).unwrap();
    assert_eq!(previous, json!({"data": "data"}));
    assert!(!annotations.contains_key("pvc-backup.io/scaled-down-from"));
    assert!(wait_running_with(&c, "web-", "data-fast"));
    assert_holds(&c, "data", &before);
    // Running it again would copy the old data over what the workload writes now: refused.
    let err = run_failing(&c, &["migrate", "data", "--storage-class", "fast"]);
    assert!(
        err.contains("migrated to claim data-fast already") && err.contains("--rollback"),
        "{err}"
    );

    // The application writes on the new claim; rollback goes back to the old one and keeps
    // what was written in the new one.
    let new_dir = c.volume_dir(c.ns(), "data-fast").unwrap();
    std::fs::write(new_dir.join("written-after"), b"new\n").unwrap();
    // A dry run shows the workload as it would be, and changes nothing.
    let list = run_json(
        &c,
        &["migrate", "--rollback", "data", "--dry-run", "-o", "json"],
    );
    let shown: Deployment = serde_json::from_value(list["items"][0].clone()).unwrap();
    let volumes = shown.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data"
    );
    assert_eq!(template_claims(&c, "web"), ["data-fast"]);
    let out = run(&c, &["migrate", "--rollback", "data"]);
    expect_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("uses claim data again"), "{stdout}");
    assert_eq!(template_claims(&c, "web"), ["data"]);
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    let annotations = web.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/previous-claims"));
    assert!(wait_running_with(&c, "web-", "data"));
    assert_holds(&c, "data", &before);
    assert_eq!(
        std::fs::read(new_dir.join("written-after")).unwrap(),
        b"new\n"
    );

    // Nothing more to roll back.
    let out = run(&c, &["migrate", "--rollback", "data"]);
    expect_code(&out, 1);
}

fn statefulset_db(c: &Cluster) -> PathBuf {
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": c.ns()},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "db", "image": c.app_image(), "command": ["sleep", "86400"],
                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .expect("create the StatefulSet");
    assert!(wait_running_with(c, "db-0", "data-db-0"));
    let dir = c.volume_dir(c.ns(), "data-db-0").expect("data-db-0 bound");
    testkit::tree::Tree::new(&dir)
        .file(b"base/1", b"one\n")
        .file(b"base/2", &[9u8; 70_000])
        .hardlink(b"base/1", b"base/1-again")
        .symlink(b"current", b"base")
        .mode(b"base/2", 0o600);
    dir
}

#[test]
fn keep_name_moves_a_statefulset_claim_and_rollback_rebinds_the_old_volume() {
    let c = cluster();
    add_fast_class(&c);
    let dir = statefulset_db(&c);
    let (_keep, before) = reference_copy(&dir);
    let old_pv = volume_of(&c, "data-db-0");

    // A template's claim cannot be repointed: the error says what works.
    let err = run_failing(&c, &["migrate", "data-db-0", "--storage-class", "fast"]);
    assert!(err.contains("--keep-name"), "{err}");
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-db-0-fast")
            .is_none()
    );

    let report = run_json(
        &c,
        &[
            "migrate",
            "data-db-0",
            "--storage-class",
            "fast",
            "--keep-name",
            "-o",
            "json",
        ],
    );
    assert_eq!(report["workload"], "statefulset/db", "{report}");
    assert_eq!(report["oldVolume"], old_pv.as_str());

    // Same name, new class, new volume, same data; the temporary claim is gone.
    assert_eq!(class_of(&c, "data-db-0").as_deref(), Some("fast"));
    let new_pv = volume_of(&c, "data-db-0");
    assert_ne!(new_pv, old_pv);
    assert_eq!(report["newVolume"], new_pv.as_str());
    assert_holds(&c, "data-db-0", &before);
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-db-0-fast")
            .is_none()
    );
    // The old volume is kept as the way back, with its data.
    let old: PersistentVolume = c.get("", &old_pv).expect("the old volume is kept");
    let spec = old.spec.clone().unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    let old_annotations = old.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(old_annotations["pvc-backup.io/reclaim-policy"], "Delete");
    let old_dir = c.pv_path(&old_pv).expect("old volume folder");
    assert!(rsync_itemize(&before, &old_dir, &[]).is_empty());
    // The StatefulSet runs again on the claim of the same name.
    let sts: StatefulSet = c.get(c.ns(), "db").unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(1));
    assert!(wait_running_with(&c, "db-0", "data-db-0"));

    // Rollback: the claim is bound to its old volume again, whose policy is given back; the
    // newer data stays reachable in claim data-db-0-fast.
    let new_dir = c.volume_dir(c.ns(), "data-db-0").unwrap();
    std::fs::write(new_dir.join("written-after"), b"new\n").unwrap();
    let out = run(&c, &["migrate", "--rollback", "data-db-0", "--dry-run"]);
    expect_code(&out, 0);
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<PersistentVolumeClaim> = yaml_docs(&yaml)
        .into_iter()
        .map(|d| serde_saphyr::from_str(d).expect("a claim"))
        .collect();
    let shown: Vec<(Option<String>, Option<String>)> = docs
        .into_iter()
        .map(|c| (c.metadata.name, c.spec.and_then(|s| s.volume_name)))
        .collect();
    assert_eq!(
        shown,
        [
            (Some("data-db-0".into()), Some(old_pv.clone())),
            (Some("data-db-0-fast".into()), Some(new_pv.clone()))
        ]
    );
    assert_eq!(volume_of(&c, "data-db-0"), new_pv);
    let report = run_json(&c, &["migrate", "--rollback", "data-db-0", "-o", "json"]);
    assert_eq!(report["newerData"], "data-db-0-fast", "{report}");
    assert_eq!(volume_of(&c, "data-db-0"), old_pv);
    assert_ne!(class_of(&c, "data-db-0").as_deref(), Some("fast"));
    assert_holds(&c, "data-db-0", &before);
    let old: PersistentVolume = c.get("", &old_pv).unwrap();
    assert_eq!(
        old.spec
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Delete")
    );
    assert_eq!(volume_of(&c, "data-db-0-fast"), new_pv);
    let newer = c.volume_dir(c.ns(), "data-db-0-fast").unwrap();
    assert_eq!(
        std::fs::read(newer.join("written-after")).unwrap(),
        b"new\n"
    );
    assert!(wait_running_with(&c, "db-0", "data-db-0"));
}

#[test]
fn another_workload_on_the_claim_is_refused_before_anything_is_made() {
    let c = cluster();
    add_fast_class(&c);
    claim_with_data(&c, "shared", access_mode("ReadWriteMany"));
    deployment_using(&c, "web", "shared");
    deployment_using(&c, "worker", "shared");
    let err = run_failing(
        &c,
        &[
            "migrate",
            "shared",
            "--storage-class",
            "fast",
            "--workload",
            "deploy/web",
        ],
    );
    assert!(
        err.contains("deployment/worker") && err.contains("--workload"),
        "{err}"
    );
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "shared-fast")
            .is_none()
    );
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(1));
}

#[test]
fn a_failed_verification_leaves_the_workload_on_its_data_and_running() {
    let c = cluster();
    add_fast_class(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    std::fs::create_dir(src.join("log")).unwrap();
    let (_keep, before) = reference_copy(&src);
    deployment_using(&c, "web", "data");
    let old_pv = volume_of(&c, "data");
    // Something pvc-backup does not know of keeps changing a file of the claim, so the copy
    // made with the workload stopped never matches the source.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), src.join("log/unknown-writer"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                std::fs::write(&file, n.to_string().repeat(1 + (n % 7) as usize)).unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let mut errors = Vec::new();
    for extra in [&[][..], &["--keep-name"][..]] {
        let mut args = vec!["migrate", "data", "--storage-class", "fast"];
        args.extend_from_slice(extra);
        errors.push(run_failing(&c, &args));
        // Nothing of the source changed; the workload points where it did and runs again.
        let dir = c.volume_dir(c.ns(), "data").unwrap();
        let diff = rsync_itemize(&before, &dir, &["/log"]);
        assert!(diff.is_empty(), "{diff:#?}");
        assert_eq!(volume_of(&c, "data"), old_pv);
        assert_eq!(class_of(&c, "data").as_deref(), Some("standard"));
        assert_eq!(template_claims(&c, "web"), ["data"]);
        let web: Deployment = c.get(c.ns(), "web").unwrap();
        assert_eq!(web.spec.unwrap().replicas, Some(1));
        let annotations = web.metadata.annotations.unwrap_or_default();
        assert!(!annotations.contains_key("pvc-backup.io/previous-claims"));
        assert!(!annotations.contains_key("pvc-backup.io/scaled-down-from"));
        assert!(wait_running_with(&c, "web-", "data"));
        let pv: PersistentVolume = c.get("", &old_pv).unwrap();
        let pv_annotations = pv.metadata.annotations.unwrap_or_default();
        assert!(!pv_annotations.contains_key("pvc-backup.io/migrated-to"));
        assert!(!pv_annotations.contains_key("pvc-backup.io/reclaim-policy"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    for err in errors {
        assert!(
            (err.contains("the final copy") || err.contains("verification"))
                && err.contains("original data"),
            "{err}"
        );
    }
}

#[test]
fn a_read_write_once_pod_claim_in_use_is_copied_once_with_the_workload_stopped_on_its_node() {
    let c = cluster();
    add_fast_class(&c);
    let src = claim_with_data(&c, "data", access_mode("ReadWriteOncePod"));
    let (_keep, before) = reference_copy(&src);
    let node = deployment_using(&c, "web", "data");
    let report = run_json(
        &c,
        &["migrate", "data", "--storage-class", "fast", "-o", "json"],
    );
    assert_eq!(report["jobs"].as_array().map(Vec::len), Some(2), "{report}");
    assert!(
        report["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("ReadWriteOncePod")
    );
    assert_holds(&c, "data-fast", &before);
    assert_eq!(template_claims(&c, "web"), ["data-fast"]);
    // The copy and the verification ran where the workload had the volume attached.
    let movers = pods_labelled(&c, "pvc-backup.io/role", "migrate");
    assert_eq!(movers.len(), 2);
    for p in movers {
        assert_eq!(p.spec.unwrap().node_name.as_deref(), Some(node.as_str()));
    }
    assert!(wait_running_with(&c, "web-", "data-fast"));
}

#[test]
fn a_mover_that_cannot_start_stops_the_migration_before_the_workload_is_touched() {
    let c = cluster();
    add_fast_class(&c);
    claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    c.make_mover_unpullable();
    let err = run_failing(&c, &["migrate", "data", "--storage-class", "fast"]);
    assert!(
        err.contains("cannot start") && err.contains("--image"),
        "{err}"
    );
    let gone = c.wait_for(Duration::from_secs(30), |c| {
        c.get::<PersistentVolumeClaim>(c.ns(), "data-fast")
            .is_none()
            && c.list::<k8s_openapi::api::batch::v1::Job>(Some(c.ns()))
                .is_empty()
    });
    assert!(gone, "the new claim or the Job was left behind");
    assert_eq!(template_claims(&c, "web"), ["data"]);
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(1));
    let ours: Vec<String> = web
        .metadata
        .annotations
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with("pvc-backup.io/"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
}

#[test]
fn fake_only_a_migration_into_another_namespace_is_checked_before_anything_is_made() {
    // The real run migrates into another namespace in real_only::migrate; here the refusals,
    // with a second namespace in the same fake API server.
    let c = crate::util::fake_only(
        testcluster::fake::Options::default(),
        "makes a namespace of a fixed name; the real run covers the migration in real_only",
    );
    let lab = "lab";
    c.create_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": lab}}))
        .unwrap();
    c.create_value(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "pvc-backup-deployer", "namespace": lab}}))
        .unwrap();
    claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    let to = ["migrate", "data", "--to-namespace", lab];
    let with = |more: &[&'static str]| -> Vec<&str> {
        to.iter().copied().chain(more.iter().copied()).collect()
    };

    let err = run_failing(&c, &with(&["--keep-name"]));
    assert!(err.contains("--keep-name with --to-namespace"), "{err}");
    let err = run_failing(&c, &["migrate", "data", "--storage-class", "x", "--start"]);
    assert!(
        err.contains("--start applies to a migration into another namespace"),
        "{err}"
    );
    let err = run_failing(
        &c,
        &["migrate", "--rollback", "data", "--to-namespace", lab],
    );
    assert!(err.contains("left the source claim as it was"), "{err}");
    // --start needs the workload there, stopped, and using the claim.
    let err = run_failing(&c, &with(&["--start"]));
    assert!(
        err.contains("deployment/web does not exist in namespace")
            && err.contains("create it first"),
        "{err}"
    );
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": lab},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}))
        .unwrap();
    let err = run_failing(&c, &with(&["--start"]));
    assert!(
        err.contains("has 2 replicas") && err.contains("Scale it to zero first"),
        "{err}"
    );
    // A claim of that name there that is not a migration's copy.
    c.create_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": lab},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
    let err = run_failing(&c, &with(&[]));
    assert!(err.contains("is not a copy of"), "{err}");

    // Nothing was changed: the workload runs, the claim carries no record, no Job was made.
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(1));
    let claim: PersistentVolumeClaim = c.get(c.ns(), "data").unwrap();
    let annotations = claim.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("pvc-backup.io/progress"),
        "{annotations:?}"
    );
    assert!(
        c.list::<k8s_openapi::api::batch::v1::Job>(Some(c.ns()))
            .is_empty()
    );
    assert!(
        c.list::<k8s_openapi::api::batch::v1::Job>(Some(lab))
            .is_empty()
    );
}
