//! The object store: every object as JSON under one lock, one resourceVersion counter, the
//! history watches replay from, and the API verbs' semantics (create, update, delete with
//! finalizers and propagation).

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

use super::resources::Res;
use super::util::{self, ApiError, name_of, now, now_secs, random, set, suffix};
use super::validate;

/// How many changes a watch can replay; older resourceVersions get 410 Expired.
const HISTORY: usize = 100_000;

/// One change, as a watch reports it.
pub struct Change {
    /// ADDED, MODIFIED or DELETED.
    pub typ: &'static str,
    /// Resource of the object.
    pub res: Res,
    /// Namespace ("" if cluster-scoped).
    pub ns: String,
    /// The object before the change.
    pub old: Option<Arc<Value>>,
    /// The object after the change (the last state for DELETED).
    pub obj: Arc<Value>,
    /// resourceVersion of the change.
    pub rv: u64,
}

/// The changes a new watch replays, and the channel of those still to come.
pub type Subscription = (Vec<Arc<Change>>, mpsc::UnboundedReceiver<Arc<Change>>);

struct Sink {
    res: Res,
    ns: Option<String>,
    tx: mpsc::UnboundedSender<Arc<Change>>,
}

/// Who writes: users go through validation and admission; controllers only through admission.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Actor {
    /// A client of the API.
    User,
    /// One of the fake's controllers.
    Controller,
}

/// Which part of an object an update writes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Sub {
    /// The object without its status.
    Main,
    /// The status subresource.
    Status,
}

/// What a delete request asks for.
#[derive(Debug, Default, Clone)]
pub struct DeleteOpts {
    /// Background, Foreground or Orphan; the resource's default when empty.
    pub propagation: Option<String>,
    /// Precondition on metadata.uid.
    pub uid: Option<String>,
    /// Precondition on metadata.resourceVersion.
    pub rv: Option<String>,
    /// Grace period for pods.
    pub grace: Option<i64>,
    /// dryRun=All: check only.
    pub dry_run: bool,
}

/// A container's output as pods/log serves it.
#[derive(Default)]
pub struct LogBuf {
    /// Bytes written so far (stdout and stderr interleaved as they came).
    pub data: Vec<u8>,
    /// Whether the container ended, so a follower stops.
    pub done: bool,
    /// The output of the container's previous run, for previous=true.
    pub previous: Option<Vec<u8>>,
}

/// Settings that can change while the cluster runs (failure injection).
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    /// Where volumes, snapshots and pod scratch space live.
    pub root: PathBuf,
    /// Binary run for containers whose command is the mover entrypoint.
    pub mover: Option<PathBuf>,
    /// CSI drivers that can clone a claim.
    pub clone_drivers: Vec<String>,
    /// Provisioners whose volumes live on one node (PV nodeAffinity to the node it was made on).
    pub local_drivers: Vec<String>,
    /// Images whose pull fails.
    pub unpullable: Vec<String>,
    /// Namespace → (quota name, max pods).
    pub pod_quotas: HashMap<String, (String, usize)>,
    /// Delay before a Job replaces a failed pod.
    pub job_backoff: std::time::Duration,
    /// How long a deleted running pod takes to go away.
    pub pod_termination: std::time::Duration,
}

/// Everything the fake keeps.
pub struct State {
    objects: BTreeMap<Res, BTreeMap<(String, String), Arc<Value>>>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    history: VecDeque<Arc<Change>>,
    sinks: Vec<Sink>,
    /// Wakes the controllers after each write.
    pub notify: Arc<Notify>,
    /// Failure injection and paths.
    pub rt: Runtime,
    /// Container logs by (pod uid, container name).
    pub logs: HashMap<(String, String), LogBuf>,
    /// Folder (or image file for block volumes) of each PersistentVolume.
    pub volumes: HashMap<String, PathBuf>,
    /// Folder of each VolumeSnapshotContent.
    pub snapshots: HashMap<String, PathBuf>,
    /// What the kubelet keeps per pod.
    pub kubelet: super::kubelet::Kubelet,
    /// Per Job uid: the failure count last seen and when it changed (for the retry delay).
    pub job_failures: HashMap<String, (i64, std::time::Instant)>,
}

