//! A namespace of its own for each test, set up as a user would (`pvc-backup manifests`
//! applied), with the claims, pods and workloads the tests need, and removed with everything in
//! it when the test ends, passed or failed.

use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch, PatchParams,
    PostParams,
};
use kube::discovery::Scope;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::settings::Settings;
use super::tree::{LIST, Listing, SEED, TREE};

/// The label on every test namespace, so that one left by a killed run can be found:
/// `kubectl delete namespace -l pvc-backup.io/real-cluster-test`.
pub const TEST_LABEL: &str = "pvc-backup.io/real-cluster-test";

/// The size of every claim the tests make.
const CLAIM_SIZE: &str = "1Gi";

/// How often a wait looks again.
const POLL: Duration = Duration::from_secs(2);

/// A test's namespace and its connection to the cluster. Dropping it deletes the namespace,
/// the volumes its claims kept (reclaim policy Retain, as a keep-name migration leaves them)
/// and the cluster-wide objects the install created, so a run leaves nothing behind.
pub struct TestNamespace {
    /// The namespace's name, `pvc-backup-test-<random>`.
    pub name: String,
    /// The run's settings.
    pub settings: Settings,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    /// Cluster-scoped install objects this test created (and so removes): kind and name.
    created: Vec<(kube::discovery::ApiResource, String)>,
}

