//! A real Kubernetes cluster for the end-to-end tests: the one `scripts/local-cluster.sh up`
//! starts (Kubernetes' own API server, controllers, scheduler and a kubelet with containerd), or
//! any cluster whose volumes are folders on this machine.
//!
//! Each [`RealCluster`] is one test's namespace, labelled `pvc-backup.io/test`, removed with
//! everything in it when the value is dropped. Volumes are judged on the host: the default
//! StorageClass provisions host folders (`spec.hostPath.path` of the PV), and
//! [`RealCluster::add_bound_claim`] makes a static PV over a folder (or, for a Block claim, a loop
//! device over a sparse image file) that the test fills before the mover runs.
//!
//! The methods mirror those of [`crate::fake::FakeCluster`] the tests use, so that one test
//! body runs against either.
//!
//! Tests may run at once, each in its own namespace. What they share cluster-wide is kept apart by
//! file locks in the temporary folder: a test that changes cluster-wide state (resource
//! definitions, admission configuration) holds [`RealCluster::alone_with`] for as long as it does.
//! No test cordons the node or changes it otherwise: a pod kept Pending asks for more than any
//! node has instead.
//!
//! Settings come from the environment, as `scripts/local-cluster.sh env` prints them:
//! `KUBECONFIG` (a cluster-admin kubeconfig), `PVC_BACKUP_IMAGE` (the pvc-backup image present on
//! the node), `PVC_BACKUP_TEST_TOOLS_IMAGE` (an image with `sh` and `sleep` present on the node).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::fake::{ApiError, ClaimOptions};

/// Label on every namespace a test makes, so that `scripts/local-cluster.sh down` (and a person)
/// can find leftovers.
pub const TEST_LABEL: &str = "pvc-backup.io/test";

/// Where the host folders of static PVs go: beside the hostpath provisioner's own folders.
const STATIC_ROOT: &str = "/tmp/hostpath_pv/static";

/// What the tests need to know to use a real cluster, read from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The cluster-admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The pvc-backup image the node has.
    pub image: String,
    /// An image with `sh` and `sleep` the node has, for workloads.
    pub tools_image: String,
}

impl Settings {
    /// The settings when `PVC_BACKUP_TEST_CLUSTER=real` asks for a real cluster; `None` otherwise.
    /// Panics, naming what to set, when a real cluster is asked for and a setting is missing.
    pub fn from_env() -> Option<Settings> {
        if std::env::var("PVC_BACKUP_TEST_CLUSTER").ok().as_deref() != Some("real") {
            return None;
        }
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| {
                    panic!(
                        "PVC_BACKUP_TEST_CLUSTER=real but {name} is not set: run \
                     `eval \"$(scripts/local-cluster.sh env)\"` after `scripts/local-cluster.sh up`"
                    )
                })
        };
        let kubeconfig = PathBuf::from(var("KUBECONFIG"));
        assert!(
            kubeconfig.is_file(),
            "KUBECONFIG={} is not a file: start the cluster with scripts/local-cluster.sh up",
            kubeconfig.display()
        );
        Some(Settings {
            kubeconfig,
            image: var("PVC_BACKUP_IMAGE"),
            tools_image: var("PVC_BACKUP_TEST_TOOLS_IMAGE"),
        })
    }
}

/// One test's namespace on a real cluster.
pub struct RealCluster {
    settings: Settings,
    namespace: String,
    /// The admin kubeconfig with the test's namespace as its context's namespace, as the fake
    /// cluster's names `default`: the binary, run without `-n`, works in the test's namespace.
    kubeconfig: tempfile::TempPath,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    /// Static PVs made by [`RealCluster::add_bound_claim`], with their folder or image file and
    /// loop device.
    statics: std::sync::Mutex<Vec<Static>>,
}

/// A cluster-wide concern held by one test at a time (see [`RealCluster::alone_with`]).
#[derive(Debug)]
pub struct Alone {
    _lock: std::fs::File,
}

/// The lock file of a cluster-wide concern `what`, shared by every test process of this machine.
fn lock_file(what: &str) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("pvc-backup-test-{what}.lock"));
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open the test lock {}: {e}", path.display()))
}

struct Static {
    pv: String,
    path: PathBuf,
    loop_device: Option<String>,
}

fn api_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) => ApiError {
            code: s.code,
            reason: match s.reason.as_str() {
                "NotFound" => "NotFound",
                "AlreadyExists" => "AlreadyExists",
                "Conflict" => "Conflict",
                "Invalid" => "Invalid",
                "Forbidden" => "Forbidden",
                "BadRequest" => "BadRequest",
                "Unauthorized" => "Unauthorized",
                _ => "Unknown",
            },
            message: s.message,
            details: None,
        },
        other => ApiError::bad_request(other.to_string()),
    }
}

