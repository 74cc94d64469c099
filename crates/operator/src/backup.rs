//! The Backup controller: each Backup is carried out once by the backup workflow of the command
//! line (`pvc-backup backup`), its progress kept in its status.
//!
//! A Backup gets a finalizer, then phase Running with its Job's name, then its Job: the Job's
//! name comes from the Backup's uid, so an operator that restarts mid-run follows the same Job
//! to its end instead of starting a second one. Deleting a Backup that runs deletes its Job (the
//! mover stops) before the Backup goes. A Backup whose phase is final is left alone.

use std::sync::Arc;

use cluster::connect::Kube;
use cluster::run::Observer;
use cluster::workflow::MoverSettings;
use cluster::workflow::backup::{self as flow, BackupRequest};
use contract::Progress;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use resources::backup::{Backup, Method};
use resources::common::{Phase, RunStatus};
use serde_json::json;

use crate::{Context, Error, status};

/// The finalizer that keeps a running Backup until its Job is gone.
pub const FINALIZER: &str = "pvc-backup.io/stop-job";

/// The field manager of the operator's status patches.
pub const MANAGER: &str = crate::install::NAME;

/// The workflow's request for a Backup: its spec as `pvc-backup backup` flags would give it,
/// with `run` (from the Backup's uid) naming the Job.
pub fn request(backup: &Backup, run: &str) -> BackupRequest {
    let spec = &backup.spec;
    let options = &spec.options;
    let target = options.target.clone().unwrap_or_default();
    let consistency = options.consistency.clone().unwrap_or_default();
    BackupRequest {
        claim: spec.source.claim.clone(),
        to: target.claim,
        storage_class: target.storage_class_name,
        size: target.size.map(|q| q.0),
        subdir: options.subdir.clone(),
        retention: options
            .keep
            .as_ref()
            .map(|k| k.retention())
            .unwrap_or_default(),
        from_snapshot: consistency.method == Method::Snapshot,
        snapshot_class: consistency.snapshot_class_name,
        scale_down: consistency.method == Method::ScaleDown,
        run: Some(run.to_owned()),
    }
}

/// The mover's settings for a Backup: the operator's (its image), with what the Backup's
/// `mover` says over them.
pub fn settings(base: &MoverSettings, backup: &Backup) -> MoverSettings {
    let mut settings = crate::mover_settings(base, backup.spec.options.mover.as_ref());
    // The operator follows the Job itself: a Ctrl-C of the operator leaves it running.
    settings.run.stop_job_on_interrupt = false;
    settings.detach = false;
    settings
}

/// Five characters of a uid that name a run's Job: the same each time the Backup is taken up.
pub fn run_id(uid: &str) -> String {
    let id: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(5)
        .collect();
    if id.is_empty() { "run".to_owned() } else { id }
}

/// The Job of a Backup: the one its status names, else the one the workflow makes for its run
/// (`CLAIM-backup-RUN`).
pub fn job_name(backup: &Backup, uid: &str) -> String {
    backup
        .status
        .as_ref()
        .and_then(|s| s.job.clone())
        .unwrap_or_else(|| request(backup, &run_id(uid)).job_name())
}

