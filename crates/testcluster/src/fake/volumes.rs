//! The PersistentVolume controller, a provisioner per StorageClass (each volume a folder, or a
//! sparse image file for Block claims), cloning, expansion, the pvc- and pv-protection
//! finalizers, and the snapshot controller.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::events;
use super::kubelet::pod_claims;
use super::resources::Res;
use super::select::LabelSelector;
use super::store::{Actor, State, finalizers};
use super::util::{self, name_of, now, quantity, s, uid_of};

const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
const SNAP_GROUP: &str = "snapshot.storage.k8s.io";

/// One pass of every volume controller.
pub fn pass(st: &mut State) {
    claims(st);
    volumes(st);
    snapshots(st);
}

fn modes(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn size(v: &Value, ptr: &str) -> u128 {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(quantity)
        .unwrap_or(0)
}

/// Whether a pod holds the claim, as the pvc-protection controller decides: any pod scheduled to
/// a node that names it, whatever its phase (a Job's finished pod holds its claims until it is
/// deleted).
fn pod_uses_claim(st: &State, ns: &str, claim: &str) -> bool {
    st.list(Res::Pod, Some(ns)).iter().any(|p| {
        !s(p, "/spec/nodeName").is_empty() && pod_claims(p).iter().any(|(_, c)| c == claim)
    })
}

fn claims(st: &mut State) {
    for c in st.list(Res::Pvc, None) {
        let (ns, name) = (util::ns_of(&c).to_string(), name_of(&c).to_string());
        if c.pointer("/metadata/deletionTimestamp").is_some() {
            if finalizers(&c).iter().any(|f| f == PVC_PROTECTION) && !pod_uses_claim(st, &ns, &name)
            {
                st.modify(Res::Pvc, &ns, &name, |c| drop_finalizer(c, PVC_PROTECTION));
            }
            continue;
        }
        match s(&c, "/status/phase") {
            "Bound" => bound_claim(st, &c),
            "Lost" => {}
            _ => pending_claim(st, &c),
        }
    }
}

fn drop_finalizer(v: &mut Value, f: &str) {
    let fins: Vec<String> = finalizers(v).into_iter().filter(|x| x != f).collect();
    if fins.is_empty() {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        v["metadata"]["finalizers"] = json!(fins);
    }
}

fn bound_claim(st: &mut State, c: &Value) {
    let (ns, name) = (util::ns_of(c).to_string(), name_of(c).to_string());
    let pv_name = s(c, "/spec/volumeName").to_string();
    let Some(pv) = st.get(Res::Pv, "", &pv_name) else {
        st.modify(Res::Pvc, &ns, &name, |c| {
            c["status"]["phase"] = json!("Lost")
        });
        events::record(
            st,
            Res::Pvc,
            c,
            "Warning",
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            "persistentvolume-controller",
        );
        return;
    };
    // Expansion: the volume grows to the new request.
    let want = size(c, "/spec/resources/requests/storage");
    if want > size(c, "/status/capacity/storage") && want > 0 {
        let q = s(c, "/spec/resources/requests/storage").to_string();
        if size(&pv, "/spec/capacity/storage") < want {
            st.modify(Res::Pv, "", &pv_name, |p| {
                p["spec"]["capacity"]["storage"] = json!(q)
            });
            let path = st.volumes.get(&pv_name).cloned();
            if let Some(p) = path.filter(|p| p.is_file())
                && let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p)
            {
                let _ = f.set_len(want as u64);
            }
        }
        st.modify(Res::Pvc, &ns, &name, |c| {
            c["status"]["capacity"]["storage"] = json!(q);
            c["status"]["allocatedResources"] = json!({"storage": q});
        });
        events::record(
            st,
            Res::Pvc,
            c,
            "Normal",
            "VolumeResizeSuccessful",
            &format!("MountVolume.NodeExpandVolume succeeded for volume \"{pv_name}\""),
            "kubelet",
        );
    }
}

