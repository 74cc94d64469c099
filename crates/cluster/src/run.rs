//! Running a mover Job and following it: create it, wait for its pod to start (failing early and
//! clearly when it cannot), follow the mover's JSON lines from the pod log, and collect its exit
//! code and summary. Ctrl-C removes the Job.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PropagationPolicy};
use kube::runtime::{reflector, watcher};
use serde_json::Value;

use crate::api;
use crate::connect::Kube;
use contract::{Line, Progress};

use crate::objects::mover::CONTAINER;
use crate::{Error, Result};

/// Receives what happens while a Job runs (the command line shows it; tests record it).
pub trait Observer: Send {
    /// A step of the workflow ("creating claim x").
    fn step(&mut self, message: &str);
    /// A progress line of the mover.
    fn progress(&mut self, progress: &Progress);
    /// A line the mover wrote that is not JSON (its messages and errors).
    fn text(&mut self, line: &str);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn step(&mut self, _: &str) {}
    fn progress(&mut self, _: &Progress) {}
    fn text(&mut self, _: &str) {}
}

/// How long to wait and what to do at the end.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// How long the pod may take to start (scheduling, attaching, pulling) before the run fails.
    pub start_timeout: Duration,
    /// Whether Ctrl-C (SIGINT) stops the run and deletes its Job, as a command line's user
    /// expects. An operator leaves its Jobs running when it stops, to follow them again when it
    /// starts.
    pub stop_job_on_interrupt: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            start_timeout: Duration::from_secs(300),
            stop_job_on_interrupt: true,
        }
    }
}

/// How a mover run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The Job's name.
    pub job: String,
    /// The pod that ran the mover.
    pub pod: String,
    /// The node it ran on.
    pub node: Option<String>,
    /// The mover's exit code (0 done, 23 partial, 254 empty source, ...).
    pub exit_code: i32,
    /// The mover's summaries (one per copy it made), as JSON.
    pub summaries: Vec<Value>,
    /// The last lines the mover wrote that were not JSON (its error messages).
    pub messages: Vec<String>,
}

/// Why a pod cannot start, read from its state and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProblem {
    /// Whether waiting longer cannot help (an image that cannot be pulled, a Multi-Attach).
    pub fatal: bool,
    /// The cluster's words.
    pub message: String,
}

const FATAL_WAITING: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Reads why a pod (or its Job, when no pod exists yet) is not starting.
pub fn start_problem(pod: Option<&Pod>, events: &[Event]) -> Option<StartProblem> {
    if let Some(pod) = pod {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for cs in statuses {
            if let Some(w) = cs.state.and_then(|s| s.waiting)
                && let Some(reason) = w.reason
                && FATAL_WAITING.contains(&reason.as_str())
            {
                return Some(StartProblem {
                    fatal: true,
                    message: format!("{reason}: {}", w.message.unwrap_or_default()),
                });
            }
        }
    }
    let mut latest: Option<&Event> = None;
    for e in events {
        if e.type_.as_deref() != Some("Warning") {
            continue;
        }
        let reason = e.reason.as_deref().unwrap_or_default();
        let message = e.message.as_deref().unwrap_or_default();
        let fatal = (reason == "FailedAttachVolume" && message.contains("Multi-Attach"))
            || reason == "FailedCreate"
            || (reason == "Failed" && message.to_lowercase().contains("pull"));
        if fatal {
            return Some(StartProblem {
                fatal: true,
                message: format!("{reason}: {message}"),
            });
        }
        latest = Some(e);
    }
    latest.map(|e| StartProblem {
        fatal: false,
        message: format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or_default(),
            e.message.as_deref().unwrap_or_default()
        ),
    })
}

