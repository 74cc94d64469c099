//! The kubelet and the attach/detach controller: starts scheduled pods, runs the mover binary for
//! containers whose command is the mover entrypoint (each mount path in its arguments and
//! environment replaced by the claim's folder), keeps every other container "running", refuses a
//! ReadWriteOnce volume that another node holds (Multi-Attach), and ends pods that are deleted.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

use super::Shared;
use super::events;
use super::resources::Res;
use super::store::{LogBuf, State, finalizers};
use super::util::{self, name_of, now, s, uid_of};

/// The mover image's entrypoint, as crates/cluster's names.rs has it.
pub const ENTRYPOINT: &str = "/pvc-backup";

/// What the kubelet remembers between passes.
#[derive(Default)]
pub struct Kubelet {
    /// Pods to end without waiting (deleted with gracePeriodSeconds=0).
    pub force: HashSet<String>,
    /// Processes running, by pod uid and container.
    pub running: HashMap<String, HashMap<String, u32>>,
    /// Pods whose volumes are attached and containers started.
    pub started: HashSet<String>,
    /// Deleted pods the kubelet is ending.
    pub ending: HashMap<String, Ending>,
    /// Containers waiting to be restarted, with when.
    pub restarts: HashMap<(String, String), Instant>,
    /// Nodes the scheduler picked for pods whose WaitForFirstConsumer claims are provisioning.
    pub hints: HashMap<String, String>,
    /// When each pod first failed to pull its image.
    pub pull_failed: HashMap<String, Instant>,
}

/// A deleted pod being ended: since when, and which signals went out.
pub struct Ending {
    since: Instant,
    term: bool,
    kill: bool,
}

/// Work the kubelet does outside the lock.
pub enum Action {
    /// Run a container's process.
    Start(Box<Launch>),
    /// Send a signal to a process.
    Signal(u32, i32),
}

/// A process to start for a container.
pub struct Launch {
    uid: String,
    ns: String,
    pod: String,
    container: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

/// Whether a pod is on a node and not yet terminated (so deleting it goes through its kubelet).
pub fn pod_needs_kubelet(pod: &Value) -> bool {
    !s(pod, "/spec/nodeName").is_empty()
        && !matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// The waiting reason of a container, if it waits.
pub fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|l| pod["status"][l].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == container)
        .and_then(|c| {
            c.pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .map(String::from)
        })
}

