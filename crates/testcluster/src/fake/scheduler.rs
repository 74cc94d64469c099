//! The scheduler: nodeSelector, required node affinity, taints and tolerations, unschedulable
//! nodes, CPU and memory requests against a node's allocatable, volume node affinity, unbound
//! claims and ReadWriteOncePod, with the scheduler's FailedScheduling messages.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::events;
use super::kubelet::pod_claims;
use super::resources::Res;
use super::store::State;
use super::util::{self, name_of, now, s, uid_of};

/// One pass: tries every pending pod without a node.
pub fn pass(st: &mut State) {
    let pods: Vec<Arc<Value>> = st
        .list(Res::Pod, None)
        .into_iter()
        .filter(|p| {
            s(p, "/spec/nodeName").is_empty()
                && p.pointer("/metadata/deletionTimestamp").is_none()
                && s(p, "/status/phase") == "Pending"
        })
        .collect();
    for pod in pods {
        match place(st, &pod) {
            Ok(Some(node)) => bind(st, &pod, &node),
            Ok(None) => {}
            Err(msg) => unschedulable(st, &pod, &msg),
        }
    }
}

fn preemption(n: usize) -> String {
    format!("preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.")
}

/// The node for `pod`, `None` to wait (a claim being provisioned), or why it cannot be placed.
fn place(st: &mut State, pod: &Value) -> Result<Option<String>, String> {
    let ns = util::ns_of(pod).to_string();
    let nodes = st.list(Res::Node, None);
    let n = nodes.len();
    let mut wffc_node: Option<String> = None;
    let mut waiting_for_claims = Vec::new();
    let mut pv_affinity: Vec<Value> = Vec::new();
    for (_, claim) in pod_claims(pod) {
        let Some(c) = st.get(Res::Pvc, &ns, &claim) else {
            return Err(format!(
                "0/{n} nodes are available: persistentvolumeclaim \"{claim}\" not found. {}",
                preemption(n)
            ));
        };
        if c.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(format!(
                "0/{n} nodes are available: persistentvolumeclaim \"{claim}\" is being deleted. {}",
                preemption(n)
            ));
        }
        let modes = c["spec"]["accessModes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if modes.iter().any(|m| m == "ReadWriteOncePod") {
            let pv = s(&c, "/spec/volumeName");
            let taken = st.list(Res::Pod, None).iter().any(|o| {
                uid_of(o) != uid_of(pod)
                    && !s(o, "/spec/nodeName").is_empty()
                    && !matches!(s(o, "/status/phase"), "Succeeded" | "Failed")
                    && pod_claims(o).iter().any(|(_, oc)| {
                        util::ns_of(o) == ns && *oc == claim
                            || (!pv.is_empty()
                                && st
                                    .get(Res::Pvc, util::ns_of(o), oc)
                                    .is_some_and(|x| s(&x, "/spec/volumeName") == pv))
                    })
            });
            if taken {
                return Err(format!(
                    "0/{n} nodes are available: {n} node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode. {}",
                    preemption(n)
                ));
            }
        }
        if s(&c, "/status/phase") == "Bound" {
            if let Some(pv) = st.get(Res::Pv, "", s(&c, "/spec/volumeName"))
                && let Some(a) = pv.pointer("/spec/nodeAffinity/required")
            {
                pv_affinity.push(a.clone());
            }
            continue;
        }
        let class = st.get(Res::StorageClass, "", s(&c, "/spec/storageClassName"));
        let wffc = class
            .as_ref()
            .is_some_and(|c| s(c, "/volumeBindingMode") == "WaitForFirstConsumer");
        if !wffc {
            return Err(format!(
                "0/{n} nodes are available: pod has unbound immediate PersistentVolumeClaims. {}",
                preemption(n)
            ));
        }
        let selected = s(
            &c,
            "/metadata/annotations/volume.kubernetes.io~1selected-node",
        );
        if selected.is_empty() {
            waiting_for_claims.push(claim.clone());
        } else {
            wffc_node = Some(selected.to_string());
        }
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fit: Vec<String> = Vec::new();
    for node in &nodes {
        let name = name_of(node).to_string();
        let why = node_misfit(pod, node, &pv_affinity)
            .or_else(|| insufficient(st, pod, node).map(|r| format!("Insufficient {r}")));
        match why {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => fit.push(name),
        }
    }
    if fit.is_empty() {
        if n == 0 {
            return Err("no nodes available to schedule pods".into());
        }
        let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
        parts.sort();
        return Err(format!(
            "0/{n} nodes are available: {}. {}",
            parts.join(", "),
            preemption(n)
        ));
    }
    // Least loaded node first, then by name: spreads pods like the default scoring does.
    let load = |node: &str| {
        st.list(Res::Pod, None)
            .iter()
            .filter(|p| {
                s(p, "/spec/nodeName") == node
                    && !matches!(s(p, "/status/phase"), "Succeeded" | "Failed")
            })
            .count()
    };
    fit.sort_by_key(|f| (load(f), f.clone()));
    // A node picked for a WaitForFirstConsumer claim stays the pod's node.
    let hint = wffc_node.or_else(|| st.kubelet.hints.get(uid_of(pod)).cloned());
    let chosen = match hint {
        Some(h) if fit.contains(&h) => h,
        _ => fit[0].clone(),
    };
    if !waiting_for_claims.is_empty() {
        // WaitForFirstConsumer: tell the provisioner where the pod goes; bind once it is done.
        for claim in waiting_for_claims {
            st.modify(Res::Pvc, &ns, &claim, |c| {
                util::set(
                    c,
                    &[
                        "metadata",
                        "annotations",
                        "volume.kubernetes.io/selected-node",
                    ],
                    json!(chosen),
                );
            });
        }
        st.kubelet.hints.insert(uid_of(pod).to_string(), chosen);
        return Ok(None);
    }
    st.kubelet.hints.remove(uid_of(pod));
    Ok(Some(chosen))
}

