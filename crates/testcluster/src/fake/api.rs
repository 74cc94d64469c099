//! The HTTP side: URL layout, discovery, verbs, watch streams and pod logs, as kube::Client
//! speaks them.

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::Shared;
use super::patch;
use super::resources::Res;
use super::select::{FieldSelector, LabelSelector};
use super::store::{Actor, Change, DeleteOpts, State, Sub};
use super::util::{self, ApiError, name_of, s};

/// The router: everything goes through one handler that parses the path itself.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

fn json_resp(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_resp(e: &ApiError) -> Response {
    json_resp(e.code, &e.status())
}

fn not_found_path() -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
        details: None,
    }
}

/// A request split into its parts.
struct Target {
    res: Res,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    AxState(sh): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = parse_query(&uri);
    let port = sh.port;
    match segs.as_slice() {
        ["version"] => return json_resp(200, &version()),
        // Without RBAC everything is allowed; a SelfSubjectAccessReview says so.
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] if method == Method::POST => {
            let mut review: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return error_resp(&ApiError::bad_request(e.to_string())),
            };
            review["status"] =
                json!({"allowed": true, "reason": "the fake cluster allows everything"});
            return json_resp(201, &review);
        }
        ["healthz"] | ["readyz"] | ["livez"] => {
            return (StatusCode::OK, "ok").into_response();
        }
        ["api"] => {
            return json_resp(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}]}),
            );
        }
        ["apis"] => return json_resp(200, &group_list(&sh.hidden_groups)),
        ["api", "v1"] => return json_resp(200, &resource_list("", "v1")),
        ["apis", g] => {
            return match group_list(&sh.hidden_groups)["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["name"] == *g))
            {
                Some(gr) => {
                    let mut gr = gr.clone();
                    gr["kind"] = json!("APIGroup");
                    gr["apiVersion"] = json!("v1");
                    json_resp(200, &gr)
                }
                None => error_resp(&not_found_path()),
            };
        }
        ["apis", g, v] => {
            if Res::group_versions().contains(&(g, v)) && !sh.hidden_groups.iter().any(|h| h == g) {
                return json_resp(200, &resource_list(g, v));
            }
            return error_resp(&not_found_path());
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] if !sh.hidden_groups.iter().any(|h| h == g) => (*g, *v, rest),
        _ => return error_resp(&not_found_path()),
    };
    let target = match parse_target(group, version, rest) {
        Some(t) => t,
        None => return error_resp(&not_found_path()),
    };
    let result = dispatch(&sh, &method, target, &q, &headers, body).await;
    match result {
        Ok(r) => r,
        Err(e) => error_resp(&e),
    }
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, more @ ..]
            if Res::by_plural(group, version, plural).is_some_and(|r| r.info().namespaced) =>
        {
            (Some((*ns).to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(more);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let res = Res::by_plural(group, version, rest.first()?)?;
    if ns.is_some() && !res.info().namespaced {
        return None;
    }
    let name = rest.get(1).map(|s| (*s).to_string());
    let sub = rest.get(2).map(|s| (*s).to_string());
    if rest.len() > 3 {
        return None;
    }
    if let Some(sb) = &sub
        && !res.info().subresources.contains(&sb.as_str())
    {
        return None;
    }
    if res.info().namespaced && ns.is_none() && name.is_some() {
        return None;
    }
    Some(Target { res, ns, name, sub })
}

fn lock(sh: &Shared) -> std::sync::MutexGuard<'_, State> {
    sh.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized or could not be decoded as JSON: {e}"
        ))
    })
}

