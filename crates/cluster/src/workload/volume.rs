//! Pointing a workload's volume at another claim (or a folder of it) and back, with the previous
//! claims recorded in annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::connect::Kube;
use crate::{Error, Result};

use super::*;

/// Where a claim appears in a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimUse {
    /// A volume of the pod template, which can be pointed at another claim.
    Volume(String),
    /// A StatefulSet's `volumeClaimTemplates` entry: each pod gets its own claim
    /// `TEMPLATE-STATEFULSET-ORDINAL`, which the template cannot be told to replace.
    Template(String),
}

/// How `claim` appears in `obj` (a workload), if it does.
pub fn claim_use(obj: &DynamicObject, claim: &str) -> Result<Option<ClaimUse>> {
    let template = pod_template(obj)?;
    let volumes = template.spec.and_then(|s| s.volumes).unwrap_or_default();
    if let Some(v) = volumes.iter().find(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|p| p.claim_name == claim)
    }) {
        return Ok(Some(ClaimUse::Volume(v.name.clone())));
    }
    let sts = obj.metadata.name.clone().unwrap_or_default();
    let templates = obj
        .data
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in templates {
        let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        // TEMPLATE-STS-ORDINAL, with a numeric ordinal.
        if let Some(rest) = claim.strip_prefix(&format!("{tname}-{sts}-"))
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Some(ClaimUse::Template(tname.to_owned())));
        }
    }
    Ok(None)
}

/// The claims recorded in a workload's [`PREVIOUS_CLAIMS`] annotation (volume → claim).
pub fn previous_claims(obj: &DynamicObject) -> Result<BTreeMap<String, String>> {
    annotation_map(obj, PREVIOUS_CLAIMS)
}

/// What [`point_volume`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repointed {
    /// The pod template volume.
    pub volume: String,
    /// The claim it used.
    pub from: String,
    /// The claim it uses now.
    pub to: String,
}

/// How the container mounts of a repointed volume change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubPath<'a> {
    /// They stay as they are.
    Keep,
    /// They show this folder of the new claim (`subPath` prefixed with it), as a swap onto a
    /// backup claim shows one of its snapshots. Recorded in [`SWAPPED_SUB_PATHS`].
    Under(&'a str),
}

/// Annotation on a workload: for each volume pvc-backup pointed at a folder of another claim,
/// the folder put in front of its mounts' `subPath` (JSON object, volume to folder).
pub const SWAPPED_SUB_PATHS: &str = "pvc-backup.io/swapped-sub-paths";

fn annotation_map(obj: &DynamicObject, key: &str) -> Result<BTreeMap<String, String>> {
    let Some(text) = obj.metadata.annotations.as_ref().and_then(|a| a.get(key)) else {
        return Ok(BTreeMap::new());
    };
    serde_json::from_str(text).map_err(|source| Error::Decode {
        what: format!(
            "annotation {key} of {} is not a JSON object of volume names (fix or remove it by \
             hand)",
            obj.metadata.name.clone().unwrap_or_default()
        ),
        source,
    })
}

fn set_annotation_map(obj: &mut DynamicObject, key: &str, map: &BTreeMap<String, String>) {
    let annotations = obj.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if map.is_empty() {
        annotations.remove(key);
    } else {
        annotations.insert(
            key.to_owned(),
            serde_json::to_string(map).unwrap_or_default(),
        );
    }
}

/// `sub` without the folder `prefix` in front (`None` for the folder itself).
pub(super) fn strip_prefix(sub: Option<&str>, prefix: &str) -> Option<String> {
    let sub = sub?;
    match sub.strip_prefix(prefix) {
        Some("") => None,
        Some(rest) if rest.starts_with('/') => Some(rest.trim_start_matches('/').to_owned()),
        _ => Some(sub.to_owned()),
    }
}

