//! The policy: only the mover may use the guarded service account.
//!
//! A pod, or the pod template of a workload, that names the guarded service account is allowed
//! only when every container (including init and ephemeral containers) runs an allowed image,
//! does not replace the command with anything but the mover's entrypoint, and nothing in it is
//! privileged: no `privileged`, no host namespaces, no hostPath volume, no Windows host process,
//! no capability beyond the mover's five.
//!
//! The verdict and the message are defined so that the CEL in [`crate::vap`] produces exactly the
//! same ones for every object the API server can send; the tests hold both to that.

use serde_json::Value;

use crate::image::{ImageRef, ImageRule};
use crate::{Error, Result};

/// The service account the mover runs under, kept from the original BackupEr.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "pvc-backup-deployer";

/// The mover image's entrypoint: the only command a container may set.
pub const DEFAULT_ENTRYPOINT: &str = "/pvc-backup";

/// The capabilities the mover adds, and so the only ones a guarded pod may add (with or without
/// the `CAP_` prefix, in upper case as Kubernetes documents them).
pub const ALLOWED_CAPABILITIES: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"];

/// Where a kind keeps its pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSpecPath {
    /// `spec` (a Pod).
    Pod,
    /// `spec.template.spec` (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
    /// DeploymentConfig).
    Template,
    /// `spec.jobTemplate.spec.template.spec` (CronJob).
    JobTemplate,
}

impl PodSpecPath {
    /// The pod spec location for an API group and kind, or `None` for kinds the guard does not
    /// look into.
    pub fn of(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            ("", "Pod") => Some(Self::Pod),
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
                Some(Self::Template)
            }
            ("batch", "Job") => Some(Self::Template),
            ("batch", "CronJob") => Some(Self::JobTemplate),
            // OpenShift serves DeploymentConfig in its own group and, historically, in the core one.
            ("apps.openshift.io" | "", "DeploymentConfig") => Some(Self::Template),
            _ => None,
        }
    }

    /// The JSON pointer of the pod spec inside the object.
    pub fn pointer(self) -> &'static str {
        match self {
            Self::Pod => "/spec",
            Self::Template => "/spec/template/spec",
            Self::JobTemplate => "/spec/jobTemplate/spec/template/spec",
        }
    }
}

/// The policy's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    service_account: String,
    rules: Vec<ImageRule>,
    entrypoints: Vec<String>,
}

/// What the policy says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: the object does not use the guarded service account, or uses it as the mover.
    Allowed,
    /// Denied, with a message naming every violation.
    Denied {
        /// The whole message returned to the user.
        message: String,
        /// One entry per violating container, pod setting or volume.
        violations: Vec<String>,
    },
}

impl Decision {
    /// Whether the object is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// The parts of an admission request the policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// API group of the object's kind (`""` for the core group).
    pub group: &'a str,
    /// The object's kind (`Pod`, `Deployment`, ...).
    pub kind: &'a str,
    /// The subresource, if any (`ephemeralcontainers`, `status`, ...).
    pub sub_resource: Option<&'a str>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    /// The name shown in messages (`metadata.name`, else `metadata.generateName`).
    pub name: &'a str,
    /// The object itself, as JSON.
    pub object: &'a Value,
}

impl Policy {
    /// A policy guarding `service_account`, allowing images that match any of `rules`, with the
    /// default mover entrypoint.
    pub fn new(service_account: impl Into<String>, rules: Vec<ImageRule>) -> Result<Self> {
        let service_account = service_account.into();
        if !is_dns_subdomain(&service_account) {
            return Err(Error::InvalidName {
                what: "service account",
                value: service_account,
                why: "a service account name is lowercase letters, digits, '-' and '.', at most 253 characters",
            });
        }
        if rules.is_empty() {
            return Err(Error::NoAllowedImages);
        }
        Ok(Self {
            service_account,
            rules,
            entrypoints: vec![DEFAULT_ENTRYPOINT.to_owned()],
        })
    }

