//! The garbage collector (ownerReferences; Background, Foreground and Orphan), the namespace
//! controller (a deleted namespace empties, then goes) and the service account controller (each
//! namespace gets `default`).

use serde_json::{Value, json};
use std::collections::HashSet;

use super::resources::Res;
use super::store::{Actor, DeleteOpts, State, finalizers};
use super::util::{self, name_of, s, uid_of};

fn owner_uids(v: &Value) -> Vec<(String, bool)> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["uid"].as_str().unwrap_or("").to_string(),
                        r["blockOwnerDeletion"].as_bool() == Some(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One pass of the garbage collector.
pub fn pass(st: &mut State) {
    let all = st.all();
    let uids: HashSet<String> = st.all_uids();
    let by_uid: std::collections::HashMap<String, &std::sync::Arc<Value>> = all
        .iter()
        .map(|(_, v)| (uid_of(v).to_string(), v))
        .collect();
    let background = DeleteOpts {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    for (res, obj) in &all {
        let owners = owner_uids(obj);
        if owners.is_empty() || obj.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let (ns, name) = (util::ns_of(obj).to_string(), name_of(obj).to_string());
        // Orphaned by an owner deleted with propagationPolicy=Orphan: drop the reference.
        let orphaning: Vec<&String> = owners
            .iter()
            .map(|(u, _)| u)
            .filter(|u| {
                by_uid.get(*u).is_some_and(|o| {
                    o.pointer("/metadata/deletionTimestamp").is_some()
                        && finalizers(o).iter().any(|f| f == "orphan")
                })
            })
            .collect();
        if !orphaning.is_empty() {
            let drop: Vec<String> = orphaning.into_iter().cloned().collect();
            st.modify(*res, &ns, &name, |v| {
                if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| !drop.iter().any(|d| r["uid"] == d.as_str()));
                    if refs.is_empty() {
                        v["metadata"]
                            .as_object_mut()
                            .expect("object")
                            .remove("ownerReferences");
                    }
                }
            });
            continue;
        }
        let foreground = owners.iter().any(|(u, _)| {
            by_uid.get(u).is_some_and(|o| {
                o.pointer("/metadata/deletionTimestamp").is_some()
                    && finalizers(o).iter().any(|f| f == "foregroundDeletion")
            })
        });
        let all_gone = owners.iter().all(|(u, _)| !uids.contains(u));
        if (all_gone || foreground) && obj.pointer("/metadata/deletionTimestamp").is_none() {
            let opts = if foreground {
                DeleteOpts {
                    propagation: Some("Foreground".into()),
                    ..Default::default()
                }
            } else {
                background.clone()
            };
            let _ = st.delete(*res, &ns, &name, &opts);
        }
    }
    // Owners waiting on their dependents.
    for (res, obj) in &all {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let fins = finalizers(obj);
        let uid = uid_of(obj);
        let (ns, name) = (util::ns_of(obj).to_string(), name_of(obj).to_string());
        let dependents: Vec<&Value> = all
            .iter()
            .filter(|(_, v)| owner_uids(v).iter().any(|(u, _)| u == uid))
            .map(|(_, v)| &**v)
            .collect();
        if fins.iter().any(|f| f == "orphan") && dependents.is_empty() {
            st.modify(*res, &ns, &name, |v| drop_fin(v, "orphan"));
        }
        if fins.iter().any(|f| f == "foregroundDeletion") {
            let blocking = dependents
                .iter()
                .any(|d| owner_uids(d).iter().any(|(u, b)| u == uid && *b));
            if !blocking {
                st.modify(*res, &ns, &name, |v| drop_fin(v, "foregroundDeletion"));
            }
        }
    }
}

fn drop_fin(v: &mut Value, f: &str) {
    let fins: Vec<String> = finalizers(v).into_iter().filter(|x| x != f).collect();
    if fins.is_empty() {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        v["metadata"]["finalizers"] = json!(fins);
    }
}

/// Namespaces: `default` service accounts for live ones, and the emptying of deleted ones.
pub fn namespaces(st: &mut State) {
    for ns in st.list(Res::Namespace, None) {
        let name = name_of(&ns).to_string();
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            if st.get(Res::ServiceAccount, &name, "default").is_none() {
                let _ = st.create(
                    Res::ServiceAccount,
                    &name,
                    json!({"metadata": {"name": "default"}}),
                    Actor::Controller,
                    false,
                );
            }
            continue;
        }
        let mut left = 0;
        for res in Res::ALL.into_iter().filter(|r| r.info().namespaced) {
            for obj in st.list(res, Some(&name)) {
                left += 1;
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    let _ = st.delete(
                        res,
                        &name,
                        name_of(&obj),
                        &DeleteOpts {
                            propagation: Some("Background".into()),
                            ..Default::default()
                        },
                    );
                }
            }
        }
        if left == 0 && s(&ns, "/status/phase") == "Terminating" {
            st.remove(Res::Namespace, "", &name);
        }
    }
}
