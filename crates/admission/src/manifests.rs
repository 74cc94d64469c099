//! Install manifests of the guard: the webhook (Deployment, PodDisruptionBudget, Service,
//! ValidatingWebhookConfiguration and its TLS plumbing) and the ValidatingAdmissionPolicy form.
//!
//! Objects are built as JSON values; the tests read every one back through the k8s-openapi
//! types and require nothing to be lost, so a misspelt field cannot pass.

use serde_json::{Value, json};

use crate::policy::Policy;
use crate::vap::{self, resource_rules};
use crate::{Error, Result};

/// The webhook's name, kept from the original BackupEr so existing exemptions keep working.
pub const WEBHOOK_NAME: &str = "denysabck.admission.online.openshift.io";

/// The namespace label that opts a namespace in, kept from the original BackupEr.
pub const NAMESPACE_LABEL: (&str, &str) = ("denysabck", "enabled");

/// Namespaces never guarded when guarding all namespaces: the cluster's own.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The name shared by the webhook's Deployment, Service, PodDisruptionBudget and certificate.
pub const WEBHOOK_APP: &str = "pvc-backup-webhook";

/// The name of the ValidatingAdmissionPolicy and its binding.
pub const POLICY_NAME: &str = "pvc-backup-deployer-guard";

/// The port the webhook container listens on.
pub const WEBHOOK_PORT: i32 = 8443;

/// Which namespaces the guard applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// Namespaces labelled `denysabck=enabled` (the default, as in the original).
    Labelled,
    /// Every namespace except the system ones and the webhook's own.
    AllButSystem,
}

/// Where the webhook's serving certificate comes from, and how the API server learns its CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTls {
    /// cert-manager issues it (a self-signed Issuer and a Certificate are included) and injects
    /// the CA into the webhook configuration.
    CertManager,
    /// OpenShift's service CA issues it and injects the CA.
    OpenShift,
    /// The secret `pvc-backup-webhook-tls` is made by hand; this PEM CA bundle signs it.
    CaBundle(Vec<u8>),
}

/// Everything the webhook manifests depend on.
#[derive(Debug, Clone)]
pub struct WebhookInstall {
    /// The namespace the webhook runs in.
    pub namespace: String,
    /// The pvc-backup image the webhook runs.
    pub image: String,
    /// The policy it enforces.
    pub policy: Policy,
    /// The namespaces it guards.
    pub scope: NamespaceScope,
    /// Its certificate.
    pub tls: WebhookTls,
    /// Seconds the API server waits for an answer.
    pub timeout_seconds: i32,
}

fn labels(component: &str) -> Value {
    json!({"app.kubernetes.io/name": "pvc-backup", "app.kubernetes.io/component": component})
}

/// The namespace selector for a scope; `own_namespace` is excluded when guarding everything, so
/// the webhook never blocks its own pods.
pub fn namespace_selector(scope: &NamespaceScope, own_namespace: Option<&str>) -> Value {
    match scope {
        NamespaceScope::Labelled => json!({"matchLabels": {NAMESPACE_LABEL.0: NAMESPACE_LABEL.1}}),
        NamespaceScope::AllButSystem => {
            let mut excluded: Vec<&str> = SYSTEM_NAMESPACES.to_vec();
            if let Some(own) = own_namespace
                && !excluded.contains(&own)
            {
                excluded.push(own);
            }
            json!({"matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": excluded,
            }]})
        }
    }
}

/// The command line the webhook container runs with (after the image's entrypoint).
pub fn webhook_args(policy: &Policy) -> Vec<String> {
    let mut args = vec![
        "webhook".to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{WEBHOOK_PORT}"),
        "--tls-cert".to_owned(),
        "/tls/tls.crt".to_owned(),
        "--tls-key".to_owned(),
        "/tls/tls.key".to_owned(),
        "--service-account".to_owned(),
        policy.service_account().to_owned(),
    ];
    for rule in policy.rules() {
        args.push("--allowed-image".to_owned());
        args.push(rule.to_string());
    }
    for entrypoint in policy.entrypoints() {
        args.push("--mover-entrypoint".to_owned());
        args.push(entrypoint.clone());
    }
    args
}