/// Advice to add to a start problem's message.
fn advice(problem: &StartProblem) -> &'static str {
    let m = &problem.message;
    if m.contains("Multi-Attach") {
        "the claim is attached to another node by a running pod; retry (the mover is pinned to \
         that pod's node when it is found running), or stop the workload with --scale-down"
    } else if m.contains("pull") || m.contains("Pull") || m.contains("InvalidImageName") {
        "check --image (or PVC_BACKUP_IMAGE) and that the nodes can pull it"
    } else if m.contains("serviceaccount") || m.contains("service account") {
        "the mover's service account is missing in this namespace: install it with \
         `pvc-backup manifests | kubectl apply -n NAMESPACE -f -`"
    } else if m.contains("violates PodSecurity \"restricted") {
        "the namespace enforces Pod Security \"restricted\" (its label \
         pod-security.kubernetes.io/enforce=restricted), which a mover with capabilities does not \
         meet: run with --unprivileged (owners the mover cannot set are kept in a manifest), or \
         back up from a namespace that enforces \"baseline\""
    } else if m.contains("violates PodSecurity") {
        "the namespace's Pod Security level (its label pod-security.kubernetes.io/enforce) \
         refuses the mover pod: the default mover needs \"baseline\", --unprivileged needs \
         \"restricted\""
    } else if m.contains("admission webhook") || m.contains("ValidatingAdmissionPolicy") {
        "an admission policy refused the mover pod: check --image against the images the \
         guard allows (`pvc-backup manifests --allowed-image`)"
    } else if m.contains("quota") || m.contains("forbidden") {
        "the namespace refuses the pod: check its ResourceQuota and LimitRange, or set \
         --requests/--limits to fit"
    } else if m.contains("FailedScheduling") {
        "no node can take the pod: check the message above (resources, taints, claims)"
    } else if m.starts_with("CreateContainerConfigError") && m.to_lowercase().contains("secret") {
        "the repository's Secret, or a key the mover needs in it, is missing in this namespace: \
         create it with RESTIC_PASSWORD (and AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for an \
         s3: repository), see docs/repositories.md"
    } else {
        "check the events above"
    }
}

/// Creates `job`, runs it to its end and returns how it ended. A Job of that name that exists
/// already (created by an interrupted run that goes on) is followed instead, running or ended.
///
/// If the pod cannot start within `options.start_timeout` or fails for a reason waiting cannot
/// fix, the Job and its pod are deleted and an error says what happened and what to do. Ctrl-C
/// deletes them too, unless `options.stop_job_on_interrupt` is off. The returned outcome carries the mover's exit code; a non-zero code is not
/// an error here.
pub async fn run_job(
    kube: &Kube,
    job: &Job,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let name = job.metadata.name.clone().unwrap_or_default();
    // Watch for Ctrl-C before the Job exists: a handler registered later would leave a window
    // in which Ctrl-C kills the process and the Job runs on unwatched.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|source| Error::Io {
        what: "cannot watch for Ctrl-C".to_owned(),
        source,
    })?;
    observer.step(&format!("creating Job {name}"));
    if !api::create_or_keep(&api::namespaced(kube), "Job", &name, job).await? {
        // A run that was interrupted created it: follow it rather than copy twice at once.
        observer.step(&format!("Job {name} exists already: following it"));
    }
    let result = tokio::select! {
        r = follow(kube, &name, options, observer) => r,
        _ = interrupted(&mut interrupt, options.stop_job_on_interrupt) => {
            Err(Error::Interrupted(format!("Job {name} deleted")))
        }
    };
    match &result {
        Ok(_) => {}
        Err(e) if e.is_stop() => {
            delete_job(kube, &name).await?;
        }
        Err(_) => {
            let _ = delete_job(kube, &name).await;
        }
    }
    result
}

/// Ends at Ctrl-C when it stops the run, never otherwise.
async fn interrupted(signal: &mut tokio::signal::unix::Signal, stops: bool) {
    if stops {
        signal.recv().await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Whether `pod` is a pod of Job `job`.
pub fn is_of_job(pod: &Pod, job: &str) -> bool {
    pod.metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "Job" && r.name == job))
}

