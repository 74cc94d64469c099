//! `pvc-backup restore` (by copy and by `--swap`) and `pvc-backup rollback` against the fake
//! cluster, with Deployments and OpenShift DeploymentConfigs; data judged by rsync against
//! copies taken when the backups were made.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use serde_json::{Value, json};
use testcluster::fake::{ClaimOptions, Options};

use crate::util::Cluster;
use testkit::oracle::rsync_itemize;

use crate::util::{
    access_mode, assert_holds, claim_with_data, cluster, cluster_with_data, deployment_using,
    expect_code, reference_copy, run, run_failing, run_json,
};

fn backup(c: &Cluster) -> String {
    let report = run_json(c, &["backup", "data", "-o", "json"]);
    report["summary"]["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot in {report}"))
        .to_owned()
}

/// Damages the claim's folder: a file removed, one changed, one added.
fn damage(dir: &Path) {
    std::fs::remove_file(dir.join("sub/b.bin")).unwrap();
    std::fs::write(dir.join("a.txt"), b"garbage\n").unwrap();
    std::fs::write(dir.join("junk"), b"junk\n").unwrap();
}

/// The Deployment a `--dry-run` printed as YAML.
fn shown_deployment(out: &std::process::Output) -> Deployment {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_saphyr::from_str(text.trim_start_matches("---\n")).expect("a Deployment")
}

fn replicas(c: &Cluster, name: &str) -> Option<i32> {
    c.get::<Deployment>(c.ns(), name)?.spec?.replicas
}

#[test]
fn restore_by_copy_stops_the_workload_and_brings_the_snapshot_back() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    deployment_using(&c, "web", "data");
    let (_k1, first) = reference_copy(&src);
    let first_id = backup(&c);
    std::fs::write(src.join("second"), b"2\n").unwrap();
    let (_k2, second) = reference_copy(&src);
    std::thread::sleep(Duration::from_millis(1100));
    backup(&c);

    damage(&src);
    let report = run_json(
        &c,
        &["restore", "data", "--from", "data-backup", "-o", "json"],
    );
    assert_eq!(report["workload"], "deployment/web", "{report}");
    assert_holds(&c, "data", &second);
    assert_eq!(replicas(&c, "web"), Some(1));
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    let annotations = web.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/scaled-down-from"));

    // An older snapshot by name.
    let out = run(
        &c,
        &[
            "restore",
            "data",
            "--from",
            "data-backup",
            "--snapshot",
            &first_id,
        ],
    );
    expect_code(&out, 0);
    assert_holds(&c, "data", &first);

    // A snapshot that does not exist: the mover says so, nothing is changed, the workload runs.
    let out = run(
        &c,
        &[
            "restore",
            "data",
            "--from",
            "data-backup",
            "--snapshot",
            "2001-01-01T00-00-00Z",
        ],
    );
    expect_code(&out, 2);
    assert_holds(&c, "data", &first);
    assert_eq!(replicas(&c, "web"), Some(1));
}

/// A Deployment whose container mounts the claim twice: whole, and one folder of it.
fn web_with_mounts(c: &Cluster) {
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": c.ns()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"],
                    "volumeMounts": [{"name": "data", "mountPath": "/srv"},
                                     {"name": "data", "mountPath": "/etc/app", "subPath": "sub"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}))
        .expect("create deployment");
}

fn template_of(c: &Cluster, api_version: &str, kind: &str, name: &str) -> (Value, PodTemplateSpec) {
    let obj = c
        .get_value(api_version, kind, c.ns(), name)
        .expect("workload");
    let template: PodTemplateSpec =
        serde_json::from_value(obj["spec"]["template"].clone()).expect("a pod template");
    (obj, template)
}

/// (claim of volume `data`, the subPaths of its mounts).
fn data_volume(template: &PodTemplateSpec) -> (String, Vec<Option<String>>) {
    testcluster::objects::claim_and_sub_paths(template, "data")
}

#[test]
fn swap_points_the_deployment_at_the_snapshot_and_rollback_switches_back() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    web_with_mounts(&c);
    let (_keep, at_backup) = reference_copy(&src);
    let id = backup(&c);
    damage(&src);

    let report = run_json(
        &c,
        &[
            "restore",
            "data",
            "--from",
            "data-backup",
            "--swap",
            "-o",
            "json",
        ],
    );
    assert_eq!(report["snapshot"], id.as_str(), "{report}");

    let folder = format!("snapshots/{id}");
    let (obj, template) = template_of(&c, "apps/v1", "Deployment", "web");
    assert_eq!(
        data_volume(&template),
        (
            "data-backup".to_owned(),
            vec![Some(folder.clone()), Some(format!("{folder}/sub"))]
        )
    );
    let annotations = &obj["metadata"]["annotations"];
    assert_eq!(
        annotations["pvc-backup.io/previous-claims"],
        r#"{"data":"data"}"#
    );
    // What the workload now sees is the data as it was at the backup.
    let seen = c.volume_dir(c.ns(), "data-backup").unwrap().join(&folder);
    let diff = rsync_itemize(&at_backup, &seen, &[]);
    assert!(diff.is_empty(), "{diff:#?}");
    let backup_claim: PersistentVolumeClaim = c.get(c.ns(), "data-backup").unwrap();
    assert_eq!(
        backup_claim.metadata.annotations.unwrap_or_default()["pvc-backup.io/swapped-into"],
        format!("deployment/web {folder}")
    );
    // The claim it used is untouched (damaged as it was).
    assert_eq!(std::fs::read(src.join("junk")).unwrap(), b"junk\n");
    // No backup may go into the claim the workload now runs on.
    let err = run_failing(&c, &["backup", "data"]);
    assert!(
        err.contains("in use by deployment/web") && err.contains("--to"),
        "{err}"
    );
    assert!(rsync_itemize(&at_backup, &seen, &[]).is_empty());

    let out = run(&c, &["rollback", "deploy/web", "--dry-run"]);
    expect_code(&out, 0);
    let shown = shown_deployment(&out);
    assert_eq!(
        data_volume(&shown.spec.unwrap().template),
        ("data".to_owned(), vec![None, Some("sub".to_owned())])
    );
    let (_, template) = template_of(&c, "apps/v1", "Deployment", "web");
    assert_eq!(data_volume(&template).0, "data-backup");

    let out = run(&c, &["rollback", "deploy/web"]);
    expect_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("uses claim data again"), "{stdout}");
    let (obj, template) = template_of(&c, "apps/v1", "Deployment", "web");
    assert_eq!(
        data_volume(&template),
        ("data".to_owned(), vec![None, Some("sub".to_owned())])
    );
    let annotations = obj["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/previous-claims"));
    assert!(!annotations.contains_key("pvc-backup.io/swapped-sub-paths"));
    let backup_claim: PersistentVolumeClaim = c.get(c.ns(), "data-backup").unwrap();
    let annotations = backup_claim.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/swapped-into"));

    // Nothing recorded any more: a clear refusal.
    let err = run_failing(&c, &["rollback", "deploy/web"]);
    assert!(err.contains("nothing to switch back"), "{err}");
}

