//! Object builders: pure functions from a request to the Kubernetes objects that carry it out.

pub mod claim;
pub mod mover;
pub mod repository;
pub mod snapshot;
pub mod volume;
pub mod wire;

use serde_json::Value;

use crate::{Error, Result};

/// Serialises an object (a k8s-openapi type, which carries its apiVersion and kind) as JSON.
pub fn to_value<T: serde::Serialize>(object: &T) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| Error::Serialise {
        what: "object".to_owned(),
        message: e.to_string(),
    })
}

/// Objects as multi-document YAML, in order, as `kubectl apply -f` reads them.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(object).map_err(|e| Error::Serialise {
                what: "YAML".to_owned(),
                message: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// Objects as one JSON document: a `v1` `List`, as `kubectl get -o json` prints several.
pub fn to_json(objects: &[Value]) -> Result<String> {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    serde_json::to_string_pretty(&list).map_err(|e| Error::Serialise {
        what: "JSON".to_owned(),
        message: e.to_string(),
    })
}