fn containers(pod: &Value) -> Vec<Value> {
    pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn is_mover(c: &Value) -> bool {
    c["command"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        == Some(ENTRYPOINT)
}

/// Claims a pod's volumes name: (volume name, claim name).
pub fn pod_claims(pod: &Value) -> Vec<(String, String)> {
    pod["spec"]["volumes"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    let c = v.pointer("/persistentVolumeClaim/claimName")?.as_str()?;
                    Some((v["name"].as_str().unwrap_or("").to_string(), c.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn terminal(pod: &Value) -> bool {
    matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// One kubelet pass over every pod on a node.
pub fn pass(st: &mut State) -> Vec<Action> {
    let mut actions = Vec::new();
    // A pod bound to a node that does not exist has no kubelet: it stays Pending.
    let pods: Vec<Arc<Value>> = st
        .list(Res::Pod, None)
        .into_iter()
        .filter(|p| {
            let node = s(p, "/spec/nodeName");
            !node.is_empty() && st.get(Res::Node, "", node).is_some()
        })
        .collect();
    for pod in pods {
        let uid = uid_of(&pod).to_string();
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            end_pod(st, &pod, &mut actions);
            continue;
        }
        if terminal(&pod) {
            continue;
        }
        if st.kubelet.started.contains(&uid) {
            restart_due(st, &pod, &mut actions);
            continue;
        }
        start_pod(st, &pod, &mut actions);
    }
    actions
}

fn end_pod(st: &mut State, pod: &Value, actions: &mut Vec<Action>) {
    let uid = uid_of(pod).to_string();
    let (ns, name) = (util::ns_of(pod).to_string(), name_of(pod).to_string());
    let force = st.kubelet.force.contains(&uid);
    let grace = st.rt.pod_termination;
    let procs: Vec<u32> = st
        .kubelet
        .running
        .get(&uid)
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    let e = st.kubelet.ending.entry(uid.clone()).or_insert(Ending {
        since: Instant::now(),
        term: false,
        kill: false,
    });
    if !procs.is_empty() {
        // SIGTERM first; SIGKILL once the (shortened) grace period is over.
        if !e.term {
            e.term = true;
            actions.extend(procs.iter().map(|p| Action::Signal(*p, libc::SIGTERM)));
        }
        if (force || e.since.elapsed() >= grace) && !e.kill {
            e.kill = true;
            actions.extend(procs.iter().map(|p| Action::Signal(*p, libc::SIGKILL)));
        }
        return;
    }
    // Containers without a process stop as soon as they are asked to.
    if !(force || terminal(pod) || e.since.elapsed() >= Duration::from_millis(50)) {
        return;
    }
    // Every container is stopped: the kubelet reports it and deletes the pod for good.
    st.kubelet.ending.remove(&uid);
    st.kubelet.force.remove(&uid);
    st.kubelet.started.remove(&uid);
    st.kubelet.running.remove(&uid);
    st.kubelet.restarts.retain(|(u, _), _| *u != uid);
    st.kubelet.pull_failed.remove(&uid);
    if !terminal(pod) {
        st.modify(Res::Pod, &ns, &name, |p| {
            let t = now();
            if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
                for c in cs {
                    if c.pointer("/state/terminated").is_none() {
                        let started = c.pointer("/state/running/startedAt").cloned();
                        c["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed",
                            "startedAt": started, "finishedAt": t}});
                        c["ready"] = json!(false);
                        c["started"] = json!(false);
                    }
                }
            }
            set_ready(p, false, "PodCompleted");
        });
    }
    if finalizers(pod).is_empty() {
        st.remove(Res::Pod, &ns, &name);
    }
}

fn set_ready(p: &mut Value, ready: bool, reason: &str) {
    let t = now();
    let mut conds = vec![
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": t}),
    ];
    for ty in ["Ready", "ContainersReady"] {
        let mut c = json!({"type": ty, "status": if ready { "True" } else { "False" }, "lastTransitionTime": t});
        if !ready {
            c["reason"] = json!(reason);
        }
        conds.push(c);
    }
    conds.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": t}));
    // Keep transition times of conditions whose status did not change.
    if let Some(old) = p["status"]["conditions"].as_array() {
        for c in conds.iter_mut() {
            if let Some(o) = old
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
            {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            }
        }
    }
    p["status"]["conditions"] = json!(conds);
}

/// Where a claim's data lives, if the claim is bound.
pub fn claim_path(st: &State, ns: &str, claim: &str) -> Option<PathBuf> {
    let c = st.get(Res::Pvc, ns, claim)?;
    if s(&c, "/status/phase") != "Bound" {
        return None;
    }
    st.volumes.get(s(&c, "/spec/volumeName")).cloned()
}

fn multi_attach(st: &State, pod: &Value) -> Option<(String, Vec<String>, bool)> {
    let ns = util::ns_of(pod);
    let node = s(pod, "/spec/nodeName");
    for (_, claim) in pod_claims(pod) {
        let Some(c) = st.get(Res::Pvc, ns, &claim) else {
            continue;
        };
        let modes: Vec<&str> = c
            .pointer("/status/accessModes")
            .or(c.pointer("/spec/accessModes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if modes
            .iter()
            .any(|m| *m == "ReadWriteMany" || *m == "ReadOnlyMany")
        {
            continue;
        }
        let pv = s(&c, "/spec/volumeName").to_string();
        // The volume is attached where any started pod that uses it runs, in any namespace.
        let mut holders = Vec::new();
        let mut other_ns = false;
        for other in st.list(Res::Pod, None) {
            if uid_of(&other) == uid_of(pod)
                || terminal(&other)
                || s(&other, "/spec/nodeName") == node
                || !st.kubelet.started.contains(uid_of(&other))
            {
                continue;
            }
            let uses = pod_claims(&other).iter().any(|(_, oc)| {
                st.get(Res::Pvc, util::ns_of(&other), oc)
                    .is_some_and(|x| s(&x, "/spec/volumeName") == pv)
            });
            if uses {
                if util::ns_of(&other) == ns {
                    holders.push(name_of(&other).to_string());
                } else {
                    other_ns = true;
                }
            }
        }
        if !holders.is_empty() || other_ns {
            return Some((pv, holders, other_ns));
        }
    }
    None
}

fn start_pod(st: &mut State, pod: &Value, actions: &mut Vec<Action>) {
    let uid = uid_of(pod).to_string();
    let (ns, name) = (util::ns_of(pod).to_string(), name_of(pod).to_string());
    let node = s(pod, "/spec/nodeName").to_string();
    // Volumes first: a claim that is not ready keeps the pod in ContainerCreating.
    let mut mounts: HashMap<String, PathBuf> = HashMap::new();
    for (vol, claim) in pod_claims(pod) {
        match claim_path(st, &ns, &claim) {
            Some(p) => {
                mounts.insert(vol, p);
            }
            None => {
                waiting(st, &ns, &name, "ContainerCreating", None);
                return;
            }
        }
    }
    if let Some((pv, holders, other_ns)) = multi_attach(st, pod) {
        let msg = if holders.is_empty() && other_ns {
            format!(
                "Multi-Attach error for volume \"{pv}\" Volume is already exclusively attached to one node and can't be attached to another"
            )
        } else {
            format!(
                "Multi-Attach error for volume \"{pv}\" Volume is already used by pod(s) {}",
                holders.join(", ")
            )
        };
        events::record(
            st,
            Res::Pod,
            pod,
            "Warning",
            "FailedAttachVolume",
            &msg,
            "attachdetach-controller",
        );
        waiting(st, &ns, &name, "ContainerCreating", None);
        return;
    }
    let pull = containers(pod)
        .iter()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .find_map(|c| {
            let image = c["image"].as_str().unwrap_or("");
            st.rt.unpullable.iter().any(|u| u == image).then(|| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    image.to_string(),
                )
            })
        });
    if let Some((cname, image)) = pull {
        let first = !st.kubelet.pull_failed.contains_key(&uid);
        let since = *st
            .kubelet
            .pull_failed
            .entry(uid.clone())
            .or_insert_with(Instant::now);
        let reason = if first || since.elapsed() < Duration::from_millis(500) {
            "ErrImagePull"
        } else {
            "ImagePullBackOff"
        };
        if first {
            events::record(
                st,
                Res::Pod,
                pod,
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image}\""),
                "kubelet",
            );
            events::record(
                st,
                Res::Pod,
                pod,
                "Warning",
                "Failed",
                &format!(
                    "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
                ),
                "kubelet",
            );
            events::record(
                st,
                Res::Pod,
                pod,
                "Warning",
                "Failed",
                "Error: ErrImagePull",
                "kubelet",
            );
        } else if reason == "ImagePullBackOff" {
            events::record(
                st,
                Res::Pod,
                pod,
                "Normal",
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
                "kubelet",
            );
            events::record(
                st,
                Res::Pod,
                pod,
                "Warning",
                "Failed",
                "Error: ImagePullBackOff",
                "kubelet",
            );
        }
        let msg = if reason == "ErrImagePull" {
            format!("failed to pull and unpack image \"{image}\": not found")
        } else {
            format!("Back-off pulling image \"{image}\": ErrImagePull: not found")
        };
        waiting(st, &ns, &name, reason, Some((&cname, &msg)));
        return;
    }
    // Devices of block volumes map to the volume's image file.
    let scratch = st.rt.root.join("pods").join(&uid);
    let _ = std::fs::create_dir_all(&scratch);
    if let Some(vs) = pod["spec"]["volumes"].as_array() {
        for v in vs {
            if v.get("emptyDir").is_some() {
                let n = v["name"].as_str().unwrap_or("");
                let p = scratch.join("volumes").join(n);
                let _ = std::fs::create_dir_all(&p);
                mounts.insert(n.to_string(), p);
            }
        }
    }
    st.kubelet.started.insert(uid.clone());
    st.kubelet.pull_failed.remove(&uid);
    events::record(
        st,
        Res::Pod,
        pod,
        "Normal",
        "Started",
        "Started container",
        "kubelet",
    );
    let mut to_run = Vec::new();
    let t = now();
    let mut statuses = Vec::new();
    for c in containers(pod) {
        let cname = c["name"].as_str().unwrap_or("").to_string();
        let mut status = json!({"name": cname, "image": c["image"], "imageID": format!("{}@sha256:{:064x}", c["image"].as_str().unwrap_or(""), 0),
            "containerID": format!("containerd://{:016x}{:016x}", st.random(), st.random()),
            "restartCount": 0, "ready": true, "started": true, "state": {"running": {"startedAt": t}}});
        if is_mover(&c) {
            match launch(st, pod, &c, &mounts, &scratch) {
                Ok(l) => to_run.push(l),
                Err(msg) => {
                    // A container that cannot start ends at once, as a failed exec does.
                    st.logs.insert(
                        (uid.clone(), cname.clone()),
                        LogBuf {
                            data: msg.clone().into_bytes(),
                            done: true,
                            previous: None,
                        },
                    );
                    status["state"] = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": msg, "startedAt": t, "finishedAt": t}});
                    status["ready"] = json!(false);
                    status["started"] = json!(false);
                }
            }
        } else {
            st.logs
                .insert((uid.clone(), cname.clone()), LogBuf::default());
        }
        statuses.push(status);
    }
    for l in &to_run {
        st.logs
            .insert((uid.clone(), l.container.clone()), LogBuf::default());
    }
    let host_ip = format!(
        "192.168.49.{}",
        2 + node.bytes().map(u32::from).sum::<u32>() % 200
    );
    let pod_ip = format!("10.244.{}.{}", st.random() % 250, 2 + st.random() % 250);
    st.modify(Res::Pod, &ns, &name, |p| {
        p["status"]["phase"] = json!("Running");
        p["status"]["startTime"] = json!(t);
        p["status"]["hostIP"] = json!(host_ip);
        p["status"]["hostIPs"] = json!([{"ip": host_ip}]);
        p["status"]["podIP"] = json!(pod_ip);
        p["status"]["podIPs"] = json!([{"ip": pod_ip}]);
        p["status"]["containerStatuses"] = json!(statuses);
        set_ready(p, true, "");
    });
    let after = st.get(Res::Pod, &ns, &name);
    if let Some(p) = after {
        settle_phase(st, &p);
    }
    actions.extend(to_run.into_iter().map(|l| Action::Start(Box::new(l))));
}

fn waiting(st: &mut State, ns: &str, name: &str, reason: &str, detail: Option<(&str, &str)>) {
    st.modify(Res::Pod, ns, name, |p| {
        let statuses: Vec<Value> = containers(p)
            .iter()
            .map(|c| {
                let mut w = json!({"reason": reason});
                if let Some((cn, msg)) = detail
                    && c["name"] == cn
                {
                    w["message"] = json!(msg);
                }
                json!({"name": c["name"], "image": c["image"], "imageID": "", "restartCount": 0,
                    "ready": false, "started": false, "state": {"waiting": w}})
            })
            .collect();
        p["status"]["containerStatuses"] = json!(statuses);
        let t = p["status"]["conditions"].as_array().and_then(|a| a.iter().find(|c| c["type"] == "PodScheduled").cloned());
        let mut conds = vec![
            json!({"type": "PodReadyToStartContainers", "status": "False"}),
            json!({"type": "Initialized", "status": "True"}),
            json!({"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": format!("containers with unready status: [{}]", containers(p).iter().map(|c| c["name"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join(" "))}),
            json!({"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}),
        ];
        conds.push(t.unwrap_or(json!({"type": "PodScheduled", "status": "True"})));
        // Keep transition times stable so that a waiting pod is not rewritten on every pass.
        if let Some(old) = p["status"]["conditions"].as_array() {
            for c in conds.iter_mut() {
                if let Some(o) = old.iter().find(|o| o["type"] == c["type"] && o["status"] == c["status"]) {
                    c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                }
                if c.get("lastTransitionTime").is_none() {
                    c["lastTransitionTime"] = json!(now());
                }
            }
        }
        p["status"]["conditions"] = json!(conds);
    });
}

/// Replaces a mount path at the start of `text` or after `=`, `:` or `,` by its folder.
pub fn map_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let mut i = 0;
    let b = text.as_bytes();
    'outer: while i < b.len() {
        let boundary = i == 0 || matches!(b[i - 1], b'=' | b':' | b',');
        if boundary {
            for (mp, dir) in mounts {
                let mp = mp.trim_end_matches('/');
                if text[i..].starts_with(mp) && !mp.is_empty() {
                    let end = i + mp.len();
                    if end == b.len() || b[end] == b'/' || matches!(b[end], b',' | b':') {
                        out.push_str(&dir.to_string_lossy());
                        i = end;
                        continue 'outer;
                    }
                }
            }
        }
        let ch = text[i..].chars().next().expect("char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn launch(
    st: &State,
    pod: &Value,
    c: &Value,
    vols: &HashMap<String, PathBuf>,
    scratch: &std::path::Path,
) -> Result<Launch, String> {
    let Some(program) = st.rt.mover.clone() else {
        return Err("fake cluster: no mover binary was given (Options::mover) to run the mover entrypoint\n".into());
    };
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let Some(dir) = vols.get(m["name"].as_str().unwrap_or("")) else {
            continue;
        };
        let mut dir = dir.clone();
        if let Some(sp) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            dir = dir.join(sp);
            let _ = std::fs::create_dir_all(&dir);
        }
        mounts.push((m["mountPath"].as_str().unwrap_or("").to_string(), dir));
    }
    for d in c["volumeDevices"].as_array().into_iter().flatten() {
        let Some(file) = vols.get(d["name"].as_str().unwrap_or("")) else {
            continue;
        };
        mounts.push((
            d["devicePath"].as_str().unwrap_or("").to_string(),
            file.clone(),
        ));
    }
    // The longest mount path wins (/backup/data before /backup).
    mounts.sort_by_key(|(mp, _)| std::cmp::Reverse(mp.len()));
    let cmd: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let args: Vec<String> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let env_vals: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let v = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if let Some(fp) = e
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str)
            {
                let ptr = format!("/{}", fp.replace('.', "/"));
                s(pod, &ptr).to_string()
            } else {
                String::new()
            };
            Some((name, v))
        })
        .collect();
    // $(VAR) references in command and args expand from the container's env, as the kubelet does.
    let expand = |a: &str| {
        let mut a = a.to_string();
        for (k, v) in &env_vals {
            a = a.replace(&format!("$({k})"), v);
        }
        map_paths(&a, &mounts)
    };
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), name_of(pod).to_string()),
    ];
    env.extend(
        env_vals
            .iter()
            .map(|(k, v)| (k.clone(), map_paths(v, &mounts))),
    );
    Ok(Launch {
        uid: uid_of(pod).to_string(),
        ns: util::ns_of(pod).to_string(),
        pod: name_of(pod).to_string(),
        container: c["name"].as_str().unwrap_or("").to_string(),
        program,
        args: cmd.iter().chain(args.iter()).map(|a| expand(a)).collect(),
        env,
        cwd: scratch.to_path_buf(),
    })
}

