//! The objects clone, migrate and restore create or change: YAML snapshots (what `--dry-run`
//! shows, reviewed when it changes), round trips through the k8s-openapi types (a field the API
//! would not know cannot pass), and the PersistentVolume patches applied by an independent merge
//! patch implementation.

use std::time::Duration;

use cluster::objects::claim::Role;
use cluster::objects::mover::Placement;
use cluster::objects::repository::RepositoryTarget;
use cluster::objects::volume;
use cluster::objects::wire::Expose;
use cluster::workflow::MoverSettings;
use cluster::workflow::across::{self, AcrossRequest, OtherCluster, WireKeys};
use cluster::workflow::clone::{self, ClassInfo, CloneRequest, Method};
use cluster::workflow::migrate::{self, MigrateRequest};
use cluster::workflow::restore::{self, RestoreRequest};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Secret, Service, Toleration,
};
use serde_json::{Value, json};

fn source(class: &str, mode: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop", "labels": {"app": "shop"},
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.kubernetes.io/storage-provisioner": "nfs.csi.k8s.io",
                "team": "payments"
            }},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "volumeMode": mode,
                 "resources": {"requests": {"storage": "10Gi"}}, "volumeName": "pvc-0ld"},
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

/// The YAML of `objects`, after checking that each document reads back (from the YAML) as its
/// k8s-openapi type and serialises to the same value.
fn checked_yaml(objects: &[Value]) -> String {
    let text = cluster::objects::to_yaml(objects).unwrap();
    let docs: Vec<&str> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(docs.len(), objects.len());
    for (doc, value) in docs.iter().zip(objects) {
        let back = match value["kind"].as_str() {
            Some("PersistentVolumeClaim") => serde_json::to_value(
                serde_saphyr::from_str::<PersistentVolumeClaim>(doc).expect("a claim"),
            ),
            Some("Job") => serde_json::to_value(serde_saphyr::from_str::<Job>(doc).expect("a Job")),
            Some("Secret") => {
                serde_json::to_value(serde_saphyr::from_str::<Secret>(doc).expect("a Secret"))
            }
            Some("Service") => {
                serde_json::to_value(serde_saphyr::from_str::<Service>(doc).expect("a Service"))
            }
            other => panic!("unexpected kind {other:?}"),
        }
        .unwrap();
        assert_eq!(&back, value, "{doc}");
    }
    text
}

#[test]
fn three_copies_of_a_claim_in_use() {
    let request = CloneRequest {
        claim: "data".into(),
        to: "test-data".into(),
        count: 3,
        storage_class: Some("fast".into()),
        size: Some("20Gi".into()),
        method: Method::Auto,
        scale_down: false,
        run: None,
    };
    let plan = clone::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        &[None, None, None],
        Some(ClassInfo {
            csi: true,
            wait_for_consumer: false,
        }),
        pinned(),
        "data-clone-abcde",
    )
    .unwrap();
    insta::assert_snapshot!(checked_yaml(&plan.objects().unwrap()));
}

/// Keys as the wire crate names its files; the content is not a key (the plan only carries it).
fn wire_keys() -> WireKeys {
    let files = |own: &str, peer: &str| {
        vec![
            (format!("{own}.key"), format!("{own} key\n")),
            (format!("{own}.crt"), format!("{own} certificate\n")),
            (format!("{peer}.crt"), format!("{peer} certificate\n")),
        ]
    };
    WireKeys {
        sender: files("sender", "receiver"),
        receiver: files("receiver", "sender"),
    }
}

