//! The resources the fake serves, with what discovery says about each.

/// One resource type the fake knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    /// core/v1 namespaces
    Namespace,
    /// core/v1 nodes
    Node,
    /// core/v1 pods
    Pod,
    /// core/v1 persistentvolumeclaims
    Pvc,
    /// core/v1 persistentvolumes
    Pv,
    /// core/v1 events
    Event,
    /// core/v1 serviceaccounts
    ServiceAccount,
    /// core/v1 configmaps
    ConfigMap,
    /// core/v1 secrets
    Secret,
    /// core/v1 replicationcontrollers (what DeploymentConfigs own)
    ReplicationController,
    /// batch/v1 jobs
    Job,
    /// batch/v1 cronjobs
    CronJob,
    /// apps/v1 deployments
    Deployment,
    /// apps/v1 statefulsets
    StatefulSet,
    /// apps/v1 replicasets
    ReplicaSet,
    /// apps/v1 controllerrevisions (store only)
    ControllerRevision,
    /// storage.k8s.io/v1 storageclasses
    StorageClass,
    /// snapshot.storage.k8s.io/v1 volumesnapshots
    VolumeSnapshot,
    /// snapshot.storage.k8s.io/v1 volumesnapshotcontents
    VolumeSnapshotContent,
    /// snapshot.storage.k8s.io/v1 volumesnapshotclasses
    VolumeSnapshotClass,
    /// apps.openshift.io/v1 deploymentconfigs
    DeploymentConfig,
    /// rbac roles (store only)
    Role,
    /// rbac rolebindings (store only)
    RoleBinding,
    /// rbac clusterroles (store only)
    ClusterRole,
    /// rbac clusterrolebindings (store only)
    ClusterRoleBinding,
}

/// What discovery and the URL layout need to know of a resource.
pub struct Info {
    /// API group, "" for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name as in URLs.
    pub plural: &'static str,
    /// Singular resource name as in discovery.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`kubectl get pvc`).
    pub short: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [&'static str],
}

macro_rules! info {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $short:expr, $sub:expr) => {
        Info {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short: $short,
            subresources: $sub,
        }
    };
}

impl Res {
    /// Every resource, in discovery order.
    pub const ALL: [Res; 25] = [
        Res::Namespace,
        Res::Node,
        Res::Pod,
        Res::Pvc,
        Res::Pv,
        Res::Event,
        Res::ServiceAccount,
        Res::ConfigMap,
        Res::Secret,
        Res::ReplicationController,
        Res::Job,
        Res::CronJob,
        Res::Deployment,
        Res::StatefulSet,
        Res::ReplicaSet,
        Res::ControllerRevision,
        Res::StorageClass,
        Res::VolumeSnapshot,
        Res::VolumeSnapshotContent,
        Res::VolumeSnapshotClass,
        Res::DeploymentConfig,
        Res::Role,
        Res::RoleBinding,
        Res::ClusterRole,
        Res::ClusterRoleBinding,
    ];

