//! The same policy as a ValidatingAdmissionPolicy: CEL evaluated by the API server itself, with
//! no webhook to run (Kubernetes 1.30 and later, `admissionregistration.k8s.io/v1`).
//!
//! Images are matched with one anchored regular expression per rule (see
//! [`ImageRule::regex`](crate::image::ImageRule::regex)), so the CEL needs only `matches`. The
//! expressions are written to produce the same verdict and the same message as
//! [`Policy::decide`](crate::policy::Policy::decide) for every object the API server can send.

use serde_json::{Value, json};

use crate::policy::{ALLOWED_CAPABILITIES, Policy};

/// The API groups and resources both forms of the guard watch, with the operations.
pub const RESOURCE_RULES: [(&str, &[&str]); 4] = [
    ("", &["pods", "pods/ephemeralcontainers"]),
    (
        "apps",
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
    ),
    ("batch", &["jobs", "cronjobs"]),
    ("apps.openshift.io", &["deploymentconfigs"]),
];

/// The operations both forms of the guard check.
pub const OPERATIONS: [&str; 2] = ["CREATE", "UPDATE"];

/// The reason of a denial; the API server answers it with HTTP 403.
pub const DENIAL_REASON: &str = "Forbidden";

/// The CEL of the policy: named variables (evaluated in order, each may use the ones before it
/// as `variables.NAME`), one validation expression and its message expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelPolicy {
    /// `(name, expression)` pairs, in order.
    pub variables: Vec<(String, String)>,
    /// True when the object is allowed.
    pub expression: String,
    /// The denial message, naming every violation.
    pub message_expression: String,
    /// The message used when the message expression cannot be evaluated.
    pub message: String,
}