/// A `--scale-down` run killed before its Job started leaves the workload at zero with the
/// count in an annotation; `rollback` gives the count back (what the docs tell users to run).
#[test]
fn rollback_scales_up_a_workload_a_dead_scale_down_left_at_zero() {
    let c = cluster();
    claim_with_data(&c, "data", ClaimOptions::default());
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": c.ns(),
            "annotations": {"pvc-backup.io/scaled-down-from": "2"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}))
        .expect("create deployment");

    let out = run(&c, &["rollback", "deploy/web", "--dry-run"]);
    expect_code(&out, 0);
    let shown = shown_deployment(&out);
    assert_eq!(shown.spec.unwrap().replicas, Some(2));
    assert_eq!(
        replicas(&c, "web"),
        Some(0),
        "a dry run changed the workload"
    );

    let report = run_json(&c, &["rollback", "deploy/web", "-o", "json"]);
    assert_eq!(report["replicas"], 2, "{report}");
    assert_eq!(replicas(&c, "web"), Some(2));
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    let annotations = web.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/scaled-down-from"));
    let ran = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<k8s_openapi::api::core::v1::Pod>(Some(c.ns()))
            .iter()
            .filter(|p| {
                p.metadata.labels.as_ref().and_then(|l| l.get("app")) == Some(&"web".to_owned())
            })
            .count()
            == 2
    });
    assert!(ran, "the workload's pods did not come back:\n{}", c.dump());

    // Nothing recorded any more: a clear refusal.
    let err = run_failing(&c, &["rollback", "deploy/web"]);
    assert!(err.contains("nothing to switch back"), "{err}");
}

fn dc_ready(c: &Cluster, n: i64) -> bool {
    c.wait_for(Duration::from_secs(30), |c| {
        c.get_value("apps.openshift.io/v1", "DeploymentConfig", c.ns(), "shop")
            .is_some_and(|v| v["status"]["readyReplicas"] == n)
    })
}

/// Tests only the fake cluster can run.
mod fake_only {
    use super::*;

    #[test]
    fn a_deployment_config_is_found_from_its_pods_stopped_for_a_copy_and_swapped() {
        let c = crate::util::fake_only(
            Options {
                openshift: true,
                ..Options::default()
            },
            "needs OpenShift's apps.openshift.io API (DeploymentConfigs)",
        );
        let src = claim_with_data(&c, "data", access_mode("ReadWriteMany"));
        c.create_value(
            json!({"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": {"name": "shop", "namespace": c.ns()},
            "spec": {"replicas": 2, "selector": {"app": "shop"}, "triggers": [{"type": "ConfigChange"}],
                "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {
                    "containers": [{"name": "c", "image": "registry.test/shop:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}}),
        )
        .expect("create the DeploymentConfig");
        assert!(dc_ready(&c, 2));
        let (_keep, at_backup) = reference_copy(&src);
        let id = backup(&c);

        // By copy: the DeploymentConfig (found through its ReplicationController) is stopped and
        // gets its two replicas back.
        damage(&src);
        let report = run_json(
            &c,
            &["restore", "data", "--from", "data-backup", "-o", "json"],
        );
        assert_eq!(report["workload"], "deploymentconfig/shop", "{report}");
        assert_holds(&c, "data", &at_backup);
        let (obj, _) = template_of(&c, "apps.openshift.io/v1", "DeploymentConfig", "shop");
        assert_eq!(obj["spec"]["replicas"], 2);
        assert!(dc_ready(&c, 2));

        // By swap, and back.
        let out = run(&c, &["restore", "data", "--from", "data-backup", "--swap"]);
        expect_code(&out, 0);
        let (_, template) = template_of(&c, "apps.openshift.io/v1", "DeploymentConfig", "shop");
        assert_eq!(
            data_volume(&template),
            (
                "data-backup".to_owned(),
                vec![Some(format!("snapshots/{id}"))]
            )
        );
        let out = run(&c, &["rollback", "dc/shop"]);
        expect_code(&out, 0);
        let (_, template) = template_of(&c, "apps.openshift.io/v1", "DeploymentConfig", "shop");
        assert_eq!(data_volume(&template), ("data".to_owned(), vec![None]));
        // Without a workload using it, a swap has nothing to repoint.
        let err = run_failing(
            &c,
            &["restore", "nothing", "--from", "data-backup", "--swap"],
        );
        assert!(err.contains("claim nothing not found"), "{err}");
    }
}
