//! Where a migration's record is kept: on the claim, and with `--keep-name` also on the old
//! volume while the claim is recreated.

use super::{MigrateRequest, OLD_VOLUME, RETAIN};
use crate::api;
use crate::connect::Kube;
use crate::objects::mover::Placement;
use crate::workflow::progress::{PROGRESS, Progress};
use crate::workflow::steps::{self};
use crate::workflow::{self};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;

/// Where the copies run once the workload is stopped, as recorded.
pub(super) fn pinned_from(recorded: &str) -> Result<Placement> {
    #[derive(serde::Deserialize)]
    struct Pinned {
        node: String,
        #[serde(default)]
        tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    }
    let p: Pinned = serde_json::from_str(recorded).map_err(|source| Error::Decode {
        what: "the node recorded for the copies".to_owned(),
        source,
    })?;
    Ok(Placement::Node {
        node: p.node,
        tolerations: p.tolerations,
    })
}

/// The record of a migration of the claim: on the claim, or with `--keep-name` on its old
/// volume (while the claim is recreated), whichever went further; and the object it is on.
pub(super) async fn recorded(
    kube: &Kube,
    request: &MigrateRequest,
    current: Option<&PersistentVolumeClaim>,
) -> Result<(Option<Progress>, String)> {
    let on_claim = format!("pvc/{} -n {}", request.claim, kube.namespace);
    let mut found = match current {
        Some(c) => Progress::read(c.metadata.annotations.as_ref(), &on_claim)?
            .map(|p| (p, on_claim.clone())),
        None => None,
    };
    let old_volume = found
        .as_ref()
        .and_then(|(p, _)| p.get(OLD_VOLUME).map(str::to_owned));
    let volumes = match (current, old_volume) {
        _ if !request.keep_name => Vec::new(),
        (Some(_), None) => Vec::new(),
        (Some(_), Some(pv)) => {
            match api::get_opt(&api::cluster(kube), "PersistentVolume", &pv).await? {
                Some(v) => vec![v],
                None => Vec::new(),
            }
        }
        // The claim is being recreated: its old volume keeps the record meanwhile.
        (None, _) => {
            let pvs: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = api::cluster(kube);
            pvs.list(&Default::default())
                .await
                .map_err(Error::api("list PersistentVolumes"))?
                .items
        }
    };
    for pv in volumes {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let claimed = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claimed.and_then(|r| r.namespace.as_deref()) != Some(kube.namespace.as_str()) {
            continue;
        }
        let holder = format!("pv/{name}");
        let Some(p) = Progress::read(pv.metadata.annotations.as_ref(), &holder)? else {
            continue;
        };
        if p.claim != request.claim {
            continue;
        }
        let further = found
            .as_ref()
            .is_none_or(|(f, _)| request.steps().went_further(&p, f));
        if further {
            found = Some((p, holder));
        }
    }
    Ok(match found {
        Some((p, holder)) => (Some(p), holder),
        None => (None, on_claim),
    })
}

/// Writes the record where it must be: on the claim (unless it is gone for the moment) and,
/// with `--keep-name` once the volumes are kept, on the old volume.
pub(super) async fn save(kube: &Kube, request: &MigrateRequest, progress: &Progress) -> Result<()> {
    write(kube, request, progress, true).await
}

/// Removes the record from wherever it is.
pub(super) async fn clear(
    kube: &Kube,
    request: &MigrateRequest,
    progress: &Progress,
) -> Result<()> {
    write(kube, request, progress, false).await
}

async fn write(
    kube: &Kube,
    request: &MigrateRequest,
    progress: &Progress,
    keep: bool,
) -> Result<()> {
    let on_volume = request.keep_name && request.steps().is_done(progress, RETAIN);
    if on_volume && let Some(pv) = progress.get(OLD_VOLUME) {
        let value = keep.then(|| progress.to_annotation());
        let patch = json!({"metadata": {"annotations": {PROGRESS: value}}});
        steps::patch_volume(kube, pv, &patch).await?;
    }
    match workflow::record_progress(kube, &request.claim, keep.then_some(progress)).await {
        Ok(()) => Ok(()),
        // Between its removal and its recreation, the old volume holds the record.
        Err(e) if e.is_not_found() && on_volume => Ok(()),
        Err(e) => Err(e),
    }
}