fn node_misfit(pod: &Value, node: &Value, pv_affinity: &[Value]) -> Option<String> {
    let labels: Vec<(String, String)> = util::labels(node);
    let get = |k: &str| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.as_str())
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        let tolerated = tolerations(pod).iter().any(|t| {
            s(t, "/key") == "node.kubernetes.io/unschedulable" && s(t, "/effect") != "NoExecute"
                || (s(t, "/key").is_empty() && s(t, "/operator") == "Exists")
        });
        if !tolerated {
            return Some("node(s) were unschedulable".into());
        }
    }
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = s(taint, "/effect");
        if effect != "NoSchedule" && effect != "NoExecute" {
            continue;
        }
        let ok = tolerations(pod).iter().any(|t| tolerates(t, taint));
        if !ok {
            let v = s(taint, "/value");
            let shown = if v.is_empty() {
                format!("{{{}: }}", s(taint, "/key"))
            } else {
                format!("{{{}: {v}}}", s(taint, "/key"))
            };
            return Some(format!("node(s) had untolerated taint {shown}"));
        }
    }
    if let Some(sel) = pod["spec"]["nodeSelector"].as_object() {
        for (k, v) in sel {
            if get(k) != v.as_str() {
                return Some("node(s) didn't match Pod's node affinity/selector".into());
            }
        }
    }
    if let Some(req) =
        pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        && !selector_terms_match(req, node)
    {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    for a in pv_affinity {
        if !selector_terms_match(a, node) {
            return Some("node(s) had volume node affinity conflict".into());
        }
    }
    None
}

/// The CPU and memory a pod requests: the sum over its containers (init containers are not run
/// here), CPU in millicores, memory in bytes.
fn requested(pod: &Value) -> [u128; 2] {
    let mut sum = [0, 0];
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"]["requests"];
        sum[0] += r["cpu"].as_str().and_then(millicores).unwrap_or(0);
        sum[1] += r["memory"].as_str().and_then(util::quantity).unwrap_or(0);
    }
    sum
}

/// A CPU quantity in millicores: "500m" is 500, "2" and "1.5" are 2000 and 1500.
fn millicores(q: &str) -> Option<u128> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|n| (n * 1000.0) as u128),
    }
}

