//! What the controllers of the one-run kinds (Backup, Restore, Clone, Migration) share: each
//! resource is carried out once by its command line workflow, its progress kept in its status.
//!
//! A resource gets a finalizer, then phase Running with its first Job's name, then its run. The
//! run's id comes from the resource's uid and names its Jobs, so an operator that restarts
//! mid-run takes the resource up again, runs the workflow again, and the workflow follows the
//! Jobs it had created (and goes on from its record on the claim, as a command run again does)
//! instead of starting second ones. Deleting a resource that runs deletes its Job (the mover
//! stops) before the resource goes. A resource whose phase is final is left alone.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use cluster::connect::Kube;
use cluster::run::{Observer, Outcome};
use cluster::workflow::MoverSettings;
use contract::Progress;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use resources::common::{Mover, Phase, RunStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::{Context, Error, status};

/// The finalizer that keeps a running resource until its Job is gone.
pub const FINALIZER: &str = "pvc-backup.io/stop-job";

/// The field manager of the operator's status patches.
pub const MANAGER: &str = crate::install::NAME;

/// How a workflow ended, as far as the status shows it.
#[derive(Debug, Default)]
pub struct Ended {
    /// The mover runs whose figures the status adds up (none for a CSI clone).
    pub outcomes: Vec<Outcome>,
    /// What was done, for the condition and the Event when every run succeeded.
    pub said: Option<String>,
    /// The snapshot the run read (a Restore's), when its movers' summaries name none.
    pub snapshot: Option<String>,
}

/// A kind carried out once, by a workflow of the command line.
pub trait RunKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name, in logs, Events and metrics.
    const KIND: &'static str;

    /// The status, if any.
    fn run_status(&self) -> Option<&RunStatus>;

    /// The claim the run reads (the metrics' `claim`).
    fn claim(&self) -> &str;

    /// The resource's `mover`.
    fn mover(&self) -> Option<&Mover>;

    /// Whether the resource is carried out by itself (a Restore without a target only fills
    /// the claims that name it).
    fn carried_out(&self) -> bool {
        true
    }

    /// The name of the run's first Job, with run id `run`.
    fn first_job(&self, run: &str) -> String;

    /// Carries the resource out with run id `run`.
    fn carry_out(
        &self,
        kube: Kube,
        run: String,
        settings: MoverSettings,
        observer: &mut dyn Observer,
    ) -> impl Future<Output = cluster::Result<Ended>> + Send;
}

/// Five characters of a uid that name a run's Jobs: the same each time the resource is taken up.
pub fn run_id(uid: &str) -> String {
    let id: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(5)
        .collect();
    if id.is_empty() { "run".to_owned() } else { id }
}

/// The Job of a resource: the one its status names, else its run's first.
pub fn job_name<K: RunKind>(object: &K, uid: &str) -> String {
    object
        .run_status()
        .and_then(|s| s.job.clone())
        .unwrap_or_else(|| object.first_job(&run_id(uid)))
}

/// The mover's settings for a resource: the operator's (its image), with what the resource's
/// `mover` says over them.
pub fn settings<K: RunKind>(base: &MoverSettings, object: &K) -> MoverSettings {
    let mut settings = crate::mover_settings(base, object.mover());
    // The operator follows the Job itself: a Ctrl-C of the operator leaves it running.
    settings.run.stop_job_on_interrupt = false;
    settings.detach = false;
    settings
}