/// Changes the `subPath` of every container mount of `volume` in `template`: the folder
/// `remove` taken away, then `add` put in front.
pub fn change_sub_paths(
    template: &mut PodTemplateSpec,
    volume: &str,
    remove: Option<&str>,
    add: Option<&str>,
) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for m in c.volume_mounts.iter_mut().flatten() {
            if m.name != volume {
                continue;
            }
            let mut sub = m.sub_path.clone().filter(|s| !s.is_empty());
            if let Some(r) = remove {
                sub = strip_prefix(sub.as_deref(), r);
            }
            if let Some(a) = add {
                sub = Some(match sub {
                    Some(rest) => format!("{a}/{rest}"),
                    None => a.to_owned(),
                });
            }
            m.sub_path = sub;
        }
    }
}

/// Points the pod template volume of `workload` that uses claim `from` at claim `to`.
///
/// With `record`, `from` is recorded in the [`PREVIOUS_CLAIMS`] annotation; a volume that
/// already has a recorded previous claim keeps it, so `rollback` returns to the claim used
/// before pvc-backup first changed it. Without `record` (a rollback), the volume's entry is
/// removed, and so is a folder recorded in [`SWAPPED_SUB_PATHS`]. `sub_path` says how the
/// volume's mounts change.
///
/// A StatefulSet claim that comes from its `volumeClaimTemplates` cannot be pointed elsewhere;
/// the error says to keep the claim's name (`migrate --keep-name`) instead.
pub async fn point_volume(
    kube: &Kube,
    workload: &Workload,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    update(kube, workload, |obj| {
        repoint(obj, workload, from, to, record, sub_path)
    })
    .await
}

/// Reads the workload, changes it with `change` and writes its spec and annotations back as a
/// JSON patch (the documented role grants `patch`, not `update`). The patch carries the
/// resourceVersion that was read, so a concurrent edit is a conflict, retried from a fresh
/// read, rather than a lost update.
async fn update<R>(
    kube: &Kube,
    workload: &Workload,
    mut change: impl FnMut(&mut DynamicObject) -> Result<R>,
) -> Result<R> {
    for _ in 0..5 {
        let mut obj = workload.get(kube).await?;
        let had_annotations = obj.metadata.annotations.is_some();
        let result = change(&mut obj)?;
        let patch = write_back(&obj, had_annotations)?;
        match workload
            .api(kube)
            .patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => return Ok(result),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(Error::api(format!("update {workload}"))(e)),
        }
    }
    Err(Error::Failed(format!(
        "{workload} kept changing while pvc-backup tried to update it; retry"
    )))
}

/// The JSON patch that writes `obj`'s spec and annotations over the stored object, on
/// condition that it is still at `obj`'s resourceVersion.
fn write_back(obj: &DynamicObject, had_annotations: bool) -> Result<json_patch::Patch> {
    let mut ops = vec![
        json!({"op": "add", "path": "/metadata/resourceVersion",
               "value": obj.metadata.resource_version}),
        json!({"op": "add", "path": "/spec", "value": obj.data.get("spec")}),
    ];
    match &obj.metadata.annotations {
        Some(a) => ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": a})),
        None if had_annotations => {
            ops.push(json!({"op": "remove", "path": "/metadata/annotations"}))
        }
        None => {}
    }
    serde_json::from_value(Value::Array(ops)).map_err(|source| Error::Decode {
        what: "cannot write a JSON patch".to_owned(),
        source,
    })
}

/// [`point_volume`] on a workload object in memory (what `--dry-run` shows).
pub fn repoint(
    obj: &mut DynamicObject,
    workload: &Workload,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    let volume = match claim_use(obj, from)? {
        Some(ClaimUse::Volume(v)) => v,
        Some(ClaimUse::Template(t)) => {
            return Err(Error::Invalid(format!(
                "claim {from} comes from the volumeClaimTemplates entry {t:?} of {workload}; a \
                 StatefulSet's pods always use the claims their template names, so the new data \
                 must take over the claim's name: use migrate --keep-name, or restore by \
                 copying (without --swap)"
            )));
        }
        None => {
            return Err(Error::Invalid(format!(
                "{workload} has no volume that uses claim {from}; name the workload that does \
                 with --workload KIND/NAME"
            )));
        }
    };
    repoint_volume(obj, workload, &volume, from, to, record, sub_path)
}

