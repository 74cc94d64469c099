//! Names, labels and annotations pvc-backup puts on the objects it creates, so that `list` can
//! find them again and a second run recognises the first one's work.

/// The label every object made by pvc-backup carries (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "pvc-backup");

/// Label on a backup or clone claim, a Job or a CronJob: the name of the source claim.
pub const SOURCE_LABEL: &str = "pvc-backup.io/source";

/// Label saying what an object is for: `backup`, `clone`, `migrate`, `restore`.
pub const ROLE_LABEL: &str = "pvc-backup.io/role";

/// Annotation on a target claim: the last mover run into it (JSON: when, result, counts).
pub const LAST_RUN_ANNOTATION: &str = "pvc-backup.io/last-run";

/// Annotation on a claim backed up into a restic-format repository: the last such run (the
/// record of [`LAST_RUN_ANNOTATION`] and the repository's URL). A repository has no claim of
/// its own to carry it.
pub const LAST_REPOSITORY_RUN_ANNOTATION: &str = "pvc-backup.io/last-repository-run";

/// Annotation on a target claim: the CronJob that backs up into it.
pub const SCHEDULE_ANNOTATION: &str = "pvc-backup.io/schedule";

/// The service account the mover runs under, kept from the original BackupEr.
pub const SERVICE_ACCOUNT: &str = "pvc-backup-deployer";

/// The ClusterRole that may use the mover's SecurityContextConstraints, kept from the original.
pub const CLUSTER_ROLE: &str = "backuper";

/// The SecurityContextConstraints that admit the mover pod on OpenShift.
pub const SCC: &str = "pvc-backup-mover";

/// The RoleBinding of [`CLUSTER_ROLE`] to [`SERVICE_ACCOUNT`] in each namespace, named as
/// `oc adm policy add-role-to-user backuper -z pvc-backup-deployer` names it.
pub const MOVER_ROLE_BINDING: &str = "backuper";

/// The ClusterRole for the people and pipelines that run backups, clones, migrations and
/// restores in a namespace (namespaced resources only).
pub const OPERATOR_CLUSTER_ROLE: &str = "pvc-backup-operator";

/// The ClusterRole for migrations that rebind volumes (cluster-scoped resources only).
pub const VOLUMES_CLUSTER_ROLE: &str = "pvc-backup-volumes";

/// The pod annotation that makes OpenShift (4.14 and later) admit a pod with this SCC or not at
/// all, instead of trying every SCC the pod's account may use.
pub const REQUIRED_SCC_ANNOTATION: &str = "openshift.io/required-scc";

/// Where the mover pod mounts the source claim, kept from the original BackupEr.
pub const SOURCE_MOUNT: &str = "/source";

/// Where the mover pod mounts the target claim, kept from the original BackupEr.
pub const TARGET_MOUNT: &str = "/backup";

/// Where a mover of a transfer between namespaces mounts its Secret: its key and certificate
/// and its peer's certificate (`mover send|receive --keys`).
pub const KEYS_MOUNT: &str = "/keys";

/// The port the receiving mover listens on, and its Service's port.
pub const WIRE_PORT: i32 = 7443;

/// Label on the objects of one transfer between namespaces (its Jobs, pods, Secrets and
/// Service): the run's name. The Service selects the receiving pod by it.
pub const TRANSFER_LABEL: &str = "pvc-backup.io/transfer";

/// Label saying which end of a transfer a pod or Secret is for: `sender` or `receiver`.
pub const SIDE_LABEL: &str = "pvc-backup.io/side";

/// Label on a claim copied from another namespace: the source claim's namespace.
pub const SOURCE_NAMESPACE_LABEL: &str = "pvc-backup.io/source-namespace";

/// The mover image's entrypoint: the static binary at the image's root.
pub const ENTRYPOINT: &str = "/pvc-backup";

/// The image of this release, which runs the mover and the webhook.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/pvc-backup/pvc-backup:", env!("CARGO_PKG_VERSION"));

/// Checks `name` as a Kubernetes object name (an RFC 1123 subdomain, at most `max` bytes),
/// naming `what` it is in the error.
pub fn check_name(what: &str, name: &str, max: usize) -> crate::Result<()> {
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.';
    let b = name.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= max
        && b.iter().all(|&c| ok_char(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(crate::Error::Invalid(format!(
            "{what} {name:?} is not a valid Kubernetes name: use at most {max} lower-case \
             letters, digits, '-' or '.', starting and ending with a letter or digit"
        )))
    }
}

/// Checks `name` as a namespace name (an RFC 1123 label: at most 63 bytes, no dots).
pub fn check_namespace(name: &str) -> crate::Result<()> {
    check_name("namespace", name, 63)?;
    if name.contains('.') {
        return Err(crate::Error::Invalid(format!(
            "namespace {name:?} is not a valid Kubernetes namespace name: use lower-case \
             letters, digits and '-' only (no '.')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(check_name("claim", "data-backup", 253).is_ok());
        assert!(check_name("claim", "a", 253).is_ok());
        for bad in ["", "Data", "-data", "data-", "da_ta", "dätä"] {
            let err = check_name("claim", bad, 253).unwrap_err().to_string();
            assert!(err.contains("claim"), "{err}");
        }
        assert!(check_name("job", &"a".repeat(64), 63).is_err());
        assert!(check_namespace("shop-1").is_ok());
        for bad in ["a.b", "", "Shop", &"a".repeat(64)] {
            let err = check_namespace(bad).unwrap_err().to_string();
            assert!(err.contains("namespace"), "{err}");
        }
    }
}
