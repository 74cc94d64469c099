//! core/v1 Events as the controllers record them: one object per (object, reason, message),
//! its count raised when it happens again.

use serde_json::{Value, json};

use super::resources::Res;
use super::store::{Actor, State};
use super::util::{self, name_of, now, now_secs, parse_time, s};

/// An event of `typ` (Normal or Warning) about `obj`, from `component`.
pub fn record(
    st: &mut State,
    res: Res,
    obj: &Value,
    typ: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = match util::ns_of(obj) {
        "" => "default".to_string(),
        n => n.to_string(),
    };
    let uid = util::uid_of(obj).to_string();
    let existing = st.list(Res::Event, Some(&ns)).into_iter().find(|e| {
        s(e, "/involvedObject/uid") == uid
            && s(e, "/reason") == reason
            && s(e, "/message") == message
    });
    if let Some(e) = existing {
        // Repeats within a few seconds are folded in without a write, so that a controller pass
        // that finds the same trouble again does not churn resourceVersions.
        let last = parse_time(s(&e, "/lastTimestamp")).unwrap_or(0);
        if now_secs() - last < 5 {
            return;
        }
        let name = name_of(&e).to_string();
        st.modify(Res::Event, &ns, &name, |e| {
            let c = e["count"].as_i64().unwrap_or(1);
            e["count"] = json!(c + 1);
            e["lastTimestamp"] = json!(now());
        });
        return;
    }
    let t = now();
    let ev = json!({
        "metadata": {"name": format!("{}.{:016x}", name_of(obj), st.random())},
        "involvedObject": {
            "kind": res.info().kind,
            "apiVersion": res.api_version(),
            "namespace": util::ns_of(obj),
            "name": name_of(obj),
            "uid": uid,
            "resourceVersion": s(obj, "/metadata/resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": typ,
        "count": 1,
        "firstTimestamp": t,
        "lastTimestamp": t,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
    });
    // An event about an object in a namespace that is going away is dropped, as on a real cluster.
    let _ = st.create(Res::Event, &ns, ev, Actor::Controller, false);
}