/// [`repoint`] of the volume named `volume` (which uses claim `from`).
fn repoint_volume(
    obj: &mut DynamicObject,
    workload: &Workload,
    volume: &str,
    from: &str,
    to: &str,
    record: bool,
    sub_path: SubPath<'_>,
) -> Result<Repointed> {
    let volume = volume.to_owned();
    let mut previous = previous_claims(obj)?;
    let mut folders = annotation_map(obj, SWAPPED_SUB_PATHS)?;
    let recorded_folder = folders.get(&volume).cloned();
    let (remove, add) = if record {
        previous
            .entry(volume.clone())
            .or_insert_with(|| from.to_owned());
        match sub_path {
            SubPath::Keep => (None, None),
            SubPath::Under(folder) => {
                folders.insert(volume.clone(), folder.to_owned());
                (recorded_folder, Some(folder.to_owned()))
            }
        }
    } else {
        previous.remove(&volume);
        folders.remove(&volume);
        (recorded_folder, None)
    };
    let mut template = pod_template(obj)?;
    if let Some(vols) = template.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
        for v in vols.iter_mut().filter(|v| v.name == volume) {
            if let Some(p) = v.persistent_volume_claim.as_mut() {
                p.claim_name = to.to_owned();
            }
        }
    }
    change_sub_paths(&mut template, &volume, remove.as_deref(), add.as_deref());
    set_annotation_map(obj, PREVIOUS_CLAIMS, &previous);
    set_annotation_map(obj, SWAPPED_SUB_PATHS, &folders);
    if let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(
            "template".to_owned(),
            serde_json::to_value(&template).map_err(|e| Error::Serialise {
                what: format!("the pod template of {workload}"),
                message: e.to_string(),
            })?,
        );
    }
    Ok(Repointed {
        volume,
        from: from.to_owned(),
        to: to.to_owned(),
    })
}

/// Points every volume recorded in the workload's [`PREVIOUS_CLAIMS`] annotation back at its
/// previous claim and removes the annotation, in one update. Returns what changed; an error
/// when nothing is recorded.
pub async fn rollback(kube: &Kube, workload: &Workload) -> Result<RolledBack> {
    update(kube, workload, |obj| roll_back(obj, workload)).await
}

/// What [`rollback`] changed.
#[derive(Debug, Clone, Default)]
pub struct RolledBack {
    /// The volumes pointed back at their previous claims.
    pub volumes: Vec<Repointed>,
    /// The replica count given back to a workload a `--scale-down` run left at zero (found in
    /// its [`SCALED_DOWN_FROM`] annotation).
    pub replicas: Option<i32>,
}

