//! `pvc-backup clone` against the fake cluster: copies by the mover (read once for N copies),
//! CSI clones, the fall-back from one to the other, and clean-up when the mover cannot start.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use testcluster::fake::ClaimOptions;

use crate::util::Cluster;

use crate::util::{
    IMAGE, access_mode, add_fast_class, assert_holds, claim_with_data, cluster, cluster_with_data,
    deployment_using, expect_code, pods_labelled, run, run_failing, run_json, run_offline,
    yaml_docs,
};

fn mover_pods(c: &Cluster) -> Vec<Pod> {
    pods_labelled(c, "pvc-backup.io/role", "clone")
}

#[test]
fn three_copies_next_to_the_workload_from_one_mover_run() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    let node = deployment_using(&c, "web", "data");

    let report = run_json(
        &c,
        &[
            "clone", "data", "--to", "copy", "--count", "3", "--method", "copy", "-o", "json",
        ],
    );
    assert_eq!(report["method"], "copy");
    assert_eq!(
        report["targets"],
        serde_json::json!(["copy-1", "copy-2", "copy-3"])
    );
    assert_eq!(
        report["summaries"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );

    for copy in ["copy-1", "copy-2", "copy-3"] {
        assert_holds(&c, copy, &src);
        let claim: PersistentVolumeClaim = c.get(c.ns(), copy).unwrap();
        let labels = claim.metadata.labels.unwrap_or_default();
        assert_eq!(labels["pvc-backup.io/source"], "data");
        assert_eq!(labels["pvc-backup.io/role"], "clone");
        let last: serde_json::Value = serde_json::from_str(
            &claim.metadata.annotations.unwrap_or_default()["pvc-backup.io/last-run"],
        )
        .unwrap();
        assert_eq!(last["result"], "ok", "{last}");
    }
    // One mover pod, on the workload's node, read the source; the other copies came from the
    // first one.
    let pods = mover_pods(&c);
    assert_eq!(pods.len(), 1);
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    let args = spec.containers[0].args.clone().unwrap().join(" ");
    assert!(args.contains("--also /backup-2 --also /backup-3"), "{args}");
    // The workload was not touched.
    let web: Deployment = c.get(c.ns(), "web").unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(1));

    // A second run brings the copies up to date instead of refusing them.
    std::fs::write(src.join("a.txt"), b"changed\n").unwrap();
    let out = run(
        &c,
        &[
            "clone", "data", "--to", "copy", "--count", "3", "--method", "copy",
        ],
    );
    expect_code(&out, 0);
    assert_holds(&c, "copy-3", &src);
}

#[test]
fn auto_copies_at_once_where_the_class_is_not_csi_and_method_csi_says_why() {
    // An in-tree provisioner (the local cluster's hostpath one) cannot clone: auto copies
    // without trying, and --method csi is refused before anything is made.
    let c = cluster();
    c.add_storage_class("intree", "kubernetes.io/host-path", false, "Delete", true)
        .unwrap();
    let src = claim_with_data(
        &c,
        "data",
        ClaimOptions {
            storage_class: Some("intree".into()),
            ..ClaimOptions::default()
        },
    );
    let report = run_json(&c, &["clone", "data", "--to", "copy", "-o", "json"]);
    assert_eq!(report["method"], "copy", "{report}");
    assert!(report["fellBack"].is_null(), "{report}");
    assert_holds(&c, "copy", &src);

    let err = run_failing(
        &c,
        &["clone", "data", "--to", "csi-only", "--method", "csi"],
    );
    assert!(
        err.contains("not provisioned by a CSI driver") && err.contains("--method copy"),
        "{err}"
    );
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "csi-only").is_none(),
        "a refused clone made a claim"
    );
}

#[test]
fn a_mover_that_cannot_start_leaves_no_claim_and_no_job() {
    let (c, _) = cluster_with_data(ClaimOptions::default());
    c.make_mover_unpullable();
    let err = run_failing(
        &c,
        &[
            "clone", "data", "--to", "copy", "--count", "2", "--method", "copy",
        ],
    );
    assert!(
        err.contains("cannot start") && err.contains("--image"),
        "{err}"
    );
    let gone = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<Job>(Some(c.ns())).is_empty()
            && mover_pods(c).is_empty()
            && c.get::<PersistentVolumeClaim>(c.ns(), "copy-1").is_none()
            && c.get::<PersistentVolumeClaim>(c.ns(), "copy-2").is_none()
    });
    assert!(gone, "the Job, its pod or a claim was left behind");
    assert!(c.get::<PersistentVolumeClaim>(c.ns(), "data").is_some());
}