/// Whether `pv` can serve `claim` (size, class, modes, volume mode); the reason if not.
fn mismatch(pv: &Value, claim: &Value) -> Option<String> {
    if size(pv, "/spec/capacity/storage") < size(claim, "/spec/resources/requests/storage") {
        return Some("requested PV is too small".into());
    }
    if s(pv, "/spec/storageClassName") != s(claim, "/spec/storageClassName") {
        return Some("storageClassName does not match".into());
    }
    let pm = modes(pv, "/spec/accessModes");
    if !modes(claim, "/spec/accessModes")
        .iter()
        .all(|m| pm.contains(m))
    {
        return Some("incompatible accessMode".into());
    }
    let vm = |v: &Value| match s(v, "/spec/volumeMode") {
        "" => "Filesystem".to_string(),
        m => m.to_string(),
    };
    if vm(pv) != vm(claim) {
        return Some("incompatible volumeMode".into());
    }
    None
}

fn claim_ref_matches(pv: &Value, claim: &Value) -> bool {
    s(pv, "/spec/claimRef/namespace") == util::ns_of(claim)
        && s(pv, "/spec/claimRef/name") == name_of(claim)
        && (s(pv, "/spec/claimRef/uid").is_empty() || s(pv, "/spec/claimRef/uid") == uid_of(claim))
}

fn pending_claim(st: &mut State, c: &Arc<Value>) {
    let (ns, name) = (util::ns_of(c).to_string(), name_of(c).to_string());
    let wanted = s(c, "/spec/volumeName").to_string();
    if !wanted.is_empty() {
        let Some(pv) = st.get(Res::Pv, "", &wanted) else {
            return;
        };
        if pv.pointer("/spec/claimRef").is_some() && !claim_ref_matches(&pv, c) {
            events::record(
                st,
                Res::Pvc,
                c,
                "Warning",
                "FailedBinding",
                &format!("volume \"{wanted}\" already bound to a different claim."),
                "persistentvolume-controller",
            );
            return;
        }
        if let Some(why) = mismatch(&pv, c) {
            events::record(
                st,
                Res::Pvc,
                c,
                "Warning",
                "VolumeMismatch",
                &format!("Cannot bind to requested volume \"{wanted}\": {why}"),
                "persistentvolume-controller",
            );
            return;
        }
        bind(st, c, &pv);
        return;
    }
    // A volume reserved for this claim, then any Available one that fits (smallest first).
    let pvs = st.list(Res::Pv, None);
    let prebound = pvs.iter().find(|pv| {
        pv.pointer("/spec/claimRef").is_some()
            && claim_ref_matches(pv, c)
            && mismatch(pv, c).is_none()
            && pv.pointer("/metadata/deletionTimestamp").is_none()
    });
    if let Some(pv) = prebound {
        let pv = pv.clone();
        bind(st, c, &pv);
        return;
    }
    let sel = c.pointer("/spec/selector").map(LabelSelector::from_object);
    let mut free: Vec<&Arc<Value>> = pvs
        .iter()
        .filter(|pv| {
            pv.pointer("/spec/claimRef").is_none()
                && s(pv, "/status/phase") == "Available"
                && pv.pointer("/metadata/deletionTimestamp").is_none()
                && mismatch(pv, c).is_none()
                && sel.as_ref().is_none_or(|sel| sel.matches(pv))
        })
        .collect();
    free.sort_by_key(|pv| size(pv, "/spec/capacity/storage"));
    if let Some(pv) = free.first() {
        let pv = (*pv).clone();
        bind(st, c, &pv);
        return;
    }
    let class_name = s(c, "/spec/storageClassName").to_string();
    if class_name.is_empty() {
        events::record(
            st,
            Res::Pvc,
            c,
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
            "persistentvolume-controller",
        );
        return;
    }
    let Some(class) = st.get(Res::StorageClass, "", &class_name) else {
        events::record(
            st,
            Res::Pvc,
            c,
            "Warning",
            "ProvisioningFailed",
            &format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            "persistentvolume-controller",
        );
        return;
    };
    let provisioner = s(&class, "/provisioner").to_string();
    if provisioner == "kubernetes.io/no-provisioner" {
        let msg = if s(&class, "/volumeBindingMode") == "WaitForFirstConsumer" {
            "waiting for first consumer to be created before binding"
        } else {
            "no persistent volumes available for this claim and no storage class is set"
        };
        let reason = if msg.starts_with("waiting") {
            "WaitForFirstConsumer"
        } else {
            "FailedBinding"
        };
        events::record(
            st,
            Res::Pvc,
            c,
            "Normal",
            reason,
            msg,
            "persistentvolume-controller",
        );
        return;
    }
    let mut node = None;
    if s(&class, "/volumeBindingMode") == "WaitForFirstConsumer" {
        let sel = s(
            c,
            "/metadata/annotations/volume.kubernetes.io~1selected-node",
        );
        if sel.is_empty() {
            events::record(
                st,
                Res::Pvc,
                c,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
                "persistentvolume-controller",
            );
            return;
        }
        node = Some(sel.to_string());
    }
    st.modify(Res::Pvc, &ns, &name, |c| {
        util::set(
            c,
            &[
                "metadata",
                "annotations",
                "volume.kubernetes.io/storage-provisioner",
            ],
            json!(provisioner),
        );
        util::set(
            c,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-provisioner",
            ],
            json!(provisioner),
        );
    });
    let Some(c) = st.get(Res::Pvc, &ns, &name) else {
        return;
    };
    match provision(st, &c, &class, node.as_deref()) {
        Ok(pv) => {
            events::record(
                st,
                Res::Pvc,
                &c,
                "Normal",
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {}", name_of(&pv)),
                &provisioner,
            );
            bind(st, &c, &pv);
        }
        Err(msg) => {
            events::record(
                st,
                Res::Pvc,
                &c,
                "Warning",
                "ProvisioningFailed",
                &format!("failed to provision volume with StorageClass \"{class_name}\": {msg}"),
                &provisioner,
            );
        }
    }
}

