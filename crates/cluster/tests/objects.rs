//! The objects the backup and schedule workflows create: YAML snapshots (what users see with
//! `--dry-run`, reviewed when it changes) and round trips through the k8s-openapi types (a field
//! the API would not know cannot pass).

use std::collections::BTreeMap;

use cluster::objects::mover::Placement;
use cluster::security::Privilege;
use cluster::workflow::MoverSettings;
use cluster::workflow::backup::{self, BackupRequest};
use cluster::workflow::schedule::{self, ScheduleRequest};
use contract::Retention;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Toleration};

fn source(mode: &str, access: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"accessModes": [access], "storageClassName": "nfs", "volumeMode": mode,
                 "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}}
    }))
    .unwrap()
}

fn settings() -> MoverSettings {
    MoverSettings {
        image: "registry.example/pvc-backup:1.0.0".into(),
        ..MoverSettings::default()
    }
}

fn request() -> BackupRequest {
    BackupRequest {
        claim: "data".into(),
        subdir: Some("www".into()),
        retention: Retention {
            daily: Some(7),
            weekly: Some(4),
            ..Retention::default()
        },
        ..BackupRequest::default()
    }
}

fn pinned() -> Placement {
    Placement::Node {
        node: "worker-2".into(),
        tolerations: vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }],
    }
}

fn yaml(objects: &[serde_json::Value]) -> String {
    cluster::objects::to_yaml(objects).unwrap()
}

#[test]
fn backup_of_a_claim_in_use() {
    let plan = backup::plan(
        &request(),
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        None,
        pinned(),
        "data-backup-abcde",
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    insta::assert_snapshot!(yaml(&objects));
    let claim: PersistentVolumeClaim = serde_json::from_value(objects[0].clone()).unwrap();
    assert_eq!(serde_json::to_value(&claim).unwrap(), objects[0]);
    let job: Job = serde_json::from_value(objects[1].clone()).unwrap();
    assert_eq!(serde_json::to_value(&job).unwrap(), objects[1]);
}

/// OpenShift admits the root mover with its own SCC or not at all; an unprivileged mover is left
/// to the namespace's default SCC, which a required SCC would override.
#[test]
fn only_the_root_mover_asks_for_its_scc() {
    let annotations = |privilege| {
        let settings = MoverSettings {
            privilege,
            ..settings()
        };
        let plan = backup::plan(
            &request(),
            &settings,
            &source("Filesystem", "ReadWriteOnce"),
            None,
            pinned(),
            "data-backup-abcde",
        )
        .unwrap();
        let job: Job = serde_json::from_value(plan.objects().unwrap()[1].clone()).unwrap();
        job.spec.unwrap().template.metadata.unwrap().annotations
    };
    assert_eq!(
        annotations(Privilege::Mover),
        Some(BTreeMap::from([(
            "openshift.io/required-scc".to_owned(),
            "pvc-backup-mover".to_owned()
        )]))
    );
    assert_eq!(annotations(Privilege::Unprivileged { uid: None }), None);
}

#[test]
fn backup_of_a_block_claim_from_a_snapshot() {
    let mut r = request();
    r.subdir = None;
    r.from_snapshot = true;
    r.snapshot_class = Some("csi-snap".into());
    let plan = backup::plan(
        &r,
        &settings(),
        &source("Block", "ReadWriteOnce"),
        None,
        pinned(),
        "data-backup-abcde",
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    insta::assert_snapshot!(yaml(&objects));
    let job: Job = serde_json::from_value(objects[3].clone()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    // A snapshot's claim is attached nowhere: no pinning.
    assert!(pod.affinity.is_none());
    assert_eq!(
        pod.containers[0].volume_devices.as_ref().unwrap()[0].device_path,
        "/source"
    );
}

#[test]
fn scheduled_backup_prefers_the_workloads_node() {
    let r = ScheduleRequest {
        backup: request(),
        cron: "0 2 * * *".into(),
        time_zone: Some("Europe/Berlin".into()),
        name: None,
    };
    let placement = Placement::NextTo {
        labels: BTreeMap::from([("app".to_owned(), "shop-db".to_owned())]),
        tolerations: Vec::new(),
    };
    let plan = schedule::plan(
        &r,
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        Some(&source("Filesystem", "ReadWriteOnce")),
        placement,
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    assert_eq!(objects.len(), 1, "the existing claim is not made again");
    insta::assert_snapshot!(yaml(&objects));
    let cron: CronJob = serde_json::from_value(objects[0].clone()).unwrap();
    assert_eq!(serde_json::to_value(&cron).unwrap(), objects[0]);
}

#[test]
fn a_size_below_the_source_is_refused_before_anything_is_made() {
    let mut r = request();
    r.size = Some("5Gi".into());
    let err = backup::plan(
        &r,
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        None,
        Placement::Anywhere,
        "j",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("smaller than claim data's capacity 10Gi"),
        "{err}"
    );
}

#[test]
fn excludes_reach_the_backup_and_the_scheduled_backup() {
    let settings = MoverSettings {
        excludes: contract::Excludes {
            patterns: vec!["*.log".into(), "/tmp/".into()],
            caches: true,
            delete_excluded: false,
        },
        ..settings()
    };
    let plan = backup::plan(
        &request(),
        &settings,
        &source("Filesystem", "ReadWriteOnce"),
        None,
        pinned(),
        "data-backup-abcde",
    )
    .unwrap();
    let job: Job = serde_json::from_value(plan.objects().unwrap()[1].clone()).unwrap();
    let backup_args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let r = ScheduleRequest {
        backup: request(),
        cron: "0 2 * * *".into(),
        time_zone: None,
        name: None,
    };
    let plan = schedule::plan(
        &r,
        &settings,
        &source("Filesystem", "ReadWriteOnce"),
        Some(&source("Filesystem", "ReadWriteOnce")),
        Placement::Anywhere,
    )
    .unwrap();
    let cron: CronJob = serde_json::from_value(plan.objects().unwrap()[0].clone()).unwrap();
    let scheduled_args = cron
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let rendered = serde_json::json!({"backup": backup_args, "schedule": scheduled_args});
    insta::assert_snapshot!(yaml(&[rendered]));
    // A block claim is copied as a device: excludes make no sense there.
    let err = backup::plan(
        &request(),
        &settings,
        &source("Block", "ReadWriteOnce"),
        None,
        pinned(),
        "data-backup-abcde",
    )
    .unwrap_err();
    assert!(err.to_string().contains("Block claim"), "{err}");
}