fn restart_due(st: &mut State, pod: &Value, actions: &mut Vec<Action>) {
    let uid = uid_of(pod).to_string();
    let due: Vec<String> = st
        .kubelet
        .restarts
        .iter()
        .filter(|((u, _), at)| *u == uid && **at <= Instant::now())
        .map(|((_, c), _)| c.clone())
        .collect();
    for cname in due {
        st.kubelet.restarts.remove(&(uid.clone(), cname.clone()));
        let Some(c) = containers(pod)
            .into_iter()
            .find(|c| c["name"] == cname.as_str())
        else {
            continue;
        };
        let mut mounts = HashMap::new();
        for (vol, claim) in pod_claims(pod) {
            if let Some(p) = claim_path(st, util::ns_of(pod), &claim) {
                mounts.insert(vol, p);
            }
        }
        let scratch = st.rt.root.join("pods").join(&uid);
        if let Ok(l) = launch(st, pod, &c, &mounts, &scratch) {
            if let Some(buf) = st.logs.get_mut(&(uid.clone(), cname.clone())) {
                buf.previous = Some(std::mem::take(&mut buf.data));
                buf.done = false;
            }
            let t = now();
            st.modify(Res::Pod, util::ns_of(pod), name_of(pod), |p| {
                if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
                    for cs in cs.iter_mut().filter(|x| x["name"] == cname.as_str()) {
                        cs["state"] = json!({"running": {"startedAt": t}});
                        cs["ready"] = json!(true);
                        cs["started"] = json!(true);
                    }
                }
            });
            actions.push(Action::Start(Box::new(l)));
        }
    }
}