/// Where a new volume's data comes from, checked as a CSI external-provisioner checks it.
fn data_source(st: &State, c: &Value, class: &Value) -> Result<Option<PathBuf>, String> {
    let Some(ds) = c
        .pointer("/spec/dataSourceRef")
        .or(c.pointer("/spec/dataSource"))
    else {
        return Ok(None);
    };
    let ns = util::ns_of(c);
    let (kind, group, src) = (s(ds, "/kind"), s(ds, "/apiGroup"), s(ds, "/name"));
    let driver = s(class, "/provisioner");
    match (kind, group) {
        ("PersistentVolumeClaim", "") => {
            let Some(source) = st.get(Res::Pvc, ns, src) else {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: error getting PVC {src} (namespace {ns:?}): persistentvolumeclaims \"{src}\" not found"
                ));
            };
            if s(&source, "/spec/storageClassName") != name_of(class) {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: the source PVC and destination PVCs must be in the same storage class for cloning. Source is in {}, but new PVC is in {}",
                    s(&source, "/spec/storageClassName"),
                    name_of(class)
                ));
            }
            if !st.rt.clone_drivers.iter().any(|d| d == driver) {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: rpc error: code = InvalidArgument desc = driver {driver} does not support cloning (CLONE_VOLUME capability missing)"
                ));
            }
            if s(&source, "/status/phase") != "Bound" {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: the PVC {src} is not yet bound"
                ));
            }
            if size(c, "/spec/resources/requests/storage")
                < size(&source, "/status/capacity/storage")
            {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: requested volume size {} is less than the size {} for the source PVC {src}",
                    size(c, "/spec/resources/requests/storage"),
                    size(&source, "/status/capacity/storage")
                ));
            }
            if s(&source, "/spec/volumeMode") != s(c, "/spec/volumeMode") {
                return Err(format!(
                    "error getting handle for DataSource Type PersistentVolumeClaim by Name {src}: the source PVC and destination PVCs must have the same volume mode for cloning"
                ));
            }
            let path = st.volumes.get(s(&source, "/spec/volumeName")).cloned();
            path.map(Some)
                .ok_or_else(|| format!("volume of claim {src} has no data"))
        }
        ("VolumeSnapshot", SNAP_GROUP) => {
            let Some(snap) = st.get(Res::VolumeSnapshot, ns, src) else {
                return Err(format!(
                    "error getting handle for DataSource Type VolumeSnapshot by Name {src}: error getting snapshot {src} from api server: volumesnapshots.snapshot.storage.k8s.io \"{src}\" not found"
                ));
            };
            if snap.pointer("/status/readyToUse").and_then(Value::as_bool) != Some(true) {
                return Err(format!(
                    "error getting handle for DataSource Type VolumeSnapshot by Name {src}: snapshot {src} is not Ready"
                ));
            }
            let content_name = s(&snap, "/status/boundVolumeSnapshotContentName");
            let Some(content) = st.get(Res::VolumeSnapshotContent, "", content_name) else {
                return Err(format!(
                    "error getting handle for DataSource Type VolumeSnapshot by Name {src}: volumesnapshotcontent {content_name} not found"
                ));
            };
            if s(&content, "/spec/driver") != driver {
                return Err(format!(
                    "error getting handle for DataSource Type VolumeSnapshot by Name {src}: snapshot {src} belongs to a different driver {} than the provisioner {driver}",
                    s(&content, "/spec/driver")
                ));
            }
            let restore = content
                .pointer("/status/restoreSize")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u128;
            if size(c, "/spec/resources/requests/storage") < restore {
                return Err(format!(
                    "error getting handle for DataSource Type VolumeSnapshot by Name {src}: requested volume size {} is less than the size {restore} for the source snapshot {src}",
                    size(c, "/spec/resources/requests/storage")
                ));
            }
            st.snapshots
                .get(content_name)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("snapshot {src} has no data"))
        }
        _ => Err(format!(
            "the data source {kind} (apiGroup {group:?}) is not supported by {driver}"
        )),
    }
}