#[test]
fn a_copy_into_another_namespace() {
    let request = AcrossRequest {
        claim: "data".into(),
        to: "data".into(),
        namespace: "lab".into(),
        storage_class: Some("fast".into()),
        size: None,
        scale_down: false,
        compress: true,
        expose: Expose::ClusterIp,
        address: None,
        via_local: false,
        cluster: None,
        checksum: false,
        role: Role::Clone,
        snapshot: None,
    };
    let plan = across::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        None,
        &wire_keys(),
        "data-clone-abcde",
        pinned(),
        Placement::Anywhere,
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    insta::assert_snapshot!(checked_yaml(&objects));
    // Both movers keep the mover's security context: root with the five capabilities only.
    for job in objects.iter().filter(|o| o["kind"] == "Job") {
        let job: Job = serde_json::from_value(job.clone()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.unwrap().add.unwrap(),
            ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]
        );
        // The keys are mounted read-only, readable by their owner only.
        let keys = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "keys")
            .unwrap();
        assert_eq!(keys.secret.unwrap().default_mode, Some(0o400));
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "keys")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/keys", Some(true))
        );
    }
}

/// The verification of a migration into another namespace: a transfer labelled as a
/// migration's whose receiving mover compares every file by content.
#[test]
fn the_verification_of_a_migration_into_another_namespace() {
    let mut request = migrate::across::MigrateAcrossRequest::transfer("data", "lab");
    request.checksum = true;
    let plan = across::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        None,
        &wire_keys(),
        "data-migrate-abcde",
        Placement::Anywhere,
        Placement::Anywhere,
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    let claim = &objects[0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["metadata"]["labels"]["pvc-backup.io/role"], "migrate");
    let job = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Job" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("Job {name} in {objects:#?}"))
    };
    let args = |name: &str| job(name)["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let receiver: Vec<String> = serde_json::from_value(args("data-migrate-abcde-receive")).unwrap();
    assert!(receiver.contains(&"--checksum".to_owned()), "{receiver:?}");
    assert!(receiver.contains(&"--fsync".to_owned()), "{receiver:?}");
    let sender: Vec<String> = serde_json::from_value(args("data-migrate-abcde-send")).unwrap();
    assert_eq!(sender[..2], ["mover", "send"], "{sender:?}");
    assert_eq!(
        job("data-migrate-abcde-send")["metadata"]["labels"]["pvc-backup.io/role"],
        "migrate"
    );
}

/// Into another cluster through a node port: the receiving side only, since the sending
/// mover's address (a node's, with the port the API server gives the Service) exists once the
/// Service does.
#[test]
fn a_copy_into_another_cluster_through_a_node_port() {
    let request = AcrossRequest {
        claim: "data".into(),
        to: "data".into(),
        namespace: "shop".into(),
        storage_class: None,
        size: None,
        scale_down: false,
        compress: false,
        expose: Expose::NodePort,
        address: None,
        via_local: false,
        cluster: Some(OtherCluster {
            kubeconfig: Some("/etc/other.kubeconfig".into()),
            context: None,
        }),
        checksum: false,
        role: Role::Clone,
        snapshot: None,
    };
    let plan = across::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        None,
        &wire_keys(),
        "data-clone-abcde",
        pinned(),
        Placement::Anywhere,
    )
    .unwrap();
    assert_eq!(plan.sender_to, None);
    let objects = plan.objects().unwrap();
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "PersistentVolumeClaim/shop/data",
            "Secret/shop/data-clone-abcde-receive",
            "Service/shop/pvc-backup-abcde",
            "Job/shop/data-clone-abcde-receive",
            "Secret/shop/data-clone-abcde-send",
        ]
    );
    insta::assert_snapshot!(checked_yaml(&objects));
}

