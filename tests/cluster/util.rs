//! What the cluster tests share: a cluster with pvc-backup installed, and running the binary.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use testkit::cluster::{ClaimOptions, FakeCluster, Options};

/// The image the tests name; the fake kubelet runs the local binary for it.
pub const IMAGE: &str = "registry.test/pvc-backup:test";

/// A fake cluster whose kubelet runs this build's binary, with the mover's service account in
/// `default`.
pub fn cluster() -> FakeCluster {
    let c = FakeCluster::start(Options {
        mover: Some(env!("CARGO_BIN_EXE_pvc-backup").into()),
        ..Options::default()
    });
    c.create_value(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "pvc-backup-deployer", "namespace": "default"}}))
        .expect("create the service account");
    c
}

/// A bound claim `name` in `default` with a small tree in it; returns its folder.
pub fn claim_with_data(c: &FakeCluster, name: &str, opts: ClaimOptions) -> std::path::PathBuf {
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
pub fn latest_snapshot(backup: &Path) -> std::path::PathBuf {
    let target = std::fs::read_link(backup.join("latest")).expect("DST/latest");
    backup.join(target)
}
