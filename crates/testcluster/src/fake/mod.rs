//! A fake Kubernetes cluster for end-to-end tests: an HTTP API server on 127.0.0.1 that
//! `kube::Client` (and the `pvc-backup` binary, through a generated kubeconfig) talks to, with
//! the controllers that make objects come alive.
//!
//! ```no_run
//! use testcluster::fake::{FakeCluster, Options};
//! let cluster = FakeCluster::start(Options {
//!     // In a test of the root package: Some(env!("CARGO_BIN_EXE_pvc-backup").into())
//!     mover: Some("target/debug/pvc-backup".into()),
//!     ..Options::default()
//! });
//! // Drive the binary: `pvc-backup --kubeconfig cluster.kubeconfig() ...`,
//! // or in-process: `let client = cluster.client();` (inside a tokio runtime).
//! ```
//!
//! # What it imitates
//!
//! - **Groups**: core/v1, batch/v1, apps/v1, storage.k8s.io/v1, rbac.authorization.k8s.io/v1,
//!   snapshot.storage.k8s.io/v1 (unless [`Options::snapshots`] is false) and apps.openshift.io/v1
//!   (only with [`Options::openshift`]); a group not served is a 404, as on a cluster without it.
//! - **API**: discovery (`/api`, `/apis`, APIResourceLists with subresources, `/version`);
//!   get, list (label selectors `=`, `==`, `!=`, `in`, `notin`, exists, `!`; field selectors
//!   on the fields the API server supports per kind, others are a 400; `limit`/`continue`), watch
//!   (JSON lines; replay from a resourceVersion, 410 Expired past the kept history, bookmarks,
//!   `sendInitialEvents`; objects entering or leaving a selector are ADDED or DELETED), create
//!   (409 AlreadyExists, `generateName`, `dryRun=All`), replace (409 Conflict on a stale
//!   resourceVersion), patch (merge, JSON patch, strategic merge — lists of containers,
//!   volumes, env, volumeMounts (by mountPath), ports, ownerReferences, conditions, taints,
//!   tolerations-free: other lists are replaced; server-side apply as a forced merge without field
//!   ownership, `fieldManager` required), delete (preconditions on uid and resourceVersion,
//!   grace periods of pods, finalizers, propagation Background/Foreground/Orphan, and the real
//!   defaults: batch/v1 Jobs and ReplicationControllers **orphan their pods** unless asked),
//!   deletecollection, status and scale subresources, `pods/log` (follow, tailLines,
//!   limitBytes, previous). Errors are `Status` objects with the API server's codes, reasons and
//!   messages. Bodies must decode as the typed object (a string where a number belongs is a 400).
//! - **Validation and admission**: names (RFC 1123; Jobs ≤ 63, CronJobs ≤ 52 characters), label
//!   keys and values, PVC spec immutable except a larger `resources.requests.storage` on a bound
//!   claim whose class allows expansion (403 otherwise, as the resize admission plugin), PV
//!   source and volumeMode immutable, pod spec immutable except images, Job template/selector
//!   immutable, StatefulSet spec immutable except replicas/template/updateStrategy/…, StorageClass
//!   fields immutable, CronJob schedules (five fields, names, ranges, steps, `@hourly` and
//!   friends, `@every`; six fields, `CRON_TZ=` and garbage are 422), pod quota (403 `exceeded
//!   quota`), the pod's service account must exist (403), the default StorageClass is filled in,
//!   pvc-protection and pv-protection finalizers, no new objects in a terminating namespace.
//! - **Volumes**: provisioning per StorageClass (Immediate or WaitForFirstConsumer; reclaimPolicy;
//!   allowVolumeExpansion) into a folder `ROOT/volumes/pvc-UID` (Block claims: a sparse image
//!   file), static binding to Available or pre-bound PVs, `spec.volumeName` binding only when the
//!   PV is free or its claimRef names this claim (and uid, when set), Released PVs keep their old
//!   claimRef, Delete removes PV and folder, Retain keeps both, clones only for drivers listed in
//!   [`Options::clone_drivers`] and within one class, snapshots (VolumeSnapshotClass driver must
//!   match; the data is copied when the snapshot is taken) and restores, node-local drivers
//!   ([`Options::local_drivers`]) pin PVs to a node.
//! - **Scheduler**: nodeSelector, required node affinity, taints/tolerations, cordoned nodes, PV
//!   node affinity, missing/deleting/unbound-immediate claims, ReadWriteOncePod; FailedScheduling
//!   events with the scheduler's texts.
//! - **Kubelet**: a container whose command is `/pvc-backup` runs [`Options::mover`] with its
//!   arguments and environment, each volumeMount's mountPath (or volumeDevice's devicePath)
//!   replaced by the folder (or image file) of its volume, at the start of an argument or after
//!   `=`, `:` or `,`; `$(VAR)` references expand. Its output is the container log, its exit code
//!   the terminated state. Other containers just run (Ready) until deleted. Multi-Attach of
//!   ReadWriteOnce volumes across nodes, image pull failures (ErrImagePull / ImagePullBackOff),
//!   restartPolicy OnFailure/Always restarts (CrashLoopBackOff), SIGTERM then SIGKILL on delete.
//! - **Controllers**: Jobs (pod names, labels, ownerReferences, backoffLimit counting restarts,
//!   activeDeadlineSeconds, ttlSecondsAfterFinished, SuccessCriteriaMet/Complete and
//!   FailureTarget/Failed conditions, FailedCreate events), CronJobs fired on request
//!   ([`FakeCluster::fire_cronjob`]), Deployments through ReplicaSets (RollingUpdate with
//!   maxSurge/maxUnavailable, Recreate), StatefulSets (ordered, volumeClaimTemplates, rolling
//!   update), DeploymentConfigs through ReplicationControllers (ConfigChange trigger), the
//!   garbage collector, the namespace controller, the `default` service account, Events with
//!   counts.
//!
//! # What it does not imitate
//!
//! Authentication and RBAC (everything is allowed; RBAC objects are only stored, and a
//! SelfSubjectAccessReview is always answered `allowed`), admission
//! webhooks and ValidatingAdmissionPolicies, Services/networking, resource requests and node
//! capacity, readiness/liveness probes, init containers (they are skipped), read-only mounts and
//! the security context (the mover runs as the test's user, with read-only mounts writable),
//! YAML request bodies, protobuf, Table output (`kubectl get` still works on plain JSON), field
//! managers of server-side apply, CronJob schedules firing on their own, DeploymentConfig deployer
//! pods, pod eviction and bindings, exec/attach/port-forward.