/// Reconciles one Backup (the controller's reconciler).
pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = backup.namespace().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let (api_ref, ctx_ref) = (&api, &ctx);
    finalizer(&api, FINALIZER, backup, |event| async move {
        match event {
            finalizer::Event::Apply(b) => apply(api_ref, b, ctx_ref).await,
            finalizer::Event::Cleanup(b) => cleanup(b, ctx_ref).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(
    api: &Api<Backup>,
    backup: Arc<Backup>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    if status::is_final(backup.status.as_ref().and_then(|s| s.phase)) {
        return Ok(Action::await_change());
    }
    let uid = backup.uid().unwrap_or_default();
    if ctx.runs(&uid) {
        return Ok(Action::await_change());
    }
    let name = backup.name_any();
    // The controller's cache can lag behind this process's own writes: a run that has just
    // written its final status and ended must not start again from an older copy.
    let backup = api
        .get_status(&name)
        .await
        .map_err(cluster::Error::api(format!("read Backup {name}")))?;
    let earlier = backup.status.clone().unwrap_or_default();
    if status::is_final(earlier.phase) {
        return Ok(Action::await_change());
    }
    let job = job_name(&backup, &uid);
    let running = status::running(&earlier, &job, backup.metadata.generation, now());
    patch_status(api, &name, &running).await?;
    tracing::info!(backup = %name, namespace = ?backup.namespace(), job = %job, "backup runs");
    let reference = backup.object_ref(&());
    let started = if earlier.job.is_some() {
        format!("taken up again: follows Job {job}")
    } else {
        format!("Job {job} runs the mover")
    };
    tell(ctx, &reference, EventType::Normal, "Started", started).await;

    let request = request(&backup, &run_id(&uid));
    let settings = settings(&ctx.settings, &backup);
    let kube = Kube {
        client: ctx.client.clone(),
        namespace: backup.namespace().unwrap_or_default(),
    };
    let api = api.clone();
    let task_ctx = ctx.clone();
    let key = uid.clone();
    let task = tokio::spawn(async move {
        let mut log = Log(name.clone());
        let ended = match flow::run(&kube, &request, &settings, &mut log).await {
            Ok(report) => match &report.outcome {
                Some(outcome) => status::finished(&running, outcome, now()),
                None => status::failed(&running, "the Job was not followed", now()),
            },
            Err(e) => status::failed(&running, &e.full_message(), now()),
        };
        tracing::info!(backup = %name, phase = ?ended.phase, "backup ended");
        let (kind, said) = match (&ended.phase, &ended.message, &ended.snapshot) {
            (Some(Phase::Succeeded), _, Some(snapshot)) => {
                (EventType::Normal, format!("snapshot {snapshot} made"))
            }
            (Some(Phase::Succeeded), _, None) => (EventType::Normal, "done".to_owned()),
            (_, Some(message), _) => (EventType::Warning, message.clone()),
            _ => (
                EventType::Warning,
                "the run ended without a result".to_owned(),
            ),
        };
        let reason = ended.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        tell(&task_ctx, &reference, kind, &reason, said).await;
        if let Some(phase) = ended.phase {
            let seconds = match (&ended.start_time, &ended.completion_time) {
                (Some(s), Some(e)) => e.0.duration_since(s.0).as_secs_f64().max(0.0),
                _ => 0.0,
            };
            task_ctx.metrics.run_ended(
                "Backup",
                &kube.namespace,
                &request.claim,
                phase,
                seconds,
                jiff::Timestamp::now().as_second(),
            );
        }
        // The status is the only record of the result: try until the API server takes it, or
        // the Backup is gone (deleted while it ran).
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            match patch_status(&api, &name, &ended).await {
                Ok(()) => break,
                Err(Error::Cluster(e)) if e.is_not_found() => break,
                Err(e) => {
                    tracing::warn!(backup = %name, error = %cluster::error::chain_text(&e),
                        "status not written; retrying");
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

/// Publishes an Event on the resource; an Event that cannot be written is logged, never fatal.
async fn tell(
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
        action: "Backup".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "Event not written");
    }
}

/// A Backup being deleted: its Job goes (the mover stops), then the finalizer. The run's task
/// is left to see its Job gone and finish as the workflow does after a failed copy: workloads
/// scaled back up, a temporary snapshot and its claim removed.
async fn cleanup(backup: Arc<Backup>, ctx: &Arc<Context>) -> Result<Action, Error> {
    if status::is_final(backup.status.as_ref().and_then(|s| s.phase)) {
        return Ok(Action::await_change());
    }
    let Some(job) = backup.status.as_ref().and_then(|s| s.job.clone()) else {
        return Ok(Action::await_change());
    };
    let kube = Kube {
        client: ctx.client.clone(),
        namespace: backup.namespace().unwrap_or_default(),
    };
    tracing::info!(backup = %backup.name_any(), job = %job, "backup deleted: its Job goes");
    cluster::run::delete_job(&kube, &job).await?;
    Ok(Action::await_change())
}

async fn patch_status(api: &Api<Backup>, name: &str, status: &RunStatus) -> Result<(), Error> {
    let patch = json!({"status": status});
    let params = PatchParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(cluster::Error::api(format!(
            "write the status of Backup {name}"
        )))
        .map_err(Error::from)
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The workflow's steps, in the operator's log.
struct Log(String);

impl Observer for Log {
    fn step(&mut self, message: &str) {
        tracing::info!(backup = %self.0, "{message}");
    }
    fn progress(&mut self, _: &Progress) {}
    fn text(&mut self, line: &str) {
        tracing::debug!(backup = %self.0, "mover: {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::backup::{BackupOptions, BackupSpec, BackupTarget, Consistency};
    use resources::common::{ClaimSource, Keep};

    fn backup(options: BackupOptions) -> Backup {
        let mut b = Backup::new(
            "data-now",
            BackupSpec {
                source: ClaimSource {
                    claim: "data".into(),
                },
                options,
            },
        );
        b.metadata.namespace = Some("apps".into());
        b
    }

    #[test]
    fn a_backup_asks_what_the_command_line_would() {
        let b = backup(BackupOptions {
            target: Some(BackupTarget {
                claim: Some("vault".into()),
                storage_class_name: Some("slow".into()),
                size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                    "2Gi".into(),
                )),
            }),
            subdir: Some("db".into()),
            keep: Some(Keep {
                last: Some(3),
                daily: Some(7),
                ..Keep::default()
            }),
            consistency: Some(Consistency {
                method: Method::Snapshot,
                snapshot_class_name: Some("csi-snap".into()),
            }),
            mover: None,
        });
        let r = request(&b, "ab12c");
        assert_eq!(r.claim, "data");
        assert_eq!(r.target(), "vault");
        assert_eq!(r.storage_class.as_deref(), Some("slow"));
        assert_eq!(r.size.as_deref(), Some("2Gi"));
        assert_eq!(r.subdir.as_deref(), Some("db"));
        assert_eq!((r.retention.last, r.retention.daily), (Some(3), Some(7)));
        assert_eq!(r.retention.hourly, None);
        assert!(r.from_snapshot && !r.scale_down);
        assert_eq!(r.snapshot_class.as_deref(), Some("csi-snap"));
        assert_eq!(r.run.as_deref(), Some("ab12c"));

        // Nothing said: the command line's defaults.
        let plain = request(&backup(BackupOptions::default()), "ab12c");
        assert_eq!(plain.target(), "data-backup");
        assert!(!plain.from_snapshot && !plain.scale_down);
        assert_eq!(plain.retention, contract::Retention::default());
    }

    #[test]
    fn the_job_is_named_once_from_the_uid_and_kept() {
        let mut b = backup(BackupOptions::default());
        let uid = "5F3a-9b21-0000";
        assert_eq!(run_id(uid), "5f3a9");
        assert_eq!(job_name(&b, uid), "data-backup-5f3a9");
        // Once the status names it, that name stays.
        b.status = Some(RunStatus {
            job: Some("data-now-older".into()),
            ..RunStatus::default()
        });
        assert_eq!(job_name(&b, uid), "data-now-older");
    }

    #[test]
    fn the_operator_leaves_its_jobs_running_when_it_stops() {
        let b = backup(BackupOptions::default());
        let s = settings(&MoverSettings::default(), &b);
        assert!(!s.run.stop_job_on_interrupt && !s.detach);
    }
}
