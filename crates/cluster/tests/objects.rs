//! The objects the backup and schedule workflows create: YAML snapshots (what users see with
//! `--dry-run`, reviewed when it changes) and round trips through the k8s-openapi types (a field
//! the API would not know cannot pass).

use std::collections::BTreeMap;

use cluster::objects::mover::Placement;
use cluster::objects::repository::RepositoryTarget;
use cluster::security::Privilege;
use cluster::workflow::MoverSettings;
use cluster::workflow::backup::{self, BackupRequest};
use cluster::workflow::schedule::{self, ScheduleRequest};
use contract::Retention;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Toleration};

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

fn into_repository(mut r: BackupRequest) -> BackupRequest {
    r.repository = Some(RepositoryTarget {
        url: "s3:http://s3.example:8333/backups/shop".into(),
        secret: "shop-repository".into(),
        ..RepositoryTarget::default()
    });
    r.init = true;
    r
}

#[test]
fn backup_into_a_repository_mounts_only_the_source() {
    let plan = backup::plan(
        &into_repository(request()),
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        None,
        pinned(),
        "data-backup-abcde",
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    assert_eq!(objects.len(), 1, "no backup claim is made");
    insta::assert_snapshot!(yaml(&objects));
    let job: Job = serde_json::from_value(objects[0].clone()).unwrap();
    assert_eq!(serde_json::to_value(&job).unwrap(), objects[0]);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let volumes = pod.volumes.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data"
    );
    let c = &pod.containers[0];
    let security = c.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security
            .capabilities
            .as_ref()
            .unwrap()
            .add
            .as_ref()
            .unwrap()
            .len(),
        5
    );
    let args = c.args.as_ref().unwrap();
    let host = args.iter().position(|a| a == "--host").unwrap();
    assert_eq!(
        args[host + 1],
        "shop/data",
        "one series per namespace and claim"
    );
    // The Secret's values never appear in the object, only references to its keys.
    let env = c.env.as_ref().unwrap();
    let keys: Vec<(&str, &str)> = env
        .iter()
        .map(|e| {
            assert!(e.value.is_none());
            let r = e
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!(r.name, "shop-repository");
            (e.name.as_str(), r.key.as_str())
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("RESTIC_PASSWORD", "RESTIC_PASSWORD"),
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ]
    );
}

#[test]
fn a_rest_repository_needs_only_the_password() {
    let mut r = into_repository(request());
    r.repository.as_mut().unwrap().url = "rest:http://rest.example:8000/shop".into();
    let plan = backup::plan(
        &r,
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        None,
        Placement::Anywhere,
        "data-backup-abcde",
    )
    .unwrap();
    let env = plan.job.pod_template().spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["RESTIC_PASSWORD"]);
}

#[test]
fn a_repository_backup_refuses_what_only_a_backup_claim_has() {
    let plan = |r: BackupRequest, mode: &str| {
        backup::plan(
            &r,
            &settings(),
            &source(mode, "ReadWriteOnce"),
            None,
            Placement::Anywhere,
            "data-backup-abcde",
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let mut to = into_repository(request());
    to.to = Some("data-copy".into());
    assert!(plan(to, "Filesystem").contains("--to"));
    assert!(plan(into_repository(request()), "Block").contains("Block claim"));
    let mut bad = into_repository(request());
    bad.repository.as_mut().unwrap().url = "s3:bucket/shop".into();
    assert!(plan(bad, "Filesystem").contains("s3:http"));
    let mut init = request();
    init.init = true;
    assert!(plan(init, "Filesystem").contains("--repository"));
}

#[test]
fn scheduled_backup_into_a_repository() {
    let r = ScheduleRequest {
        backup: into_repository(request()),
        cron: "0 2 * * *".into(),
        time_zone: None,
        name: None,
    };
    let plan = schedule::plan(
        &r,
        &settings(),
        &source("Filesystem", "ReadWriteOnce"),
        None,
        Placement::Anywhere,
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    assert_eq!(objects.len(), 1, "no backup claim is made");
    insta::assert_snapshot!(yaml(&objects));
    let cron: CronJob = serde_json::from_value(objects[0].clone()).unwrap();
    assert_eq!(serde_json::to_value(&cron).unwrap(), objects[0]);
    assert_eq!(cron.metadata.name.as_deref(), Some("data-repository"));
}

#[test]
fn the_repository_secret_is_checked_for_every_key() {
    let target = RepositoryTarget {
        url: "s3:http://s3.example:8333/backups/shop".into(),
        secret: "shop-repository".into(),
        ..RepositoryTarget::default()
    };
    let missing = target.check_secret("shop", None).unwrap_err().to_string();
    assert!(missing.contains("Secret shop-repository not found in namespace shop"));
    let secret = |keys: &[(&str, &str)]| -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop-repository", "namespace": "shop"},
            "stringData": keys.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }))
        .unwrap()
    };
    let partial = secret(&[("RESTIC_PASSWORD", "pw"), ("AWS_ACCESS_KEY_ID", "id")]);
    let e = target
        .check_secret("shop", Some(&partial))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no AWS_SECRET_ACCESS_KEY"), "{e}");
    let empty = secret(&[
        ("RESTIC_PASSWORD", ""),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "key"),
    ]);
    assert!(target.check_secret("shop", Some(&empty)).is_err());
    let full = secret(&[
        ("RESTIC_PASSWORD", "pw"),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "key"),
    ]);
    target.check_secret("shop", Some(&full)).unwrap();
}