/// Reconciles one resource (the controller's reconciler).
pub async fn reconcile<K: RunKind>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !object.carried_out() && !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let (api_ref, ctx_ref) = (&api, &ctx);
    finalizer(&api, FINALIZER, object, |event| async move {
        match event {
            finalizer::Event::Apply(o) => apply(api_ref, o, ctx_ref).await,
            finalizer::Event::Cleanup(o) => cleanup(o, ctx_ref).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What a controller does with a reconcile that failed: logs it and tries again in 15 s.
pub fn error_policy<K: RunKind>(object: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(
        kind = K::KIND,
        name = %object.name_any(),
        error = %cluster::error::chain_text(error),
        "reconcile failed; trying again in 15 s"
    );
    Action::requeue(std::time::Duration::from_secs(15))
}

async fn apply<K: RunKind>(
    api: &Api<K>,
    object: Arc<K>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    if status::is_final(object.run_status().and_then(|s| s.phase)) {
        return Ok(Action::await_change());
    }
    let uid = object.uid().unwrap_or_default();
    if ctx.runs(&uid) {
        return Ok(Action::await_change());
    }
    let name = object.name_any();
    // The controller's cache can lag behind this process's own writes: a run that has just
    // written its final status and ended must not start again from an older copy.
    let object = api
        .get_status(&name)
        .await
        .map_err(cluster::Error::api(format!("read {} {name}", K::KIND)))?;
    let earlier = object.run_status().cloned().unwrap_or_default();
    if status::is_final(earlier.phase) {
        return Ok(Action::await_change());
    }
    let job = job_name(&object, &uid);
    let running = status::running(&earlier, &job, object.meta().generation, now());
    patch_status::<K>(api, &name, &running).await?;
    tracing::info!(kind = K::KIND, name = %name, namespace = ?object.namespace(), job = %job,
        "run starts");
    let reference = object.object_ref(&());
    let started = if earlier.job.is_some() {
        format!("taken up again: follows Job {job}")
    } else {
        format!("Job {job} runs the mover")
    };
    tell(ctx, &reference, EventType::Normal, "Started", started).await;

    let settings = settings(&ctx.settings, &object);
    let kube = Kube {
        client: ctx.client.clone(),
        namespace: object.namespace().unwrap_or_default(),
    };
    let api = api.clone();
    let task_ctx = ctx.clone();
    let key = uid.clone();
    let run = run_id(&uid);
    let task = tokio::spawn(async move {
        let mut log = Log {
            kind: K::KIND,
            name: name.clone(),
        };
        let claim = object.claim().to_owned();
        let result = object
            .carry_out(kube.clone(), run, settings, &mut log)
            .await;
        let ended = final_status(&running, &result);
        tracing::info!(kind = K::KIND, name = %name, phase = ?ended.phase, "run ended");
        let reason = ended.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let end = End {
            kind: K::KIND,
            namespace: &kube.namespace,
            claim: &claim,
            status: &ended,
        };
        end.tell(&task_ctx, &[&reference], &reason).await;
        // The status is the only record of the result: try until the API server takes it, or
        // the resource is gone (deleted while it ran).
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            match patch_status::<K>(&api, &name, &ended).await {
                Ok(()) => break,
                Err(Error::Cluster(e)) if e.is_not_found() => break,
                Err(e) => {
                    tracing::warn!(kind = K::KIND, name = %name,
                        error = %cluster::error::chain_text(&e), "status not written; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
        task_ctx.forget(&key);
    });
    ctx.started(&uid, task.abort_handle());
    Ok(Action::await_change())
}

/// The status a run ends with: its figures and what it did, or why it failed.
pub fn final_status(running: &RunStatus, result: &cluster::Result<Ended>) -> RunStatus {
    match result {
        Ok(ended) => {
            let mut status =
                status::finished(running, &ended.outcomes, ended.said.as_deref(), now());
            status.snapshot = status.snapshot.or_else(|| ended.snapshot.clone());
            status
        }
        Err(e) => status::failed(running, &e.full_message(), now()),
    }
}

/// A run that has ended, as its Events and the metrics tell it.
pub struct End<'a> {
    /// The kind carried out (the metrics' `kind`).
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The claim the metrics count it for.
    pub claim: &'a str,
    /// Its final status.
    pub status: &'a RunStatus,
}

impl End<'_> {
    /// An Event on each of `on` with `reason` and the condition's message (what the run did or
    /// why it failed, as its workflow put it), Normal if it succeeded; then the metrics.
    pub async fn tell(&self, ctx: &Context, on: &[&ObjectReference], reason: &str) {
        let kind = match self.status.phase {
            Some(Phase::Succeeded) => EventType::Normal,
            _ => EventType::Warning,
        };
        let said = self.status.conditions.first().map_or_else(
            || "the run ended without a result".to_owned(),
            |c| c.message.clone(),
        );
        for reference in on {
            tell(ctx, reference, kind, reason, said.clone()).await;
        }
        if let Some(phase) = self.status.phase {
            let seconds = match (&self.status.start_time, &self.status.completion_time) {
                (Some(s), Some(e)) => e.0.duration_since(s.0).as_secs_f64().max(0.0),
                _ => 0.0,
            };
            ctx.metrics.run_ended(
                self.kind,
                self.namespace,
                self.claim,
                phase,
                seconds,
                jiff::Timestamp::now().as_second(),
            );
        }
    }
}

/// Publishes an Event on a resource; an Event that cannot be written is logged, never fatal.
pub async fn tell(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    // The API server takes at most 1 KiB of note.
    let mut note = note;
    if note.len() > 1024 {
        let mut end = 1021;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reference.kind.clone().unwrap_or_default(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "Event not written");
    }
}

/// A resource being deleted: its Job goes (the mover stops), then the finalizer. The run's task
/// is left to see its Job gone and finish as the workflow does after a failed copy: workloads
/// scaled back up, a temporary snapshot and its claim removed.
async fn cleanup<K: RunKind>(object: Arc<K>, ctx: &Arc<Context>) -> Result<Action, Error> {
    if status::is_final(object.run_status().and_then(|s| s.phase)) {
        return Ok(Action::await_change());
    }
    let Some(job) = object.run_status().and_then(|s| s.job.clone()) else {
        return Ok(Action::await_change());
    };
    let kube = Kube {
        client: ctx.client.clone(),
        namespace: object.namespace().unwrap_or_default(),
    };
    tracing::info!(kind = K::KIND, name = %object.name_any(), job = %job,
        "deleted while it runs: its Job goes");
    cluster::run::delete_job(&kube, &job).await?;
    Ok(Action::await_change())
}

/// Writes `status` as the status of resource `name` (a merge patch).
pub async fn patch_status<K: RunKind>(
    api: &Api<K>,
    name: &str,
    status: &RunStatus,
) -> Result<(), Error> {
    let patch = json!({"status": status});
    let params = PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(cluster::Error::api(format!(
            "write the status of {} {name}",
            K::KIND
        )))
        .map_err(Error::from)
}

/// Now, as the API's time.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The workflow's steps, in the operator's log.
pub struct Log {
    /// The kind of the resource carried out.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
}

impl Observer for Log {
    fn step(&mut self, message: &str) {
        tracing::info!(kind = self.kind, name = %self.name, "{message}");
    }
    fn progress(&mut self, _: &Progress) {}
    fn text(&mut self, line: &str) {
        tracing::debug!(kind = self.kind, name = %self.name, "mover: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_five_characters_of_the_uid() {
        assert_eq!(run_id("5F3a-9b21-0000"), "5f3a9");
        assert_eq!(run_id("--"), "run");
    }
}