    /// What discovery says of this resource.
    pub fn info(self) -> &'static Info {
        const RBAC: &str = "rbac.authorization.k8s.io";
        const SNAP: &str = "snapshot.storage.k8s.io";
        static NS: Info = info!(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            &["status", "finalize"]
        );
        static NODE: Info = info!(
            "",
            "v1",
            "nodes",
            "node",
            "Node",
            false,
            &["no"],
            &["status"]
        );
        static POD: Info = info!(
            "",
            "v1",
            "pods",
            "pod",
            "Pod",
            true,
            &["po"],
            &["status", "log", "binding", "eviction"]
        );
        static PVC: Info = info!(
            "",
            "v1",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            &["status"]
        );
        static PV: Info = info!(
            "",
            "v1",
            "persistentvolumes",
            "persistentvolume",
            "PersistentVolume",
            false,
            &["pv"],
            &["status"]
        );
        static EV: Info = info!("", "v1", "events", "event", "Event", true, &["ev"], &[]);
        static SA: Info = info!(
            "",
            "v1",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
            &[]
        );
        static CM: Info = info!(
            "",
            "v1",
            "configmaps",
            "configmap",
            "ConfigMap",
            true,
            &["cm"],
            &[]
        );
        static SEC: Info = info!("", "v1", "secrets", "secret", "Secret", true, &[], &[]);
        static RC: Info = info!(
            "",
            "v1",
            "replicationcontrollers",
            "replicationcontroller",
            "ReplicationController",
            true,
            &["rc"],
            &["status", "scale"]
        );
        static JOB: Info = info!("batch", "v1", "jobs", "job", "Job", true, &[], &["status"]);
        static CJ: Info = info!(
            "batch",
            "v1",
            "cronjobs",
            "cronjob",
            "CronJob",
            true,
            &["cj"],
            &["status"]
        );
        static DEP: Info = info!(
            "apps",
            "v1",
            "deployments",
            "deployment",
            "Deployment",
            true,
            &["deploy"],
            &["status", "scale"]
        );
        static STS: Info = info!(
            "apps",
            "v1",
            "statefulsets",
            "statefulset",
            "StatefulSet",
            true,
            &["sts"],
            &["status", "scale"]
        );
        static RS: Info = info!(
            "apps",
            "v1",
            "replicasets",
            "replicaset",
            "ReplicaSet",
            true,
            &["rs"],
            &["status", "scale"]
        );
        static CR: Info = info!(
            "apps",
            "v1",
            "controllerrevisions",
            "controllerrevision",
            "ControllerRevision",
            true,
            &[],
            &[]
        );
        static SC: Info = info!(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "storageclass",
            "StorageClass",
            false,
            &["sc"],
            &[]
        );
        static VS: Info = info!(
            SNAP,
            "v1",
            "volumesnapshots",
            "volumesnapshot",
            "VolumeSnapshot",
            true,
            &["vs"],
            &["status"]
        );
        static VSC: Info = info!(
            SNAP,
            "v1",
            "volumesnapshotcontents",
            "volumesnapshotcontent",
            "VolumeSnapshotContent",
            false,
            &["vsc", "vscs"],
            &["status"]
        );
        static VSCL: Info = info!(
            SNAP,
            "v1",
            "volumesnapshotclasses",
            "volumesnapshotclass",
            "VolumeSnapshotClass",
            false,
            &["vsclass", "vsclasses"],
            &[]
        );
        static DC: Info = info!(
            "apps.openshift.io",
            "v1",
            "deploymentconfigs",
            "deploymentconfig",
            "DeploymentConfig",
            true,
            &["dc"],
            &["status", "scale", "instantiate", "log"]
        );
        static ROLE: Info = info!(RBAC, "v1", "roles", "role", "Role", true, &[], &[]);
        static RB: Info = info!(
            RBAC,
            "v1",
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            true,
            &[],
            &[]
        );
        static CROLE: Info = info!(
            RBAC,
            "v1",
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            false,
            &[],
            &[]
        );
        static CRB: Info = info!(
            RBAC,
            "v1",
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            false,
            &[],
            &[]
        );
        match self {
            Res::Namespace => &NS,
            Res::Node => &NODE,
            Res::Pod => &POD,
            Res::Pvc => &PVC,
            Res::Pv => &PV,
            Res::Event => &EV,
            Res::ServiceAccount => &SA,
            Res::ConfigMap => &CM,
            Res::Secret => &SEC,
            Res::ReplicationController => &RC,
            Res::Job => &JOB,
            Res::CronJob => &CJ,
            Res::Deployment => &DEP,
            Res::StatefulSet => &STS,
            Res::ReplicaSet => &RS,
            Res::ControllerRevision => &CR,
            Res::StorageClass => &SC,
            Res::VolumeSnapshot => &VS,
            Res::VolumeSnapshotContent => &VSC,
            Res::VolumeSnapshotClass => &VSCL,
            Res::DeploymentConfig => &DC,
            Res::Role => &ROLE,
            Res::RoleBinding => &RB,
            Res::ClusterRole => &CROLE,
            Res::ClusterRoleBinding => &CRB,
        }
    }

    /// The resource served at `group`/`version` under `plural`.
    pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<Res> {
        Res::ALL.into_iter().find(|r| {
            let i = r.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    /// The resource of objects with this `apiVersion` and `kind`.
    pub fn by_kind(api_version: &str, kind: &str) -> Option<Res> {
        Res::ALL
            .into_iter()
            .find(|r| r.api_version() == api_version && r.info().kind == kind)
    }

    /// `apiVersion` of objects of this resource (`v1`, `batch/v1`).
    pub fn api_version(self) -> String {
        let i = self.info();
        if i.group.is_empty() {
            i.version.to_string()
        } else {
            format!("{}/{}", i.group, i.version)
        }
    }

    /// `plural.group` as the API server names a resource in messages (`jobs.batch`, `pods`).
    pub fn qualified(self) -> String {
        let i = self.info();
        if i.group.is_empty() {
            i.plural.to_string()
        } else {
            format!("{}.{}", i.plural, i.group)
        }
    }

    /// Whether writes to the main resource leave `status` alone (it has a status subresource).
    pub fn has_status(self) -> bool {
        self.info().subresources.contains(&"status")
    }

    /// Whether `metadata.generation` tracks changes of the spec.
    pub fn has_generation(self) -> bool {
        !matches!(
            self,
            Res::Event
                | Res::ConfigMap
                | Res::Secret
                | Res::ServiceAccount
                | Res::Namespace
                | Res::Node
                | Res::Role
                | Res::RoleBinding
                | Res::ClusterRole
                | Res::ClusterRoleBinding
        )
    }

    /// Every group/version served, in discovery order.
    pub fn group_versions() -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for r in Res::ALL {
            let i = r.info();
            if !out.contains(&(i.group, i.version)) {
                out.push((i.group, i.version));
            }
        }
        out
    }
}
