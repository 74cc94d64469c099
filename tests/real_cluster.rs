//! The cluster commands against a real cluster: the same commands the fake-cluster tests
//! (`tests/cluster`) drive, run by the real binary against a real API server, kubelet, CSI
//! driver and the mover image.
//!
//! No cluster exists where CI runs, so every test is ignored. Run them with
//!
//! ```text
//! KUBECONFIG=~/.kube/config PVC_BACKUP_IMAGE=registry/pvc-backup:tag \
//!     cargo test --test real_cluster -- --ignored --test-threads=1
//! ```
//!
//! Settings, what each test does and the rights it needs: "Testing against a real cluster" in
//! docs/kubernetes.md. Each test works in a namespace of its own, installs pvc-backup there with
//! `pvc-backup manifests`, seeds claims with a tools-image pod, and judges every copy with
//! another tools-image pod's `stat` and `sha256sum` of the target against the source; the
//! namespace and everything in it goes when the test ends, passed or failed.

/// Support of these tests, in `tests/real_cluster/`.
mod real_cluster {
    pub mod namespace;
    pub mod settings;
    pub mod tree;
}

use real_cluster::namespace::TestNamespace;
use real_cluster::settings::Settings;
use real_cluster::tree::{DAMAGE, TREE};
use serde_json::Value;

/// The tree's folder in the newest snapshot of a backup claim, through its `latest` link.
fn latest(tree: &str) -> String {
    format!("latest/{tree}")
}

