//! What the cluster tests share: a cluster with pvc-backup installed, and running the binary.
//!
//! Every test runs against the fake cluster of `testcluster`, and, with
//! `PVC_BACKUP_TEST_CLUSTER=real` (scripts/test.sh sets it after `scripts/local-cluster.sh up`),
//! against a real one: Kubernetes' own API server, controllers, scheduler and a kubelet that runs
//! the pvc-backup image. Tests in a `fake_only` module need what one real node cannot give
//! (two nodes, a CSI driver that clones or snapshots, OpenShift's APIs); each says why.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use testcluster::fake::{ApiError, ClaimOptions, FakeCluster, Options};
use testcluster::real::{RealCluster, Settings};
use testkit::oracle::rsync_itemize;

/// The image the tests name on the fake cluster; its kubelet runs the local binary for it.
pub const IMAGE: &str = "registry.test/pvc-backup:test";

/// The cluster a test runs against: the fake one, or one namespace of a real one.
pub struct Cluster {
    backend: Backend,
    /// The image the binary is told to run the mover with.
    image: std::cell::RefCell<String>,
}

enum Backend {
    /// `testcluster`'s fake cluster, its kubelet running this build's binary.
    Fake(FakeCluster),
    /// A namespace of a real cluster.
    Real(Box<RealCluster>),
}

macro_rules! both {
    ($self:ident, $c:ident => $e:expr) => {
        match &$self.backend {
            Backend::Fake($c) => $e,
            Backend::Real($c) => $e,
        }
    };
}

impl Cluster {
    /// The namespace the test works in: `default` on the fake cluster, a fresh one on a real one.
    pub fn ns(&self) -> &str {
        match &self.backend {
            Backend::Fake(_) => "default",
            Backend::Real(r) => r.ns(),
        }
    }

    /// The pvc-backup image the binary runs the mover with.
    pub fn image(&self) -> String {
        self.image.borrow().clone()
    }

    /// From now on the mover's image cannot be pulled: the fake is told so; a real node has no
    /// registry to pull from, so the binary is given an image the node does not hold.
    pub fn make_mover_unpullable(&self) {
        match &self.backend {
            Backend::Fake(f) => f.set_unpullable(IMAGE),
            Backend::Real(_) => *self.image.borrow_mut() = "localhost/pvc-backup:absent".into(),
        }
    }

    /// Holds cluster-wide concern `what` until the value is dropped, waiting for any other test
    /// holding it (`RealCluster::alone_with`); the fake cluster is the test's own, so nothing.
    pub fn alone_with(&self, what: &str) -> Option<testcluster::real::Alone> {
        match &self.backend {
            Backend::Fake(_) => None,
            Backend::Real(r) => Some(r.alone_with(what)),
        }
    }

    /// An image for workloads that sleep with a claim mounted.
    pub fn app_image(&self) -> String {
        match &self.backend {
            Backend::Fake(_) => "registry.test/app:1".into(),
            Backend::Real(r) => r.settings().tools_image.clone(),
        }
    }

    /// The fake cluster's plain-HTTP URL (fake-only tests use it with curl).
    pub fn url(&self) -> &str {
        match &self.backend {
            Backend::Fake(f) => f.url(),
            Backend::Real(_) => panic!("a real cluster has no plain-HTTP URL"),
        }
    }

    /// The nodes' names.
    pub fn nodes(&self) -> Vec<String> {
        match &self.backend {
            Backend::Fake(_) => vec!["node-a".into(), "node-b".into()],
            Backend::Real(r) => r.nodes(),
        }
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        both!(self, c => c.kubeconfig())
    }

