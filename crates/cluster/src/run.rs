//! Running a mover Job and following it: create it, wait for its pod to start (failing early and
//! clearly when it cannot), follow the mover's JSON lines from the pod log, and collect its exit
//! code and summary. Ctrl-C removes the Job.

use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use serde_json::Value;

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
    /// How often the pod's state is looked at while it starts.
    pub poll: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            start_timeout: Duration::from_secs(300),
            poll: Duration::from_millis(500),
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
    } else {
        "check the events above"
    }
}

/// Creates `job`, runs it to its end and returns how it ended.
///
/// If the pod cannot start within `options.start_timeout` or fails for a reason waiting cannot
/// fix, the Job and its pod are deleted and an error says what happened and what to do. Ctrl-C
/// deletes them too. The returned outcome carries the mover's exit code; a non-zero code is not
/// an error here.
pub async fn run_job(
    kube: &Kube,
    job: &Job,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    // Watch for Ctrl-C before the Job exists: a handler registered later would leave a window
    // in which Ctrl-C kills the process and the Job runs on unwatched.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::Failed(format!("cannot watch for Ctrl-C: {e}")))?;
    observer.step(&format!("creating Job {name}"));
    jobs.create(&PostParams::default(), job)
        .await
        .map_err(Error::api(format!("create Job {name}")))?;
    let result = tokio::select! {
        r = follow(kube, &name, options, observer) => r,
        _ = interrupt.recv() => Err(Error::Interrupted(format!("Job {name} deleted"))),
    };
    match &result {
        Ok(_) => {}
        Err(Error::Failed(_) | Error::Interrupted(_)) => {
            delete_job(kube, &name).await?;
        }
        Err(_) => {
            let _ = delete_job(kube, &name).await;
        }
    }
    result
}

/// Deletes a Job and its pods; a Job already gone is fine.
pub async fn delete_job(kube: &Kube, name: &str) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::api(format!("delete Job {name}"))(e)),
    }
}

async fn events_of(kube: &Kube, name: &str) -> Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let mut list = events
        .list(&lp)
        .await
        .map_err(Error::api(format!("list events of {name}")))?
        .items;
    list.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    });
    Ok(list)
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

async fn follow(
    kube: &Kube,
    job_name: &str,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let selector = ListParams::default().labels(&format!("job-name={job_name}"));
    let started = Instant::now();
    let mut said_waiting = String::new();
    // Wait for the pod to run (or end, if it was quick).
    let pod = loop {
        let list = pods
            .list(&selector)
            .await
            .map_err(Error::api(format!("list pods of Job {job_name}")))?;
        let pod = list.items.into_iter().next();
        if let Some(p) = &pod
            && phase(p) != "Pending"
        {
            break p.clone();
        }
        let job = jobs
            .get(job_name)
            .await
            .map_err(Error::api(format!("read Job {job_name}")))?;
        if let Some(why) = job_failure(&job) {
            return Err(Error::Failed(format!(
                "Job {job_name} failed before its pod ran: {why}"
            )));
        }
        let mut events = events_of(kube, job_name).await?;
        if let Some(p) = &pod {
            let pod_name = p.metadata.name.clone().unwrap_or_default();
            if said_waiting.is_empty() {
                observer.step(&format!("waiting for pod {pod_name} to start"));
                said_waiting = pod_name.clone();
            }
            events.extend(events_of(kube, &pod_name).await?);
        }
        let problem = start_problem(pod.as_ref(), &events);
        let timed_out = started.elapsed() >= options.start_timeout;
        if let Some(problem) = &problem
            && (problem.fatal || timed_out)
        {
            return Err(Error::Failed(format!(
                "the mover pod of Job {job_name} cannot start: {}; {}. Job {job_name} was \
                 deleted",
                problem.message,
                advice(problem)
            )));
        }
        if timed_out {
            return Err(Error::Failed(format!(
                "the mover pod of Job {job_name} did not start within {} s and the cluster \
                 gave no reason; Job {job_name} was deleted. Check `kubectl get events -n {}` \
                 or raise --start-timeout",
                options.start_timeout.as_secs(),
                kube.namespace
            )));
        }
        tokio::time::sleep(options.poll).await;
    };
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
    while let Some(line) = lines
        .try_next()
        .await
        .map_err(|e| Error::Failed(format!("reading the log of pod {pod_name}: {e}")))?
    {
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods
            .get(&pod_name)
            .await
            .map_err(Error::api(format!("read pod {pod_name}")))?;
        if let Some(code) = terminated_code(&pod) {
            return Ok(Outcome {
                job: job_name.to_owned(),
                pod: pod_name,
                node,
                exit_code: code,
                summaries,
                messages,
            });
        }
        if let Ok(job) = jobs.get(job_name).await
            && let Some(why) = job_failure(&job)
        {
            return Err(Error::Failed(format!(
                "Job {job_name} failed: {why}; the pod {pod_name} did not finish"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "the log of pod {pod_name} ended but the mover has not exited after 60 s; \
                 see `kubectl describe pod {pod_name} -n {}`",
                kube.namespace
            )));
        }
        tokio::time::sleep(options.poll).await;
    }
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