impl State {
    /// An empty store.
    pub fn new(rt: Runtime, notify: Arc<Notify>) -> Self {
        State {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            sinks: Vec::new(),
            notify,
            rt,
            logs: HashMap::new(),
            volumes: HashMap::new(),
            snapshots: HashMap::new(),
            kubelet: Default::default(),
            job_failures: HashMap::new(),
        }
    }

    /// One object.
    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, res: Res, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(&res) else {
            return Vec::new();
        };
        m.iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every uid in the store (for the garbage collector).
    pub fn all_uids(&self) -> std::collections::HashSet<String> {
        self.objects
            .values()
            .flat_map(|m| m.values())
            .map(|v| util::uid_of(v).to_string())
            .collect()
    }

    /// Every object of every resource (for the garbage collector).
    pub fn all(&self) -> Vec<(Res, Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(r, m)| m.values().map(move |v| (*r, v.clone())))
            .collect()
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.sinks.retain(|s| !s.tx.is_closed());
        for s in &self.sinks {
            if s.res == change.res && s.ns.as_ref().is_none_or(|n| *n == change.ns) {
                let _ = s.tx.send(change.clone());
            }
        }
        self.history.push_back(change);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.notify.notify_one();
    }

    /// Stores `obj` with a fresh resourceVersion and tells the watches.
    fn put(&mut self, res: Res, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        set(
            &mut obj,
            &["metadata", "resourceVersion"],
            json!(self.rv.to_string()),
        );
        let ns = util::ns_of(&obj).to_string();
        let name = name_of(&obj).to_string();
        let obj = Arc::new(obj);
        let old = self
            .objects
            .entry(res)
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let typ = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.record(Change {
            typ,
            res,
            ns,
            old,
            obj: obj.clone(),
            rv: self.rv,
        });
        obj
    }

    /// Removes an object for good and tells the watches.
    pub fn remove(&mut self, res: Res, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self
            .objects
            .get_mut(&res)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut last = (*old).clone();
        set(
            &mut last,
            &["metadata", "resourceVersion"],
            json!(self.rv.to_string()),
        );
        let last = Arc::new(last);
        self.record(Change {
            typ: "DELETED",
            res,
            ns: ns.to_string(),
            old: Some(old),
            obj: last.clone(),
            rv: self.rv,
        });
        if res == Res::Pod {
            let uid = util::uid_of(&last).to_string();
            self.logs.retain(|(u, _), _| *u != uid);
        }
        Some(last)
    }

    /// Registers a watch and returns the changes after `since` it must replay first.
    pub fn subscribe(
        &mut self,
        res: Res,
        ns: Option<&str>,
        since: u64,
    ) -> Result<Subscription, ApiError> {
        if let Some(first) = self.history.front()
            && since + 1 < first.rv
        {
            return Err(ApiError::gone(since));
        }
        let replay = self
            .history
            .iter()
            .filter(|c| c.rv > since && c.res == res && ns.is_none_or(|n| n == c.ns))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        self.sinks.push(Sink {
            res,
            ns: ns.map(String::from),
            tx,
        });
        Ok((replay, rx))
    }

    fn check_namespace(&self, res: Res, ns: &str, name: &str) -> Result<(), ApiError> {
        if !res.info().namespaced {
            return Ok(());
        }
        match self.get(Res::Namespace, "", ns) {
            None => Err(ApiError::not_found(Res::Namespace, ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                let _ = name;
                Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    res.qualified()
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// POST: creates an object, with defaulting, validation and admission.
    pub fn create(
        &mut self,
        res: Res,
        ns: &str,
        mut obj: Value,
        actor: Actor,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let info = res.info();
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        check_type(res, &obj)?;
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(info.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if info.namespaced {
            let body_ns = util::ns_of(&obj);
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if name_of(&obj).is_empty() {
            let gen_name = util::s(&obj, "/metadata/generateName").to_string();
            if gen_name.is_empty() {
                return Err(ApiError::invalid(
                    res,
                    "",
                    vec![util::FieldError::new(
                        util::FieldErrorKind::Required,
                        "metadata.name",
                        None,
                        "name or generateName is required",
                    )],
                ));
            }
            // The API server retries a generated name that is taken (RetryGenerateName).
            let mut base = gen_name.clone();
            base.truncate(58);
            let mut name = format!("{base}{}", suffix(5));
            for _ in 0..8 {
                if self.get(res, ns, &name).is_none() {
                    break;
                }
                name = format!("{base}{}", suffix(5));
            }
            obj["metadata"]["name"] = json!(name);
        }
        if actor == Actor::User && !util::s(&obj, "/metadata/resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = name_of(&obj).to_string();
        self.check_namespace(res, ns, &name)?;
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        let meta = obj["metadata"].as_object_mut().expect("object");
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if res.has_status() {
            obj.as_object_mut().expect("object").remove("status");
        }
        validate::on_create(self, res, &mut obj, actor)?;
        let meta = obj["metadata"].as_object_mut().expect("object");
        if !meta.contains_key("uid") {
            meta.insert("uid".into(), json!(util::uid()));
        }
        meta.insert("creationTimestamp".into(), json!(now()));
        if res.has_generation() {
            meta.insert("generation".into(), json!(1));
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.put(res, obj))
    }

    /// PUT (or the end of a PATCH): replaces the object or its status.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        obj: Value,
        sub: Sub,
        actor: Actor,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self
            .get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(res, name))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        check_type(res, &obj)?;
        let body_name = name_of(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if res.info().namespaced {
            let body_ns = util::ns_of(&obj);
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let want_rv = util::s(&obj, "/metadata/resourceVersion");
        if !want_rv.is_empty() && want_rv != util::s(&old, "/metadata/resourceVersion") {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut new = match sub {
            Sub::Main => {
                let mut n = obj;
                if res.has_status() {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            n.as_object_mut().expect("object").remove("status");
                        }
                    }
                }
                n
            }
            Sub::Status => {
                let mut n = (*old).clone();
                match obj.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        n.as_object_mut().expect("object").remove("status");
                    }
                }
                n
            }
        };
        new["apiVersion"] = json!(res.api_version());
        new["kind"] = json!(res.info().kind);
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        // System-owned metadata stays what the server set.
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    new["metadata"].as_object_mut().expect("object").remove(k);
                }
            }
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            // A deleting object may lose finalizers but gain none.
            let old_f = finalizers(&old);
            let added = finalizers(&new).into_iter().any(|f| !old_f.contains(&f));
            if added {
                return Err(ApiError::invalid(
                    res,
                    name,
                    vec![util::FieldError::new(
                        util::FieldErrorKind::Forbidden,
                        "metadata.finalizers",
                        None,
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if sub == Sub::Main {
            validate::on_update(self, res, &old, &mut new, actor)?;
        }
        bump_generation(res, &old, &mut new);
        if dry_run {
            return Ok(Arc::new(new));
        }
        Ok(self.store_update(res, new))
    }

    /// Stores an updated object, finishing its deletion when its last finalizer went.
    fn store_update(&mut self, res: Res, new: Value) -> Arc<Value> {
        let done =
            new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty();
        if done && !(res == Res::Pod && super::kubelet::pod_needs_kubelet(&new)) {
            let (ns, name) = (util::ns_of(&new).to_string(), name_of(&new).to_string());
            let stored = self.put(res, new);
            self.remove(res, &ns, &name);
            return stored;
        }
        self.put(res, new)
    }

    /// A controller's write: changes the object through `f`, storing only if something changed.
    pub fn modify(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Arc<Value>> {
        let old = self.get(res, ns, name)?;
        let mut new = (*old).clone();
        f(&mut new);
        if new == *old {
            return Some(old);
        }
        bump_generation(res, &old, &mut new);
        Some(self.store_update(res, new))
    }

    /// DELETE: honours preconditions, grace periods of pods, finalizers and propagation.
    pub fn delete(
        &mut self,
        res: Res,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let old = self
            .get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(res, name))?;
        if let Some(uid) = &opts.uid
            && uid != util::uid_of(&old)
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    util::uid_of(&old)
                ),
            ));
        }
        if let Some(rv) = &opts.rv
            && rv != util::s(&old, "/metadata/resourceVersion")
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    util::s(&old, "/metadata/resourceVersion")
                ),
            ));
        }
        let policy = match opts.propagation.as_deref() {
            None | Some("") => default_propagation(res),
            Some(p @ ("Background" | "Foreground" | "Orphan")) => p,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "DeleteOptions.propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        if opts.dry_run {
            return Ok((*old).clone());
        }
        let mut new = (*old).clone();
        let already = old.pointer("/metadata/deletionTimestamp").is_some();
        let mut fins = finalizers(&old);
        match policy {
            "Foreground" if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into())
            }
            "Orphan" if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            _ => {}
        }
        // Pods on a node end through their kubelet after the grace period.
        let graceful = res == Res::Pod && super::kubelet::pod_needs_kubelet(&old);
        let grace = opts.grace.unwrap_or_else(|| {
            old.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if res == Res::Namespace {
            if matches!(name, "default" | "kube-system" | "kube-public") {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                )));
            }
            if !already {
                new["metadata"]["deletionTimestamp"] = json!(now());
                new["status"]["phase"] = json!("Terminating");
                return Ok((*self.put(res, new)).clone());
            }
            return Ok((*old).clone());
        }
        if fins.is_empty() && !(graceful && grace > 0) {
            return Ok((*self.remove(res, ns, name).expect("present")).clone());
        }
        if already && finalizers(&old) == fins {
            if graceful && grace == 0 {
                self.kubelet.force.insert(util::uid_of(&old).to_string());
                self.notify.notify_one();
            }
            return Ok((*old).clone());
        }
        new["metadata"]["finalizers"] = json!(fins);
        if !already {
            let g = if graceful { grace } else { 0 };
            new["metadata"]["deletionTimestamp"] = json!(util::rfc3339(now_secs() + g));
            new["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        }
        if graceful && grace == 0 {
            self.kubelet.force.insert(util::uid_of(&old).to_string());
        }
        if new
            .get("metadata")
            .and_then(|m| m.get("finalizers"))
            .is_some_and(|f| f.as_array().is_some_and(Vec::is_empty))
        {
            new["metadata"]
                .as_object_mut()
                .expect("object")
                .remove("finalizers");
        }
        Ok((*self.put(res, new)).clone())
    }

    /// A random number (for controllers that need one).
    pub fn random(&self) -> u64 {
        random()
    }
}