/// The resource (`cpu` or `memory`) `node` lacks for `pod`, as the scheduler's NodeResourcesFit
/// judges it: the requests of the pods already on the node that have not ended, plus the pod's,
/// against the node's allocatable.
fn insufficient(st: &State, pod: &Value, node: &Value) -> Option<&'static str> {
    let want = requested(pod);
    let mut used = [0, 0];
    for other in st.list(Res::Pod, None) {
        if s(&other, "/spec/nodeName") == name_of(node)
            && !matches!(s(&other, "/status/phase"), "Succeeded" | "Failed")
        {
            let r = requested(&other);
            used[0] += r[0];
            used[1] += r[1];
        }
    }
    let allocatable = &node["status"]["allocatable"];
    let cpu = allocatable["cpu"].as_str().and_then(millicores);
    let memory = allocatable["memory"].as_str().and_then(util::quantity);
    if cpu.is_some_and(|a| used[0] + want[0] > a) {
        Some("cpu")
    } else if memory.is_some_and(|a| used[1] + want[1] > a) {
        Some("memory")
    } else {
        None
    }
}

fn tolerations(pod: &Value) -> Vec<Value> {
    pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn tolerates(t: &Value, taint: &Value) -> bool {
    let eff = s(t, "/effect");
    if !eff.is_empty() && eff != s(taint, "/effect") {
        return false;
    }
    let key = s(t, "/key");
    if key.is_empty() {
        return s(t, "/operator") == "Exists";
    }
    if key != s(taint, "/key") {
        return false;
    }
    match s(t, "/operator") {
        "Exists" => true,
        _ => s(t, "/value") == s(taint, "/value"),
    }
}

/// Whether a node satisfies a NodeSelector (terms ORed, expressions ANDed).
pub fn selector_terms_match(sel: &Value, node: &Value) -> bool {
    let labels = util::labels(node);
    let get = |k: &str| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.clone())
    };
    let terms = sel["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if terms.is_empty() {
        return false;
    }
    terms.iter().any(|term| {
        let exprs_ok = term["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| {
                let vals: Vec<String> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                let v = get(s(e, "/key"));
                match s(e, "/operator") {
                    "In" => v.is_some_and(|v| vals.contains(&v)),
                    "NotIn" => v.is_none_or(|v| !vals.contains(&v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    "Gt" | "Lt" => {
                        let (Some(a), Some(b)) = (
                            v.and_then(|v| v.parse::<i64>().ok()),
                            vals.first().and_then(|x| x.parse::<i64>().ok()),
                        ) else {
                            return false;
                        };
                        if s(e, "/operator") == "Gt" {
                            a > b
                        } else {
                            a < b
                        }
                    }
                    _ => false,
                }
            });
        let fields_ok = term["matchFields"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| {
                let vals: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let name = name_of(node);
                s(e, "/key") == "metadata.name"
                    && match s(e, "/operator") {
                        "In" => vals.contains(&name),
                        "NotIn" => !vals.contains(&name),
                        _ => false,
                    }
            });
        exprs_ok && fields_ok
    })
}

fn bind(st: &mut State, pod: &Value, node: &str) {
    let (ns, name) = (util::ns_of(pod).to_string(), name_of(pod).to_string());
    let t = now();
    st.modify(Res::Pod, &ns, &name, |p| {
        p["spec"]["nodeName"] = json!(node);
        p["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": t}]);
    });
    events::record(
        st,
        Res::Pod,
        pod,
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {node}"),
        "default-scheduler",
    );
}

fn unschedulable(st: &mut State, pod: &Value, msg: &str) {
    let (ns, name) = (util::ns_of(pod).to_string(), name_of(pod).to_string());
    let t = now();
    st.modify(Res::Pod, &ns, &name, |p| {
        let cur = p["status"]["conditions"].as_array().and_then(|a| a.iter().find(|c| c["type"] == "PodScheduled").cloned());
        if cur.is_some_and(|c| c["message"] == msg) {
            return;
        }
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": msg, "lastTransitionTime": t}]);
    });
    events::record(
        st,
        Res::Pod,
        pod,
        "Warning",
        "FailedScheduling",
        msg,
        "default-scheduler",
    );
}
