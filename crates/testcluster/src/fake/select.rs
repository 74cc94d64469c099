//! Label and field selectors, parsed as the API server parses them.

use serde_json::Value;

use super::resources::Res;
use super::util::{ApiError, labels};

/// One requirement of a label selector.
#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(format!("unable to parse requirement: {why} in {text:?}"))
        };
        let mut reqs = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            // Split off one requirement: up to a comma that is not inside parentheses.
            let mut depth = 0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let part = rest[..end].trim();
            rest = rest[end..].trim_start_matches(',').trim();
            if part.is_empty() {
                return Err(bad("empty requirement"));
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(check_key(k.trim()).map_err(|e| bad(&e))?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(check_key(k.trim()).map_err(|e| bad(&e))?, v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(check_key(k.trim()).map_err(|e| bad(&e))?, v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(check_key(k.trim()).map_err(|e| bad(&e))?, v.trim().into())
            } else if let Some((k, set)) = split_set(part, " notin ") {
                Req::NotIn(
                    check_key(k).map_err(|e| bad(&e))?,
                    set.map_err(|e| bad(&e))?,
                )
            } else if let Some((k, set)) = split_set(part, " in ") {
                Req::In(
                    check_key(k).map_err(|e| bad(&e))?,
                    set.map_err(|e| bad(&e))?,
                )
            } else {
                Req::Exists(check_key(part).map_err(|e| bad(&e))?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds the selector of a `metav1.LabelSelector` object (matchLabels + matchExpressions).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Req::Eq(k.clone(), v.as_str().unwrap_or("").into()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or("").to_string();
                let vals: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(match e["operator"].as_str().unwrap_or("") {
                    "In" => Req::In(key, vals),
                    "NotIn" => Req::NotIn(key, vals),
                    "Exists" => Req::Exists(key),
                    _ => Req::NotExists(key),
                });
            }
        }
        LabelSelector(reqs)
    }

    /// Whether the selector has no requirement (a `{}` selector matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(&labels(obj))
    }

    /// Whether these labels satisfy every requirement.
    pub fn matches_labels(&self, labels: &[(String, String)]) -> bool {
        let get = |k: &str| labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v),
            Req::Ne(k, v) => get(k) != Some(v),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

fn split_set<'a>(part: &'a str, op: &str) -> Option<(&'a str, Result<Vec<String>, String>)> {
    let (k, set) = part.split_once(op)?;
    let set = set.trim();
    let inner = match set.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        Some(i) => i,
        None => {
            return Some((
                k.trim(),
                Err(format!("expected a parenthesised set after {op:?}")),
            ));
        }
    };
    Some((
        k.trim(),
        Ok(inner
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()),
    ))
}

fn check_key(k: &str) -> Result<String, String> {
    let name = k.rsplit('/').next().unwrap_or("");
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && k.matches('/').count() <= 1;
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?}"))
    }
}

/// A parsed field selector: `field=value` / `field!=value` terms.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses and checks that each field is one the API server supports for `res`.
    pub fn parse(text: &str, res: Res) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, neg, val) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported(res, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_string(), neg, val.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the object matches every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, neg, val)| {
            let ptr = format!("/{}", field.replace('.', "/"));
            let actual = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            (actual == *val) != *neg
        })
    }
}

fn supported(res: Res, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    let extra: &[&str] = match res {
        Res::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Res::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Res::Node => &["spec.unschedulable"],
        Res::Namespace => &["status.phase"],
        Res::Secret => &["type"],
        Res::Job => &["status.successful"],
        Res::ReplicaSet | Res::ReplicationController => &["status.replicas"],
        _ => &[],
    };
    extra.contains(&field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_follow_the_api_grammar() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "db"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, api)"));
        assert!(!m("tier notin (db)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m(""));
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a/b/c=x").is_err());
    }

    #[test]
    fn field_selectors_reject_unsupported_fields() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", Res::Pod).unwrap();
        assert!(f.matches(&pod));
        let err = FieldSelector::parse("spec.foo=x", Res::Pod).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(FieldSelector::parse("spec.nodeName=x", Res::Pvc).is_err());
    }
}