/// Writes the CEL for `policy`.
pub fn cel(policy: &Policy) -> CelPolicy {
    let sa = quote(policy.service_account());
    let entrypoints = list(policy.entrypoints().iter().map(String::as_str));
    let caps: Vec<String> = ALLOWED_CAPABILITIES
        .iter()
        .flat_map(|c| [(*c).to_owned(), format!("CAP_{c}")])
        .collect();
    let caps = list(caps.iter().map(String::as_str));
    let image_ok = policy
        .rules()
        .iter()
        .map(|rule| format!("c.image.matches({})", quote(&rule.regex())))
        .collect::<Vec<_>>()
        .join(" || ");

    let pod_spec = "request.kind.group == '' && request.kind.kind == 'Pod' ? \
         (has(object.spec) ? object.spec : {}) : \
         request.kind.group == 'batch' && request.kind.kind == 'CronJob' ? \
         (has(object.spec) && has(object.spec.jobTemplate) && has(object.spec.jobTemplate.spec) \
         && has(object.spec.jobTemplate.spec.template) && has(object.spec.jobTemplate.spec.template.spec) \
         ? object.spec.jobTemplate.spec.template.spec : {}) : \
         (request.kind.group == 'apps' && request.kind.kind in ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet']) \
         || (request.kind.group == 'batch' && request.kind.kind == 'Job') \
         || (request.kind.group in ['apps.openshift.io', ''] && request.kind.kind == 'DeploymentConfig') ? \
         (has(object.spec) && has(object.spec.template) && has(object.spec.template.spec) \
         ? object.spec.template.spec : {}) : {}"
        .to_owned();

    let guarded = format!(
        "(has(variables.podSpec.serviceAccountName) && variables.podSpec.serviceAccountName == {sa}) \
         || (has(variables.podSpec.serviceAccount) && variables.podSpec.serviceAccount == {sa})"
    );

    let containers = |field: &str, label: &str| {
        format!(
            "(has(variables.podSpec.{field}) ? variables.podSpec.{field} : []).map(c, \
             '{label} \"' + (has(c.name) ? c.name : '') + '\": ' + [\
             has(c.image) ? (({image_ok}) ? '' : 'image \"' + c.image + '\" is not allowed') : 'no image', \
             has(c.command) && size(c.command) > 0 && !(c.command[0] in {entrypoints}) \
             ? 'command \"' + c.command[0] + '\" overrides the entrypoint' : '', \
             has(c.securityContext) && has(c.securityContext.privileged) && c.securityContext.privileged \
             ? 'privileged' : '', \
             has(c.securityContext) && has(c.securityContext.capabilities) \
             && has(c.securityContext.capabilities.add) \
             && c.securityContext.capabilities.add.exists(a, !(a in {caps})) \
             ? 'capabilities ' + c.securityContext.capabilities.add.filter(a, !(a in {caps}))\
             .map(a, '\"' + a + '\"').join(', ') + ' are not allowed' : '', \
             has(c.securityContext) && has(c.securityContext.windowsOptions) \
             && has(c.securityContext.windowsOptions.hostProcess) && c.securityContext.windowsOptions.hostProcess \
             ? 'hostProcess' : ''\
             ].filter(r, r != '').join(', ')).filter(m, !m.endsWith('\": '))"
        )
    };
    let pod_level = "[\
         has(variables.podSpec.hostNetwork) && variables.podSpec.hostNetwork ? 'hostNetwork is set' : '', \
         has(variables.podSpec.hostPID) && variables.podSpec.hostPID ? 'hostPID is set' : '', \
         has(variables.podSpec.hostIPC) && variables.podSpec.hostIPC ? 'hostIPC is set' : '', \
         has(variables.podSpec.securityContext) && has(variables.podSpec.securityContext.windowsOptions) \
         && has(variables.podSpec.securityContext.windowsOptions.hostProcess) \
         && variables.podSpec.securityContext.windowsOptions.hostProcess ? 'pod hostProcess is set' : ''\
         ].filter(r, r != '') + (has(variables.podSpec.volumes) ? variables.podSpec.volumes\
         .filter(v, has(v.hostPath)).map(v, 'volume \"' + (has(v.name) ? v.name : '') + '\" is a hostPath') : [])"
        .to_owned();
    let violations = format!(
        "{} + {} + {} + {pod_level}",
        containers("containers", "container"),
        containers("initContainers", "init container"),
        containers("ephemeralContainers", "ephemeral container"),
    );
    let message_expression = format!(
        "request.kind.kind + ' \"' + (has(object.metadata.name) ? object.metadata.name : \
         (has(object.metadata.generateName) ? object.metadata.generateName : '')) + \
         {} + variables.violations.join('; ')",
        quote(&format!(
            "\" uses service account \"{}\", which only the pvc-backup mover may use: ",
            policy.service_account()
        ))
    );
    CelPolicy {
        variables: vec![
            ("podSpec".to_owned(), pod_spec),
            ("guarded".to_owned(), guarded),
            ("violations".to_owned(), violations),
        ],
        expression: "!variables.guarded || size(variables.violations) == 0".to_owned(),
        message_expression,
        message: format!(
            "this object uses service account \"{}\", which only the pvc-backup mover may use, with an image or settings the mover does not use",
            policy.service_account()
        ),
    }
}

/// The `resourceRules` of the policy (and, in webhook form, its `rules`).
pub fn resource_rules() -> Vec<Value> {
    RESOURCE_RULES
        .iter()
        .map(|(group, resources)| {
            json!({
                "apiGroups": [group],
                "apiVersions": ["*"],
                "operations": OPERATIONS,
                "resources": resources,
                "scope": "Namespaced",
            })
        })
        .collect()
}

/// The ValidatingAdmissionPolicy object for `policy`, named `name`.
pub fn validating_admission_policy(policy: &Policy, name: &str) -> Value {
    let cel = cel(policy);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "pvc-backup", "app.kubernetes.io/component": "admission-policy"},
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": resource_rules(),
            },
            "variables": cel.variables.iter().map(|(name, expression)| json!({"name": name, "expression": expression})).collect::<Vec<_>>(),
            "validations": [{
                "expression": cel.expression,
                "messageExpression": cel.message_expression,
                "message": cel.message,
                "reason": DENIAL_REASON,
            }],
        },
    })
}

/// The binding that applies the policy `policy_name` to the namespaces `namespace_selector`
/// selects, denying what fails.
pub fn validating_admission_policy_binding(
    name: &str,
    policy_name: &str,
    namespace_selector: &Value,
) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "pvc-backup", "app.kubernetes.io/component": "admission-policy"},
        },
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": namespace_selector},
        },
    })
}

/// A CEL string literal: single-quoted, with backslashes and quotes escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list literal of strings.
fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", items.map(quote).collect::<Vec<_>>().join(", "))
}
