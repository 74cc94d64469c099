//! The thin layer between the workflows and the API server: reading, creating, patching and
//! deleting one object, and waiting for a condition, each turning the client's error into one
//! that names the object and the action.
//!
//! Waits watch instead of polling: one object through kube's `await_condition`, a set of objects
//! (the pods of a namespace, say) through a reflector whose contents a pure check looks at after
//! every change. Each wait has a timeout and says whether the condition held in time.

use std::fmt::Debug;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::{reflector, watcher};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connect::Kube;
use crate::{Error, Result};

/// The API of a namespaced kind in the namespace commands work in.
pub fn namespaced<K>(kube: &Kube) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// The API of a cluster-scoped kind.
pub fn cluster<K>(kube: &Kube) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope>,
    K::DynamicType: Default,
{
    Api::all(kube.client.clone())
}

/// Reads object `name`; `None` when it does not exist. `what` names its kind ("claim").
pub async fn get_opt<K>(api: &Api<K>, what: &str, name: &str) -> Result<Option<K>>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.get_opt(name)
        .await
        .map_err(Error::api(format!("read {what} {name}")))
}

/// Reads object `name`; a missing one is an error that [`Error::is_not_found`] recognises.
pub async fn get<K>(api: &Api<K>, what: &str, name: &str) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.get(name)
        .await
        .map_err(Error::api(format!("read {what} {name}")))
}

/// Creates `object`, named `name`.
pub async fn create<K>(api: &Api<K>, what: &str, name: &str, object: &K) -> Result<K>
where
    K: Clone + Serialize + DeserializeOwned + Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .map_err(Error::api(format!("create {what} {name}")))
}

/// Lists the objects `params` selects; `what` names them ("CronJobs in namespace x").
pub async fn list<K>(api: &Api<K>, what: &str, params: &ListParams) -> Result<Vec<K>>
where
    K: Clone + DeserializeOwned + Debug,
{
    Ok(api
        .list(params)
        .await
        .map_err(Error::api(format!("list {what}")))?
        .items)
}

/// Replaces object `name` with `object`, whose resource version must be the one read: a change
/// made meanwhile by someone else is refused with a conflict, not overwritten.
pub async fn replace<K>(api: &Api<K>, what: &str, name: &str, object: &K) -> Result<K>
where
    K: Clone + Serialize + DeserializeOwned + Debug,
{
    api.replace(name, &PostParams::default(), object)
        .await
        .map_err(Error::api(format!("update {what} {name}")))
}

/// Creates `object`, named `name`, unless it exists already: whether it was created. What makes
/// a step that creates something safe to do again.
pub async fn create_or_keep<K>(api: &Api<K>, what: &str, name: &str, object: &K) -> Result<bool>
where
    K: Clone + Serialize + DeserializeOwned + Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::api(format!("create {what} {name}"))(e)),
    }
}

/// Applies a merge patch to object `name` (other fields and annotations are kept).
pub async fn patch_merge<K>(
    api: &Api<K>,
    what: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::api(format!("update {what} {name}")))
}

/// Deletes object `name`; one already gone is fine.
pub async fn delete<K>(api: &Api<K>, what: &str, name: &str, params: &DeleteParams) -> Result<()>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(format!("delete {what} {name}"))(e)),
    }
}

/// Waits until `condition` holds for object `name` (it is given `None` while the object does not
/// exist), at most `timeout`. `Some` carries the object as it was when the condition held
/// (`None` inside: it did not exist); `None` means the time ran out.
pub async fn wait_for<K>(
    api: Api<K>,
    what: &str,
    name: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<Option<Option<K>>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, condition)).await {
        Ok(Ok(object)) => Ok(Some(object)),
        Ok(Err(kube::runtime::wait::Error::ProbeFailed(e))) => Err(Error::Wait {
            what: format!("{what} {name}"),
            source: crate::error::WatchError(e),
        }),
        Err(_elapsed) => Ok(None),
    }
}

/// How a wait on a set of objects ended: whether the check passed in time, and the objects as
/// last seen (what an error message names when it did not).
#[derive(Debug)]
pub struct Watched<K> {
    /// The check passed before the timeout.
    pub done: bool,
    /// The objects when the check passed or the time ran out.
    pub objects: Vec<Arc<K>>,
}

/// Watches the objects `config` selects and waits until `check` accepts them all, at most
/// `timeout`. `check` looks at the complete set once it has been listed, then after every change.
pub async fn wait_all<K>(
    api: Api<K>,
    what: &str,
    config: watcher::Config,
    timeout: Duration,
    mut check: impl FnMut(&[Arc<K>]) -> bool,
) -> Result<Watched<K>>
where
    K: Resource + Clone + Debug + Send + Sync + DeserializeOwned + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let (reader, writer) = reflector::store();
    let seen = reader.clone();
    let watch = async move {
        let mut events = pin!(reflector::reflector(writer, watcher(api, config)));
        let mut listed = false;
        while let Some(event) = events.try_next().await.map_err(|e| Error::Wait {
            what: what.to_owned(),
            source: crate::error::WatchError(e),
        })? {
            match event {
                watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                watcher::Event::InitDone => listed = true,
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
            }
            if listed && check(&reader.state()) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let done = match tokio::time::timeout(timeout, watch).await {
        Ok(r) => r?,
        Err(_elapsed) => false,
    };
    Ok(Watched {
        done,
        objects: seen.state(),
    })
}
