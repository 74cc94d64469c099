//! Defaulting, validation and admission, with the API server's messages: what makes a real
//! cluster answer 400, 403 or 422.

use serde_json::{Value, json};

use super::cron;
use super::resources::Res;
use super::store::{Actor, State};
use super::util::{self, ApiError, FieldError, FieldErrorKind as K, name_of, s, set};

type Errs = Vec<FieldError>;

fn err(kind: K, field: &str, value: Option<Value>, detail: &str) -> FieldError {
    FieldError::new(kind, field, value, detail)
}

/// Checks the object decodes as its typed form (type errors are a 400, as on a real server).
pub fn decode_typed(res: Res, obj: &Value) -> Result<(), ApiError> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    use k8s_openapi::api::{rbac::v1 as rbac, storage::v1 as storage};
    fn try_as<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), String> {
        let mut o = obj.clone();
        // apiVersion/kind are checked separately; a missing pair must not fail decoding here.
        if let Some(m) = o.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        serde_json::from_value::<T>(o)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    let r = match res {
        Res::Namespace => try_as::<core::Namespace>(obj),
        Res::Node => try_as::<core::Node>(obj),
        Res::Pod => try_as::<core::Pod>(obj),
        Res::Pvc => try_as::<core::PersistentVolumeClaim>(obj),
        Res::Pv => try_as::<core::PersistentVolume>(obj),
        Res::Event => try_as::<core::Event>(obj),
        Res::ServiceAccount => try_as::<core::ServiceAccount>(obj),
        Res::ConfigMap => try_as::<core::ConfigMap>(obj),
        Res::Secret => try_as::<core::Secret>(obj),
        Res::ReplicationController => try_as::<core::ReplicationController>(obj),
        Res::Job => try_as::<batch::Job>(obj),
        Res::CronJob => try_as::<batch::CronJob>(obj),
        Res::Deployment => try_as::<apps::Deployment>(obj),
        Res::StatefulSet => try_as::<apps::StatefulSet>(obj),
        Res::ReplicaSet => try_as::<apps::ReplicaSet>(obj),
        Res::ControllerRevision => try_as::<apps::ControllerRevision>(obj),
        Res::StorageClass => try_as::<storage::StorageClass>(obj),
        Res::Role => try_as::<rbac::Role>(obj),
        Res::RoleBinding => try_as::<rbac::RoleBinding>(obj),
        Res::ClusterRole => try_as::<rbac::ClusterRole>(obj),
        Res::ClusterRoleBinding => try_as::<rbac::ClusterRoleBinding>(obj),
        Res::VolumeSnapshot
        | Res::VolumeSnapshotContent
        | Res::VolumeSnapshotClass
        | Res::DeploymentConfig => Ok(()),
    };
    r.map_err(|e| {
        let k = res.info().kind;
        ApiError::bad_request(format!(
            "{k} in version \"{}\" cannot be handled as a {k}: {e}",
            res.info().version
        ))
    })
}

/// Whether `name` is an RFC 1123 subdomain (object names) or, with `label`, a DNS label.
pub fn dns_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= max
        && if label {
            part_ok(name)
        } else {
            name.split('.').all(part_ok)
        }
}