/// The webhook's objects, in the order to apply them.
pub fn webhook_objects(install: &WebhookInstall) -> Vec<Value> {
    let ns = install.namespace.as_str();
    let secret = format!("{WEBHOOK_APP}-tls");
    let selector =
        json!({"app.kubernetes.io/name": "pvc-backup", "app.kubernetes.io/component": "webhook"});
    let mut objects = Vec::new();
    if install.tls == WebhookTls::CertManager {
        objects.push(json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": {"name": format!("{WEBHOOK_APP}-selfsigned"), "namespace": ns, "labels": labels("webhook")},
            "spec": {"selfSigned": {}},
        }));
        objects.push(json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": WEBHOOK_APP, "namespace": ns, "labels": labels("webhook")},
            "spec": {
                "secretName": secret,
                "dnsNames": [format!("{WEBHOOK_APP}.{ns}.svc"), format!("{WEBHOOK_APP}.{ns}.svc.cluster.local")],
                "issuerRef": {"kind": "Issuer", "name": format!("{WEBHOOK_APP}-selfsigned")},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "duration": "2160h",
                "renewBefore": "720h",
            },
        }));
    }
    let hardened = json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "privileged": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let probe = |path: &str| {
        json!({
            "httpGet": {"path": path, "port": "https", "scheme": "HTTPS"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    objects.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WEBHOOK_APP, "namespace": ns, "labels": labels("webhook")},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": selector},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "containers": [{
                        "name": "webhook",
                        "image": install.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": webhook_args(&install.policy),
                        "ports": [{"name": "https", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "32Mi"},
                            "limits": {"memory": "128Mi"},
                        },
                        "securityContext": hardened,
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}],
                    }],
                    "volumes": [{"name": "tls", "secret": {"secretName": secret}}],
                },
            },
        },
    }));
    objects.push(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": WEBHOOK_APP, "namespace": ns, "labels": labels("webhook")},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}},
    }));
    let mut service_metadata =
        json!({"name": WEBHOOK_APP, "namespace": ns, "labels": labels("webhook")});
    if install.tls == WebhookTls::OpenShift {
        service_metadata["annotations"] =
            json!({"service.beta.openshift.io/serving-cert-secret-name": secret});
    }
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": service_metadata,
        "spec": {
            "selector": selector,
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }));
    let mut client_config = json!({
        "service": {"name": WEBHOOK_APP, "namespace": ns, "path": "/validate", "port": 443},
    });
    let mut annotations = json!({});
    match &install.tls {
        WebhookTls::CertManager => {
            annotations["cert-manager.io/inject-ca-from"] = json!(format!("{ns}/{WEBHOOK_APP}"));
        }
        WebhookTls::OpenShift => {
            annotations["service.beta.openshift.io/inject-cabundle"] = json!("true");
        }
        WebhookTls::CaBundle(pem) => {
            client_config["caBundle"] = json!(base64(pem));
        }
    }
    let mut config_metadata =
        json!({"name": "pvc-backup-deployer-guard", "labels": labels("webhook")});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        config_metadata["annotations"] = annotations;
    }
    objects.push(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": config_metadata,
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": client_config,
            "rules": resource_rules(),
            "matchPolicy": "Equivalent",
            "namespaceSelector": namespace_selector(&install.scope, Some(ns)),
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": install.timeout_seconds,
        }],
    }));
    objects
}

/// The ValidatingAdmissionPolicy and its binding.
pub fn admission_policy_objects(policy: &Policy, scope: &NamespaceScope) -> Vec<Value> {
    vec![
        vap::validating_admission_policy(policy, POLICY_NAME),
        vap::validating_admission_policy_binding(
            POLICY_NAME,
            POLICY_NAME,
            &namespace_selector(scope, None),
        ),
    ]
}

/// Writes objects as one YAML stream, each a document of its own.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        let doc = serde_saphyr::to_string(object).map_err(|e| Error::Yaml(e.to_string()))?;
        out.push_str(&doc);
        if !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Standard base64 with padding, as Kubernetes stores bytes in JSON.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