    /// A client (call inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        both!(self, c => c.client())
    }

    /// An object, typed.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
        K::Scope: 'static,
    {
        both!(self, c => c.get(namespace, name))
    }

    /// Objects of a kind, typed.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
        K::Scope: 'static,
    {
        both!(self, c => c.list(namespace))
    }

    /// An object as JSON.
    pub fn get_value(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        both!(self, c => c.get_value(api_version, kind, ns, name))
    }

    /// Creates an object given as JSON.
    pub fn create_value(&self, obj: Value) -> Result<Value, ApiError> {
        both!(self, c => c.create_value(obj))
    }

    /// The folder (or image file) of a bound claim's volume.
    pub fn volume_dir(&self, namespace: &str, claim: &str) -> Option<PathBuf> {
        both!(self, c => c.volume_dir(namespace, claim))
    }

    /// The folder (or image file) of a PersistentVolume.
    pub fn pv_path(&self, pv: &str) -> Option<PathBuf> {
        both!(self, c => c.pv_path(pv))
    }

    /// Adds a StorageClass.
    pub fn add_storage_class(
        &self,
        name: &str,
        provisioner: &str,
        wait_for_first_consumer: bool,
        reclaim_policy: &str,
        allow_expansion: bool,
    ) -> Result<(), ApiError> {
        both!(self, c => c.add_storage_class(name, provisioner, wait_for_first_consumer, reclaim_policy, allow_expansion))
    }

    /// Makes a claim bound to a fresh volume; returns its folder.
    pub fn add_bound_claim(
        &self,
        ns: &str,
        name: &str,
        opts: ClaimOptions,
    ) -> Result<PathBuf, ApiError> {
        both!(self, c => c.add_bound_claim(ns, name, opts))
    }

    /// A static volume reserved for claim `name` of `ns`, which a command creates: the real
    /// cluster's provisioner makes no Block volumes. Returns its folder or image file.
    pub fn add_volume_for(
        &self,
        ns: &str,
        name: &str,
        opts: ClaimOptions,
    ) -> Result<PathBuf, ApiError> {
        match &self.backend {
            Backend::Real(r) => r.add_volume_for(ns, name, opts),
            Backend::Fake(_) => panic!("add_volume_for is for the real cluster"),
        }
    }

    /// Creates the Job a CronJob would create now; returns its name.
    pub fn fire_cronjob(&self, ns: &str, name: &str) -> Result<String, ApiError> {
        both!(self, c => c.fire_cronjob(ns, name))
    }

    /// What to print when a test fails.
    pub fn dump(&self) -> String {
        both!(self, c => c.dump())
    }

    /// Polls `done` until it holds or `timeout` passes (on a real cluster at least two minutes:
    /// real pods take seconds to start, not milliseconds); returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let (timeout, every) = match &self.backend {
            Backend::Fake(_) => (timeout, Duration::from_millis(20)),
            Backend::Real(_) => (
                timeout.max(Duration::from_secs(120)),
                Duration::from_millis(250),
            ),
        };
        let start = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(every);
        }
    }
}

/// A cluster with the mover's service account in the test's namespace: the fake one, or a real
/// one when `PVC_BACKUP_TEST_CLUSTER=real`.
pub fn cluster() -> Cluster {
    cluster_with(Options::default())
}

/// [`cluster`] with other options for the fake cluster (OpenShift's APIs, say).
pub fn cluster_with(options: Options) -> Cluster {
    let c = match Settings::from_env() {
        Some(settings) => Cluster {
            image: settings.image.clone().into(),
            backend: Backend::Real(Box::new(RealCluster::start(settings))),
        },
        None => Cluster {
            image: IMAGE.to_owned().into(),
            backend: Backend::Fake(FakeCluster::start(Options {
                mover: Some(env!("CARGO_BIN_EXE_pvc-backup").into()),
                ..options
            })),
        },
    };
    c.create_value(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "pvc-backup-deployer", "namespace": c.ns()}}))
        .expect("create the service account");
    c
}

/// A fake cluster for a test that only the fake can run; on a real cluster it panics with `why`
/// (scripts/test.sh leaves `fake_only` tests out of the real run).
pub fn fake_only(options: Options, why: &str) -> Cluster {
    assert!(
        Settings::from_env().is_none(),
        "this test runs on the fake cluster only: {why}"
    );
    cluster_with(options)
}