fn name_error(name: &str, label: bool) -> FieldError {
    let detail = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    err(K::Invalid, "metadata.name", Some(json!(name)), detail)
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

fn label_key_ok(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(|p| dns_name(p, false))
        && !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn check_labels(labels: Option<&Value>, field: &str, errs: &mut Errs) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        if !label_key_ok(k) {
            errs.push(err(
                K::Invalid,
                field,
                Some(json!(k)),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
        let v = v.as_str().unwrap_or("");
        if !label_value_ok(v) {
            let detail = if v.len() > 63 {
                "must be no more than 63 characters"
            } else {
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            };
            errs.push(err(K::Invalid, field, Some(json!(v)), detail));
        }
    }
}

fn max_name_len(res: Res) -> (usize, bool) {
    match res {
        Res::Namespace => (63, true),
        // The name becomes the value of the job-name label of its pods.
        Res::Job => (63, false),
        // Jobs are named NAME-<minutes since the epoch> (11 characters).
        Res::CronJob => (52, false),
        _ => (253, false),
    }
}

fn check_meta(res: Res, obj: &Value, errs: &mut Errs) {
    let name = name_of(obj);
    let (max, label) = max_name_len(res);
    if !dns_name(name, label) {
        errs.push(name_error(name, label));
    } else if name.len() > max {
        errs.push(err(
            K::Invalid,
            "metadata.name",
            Some(json!(name)),
            &format!("must be no more than {max} characters"),
        ));
    }
    check_labels(obj.pointer("/metadata/labels"), "metadata.labels", errs);
}

/// Defaulting, validation and admission of a new object (`obj` already has its name).
pub fn on_create(st: &mut State, res: Res, obj: &mut Value, actor: Actor) -> Result<(), ApiError> {
    let mut errs = Errs::new();
    check_meta(res, obj, &mut errs);
    let name = name_of(obj).to_string();
    let ns = util::ns_of(obj).to_string();
    match res {
        Res::Namespace => {
            set(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            set(obj, &["status", "phase"], json!("Active"));
            set(
                obj,
                &["metadata", "labels", "kubernetes.io/metadata.name"],
                json!(name),
            );
        }
        Res::Pod => {
            default_pod_spec(obj, &["spec"]);
            check_pod_spec(obj.get("spec"), "spec", &mut errs);
            set(
                obj,
                &["status"],
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
            if errs.is_empty() {
                admit_pod(st, &ns, &name, obj)?;
            }
        }
        Res::Pvc => {
            default_claim(st, obj, &["spec"]);
            check_claim_spec(obj.get("spec"), "spec", &mut errs);
            set(obj, &["status", "phase"], json!("Pending"));
            add_finalizer(obj, "kubernetes.io/pvc-protection");
        }
        Res::Pv => {
            check_pv(obj, &mut errs);
            if obj.pointer("/spec/persistentVolumeReclaimPolicy").is_none() {
                set(
                    obj,
                    &["spec", "persistentVolumeReclaimPolicy"],
                    json!("Retain"),
                );
            }
            if obj.pointer("/spec/volumeMode").is_none() {
                set(obj, &["spec", "volumeMode"], json!("Filesystem"));
            }
            set(obj, &["status", "phase"], json!("Pending"));
            add_finalizer(obj, "kubernetes.io/pv-protection");
        }
        Res::Job => {
            let uid = util::uid();
            // The uid is fixed now so that the selector can name it; on_create's caller would
            // otherwise give the object another one.
            set(obj, &["metadata", "uid"], json!(uid));
            default_job(obj, &name, &uid, &["spec"], &mut errs);
        }
        Res::CronJob => {
            let sched = s(obj, "/spec/schedule").to_string();
            if sched.is_empty() {
                errs.push(err(K::Required, "spec.schedule", None, ""));
            } else if let Err(e) = cron::validate(&sched) {
                errs.push(err(K::Invalid, "spec.schedule", Some(json!(sched)), &e));
            }
            for (k, d) in [
                ("concurrencyPolicy", json!("Allow")),
                ("suspend", json!(false)),
                ("successfulJobsHistoryLimit", json!(3)),
                ("failedJobsHistoryLimit", json!(1)),
            ] {
                if obj.pointer(&format!("/spec/{k}")).is_none() {
                    set(obj, &["spec", k], d);
                }
            }
            let cp = s(obj, "/spec/concurrencyPolicy").to_string();
            if !["Allow", "Forbid", "Replace"].contains(&cp.as_str()) {
                errs.push(err(
                    K::NotSupported,
                    "spec.concurrencyPolicy",
                    Some(json!(cp)),
                    "supported values: \"Allow\", \"Forbid\", \"Replace\"",
                ));
            }
            let jt = obj.pointer("/spec/jobTemplate/spec").cloned();
            match jt {
                None => errs.push(err(K::Required, "spec.jobTemplate.spec.template", None, "")),
                Some(mut t) => {
                    check_job_template(&mut t, "spec.jobTemplate.spec", &mut errs);
                    set(obj, &["spec", "jobTemplate", "spec"], t);
                }
            }
        }
        Res::Deployment | Res::ReplicaSet | Res::StatefulSet | Res::ReplicationController => {
            default_workload(res, obj, &mut errs);
        }
        Res::DeploymentConfig => {
            if obj.pointer("/spec/replicas").is_none() {
                set(obj, &["spec", "replicas"], json!(1));
            }
            if obj.pointer("/spec/selector").is_none()
                && let Some(l) = obj.pointer("/spec/template/metadata/labels").cloned()
            {
                set(obj, &["spec", "selector"], l);
            }
            if obj.pointer("/spec/template").is_none() {
                errs.push(err(K::Required, "spec.template", None, ""));
            } else {
                default_pod_spec(obj, &["spec", "template", "spec"]);
                check_pod_spec(
                    obj.pointer("/spec/template/spec"),
                    "spec.template.spec",
                    &mut errs,
                );
            }
        }
        Res::StorageClass => {
            if s(obj, "/provisioner").is_empty() {
                errs.push(err(K::Required, "provisioner", None, ""));
            }
            if obj.get("reclaimPolicy").is_none() {
                obj["reclaimPolicy"] = json!("Delete");
            }
            if obj.get("volumeBindingMode").is_none() {
                obj["volumeBindingMode"] = json!("Immediate");
            }
            let mode = s(obj, "/volumeBindingMode").to_string();
            if !["Immediate", "WaitForFirstConsumer"].contains(&mode.as_str()) {
                errs.push(err(
                    K::NotSupported,
                    "volumeBindingMode",
                    Some(json!(mode)),
                    "supported values: \"Immediate\", \"WaitForFirstConsumer\"",
                ));
            }
        }
        Res::VolumeSnapshot => {
            let pvc = obj
                .pointer("/spec/source/persistentVolumeClaimName")
                .is_some();
            let content = obj
                .pointer("/spec/source/volumeSnapshotContentName")
                .is_some();
            if pvc == content {
                errs.push(err(
                    K::Invalid,
                    "spec.source",
                    obj.pointer("/spec/source").cloned(),
                    "Exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set",
                ));
            }
        }
        Res::VolumeSnapshotClass => {
            if s(obj, "/driver").is_empty() {
                errs.push(err(K::Required, "driver", None, ""));
            }
            let p = s(obj, "/deletionPolicy").to_string();
            if !["Delete", "Retain"].contains(&p.as_str()) {
                errs.push(err(
                    K::NotSupported,
                    "deletionPolicy",
                    Some(json!(p)),
                    "supported values: \"Delete\", \"Retain\"",
                ));
            }
        }
        _ => {}
    }
    let _ = actor;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, &name, errs))
    }
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let mut fins = super::store::finalizers(obj);
    if !fins.iter().any(|x| x == f) {
        fins.push(f.to_string());
    }
    set(obj, &["metadata", "finalizers"], json!(fins));
}

fn at<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = obj;
    for k in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry((*k).to_string())
            .or_insert_with(|| json!({}));
    }
    cur
}