/// The entries of `pvc-backup list -o json` with `role`.
fn listed(ns: &TestNamespace, role: &str) -> Vec<Value> {
    let list = ns.run_json(&["list"]);
    list["items"]
        .as_array()
        .expect("list items")
        .iter()
        .filter(|e| e["role"] == role)
        .cloned()
        .collect()
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG and PVC_BACKUP_IMAGE, run with --ignored"]
fn a_backup_copies_the_tree_exactly_and_list_shows_it() {
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("data");

    let out = ns.run(&["backup", "data"]);
    testkit::cmd::expect_code(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("pvc-backup: creating claim data-backup")
            && stderr.contains("pvc-backup: creating Job"),
        "the steps were not shown:\n{stderr}"
    );
    assert!(
        stdout.contains("backup of claim data into data-backup: done; snapshot "),
        "{stdout}"
    );

    source.assert_copied_to(
        &ns.listing("data-backup", None, &latest(TREE)),
        "the backup",
    );

    let backups = listed(&ns, "backup");
    assert_eq!(backups.len(), 1, "{backups:#?}");
    assert_eq!(backups[0]["name"], "data-backup");
    assert_eq!(backups[0]["source"], "data");
    assert_eq!(backups[0]["lastRun"]["result"], "ok", "{backups:#?}");
    assert!(
        backups[0]["lastRun"]["snapshot"].is_string(),
        "{backups:#?}"
    );
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG and PVC_BACKUP_IMAGE, run with --ignored"]
fn two_clones_each_hold_the_whole_tree() {
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("data");

    let report = ns.run_json(&["clone", "data", "--to", "copy", "--count", "2"]);
    assert_eq!(
        report["targets"],
        serde_json::json!(["copy-1", "copy-2"]),
        "{report:#}"
    );
    assert_eq!(report["exitCode"], 0, "{report:#}");

    for copy in ["copy-1", "copy-2"] {
        source.assert_copied_to(&ns.listing(copy, None, TREE), copy);
    }
    let clones = listed(&ns, "clone");
    assert_eq!(clones.len(), 2, "{clones:#?}");
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG, PVC_BACKUP_IMAGE and PVC_BACKUP_TEST_OTHER_CLASS"]
fn a_deployments_claim_migrates_to_another_class_and_back() {
    // Said before anything is created when the class is missing.
    let other = Settings::from_env().other_class().to_owned();
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("web-data");
    ns.deployment("web", "web-data");

    let report = ns.run_json(&["migrate", "web-data", "--storage-class", &other]);
    let new_claim = report["nowUsed"].as_str().expect("nowUsed").to_owned();
    assert_ne!(new_claim, "web-data", "{report:#}");
    assert_eq!(report["workload"], "deployment/web", "{report:#}");

    assert_eq!(ns.deployment_claim("web"), (new_claim.clone(), vec![None]));
    let moved = ns.get_claim(&new_claim);
    assert_eq!(
        moved.spec.and_then(|s| s.storage_class_name).as_deref(),
        Some(other.as_str())
    );
    source.assert_copied_to(&ns.listing(&new_claim, None, TREE), "the migrated claim");

    ns.run_json(&["migrate", "--rollback", "web-data"]);
    assert_eq!(ns.deployment_claim("web"), ("web-data".into(), vec![None]));
    source.assert_copied_to(
        &ns.listing("web-data", None, TREE),
        "the claim rolled back to",
    );
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG, PVC_BACKUP_IMAGE and PVC_BACKUP_TEST_OTHER_CLASS"]
fn a_statefulsets_claim_migrates_keeping_its_name_and_back() {
    // Said before anything is created when the class is missing.
    let other = Settings::from_env().other_class().to_owned();
    let ns = TestNamespace::new();
    // The StatefulSet adopts the claim of its template's name, seeded before it starts.
    let source = ns.seeded_claim("data-db-0");
    ns.statefulset("db");
    let first_volume = ns
        .get_claim("data-db-0")
        .spec
        .and_then(|s| s.volume_name)
        .expect("a bound claim");

    let report = ns.run_json(&[
        "migrate",
        "data-db-0",
        "--storage-class",
        &other,
        "--keep-name",
    ]);
    assert_eq!(report["oldVolume"], first_volume.as_str(), "{report:#}");
    let new_volume = report["newVolume"].as_str().expect("newVolume").to_owned();
    ns.statefulset_ready("db");
    let claim = ns.get_claim("data-db-0");
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some(new_volume.as_str())
    );
    let pv = ns.volume(&new_volume);
    assert_eq!(
        pv.spec.and_then(|s| s.storage_class_name).as_deref(),
        Some(other.as_str())
    );
    source.assert_copied_to(&ns.listing("data-db-0", None, TREE), "the migrated claim");

    let back = ns.run_json(&["migrate", "--rollback", "data-db-0"]);
    assert_eq!(back["volume"], first_volume.as_str(), "{back:#}");
    ns.statefulset_ready("db");
    let claim = ns.get_claim("data-db-0");
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some(first_volume.as_str())
    );
    source.assert_copied_to(&ns.listing("data-db-0", None, TREE), "the original volume");
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG and PVC_BACKUP_IMAGE, run with --ignored"]
fn restore_by_copy_then_by_swap_then_rollback() {
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("app-data");
    ns.deployment("app", "app-data");
    let backup = ns.run_json(&["backup", "app-data"]);
    assert_eq!(backup["exitCode"], 0, "{backup:#}");

    ns.tools_pod("damage", "app-data", None, false, DAMAGE, &[]);
    let damaged = ns.listing("app-data", None, TREE);
    assert_ne!(damaged, source, "the damage changed nothing");

    let restored = ns.run_json(&["restore", "app-data", "--from", "app-data-backup"]);
    assert_eq!(restored["exitCode"], 0, "{restored:#}");
    assert_eq!(restored["workload"], "deployment/app", "{restored:#}");
    ns.rolled_out("app");
    source.assert_copied_to(&ns.listing("app-data", None, TREE), "the restored claim");

    let swapped = ns.run_json(&["restore", "app-data", "--from", "app-data-backup", "--swap"]);
    let snapshot = swapped["snapshot"].as_str().expect("snapshot").to_owned();
    let sub_path = format!("snapshots/{snapshot}");
    assert_eq!(
        ns.deployment_claim("app"),
        ("app-data-backup".into(), vec![Some(sub_path.clone())])
    );
    // What the workload's container now sees, mounted the same way.
    source.assert_copied_to(
        &ns.listing("app-data-backup", Some(&sub_path), TREE),
        "the swapped-in snapshot",
    );

    let rolled = ns.run_json(&["rollback", "deployment/app"]);
    assert_eq!(rolled["volumes"][0]["to"], "app-data", "{rolled:#}");
    assert_eq!(ns.deployment_claim("app"), ("app-data".into(), vec![None]));
    source.assert_copied_to(
        &ns.listing("app-data", None, TREE),
        "the claim after rollback",
    );
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG and PVC_BACKUP_IMAGE, run with --ignored"]
fn a_schedule_backs_up_when_its_job_runs_and_unschedule_removes_it() {
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("sched");

    let made = ns.run_json(&["schedule", "sched", "--cron", "0 3 * * *"]);
    let cron_job = made["name"].as_str().expect("name").to_owned();
    assert_eq!(made["target"], "sched-backup", "{made:#}");
    assert!(ns.has_cron_job(&cron_job));
    let schedules = ns.run_json(&["schedules"]);
    let items = schedules["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{schedules:#}");
    assert_eq!(items[0]["name"], cron_job.as_str());
    assert_eq!(items[0]["source"], "sched");
    assert_eq!(items[0]["target"], "sched-backup");
    assert_eq!(items[0]["schedule"], "0 3 * * *");

    // Waiting for the cron time is no test: run the CronJob's Job now, as kubectl would.
    ns.run_cron_job(&cron_job);
    source.assert_copied_to(
        &ns.listing("sched-backup", None, &latest(TREE)),
        "the scheduled backup",
    );

    let removed = ns.run_json(&["unschedule", "sched"]);
    assert_eq!(
        removed["removed"],
        serde_json::json!([cron_job]),
        "{removed:#}"
    );
    assert!(!ns.has_cron_job(&cron_job));
    let schedules = ns.run_json(&["schedules"]);
    assert_eq!(schedules["items"], serde_json::json!([]), "{schedules:#}");
    assert!(
        ns.has_claim("sched-backup"),
        "unschedule must keep the backups"
    );
}

#[test]
#[ignore = "needs a real cluster: set KUBECONFIG, PVC_BACKUP_IMAGE and PVC_BACKUP_TEST_SNAPSHOT_CLASS"]
fn a_backup_from_a_csi_snapshot() {
    let class = Settings::from_env().snapshot_class().to_owned();
    let ns = TestNamespace::new();
    let source = ns.seeded_claim("snap");

    let report = ns.run_json(&[
        "backup",
        "snap",
        "--from-snapshot",
        "--snapshot-class",
        &class,
    ]);
    assert_eq!(report["exitCode"], 0, "{report:#}");
    assert_eq!(report["target"], "snap-backup", "{report:#}");
    source.assert_copied_to(
        &ns.listing("snap-backup", None, &latest(TREE)),
        "the backup from a snapshot",
    );
}