fn provision(
    st: &mut State,
    c: &Value,
    class: &Value,
    node: Option<&str>,
) -> Result<Arc<Value>, String> {
    let source = data_source(st, c, class)?;
    let pv_name = format!("pvc-{}", uid_of(c));
    let block = s(c, "/spec/volumeMode") == "Block";
    let req = s(c, "/spec/resources/requests/storage").to_string();
    let dir = st.rt.root.join("volumes");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = if block {
        dir.join(format!("{pv_name}.img"))
    } else {
        dir.join(&pv_name)
    };
    match (&source, block) {
        (Some(src), _) => copy_tree(src, &path)?,
        (None, true) => {
            let f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            f.set_len(quantity(&req).unwrap_or(0) as u64)
                .map_err(|e| e.to_string())?;
        }
        (None, false) => std::fs::create_dir_all(&path).map_err(|e| e.to_string())?,
    }
    if block && let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
        let want = quantity(&req).unwrap_or(0) as u64;
        if f.metadata().map(|m| m.len()).unwrap_or(0) < want {
            let _ = f.set_len(want);
        }
    }
    let provisioner = s(class, "/provisioner").to_string();
    let mut pv = json!({
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner,
            "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}},
        "spec": {
            "capacity": {"storage": req},
            "accessModes": c["spec"]["accessModes"],
            "volumeMode": s(c, "/spec/volumeMode"),
            "persistentVolumeReclaimPolicy": class.get("reclaimPolicy").cloned().unwrap_or(json!("Delete")),
            "storageClassName": name_of(class),
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": util::ns_of(c),
                "name": name_of(c), "uid": uid_of(c), "resourceVersion": s(c, "/metadata/resourceVersion")},
            "csi": {"driver": provisioner, "volumeHandle": format!("{:016x}", st.random()),
                "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": format!("{provisioner}-fake")}},
        },
    });
    if let Some(mo) = class.get("mountOptions") {
        pv["spec"]["mountOptions"] = mo.clone();
    }
    if st.rt.local_drivers.contains(&provisioner) {
        let n = node
            .map(String::from)
            .or_else(|| {
                st.list(Res::Node, None)
                    .first()
                    .map(|n| name_of(n).to_string())
            })
            .unwrap_or_default();
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}});
    }
    st.volumes.insert(pv_name.clone(), path);
    st.create(Res::Pv, "", pv, Actor::Controller, false)
        .map_err(|e| e.message)
}