/// Sets the pod's phase from its containers: Succeeded or Failed when all ended for good.
fn settle_phase(st: &mut State, pod: &Value) {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let uid = uid_of(pod);
    let all_done = !statuses.is_empty()
        && statuses.iter().all(|c| {
            c.pointer("/state/terminated").is_some()
                && !st.kubelet.restarts.contains_key(&(
                    uid.to_string(),
                    c["name"].as_str().unwrap_or("").to_string(),
                ))
        });
    if !all_done {
        return;
    }
    let ok = statuses.iter().all(|c| {
        c.pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
            == Some(0)
    });
    st.modify(Res::Pod, util::ns_of(pod), name_of(pod), |p| {
        p["status"]["phase"] = json!(if ok { "Succeeded" } else { "Failed" });
        set_ready(p, false, "PodCompleted");
    });
}

/// Starts a container's process and reports its output and exit into the store.
pub fn spawn(sh: Arc<Shared>, l: Launch) {
    tokio::spawn(async move {
        let mut cmd = tokio::process::Command::new(&l.program);
        cmd.args(&l.args)
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&l.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let key = (l.uid.clone(), l.container.clone());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("failed to start {}: {e}\n", l.program.display());
                finish(&sh, &l, &msg, 128, "StartError");
                return;
            }
        };
        if let Some(pid) = child.id() {
            let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
            st.kubelet
                .running
                .entry(l.uid.clone())
                .or_default()
                .insert(l.container.clone(), pid);
        }
        let out = child.stdout.take();
        let err = child.stderr.take();
        let pump = |r: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
            let sh = sh.clone();
            let key = key.clone();
            async move {
                let Some(mut r) = r else { return };
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(b) = st.logs.get_mut(&key) {
                                b.data.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                }
            }
        };
        let a = pump(out.map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>));
        let b = pump(err.map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>));
        let (_, _, status) = tokio::join!(a, b, child.wait());
        let code = match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
            }
            Err(_) => 128,
        };
        finish(
            &sh,
            &l,
            "",
            code,
            if code == 0 { "Completed" } else { "Error" },
        );
    });
}