/// Deletes a Job and its pods; a Job already gone is fine.
pub async fn delete_job(kube: &Kube, name: &str) -> Result<()> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    api::delete::<Job>(&api::namespaced(kube), "Job", name, &dp).await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn terminated_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn job_failure(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            (c.type_ == "Failed" && c.status == "True").then(|| {
                format!(
                    "{}: {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            })
        })
}

/// Where the wait for a mover pod to start stands.
#[derive(Debug)]
enum Start {
    /// The pod runs (or already ended).
    Running(Box<Pod>),
    /// Not yet; the pod, once it exists, is named.
    Waiting(Option<String>),
    /// It cannot start; the message says why and what to do.
    Failed(String),
}

/// Decides from the Job's pods, the Job and the events of the namespace whether its pod runs,
/// may still start, or cannot: for a reason waiting cannot fix, or because the time ran out
/// (`timed_out`, the time waited).
fn start_state(
    job_name: &str,
    namespace: &str,
    pods: &[Arc<Pod>],
    job: Option<&Job>,
    events: &[Arc<Event>],
    timed_out: Option<Duration>,
) -> Start {
    let pod = pods.first().map(|p| Pod::clone(p));
    if let Some(p) = &pod
        && phase(p) != "Pending"
    {
        return Start::Running(Box::new(p.clone()));
    }
    if let Some(why) = job.and_then(job_failure) {
        return Start::Failed(format!("Job {job_name} failed before its pod ran: {why}"));
    }
    let pod_name = pod.as_ref().and_then(|p| p.metadata.name.clone());
    let mut about = events_about(events, job_name);
    if let Some(name) = &pod_name {
        about.extend(events_about(events, name));
    }
    let problem = start_problem(pod.as_ref(), &about);
    if let Some(problem) = &problem
        && (problem.fatal || timed_out.is_some())
    {
        return Start::Failed(format!(
            "the mover pod of Job {job_name} cannot start: {}; {}. Job {job_name} was deleted",
            problem.message,
            advice(problem)
        ));
    }
    if let Some(timeout) = timed_out {
        return Start::Failed(format!(
            "the mover pod of Job {job_name} did not start within {} s and the cluster gave no \
             reason; Job {job_name} was deleted. Check `kubectl get events -n {namespace}` or \
             raise --start-timeout",
            timeout.as_secs()
        ));
    }
    Start::Waiting(pod_name)
}

/// The events about object `name`, oldest first.
fn events_about(events: &[Arc<Event>], name: &str) -> Vec<Event> {
    let mut list: Vec<Event> = events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| Event::clone(e))
        .collect();
    list.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    });
    list
}

