//! The printed manifests: every object survives a trip through the k8s-openapi types (so no
//! field is misspelt), and says what the guard needs.

use admission::manifests::{
    NamespaceScope, WEBHOOK_NAME, WebhookInstall, WebhookTls, admission_policy_objects, to_yaml,
    webhook_objects,
};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::util::own_policy;

fn install(scope: NamespaceScope, tls: WebhookTls) -> WebhookInstall {
    WebhookInstall {
        namespace: "pvc-backup".to_owned(),
        image: "ghcr.io/pvc-backup/pvc-backup:0.1.0".to_owned(),
        policy: own_policy(),
        scope,
        tls,
        timeout_seconds: 5,
    }
}

/// Reads `object` as `T` and writes it back: nothing may be lost or changed.
fn round_trip<T: DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let typed: T = serde_json::from_value(object.clone()).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, object,
        "a field did not survive the k8s-openapi types"
    );
    typed
}

fn by_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn webhook_objects_are_valid_kubernetes_objects() {
    for tls in [
        WebhookTls::CertManager,
        WebhookTls::OpenShift,
        WebhookTls::CaBundle(b"PEM".to_vec()),
    ] {
        for scope in [NamespaceScope::Labelled, NamespaceScope::AllButSystem] {
            let objects = webhook_objects(&install(scope.clone(), tls.clone()));
            let deployment: Deployment = round_trip(by_kind(&objects, "Deployment"));
            let _: PodDisruptionBudget = round_trip(by_kind(&objects, "PodDisruptionBudget"));
            let _: Service = round_trip(by_kind(&objects, "Service"));
            let config: ValidatingWebhookConfiguration =
                round_trip(by_kind(&objects, "ValidatingWebhookConfiguration"));
            let spec = deployment.spec.unwrap();
            assert_eq!(spec.replicas, Some(2));
            let container = &spec.template.spec.unwrap().containers[0];
            let security = container.security_context.clone().unwrap();
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.run_as_non_root, Some(true));
            assert_eq!(
                security.capabilities.unwrap().drop,
                Some(vec!["ALL".to_owned()])
            );
            let webhook = &config.webhooks.unwrap()[0];
            assert_eq!(webhook.name, WEBHOOK_NAME);
            assert_eq!(webhook.side_effects, "None");
            assert_eq!(webhook.admission_review_versions, ["v1", "v1beta1"]);
            assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
            assert_eq!(webhook.timeout_seconds, Some(5));
            let selector =
                serde_json::to_value(webhook.namespace_selector.as_ref().unwrap()).unwrap();
            match scope {
                NamespaceScope::Labelled => {
                    assert_eq!(selector, json!({"matchLabels": {"denysabck": "enabled"}}))
                }
                NamespaceScope::AllButSystem => {
                    let excluded = &selector["matchExpressions"][0]["values"];
                    for ns in [
                        "kube-system",
                        "kube-public",
                        "kube-node-lease",
                        "pvc-backup",
                    ] {
                        assert!(
                            excluded.as_array().unwrap().contains(&json!(ns)),
                            "{selector}"
                        );
                    }
                }
            }
            let resources: Vec<String> = webhook
                .rules
                .as_ref()
                .unwrap()
                .iter()
                .flat_map(|r| r.resources.clone().unwrap())
                .collect();
            for r in [
                "pods",
                "pods/ephemeralcontainers",
                "deployments",
                "replicasets",
                "statefulsets",
                "daemonsets",
                "jobs",
                "cronjobs",
                "deploymentconfigs",
            ] {
                assert!(resources.contains(&r.to_owned()), "{r} missing");
            }
            let ca = webhook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.clone());
            assert_eq!(ca.is_some(), matches!(tls, WebhookTls::CaBundle(_)));
            if let WebhookTls::CaBundle(pem) = &tls {
                assert_eq!(ca.unwrap(), *pem);
            }
        }
    }
}

#[test]
fn webhook_args_carry_the_policy() {
    let objects = webhook_objects(&install(NamespaceScope::Labelled, WebhookTls::CertManager));
    let args =
        &by_kind(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<String> = serde_json::from_value(args.clone()).unwrap();
    for rule in own_policy().rules() {
        let i = args.iter().position(|a| *a == rule.to_string()).unwrap();
        assert_eq!(args[i - 1], "--allowed-image");
    }
    assert!(
        args.windows(2)
            .any(|w| w == ["--service-account", "pvc-backup-deployer"])
    );
}

#[test]
fn admission_policy_objects_are_valid_kubernetes_objects() {
    for scope in [NamespaceScope::Labelled, NamespaceScope::AllButSystem] {
        let objects = admission_policy_objects(&own_policy(), &scope);
        let policy: ValidatingAdmissionPolicy = round_trip(&objects[0]);
        let binding: ValidatingAdmissionPolicyBinding = round_trip(&objects[1]);
        let spec = policy.spec.unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(
            spec.validations.unwrap()[0].reason.as_deref(),
            Some("Forbidden")
        );
        let binding = binding.spec.unwrap();
        assert_eq!(binding.policy_name, policy.metadata.name);
        assert_eq!(binding.validation_actions, Some(vec!["Deny".to_owned()]));
    }
}

#[test]
fn yaml_reads_back_as_the_same_objects() {
    let mut objects = webhook_objects(&install(NamespaceScope::Labelled, WebhookTls::CertManager));
    objects.extend(admission_policy_objects(
        &own_policy(),
        &NamespaceScope::Labelled,
    ));
    let yaml = to_yaml(&objects).unwrap();
    assert_eq!(yaml.matches("---\n").count(), objects.len());
    let docs: Vec<Value> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    assert_eq!(docs, objects);
}
