//! The ValidatingAdmissionPolicy's CEL, evaluated by a CEL interpreter with Kubernetes' CEL
//! libraries, against the same cases as the webhook: same verdicts, same messages.

use std::collections::HashMap;

use admission::Policy;
use admission::manifests::{NamespaceScope, admission_policy_objects};
use admission::review::review;
use kube_cel::KubeCelExt;
use kube_cel::cel::{Context, Program, Value as CelValue};
use serde_json::Value;

use crate::util::all_cases;

/// What the API server would answer, evaluating `vap` for one AdmissionReview request.
pub struct VapVerdict {
    /// Allowed.
    pub allowed: bool,
    /// The denial message.
    pub message: Option<String>,
}

/// Removes nulls: the API server hands CEL objects converted from typed Go structs, where an
/// unset field is absent, never null.
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

fn contains(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
}

/// Evaluates the policy `vap` (a ValidatingAdmissionPolicy object) as the API server does:
/// `matchConstraints` first, then the variables in order (a variable whose evaluation fails is
/// left unbound, so only an expression that uses it fails, as with the server's lazy
/// variables), then each validation; an error counts as a failure since `failurePolicy` is
/// `Fail`.
pub fn evaluate(vap: &Value, admission_review: &Value) -> VapVerdict {
    let request = &admission_review["request"];
    let spec = &vap["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    let operation = request["operation"].as_str().unwrap();
    let group = request["resource"]["group"].as_str().unwrap();
    let mut resource = request["resource"]["resource"].as_str().unwrap().to_owned();
    if let Some(sub) = request["subResource"].as_str().filter(|s| !s.is_empty()) {
        resource = format!("{resource}/{sub}");
    }
    let matched = spec["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|rule| {
            contains(&rule["operations"], operation)
                && contains(&rule["apiGroups"], group)
                && contains(&rule["resources"], &resource)
        });
    if !matched {
        return VapVerdict {
            allowed: true,
            message: None,
        };
    }
    let mut base = Context::default().with_all();
    let object = strip_nulls(&request["object"]);
    let mut request_var = strip_nulls(request);
    request_var.as_object_mut().unwrap().remove("object");
    request_var.as_object_mut().unwrap().remove("oldObject");
    base.add_variable("object", &object).unwrap();
    base.add_variable("oldObject", strip_nulls(&request["oldObject"]))
        .unwrap();
    base.add_variable("request", &request_var).unwrap();

    let mut variables: HashMap<String, CelValue> = HashMap::new();
    for variable in spec["variables"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let program = Program::compile(variable["expression"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("variable {name} does not compile: {e}"));
        let mut ctx = base.new_inner_scope();
        ctx.add_variable_from_value("variables", CelValue::from(variables.clone()));
        if let Ok(value) = program.execute(&ctx) {
            variables.insert(name.to_owned(), value);
        }
    }
    let mut ctx = base.new_inner_scope();
    ctx.add_variable_from_value("variables", CelValue::from(variables));
    for validation in spec["validations"].as_array().unwrap() {
        let program = Program::compile(validation["expression"].as_str().unwrap())
            .expect("validation compiles");
        match program.execute(&ctx) {
            Ok(CelValue::Bool(true)) => continue,
            Ok(CelValue::Bool(false)) => {}
            other => {
                return VapVerdict {
                    allowed: false,
                    message: Some(format!("expression failed: {other:?}")),
                };
            }
        }
        assert_eq!(validation["reason"], "Forbidden");
        let message = match validation["messageExpression"].as_str() {
            Some(expression) => {
                let program = Program::compile(expression).expect("messageExpression compiles");
                match program.execute(&ctx) {
                    Ok(CelValue::String(s)) => s.to_string(),
                    other => panic!("messageExpression did not give a string: {other:?}"),
                }
            }
            None => validation["message"].as_str().unwrap().to_owned(),
        };
        return VapVerdict {
            allowed: false,
            message: Some(message),
        };
    }
    VapVerdict {
        allowed: true,
        message: None,
    }
}

/// The policy object the binary prints for `policy`.
pub fn printed_policy(policy: &Policy) -> Value {
    admission_policy_objects(policy, &NamespaceScope::Labelled).remove(0)
}

#[test]
fn cel_and_webhook_agree_on_every_case() {
    let cases = all_cases();
    assert!(cases.len() > 40);
    for case in cases {
        let policy = case.policy();
        let vap = printed_policy(&policy);
        let cel = evaluate(&vap, &case.review);
        let webhook = review(&policy, &serde_json::to_vec(&case.review).unwrap()).unwrap();
        assert_eq!(
            cel.allowed, case.allowed,
            "CEL verdict of {}: {:?}",
            case.name, cel.message
        );
        assert_eq!(
            webhook.allowed, case.allowed,
            "webhook verdict of {}",
            case.name
        );
        assert_eq!(cel.message, webhook.message, "messages of {}", case.name);
    }
}

#[test]
fn image_expressions_agree_with_the_parser() {
    // Spellings around each kind of rule, valid and not.
    let d = crate::util::digest('a');
    let policy = crate::util::own_policy();
    let vap = printed_policy(&policy);
    let images = [
        "dev/backup".to_owned(),
        "dev/backup:latest".to_owned(),
        "docker.io/dev/backup".to_owned(),
        "index.docker.io/dev/backup:latest".to_owned(),
        "dev/backup:latest@".to_owned() + &d,
        "dev/backup@".to_owned() + &d,
        "dev/backup/x".to_owned(),
        "dev/backupx".to_owned(),
        "dev//backup".to_owned(),
        "quay.io/pvc-backup/x".to_owned(),
        "quay.io/pvc-backup/x.y_z__w---v:T.1-2@".to_owned() + &d,
        "quay.io/pvc-backup/X".to_owned(),
        "quay.io/pvc-backup/x:".to_owned(),
        "quay.io/pvc-backup/x:.a".to_owned(),
        "QUAY.io/pvc-backup/x".to_owned(),
        format!("registry.example.com:5000/mover@{d}"),
        format!("registry.example.com:5000/mover@sha256:{}", "A".repeat(64)),
        format!("registry.example.com:5000/mover@sha256:{}", "a".repeat(31)),
        format!(
            "registry.example.com:5000/mover@sha256+b64:{}",
            "a".repeat(64)
        ),
        "registry.example.com:5000/mover".to_owned(),
        "ghcr.io/pvc-backup/pvc-backup".to_owned(),
        "ghcr.io/pvc-backup/pvc-backup:".to_owned() + &"v".repeat(128),
        "ghcr.io/pvc-backup/pvc-backup:".to_owned() + &"v".repeat(129),
        "ghcr.io/pvc-backup/pvc-backup\n".to_owned(),
        "ghcr.io/pvc-backup/pvc-backup:1\u{212a}".to_owned(),
    ];
    for image in images {
        let object = crate::util::pod(serde_json::json!([{"name": "m", "image": image}]));
        let r = crate::util::review("v1", "", "Pod", "pods", "CREATE", object);
        let cel = evaluate(&vap, &r);
        assert_eq!(cel.allowed, policy.image_allowed(&image), "{image:?}");
    }
}