impl TestNamespace {
    /// Connects, creates the namespace and installs pvc-backup in it with `pvc-backup
    /// manifests --backup-namespace NAME`, as the install guide says.
    pub fn new() -> TestNamespace {
        let settings = Settings::from_env();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("start a tokio runtime");
        let client = runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(&settings.kubeconfig)
                .unwrap_or_else(|e| {
                    panic!("read KUBECONFIG {}: {e}", settings.kubeconfig.display())
                });
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap_or_else(|e| panic!("KUBECONFIG {}: {e}", settings.kubeconfig.display()));
            cluster::connect::use_ring_for_tls();
            kube::Client::try_from(config).expect("a client for KUBECONFIG")
        });
        let name = format!("pvc-backup-test-{}", random_suffix());
        let namespace: Namespace = from_json(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                TEST_LABEL: "true",
                // What the mover needs (docs/kubernetes.md); the tools pods run as root too.
                "pod-security.kubernetes.io/enforce": "baseline",
            }},
        }));
        runtime
            .block_on(
                Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace),
            )
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let mut ns = TestNamespace {
            name,
            settings,
            runtime,
            client,
            created: Vec::new(),
        };
        ns.install();
        ns
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Applies what `pvc-backup manifests --backup-namespace NAME` prints. Cluster-scoped
    /// objects that already exist (an earlier install) are left as they are; the ones this
    /// creates are removed at the end.
    fn install(&mut self) {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
            .args(["manifests", "--backup-namespace", &self.name])
            .env("PVC_BACKUP_IMAGE", &self.settings.image)
            .output()
            .expect("run pvc-backup manifests");
        testkit::cmd::expect_code(&out, 0);
        let yaml = String::from_utf8(out.stdout).expect("manifests are UTF-8");
        let objects: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("manifests are YAML");
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let gvk = GroupVersionKind::gvk(group, version, &kind);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let client = self.client.clone();
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&self.name)
                .to_owned();
            let dynamic: DynamicObject = from_json(object);
            let created = self.block_on(async move {
                let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("the cluster does not serve {api_version} {kind}: {e}")
                    });
                let post = PostParams::default();
                if caps.scope == Scope::Namespaced {
                    Api::<DynamicObject>::namespaced_with(client, &namespace, &resource)
                        .create(&post, &dynamic)
                        .await
                        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
                    return None;
                }
                let api = Api::<DynamicObject>::all_with(client, &resource);
                let existing = api
                    .get_opt(&name)
                    .await
                    .unwrap_or_else(|e| panic!("get {kind} {name}: {e}"));
                if existing.is_some() {
                    return None;
                }
                api.create(&post, &dynamic)
                    .await
                    .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
                Some((resource, name.clone()))
            });
            self.created.extend(created);
        }
    }

    /// Runs `pvc-backup ARGS --kubeconfig KUBECONFIG -n NAMESPACE` with the test image, bounded
    /// by three timeouts (a migration waits for several things in turn). Its output is printed
    /// for the test's log.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.settings.kubeconfig)
            .args(["-n", &self.name])
            .env("PVC_BACKUP_IMAGE", &self.settings.image)
            .timeout(self.settings.timeout * 3)
            .output()
            .expect("run pvc-backup");
        eprintln!(
            "$ pvc-backup {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `pvc-backup ARGS -o json`, expects exit code 0 and returns the result object.
    pub fn run_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all);
        testkit::cmd::expect_code(&out, 0);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("pvc-backup {} printed no JSON ({e})", args.join(" ")))
    }

    /// Creates a claim of [`CLAIM_SIZE`] in the test class and writes the seed tree into it;
    /// returns the tree's listing, checked to be the one seeded.
    pub fn seeded_claim(&self, name: &str) -> Listing {
        self.claim(name);
        self.tools_pod(&format!("seed-{name}"), name, None, false, SEED, &[]);
        let listing = self.listing(name, None, TREE);
        listing.assert_seeded();
        listing
    }

    /// Creates an empty claim of [`CLAIM_SIZE`] in the test class.
    pub fn claim(&self, name: &str) {
        let claim: PersistentVolumeClaim = from_json(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": self.settings.storage_class,
                "resources": {"requests": {"storage": CLAIM_SIZE}},
            },
        }));
        self.block_on(
            self.api::<PersistentVolumeClaim>()
                .create(&PostParams::default(), &claim),
        )
        .unwrap_or_else(|e| panic!("create claim {name}: {e}"));
    }

    /// Lists the tree at `root` inside `claim` (mounted read-only, at `sub_path` when given, as
    /// a workload's container would mount it).
    pub fn listing(&self, claim: &str, sub_path: Option<&str>, root: &str) -> Listing {
        let pod = format!("list-{}", random_suffix());
        let logs = self.tools_pod(&pod, claim, sub_path, true, LIST, &[("ROOT", root)]);
        Listing::parse(&logs)
    }

    /// Runs `script` with `sh` in a tools-image pod that mounts `claim` at `/data`, on the node
    /// of the pod already using it if there is one (a ReadWriteOnce volume is attached to one
    /// node at a time). Waits for it to succeed, returns its log and deletes it.
    pub fn tools_pod(
        &self,
        name: &str,
        claim: &str,
        sub_path: Option<&str>,
        read_only: bool,
        script: &str,
        env: &[(&str, &str)],
    ) -> String {
        let affinity = self.node_using(claim).map(|node| {
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}})
        });
        let env: Vec<Value> = env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let pod: Pod = from_json(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "affinity": affinity,
                "containers": [{
                    "name": "tools", "image": self.settings.tools_image,
                    "command": ["sh", "-c", script], "env": env,
                    "volumeMounts": [{"name": "data", "mountPath": "/data",
                        "readOnly": read_only, "subPath": sub_path}],
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            },
        }));
        let pods = self.api::<Pod>();
        self.block_on(pods.create(&PostParams::default(), &pod))
            .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
        let phase = self.wait(&format!("pod {name} to finish"), || {
            let status = self.block_on(pods.get(name)).ok()?.status?;
            // Waiting cannot mend an image that cannot be pulled: say so at once.
            let stuck = status.container_statuses.iter().flatten().find_map(|c| {
                let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
                matches!(
                    reason.as_str(),
                    "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName"
                )
                .then_some(reason)
            });
            if let Some(reason) = stuck {
                panic!(
                    "pod {name} cannot start ({reason}): set PVC_BACKUP_TEST_TOOLS_IMAGE to an \
                     image the cluster can pull\n{}",
                    self.diagnose()
                );
            }
            let phase = status.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        });
        let logs = self.logs(name);
        if phase != "Succeeded" {
            panic!(
                "pod {name} over claim {claim} failed; its log:\n{logs}\n{}",
                self.diagnose()
            );
        }
        self.delete_pod(name);
        logs
    }

    /// The node of a running pod that mounts `claim`.
    fn node_using(&self, claim: &str) -> Option<String> {
        let pods = self
            .block_on(self.api::<Pod>().list(&ListParams::default()))
            .expect("list pods");
        pods.items.into_iter().find_map(|p| {
            let spec = p.spec?;
            let uses = spec.volumes.unwrap_or_default().iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.as_str())
                    == Some(claim)
            });
            let running = p.status.and_then(|s| s.phase).as_deref() == Some("Running");
            (uses && running && p.metadata.deletion_timestamp.is_none())
                .then_some(spec.node_name)
                .flatten()
        })
    }

    fn logs(&self, pod: &str) -> String {
        self.block_on(self.api::<Pod>().logs(pod, &LogParams::default()))
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Deletes a pod and waits until it is gone, so that its volume is free for the next one.
    fn delete_pod(&self, name: &str) {
        let pods = self.api::<Pod>();
        let _ = self.block_on(pods.delete(name, &DeleteParams::default()));
        self.wait(&format!("pod {name} to be deleted"), || {
            matches!(self.block_on(pods.get_opt(name)), Ok(None)).then_some(())
        });
    }

    /// A Deployment `name` of one pod of the tools image that sleeps with `claim` at `/data`;
    /// waits until it runs.
    pub fn deployment(&self, name: &str, claim: &str) {
        let deployment: Deployment = from_json(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": sleeper(
                    &self.settings.tools_image,
                    json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]),
                )}},
        }));
        self.block_on(
            self.api::<Deployment>()
                .create(&PostParams::default(), &deployment),
        )
        .unwrap_or_else(|e| panic!("create deployment {name}: {e}"));
        self.rolled_out(name);
    }

    /// Waits until Deployment `name` runs one up-to-date, ready pod and no other, and returns
    /// it.
    pub fn rolled_out(&self, name: &str) -> Deployment {
        let api = self.api::<Deployment>();
        self.wait(&format!("deployment {name} to roll out"), || {
            let d = self.block_on(api.get(name)).ok()?;
            let s = d.status.clone()?;
            let done = s.observed_generation >= d.metadata.generation
                && s.replicas == Some(1)
                && s.updated_replicas == Some(1)
                && s.ready_replicas == Some(1);
            done.then_some(d)
        })
    }

    /// A StatefulSet `name` of one pod that sleeps with the claim of its volumeClaimTemplate
    /// `data` (claim `data-NAME-0`, which may exist already) at `/data`; waits until it runs.
    pub fn statefulset(&self, name: &str) {
        let template = sleeper(&self.settings.tools_image, Value::Null);
        let set: StatefulSet = from_json(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": template},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": self.settings.storage_class,
                    "resources": {"requests": {"storage": CLAIM_SIZE}}}}]},
        }));
        self.block_on(
            self.api::<StatefulSet>()
                .create(&PostParams::default(), &set),
        )
        .unwrap_or_else(|e| panic!("create statefulset {name}: {e}"));
        self.statefulset_ready(name);
    }

    /// Waits until StatefulSet `name` runs its one pod, up to date and ready.
    pub fn statefulset_ready(&self, name: &str) {
        let api = self.api::<StatefulSet>();
        self.wait(&format!("statefulset {name} to be ready"), || {
            let s = self.block_on(api.get(name)).ok()?;
            let st = s.status?;
            let done = st.observed_generation >= s.metadata.generation
                && st.ready_replicas == Some(1)
                && st.current_revision.is_some()
                && st.current_revision == st.update_revision;
            done.then_some(())
        });
    }

    /// The claim of Deployment `name`'s volume `data` and the `subPath`s its container mounts
    /// it at, once the Deployment has rolled out.
    pub fn deployment_claim(&self, name: &str) -> (String, Vec<Option<String>>) {
        let d = self.rolled_out(name);
        let template = d.spec.expect("a Deployment spec").template;
        testcluster::objects::claim_and_sub_paths(&template, "data")
    }

    /// A claim of the namespace.
    pub fn get_claim(&self, name: &str) -> PersistentVolumeClaim {
        self.block_on(self.api::<PersistentVolumeClaim>().get(name))
            .unwrap_or_else(|e| panic!("get claim {name}: {e}"))
    }

    /// Whether claim `name` exists.
    pub fn has_claim(&self, name: &str) -> bool {
        self.block_on(self.api::<PersistentVolumeClaim>().get_opt(name))
            .expect("get claim")
            .is_some()
    }

    /// A PersistentVolume.
    pub fn volume(&self, name: &str) -> PersistentVolume {
        self.block_on(Api::<PersistentVolume>::all(self.client.clone()).get(name))
            .unwrap_or_else(|e| panic!("get volume {name}: {e}"))
    }

    /// Whether CronJob `name` exists.
    pub fn has_cron_job(&self, name: &str) -> bool {
        self.block_on(self.api::<CronJob>().get_opt(name))
            .expect("get cronjob")
            .is_some()
    }

    /// Runs CronJob `name` now, as `kubectl create job --from=cronjob/NAME` does (a Job from
    /// its jobTemplate, owned by it), and waits for the Job to complete.
    pub fn run_cron_job(&self, name: &str) {
        let cron = self
            .block_on(self.api::<CronJob>().get(name))
            .unwrap_or_else(|e| panic!("get cronjob {name}: {e}"));
        let template = cron.spec.expect("a CronJob spec").job_template;
        let job_name = format!("{name}-manual");
        let meta = template.metadata.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
        let job: Job = from_json(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name, "labels": meta.labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
                    "uid": cron.metadata.uid, "controller": true}]},
            "spec": template.spec,
        }));
        let jobs = self.api::<Job>();
        self.block_on(jobs.create(&PostParams::default(), &job))
            .unwrap_or_else(|e| panic!("create job {job_name}: {e}"));
        let complete = self.wait(&format!("job {job_name} to finish"), || {
            let j = self.block_on(jobs.get(&job_name)).ok()?;
            j.status?.conditions?.into_iter().find_map(|c| {
                (c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
                    .then(|| c.type_ == "Complete")
            })
        });
        if !complete {
            panic!("job {job_name} failed\n{}", self.diagnose());
        }
    }

    /// Polls `check` until it gives a value; after the timeout, panics with what the
    /// namespace's events and pods say.
    pub fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            if started.elapsed() > self.settings.timeout {
                panic!(
                    "gave up waiting for {what} after {} s (PVC_BACKUP_TEST_TIMEOUT)\n{}",
                    self.settings.timeout.as_secs(),
                    self.diagnose()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The namespace's events, and each pod's phase, waiting reasons and log tail.
    pub fn diagnose(&self) -> String {
        let mut out = format!("--- events in {}:\n", self.name);
        if let Ok(events) = self.block_on(self.api::<Event>().list(&ListParams::default())) {
            for e in events.items {
                out.push_str(&format!(
                    "{} {} {}/{}: {}\n",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.message.unwrap_or_default()
                ));
            }
        }
        out.push_str("--- pods:\n");
        if let Ok(pods) = self.block_on(self.api::<Pod>().list(&ListParams::default())) {
            for p in pods.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                let status = p.status.unwrap_or_default();
                let waiting: Vec<String> = status
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.state?.waiting)
                    .map(|w| {
                        format!(
                            "{}: {}",
                            w.reason.unwrap_or_default(),
                            w.message.unwrap_or_default()
                        )
                    })
                    .collect();
                let tail = LogParams {
                    tail_lines: Some(20),
                    ..LogParams::default()
                };
                let log = self
                    .block_on(self.api::<Pod>().logs(&name, &tail))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{name} {} {}\n{log}\n",
                    status.phase.unwrap_or_default(),
                    waiting.join("; ")
                ));
            }
        }
        out
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        let timeout = self.settings.timeout;
        let created = std::mem::take(&mut self.created);
        let result = self.runtime.block_on(async move {
            // Volumes kept with Retain (a keep-name migration's old volume) would outlive the
            // namespace: hand them to their provisioner to delete.
            let volumes = Api::<PersistentVolume>::all(client.clone());
            for pv in volumes.list(&ListParams::default()).await?.items {
                let spec = pv.spec.unwrap_or_default();
                let ours = spec.claim_ref.and_then(|r| r.namespace).as_deref() == Some(&name);
                if ours && spec.persistent_volume_reclaim_policy.as_deref() == Some("Retain") {
                    let patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}});
                    volumes
                        .patch(
                            &pv.metadata.name.unwrap_or_default(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await?;
                }
            }
            let namespaces = Api::<Namespace>::all(client.clone());
            namespaces
                .delete(&name, &DeleteParams::background())
                .await?;
            let started = Instant::now();
            while namespaces.get_opt(&name).await?.is_some() {
                if started.elapsed() > timeout {
                    eprintln!(
                        "namespace {name} is still being deleted after {} s; check it with \
                         `kubectl get namespace {name}`",
                        timeout.as_secs()
                    );
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            for (resource, object) in created {
                Api::<DynamicObject>::all_with(client.clone(), &resource)
                    .delete(&object, &DeleteParams::default())
                    .await?;
            }
            Ok::<(), kube::Error>(())
        });
        if let Err(e) = result {
            // A panic here would abort the test binary: say what is left instead.
            eprintln!(
                "cleaning up namespace {} failed ({e}); remove what is left with `kubectl delete \
                 namespace -l {TEST_LABEL}` and `kubectl get pv`",
                self.name
            );
        }
    }
}

/// A pod spec whose one container sleeps with volume `data` at `/data`.
fn sleeper(image: &str, volumes: Value) -> Value {
    json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": image, "command": ["sleep", "86400"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": volumes,
    })
}

/// Eight hex digits that differ between runs and between tests of one run.
fn random_suffix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// A k8s-openapi object from JSON written in a test; a typo is the test's bug.
fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}