fn is_namespaced<K: kube::Resource>() -> bool
where
    K::Scope: 'static,
{
    std::any::TypeId::of::<K::Scope>() == std::any::TypeId::of::<NamespaceResourceScope>()
}

impl RealCluster {
    /// Makes a namespace for one test (`pvcb-` and a random suffix) with the mover's service
    /// account in it.
    pub fn start(settings: Settings) -> RealCluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let namespace = format!("pvcb-{}", random_suffix());
        let mut kc =
            kube::config::Kubeconfig::read_from(&settings.kubeconfig).expect("read KUBECONFIG");
        let current = kc.current_context.clone().unwrap_or_default();
        for named in &mut kc.contexts {
            if named.name == current
                && let Some(ctx) = named.context.as_mut()
            {
                ctx.namespace = Some(namespace.clone());
            }
        }
        let file = tempfile::Builder::new()
            .prefix("pvcb-kubeconfig-")
            .tempfile()
            .expect("temporary kubeconfig");
        serde_json::to_writer(&file, &kc).expect("write the test's kubeconfig");
        let kubeconfig = file.into_temp_path();
        let client = runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("KUBECONFIG is a usable kubeconfig");
            crate::use_ring_for_tls();
            kube::Client::try_from(config).expect("kube client")
        });
        let c = RealCluster {
            settings,
            namespace,
            kubeconfig,
            runtime,
            client,
            statics: Default::default(),
        };
        c.create_value(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": c.namespace, "labels": {TEST_LABEL: "true"}}}))
            .expect("create the test namespace");
        // The namespace controller makes `default` at once; pods cannot be created before it.
        let ready = c.wait_for(Duration::from_secs(60), |c| {
            c.get::<k8s_openapi::api::core::v1::ServiceAccount>(&c.namespace, "default")
                .is_some()
        });
        assert!(
            ready,
            "the service account `default` never appeared in {}",
            c.namespace
        );
        c
    }

    /// The test's namespace.
    pub fn ns(&self) -> &str {
        &self.namespace
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The kubeconfig file (cluster-admin), whose context's namespace is the test's.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client (works on any tokio runtime).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The API resource of an apiVersion and kind, found through discovery.
    fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool), ApiError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = self
            .block_on(kube::discovery::pinned_kind(&self.client, &gvk))
            .map_err(api_error)?;
        Ok((ar, caps.scope == kube::discovery::Scope::Namespaced))
    }

    fn dynamic(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
    ) -> Result<Api<DynamicObject>, ApiError> {
        let (ar, namespaced) = self.resource(api_version, kind)?;
        Ok(if namespaced {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    fn erased<K>(&self, namespace: Option<&str>) -> Api<DynamicObject>
    where
        K: kube::Resource<DynamicType = ()>,
        K::Scope: 'static,
    {
        let ar = ApiResource::erase::<K>(&());
        match namespace {
            Some(ns) if is_namespaced::<K>() => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// An object, typed; `None` when it does not exist.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
        K::Scope: 'static,
    {
        let api = self.erased::<K>(Some(namespace));
        self.block_on(api.get_opt(name))
            .unwrap_or_else(|e| panic!("get {} {namespace}/{name}: {e}", K::kind(&())))
            .map(retype)
    }

    /// Objects of a kind, in one namespace or (None) all, typed.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
        K::Scope: 'static,
    {
        let api = self.erased::<K>(namespace);
        self.block_on(api.list(&ListParams::default()))
            .unwrap_or_else(|e| panic!("list {}: {e}", K::kind(&())))
            .items
            .into_iter()
            .map(retype)
            .collect()
    }

    /// An object as JSON, by apiVersion and kind.
    pub fn get_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let api = self.dynamic(api_version, kind, namespace).ok()?;
        let obj = self.block_on(api.get_opt(name)).ok()??;
        Some(serde_json::to_value(obj).expect("object serializes"))
    }

    /// Objects of a kind as JSON, by apiVersion and kind.
    pub fn list_values(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Value> {
        let api = self
            .dynamic(api_version, kind, namespace)
            .unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        self.block_on(api.list(&ListParams::default()))
            .unwrap_or_else(|e| panic!("list {kind}: {e}"))
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("object serializes"))
            .collect()
    }

    /// Creates an object given as JSON (apiVersion and kind required); a namespaced object
    /// without a namespace goes into the test's.
    pub fn create_value(&self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&self.namespace)
            .to_owned();
        let api = self.dynamic(&api_version, &kind, &ns)?;
        let obj: DynamicObject = serde_json::from_value(obj)
            .map_err(|e| ApiError::bad_request(format!("not an object: {e}")))?;
        let created = self
            .block_on(api.create(&PostParams::default(), &obj))
            .map_err(api_error)?;
        Ok(serde_json::to_value(created).expect("object serializes"))
    }

    /// Merge-patches an object.
    pub fn patch_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiError> {
        let api = self.dynamic(api_version, kind, namespace)?;
        let out = self
            .block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)))
            .map_err(api_error)?;
        Ok(serde_json::to_value(out).expect("object serializes"))
    }

    /// Deletes an object with background propagation (as `kubectl delete` does).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let api = self.dynamic(api_version, kind, namespace)?;
        self.block_on(api.delete(name, &DeleteParams::background()))
            .map_err(api_error)?;
        Ok(())
    }

    /// The nodes' names.
    pub fn nodes(&self) -> Vec<String> {
        self.list::<k8s_openapi::api::core::v1::Node>(None)
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
    }

    /// Waits until no other test holds cluster-wide concern `what` (for example `definitions`
    /// for the pvc-backup.io resource definitions, `admission` for webhooks and policies that
    /// judge labelled namespaces), then holds it until the returned value is dropped.
    pub fn alone_with(&self, what: &str) -> Alone {
        let lock = lock_file(what);
        lock.lock()
            .unwrap_or_else(|e| panic!("take the test lock {what}: {e}"));
        Alone { _lock: lock }
    }

    /// Adds a StorageClass served by the in-tree hostpath provisioner (whatever `provisioner`
    /// the fake cluster would name: only that one provisions here).
    pub fn add_storage_class(
        &self,
        name: &str,
        _provisioner: &str,
        wait_for_first_consumer: bool,
        reclaim_policy: &str,
        allow_expansion: bool,
    ) -> Result<(), ApiError> {
        let mode = if wait_for_first_consumer {
            "WaitForFirstConsumer"
        } else {
            "Immediate"
        };
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "labels": {TEST_LABEL: "true"}},
            "provisioner": "kubernetes.io/host-path", "reclaimPolicy": reclaim_policy,
            "volumeBindingMode": mode, "allowVolumeExpansion": allow_expansion});
        match self.create_value(class) {
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Makes a PV (named `pv-NAMESPACE-NAME`, Retain) over a fresh host folder, or for a Block
    /// claim a loop device over a sparse image file, and a claim bound to it; returns the folder
    /// (or image file) for the test to fill.
    pub fn add_bound_claim(
        &self,
        namespace: &str,
        name: &str,
        opts: ClaimOptions,
    ) -> Result<PathBuf, ApiError> {
        let path = self.add_volume_for(namespace, name, opts.clone())?;
        let (class, pv_name) = (Self::class_of(&opts), format!("pv-{namespace}-{name}"));
        let mode = if opts.block { "Block" } else { "Filesystem" };
        self.create_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": [opts.access_mode], "resources": {"requests": {"storage": opts.size}},
                "storageClassName": class, "volumeMode": mode, "volumeName": pv_name}}))?;
        let bound = self.wait_for(Duration::from_secs(60), |c| {
            c.get_value("v1", "PersistentVolumeClaim", namespace, name)
                .is_some_and(|v| {
                    v.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
                })
        });
        if !bound {
            return Err(ApiError::bad_request(format!(
                "claim {namespace}/{name} did not bind to {pv_name}"
            )));
        }
        Ok(path)
    }

    fn class_of(opts: &ClaimOptions) -> String {
        opts.storage_class
            .clone()
            .unwrap_or_else(|| "standard".into())
    }

    /// Makes the PV of [`RealCluster::add_bound_claim`] without its claim: reserved (by its
    /// `claimRef`) for claim `name` of `namespace` that someone else creates, as an
    /// administrator pre-binds a static volume. Returns its folder (or image file).
    pub fn add_volume_for(
        &self,
        namespace: &str,
        name: &str,
        opts: ClaimOptions,
    ) -> Result<PathBuf, ApiError> {
        let io = |e: std::io::Error| ApiError::bad_request(e.to_string());
        let pv_name = format!("pv-{namespace}-{name}");
        std::fs::create_dir_all(STATIC_ROOT).map_err(io)?;
        let class = Self::class_of(&opts);
        let mut spec = json!({"capacity": {"storage": opts.size}, "accessModes": [opts.access_mode],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": class,
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace, "name": name}});
        let (path, loop_device) = if opts.block {
            let image = Path::new(STATIC_ROOT).join(format!("{pv_name}.img"));
            let f = std::fs::File::create(&image).map_err(io)?;
            f.set_len(crate::fake::quantity(&opts.size).unwrap_or(0) as u64)
                .map_err(io)?;
            let out = Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image)
                .output()
                .map_err(io)?;
            if !out.status.success() {
                return Err(ApiError::bad_request(format!(
                    "losetup {}: {}",
                    image.display(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            spec["volumeMode"] = json!("Block");
            spec["local"] = json!({"path": dev});
            // A local volume names its node; a claim of the fake's may name one, else the first.
            let node = opts.node.clone().unwrap_or_else(|| self.nodes()[0].clone());
            spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
            (image, Some(dev))
        } else {
            let dir = Path::new(STATIC_ROOT).join(&pv_name);
            std::fs::create_dir_all(&dir).map_err(io)?;
            spec["volumeMode"] = json!("Filesystem");
            spec["hostPath"] = json!({"path": dir, "type": "Directory"});
            if let Some(n) = &opts.node {
                spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
            }
            (dir, None)
        };
        self.statics.lock().expect("statics").push(Static {
            pv: pv_name.clone(),
            path: path.clone(),
            loop_device,
        });
        self.create_value(json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": {TEST_LABEL: "true"}}, "spec": spec}))?;
        Ok(path)
    }

    /// The host folder (or, for a Block claim of [`RealCluster::add_bound_claim`], the image
    /// file) of a bound claim's volume.
    pub fn volume_dir(&self, namespace: &str, claim: &str) -> Option<PathBuf> {
        let pvc = self.get_value("v1", "PersistentVolumeClaim", namespace, claim)?;
        let pv = pvc.pointer("/spec/volumeName")?.as_str()?.to_owned();
        if pv.is_empty() {
            return None;
        }
        self.pv_path(&pv)
    }

    /// The host folder (or image file) of a PersistentVolume.
    pub fn pv_path(&self, pv: &str) -> Option<PathBuf> {
        if let Some(s) = self
            .statics
            .lock()
            .expect("statics")
            .iter()
            .find(|s| s.pv == pv)
        {
            return Some(s.path.clone());
        }
        let v = self.get_value("v1", "PersistentVolume", "", pv)?;
        v.pointer("/spec/hostPath/path")
            .or_else(|| v.pointer("/spec/local/path"))
            .and_then(Value::as_str)
            .map(PathBuf::from)
    }

    /// A container's log so far (the only container when `container` is None).
    pub fn pod_log(&self, namespace: &str, pod: &str, container: Option<&str>) -> Option<String> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        let params = kube::api::LogParams {
            container: container.map(str::to_owned),
            ..Default::default()
        };
        self.block_on(api.logs(pod, &params)).ok()
    }

    /// Creates the Job the CronJob would create now, as `kubectl create job --from=cronjob/NAME`
    /// does (with the CronJob as its owner), and returns its name.
    pub fn fire_cronjob(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        let cj = self
            .get_value("batch/v1", "CronJob", namespace, name)
            .ok_or_else(|| ApiError::bad_request(format!("no CronJob {namespace}/{name}")))?;
        let minutes = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .unwrap_or(0);
        let job_name = format!("{name}-{minutes}");
        let tmpl = cj
            .pointer("/spec/jobTemplate")
            .cloned()
            .unwrap_or(json!({}));
        let mut meta = tmpl.get("metadata").cloned().unwrap_or(json!({}));
        meta["name"] = json!(job_name);
        meta["namespace"] = json!(namespace);
        meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
            "uid": cj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        self.create_value(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": tmpl.get("spec").cloned().unwrap_or(json!({}))}),
        )?;
        Ok(job_name)
    }

    /// Polls `done` every 200 ms until it holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&RealCluster) -> bool) -> bool {
        testkit::poll_until(timeout, Duration::from_millis(200), || done(self))
    }

    /// The namespace's objects and events, one per line: what to print when a test fails.
    pub fn dump(&self) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["-n", &self.namespace, "get", "all,pvc,events", "-o", "wide"])
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("kubectl get: {e}"),
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        let ns = self.namespace.clone();
        let _ = self.delete("v1", "Namespace", "", &ns);
        // Static PVs outlive their namespace (Retain): wait for the claims to go, then remove
        // the PVs, detach loop devices and remove the folders.
        let statics = std::mem::take(&mut *self.statics.lock().expect("statics"));
        let gone = self.wait_for(Duration::from_secs(120), |c| {
            c.get_value("v1", "Namespace", "", &ns).is_none()
        });
        if !gone {
            eprintln!(
                "namespace {ns} was still terminating after 120 s:\n{}",
                self.dump()
            );
        }
        for s in statics {
            let _ = self.delete("v1", "PersistentVolume", "", &s.pv);
            if let Some(dev) = &s.loop_device {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
            let _ = if s.path.is_dir() {
                std::fs::remove_dir_all(&s.path)
            } else {
                std::fs::remove_file(&s.path)
            };
        }
    }
}

/// A dynamic object as its type.
fn retype<K: DeserializeOwned>(obj: DynamicObject) -> K {
    let v = serde_json::to_value(obj).expect("object serializes");
    serde_json::from_value(v).expect("the API server's object decodes as its type")
}

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}