#[test]
fn a_read_write_once_pod_claim_is_copied_with_scale_down_and_the_workload_returns() {
    let (c, src) = cluster_with_data(access_mode("ReadWriteOncePod"));
    deployment_using(&c, "db", "data");
    let err = run_failing(&c, &["clone", "data", "--to", "copy", "--method", "copy"]);
    assert!(
        err.contains("ReadWriteOncePod") && err.contains("--scale-down"),
        "{err}"
    );
    assert!(c.get::<PersistentVolumeClaim>(c.ns(), "copy").is_none());

    let out = run(
        &c,
        &[
            "clone",
            "data",
            "--to",
            "copy",
            "--method",
            "copy",
            "--scale-down",
        ],
    );
    expect_code(&out, 0);
    assert_holds(&c, "copy", &src);
    let db: Deployment = c.get(c.ns(), "db").unwrap();
    assert_eq!(db.spec.unwrap().replicas, Some(1));
    let annotations = db.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("pvc-backup.io/scaled-down-from"));
    let back = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<Pod>(Some(c.ns())).iter().any(|p| {
            p.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("db-")
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    });
    assert!(back, "the workload did not run again");
}

#[test]
fn dry_runs_print_objects_kubernetes_accepts_and_create_nothing() {
    use k8s_openapi::api::batch::v1::Job;
    // Without a cluster at all.
    let out = run_offline(&[
        "clone",
        "data",
        "--to",
        "copy",
        "--count",
        "2",
        "--method",
        "copy",
        "--size",
        "2Gi",
        "--dry-run=client",
        "-n",
        "shop",
        "--image",
        IMAGE,
    ]);
    expect_code(&out, 0);
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_docs(&yaml);
    assert_eq!(docs.len(), 3, "{yaml}");
    for (doc, name) in docs[..2].iter().zip(["copy-1", "copy-2"]) {
        let claim: PersistentVolumeClaim = serde_saphyr::from_str(doc).expect("a claim");
        assert_eq!(claim.metadata.name.as_deref(), Some(name));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("shop"));
    }
    let job: Job = serde_saphyr::from_str(docs[2]).expect("a Job");
    let args = job.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.join(" ").ends_with("--also /backup-2"), "{args:?}");

    // Reading the cluster, changing nothing.
    let c = cluster();
    add_fast_class(&c);
    claim_with_data(&c, "data", ClaimOptions::default());
    let out = run(
        &c,
        &["migrate", "data", "--storage-class", "fast", "--dry-run"],
    );
    expect_code(&out, 0);
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_docs(&yaml);
    assert_eq!(docs.len(), 3, "{yaml}");
    let claim: PersistentVolumeClaim = serde_saphyr::from_str(docs[0]).expect("a claim");
    assert_eq!(
        claim.spec.unwrap().storage_class_name.as_deref(),
        Some("fast")
    );
    let verify: Job = serde_saphyr::from_str(docs[2]).expect("a Job");
    let args = verify.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args.join(" "), "mover verify /backup --against /source");
    let out = run(&c, &["restore", "data", "--from", "data", "--dry-run"]);
    expect_code(&out, 1);
    let list = run_json(
        &c,
        &["clone", "data", "--to", "copy", "--dry-run", "-o", "json"],
    );
    assert_eq!(list["kind"], "List");
    let claims: Vec<String> = c
        .list::<PersistentVolumeClaim>(Some(c.ns()))
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(claims, ["data"], "a dry run created claims");
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
}

#[test]
fn a_copy_into_a_namespace_that_is_not_there_is_refused_before_anything_is_made() {
    use k8s_openapi::api::core::v1::Secret;
    let (c, _) = cluster_with_data(ClaimOptions::default());
    let err = run_failing(
        &c,
        &[
            "clone",
            "data",
            "--to",
            "copy",
            "--to-namespace",
            "pvcb-no-such-namespace",
        ],
    );
    assert!(
        err.contains("namespace pvcb-no-such-namespace (--to-namespace) does not exist")
            && err.contains("nothing was changed"),
        "{err}"
    );
    // The source's own namespace is no other namespace.
    let err = run_failing(
        &c,
        &["clone", "data", "--to", "copy", "--to-namespace", c.ns()],
    );
    assert!(
        err.contains("own namespace") && err.contains("leave --to-namespace out"),
        "{err}"
    );
    let ours = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.is_some_and(|l| l.contains_key("pvc-backup.io/role"))
    };
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
    assert!(
        !c.list::<Secret>(Some(c.ns()))
            .iter()
            .any(|s| ours(s.metadata.labels.as_ref())),
        "a refused copy made a Secret"
    );
    let claims: Vec<String> = c
        .list::<PersistentVolumeClaim>(Some(c.ns()))
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(claims, ["data"]);
}