/// Into another cluster through this machine (`--via local`): no Service; both movers listen,
/// the sending one taking the TLS client's part on the connection the command's port-forward
/// opens.
#[test]
fn a_copy_into_another_cluster_through_this_machine() {
    let request = AcrossRequest {
        claim: "data".into(),
        to: "data".into(),
        namespace: "shop".into(),
        storage_class: None,
        size: None,
        scale_down: false,
        compress: false,
        expose: Expose::NodePort,
        address: None,
        via_local: true,
        cluster: Some(OtherCluster {
            kubeconfig: Some("/etc/other.kubeconfig".into()),
            context: None,
        }),
        checksum: false,
        role: Role::Clone,
        snapshot: None,
    };
    let plan = across::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        None,
        &wire_keys(),
        "data-clone-abcde",
        pinned(),
        Placement::Anywhere,
    )
    .unwrap();
    assert!(plan.service.is_none());
    let objects = plan.objects().unwrap();
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "PersistentVolumeClaim/data",
            "Secret/data-clone-abcde-receive",
            "Job/data-clone-abcde-receive",
            "Secret/data-clone-abcde-send",
            "Job/data-clone-abcde-send",
        ]
    );
    let args = plan.sender.args.join(" ");
    assert!(
        args.starts_with("mover send /source --listen 0.0.0.0:7443 --tls-client --keys /keys"),
        "{args}"
    );
    assert!(
        request
            .arguments()
            .ends_with("--to-kubeconfig /etc/other.kubeconfig --via local"),
        "{}",
        request.arguments()
    );
    insta::assert_snapshot!(checked_yaml(&objects));
}

#[test]
fn csi_clones() {
    let request = CloneRequest {
        claim: "data".into(),
        to: "twin".into(),
        count: 2,
        storage_class: None,
        size: None,
        method: Method::Csi,
        scale_down: false,
        run: None,
    };
    let plan = clone::plan(
        &request,
        &settings(),
        &source("ceph-rbd", "Block"),
        &[None, None],
        Some(ClassInfo {
            csi: true,
            wait_for_consumer: true,
        }),
        Placement::Anywhere,
        "data-clone-abcde",
    )
    .unwrap();
    insta::assert_snapshot!(checked_yaml(&plan.objects().unwrap()));
}

#[test]
fn migration_to_another_class() {
    let request = MigrateRequest {
        claim: "data".into(),
        storage_class: "fast".into(),
        workload: None,
        keep_name: true,
        size: None,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let plan = migrate::plan(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        None,
        pinned(),
        "data-migrate-abcde",
    )
    .unwrap();
    insta::assert_snapshot!(checked_yaml(&plan.objects().unwrap()));
}

#[test]
fn migration_of_a_block_claim() {
    let request = MigrateRequest {
        claim: "data".into(),
        storage_class: "fast".into(),
        workload: None,
        keep_name: false,
        size: None,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let plan = migrate::plan(
        &request,
        &settings(),
        &source("ceph-rbd", "Block"),
        None,
        pinned(),
        "data-migrate-abcde",
    )
    .unwrap();
    let objects = plan.objects().unwrap();
    insta::assert_snapshot!(checked_yaml(&objects));
    // Read back through the k8s-openapi types: a Block claim on the new class, and two Jobs
    // that see both claims as devices (never as mounted filesystems) and run the block mover.
    let claim: PersistentVolumeClaim = serde_json::from_value(objects[0].clone()).unwrap();
    let spec = claim.spec.unwrap();
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    let mut verbs = Vec::new();
    for job in &objects[1..] {
        let job: Job = serde_json::from_value(job.clone()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.volume_mounts, None,
            "a block claim mounted as a filesystem"
        );
        let devices: Vec<(String, String)> = c
            .volume_devices
            .clone()
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.device_path))
            .collect();
        assert_eq!(
            devices,
            [
                ("source".to_owned(), "/source".to_owned()),
                ("backup".to_owned(), "/backup".to_owned())
            ]
        );
        let args = c.args.clone().unwrap();
        assert_eq!(args[..4], ["mover", "block", "/source", "/backup"]);
        verbs.push(args[4..].join(" "));
    }
    assert_eq!(verbs, ["--progress json", "--verify-only"]);
}