async fn dispatch(
    sh: &Arc<Shared>,
    method: &Method,
    t: Target,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let ns = t.ns.clone().unwrap_or_default();
    let res = t.res;
    match (method.as_str(), &t.name, t.sub.as_deref()) {
        ("GET", None, None) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(sh.clone(), res, t.ns.clone(), q).await;
            }
            list(sh, res, t.ns.as_deref(), q)
        }
        ("GET", Some(name), None | Some("status")) => {
            let st = lock(sh);
            let obj = st
                .get(res, &ns, name)
                .ok_or_else(|| ApiError::not_found(res, name))?;
            Ok(json_resp(200, &obj))
        }
        ("GET", Some(name), Some("scale")) => {
            let st = lock(sh);
            let obj = st
                .get(res, &ns, name)
                .ok_or_else(|| ApiError::not_found(res, name))?;
            Ok(json_resp(200, &scale_of(res, &obj)))
        }
        ("GET", Some(name), Some("log")) if res == Res::Pod => logs(sh, &ns, name, q).await,
        ("POST", None, None) => {
            if res.info().namespaced && t.ns.is_none() {
                return Err(not_found_path());
            }
            let obj = body_json(&body)?;
            let mut st = lock(sh);
            let created = st.create(res, &ns, obj, Actor::User, dry_run)?;
            Ok(json_resp(201, &created))
        }
        ("PUT", Some(name), sub @ (None | Some("status"))) => {
            let obj = body_json(&body)?;
            let mut st = lock(sh);
            let sub = if sub == Some("status") {
                Sub::Status
            } else {
                Sub::Main
            };
            let updated = st.update(res, &ns, name, obj, sub, Actor::User, dry_run)?;
            Ok(json_resp(200, &updated))
        }
        ("PUT", Some(name), Some("scale")) => {
            let obj = body_json(&body)?;
            let mut st = lock(sh);
            set_scale(&mut st, res, &ns, name, obj, dry_run)
        }
        ("PATCH", Some(name), sub) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            // kube::Client sends apply bodies as JSON (which is YAML); YAML proper is not read.
            let patch_body = body_json(&body)?;
            let mut st = lock(sh);
            patch_object(&mut st, res, &ns, name, sub, &ct, &patch_body, q, dry_run)
        }
        ("DELETE", Some(name), None) => {
            let opts = delete_opts(&body, q)?;
            let mut st = lock(sh);
            let obj = st.delete(res, &ns, name, &opts)?;
            let still = st.get(res, &ns, name).is_some();
            Ok(json_resp(
                if still && !opts.dry_run { 202 } else { 200 },
                &obj,
            ))
        }
        ("DELETE", None, None) => {
            let opts = delete_opts(&body, q)?;
            let lsel = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
            let fsel =
                FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), res)?;
            let mut st = lock(sh);
            let targets: Vec<(String, String)> = st
                .list(res, t.ns.as_deref())
                .iter()
                .filter(|o| lsel.matches(o) && fsel.matches(o))
                .map(|o| (util::ns_of(o).to_string(), name_of(o).to_string()))
                .collect();
            let mut items = Vec::new();
            for (n, name) in targets {
                items.push(st.delete(res, &n, &name, &opts)?);
            }
            Ok(json_resp(200, &list_body(res, &st, items)))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            res.qualified()
        ))),
    }
}

fn delete_opts(body: &Bytes, q: &HashMap<String, String>) -> Result<DeleteOpts, ApiError> {
    let b = body_json(body)?;
    let mut o = DeleteOpts {
        propagation: b["propagationPolicy"].as_str().map(String::from),
        uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        grace: b["gracePeriodSeconds"].as_i64(),
        dry_run: b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All")),
    };
    if b["orphanDependents"].as_bool() == Some(true) && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.clone());
    }
    if let Some(g) = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        o.grace = Some(g);
    }
    if q.get("dryRun").is_some_and(|v| v == "All") {
        o.dry_run = true;
    }
    Ok(o)
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    st: &mut State,
    res: Res,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    ct: &str,
    body: &Value,
    q: &HashMap<String, String>,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let custom = matches!(
        res,
        Res::VolumeSnapshot
            | Res::VolumeSnapshotContent
            | Res::VolumeSnapshotClass
            | Res::DeploymentConfig
    );
    if ct == "application/apply-patch+yaml" {
        if q.get("fieldManager").is_none_or(String::is_empty) {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if st.get(res, ns, name).is_none() && sub.is_none() {
            let mut obj = body.clone();
            util::set(&mut obj, &["metadata", "name"], json!(name));
            let created = st.create(res, ns, obj, Actor::User, dry_run)?;
            return Ok(json_resp(201, &created));
        }
    }
    let apply = |base: &mut Value| -> Result<(), ApiError> {
        match ct {
            "application/merge-patch+json" => {
                patch::merge(base, body);
                Ok(())
            }
            "application/json-patch+json" => patch::json(base, body),
            "application/strategic-merge-patch+json" if !custom => patch::strategic(base, body),
            // Server-side apply without field ownership: the applied fields win, as with force.
            "application/apply-patch+yaml" => {
                let mut b = body.clone();
                if let Some(m) = b.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                patch::merge(base, &b);
                Ok(())
            }
            other => Err(ApiError::unsupported_media(other)),
        }
    };
    let current = st
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(res, name))?;
    match sub {
        Some("scale") => {
            let mut scale = scale_of(res, &current);
            apply(&mut scale)?;
            set_scale(st, res, ns, name, scale, dry_run)
        }
        None | Some("status") => {
            let mut obj = (*current).clone();
            apply(&mut obj)?;
            let sub = if sub == Some("status") {
                Sub::Status
            } else {
                Sub::Main
            };
            let updated = st.update(res, ns, name, obj, sub, Actor::User, dry_run)?;
            Ok(json_resp(200, &updated))
        }
        Some(other) => Err(ApiError::method_not_allowed(format!(
            "cannot patch {other}"
        ))),
    }
}