/// Fills the fields the API server defaults in a pod spec.
pub fn default_pod_spec(obj: &mut Value, path: &[&str]) {
    let spec = at(obj, path);
    for (k, d) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if spec.get(k).is_none() {
            spec[k] = d;
        }
    }
    if spec.get("serviceAccountName").is_none() {
        let sa = spec
            .get("serviceAccount")
            .cloned()
            .unwrap_or(json!("default"));
        spec["serviceAccountName"] = sa;
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let latest = !image.contains(':') || image.ends_with(":latest");
                if c.get("imagePullPolicy").is_none() {
                    c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
                }
                if c.get("terminationMessagePath").is_none() {
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                    c["terminationMessagePolicy"] = json!("File");
                }
            }
        }
    }
}

fn check_pod_spec(spec: Option<&Value>, f: &str, errs: &mut Errs) {
    check_pod_spec_with(spec, f, &[], errs)
}

/// Checks a pod spec whose mounts may also name `extra` volumes (a StatefulSet's claim templates).
fn check_pod_spec_with(spec: Option<&Value>, f: &str, extra: &[String], errs: &mut Errs) {
    let Some(spec) = spec else {
        errs.push(err(K::Required, f, None, ""));
        return;
    };
    let mut mountable: Vec<&str> = extra.iter().map(String::as_str).collect();
    let volumes: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v["name"].as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    for (i, v) in volumes.iter().enumerate() {
        if !dns_name(v, true) {
            errs.push(err(K::Invalid, &format!("{f}.volumes[{i}].name"), Some(json!(v)), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"));
        }
        if volumes[..i].contains(v) {
            errs.push(err(
                K::Duplicate,
                &format!("{f}.volumes[{i}].name"),
                Some(json!(v)),
                "",
            ));
        }
    }
    mountable.extend(volumes.iter().copied());
    let rp = spec["restartPolicy"].as_str().unwrap_or("Always");
    if !["Always", "OnFailure", "Never"].contains(&rp) {
        errs.push(err(
            K::NotSupported,
            &format!("{f}.restartPolicy"),
            Some(json!(rp)),
            "supported values: \"Always\", \"OnFailure\", \"Never\"",
        ));
    }
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        errs.push(err(K::Required, &format!("{f}.containers"), None, ""));
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cf = format!("{f}.{list}[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if name.is_empty() {
                errs.push(err(K::Required, &format!("{cf}.name"), None, ""));
            } else if !dns_name(name, true) {
                errs.push(err(K::Invalid, &format!("{cf}.name"), Some(json!(name)), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
            } else if names.contains(&name) {
                errs.push(err(
                    K::Duplicate,
                    &format!("{cf}.name"),
                    Some(json!(name)),
                    "",
                ));
            }
            names.push(name);
            if c["image"].as_str().unwrap_or("").is_empty() {
                errs.push(err(K::Required, &format!("{cf}.image"), None, ""));
            }
            for (j, m) in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let vn = m["name"].as_str().unwrap_or("");
                if !mountable.contains(&vn) {
                    errs.push(FieldError::new(
                        K::NotFound,
                        &format!("{cf}.volumeMounts[{j}].name"),
                        Some(json!(vn)),
                        "",
                    ));
                }
                if m["mountPath"].as_str().unwrap_or("").is_empty() {
                    errs.push(err(
                        K::Required,
                        &format!("{cf}.volumeMounts[{j}].mountPath"),
                        None,
                        "",
                    ));
                }
            }
            for (j, d) in c
                .get("volumeDevices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let vn = d["name"].as_str().unwrap_or("");
                if !mountable.contains(&vn) {
                    errs.push(FieldError::new(
                        K::NotFound,
                        &format!("{cf}.volumeDevices[{j}].name"),
                        Some(json!(vn)),
                        "",
                    ));
                }
            }
        }
    }
}

/// Admission of a pod: the namespace's quota and its service account.
fn admit_pod(st: &State, ns: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    if let Some((quota, max)) = st.rt.pod_quotas.get(ns) {
        let used = st
            .list(Res::Pod, Some(ns))
            .iter()
            .filter(|p| !matches!(s(p, "/status/phase"), "Succeeded" | "Failed"))
            .count();
        if used >= *max {
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: exceeded quota: {quota}, requested: pods=1, used: pods={used}, limited: pods={max}"
            )));
        }
    }
    let sa = s(obj, "/spec/serviceAccountName");
    if st.get(Res::ServiceAccount, ns, sa).is_none() {
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
        )));
    }
    Ok(())
}

