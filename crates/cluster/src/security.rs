//! The mover pod's security settings: root with exactly five ordinary capabilities, or fully
//! unprivileged for namespaces under Pod Security "restricted".
//!
//! The Job builder, the OpenShift templates and the SecurityContextConstraints all take their
//! settings from here, so the three cannot drift apart.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// The capabilities the mover keeps: enough to read every file, act as its owner and restore
/// owners and modes; nothing that reaches outside its volumes.
pub const CAPABILITIES: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"];

/// The seccomp profile of [`container`] and [`pod`] (`RuntimeDefault`) as OpenShift's
/// SecurityContextConstraints name it.
pub const OPENSHIFT_SECCOMP_PROFILE: &str = "runtime/default";

/// The user the image runs as when the pod names none (the "nonroot" user of distroless
/// images): an unprivileged mover without `--run-as-user` is this user on Kubernetes, while
/// OpenShift's restricted-v2 SCC gives it a user from the namespace's range instead.
pub const DEFAULT_UNPRIVILEGED_UID: i64 = 65532;

/// How much the mover may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Root with the five capabilities: every owner, mode and attribute is kept.
    Mover,
    /// No capabilities, a non-root user: files the user cannot read are reported, owners are
    /// recorded in the backup's owner manifest instead of applied.
    Unprivileged {
        /// The user (and group) to run as; `None` leaves it to the image (user
        /// [`DEFAULT_UNPRIVILEGED_UID`]) or, on OpenShift, to the namespace's user range, which
        /// restricted-v2 only admits when the pod does not name a user outside it.
        uid: Option<i64>,
    },
}

/// The container security context of the mover.
pub fn container(privilege: Privilege) -> SecurityContext {
    let add = match privilege {
        Privilege::Mover => Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
        Privilege::Unprivileged { .. } => None,
    };
    let (run_as_user, run_as_non_root) = match privilege {
        Privilege::Mover => (Some(0), false),
        Privilege::Unprivileged { uid } => (uid, true),
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_user,
        run_as_group: run_as_user,
        run_as_non_root: Some(run_as_non_root),
        capabilities: Some(Capabilities {
            add,
            drop: Some(vec!["ALL".to_owned()]),
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// The pod security context of the mover.
pub fn pod(privilege: Privilege) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(matches!(privilege, Privilege::Unprivileged { .. })),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_adds_exactly_five_capabilities_after_dropping_all() {
        let sc = container(Privilege::Mover);
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop.unwrap(), ["ALL"]);
        assert_eq!(
            caps.add.unwrap(),
            ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]
        );
        assert_eq!(sc.run_as_user, Some(0));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn unprivileged_adds_nothing_and_is_not_root() {
        let sc = container(Privilege::Unprivileged { uid: Some(1000) });
        assert!(sc.capabilities.unwrap().add.is_none());
        assert_eq!(sc.run_as_user, Some(1000));
        assert_eq!(sc.run_as_group, Some(1000));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            pod(Privilege::Unprivileged { uid: Some(1000) }).run_as_non_root,
            Some(true)
        );
    }

    #[test]
    fn unprivileged_without_a_user_leaves_it_to_the_image_or_the_scc() {
        let sc = container(Privilege::Unprivileged { uid: None });
        assert_eq!(sc.run_as_user, None);
        assert_eq!(sc.run_as_group, None);
        assert_eq!(sc.run_as_non_root, Some(true));
    }
}