/// The Scale object of a scalable resource (autoscaling/v1; OpenShift's DeploymentConfigs answer
/// with extensions/v1beta1 as OpenShift does).
fn scale_of(res: Res, obj: &Value) -> Value {
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status_replicas = obj
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let meta = json!({
        "name": name_of(obj),
        "namespace": util::ns_of(obj),
        "uid": util::uid_of(obj),
        "resourceVersion": s(obj, "/metadata/resourceVersion"),
        "creationTimestamp": s(obj, "/metadata/creationTimestamp"),
    });
    let sel = obj.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    if res == Res::DeploymentConfig {
        return json!({"kind": "Scale", "apiVersion": "extensions/v1beta1", "metadata": meta,
            "spec": {"replicas": replicas},
            "status": {"replicas": status_replicas, "selector": sel}});
    }
    let sel_text = match res {
        Res::ReplicationController => labels_text(&sel),
        _ => {
            let mut parts = Vec::new();
            if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
                for (k, v) in m {
                    parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
                }
            }
            parts.join(",")
        }
    };
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": replicas},
        "status": {"replicas": status_replicas, "selector": sel_text}})
}

fn labels_text(m: &Value) -> String {
    m.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn set_scale(
    st: &mut State,
    res: Res,
    ns: &str,
    name: &str,
    scale: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let cur = st
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let want_rv = s(&scale, "/metadata/resourceVersion");
    if !want_rv.is_empty() && want_rv != s(&cur, "/metadata/resourceVersion") {
        return Err(ApiError::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let Some(n) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return Err(ApiError::bad_request("Scale.spec.replicas is required"));
    };
    if n < 0 {
        return Err(ApiError::invalid(
            res,
            name,
            vec![util::FieldError::new(
                util::FieldErrorKind::Invalid,
                "spec.replicas",
                Some(json!(n)),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut obj = (*cur).clone();
    obj["spec"]["replicas"] = json!(n);
    let updated = st.update(res, ns, name, obj, Sub::Main, Actor::User, dry_run)?;
    Ok(json_resp(200, &scale_of(res, &updated)))
}

fn list_body(res: Res, st: &State, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", res.info().kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    })
}

fn list(
    sh: &Shared,
    res: Res,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let lsel = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fsel = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), res)?;
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let after = q.get("continue").cloned().unwrap_or_default();
    let st = lock(sh);
    let mut items: Vec<Value> = st
        .list(res, ns)
        .iter()
        .filter(|o| lsel.matches(o) && fsel.matches(o))
        .filter(|o| after.is_empty() || key_of(o) > after)
        .map(|o| (**o).clone())
        .collect();
    let mut body = list_body(res, &st, Vec::new());
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        let last = key_of(items.last().expect("non-empty"));
        body["metadata"]["continue"] = json!(last);
        body["metadata"]["remainingItemCount"] = json!(0);
    }
    body["items"] = json!(items);
    Ok(json_resp(200, &body))
}

fn key_of(o: &Value) -> String {
    format!("{}\u{1}{}", util::ns_of(o), name_of(o))
}

/// Watch: replays from the given resourceVersion (or lists as ADDED), then streams changes.
async fn watch(
    sh: Arc<Shared>,
    res: Res,
    ns: Option<String>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let lsel = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fsel = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), res)?;
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let matches = move |o: &Value| lsel.matches(o) && fsel.matches(o);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let mut initial: Vec<Value> = Vec::new();
    let subscribed;
    {
        let mut st = lock(&sh);
        let since = if rv_param.is_empty() || rv_param == "0" || send_initial {
            for o in st.list(res, ns.as_deref()) {
                if matches(&o) {
                    initial.push(json!({"type": "ADDED", "object": *o}));
                }
            }
            st.rv
        } else {
            match rv_param.parse::<u64>() {
                Ok(v) => v,
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersion: Invalid value: {rv_param:?}: must be a number"
                    )));
                }
            }
        };
        if send_initial {
            initial.push(bookmark(res, st.rv, true));
        }
        subscribed = st.subscribe(res, ns.as_deref(), since);
    }
    let (replay, mut rx) = match subscribed {
        Ok(x) => x,
        Err(e) => {
            let line = json!({"type": "ERROR", "object": e.status()}).to_string() + "\n";
            let _ = out_tx.try_send(Bytes::from(line));
            drop(out_tx);
            return Ok(stream_resp(out_rx, "application/json"));
        }
    };
    let sh2 = sh.clone();
    tokio::spawn(async move {
        let mut last_rv = 0u64;
        for ev in initial {
            if out_tx
                .send(Bytes::from(ev.to_string() + "\n"))
                .await
                .is_err()
            {
                return;
            }
        }
        let send_change = |c: &Change| -> Option<Bytes> {
            let now_m = matches(&c.obj);
            let was_m = c.old.as_deref().is_some_and(&matches);
            let typ = match c.typ {
                "DELETED" if was_m || now_m => "DELETED",
                "ADDED" if now_m => "ADDED",
                "MODIFIED" => match (was_m, now_m) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    _ => return None,
                },
                _ => return None,
            };
            Some(Bytes::from(
                json!({"type": typ, "object": *c.obj}).to_string() + "\n",
            ))
        };
        for c in replay {
            last_rv = c.rv;
            if let Some(b) = send_change(&c)
                && out_tx.send(b).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                c = rx.recv() => {
                    let Some(c) = c else { return };
                    last_rv = last_rv.max(c.rv);
                    if let Some(b) = send_change(&c) && out_tx.send(b).await.is_err() {
                        return;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    let cur = lock(&sh2).rv;
                    // Events committed before `cur` are already queued: send them first.
                    while let Ok(c) = rx.try_recv() {
                        last_rv = last_rv.max(c.rv);
                        if let Some(b) = send_change(&c) && out_tx.send(b).await.is_err() {
                            return;
                        }
                    }
                    let rv = cur.max(last_rv);
                    if out_tx.send(Bytes::from(bookmark(res, rv, false).to_string() + "\n")).await.is_err() {
                        return;
                    }
                }
                _ = out_tx.closed() => return,
            }
        }
    });
    Ok(stream_resp(out_rx, "application/json"))
}

