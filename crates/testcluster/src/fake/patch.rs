//! The patch flavours `kube::api::Patch` sends.
//!
//! Strategic merge patch is a subset: lists under the field names below merge element by element
//! on their merge key, as the built-in types declare; every other list is replaced whole. The
//! directives `$patch: delete` and `$patch: replace` (in a map or a list element) and
//! `$deleteFromPrimitiveList/FIELD` work; `$setElementOrder/...` and `$retainKeys` are accepted and
//! ignored (order stays that of the live object).

use serde_json::{Map, Value};

use super::util::ApiError;

/// List fields merged by key in a strategic merge patch, with the key.
const MERGE_KEYS: &[(&str, &str)] = &[
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("volumeDevices", "devicePath"),
    ("env", "name"),
    ("ports", "containerPort"),
    ("imagePullSecrets", "name"),
    ("ownerReferences", "uid"),
    ("conditions", "type"),
    ("taints", "key"),
    ("hostAliases", "ip"),
    ("topologySpreadConstraints", "topologyKey"),
    ("containerStatuses", "name"),
    ("initContainerStatuses", "name"),
];

/// List fields of strings merged as sets.
const MERGE_SETS: &[&str] = &["finalizers"];

/// Applies an RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch; a failed operation is an error the client caused.
pub fn json(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &p).map_err(|e| {
        ApiError::new_unprocessable(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })
}

impl ApiError {
    /// 422 for a JSON patch whose test or path fails (what the API server answers).
    pub fn new_unprocessable(message: String) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: None,
        }
    }
}

/// Applies a strategic merge patch (see the module docs for what is covered).
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    strategic_map(target, patch, "")
}

fn strategic_map(target: &mut Value, patch: &Value, _field: &str) -> Result<(), ApiError> {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match pmap.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = pmap.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other} in strategic merge patch"
            )));
        }
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tmap = target.as_object_mut().expect("object");
    for (k, pv) in pmap {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (tmap.get_mut(field), pv.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            tmap.remove(k);
            continue;
        }
        let merge_key = MERGE_KEYS.iter().find(|(f, _)| f == k).map(|(_, key)| *key);
        match (pv, merge_key) {
            (Value::Array(items), Some(key)) => {
                let cur = tmap.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(cur, items, key)?;
            }
            (Value::Array(items), None) if MERGE_SETS.contains(&k.as_str()) => {
                let cur = tmap.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                if let Value::Array(c) = cur {
                    for it in items {
                        if !c.contains(it) {
                            c.push(it.clone());
                        }
                    }
                } else {
                    *cur = pv.clone();
                }
            }
            (Value::Object(_), _) => {
                let cur = tmap.entry(k.clone()).or_insert(Value::Null);
                strategic_map(cur, pv, k)?;
                if cur.is_null() {
                    tmap.remove(k);
                }
            }
            _ => {
                tmap.insert(k.clone(), pv.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(cur: &mut Value, items: &[Value], key: &str) -> Result<(), ApiError> {
    // A list holding {"$patch": "replace"} replaces the live list with the other items.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *cur = Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        );
        return Ok(());
    }
    if !cur.is_array() {
        *cur = Value::Array(Vec::new());
    }
    let list = cur.as_array_mut().expect("array");
    for item in items {
        let Some(kv) = item.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = list.iter().position(|x| x.get(key) == Some(kv));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(p), true) => {
                list.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => strategic_map(&mut list[p], item, key)?,
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                strategic_map(&mut fresh, item, key)?;
                list.push(fresh);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_replaces_other_lists() {
        let mut pod = json!({"spec": {
            "containers": [{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "y"}],
            "volumes": [{"name": "v1", "emptyDir": {}}],
            "tolerations": [{"key": "k"}],
        }, "metadata": {"finalizers": ["f1"]}});
        strategic(
            &mut pod,
            &json!({"spec": {
                "containers": [{"name": "a", "image": "z", "args": ["3"]}, {"name": "b", "$patch": "delete"}],
                "volumes": [{"name": "v2", "persistentVolumeClaim": {"claimName": "c"}}],
                "tolerations": [{"key": "t"}],
            }, "metadata": {"finalizers": ["f2"]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "a", "image": "z", "args": ["3"]}])
        );
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "t"}]));
        assert_eq!(pod["metadata"]["finalizers"], json!(["f1", "f2"]));
    }

    #[test]
    fn strategic_null_deletes_and_replace_directive_replaces() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": 3});
        strategic(
            &mut v,
            &json!({"a": {"$patch": "replace", "x": 1}, "d": null}),
        )
        .unwrap();
        assert_eq!(v, json!({"a": {"x": 1}}));
    }
}