    /// Parses the rules from their written forms (see [`ImageRule`]).
    pub fn from_strings<S: AsRef<str>>(
        service_account: &str,
        allowed_images: &[S],
    ) -> Result<Self> {
        let rules = allowed_images
            .iter()
            .map(|s| ImageRule::parse(s.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::new(service_account, rules)
    }

    /// Replaces the commands a container may set (each the first element of `command`).
    pub fn with_entrypoints<S: Into<String>>(
        mut self,
        entrypoints: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let entrypoints: Vec<String> = entrypoints.into_iter().map(Into::into).collect();
        if entrypoints.is_empty() || entrypoints.iter().any(String::is_empty) {
            return Err(Error::InvalidName {
                what: "mover entrypoint",
                value: entrypoints.join(","),
                why: "give at least one non-empty entrypoint path",
            });
        }
        self.entrypoints = entrypoints;
        Ok(self)
    }

    /// The guarded service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The allowed-image rules.
    pub fn rules(&self) -> &[ImageRule] {
        &self.rules
    }

    /// The commands a container may set.
    pub fn entrypoints(&self) -> &[String] {
        &self.entrypoints
    }

    /// Whether an image, as written in a pod, is allowed.
    pub fn image_allowed(&self, image: &str) -> bool {
        match ImageRef::parse(image) {
            Ok(image) => self.rules.iter().any(|rule| rule.matches(&image)),
            Err(_) => false,
        }
    }

    /// Decides about one admission request.
    pub fn decide(&self, subject: &Subject<'_>) -> Decision {
        if !matches!(subject.operation, "CREATE" | "UPDATE") {
            return Decision::Allowed;
        }
        // Other subresources (status, binding, eviction, resize, scale) cannot change who runs
        // what; the ephemeral containers subresource can.
        match subject.sub_resource {
            None | Some("") | Some("ephemeralcontainers") => {}
            Some(_) => return Decision::Allowed,
        }
        let Some(path) = PodSpecPath::of(subject.group, subject.kind) else {
            return Decision::Allowed;
        };
        if !subject.object.is_object() {
            return self.denied(
                subject,
                vec!["the request carries no object to check".to_owned()],
            );
        }
        let spec = match subject.object.pointer(path.pointer()) {
            None | Some(Value::Null) => return Decision::Allowed,
            Some(Value::Object(spec)) => spec,
            Some(_) => {
                return self.denied(
                    subject,
                    vec![format!("{} is not an object", dotted(path.pointer()))],
                );
            }
        };
        let mut violations = Vec::new();
        let mut guarded = false;
        for field in ["serviceAccountName", "serviceAccount"] {
            match spec.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(name)) => guarded |= *name == self.service_account,
                Some(_) => {
                    guarded = true;
                    violations.push(format!("{field} is not a string"));
                }
            }
        }
        if !guarded {
            return Decision::Allowed;
        }
        for (field, label) in [
            ("containers", "container"),
            ("initContainers", "init container"),
            ("ephemeralContainers", "ephemeral container"),
        ] {
            match spec.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(containers)) => {
                    for container in containers {
                        self.check_container(container, label, &mut violations);
                    }
                }
                Some(_) => violations.push(format!("{field} is not a list")),
            }
        }
        for (field, what) in [
            ("hostNetwork", "hostNetwork is set"),
            ("hostPID", "hostPID is set"),
            ("hostIPC", "hostIPC is set"),
        ] {
            flag(spec.get(field), what, &mut violations);
        }
        flag(
            spec.get("securityContext")
                .and_then(|sc| sc.get("windowsOptions"))
                .and_then(|w| w.get("hostProcess")),
            "pod hostProcess is set",
            &mut violations,
        );
        match spec.get("volumes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(volumes)) => {
                for volume in volumes {
                    if !matches!(volume.get("hostPath"), None | Some(Value::Null)) {
                        violations.push(format!(
                            "volume \"{}\" is a hostPath",
                            text(volume.get("name"))
                        ));
                    }
                }
            }
            Some(_) => violations.push("volumes is not a list".to_owned()),
        }
        if violations.is_empty() {
            Decision::Allowed
        } else {
            self.denied(subject, violations)
        }
    }

    fn check_container(&self, container: &Value, label: &str, violations: &mut Vec<String>) {
        let Value::Object(c) = container else {
            violations.push(format!("{label} entry is not an object"));
            return;
        };
        let mut reasons: Vec<String> = Vec::new();
        match c.get("image") {
            None | Some(Value::Null) => reasons.push("no image".to_owned()),
            Some(Value::String(image)) => {
                if !self.image_allowed(image) {
                    reasons.push(format!("image \"{image}\" is not allowed"));
                }
            }
            Some(_) => reasons.push("image is not a string".to_owned()),
        }
        match c.get("command") {
            None | Some(Value::Null) => {}
            Some(Value::Array(command)) => match command.first() {
                None => {}
                Some(Value::String(first)) if !self.entrypoints.iter().any(|e| e == first) => {
                    reasons.push(format!("command \"{first}\" overrides the entrypoint"));
                }
                Some(Value::String(_)) => {}
                Some(_) => reasons.push("command is not a list of strings".to_owned()),
            },
            Some(_) => reasons.push("command is not a list".to_owned()),
        }
        let security = c.get("securityContext");
        flag(
            security.and_then(|s| s.get("privileged")),
            "privileged",
            &mut reasons,
        );
        match security
            .and_then(|s| s.get("capabilities"))
            .and_then(|caps| caps.get("add"))
        {
            None | Some(Value::Null) => {}
            Some(Value::Array(added)) => {
                let bad: Vec<String> = added
                    .iter()
                    .filter(|cap| !cap.as_str().is_some_and(capability_allowed))
                    .map(|cap| match cap {
                        Value::String(cap) => format!("\"{cap}\""),
                        other => other.to_string(),
                    })
                    .collect();
                if !bad.is_empty() {
                    reasons.push(format!("capabilities {} are not allowed", bad.join(", ")));
                }
            }
            Some(_) => reasons.push("capabilities.add is not a list".to_owned()),
        }
        flag(
            security
                .and_then(|s| s.get("windowsOptions"))
                .and_then(|w| w.get("hostProcess")),
            "hostProcess",
            &mut reasons,
        );
        if !reasons.is_empty() {
            violations.push(format!(
                "{label} \"{}\": {}",
                text(c.get("name")),
                reasons.join(", ")
            ));
        }
    }

    fn denied(&self, subject: &Subject<'_>, violations: Vec<String>) -> Decision {
        Decision::Denied {
            message: format!(
                "{} \"{}\" uses service account \"{}\", which only the pvc-backup mover may use: {}",
                subject.kind,
                subject.name,
                self.service_account,
                violations.join("; ")
            ),
            violations,
        }
    }
}