/// `metadata.finalizers` as strings.
pub fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The propagation policy the API server uses when a DELETE names none.
pub fn default_propagation(res: Res) -> &'static str {
    // batch/v1 Jobs and v1 ReplicationControllers orphan their pods by default, for backward
    // compatibility; a client that wants the pods gone must ask for Background or Foreground.
    match res {
        Res::Job | Res::ReplicationController => "Orphan",
        _ => "Background",
    }
}

fn bump_generation(res: Res, old: &Value, new: &mut Value) {
    if !res.has_generation() {
        return;
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    let g = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let changed = strip(old) != strip(new);
    new["metadata"]["generation"] = json!(if changed { g + 1 } else { g });
}

/// Checks that a body's apiVersion/kind (when given) fit the URL, and that it decodes as the
/// typed object would (a string where a number belongs is a 400, as on a real server).
fn check_type(res: Res, obj: &Value) -> Result<(), ApiError> {
    let kind = util::s(obj, "/kind");
    let api = util::s(obj, "/apiVersion");
    if (!kind.is_empty() && kind != res.info().kind)
        || (!api.is_empty() && api != res.api_version())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api}) does not match the expected API version ({}) or kind ({kind}) does not match {}",
            res.api_version(),
            res.info().kind
        )));
    }
    validate::decode_typed(res, obj)
}