mod api;
mod controllers;
mod cron;
mod events;
mod gc;
mod jobs;
mod kubelet;
mod patch;
mod resources;
mod scheduler;
mod select;
mod store;
mod util;
mod validate;
mod volumes;
mod workloads;

pub use util::{ApiError, quantity};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resources::Res;
use store::{Actor, DeleteOpts, Runtime, State};

/// The mover image's entrypoint that makes the kubelet run [`Options::mover`].
pub const MOVER_ENTRYPOINT: &str = kubelet::ENTRYPOINT;

/// The provisioner of the default StorageClass `standard` and of the default
/// VolumeSnapshotClass `csi-hostpath-snapclass` (clone-capable by default).
pub const DEFAULT_DRIVER: &str = "hostpath.csi.k8s.io";

/// How the cluster starts.
#[derive(Clone, Debug)]
pub struct Options {
    /// Binary run for containers whose command starts with `/pvc-backup` (the real
    /// `pvc-backup`, e.g. `env!("CARGO_BIN_EXE_pvc-backup")`). Without it such containers fail
    /// with exit code 128 and a log line that says why.
    pub mover: Option<PathBuf>,
    /// Nodes, labelled `kubernetes.io/hostname=NAME`. Default: `node-a`, `node-b`.
    pub nodes: Vec<String>,
    /// CSI drivers that can clone a claim. Default: [`DEFAULT_DRIVER`].
    pub clone_drivers: Vec<String>,
    /// Provisioners whose volumes live on the node they were made for (like local-path): their
    /// PVs carry a required node affinity. Default: none.
    pub local_drivers: Vec<String>,
    /// Images that cannot be pulled (exact image strings).
    pub unpullable_images: Vec<String>,
    /// Delay before a Job replaces a failed pod and a container restarts (real clusters: 10 s,
    /// doubling). Default: zero.
    pub retry_delay: Duration,
    /// How long a deleted pod's process has after SIGTERM before SIGKILL. Default: 2 s.
    pub pod_termination: Duration,
    /// Create the StorageClass `standard` (default class, [`DEFAULT_DRIVER`], Immediate, Delete,
    /// expandable) and the VolumeSnapshotClass `csi-hostpath-snapclass` (default). Default: true.
    pub default_classes: bool,
    /// Serve OpenShift's `apps.openshift.io` (DeploymentConfigs), as an OpenShift cluster does.
    /// Default: false, as on plain Kubernetes, where that group is a 404.
    pub openshift: bool,
    /// Serve `snapshot.storage.k8s.io` (the snapshot CRDs are installed). Default: true.
    pub snapshots: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mover: None,
            nodes: vec!["node-a".into(), "node-b".into()],
            clone_drivers: vec![DEFAULT_DRIVER.into()],
            local_drivers: Vec::new(),
            unpullable_images: Vec::new(),
            retry_delay: Duration::ZERO,
            pod_termination: Duration::from_secs(2),
            default_classes: true,
            openshift: false,
            snapshots: true,
        }
    }
}