#[test]
fn restore_and_the_snapshot_listing_of_a_swap() {
    let request = RestoreRequest {
        claim: "data".into(),
        from: "data-backup".into(),
        repository: None,
        host: None,
        snapshot: "2026-11-26T02-00-00Z".into(),
        workload: None,
        swap: false,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let job = restore::restore_job(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        Placement::Anywhere,
        "data-restore-abcde",
    )
    .unwrap();
    let listing = restore::listing_job(
        &request,
        &settings(),
        "shop",
        Placement::Anywhere,
        "data-restore-fghij",
    );
    let objects = vec![
        serde_json::to_value(job.job()).unwrap(),
        serde_json::to_value(listing.job()).unwrap(),
    ];
    insta::assert_snapshot!(checked_yaml(&objects));
}

#[test]
fn the_claim_recreated_on_the_new_volume_keeps_its_name_and_drops_the_old_binding() {
    let original = source("nfs", "Filesystem");
    let claim = volume::rebound_claim(
        &original,
        "pvc-n3w",
        Some("fast"),
        &[(volume::MIGRATED_FROM_VOLUME, "pvc-0ld")],
    );
    let value = serde_json::to_value(&claim).unwrap();
    insta::assert_snapshot!(checked_yaml(&[value]));
}

/// A volume released by its claim, as the API server shows it.
fn released_volume() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pvc-n3w"},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "fast",
            "csi": {"driver": "fast.csi.example.com", "volumeHandle": "h-1"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": "shop", "name": "data-fast", "uid": "1111-2222",
                "resourceVersion": "4242"}
        },
        "status": {"phase": "Released"}
    })
}

#[test]
fn volume_patches_keep_the_volume_and_reserve_it_for_the_claims_name() {
    let mut pv = released_volume();
    let typed: PersistentVolume = serde_json::from_value(pv.clone()).unwrap();
    json_patch::merge(&mut pv, &volume::retain_patch(&typed));
    json_patch::merge(&mut pv, &volume::claim_ref_patch("shop", "data"));
    let after: PersistentVolume = serde_json::from_value(pv.clone()).unwrap();
    assert_eq!(serde_json::to_value(&after).unwrap(), pv);
    let spec = after.spec.clone().unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    let r = spec.claim_ref.unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.kind.as_deref()),
        (Some("shop"), Some("data"), Some("PersistentVolumeClaim"))
    );
    // Without the old claim's uid the volume turns Available for the new claim only.
    assert_eq!((r.uid, r.resource_version), (None, None));
    let annotations = after.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[volume::RECLAIM_POLICY], "Delete");

    // Setting Retain twice keeps the first recorded policy; restoring gives it back.
    json_patch::merge(&mut pv, &volume::retain_patch(&after));
    let again: PersistentVolume = serde_json::from_value(pv.clone()).unwrap();
    assert_eq!(
        again.metadata.annotations.clone().unwrap()[volume::RECLAIM_POLICY],
        "Delete"
    );
    json_patch::merge(&mut pv, &volume::restore_policy_patch(&again).unwrap());
    let restored: PersistentVolume = serde_json::from_value(pv).unwrap();
    assert_eq!(
        restored
            .spec
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Delete")
    );
    let annotations = restored.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key(volume::RECLAIM_POLICY));
    assert!(
        volume::restore_policy_patch(&serde_json::from_value(released_volume()).unwrap()).is_none()
    );
}

#[test]
fn a_csi_clone_across_classes_is_refused_with_the_way_out() {
    let src = source("nfs", "Filesystem");
    let req = cluster::objects::claim::ClaimRequest::like(
        &src,
        "twin",
        cluster::objects::claim::Role::Clone,
        Some("fast"),
        None,
    )
    .unwrap();
    let err = volume::csi_clone(&src, &req).unwrap_err().to_string();
    assert!(err.contains("--method copy"), "{err}");
}

fn excluding() -> MoverSettings {
    MoverSettings {
        excludes: contract::Excludes {
            patterns: vec!["*.tmp".into(), "/cache/".into(), "-odd".into()],
            caches: true,
            delete_excluded: true,
        },
        ..settings()
    }
}