/// Copies a folder (or an image file) with `cp -a`, as a storage backend's clone would.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    let mut cmd = std::process::Command::new("cp");
    if src.is_dir() {
        std::fs::create_dir_all(dst).map_err(|e| e.to_string())?;
        cmd.arg("-a").arg(format!("{}/.", src.display())).arg(dst);
    } else {
        cmd.arg("-a").arg("--sparse=always").arg(src).arg(dst);
    }
    let out = cmd.output().map_err(|e| format!("cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "copying {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn bind(st: &mut State, c: &Value, pv: &Value) {
    let pv_name = name_of(pv).to_string();
    let (ns, name, uid) = (
        util::ns_of(c).to_string(),
        name_of(c).to_string(),
        uid_of(c).to_string(),
    );
    let crv = s(c, "/metadata/resourceVersion").to_string();
    st.modify(Res::Pv, "", &pv_name, |p| {
        p["spec"]["claimRef"] = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
            "name": name, "uid": uid, "resourceVersion": crv});
        p["status"]["phase"] = json!("Bound");
        p["status"]["lastPhaseTransitionTime"] = json!(now());
    });
    let cap = pv["spec"]["capacity"].clone();
    let modes = pv["spec"]["accessModes"].clone();
    let prebound = !s(c, "/spec/volumeName").is_empty();
    st.modify(Res::Pvc, &ns, &name, |c| {
        c["spec"]["volumeName"] = json!(pv_name);
        util::set(
            c,
            &["metadata", "annotations", "pv.kubernetes.io/bind-completed"],
            json!("yes"),
        );
        if !prebound {
            util::set(
                c,
                &[
                    "metadata",
                    "annotations",
                    "pv.kubernetes.io/bound-by-controller",
                ],
                json!("yes"),
            );
        }
        c["status"]["phase"] = json!("Bound");
        c["status"]["capacity"] = cap;
        c["status"]["accessModes"] = modes;
    });
}

fn volumes(st: &mut State) {
    for pv in st.list(Res::Pv, None) {
        let name = name_of(&pv).to_string();
        let phase = s(&pv, "/status/phase").to_string();
        if pv.pointer("/metadata/deletionTimestamp").is_some() {
            if phase != "Bound" && finalizers(&pv).iter().any(|f| f == PV_PROTECTION) {
                st.modify(Res::Pv, "", &name, |p| drop_finalizer(p, PV_PROTECTION));
            }
            if st.get(Res::Pv, "", &name).is_none() {
                st.volumes.remove(&name);
            }
            continue;
        }
        let Some(cref) = pv.pointer("/spec/claimRef").cloned() else {
            if phase != "Available" {
                st.modify(Res::Pv, "", &name, |p| set_phase(p, "Available"));
            }
            continue;
        };
        let claim = st.get(Res::Pvc, s(&cref, "/namespace"), s(&cref, "/name"));
        let uid = s(&cref, "/uid");
        if uid.is_empty() {
            // Reserved for a claim that has not bound yet.
            if phase != "Available" {
                st.modify(Res::Pv, "", &name, |p| set_phase(p, "Available"));
            }
            continue;
        }
        let alive = claim.as_ref().is_some_and(|c| uid_of(c) == uid);
        if alive {
            let points_here = claim
                .as_ref()
                .is_some_and(|c| s(c, "/spec/volumeName") == name);
            if points_here && phase != "Bound" {
                st.modify(Res::Pv, "", &name, |p| set_phase(p, "Bound"));
            }
            continue;
        }
        if phase != "Released" && phase != "Failed" {
            st.modify(Res::Pv, "", &name, |p| set_phase(p, "Released"));
        }
        let policy = s(&pv, "/spec/persistentVolumeReclaimPolicy");
        let provisioned = !s(
            &pv,
            "/metadata/annotations/pv.kubernetes.io~1provisioned-by",
        )
        .is_empty();
        if policy == "Delete" && provisioned {
            if let Some(path) = st.volumes.remove(&name) {
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
            st.modify(Res::Pv, "", &name, |p| drop_finalizer(p, PV_PROTECTION));
            st.remove(Res::Pv, "", &name);
        } else if policy == "Recycle" {
            st.modify(Res::Pv, "", &name, |p| {
                set_phase(p, "Failed");
                p["status"]["message"] = json!("Recycle is not supported by this cluster");
            });
        }
    }
}

fn set_phase(p: &mut Value, phase: &str) {
    p["status"]["phase"] = json!(phase);
    p["status"]["lastPhaseTransitionTime"] = json!(now());
}

fn snapshots(st: &mut State) {
    for snap in st.list(Res::VolumeSnapshot, None) {
        if snap
            .pointer("/status/boundVolumeSnapshotContentName")
            .is_some()
        {
            continue;
        }
        let (ns, name) = (util::ns_of(&snap).to_string(), name_of(&snap).to_string());
        let claim_name = s(&snap, "/spec/source/persistentVolumeClaimName").to_string();
        if claim_name.is_empty() {
            continue;
        }
        let fail = |st: &mut State, msg: String| {
            let t = now();
            let changed = st
                .get(Res::VolumeSnapshot, &ns, &name)
                .is_some_and(|v| s(&v, "/status/error/message") != msg);
            if changed {
                st.modify(Res::VolumeSnapshot, &ns, &name, |v| {
                    v["status"] =
                        json!({"readyToUse": false, "error": {"message": msg, "time": t}});
                });
                events::record(
                    st,
                    Res::VolumeSnapshot,
                    &snap,
                    "Warning",
                    "SnapshotCreationFailed",
                    &msg,
                    "snapshot-controller",
                );
            }
        };
        let Some(claim) = st.get(Res::Pvc, &ns, &claim_name) else {
            fail(
                st,
                format!(
                    "Failed to create snapshot: error getting claim: persistentvolumeclaims \"{claim_name}\" not found"
                ),
            );
            continue;
        };
        if s(&claim, "/status/phase") != "Bound" {
            continue;
        }
        let pv_name = s(&claim, "/spec/volumeName").to_string();
        let Some(pv) = st.get(Res::Pv, "", &pv_name) else {
            continue;
        };
        let driver = s(&pv, "/spec/csi/driver").to_string();
        let classes = st.list(Res::VolumeSnapshotClass, None);
        let wanted = s(&snap, "/spec/volumeSnapshotClassName").to_string();
        let class = if wanted.is_empty() {
            classes.iter().find(|c| s(c, "/driver") == driver && s(c, "/metadata/annotations/snapshot.storage.kubernetes.io~1is-default-class") == "true").cloned()
        } else {
            classes.iter().find(|c| name_of(c) == wanted).cloned()
        };
        let Some(class) = class else {
            let msg = if wanted.is_empty() {
                format!(
                    "Failed to set default snapshot class with error cannot find default snapshot class for snapshotter {driver}"
                )
            } else {
                format!(
                    "Failed to get snapshot class with error volumesnapshotclass.snapshot.storage.k8s.io \"{wanted}\" not found"
                )
            };
            fail(st, msg);
            continue;
        };
        if s(&class, "/driver") != driver || driver.is_empty() {
            fail(
                st,
                format!(
                    "Failed to create snapshot content with error snapshot controller failed to update {ns}/{name} on API server: the driver {} of VolumeSnapshotClass {} does not match the volume's driver {driver:?}",
                    s(&class, "/driver"),
                    name_of(&class)
                ),
            );
            continue;
        }
        let content_name = format!("snapcontent-{}", uid_of(&snap));
        let dir = st.rt.root.join("snapshots").join(&content_name);
        let Some(src) = st.volumes.get(&pv_name).cloned() else {
            continue;
        };
        if let Err(e) = std::fs::create_dir_all(st.rt.root.join("snapshots"))
            .map_err(|e| e.to_string())
            .and_then(|_| copy_tree(&src, &dir))
        {
            fail(st, format!("Failed to create snapshot: {e}"));
            continue;
        }
        st.snapshots.insert(content_name.clone(), dir);
        let restore = size(&claim, "/status/capacity/storage");
        let nanos = util::now_secs() as i128 * 1_000_000_000;
        let content = json!({
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": s(&class, "/deletionPolicy"),
                "driver": driver,
                "source": {"volumeHandle": s(&pv, "/spec/csi/volumeHandle")},
                "volumeSnapshotClassName": name_of(&class),
                "sourceVolumeMode": s(&pv, "/spec/volumeMode"),
                "volumeSnapshotRef": {"kind": "VolumeSnapshot", "apiVersion": "snapshot.storage.k8s.io/v1",
                    "namespace": ns, "name": name, "uid": uid_of(&snap), "resourceVersion": s(&snap, "/metadata/resourceVersion")},
            },
        });
        if st
            .create(
                Res::VolumeSnapshotContent,
                "",
                content,
                Actor::Controller,
                false,
            )
            .is_err()
        {
            continue;
        }
        st.modify(Res::VolumeSnapshotContent, "", &content_name, |v| {
            v["status"] = json!({"creationTime": nanos as i64, "readyToUse": true, "restoreSize": restore as u64,
                "snapshotHandle": format!("{:016x}", util::random())});
        });
        let cap = s(&claim, "/status/capacity/storage").to_string();
        let class_name = name_of(&class).to_string();
        st.modify(Res::VolumeSnapshot, &ns, &name, |v| {
            if s(v, "/spec/volumeSnapshotClassName").is_empty() {
                v["spec"]["volumeSnapshotClassName"] = json!(class_name);
            }
            v["status"] = json!({"boundVolumeSnapshotContentName": content_name, "creationTime": now(),
                "readyToUse": true, "restoreSize": cap});
        });
        events::record(
            st,
            Res::VolumeSnapshot,
            &snap,
            "Normal",
            "SnapshotReady",
            &format!("Snapshot {ns}/{name} is ready to use."),
            "snapshot-controller",
        );
    }
    // Contents whose snapshot is gone: deleted with their data, or kept (Retain).
    for content in st.list(Res::VolumeSnapshotContent, None) {
        let (sns, sname, suid) = (
            s(&content, "/spec/volumeSnapshotRef/namespace"),
            s(&content, "/spec/volumeSnapshotRef/name"),
            s(&content, "/spec/volumeSnapshotRef/uid"),
        );
        let alive = st
            .get(Res::VolumeSnapshot, sns, sname)
            .is_some_and(|v| suid.is_empty() || uid_of(&v) == suid);
        if !alive && s(&content, "/spec/deletionPolicy") == "Delete" {
            let name = name_of(&content).to_string();
            if let Some(dir) = st.snapshots.remove(&name) {
                let _ = std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_file(&dir));
            }
            st.remove(Res::VolumeSnapshotContent, "", &name);
        }
    }
}