#[test]
fn the_flags_of_a_copy_between_two_movers_are_checked_before_anything_is_made() {
    let (c, _) = cluster_with_data(ClaimOptions::default());
    let err = run_failing(
        &c,
        &["clone", "data", "--to", "copy", "--expose", "nodeport"],
    );
    assert!(
        err.contains("--expose applies to a copy between two movers"),
        "{err}"
    );
    let err = run_failing(
        &c,
        &[
            "clone",
            "data",
            "--to",
            "copy",
            "--to-namespace",
            "lab",
            "--to-address",
            "node-1:30000",
        ],
    );
    assert!(err.contains("--to-address \"node-1:30000\""), "{err}");
    let missing = c.ns().to_owned() + "-no-such.kubeconfig";
    let err = run_failing(
        &c,
        &["clone", "data", "--to", "copy", "--to-kubeconfig", &missing],
    );
    assert!(
        err.contains("cannot read the kubeconfig") && err.contains(&missing),
        "{err}"
    );
    // A ClusterIP is not reached from another cluster.
    let kubeconfig = c.kubeconfig().to_str().unwrap().to_owned();
    let err = run_failing(
        &c,
        &[
            "clone",
            "data",
            "--to",
            "copy",
            "--to-kubeconfig",
            &kubeconfig,
            "--expose",
            "clusterip",
        ],
    );
    assert!(err.contains("--expose clusterip into"), "{err}");
    // Through this machine no mover dials: nothing to expose, no address to dial.
    for (flag, value) in [("--expose", "nodeport"), ("--to-address", "node-1")] {
        let err = run_failing(
            &c,
            &[
                "clone",
                "data",
                "--to",
                "copy",
                "--to-namespace",
                "lab",
                "--via",
                "local",
                flag,
                value,
            ],
        );
        assert!(err.contains(&format!("{flag} with --via local")), "{err}");
    }
    let err = run_failing(&c, &["clone", "data", "--to", "copy", "--via", "local"]);
    assert!(
        err.contains("--via applies to a copy between two movers"),
        "{err}"
    );
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
}

/// Tests only the fake cluster can run.
mod fake_only {
    use super::*;
    use testcluster::fake::Options;

    #[test]
    fn auto_falls_back_to_a_copy_when_the_driver_cannot_clone() {
        let c = crate::util::fake_only(
            Options::default(),
            "needs a CSI driver that cannot clone; the local cluster runs no CSI driver",
        );
        c.add_storage_class("plain", "plain.csi.example.com", false, "Delete", true)
            .unwrap();
        let src = claim_with_data(
            &c,
            "data",
            ClaimOptions {
                storage_class: Some("plain".into()),
                ..ClaimOptions::default()
            },
        );
        let report = run_json(
            &c,
            &[
                "clone",
                "data",
                "--to",
                "copy",
                "--count",
                "2",
                "--start-timeout",
                "3",
                "-o",
                "json",
            ],
        );
        assert_eq!(report["method"], "copy", "{report}");
        let why = report["fellBack"].as_str().unwrap_or_default();
        assert!(why.contains("did not bind"), "{report}");
        for copy in ["copy-1", "copy-2"] {
            assert_holds(&c, copy, &src);
            let claim: PersistentVolumeClaim = c.get(c.ns(), copy).unwrap();
            assert!(claim.spec.unwrap().data_source.is_none());
        }

        // --method csi says why and leaves nothing behind.
        let err = run_failing(
            &c,
            &[
                "clone",
                "data",
                "--to",
                "csi-only",
                "--method",
                "csi",
                "--start-timeout",
                "3",
            ],
        );
        assert!(
            err.contains("did not bind") && err.contains("--method copy"),
            "{err}"
        );
        let gone = c.wait_for(Duration::from_secs(20), |c| {
            c.get::<PersistentVolumeClaim>(c.ns(), "csi-only").is_none()
        });
        assert!(gone, "the failed clone claim was left behind");
    }

    #[test]
    fn csi_clone_is_a_claim_with_a_data_source_and_no_mover() {
        // The local cluster's in-tree hostpath provisioner cannot clone.
        let c = crate::util::fake_only(Options::default(), "needs a CSI driver that clones claims");
        let src = crate::util::claim_with_data(&c, "data", ClaimOptions::default());
        let out = run(&c, &["clone", "data", "--to", "twin", "--method", "csi"]);
        expect_code(&out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("CSI clone of claim data: twin"), "{stdout}");
        let twin: PersistentVolumeClaim = c.get(c.ns(), "twin").unwrap();
        let ds = twin.spec.unwrap().data_source.expect("a dataSource");
        assert_eq!(
            (ds.kind.as_str(), ds.name.as_str()),
            ("PersistentVolumeClaim", "data")
        );
        assert_holds(&c, "twin", &src);
        assert!(c.list::<Job>(Some(c.ns())).is_empty());

        // `auto` in the same CSI class clones too.
        let report = run_json(&c, &["clone", "data", "--to", "twin2", "-o", "json"]);
        assert_eq!(report["method"], "csi", "{report}");
        assert_holds(&c, "twin2", &src);
    }
}