fn bookmark(res: Res, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"type": "BOOKMARK", "object": {"kind": res.info().kind, "apiVersion": res.api_version(), "metadata": meta}})
}

fn stream_resp(rx: mpsc::Receiver<Bytes>, ct: &'static str) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, ct)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// pods/log: the container's output; with follow=true, streamed until the container ends.
async fn logs(
    sh: &Arc<Shared>,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let follow = q.get("follow").is_some_and(|v| v == "true" || v == "1");
    let previous = q.get("previous").is_some_and(|v| v == "true" || v == "1");
    let tail: Option<usize> = q.get("tailLines").and_then(|t| t.parse().ok());
    let limit: Option<usize> = q.get("limitBytes").and_then(|t| t.parse().ok());
    let (uid, container, initial, done) = {
        let st = lock(sh);
        let pod = st
            .get(Res::Pod, ns, name)
            .ok_or_else(|| ApiError::not_found(Res::Pod, name))?;
        let names: Vec<String> = ["initContainers", "containers"]
            .iter()
            .flat_map(|l| pod["spec"][l].as_array().cloned().unwrap_or_default())
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        let main: Vec<&String> = names
            .iter()
            .skip(pod["spec"]["initContainers"].as_array().map_or(0, Vec::len))
            .collect();
        let container = match q.get("container") {
            Some(c) if names.contains(c) => c.clone(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None if main.len() == 1 => main[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )));
            }
        };
        let uid = util::uid_of(&pod).to_string();
        match st.logs.get(&(uid.clone(), container.clone())) {
            None => {
                let reason = super::kubelet::waiting_reason(&pod, &container)
                    .unwrap_or_else(|| "ContainerCreating".into());
                let text = if reason.contains("ImagePull") || reason == "ErrImagePull" {
                    "trying and failing to pull image".to_string()
                } else {
                    reason
                };
                return Err(ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {text}"
                )));
            }
            Some(buf) if previous => match &buf.previous {
                Some(p) => (uid, container, p.clone(), true),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    )));
                }
            },
            Some(buf) => (uid, container, buf.data.clone(), buf.done),
        }
    };
    let mut start = 0;
    if let Some(n) = tail {
        let mut lines = 0;
        let end = if initial.ends_with(b"\n") {
            initial.len() - 1
        } else {
            initial.len()
        };
        start = end;
        while start > 0 && lines < n {
            start -= 1;
            if initial[start] == b'\n' {
                lines += 1;
                if lines == n {
                    start += 1;
                    break;
                }
            }
        }
        if lines < n {
            start = 0;
        }
        if n == 0 {
            start = initial.len();
        }
    }
    let mut first = initial[start..].to_vec();
    if let Some(l) = limit {
        first.truncate(l);
    }
    if !follow || done || previous {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response());
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let sh = sh.clone();
    let mut pos = initial.len();
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            let (chunk, done) = {
                let st = lock(&sh);
                match st.logs.get(&(uid.clone(), container.clone())) {
                    None => (Vec::new(), true),
                    Some(b) => {
                        // A restarted container starts a new log.
                        if b.data.len() < pos {
                            pos = 0;
                        }
                        (b.data[pos..].to_vec(), b.done)
                    }
                }
            };
            pos += chunk.len();
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if done {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_resp(rx, "text/plain"))
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn group_list(hidden: &[String]) -> Value {
    let groups: Vec<Value> = Res::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty() && !hidden.iter().any(|h| h == g))
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut out = Vec::new();
    for r in Res::ALL {
        let i = r.info();
        if i.group != group || i.version != version {
            continue;
        }
        out.push(json!({
            "name": i.plural, "singularName": i.singular, "namespaced": i.namespaced,
            "kind": i.kind, "shortNames": i.short,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        for sub in i.subresources {
            let mut e = json!({"name": format!("{}/{sub}", i.plural), "singularName": "",
                "namespaced": i.namespaced, "kind": i.kind, "verbs": ["get", "patch", "update"]});
            match *sub {
                "scale" if r == Res::DeploymentConfig => {
                    e["group"] = json!("extensions");
                    e["version"] = json!("v1beta1");
                    e["kind"] = json!("Scale");
                }
                "scale" => {
                    e["group"] = json!("autoscaling");
                    e["version"] = json!("v1");
                    e["kind"] = json!("Scale");
                }
                "log" => {
                    e["verbs"] = json!(["get"]);
                    if r == Res::DeploymentConfig {
                        e["kind"] = json!("DeploymentLog");
                    }
                }
                "binding" | "eviction" | "instantiate" => {
                    e["verbs"] = json!(["create"]);
                    e["kind"] = json!(match *sub {
                        "binding" => "Binding",
                        "eviction" => "Eviction",
                        _ => "DeploymentRequest",
                    });
                    if *sub == "eviction" {
                        e["group"] = json!("policy");
                        e["version"] = json!("v1");
                    }
                }
                "finalize" => e["verbs"] = json!(["update"]),
                _ => {}
            }
            out.push(e);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}
