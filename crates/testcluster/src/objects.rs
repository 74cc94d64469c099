//! Reading Kubernetes objects the way tests check them, through the k8s-openapi types.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The claim behind `volume` in a pod template (empty when the volume is missing or not a
/// claim), and the `subPath` of each mount of it in the first container.
pub fn claim_and_sub_paths(
    template: &PodTemplateSpec,
    volume: &str,
) -> (String, Vec<Option<String>>) {
    let spec = template.spec.clone().unwrap_or_default();
    let claim = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == volume)
        .and_then(|v| v.persistent_volume_claim)
        .map(|p| p.claim_name)
        .unwrap_or_default();
    let sub_paths = spec
        .containers
        .first()
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.name == volume)
        .map(|m| m.sub_path)
        .collect();
    (claim, sub_paths)
}