/// What the server and controllers share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) port: u16,
    /// API groups the server does not serve (as on a cluster without them).
    pub(crate) hidden_groups: Vec<String>,
}

/// A claim made by [`FakeCluster::add_bound_claim`].
#[derive(Clone, Debug)]
pub struct ClaimOptions {
    /// Requested and provided size. Default `1Gi`.
    pub size: String,
    /// Access mode. Default `ReadWriteOnce`.
    pub access_mode: String,
    /// StorageClass name; `None` uses the default class.
    pub storage_class: Option<String>,
    /// A Block claim backed by a sparse image file instead of a folder.
    pub block: bool,
    /// Node the volume lives on (its PV gets a required node affinity).
    pub node: Option<String>,
}

impl Default for ClaimOptions {
    fn default() -> Self {
        ClaimOptions {
            size: "1Gi".into(),
            access_mode: "ReadWriteOnce".into(),
            storage_class: None,
            block: false,
            node: None,
        }
    }
}

/// A running fake cluster; stops (and kills the processes it started) when dropped.
pub struct FakeCluster {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    kubeconfig: PathBuf,
    root: tempfile::TempDir,
}

fn res_of<K: kube::Resource<DynamicType = ()>>() -> Res {
    let (api, kind) = (K::api_version(&()), K::kind(&()));
    Res::by_kind(&api, &kind)
        .unwrap_or_else(|| panic!("the fake cluster does not serve {api} {kind}"))
}

