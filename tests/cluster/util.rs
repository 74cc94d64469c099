//! What the cluster tests share: a cluster with pvc-backup installed, and running the binary.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use testkit::cluster::{ClaimOptions, FakeCluster, Options};
use testkit::oracle::rsync_itemize;

/// The image the tests name; the fake kubelet runs the local binary for it.
pub const IMAGE: &str = "registry.test/pvc-backup:test";

/// A fake cluster whose kubelet runs this build's binary, with the mover's service account in
/// `default`.
pub fn cluster() -> FakeCluster {
    cluster_with(Options::default())
}

/// [`cluster`] with other options (OpenShift's APIs, say).
pub fn cluster_with(options: Options) -> FakeCluster {
    let c = FakeCluster::start(Options {
        mover: Some(env!("CARGO_BIN_EXE_pvc-backup").into()),
        ..options
    });
    c.create_value(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "pvc-backup-deployer", "namespace": "default"}}))
        .expect("create the service account");
    c
}

/// A bound claim `name` in `default` with a small tree in it; returns its folder.
pub fn claim_with_data(c: &FakeCluster, name: &str, opts: ClaimOptions) -> PathBuf {
    let dir = c.add_bound_claim("default", name, opts).expect("claim");
    let t = testkit::tree::Tree::new(&dir);
    t.file(b"a.txt", b"alpha\n")
        .file(b"sub/b.bin", &[7u8; 100_000])
        .symlink(b"sub/link", b"../a.txt")
        .hardlink(b"a.txt", b"sub/a-again")
        .sparse(b"sparse", 5 << 20, &[(1 << 20, b"data")])
        .mode(b"sub/b.bin", 0o640)
        .xattr(b"a.txt", "user.note", b"kept");
    dir
}

/// A cluster with a claim `data` made by [`claim_with_data`]; returns the claim's folder too.
pub fn cluster_with_data(opts: ClaimOptions) -> (FakeCluster, PathBuf) {
    let c = cluster();
    let src = claim_with_data(&c, "data", opts);
    (c, src)
}

/// Adds storage class `fast`: binding at once, volumes deleted with their claims, expandable.
pub fn add_fast_class(c: &FakeCluster) {
    c.add_storage_class("fast", "fast.csi.example.com", false, "Delete", true)
        .unwrap();
}

/// Claim options with another access mode.
pub fn access_mode(mode: &str) -> ClaimOptions {
    ClaimOptions {
        access_mode: mode.into(),
        ..ClaimOptions::default()
    }
}

/// Runs the binary against the cluster.
pub fn run(c: &FakeCluster, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", IMAGE)
        .output()
        .expect("run pvc-backup")
}

pub use testkit::cmd::expect_code;

/// Runs the binary with no cluster to reach (its kubeconfig does not exist).
pub fn run_offline(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("run pvc-backup")
}

/// Runs the binary, which must succeed, and reads what it printed with `-o json`.
pub fn run_json(c: &FakeCluster, args: &[&str]) -> Value {
    let out = run(c, args);
    expect_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs the binary, which must fail with exit code 1, and returns what it said on stderr.
pub fn run_failing(c: &FakeCluster, args: &[&str]) -> String {
    let out = run(c, args);
    expect_code(&out, 1);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The documents of a YAML stream (as `--dry-run` prints them).
pub fn yaml_docs(yaml: &str) -> Vec<&str> {
    yaml.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect()
}

/// The pods in `default` labelled `key=value`.
pub fn pods_labelled(c: &FakeCluster, key: &str, value: &str) -> Vec<Pod> {
    c.list::<Pod>(Some("default"))
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get(key).map(String::as_str) == Some(value))
        })
        .collect()
}

/// Waits until Job `name` in `default` has succeeded.
pub fn job_succeeds(c: &FakeCluster, name: &str) -> bool {
    c.wait_for(Duration::from_secs(60), |c| {
        c.get::<Job>("default", name)
            .and_then(|j| j.status)
            .is_some_and(|s| s.succeeded == Some(1))
    })
}

/// A Deployment `name` with one pod that mounts `claim`; waits until the pod runs and returns
/// its node.
pub fn deployment_using(c: &FakeCluster, name: &str, claim: &str) -> String {
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.test/app:1"}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}}))
        .expect("create deployment");
    let mut node = String::new();
    let ok = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<k8s_openapi::api::core::v1::Pod>(Some("default"))
            .into_iter()
            .filter(|p| {
                p.metadata.labels.as_ref().and_then(|l| l.get("app")) == Some(&name.to_owned())
            })
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .and_then(|p| p.spec.and_then(|s| s.node_name))
            .map(|n| node = n)
            .is_some()
    });
    assert!(ok, "the pod of deployment {name} never ran");
    node
}

/// The newest snapshot folder in a backup folder (through its `latest` link, as a user would).
pub fn latest_snapshot(backup: &Path) -> PathBuf {
    let target = std::fs::read_link(backup.join("latest")).expect("DST/latest");
    backup.join(target)
}

/// Asserts that the newest snapshot in backup claim `backup` holds what `src` holds.
pub fn assert_latest_snapshot_holds(c: &FakeCluster, backup: &str, src: &Path) {
    let dir = c
        .volume_dir("default", backup)
        .unwrap_or_else(|| panic!("claim {backup} has no volume"));
    let diff = rsync_itemize(src, &latest_snapshot(&dir), &[]);
    assert!(
        diff.is_empty(),
        "the snapshot in {backup} differs: {diff:#?}"
    );
}

/// A copy of `dir` made by rsync, to compare with later (the claim's own folder may change).
pub fn reference_copy(dir: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ref");
    let status = std::process::Command::new("rsync")
        .args(["-aHAX", "--numeric-ids"])
        .arg(format!("{}/", dir.display()))
        .arg(format!("{}/", copy.display()))
        .status()
        .expect("run rsync");
    assert!(status.success());
    (tmp, copy)
}

/// Asserts that claim `claim`'s volume holds what `reference` holds.
pub fn assert_holds(c: &FakeCluster, claim: &str, reference: &Path) {
    let dir = c
        .volume_dir("default", claim)
        .unwrap_or_else(|| panic!("claim {claim} has no volume"));
    let diff = rsync_itemize(reference, &dir, &[]);
    assert!(diff.is_empty(), "claim {claim} differs: {diff:#?}");
}
