//! Workload controllers: Deployments (through ReplicaSets), ReplicaSets, StatefulSets (with
//! volumeClaimTemplates), ReplicationControllers and OpenShift DeploymentConfigs (through
//! ReplicationControllers, without deployer pods).

use serde_json::{Value, json};
use std::sync::Arc;

use super::events;
use super::resources::Res;
use super::store::{Actor, DeleteOpts, State};
use super::util::{self, controlled_by, controller_ref, hash_of, name_of, s, suffix, uid_of};

/// One pass of every workload controller.
pub fn pass(st: &mut State) {
    for d in st.list(Res::Deployment, None) {
        deployment(st, &d);
    }
    for dc in st.list(Res::DeploymentConfig, None) {
        deployment_config(st, &dc);
    }
    for rs in st.list(Res::ReplicaSet, None) {
        pod_set(st, Res::ReplicaSet, &rs);
    }
    for rc in st.list(Res::ReplicationController, None) {
        pod_set(st, Res::ReplicationController, &rc);
    }
    for sts in st.list(Res::StatefulSet, None) {
        stateful_set(st, &sts);
    }
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

fn alive(p: &Value) -> bool {
    !deleting(p) && !matches!(s(p, "/status/phase"), "Succeeded" | "Failed")
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn replicas(v: &Value) -> i64 {
    v.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn owned(st: &State, res: Res, ns: &str, owner: &Value) -> Vec<Arc<Value>> {
    st.list(res, Some(ns))
        .into_iter()
        .filter(|o| controlled_by(o, uid_of(owner)))
        .collect()
}

fn set_status(st: &mut State, res: Res, obj: &Value, status: Value) {
    if obj["status"] != status {
        st.modify(res, util::ns_of(obj), name_of(obj), |o| {
            o["status"] = status
        });
    }
}

fn new_pod(template: &Value, name: &str, owner_res: Res, owner: &Value) -> Value {
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    meta["name"] = json!(name);
    meta["ownerReferences"] = json!([controller_ref(owner_res, owner)]);
    if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
        m.remove("generateName");
    }
    json!({"metadata": meta, "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

/// ReplicaSets and ReplicationControllers: keep spec.replicas pods of the template.
fn pod_set(st: &mut State, res: Res, owner: &Value) {
    if deleting(owner) {
        return;
    }
    let ns = util::ns_of(owner).to_string();
    let want = replicas(owner);
    let pods = owned(st, Res::Pod, &ns, owner);
    // Failed pods are replaced.
    for p in pods
        .iter()
        .filter(|p| s(p, "/status/phase") == "Failed" && !deleting(p))
    {
        let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
    }
    let mut live: Vec<&Arc<Value>> = pods.iter().filter(|p| alive(p)).collect();
    let n = live.len() as i64;
    if n < want {
        let template = owner
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        for _ in n..want {
            let base: String = name_of(owner).chars().take(57).collect();
            let pod = new_pod(&template, &format!("{base}-{}", suffix(5)), res, owner);
            match st.create(Res::Pod, &ns, pod, Actor::Controller, false) {
                Ok(p) => events::record(
                    st,
                    res,
                    owner,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name_of(&p)),
                    "replicaset-controller",
                ),
                Err(e) => {
                    events::record(
                        st,
                        res,
                        owner,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                        "replicaset-controller",
                    );
                    break;
                }
            }
        }
    } else if n > want {
        // Pods not yet on a node or not ready go first, then the youngest.
        live.sort_by_key(|p| {
            (
                !s(p, "/spec/nodeName").is_empty(),
                ready(p),
                std::cmp::Reverse(s(p, "/metadata/creationTimestamp").to_string()),
            )
        });
        for p in live.iter().take((n - want) as usize) {
            let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
            events::record(
                st,
                res,
                owner,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", name_of(p)),
                "replicaset-controller",
            );
        }
    }
    let pods = owned(st, Res::Pod, &ns, owner);
    let live: Vec<&Arc<Value>> = pods.iter().filter(|p| alive(p)).collect();
    let r = live.iter().filter(|p| ready(p)).count();
    let mut status = json!({
        "replicas": live.len(),
        "fullyLabeledReplicas": live.len(),
        "readyReplicas": r,
        "availableReplicas": r,
        "observedGeneration": owner.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    if r == 0 {
        let m = status.as_object_mut().expect("object");
        m.remove("readyReplicas");
        m.remove("availableReplicas");
    }
    set_status(st, res, owner, status);
}

/// An int-or-percent of `total`, rounded up or down.
fn int_or_percent(v: Option<&Value>, total: i64, default: &str, up: bool) -> i64 {
    let text = match v {
        Some(Value::Number(n)) => return n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.clone(),
        _ => default.to_string(),
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
        Some(p) if up => (p * total + 99) / 100,
        Some(p) => p * total / 100,
        None => text.parse().unwrap_or(0),
    }
}

fn deployment(st: &mut State, d: &Arc<Value>) {
    if deleting(d) {
        return;
    }
    let ns = util::ns_of(d).to_string();
    let want = replicas(d);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = hash_of(&template);
    let sets = owned(st, Res::ReplicaSet, &ns, d);
    let revision = sets
        .iter()
        .filter_map(|r| {
            s(
                r,
                "/metadata/annotations/deployment.kubernetes.io~1revision",
            )
            .parse::<i64>()
            .ok()
        })
        .max()
        .unwrap_or(0);
    let new_rs = match sets
        .iter()
        .find(|r| s(r, "/metadata/labels/pod-template-hash") == hash)
    {
        Some(r) => r.clone(),
        None => {
            let mut t = template.clone();
            util::set(
                &mut t,
                &["metadata", "labels", "pod-template-hash"],
                json!(hash),
            );
            let mut sel = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            util::set(&mut sel, &["matchLabels", "pod-template-hash"], json!(hash));
            let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            labels["pod-template-hash"] = json!(hash);
            let start = if sets.is_empty() { want } else { 0 };
            let rs = json!({
                "metadata": {"name": format!("{}-{hash}", name_of(d)), "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": (revision + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": want.to_string()},
                    "ownerReferences": [controller_ref(Res::Deployment, d)]},
                "spec": {"replicas": start, "selector": sel, "template": t},
            });
            match st.create(Res::ReplicaSet, &ns, rs, Actor::Controller, false) {
                Ok(r) => {
                    events::record(
                        st,
                        Res::Deployment,
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {} from 0 to {start}", name_of(&r)),
                        "deployment-controller",
                    );
                    r
                }
                Err(_) => return,
            }
        }
    };
    let old: Vec<Arc<Value>> = owned(st, Res::ReplicaSet, &ns, d)
        .into_iter()
        .filter(|r| uid_of(r) != uid_of(&new_rs))
        .collect();
    let pods_of = |st: &State, rs: &Value| owned(st, Res::Pod, &ns, rs);
    let scale = |st: &mut State, rs: &Value, n: i64| {
        if replicas(rs) != n {
            let from = replicas(rs);
            st.modify(Res::ReplicaSet, &ns, name_of(rs), |r| {
                r["spec"]["replicas"] = json!(n)
            });
            let verb = if n > from { "up" } else { "down" };
            events::record(
                st,
                Res::Deployment,
                d,
                "Normal",
                "ScalingReplicaSet",
                &format!(
                    "Scaled {verb} replica set {} from {from} to {n}",
                    name_of(rs)
                ),
                "deployment-controller",
            );
        }
    };
    let old_total: i64 = old.iter().map(|r| replicas(r)).sum();
    if s(d, "/spec/strategy/type") == "Recreate" {
        for r in &old {
            scale(st, r, 0);
        }
        let old_pods: usize = old.iter().map(|r| pods_of(st, r).len()).sum();
        if old_pods == 0 {
            scale(st, &new_rs, want);
        }
    } else {
        let ru = d.pointer("/spec/strategy/rollingUpdate");
        let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), want, "25%", true);
        let mut unavailable =
            int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, "25%", false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let cur_new = replicas(&new_rs);
        let target_new = if old_total == 0 {
            want
        } else {
            (want + surge - old_total).clamp(cur_new.min(want), want)
        };
        scale(st, &new_rs, target_new);
        if old_total > 0 {
            let available: i64 = std::iter::once(&new_rs)
                .chain(old.iter())
                .map(|r| {
                    pods_of(st, r)
                        .iter()
                        .filter(|p| alive(p) && ready(p))
                        .count() as i64
                })
                .sum();
            let mut removable = (available - (want - unavailable)).max(0);
            for r in &old {
                if removable == 0 {
                    break;
                }
                let cut = removable.min(replicas(r));
                scale(st, r, replicas(r) - cut);
                removable -= cut;
            }
        }
    }
    let sets = owned(st, Res::ReplicaSet, &ns, d);
    let mut total = 0;
    let mut readyn = 0;
    let mut updated = 0;
    for r in &sets {
        let pods = pods_of(st, r);
        let live: Vec<&Arc<Value>> = pods.iter().filter(|p| alive(p)).collect();
        total += live.len() as i64;
        readyn += live.iter().filter(|p| ready(p)).count() as i64;
        if uid_of(r) == uid_of(&new_rs) {
            updated = live.len() as i64;
        }
    }
    let max_unavailable = int_or_percent(
        d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
        want,
        "25%",
        false,
    );
    let available_ok = readyn >= want - max_unavailable;
    let complete = updated == want && total == want && readyn == want;
    let t = s(d, "/metadata/creationTimestamp").to_string();
    let mut status = json!({
        "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": total, "updatedReplicas": updated, "readyReplicas": readyn,
        "availableReplicas": readyn, "unavailableReplicas": (want - readyn).max(0),
        "conditions": [
            {"type": "Available", "status": if available_ok { "True" } else { "False" },
             "reason": if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": if available_ok { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
             "lastUpdateTime": t, "lastTransitionTime": t},
            {"type": "Progressing", "status": "True",
             "reason": if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
             "message": if complete { format!("ReplicaSet \"{}\" has successfully progressed.", name_of(&new_rs)) } else { format!("ReplicaSet \"{}\" is progressing.", name_of(&new_rs)) },
             "lastUpdateTime": t, "lastTransitionTime": t},
        ],
    });
    let m = status.as_object_mut().expect("object");
    for k in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ] {
        if m[k] == json!(0) {
            m.remove(k);
        }
    }
    set_status(st, Res::Deployment, d, status);
}

fn stateful_set(st: &mut State, sts: &Arc<Value>) {
    if deleting(sts) {
        return;
    }
    let ns = util::ns_of(sts).to_string();
    let name = name_of(sts).to_string();
    let want = replicas(sts);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let revision = format!("{name}-{}", hash_of(&template));
    let parallel = s(sts, "/spec/podManagementPolicy") == "Parallel";
    let on_delete = s(sts, "/spec/updateStrategy/type") == "OnDelete";
    let pods = owned(st, Res::Pod, &ns, sts);
    let ordinal = |p: &Value| {
        name_of(p)
            .rsplit('-')
            .next()
            .and_then(|o| o.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let selector_labels = sts
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or(json!({}));
    // Failed pods are deleted and made again.
    for p in pods
        .iter()
        .filter(|p| s(p, "/status/phase") == "Failed" && !deleting(p))
    {
        let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
    }
    let mut blocked = false;
    for i in 0..want {
        let pod_name = format!("{name}-{i}");
        let existing = st.get(Res::Pod, &ns, &pod_name);
        match existing {
            Some(p) if controlled_by(&p, uid_of(sts)) => {
                if !alive(&p) || !ready(&p) {
                    blocked = true;
                }
            }
            Some(_) => blocked = true,
            None => {
                if blocked && !parallel {
                    break;
                }
                for t in sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let claim = format!("{}-{pod_name}", name_of(t));
                    if st.get(Res::Pvc, &ns, &claim).is_none() {
                        let mut labels =
                            t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                        if let (Some(l), Some(sl)) =
                            (labels.as_object_mut(), selector_labels.as_object())
                        {
                            for (k, v) in sl {
                                l.insert(k.clone(), v.clone());
                            }
                        }
                        let pvc = json!({"metadata": {"name": claim, "labels": labels,
                            "annotations": t.pointer("/metadata/annotations").cloned().unwrap_or(json!({}))},
                            "spec": t["spec"]});
                        match st.create(Res::Pvc, &ns, pvc, Actor::Controller, false) {
                            Ok(_) => events::record(
                                st,
                                Res::StatefulSet,
                                sts,
                                "Normal",
                                "SuccessfulCreate",
                                &format!(
                                    "create Claim {claim} Pod {pod_name} in StatefulSet {name} success"
                                ),
                                "statefulset-controller",
                            ),
                            Err(e) => events::record(
                                st,
                                Res::StatefulSet,
                                sts,
                                "Warning",
                                "FailedCreate",
                                &format!(
                                    "create Claim {claim} for Pod {pod_name} in StatefulSet {name} failed error: {}",
                                    e.message
                                ),
                                "statefulset-controller",
                            ),
                        }
                    }
                }
                let mut pod = new_pod(&template, &pod_name, Res::StatefulSet, sts);
                for (k, v) in [
                    ("controller-revision-hash", revision.clone()),
                    ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                ] {
                    util::set(&mut pod, &["metadata", "labels", k], json!(v));
                }
                pod["spec"]["hostname"] = json!(pod_name);
                if !s(sts, "/spec/serviceName").is_empty() {
                    pod["spec"]["subdomain"] = sts["spec"]["serviceName"].clone();
                }
                let mut vols = pod["spec"]["volumes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for t in sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let vname = name_of(t).to_string();
                    vols.retain(|v| v["name"] != vname.as_str());
                    vols.push(json!({"name": vname, "persistentVolumeClaim": {"claimName": format!("{vname}-{pod_name}")}}));
                }
                pod["spec"]["volumes"] = json!(vols);
                match st.create(Res::Pod, &ns, pod, Actor::Controller, false) {
                    Ok(_) => events::record(
                        st,
                        Res::StatefulSet,
                        sts,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        "statefulset-controller",
                    ),
                    Err(e) => {
                        events::record(
                            st,
                            Res::StatefulSet,
                            sts,
                            "Warning",
                            "FailedCreate",
                            &format!(
                                "create Pod {pod_name} in StatefulSet {name} failed error: {}",
                                e.message
                            ),
                            "statefulset-controller",
                        );
                        break;
                    }
                }
                blocked = true;
            }
        }
    }
    // Scale down from the highest ordinal, one at a time unless Parallel.
    let mut extra: Vec<Arc<Value>> = owned(st, Res::Pod, &ns, sts)
        .into_iter()
        .filter(|p| ordinal(p) >= want)
        .collect();
    extra.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    if extra.iter().any(|p| deleting(p)) && !parallel {
        // Wait for the one going away.
    } else {
        for p in extra.iter().take(if parallel { extra.len() } else { 1 }) {
            let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
            events::record(
                st,
                Res::StatefulSet,
                sts,
                "Normal",
                "SuccessfulDelete",
                &format!("delete Pod {} in StatefulSet {name} successful", name_of(p)),
                "statefulset-controller",
            );
        }
    }
    // Rolling update: replace pods of an old revision from the highest ordinal, once all are ready.
    let pods = owned(st, Res::Pod, &ns, sts);
    if !on_delete && pods.iter().all(|p| alive(p) && ready(p)) && pods.len() as i64 == want {
        let mut stale: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| s(p, "/metadata/labels/controller-revision-hash") != revision)
            .collect();
        stale.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        if let Some(p) = stale.first() {
            let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
        }
    }
    let pods = owned(st, Res::Pod, &ns, sts);
    let live: Vec<&Arc<Value>> = pods.iter().filter(|p| alive(p)).collect();
    let r = live.iter().filter(|p| ready(p)).count();
    let updated = live
        .iter()
        .filter(|p| s(p, "/metadata/labels/controller-revision-hash") == revision)
        .count();
    let status = json!({
        "observedGeneration": sts.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": live.len(), "readyReplicas": r, "currentReplicas": updated, "updatedReplicas": updated,
        "availableReplicas": r, "currentRevision": revision, "updateRevision": revision, "collisionCount": 0,
    });
    set_status(st, Res::StatefulSet, sts, status);
}

fn deployment_config(st: &mut State, dc: &Arc<Value>) {
    if deleting(dc) {
        return;
    }
    let ns = util::ns_of(dc).to_string();
    let name = name_of(dc).to_string();
    let template = dc.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = hash_of(&template);
    let triggers = dc.pointer("/spec/triggers").and_then(Value::as_array);
    let config_change = triggers.is_none_or(|t| t.iter().any(|x| x["type"] == "ConfigChange"));
    let mut version = dc
        .pointer("/status/latestVersion")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let rcs = owned(st, Res::ReplicationController, &ns, dc);
    let latest = rcs
        .iter()
        .find(|r| {
            s(
                r,
                "/metadata/annotations/openshift.io~1deployment-config.latest-version",
            ) == version.to_string()
        })
        .cloned();
    let stale = latest
        .as_ref()
        .is_none_or(|r| s(r, "/metadata/annotations/fake.pvc-backup.io~1template-hash") != hash);
    if stale && config_change {
        version += 1;
        let rc_name = format!("{name}-{version}");
        let mut t = template.clone();
        util::set(
            &mut t,
            &["metadata", "labels", "deployment"],
            json!(rc_name),
        );
        util::set(
            &mut t,
            &["metadata", "labels", "deploymentconfig"],
            json!(name),
        );
        util::set(
            &mut t,
            &[
                "metadata",
                "annotations",
                "openshift.io/deployment-config.name",
            ],
            json!(name),
        );
        util::set(
            &mut t,
            &["metadata", "annotations", "openshift.io/deployment.name"],
            json!(rc_name),
        );
        let mut sel = dc.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        sel["deployment"] = json!(rc_name);
        sel["deploymentconfig"] = json!(name);
        let rc = json!({
            "metadata": {"name": rc_name, "labels": {"openshift.io/deployment-config.name": name},
                "annotations": {"openshift.io/deployment-config.name": name, "openshift.io/deployment.phase": "Complete",
                    "openshift.io/deployment-config.latest-version": version.to_string(),
                    "openshift.io/encoded-deployment-config": "", "fake.pvc-backup.io/template-hash": hash},
                "ownerReferences": [controller_ref(Res::DeploymentConfig, dc)]},
            "spec": {"replicas": 0, "selector": sel, "template": t},
        });
        if st
            .create(
                Res::ReplicationController,
                &ns,
                rc,
                Actor::Controller,
                false,
            )
            .is_err()
        {
            return;
        }
        events::record(
            st,
            Res::DeploymentConfig,
            dc,
            "Normal",
            "DeploymentCreated",
            &format!("Created new replication controller \"{rc_name}\" for version {version}"),
            "deploymentconfig-controller",
        );
    }
    // The latest version runs spec.replicas pods; older ones none.
    let want = replicas(dc);
    let mut total = 0;
    let mut readyn = 0;
    let mut updated = 0;
    for r in owned(st, Res::ReplicationController, &ns, dc) {
        let is_latest = s(
            &r,
            "/metadata/annotations/openshift.io~1deployment-config.latest-version",
        ) == version.to_string();
        let n = if is_latest { want } else { 0 };
        if replicas(&r) != n {
            st.modify(Res::ReplicationController, &ns, name_of(&r), |x| {
                x["spec"]["replicas"] = json!(n)
            });
        }
        let pods = owned(st, Res::Pod, &ns, &r);
        let live: Vec<&Arc<Value>> = pods.iter().filter(|p| alive(p)).collect();
        total += live.len();
        readyn += live.iter().filter(|p| ready(p)).count();
        if is_latest {
            updated = live.len();
        }
    }
    let status = json!({
        "latestVersion": version,
        "observedGeneration": dc.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": total, "readyReplicas": readyn, "availableReplicas": readyn, "updatedReplicas": updated,
        "unavailableReplicas": (want - readyn as i64).max(0),
        "conditions": [{"type": "Available", "status": if readyn as i64 >= want { "True" } else { "False" },
            "message": if readyn as i64 >= want { "Deployment config has minimum availability." } else { "Deployment config does not have minimum availability." }}],
    });
    set_status(st, Res::DeploymentConfig, dc, status);
}