/// A bound claim `name` with a small tree in it; returns its folder. As root the tree also has
/// other owners, a setgid folder, an ACL and a device-free mix of modes, so that every copy the
/// tests judge keeps them.
pub fn claim_with_data(c: &Cluster, name: &str, opts: ClaimOptions) -> PathBuf {
    let dir = c.add_bound_claim(c.ns(), name, opts).expect("claim");
    let t = testkit::tree::Tree::new(&dir);
    t.file(b"a.txt", b"alpha\n")
        .file(b"sub/b.bin", &[7u8; 100_000])
        .symlink(b"sub/link", b"../a.txt")
        .hardlink(b"a.txt", b"sub/a-again")
        .sparse(b"sparse", 5 << 20, &[(1 << 20, b"data")])
        .mode(b"sub/b.bin", 0o640)
        .xattr(b"a.txt", "user.note", b"kept");
    if testkit::skip::is_root() {
        t.file(b"owned/by-1001", b"one")
            .owner(b"owned/by-1001", 1001, 1002)
            .mode(b"owned/by-1001", 0o600)
            .dir(b"owned/dir-2002")
            .owner(b"owned/dir-2002", 2002, 2003)
            .mode(b"owned/dir-2002", 0o2750)
            .symlink(b"owned/link-3003", b"by-1001")
            .owner(b"owned/link-3003", 3003, 3004)
            .owner(b"owned", 1001, 1002);
        if testkit::skip::have_tool("setfacl") {
            t.acl(b"sub/b.bin", &["-m", "u:4321:rw,g:765:r"]);
        }
    }
    dir
}

/// A cluster with a claim `data` made by [`claim_with_data`]; returns the claim's folder too.
pub fn cluster_with_data(opts: ClaimOptions) -> (Cluster, PathBuf) {
    let c = cluster();
    let src = claim_with_data(&c, "data", opts);
    (c, src)
}

/// Adds storage class `fast`: binding at once, volumes deleted with their claims, expandable.
pub fn add_fast_class(c: &Cluster) {
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

/// Runs the binary against the cluster (in the test's namespace, its kubeconfig's).
pub fn run(c: &Cluster, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
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
pub fn run_json(c: &Cluster, args: &[&str]) -> Value {
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
pub fn run_failing(c: &Cluster, args: &[&str]) -> String {
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

/// The pods in the test's namespace labelled `key=value`.
pub fn pods_labelled(c: &Cluster, key: &str, value: &str) -> Vec<Pod> {
    c.list::<Pod>(Some(c.ns()))
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get(key).map(String::as_str) == Some(value))
        })
        .collect()
}

/// Waits until Job `name` in the test's namespace has succeeded.
pub fn job_succeeds(c: &Cluster, name: &str) -> bool {
    c.wait_for(Duration::from_secs(60), |c| {
        c.get::<Job>(c.ns(), name)
            .and_then(|j| j.status)
            .is_some_and(|s| s.succeeded == Some(1))
    })
}

/// A Deployment `name` with one pod that mounts `claim`; waits until the pod runs and returns
/// its node. (`sleep` as process 1 ignores SIGTERM: one second of grace, not thirty, on a real
/// node.)
pub fn deployment_using(c: &Cluster, name: &str, claim: &str) -> String {
    c.create_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": c.ns()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": c.app_image(), "command": ["sleep", "86400"]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}}))
        .expect("create deployment");
    let mut node = String::new();
    let ok = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<k8s_openapi::api::core::v1::Pod>(Some(c.ns()))
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
pub fn assert_latest_snapshot_holds(c: &Cluster, backup: &str, src: &Path) {
    let dir = c
        .volume_dir(c.ns(), backup)
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
pub fn assert_holds(c: &Cluster, claim: &str, reference: &Path) {
    let dir = c
        .volume_dir(c.ns(), claim)
        .unwrap_or_else(|| panic!("claim {claim} has no volume"));
    let diff = rsync_itemize(reference, &dir, &[]);
    assert!(diff.is_empty(), "claim {claim} differs: {diff:#?}");
}

/// Waits until a running pod whose name starts with `prefix` mounts `claim`.
pub fn wait_running_with(c: &Cluster, prefix: &str, claim: &str) -> bool {
    c.wait_for(Duration::from_secs(30), |c| {
        c.list::<Pod>(Some(c.ns())).iter().any(|p| {
            p.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with(prefix)
                && p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .is_some_and(|vs| {
                        vs.iter().any(|v| {
                            v.persistent_volume_claim
                                .as_ref()
                                .is_some_and(|p| p.claim_name == claim)
                        })
                    })
        })
    })
}