/// The default StorageClass (annotated is-default-class), if any.
pub fn default_class(st: &State) -> Option<String> {
    st.list(Res::StorageClass, None)
        .iter()
        .find(|c| {
            s(
                c,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true"
        })
        .map(|c| name_of(c).to_string())
}

fn default_claim(st: &State, obj: &mut Value, path: &[&str]) {
    let def = default_class(st);
    let spec = at(obj, path);
    if spec.get("storageClassName").is_none()
        && let Some(d) = def
    {
        spec["storageClassName"] = json!(d);
    }
    if spec.get("volumeMode").is_none() {
        spec["volumeMode"] = json!("Filesystem");
    }
    // dataSource and dataSourceRef mirror each other when only one is given.
    if spec.get("dataSourceRef").is_none()
        && let Some(ds) = spec.get("dataSource").cloned()
    {
        spec["dataSourceRef"] = ds;
    } else if spec.get("dataSource").is_none()
        && let Some(dr) = spec.get("dataSourceRef").cloned()
        && dr.get("namespace").is_none()
    {
        spec["dataSource"] = dr;
    }
}

const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn check_access_modes(modes: Option<&Value>, f: &str, errs: &mut Errs) {
    let modes: Vec<&str> = modes
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if modes.is_empty() {
        errs.push(err(
            K::Required,
            f,
            None,
            "at least 1 access mode is required",
        ));
    }
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            errs.push(err(K::NotSupported, f, Some(json!(m)), "supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""));
        }
    }
    if modes.contains(&"ReadWriteOncePod") && modes.len() > 1 {
        errs.push(err(
            K::Forbidden,
            f,
            None,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn check_claim_spec(spec: Option<&Value>, f: &str, errs: &mut Errs) {
    let Some(spec) = spec else {
        errs.push(err(K::Required, f, None, ""));
        return;
    };
    check_access_modes(spec.get("accessModes"), &format!("{f}.accessModes"), errs);
    match spec
        .pointer("/resources/requests/storage")
        .and_then(Value::as_str)
    {
        None => errs.push(err(
            K::Required,
            &format!("{f}.resources[storage]"),
            None,
            "",
        )),
        Some(q) if util::quantity(q).is_none_or(|b| b == 0) => errs.push(err(
            K::Invalid,
            &format!("{f}.resources.requests[storage]"),
            Some(json!(q)),
            "must be greater than zero",
        )),
        _ => {}
    }
    let vm = spec["volumeMode"].as_str().unwrap_or("Filesystem");
    if !["Filesystem", "Block"].contains(&vm) {
        errs.push(err(
            K::NotSupported,
            &format!("{f}.volumeMode"),
            Some(json!(vm)),
            "supported values: \"Block\", \"Filesystem\"",
        ));
    }
    if let Some(ds) = spec.get("dataSource") {
        let kind = ds["kind"].as_str().unwrap_or("");
        let group = ds["apiGroup"].as_str().unwrap_or("");
        if ds["name"].as_str().unwrap_or("").is_empty() {
            errs.push(err(K::Required, &format!("{f}.dataSource.name"), None, ""));
        }
        if kind == "PersistentVolumeClaim" && !group.is_empty() {
            errs.push(err(
                K::Invalid,
                &format!("{f}.dataSource.apiGroup"),
                Some(json!(group)),
                "must be empty for PersistentVolumeClaim",
            ));
        }
        if kind.is_empty() {
            errs.push(err(K::Required, &format!("{f}.dataSource.kind"), None, ""));
        }
    }
}

fn check_pv(obj: &Value, errs: &mut Errs) {
    if obj.pointer("/spec/capacity/storage").is_none() {
        errs.push(err(K::Required, "spec.capacity", None, ""));
    }
    check_access_modes(obj.pointer("/spec/accessModes"), "spec.accessModes", errs);
    let sources = pv_sources(obj);
    if sources.is_empty() {
        errs.push(err(K::Required, "spec", None, "must specify a volume type"));
    } else if sources.len() > 1 {
        errs.push(err(
            K::Forbidden,
            "spec",
            None,
            "may not specify more than 1 volume type",
        ));
    }
}

fn pv_sources(obj: &Value) -> Vec<String> {
    const NON_SOURCE: [&str; 8] = [
        "capacity",
        "accessModes",
        "claimRef",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "mountOptions",
        "volumeMode",
        "nodeAffinity",
    ];
    obj.get("spec")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter(|k| !NON_SOURCE.contains(&k.as_str()) && *k != "volumeAttributesClassName")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn check_job_template(spec: &mut Value, f: &str, errs: &mut Errs) {
    let Some(_) = spec.get("template") else {
        errs.push(err(K::Required, &format!("{f}.template"), None, ""));
        return;
    };
    let rp = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if rp.is_empty() {
        errs.push(err(
            K::Required,
            &format!("{f}.template.spec.restartPolicy"),
            None,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if rp != "OnFailure" && rp != "Never" {
        errs.push(err(
            K::NotSupported,
            &format!("{f}.template.spec.restartPolicy"),
            Some(json!(rp)),
            "supported values: \"OnFailure\", \"Never\"",
        ));
    }
    default_pod_spec(spec, &["template", "spec"]);
    check_pod_spec(
        spec.pointer("/template/spec"),
        &format!("{f}.template.spec"),
        errs,
    );
    check_labels(
        spec.pointer("/template/metadata/labels"),
        &format!("{f}.template.metadata.labels"),
        errs,
    );
    for (k, d) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(null)),
    ] {
        if spec.get(k).is_none() && !d.is_null() {
            spec[k] = d;
        }
    }
    for k in [
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = spec.get(k).and_then(Value::as_i64)
            && (n < 0 || (k == "activeDeadlineSeconds" && n == 0))
        {
            errs.push(err(
                K::Invalid,
                &format!("{f}.{k}"),
                Some(json!(n)),
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn default_job(obj: &mut Value, name: &str, uid: &str, path: &[&str], errs: &mut Errs) {
    let mut spec = obj.pointer("/spec").cloned().unwrap_or(json!({}));
    check_job_template(&mut spec, "spec", errs);
    if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) {
        if spec.get("selector").is_some() {
            errs.push(err(
                K::Invalid,
                "spec.selector",
                spec.get("selector").cloned(),
                "`selector` will be auto-generated",
            ));
        }
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = at(&mut spec, &["template", "metadata", "labels"]);
        for (k, v) in [
            ("controller-uid", uid),
            ("batch.kubernetes.io/controller-uid", uid),
            ("job-name", name),
            ("batch.kubernetes.io/job-name", name),
        ] {
            labels[k] = json!(v);
        }
        check_labels(
            spec.pointer("/template/metadata/labels"),
            "spec.template.metadata.labels",
            errs,
        );
    }
    let _ = path;
    obj["spec"] = spec;
}

fn default_workload(res: Res, obj: &mut Value, errs: &mut Errs) {
    if obj.pointer("/spec/replicas").is_none() {
        set(obj, &["spec", "replicas"], json!(1));
    }
    if obj.pointer("/spec/template").is_none() {
        errs.push(err(K::Required, "spec.template", None, ""));
        return;
    }
    if res == Res::ReplicationController
        && obj.pointer("/spec/selector").is_none()
        && let Some(l) = obj.pointer("/spec/template/metadata/labels").cloned()
    {
        set(obj, &["spec", "selector"], l);
    }
    let sel = match obj.pointer("/spec/selector") {
        None => {
            errs.push(err(K::Required, "spec.selector", None, ""));
            return;
        }
        Some(s) if res == Res::ReplicationController => {
            super::select::LabelSelector::from_object(&json!({"matchLabels": s}))
        }
        Some(s) => super::select::LabelSelector::from_object(s),
    };
    let tl = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if sel.is_empty() {
        errs.push(err(
            K::Invalid,
            "spec.selector",
            obj.pointer("/spec/selector").cloned(),
            "empty selector is invalid for deployment",
        ));
    } else if !sel.matches(&json!({"metadata": {"labels": tl}})) {
        errs.push(err(
            K::Invalid,
            "spec.template.metadata.labels",
            Some(tl.clone()),
            "`selector` does not match template `labels`",
        ));
    }
    check_labels(Some(&tl), "spec.template.metadata.labels", errs);
    default_pod_spec(obj, &["spec", "template", "spec"]);
    check_pod_spec_with(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        &claim_templates(obj),
        errs,
    );
    let rp = s(obj, "/spec/template/spec/restartPolicy").to_string();
    if rp != "Always" {
        errs.push(err(
            K::NotSupported,
            "spec.template.spec.restartPolicy",
            Some(json!(rp)),
            "supported values: \"Always\"",
        ));
    }
    match res {
        Res::Deployment => {
            if obj.pointer("/spec/strategy").is_none() {
                set(
                    obj,
                    &["spec", "strategy"],
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
            }
            for (k, d) in [
                ("revisionHistoryLimit", 10),
                ("progressDeadlineSeconds", 600),
            ] {
                if obj.pointer(&format!("/spec/{k}")).is_none() {
                    set(obj, &["spec", k], json!(d));
                }
            }
        }
        Res::StatefulSet => {
            for (k, d) in [
                ("podManagementPolicy", json!("OrderedReady")),
                (
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                ),
                ("revisionHistoryLimit", json!(10)),
                (
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                ),
            ] {
                if obj.pointer(&format!("/spec/{k}")).is_none() {
                    set(obj, &["spec", k], d);
                }
            }
            if let Some(ts) = obj
                .pointer_mut("/spec/volumeClaimTemplates")
                .and_then(Value::as_array_mut)
            {
                for (i, t) in ts.iter_mut().enumerate() {
                    if t.pointer("/spec/volumeMode").is_none() {
                        set(t, &["spec", "volumeMode"], json!("Filesystem"));
                    }
                    check_claim_spec(
                        t.get("spec"),
                        &format!("spec.volumeClaimTemplates[{i}].spec"),
                        errs,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Validation of an update: the immutable fields of each kind (controllers may change more).
pub fn on_update(
    st: &State,
    res: Res,
    old: &Value,
    new: &mut Value,
    actor: Actor,
) -> Result<(), ApiError> {
    let mut errs = Errs::new();
    let name = name_of(old).to_string();
    check_labels(
        new.pointer("/metadata/labels"),
        "metadata.labels",
        &mut errs,
    );
    if actor == Actor::Controller {
        return if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(res, &name, errs))
        };
    }
    let immutable = |errs: &mut Errs, ptr: &str, field: &str| {
        if old.pointer(ptr) != new.pointer(ptr) {
            errs.push(err(
                K::Invalid,
                field,
                new.pointer(ptr).cloned().or(Some(Value::Null)),
                "field is immutable",
            ));
        }
    };
    match res {
        Res::Pvc => check_claim_update(st, old, new, &mut errs)?,
        Res::Pv => {
            let src = |v: &Value| {
                pv_sources(v)
                    .into_iter()
                    .map(|k| (k.clone(), v["spec"][&k].clone()))
                    .collect::<Vec<_>>()
            };
            if src(old) != src(new) {
                errs.push(err(
                    K::Forbidden,
                    "spec.persistentvolumesource",
                    None,
                    "spec.persistentvolumesource is immutable after creation",
                ));
            }
            immutable(&mut errs, "/spec/volumeMode", "spec.volumeMode");
            check_access_modes(
                new.pointer("/spec/accessModes"),
                "spec.accessModes",
                &mut errs,
            );
        }
        Res::Pod => {
            let strip = |v: &Value| {
                let mut sp = v["spec"].clone();
                for l in ["containers", "initContainers"] {
                    if let Some(cs) = sp.get_mut(l).and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(m) = c.as_object_mut() {
                                m.remove("image");
                            }
                        }
                    }
                }
                if let Some(m) = sp.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                }
                sp
            };
            if strip(old) != strip(new) {
                errs.push(err(K::Forbidden, "spec", None, "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
        }
        Res::Job => {
            immutable(&mut errs, "/spec/template", "spec.template");
            immutable(&mut errs, "/spec/selector", "spec.selector");
            immutable(&mut errs, "/spec/completions", "spec.completions");
            immutable(&mut errs, "/spec/completionMode", "spec.completionMode");
        }
        Res::CronJob => {
            let sched = s(new, "/spec/schedule").to_string();
            if let Err(e) = cron::validate(&sched) {
                errs.push(err(K::Invalid, "spec.schedule", Some(json!(sched)), &e));
            }
            if let Some(mut t) = new.pointer("/spec/jobTemplate/spec").cloned() {
                check_job_template(&mut t, "spec.jobTemplate.spec", &mut errs);
                set(new, &["spec", "jobTemplate", "spec"], t);
            }
        }
        Res::Deployment | Res::ReplicaSet => {
            immutable(&mut errs, "/spec/selector", "spec.selector");
            default_pod_spec(new, &["spec", "template", "spec"]);
            check_pod_spec(
                new.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut errs,
            );
        }
        Res::StatefulSet => {
            default_pod_spec(new, &["spec", "template", "spec"]);
            let strip = |v: &Value| {
                let mut sp = v["spec"].clone();
                if let Some(m) = sp.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                sp
            };
            if strip(old) != strip(new) {
                errs.push(err(K::Forbidden, "spec", None, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
            }
            check_pod_spec_with(
                new.pointer("/spec/template/spec"),
                "spec.template.spec",
                &claim_templates(new),
                &mut errs,
            );
        }
        Res::StorageClass => {
            for (ptr, f) in [
                ("/parameters", "parameters"),
                ("/provisioner", "provisioner"),
                ("/reclaimPolicy", "reclaimPolicy"),
                ("/volumeBindingMode", "volumeBindingMode"),
            ] {
                if old.pointer(ptr) != new.pointer(ptr) {
                    errs.push(err(
                        K::Forbidden,
                        f,
                        None,
                        &format!("updates to {f} are forbidden."),
                    ));
                }
            }
        }
        Res::VolumeSnapshot if old.pointer("/spec/source") != new.pointer("/spec/source") => {
            errs.push(err(
                K::Invalid,
                "spec.source",
                new.pointer("/spec/source").cloned(),
                "spec.source is immutable",
            ));
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, &name, errs))
    }
}

fn claim_templates(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().map(|t| name_of(t).to_string()).collect())
        .unwrap_or_default()
}

fn check_claim_update(
    st: &State,
    old: &Value,
    new: &mut Value,
    errs: &mut Errs,
) -> Result<(), ApiError> {
    let name = name_of(old);
    let mut o = old["spec"].clone();
    let mut n = new["spec"].clone();
    // The binder may set volumeName on a claim that has none.
    if s(old, "/spec/volumeName").is_empty() {
        if let Some(m) = o.as_object_mut() {
            m.remove("volumeName");
        }
        if let Some(m) = n.as_object_mut() {
            m.remove("volumeName");
        }
    }
    let old_req = o.pointer("/resources/requests").cloned();
    let new_req = n.pointer("/resources/requests").cloned();
    for sp in [&mut o, &mut n] {
        if let Some(r) = sp.get_mut("resources").and_then(Value::as_object_mut) {
            r.remove("requests");
        }
        if let Some(m) = sp.as_object_mut() {
            m.remove("volumeAttributesClassName");
        }
    }
    let bound = s(old, "/status/phase") == "Bound";
    if o != n {
        errs.push(err(K::Forbidden, "spec", None, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
        return Ok(());
    }
    if old_req != new_req {
        let size = |r: &Option<Value>| {
            r.as_ref()
                .and_then(|r| r["storage"].as_str())
                .and_then(util::quantity)
                .unwrap_or(0)
        };
        if !bound {
            errs.push(err(K::Forbidden, "spec", None, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
            return Ok(());
        }
        if size(&new_req) < size(&old_req) {
            errs.push(err(
                K::Forbidden,
                "spec.resources.requests.storage",
                None,
                "field can not be less than previous value",
            ));
            return Ok(());
        }
        let class = s(old, "/spec/storageClassName");
        let expandable = st
            .get(Res::StorageClass, "", class)
            .is_some_and(|c| c["allowVolumeExpansion"].as_bool() == Some(true));
        if !expandable {
            return Err(ApiError::forbidden(format!(
                "persistentvolumeclaims \"{name}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
            )));
        }
    }
    Ok(())
}