/// Whether `cap` is one of the mover's capabilities, with or without `CAP_`.
pub fn capability_allowed(cap: &str) -> bool {
    let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
    ALLOWED_CAPABILITIES.contains(&bare)
}

/// Adds `what` when a boolean setting is true; a setting of another type counts as set, since
/// the guard fails closed on what it cannot read.
fn flag(value: Option<&Value>, what: &str, out: &mut Vec<String>) {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => out.push(what.to_owned()),
        Some(_) => out.push(format!("{what} (not a boolean)")),
    }
}

fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or("")
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// RFC 1123 subdomain, as Kubernetes requires of service account names.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && alnum(b[0])
                && alnum(b[b.len() - 1])
                && b.iter().all(|&c| alnum(c) || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy::from_strings(DEFAULT_SERVICE_ACCOUNT, &["dev/backup:latest"]).unwrap()
    }

    fn decide(kind: &str, group: &str, op: &str, object: Value) -> Decision {
        policy().decide(&Subject {
            group,
            kind,
            sub_resource: None,
            operation: op,
            name: "x",
            object: &object,
        })
    }

    #[test]
    fn settings_are_checked() {
        assert!(Policy::from_strings("Bad_Name", &["a"]).is_err());
        assert!(matches!(
            Policy::from_strings::<&str>(DEFAULT_SERVICE_ACCOUNT, &[]),
            Err(Error::NoAllowedImages)
        ));
        assert!(policy().with_entrypoints(Vec::<String>::new()).is_err());
    }

    #[test]
    fn delete_and_unknown_kinds_are_not_looked_at() {
        let bad = json!({"spec": {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT,
            "containers": [{"name": "a", "image": "busybox"}]}});
        assert!(decide("Pod", "", "DELETE", bad.clone()).is_allowed());
        assert!(decide("ConfigMap", "", "CREATE", bad.clone()).is_allowed());
        assert!(!decide("Pod", "", "CREATE", bad).is_allowed());
    }

    #[test]
    fn malformed_guarded_specs_fail_closed() {
        let cases = [
            json!({"spec": "x"}),
            json!({"spec": {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT, "containers": "x"}}),
            json!({"spec": {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT, "containers": [1]}}),
            json!({"spec": {"serviceAccountName": 7, "containers": []}}),
            json!({"spec": {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT,
                "containers": [{"name": "a", "image": "dev/backup", "securityContext": {"privileged": "yes"}}]}}),
        ];
        for object in cases {
            assert!(
                !decide("Pod", "", "CREATE", object.clone()).is_allowed(),
                "{object}"
            );
        }
    }

    #[test]
    fn capabilities_accept_the_cap_prefix_only_in_upper_case() {
        assert!(capability_allowed("CHOWN"));
        assert!(capability_allowed("CAP_SETGID"));
        assert!(!capability_allowed("chown"));
        assert!(!capability_allowed("ALL"));
        assert!(!capability_allowed("SYS_ADMIN"));
    }
}