impl FakeCluster {
    /// Starts the API server on 127.0.0.1 (a free port) with its controllers, and writes the
    /// kubeconfig.
    pub fn start(opts: Options) -> FakeCluster {
        let root = tempfile::Builder::new()
            .prefix("fake-cluster-")
            .tempdir()
            .expect("temporary folder for the fake cluster");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-cluster")
            .enable_all()
            .build()
            .expect("tokio runtime for the fake cluster");
        // Bound here, made a tokio listener inside the runtime: `start` may be called from within
        // another runtime (an async test), where block_on is not allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let notify = Arc::new(tokio::sync::Notify::new());
        let rt = Runtime {
            root: root.path().to_path_buf(),
            mover: opts.mover.clone(),
            clone_drivers: opts.clone_drivers.clone(),
            local_drivers: opts.local_drivers.clone(),
            unpullable: opts.unpullable_images.clone(),
            pod_quotas: Default::default(),
            job_backoff: opts.retry_delay,
            pod_termination: opts.pod_termination,
        };
        let mut hidden_groups = Vec::new();
        if !opts.openshift {
            hidden_groups.push("apps.openshift.io".to_string());
        }
        if !opts.snapshots {
            hidden_groups.push("snapshot.storage.k8s.io".to_string());
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(rt, notify)),
            port,
            hidden_groups,
        });
        {
            let mut st = shared.state.lock().expect("fresh lock");
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                st.create(
                    Res::Namespace,
                    "",
                    json!({"metadata": {"name": ns}}),
                    Actor::Controller,
                    false,
                )
                .expect("namespace");
            }
            for n in &opts.nodes {
                add_node(&mut st, n, &[]).expect("node");
            }
            if opts.default_classes {
                // The snapshot class exists only where the snapshot CRDs do.
                st.create(Res::StorageClass, "", json!({
                    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": DEFAULT_DRIVER, "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate", "allowVolumeExpansion": true,
                }), Actor::Controller, false).expect("storage class");
                let snapclass = json!({
                    "metadata": {"name": "csi-hostpath-snapclass", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
                    "driver": DEFAULT_DRIVER, "deletionPolicy": "Delete",
                });
                if opts.snapshots {
                    st.create(
                        Res::VolumeSnapshotClass,
                        "",
                        snapclass,
                        Actor::Controller,
                        false,
                    )
                    .expect("snapshot class");
                }
            }
            gc::namespaces(&mut st);
        }
        let app = api::router(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        runtime.spawn(controllers::run(shared.clone()));
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = root.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
                 current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\npreferences: {{}}\n"
            ),
        )
        .expect("write kubeconfig");
        FakeCluster {
            shared,
            runtime: Some(runtime),
            url,
            kubeconfig,
            root,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kubeconfig file (context `fake`, namespace `default`) for `--kubeconfig` or
    /// `KUBECONFIG`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The folder that holds volumes (`volumes/`), snapshots (`snapshots/`) and pod scratch.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A client for in-process tests, default namespace `default`. Call it inside a tokio
    /// runtime (the client's worker runs on the caller's runtime).
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("cluster URL"));
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        crate::use_ring_for_tls();
        kube::Client::try_from(config).expect("kube client")
    }

    /// An object, typed.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let res = res_of::<K>();
        let ns = if res.info().namespaced { namespace } else { "" };
        let v = self.lock().get(res, ns, name)?;
        Some(serde_json::from_value((*v).clone()).expect("stored object decodes as its type"))
    }

    /// Objects of a kind, in one namespace or (None) all, typed.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let res = res_of::<K>();
        let items = self
            .lock()
            .list(res, namespace.filter(|_| res.info().namespaced));
        items
            .iter()
            .map(|v| serde_json::from_value((**v).clone()).expect("stored object decodes"))
            .collect()
    }

    /// An object as JSON, by apiVersion and kind (works for the snapshot and OpenShift kinds).
    pub fn get_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let res = Res::by_kind(api_version, kind)?;
        let ns = if res.info().namespaced { namespace } else { "" };
        self.lock().get(res, ns, name).map(|v| (*v).clone())
    }

    /// Creates a typed object through validation and admission, as a client would.
    pub fn create<K>(&self, obj: &K) -> Result<K, ApiError>
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let v = serde_json::to_value(obj).expect("object serializes");
        let v = self.create_value(v)?;
        Ok(serde_json::from_value(v).expect("created object decodes"))
    }

    /// Creates an object given as JSON (apiVersion and kind required); the namespace defaults
    /// to `default`.
    pub fn create_value(&self, obj: Value) -> Result<Value, ApiError> {
        let (res, ns) = target(&obj)?;
        let created = self.lock().create(res, &ns, obj, Actor::User, false)?;
        Ok((*created).clone())
    }

    /// Creates the object, or replaces it (without a resourceVersion check) if it exists; a
    /// `status` in `obj` is written too (as a controller would).
    pub fn apply_value(&self, obj: Value) -> Result<Value, ApiError> {
        let (res, ns) = target(&obj)?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = obj.get("status").cloned();
        let mut st = self.lock();
        let mut obj = obj;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let written = if st.get(res, &ns, &name).is_some() {
            st.update(res, &ns, &name, obj, store::Sub::Main, Actor::User, false)?
        } else {
            st.create(res, &ns, obj, Actor::User, false)?
        };
        if let Some(s) = status.filter(|_| res.has_status()) {
            let name = util::name_of(&written).to_string();
            if let Some(v) = st.modify(res, &ns, &name, |o| o["status"] = s) {
                return Ok((*v).clone());
            }
        }
        Ok((*written).clone())
    }

    /// Deletes an object with background propagation (as `kubectl delete` does).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let res = Res::by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "the fake cluster does not serve {api_version} {kind}"
            ))
        })?;
        let ns = if res.info().namespaced { namespace } else { "" };
        self.lock().delete(
            res,
            ns,
            name,
            &DeleteOpts {
                propagation: Some("Background".into()),
                ..Default::default()
            },
        )?;
        Ok(())
    }

    /// Creates a namespace.
    pub fn add_namespace(&self, name: &str) -> Result<(), ApiError> {
        self.create_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .map(|_| ())
    }

    /// Adds a Ready node with the usual labels plus `labels`.
    pub fn add_node(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), ApiError> {
        add_node(&mut self.lock(), name, labels)
    }

    /// Cordons (`true`) or uncordons a node.
    pub fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<(), ApiError> {
        self.lock()
            .modify(Res::Node, "", node, |n| {
                n["spec"]["unschedulable"] = json!(unschedulable)
            })
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found(Res::Node, node))
    }

    /// Adds a taint (`effect`: NoSchedule, PreferNoSchedule or NoExecute) to a node.
    pub fn taint_node(
        &self,
        node: &str,
        key: &str,
        value: &str,
        effect: &str,
    ) -> Result<(), ApiError> {
        self.lock()
            .modify(Res::Node, "", node, |n| {
                let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
                taints.push(json!({"key": key, "value": value, "effect": effect}));
                n["spec"]["taints"] = json!(taints);
            })
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found(Res::Node, node))
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
        let mode = if wait_for_first_consumer {
            "WaitForFirstConsumer"
        } else {
            "Immediate"
        };
        self.create_value(
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": provisioner, "reclaimPolicy": reclaim_policy,
            "volumeBindingMode": mode, "allowVolumeExpansion": allow_expansion}),
        )
        .map(|_| ())
    }

    /// Adds a VolumeSnapshotClass for `driver`, optionally the default one for it.
    pub fn add_snapshot_class(
        &self,
        name: &str,
        driver: &str,
        default: bool,
    ) -> Result<(), ApiError> {
        let mut c = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": name}, "driver": driver, "deletionPolicy": "Delete"});
        if default {
            c["metadata"]["annotations"] =
                json!({"snapshot.storage.kubernetes.io/is-default-class": "true"});
        }
        self.create_value(c).map(|_| ())
    }

    /// Makes a PV (named `pv-NAMESPACE-NAME`, Retain) backed by a fresh folder (or image file)
    /// and a claim bound to it, and returns the folder for the test to fill.
    pub fn add_bound_claim(
        &self,
        namespace: &str,
        name: &str,
        opts: ClaimOptions,
    ) -> Result<PathBuf, ApiError> {
        let class = match &opts.storage_class {
            Some(c) => c.clone(),
            None => validate::default_class(&self.lock()).unwrap_or_default(),
        };
        let pv_name = format!("pv-{namespace}-{name}");
        let dir = self.root().join("volumes");
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let path = if opts.block {
            let p = dir.join(format!("{pv_name}.img"));
            let f = std::fs::File::create(&p).map_err(|e| ApiError::bad_request(e.to_string()))?;
            f.set_len(util::quantity(&opts.size).unwrap_or(0) as u64)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            p
        } else {
            let p = dir.join(&pv_name);
            std::fs::create_dir_all(&p).map_err(|e| ApiError::bad_request(e.to_string()))?;
            p
        };
        let driver = self
            .lock()
            .get(Res::StorageClass, "", &class)
            .map(|c| util::s(&c, "/provisioner").to_string())
            .unwrap_or_else(|| DEFAULT_DRIVER.to_string());
        let mode = if opts.block { "Block" } else { "Filesystem" };
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {"capacity": {"storage": opts.size}, "accessModes": [opts.access_mode],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": class, "volumeMode": mode,
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace, "name": name},
                "csi": {"driver": driver, "volumeHandle": pv_name}}});
        if let Some(n) = &opts.node {
            pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
        }
        self.lock().volumes.insert(pv_name.clone(), path.clone());
        self.create_value(pv)?;
        self.create_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": [opts.access_mode], "resources": {"requests": {"storage": opts.size}},
                "storageClassName": class, "volumeMode": mode, "volumeName": pv_name}}))?;
        let bound = self.wait_for(Duration::from_secs(10), |c| {
            c.get_value("v1", "PersistentVolumeClaim", namespace, name)
                .is_some_and(|v| util::s(&v, "/status/phase") == "Bound")
        });
        if !bound {
            return Err(ApiError::bad_request(format!(
                "claim {namespace}/{name} did not bind to {pv_name}"
            )));
        }
        Ok(path)
    }

    /// The folder (or, for Block claims, the image file) of a bound claim's volume.
    pub fn volume_dir(&self, namespace: &str, claim: &str) -> Option<PathBuf> {
        kubelet::claim_path(&self.lock(), namespace, claim)
    }

    /// The folder (or image file) of a PersistentVolume.
    pub fn pv_path(&self, pv: &str) -> Option<PathBuf> {
        self.lock().volumes.get(pv).cloned()
    }

    /// Events in a namespace, oldest first.
    pub fn events(&self, namespace: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
        let mut evs: Vec<k8s_openapi::api::core::v1::Event> = self.list(Some(namespace));
        evs.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        evs
    }

    /// Events about one object (by kind and name) in a namespace.
    pub fn events_for(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Vec<k8s_openapi::api::core::v1::Event> {
        self.events(namespace)
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect()
    }

    /// A container's log so far (the only container when `container` is None).
    pub fn pod_log(&self, namespace: &str, pod: &str, container: Option<&str>) -> Option<String> {
        let st = self.lock();
        let p = st.get(Res::Pod, namespace, pod)?;
        let c = match container {
            Some(c) => c.to_string(),
            None => util::s(&p, "/spec/containers/0/name").to_string(),
        };
        let buf = st.logs.get(&(util::uid_of(&p).to_string(), c))?;
        Some(String::from_utf8_lossy(&buf.data).into_owned())
    }

    /// From now on, pulling `image` fails.
    pub fn set_unpullable(&self, image: &str) {
        self.lock().rt.unpullable.push(image.to_string());
    }

    /// A ResourceQuota named `quota` of at most `max_pods` non-terminated pods in `namespace`
    /// (pod creation beyond is a 403 `exceeded quota`).
    pub fn set_pod_quota(&self, namespace: &str, quota: &str, max_pods: usize) {
        self.lock()
            .rt
            .pod_quotas
            .insert(namespace.to_string(), (quota.to_string(), max_pods));
    }

    /// Removes the pod quota of a namespace.
    pub fn clear_pod_quota(&self, namespace: &str) {
        self.lock().rt.pod_quotas.remove(namespace);
    }

    /// Creates the Job the CronJob would create now (named `CRONJOB-MINUTES`, with the
    /// controller's ownerReference and scheduled-timestamp annotation) and returns its name.
    pub fn fire_cronjob(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        jobs::fire_cronjob(&mut self.lock(), namespace, name)
    }

    /// Polls `done` every 20 ms until it holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&FakeCluster) -> bool) -> bool {
        testkit::poll_until(timeout, Duration::from_millis(20), || done(self))
    }

    /// Every object (kind, namespace/name, phase, node, finalizers, deletion) and every event, one
    /// per line: what to print when a test fails.
    pub fn dump(&self) -> String {
        let st = self.lock();
        let mut out = String::new();
        for (res, obj) in st.all() {
            if matches!(res, Res::Event | Res::ServiceAccount | Res::Namespace) {
                continue;
            }
            let mut line = format!(
                "{} {}/{}",
                res.info().kind,
                util::ns_of(&obj),
                util::name_of(&obj)
            );
            for (label, ptr) in [
                ("phase", "/status/phase"),
                ("node", "/spec/nodeName"),
                ("volume", "/spec/volumeName"),
                ("claim", "/spec/claimRef/name"),
                ("deleting", "/metadata/deletionTimestamp"),
            ] {
                let v = util::s(&obj, ptr);
                if !v.is_empty() {
                    line.push_str(&format!(" {label}={v}"));
                }
            }
            if let Some(r) = obj.pointer("/spec/replicas") {
                line.push_str(&format!(
                    " replicas={r} ready={}",
                    obj.pointer("/status/readyReplicas").unwrap_or(&json!(0))
                ));
            }
            let fins = store::finalizers(&obj);
            if !fins.is_empty() {
                line.push_str(&format!(" finalizers={}", fins.join(",")));
            }
            out.push_str(&line);
            out.push('\n');
        }
        for e in st.list(Res::Event, None) {
            out.push_str(&format!(
                "Event {} {}/{}: {} {} (x{})\n",
                util::s(&e, "/involvedObject/kind"),
                util::ns_of(&e),
                util::s(&e, "/involvedObject/name"),
                util::s(&e, "/reason"),
                util::s(&e, "/message"),
                e["count"]
            ));
        }
        out
    }

    /// The last resourceVersion handed out (each write raises it by one).
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }
}

fn target(obj: &Value) -> Result<(Res, String), ApiError> {
    let api = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let res = Res::by_kind(api, kind).ok_or_else(|| {
        ApiError::bad_request(format!("the fake cluster does not serve {api:?} {kind:?}"))
    })?;
    let ns = if res.info().namespaced {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    Ok((res, ns))
}

fn add_node(st: &mut State, name: &str, labels: &[(&str, &str)]) -> Result<(), ApiError> {
    let n = node(name, labels);
    let status = n["status"].clone();
    st.create(Res::Node, "", n, Actor::Controller, false)?;
    st.modify(Res::Node, "", name, |n| n["status"] = status);
    Ok(())
}

fn node(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"});
    for (k, v) in labels {
        l[*k] = json!(v);
    }
    json!({
        "metadata": {"name": name, "labels": l},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0",
                "architecture": "amd64", "operatingSystem": "linux", "osImage": "fake", "kernelVersion": "6.18",
                "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""},
        },
    })
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let pids: Vec<u32> = self
            .lock()
            .kubelet
            .running
            .values()
            .flat_map(|m| m.values().copied())
            .collect();
        for pid in pids {
            kubelet::signal(pid, libc::SIGKILL);
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