/// The mover's arguments in a rendered Job, as the pod gets them.
fn pod_args(job: &Value) -> Value {
    let job: Job = serde_json::from_value(job.clone()).unwrap();
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    json!(args)
}

#[test]
fn excludes_reach_the_copy_jobs_of_clone_migrate_and_restore() {
    let clone = CloneRequest {
        claim: "data".into(),
        to: "test-data".into(),
        count: 2,
        storage_class: None,
        size: None,
        method: Method::Copy,
        scale_down: false,
        run: None,
    };
    let clone = clone::plan(
        &clone,
        &excluding(),
        &source("nfs", "Filesystem"),
        &[None, None],
        None,
        pinned(),
        "data-clone-abcde",
    )
    .unwrap();
    let migrate = MigrateRequest {
        claim: "data".into(),
        storage_class: "fast".into(),
        workload: None,
        keep_name: false,
        size: None,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let migrate = migrate::plan(
        &migrate,
        &excluding(),
        &source("nfs", "Filesystem"),
        None,
        pinned(),
        "data-migrate-abcde",
    )
    .unwrap();
    let restore = RestoreRequest {
        claim: "data".into(),
        from: "data-backup".into(),
        repository: None,
        host: None,
        snapshot: "latest".into(),
        workload: None,
        swap: false,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let restore = restore::restore_job(
        &restore,
        &excluding(),
        &source("nfs", "Filesystem"),
        Placement::Anywhere,
        "data-restore-abcde",
    )
    .unwrap();
    let jobs = |objects: Vec<Value>| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == "Job")
            .map(pod_args)
            .collect()
    };
    let rendered = json!({
        "clone": jobs(clone.objects().unwrap()),
        "migrate": jobs(migrate.objects().unwrap()),
        "restore": [pod_args(&serde_json::to_value(restore.job()).unwrap())],
    });
    insta::assert_snapshot!(cluster::objects::to_yaml(&[rendered]).unwrap());
}

#[test]
fn excludes_for_a_block_claim_are_refused_with_the_reason() {
    let migrate = MigrateRequest {
        claim: "data".into(),
        storage_class: "fast".into(),
        workload: None,
        keep_name: false,
        size: None,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let err = migrate::plan(
        &migrate,
        &excluding(),
        &source("ceph-rbd", "Block"),
        None,
        pinned(),
        "data-migrate-abcde",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Block claim") && err.contains("--exclude"),
        "{err}"
    );
}

#[test]
fn restore_from_a_repository_mounts_only_the_claim_restored() {
    let request = RestoreRequest {
        claim: "data".into(),
        from: "s3:http://s3.example:8333/backups/shop".into(),
        repository: Some(RepositoryTarget {
            url: "s3:http://s3.example:8333/backups/shop".into(),
            secret: "shop-repository".into(),
            ..RepositoryTarget::default()
        }),
        host: None,
        snapshot: "latest".into(),
        workload: None,
        swap: false,
        scale_timeout: Duration::from_secs(300),
        run: None,
    };
    let job = restore::restore_job(
        &request,
        &settings(),
        &source("nfs", "Filesystem"),
        Placement::Anywhere,
        "data-restore-abcde",
    )
    .unwrap();
    let objects = vec![serde_json::to_value(job.job()).unwrap()];
    insta::assert_snapshot!(checked_yaml(&objects));
    let pod = job.pod_template().spec.unwrap();
    assert_eq!(pod.volumes.unwrap().len(), 1);
    let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/source", None)
    );
    let swap = RestoreRequest {
        swap: true,
        ..request
    };
    let refused = restore::restore_job(
        &swap,
        &settings(),
        &source("nfs", "Filesystem"),
        Placement::Anywhere,
        "data-restore-abcde",
    )
    .unwrap_err();
    assert!(refused.to_string().contains("--swap"), "{refused}");
}