/// Waits for the pod of Job `job_name` to run, watching the Job's pods, the Job and the events
/// of the namespace, and deciding with [`start_state`] after every change.
async fn wait_started(
    kube: &Kube,
    job_name: &str,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Pod> {
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (jobs, jobs_writer) = reflector::store::<Job>();
    let (events, events_writer) = reflector::store::<Event>();
    let what = format!("the pod of Job {job_name}");
    let changes = futures::stream::select_all([
        listed(reflector::reflector(
            pods_writer,
            watcher(
                api::namespaced::<Pod>(kube),
                watcher::Config::default().labels(&format!("job-name={job_name}")),
            ),
        )),
        listed(reflector::reflector(
            jobs_writer,
            watcher(
                api::namespaced::<Job>(kube),
                watcher::Config::default().fields(&format!("metadata.name={job_name}")),
            ),
        )),
        listed(reflector::reflector(
            events_writer,
            watcher(api::namespaced::<Event>(kube), watcher::Config::default()),
        )),
    ]);
    let state = |timed_out: Option<Duration>| {
        let job = jobs.state().into_iter().next();
        start_state(
            job_name,
            &kube.namespace,
            &pods.state(),
            job.as_deref(),
            &events.state(),
            timed_out,
        )
    };
    let mut said_waiting = false;
    let watch = async {
        let mut changes = std::pin::pin!(changes);
        let mut listed = 0;
        while let Some(change) = changes.try_next().await.map_err(|e| Error::Wait {
            what: what.clone(),
            source: crate::error::WatchError(e),
        })? {
            match change {
                Change::Listed => listed += 1,
                Change::Changed => {}
                Change::Listing => continue,
            }
            if listed < 3 {
                continue;
            }
            match state(None) {
                Start::Waiting(Some(pod)) if !said_waiting => {
                    observer.step(&format!("waiting for pod {pod} to start"));
                    said_waiting = true;
                }
                Start::Waiting(_) => {}
                Start::Running(pod) => return Ok(*pod),
                Start::Failed(why) => {
                    // The Job's watch can run ahead of the pods': the Job of a mover that ran
                    // and failed can be seen failed before its pod is. The API server itself is
                    // asked before the pod is said never to have run.
                    return match pod_that_ran(kube, job_name).await {
                        Some(pod) => Ok(pod),
                        None => Err(Error::Failed(why)),
                    };
                }
            }
        }
        Err(Error::Failed(format!("the watch of {what} ended")))
    };
    match tokio::time::timeout(options.start_timeout, watch).await {
        Ok(r) => r,
        Err(_elapsed) => match state(Some(options.start_timeout)) {
            Start::Running(pod) => Ok(*pod),
            Start::Failed(why) => Err(Error::Failed(why)),
            Start::Waiting(_) => unreachable!("a wait that timed out is decided"),
        },
    }
}

/// The pod of Job `job_name` that left `Pending`, as the API server lists it now (none when it
/// cannot be listed).
async fn pod_that_ran(kube: &Kube, job_name: &str) -> Option<Pod> {
    let params = ListParams::default().labels(&format!("job-name={job_name}"));
    let pods = api::namespaced::<Pod>(kube).list(&params).await.ok()?;
    pods.items.into_iter().find(|p| phase(p) != "Pending")
}

/// A change seen by one of the watches of [`wait_started`].
enum Change {
    /// Part of the first listing: the set is not complete yet.
    Listing,
    /// The first listing is complete.
    Listed,
    /// An object was added, changed or deleted.
    Changed,
}

/// A reflector's events as [`Change`]s, boxed so that watches of different kinds merge.
fn listed<K, S>(
    stream: S,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<Change, watcher::Error>> + Send>>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    Box::pin(stream.map_ok(|e| match e {
        watcher::Event::Init | watcher::Event::InitApply(_) => Change::Listing,
        watcher::Event::InitDone => Change::Listed,
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Change::Changed,
    }))
}

async fn follow(
    kube: &Kube,
    job_name: &str,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let pods: Api<Pod> = api::namespaced(kube);
    // Wait for the pod to run (or end, if it was quick).
    let pod = wait_started(kube, job_name, options, observer).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    observer.step(&format!(
        "mover running in pod {pod_name}{}",
        node.as_ref()
            .map(|n| format!(" on node {n}"))
            .unwrap_or_default()
    ));
    let mut summaries = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    let lp = LogParams {
        follow: true,
        container: Some(CONTAINER.to_owned()),
        ..LogParams::default()
    };
    let stream = pods
        .log_stream(&pod_name, &lp)
        .await
        .map_err(Error::api(format!("follow the log of pod {pod_name}")))?;
    let mut lines = stream.lines();
    while let Some(line) = lines.try_next().await.map_err(|source| Error::Io {
        what: format!("reading the log of pod {pod_name}"),
        source,
    })? {
        match Line::parse(&line) {
            Line::Progress(p) => observer.progress(&p),
            Line::Summary(s) => summaries.push(s),
            Line::Text(t) => {
                observer.text(&t);
                messages.push(t);
                if messages.len() > 50 {
                    messages.remove(0);
                }
            }
        }
    }
    // The log ends when the container does; its status may lag a little behind.
    let exit_code = wait_exit(kube, job_name, &pod_name).await?;
    Ok(Outcome {
        job: job_name.to_owned(),
        pod: pod_name,
        node,
        exit_code,
        summaries,
        messages,
    })
}

/// How long the mover's exit code may take to show in its pod's status after its log ended.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for the exit code of the mover in pod `pod_name`, or for Job `job_name` to fail.
async fn wait_exit(kube: &Kube, job_name: &str, pod_name: &str) -> Result<i32> {
    let exited = |p: Option<&Pod>| p.is_none_or(|p| terminated_code(p).is_some());
    let failed = |j: Option<&Job>| j.is_some_and(|j| job_failure(j).is_some());
    let pod_wait = api::wait_for(api::namespaced(kube), "pod", pod_name, EXIT_TIMEOUT, exited);
    let job_wait = api::wait_for(api::namespaced(kube), "Job", job_name, EXIT_TIMEOUT, failed);
    let (pod, job) = tokio::select! {
        biased;
        pod = pod_wait => (pod?, None),
        job = job_wait => (None, job?),
    };
    // The Job controller marks a Job failed once it sees its pod's exit: the code may be there.
    let pod = match pod {
        Some(pod) => pod,
        None => api::get_opt::<Pod>(&api::namespaced(kube), "pod", pod_name).await?,
    };
    if let Some(code) = pod.as_ref().and_then(terminated_code) {
        return Ok(code);
    }
    // The Job failed, or the pod is gone: the Job says why.
    let job = match job {
        Some(job) => job,
        None => api::get_opt::<Job>(&api::namespaced(kube), "Job", job_name)
            .await
            .ok()
            .flatten(),
    };
    if let Some(why) = job.as_ref().and_then(job_failure) {
        return Err(Error::Failed(format!(
            "Job {job_name} failed: {why}; the pod {pod_name} did not finish"
        )));
    }
    Err(Error::Failed(format!(
        "the log of pod {pod_name} ended but the mover has not exited after {} s; see \
         `kubectl describe pod {pod_name} -n {}`",
        EXIT_TIMEOUT.as_secs(),
        kube.namespace
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    fn event(type_: &str, reason: &str, message: &str) -> Event {
        Event {
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Event::default()
        }
    }

    fn pod_in(phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "data-backup-x-abcde"},
                "status": {"phase": phase}
            }))
            .unwrap(),
        )
    }

    fn about(name: &str, e: Event) -> Arc<Event> {
        let mut e = e;
        e.involved_object.name = Some(name.into());
        Arc::new(e)
    }

    #[test]
    fn the_start_is_decided_from_the_pod_the_job_and_their_events() {
        let job = "data-backup-x";
        let running = start_state(job, "shop", &[pod_in("Running")], None, &[], None);
        assert!(matches!(running, Start::Running(_)), "{running:?}");
        // Pending, with a warning waiting may cure: wait, and name the pod.
        let sched = about(
            "data-backup-x-abcde",
            event("Warning", "FailedScheduling", "0/2 nodes are available"),
        );
        let pending = [pod_in("Pending")];
        let waiting = start_state(
            job,
            "shop",
            &pending,
            None,
            std::slice::from_ref(&sched),
            None,
        );
        assert!(
            matches!(&waiting, Start::Waiting(Some(p)) if p == "data-backup-x-abcde"),
            "{waiting:?}"
        );
        // The same warning once the time ran out is the reason given.
        let late = start_state(
            job,
            "shop",
            &pending,
            None,
            &[sched],
            Some(Duration::from_secs(7)),
        );
        assert!(
            matches!(&late, Start::Failed(m) if m.contains("0/2 nodes") && m.contains("no node can take")),
            "{late:?}"
        );
        // Another object's events do not count; no reason at all names the timeout.
        let other = about("web-0", event("Warning", "FailedCreate", "exceeded quota"));
        let none = start_state(job, "shop", &[], None, std::slice::from_ref(&other), None);
        assert!(matches!(none, Start::Waiting(None)), "{none:?}");
        let late = start_state(
            job,
            "shop",
            &[],
            None,
            &[other],
            Some(Duration::from_secs(7)),
        );
        assert!(
            matches!(&late, Start::Failed(m) if m.contains("within 7 s") && m.contains("kubectl get events -n shop")),
            "{late:?}"
        );
        // A fatal event of the Job, or the Job failed: no waiting.
        let quota = about(
            job,
            event("Warning", "FailedCreate", "exceeded quota: pods=0"),
        );
        let fatal = start_state(job, "shop", &[], None, &[quota], None);
        assert!(
            matches!(&fatal, Start::Failed(m) if m.contains("quota")),
            "{fatal:?}"
        );
        let failed: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": job},
            "status": {"conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "too long"}]}
        }))
        .unwrap();
        let gone = start_state(job, "shop", &[], Some(&failed), &[], None);
        assert!(
            matches!(&gone, Start::Failed(m) if m.contains("failed before its pod ran: DeadlineExceeded")),
            "{gone:?}"
        );
    }

    #[test]
    fn multi_attach_and_quota_are_fatal_scheduling_waits() {
        let multi = event(
            "Warning",
            "FailedAttachVolume",
            "Multi-Attach error for volume \"pvc-1\" Volume is already used by pod(s) web-0",
        );
        let p = start_problem(None, &[multi]).unwrap();
        assert!(p.fatal && p.message.contains("web-0"), "{p:?}");
        let quota = event("Warning", "FailedCreate", "exceeded quota: pods=0");
        assert!(start_problem(None, &[quota]).unwrap().fatal);
        let sched = event("Warning", "FailedScheduling", "0/2 nodes are available");
        let p = start_problem(None, &[sched]).unwrap();
        assert!(!p.fatal && p.message.contains("0/2 nodes"));
        assert!(start_problem(None, &[event("Normal", "Scheduled", "ok")]).is_none());
    }

    #[test]
    fn pod_security_refusals_name_the_label_and_the_way_out() {
        // The Job controller's event, as the API server words a Pod Security refusal.
        let e = event(
            "Warning",
            "FailedCreate",
            "Error creating: pods \"data-backup-x\" is forbidden: violates PodSecurity \
             \"restricted:latest\": unrestricted capabilities (container \"mover\" must set \
             securityContext.capabilities.drop=[\"ALL\"])",
        );
        let p = start_problem(None, &[e]).expect("a problem");
        assert!(p.fatal);
        let a = advice(&p);
        assert!(
            a.contains("pod-security.kubernetes.io/enforce=restricted")
                && a.contains("--unprivileged"),
            "{a}"
        );
    }

    #[test]
    fn a_missing_repository_secret_is_fatal_and_says_which_keys_to_create() {
        // The kubelet's words when a secretKeyRef names a Secret or key that is not there.
        for message in [
            "secret \"repo\" not found",
            "couldn't find key AWS_ACCESS_KEY_ID in Secret shop/repo",
        ] {
            let pod = Pod {
                status: Some(PodStatus {
                    container_statuses: Some(vec![ContainerStatus {
                        name: CONTAINER.into(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("CreateContainerConfigError".into()),
                                message: Some(message.into()),
                            }),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    }]),
                    ..PodStatus::default()
                }),
                ..Pod::default()
            };
            let p = start_problem(Some(&pod), &[]).unwrap();
            assert!(p.fatal && p.message.contains(message), "{p:?}");
            assert!(advice(&p).contains("RESTIC_PASSWORD"), "{}", advice(&p));
        }
    }

    #[test]
    fn image_pull_failure_is_fatal() {
        let pod = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER.into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ImagePullBackOff".into()),
                            message: Some("Back-off pulling image \"nope\"".into()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let p = start_problem(Some(&pod), &[]).unwrap();
        assert!(p.fatal && p.message.contains("nope"));
        assert!(advice(&p).contains("--image"));
    }
}