fn finish(sh: &Shared, l: &Launch, extra_log: &str, code: i32, reason: &str) {
    let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = st.kubelet.running.get_mut(&l.uid) {
        m.remove(&l.container);
        if m.is_empty() {
            st.kubelet.running.remove(&l.uid);
        }
    }
    if let Some(b) = st.logs.get_mut(&(l.uid.clone(), l.container.clone())) {
        b.data.extend_from_slice(extra_log.as_bytes());
        b.done = true;
    }
    let Some(pod) = st.get(Res::Pod, &l.ns, &l.pod) else {
        return;
    };
    if uid_of(&pod) != l.uid {
        return;
    }
    let policy = s(&pod, "/spec/restartPolicy").to_string();
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    let restart = !deleting && (policy == "Always" || (policy == "OnFailure" && code != 0));
    let t = now();
    if restart {
        let at = Instant::now() + st.rt.job_backoff;
        st.kubelet
            .restarts
            .insert((l.uid.clone(), l.container.clone()), at);
    }
    let container = l.container.clone();
    st.modify(Res::Pod, &l.ns, &l.pod, |p| {
        if let Some(cs) = p["status"]["containerStatuses"].as_array_mut() {
            for c in cs.iter_mut().filter(|c| c["name"] == container.as_str()) {
                let started = c.pointer("/state/running/startedAt").cloned().unwrap_or(json!(t));
                let term = json!({"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": t,
                    "containerID": c["containerID"]});
                if restart {
                    c["lastState"] = json!({"terminated": term});
                    c["restartCount"] = json!(c["restartCount"].as_i64().unwrap_or(0) + 1);
                    c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off restarting failed container {container}")}});
                } else {
                    c["state"] = json!({"terminated": term});
                }
                c["ready"] = json!(false);
                c["started"] = json!(false);
            }
        }
        set_ready(p, false, "ContainersNotReady");
    });
    if let Some(p) = st.get(Res::Pod, &l.ns, &l.pod) {
        settle_phase(&mut st, &p);
    }
}

/// Sends a signal to a process the kubelet started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is one of our children still running.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::map_paths;
    use std::path::PathBuf;

    #[test]
    fn mount_paths_map_at_word_starts_only() {
        let m = vec![
            ("/backup/data".to_string(), PathBuf::from("/r/b2")),
            ("/source".to_string(), PathBuf::from("/r/s")),
            ("/backup".to_string(), PathBuf::from("/r/b")),
        ];
        assert_eq!(map_paths("/source", &m), "/r/s");
        assert_eq!(map_paths("/source/sub", &m), "/r/s/sub");
        assert_eq!(map_paths("--to=/backup/x", &m), "--to=/r/b/x");
        assert_eq!(map_paths("/backup/data/y", &m), "/r/b2/y");
        assert_eq!(map_paths("/sourcex", &m), "/sourcex");
        assert_eq!(map_paths("x/source", &m), "x/source");
    }
}