/// [`rollback`] on a workload object in memory (what `--dry-run` shows).
///
/// Points the volumes recorded in [`PREVIOUS_CLAIMS`] back at their claims, and gives a workload
/// left at zero replicas by a `--scale-down` run that died (its [`SCALED_DOWN_FROM`] annotation)
/// its count back. A workload someone scaled up since only loses the annotation.
pub fn roll_back(obj: &mut DynamicObject, workload: &Workload) -> Result<RolledBack> {
    let previous = previous_claims(obj)?;
    let annotations = obj.metadata.annotations.get_or_insert_default();
    let scaled_down = annotations.remove(SCALED_DOWN_FROM);
    if previous.is_empty() && scaled_down.is_none() {
        return Err(Error::Invalid(format!(
            "{workload} has neither a {PREVIOUS_CLAIMS} nor a {SCALED_DOWN_FROM} annotation: \
             pvc-backup did not point any of its volumes at another claim nor leave it scaled \
             down, so there is nothing to switch back"
        )));
    }
    let mut done = RolledBack::default();
    if let Some(count) = scaled_down {
        let count: i32 = count.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::Failed(format!(
                "{workload} has {SCALED_DOWN_FROM}: {count:?}, not a replica count; scale it \
                 with kubectl and remove the annotation"
            ))
        })?;
        if spec_replicas(obj) == 0 {
            obj.data["spec"]["replicas"] = json!(count);
            done.replicas = Some(count);
        }
    }
    for (volume, claim) in &previous {
        let volumes = pod_template(obj)?
            .spec
            .and_then(|s| s.volumes)
            .unwrap_or_default();
        let current = volumes
            .iter()
            .find(|v| &v.name == volume)
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|p| p.claim_name.clone())
            .ok_or_else(|| {
                Error::Failed(format!(
                    "{workload} no longer has a claim volume {volume:?}, recorded in \
                     {PREVIOUS_CLAIMS}; fix the annotation by hand"
                ))
            })?;
        done.volumes.push(repoint_volume(
            obj,
            workload,
            volume,
            &current,
            claim,
            false,
            SubPath::Keep,
        )?);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(json: Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_claim_is_a_template_volume_or_a_volume_claim_template() {
        let obj = sts(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "annotations": {PREVIOUS_CLAIMS: "{\"conf\":\"conf-old\"}"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "containers": [{"name": "db"}],
                    "volumes": [{"name": "conf", "persistentVolumeClaim": {"claimName": "conf"}}]
                }},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }
        }));
        assert_eq!(spec_replicas(&obj), 3);
        assert_eq!(
            claim_use(&obj, "conf").unwrap(),
            Some(ClaimUse::Volume("conf".into()))
        );
        assert_eq!(
            claim_use(&obj, "data-db-2").unwrap(),
            Some(ClaimUse::Template("data".into()))
        );
        assert_eq!(claim_use(&obj, "data-db-x").unwrap(), None);
        assert_eq!(claim_use(&obj, "data-other-0").unwrap(), None);
        assert_eq!(
            previous_claims(&obj).unwrap(),
            BTreeMap::from([("conf".to_owned(), "conf-old".to_owned())])
        );
    }

    #[test]
    fn a_swap_puts_its_folder_in_front_of_each_mount_and_takes_exactly_that_away() {
        let mut t: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "data", "mountPath": "/i"}]}],
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "data", "mountPath": "/srv"},
                {"name": "data", "mountPath": "/etc/app", "subPath": "conf"},
                {"name": "other", "mountPath": "/o", "subPath": "x"}
            ]}]
        }}))
        .unwrap();
        let subs = |t: &PodTemplateSpec| -> Vec<Option<String>> {
            let s = t.spec.clone().unwrap();
            s.init_containers
                .unwrap()
                .into_iter()
                .chain(s.containers)
                .flat_map(|c| c.volume_mounts.unwrap_or_default())
                .map(|m| m.sub_path)
                .collect()
        };
        let some = |s: &str| Some(s.to_owned());
        change_sub_paths(&mut t, "data", None, Some("snapshots/A"));
        assert_eq!(
            subs(&t),
            [
                some("snapshots/A"),
                some("snapshots/A"),
                some("snapshots/A/conf"),
                some("x")
            ]
        );
        // A second swap replaces the folder instead of nesting it.
        change_sub_paths(&mut t, "data", Some("snapshots/A"), Some("snapshots/B"));
        assert_eq!(
            subs(&t),
            [
                some("snapshots/B"),
                some("snapshots/B"),
                some("snapshots/B/conf"),
                some("x")
            ]
        );
        change_sub_paths(&mut t, "data", Some("snapshots/B"), None);
        assert_eq!(subs(&t), [None, None, some("conf"), some("x")]);
        // A folder that only starts like the recorded one is the user's own.
        assert_eq!(
            strip_prefix(Some("snapshots/Bee"), "snapshots/B"),
            some("snapshots/Bee")
        );
    }
}
