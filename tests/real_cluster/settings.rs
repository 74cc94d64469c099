//! What the real-cluster tests read from the environment, and what they say when it is missing.

use std::path::PathBuf;
use std::time::Duration;

/// Where the docs explain the variables.
const SEE: &str = "see \"Testing against a real cluster\" in docs/kubernetes.md";

/// The test run's settings, from the environment only.
pub struct Settings {
    /// The kubeconfig file of the test cluster (`KUBECONFIG`).
    pub kubeconfig: PathBuf,
    /// The pvc-backup image the cluster pulls for the mover (`PVC_BACKUP_IMAGE`).
    pub image: String,
    /// The storage class of the claims the tests make (`PVC_BACKUP_TEST_STORAGE_CLASS`; none:
    /// the cluster's default class).
    pub storage_class: Option<String>,
    /// The class migrations move to (`PVC_BACKUP_TEST_OTHER_CLASS`).
    other_class: Option<String>,
    /// The image of the pods that write and read the trees (`PVC_BACKUP_TEST_TOOLS_IMAGE`).
    pub tools_image: String,
    /// The VolumeSnapshotClass of the --from-snapshot test (`PVC_BACKUP_TEST_SNAPSHOT_CLASS`).
    snapshot_class: Option<String>,
    /// How long any one wait may take (`PVC_BACKUP_TEST_TIMEOUT`, seconds).
    pub timeout: Duration,
}

/// A variable's value; empty counts as unset, as it does for the shell's `${VAR:-}`.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads the environment; panics naming what to set when something required is missing.
    pub fn from_env() -> Settings {
        let kubeconfig = PathBuf::from(var("KUBECONFIG").unwrap_or_else(|| {
            panic!(
                "KUBECONFIG is not set: these tests run pvc-backup against a real cluster. Set \
                 KUBECONFIG to the kubeconfig file of a cluster you may create namespaces in, and \
                 PVC_BACKUP_IMAGE to a pvc-backup image it can pull; {SEE}"
            )
        }));
        assert!(
            kubeconfig.is_file(),
            "KUBECONFIG={} is not a file: set it to one kubeconfig file (not a list); {SEE}",
            kubeconfig.display()
        );
        let image = var("PVC_BACKUP_IMAGE").unwrap_or_else(|| {
            panic!(
                "PVC_BACKUP_IMAGE is not set: set it to a pvc-backup image the cluster can pull \
                 (built with scripts/build-image.sh and pushed to a registry), e.g. \
                 registry.example/pvc-backup:dev; {SEE}"
            )
        });
        let timeout = match var("PVC_BACKUP_TEST_TIMEOUT") {
            None => 600,
            Some(s) => s.parse::<u64>().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                panic!("PVC_BACKUP_TEST_TIMEOUT={s:?} is not a number of seconds; {SEE}")
            }),
        };
        Settings {
            kubeconfig,
            image,
            storage_class: var("PVC_BACKUP_TEST_STORAGE_CLASS"),
            other_class: var("PVC_BACKUP_TEST_OTHER_CLASS"),
            tools_image: var("PVC_BACKUP_TEST_TOOLS_IMAGE")
                .unwrap_or_else(|| "busybox:1.36".into()),
            snapshot_class: var("PVC_BACKUP_TEST_SNAPSHOT_CLASS"),
            timeout: Duration::from_secs(timeout),
        }
    }

    /// The class migrations move to; panics saying what to set when it is missing or is the
    /// test claims' own class.
    pub fn other_class(&self) -> &str {
        let other = self.other_class.as_deref().unwrap_or_else(|| {
            panic!(
                "PVC_BACKUP_TEST_OTHER_CLASS is not set: the migrate tests move a claim to \
                 another storage class; set it to a class the cluster provisions that differs \
                 from the test claims' class ({}); {SEE}",
                self.storage_class.as_deref().unwrap_or("the default class")
            )
        });
        assert_ne!(
            Some(other),
            self.storage_class.as_deref(),
            "PVC_BACKUP_TEST_OTHER_CLASS is the same class as PVC_BACKUP_TEST_STORAGE_CLASS: a \
             migration needs two different classes; {SEE}"
        );
        other
    }

    /// The VolumeSnapshotClass; panics saying what to set when it is missing.
    pub fn snapshot_class(&self) -> &str {
        self.snapshot_class.as_deref().unwrap_or_else(|| {
            panic!(
                "PVC_BACKUP_TEST_SNAPSHOT_CLASS is not set: the --from-snapshot test needs a \
                 VolumeSnapshotClass whose driver provisions the test claims' class (kubectl get \
                 volumesnapshotclass); {SEE}"
            )
        })
    }
}
