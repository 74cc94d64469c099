//! The Job controller (pods from the template, retries up to backoffLimit, deadline, TTL after
//! finishing) and the CronJob controller's job creation, fired on request.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

use super::events;
use super::resources::Res;
use super::store::{Actor, DeleteOpts, State};
use super::util::{
    self, ApiError, controlled_by, name_of, now, now_secs, parse_time, s, suffix, uid_of,
};

fn cond(v: &Value, ty: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// Whether a Job finished (Complete or Failed).
pub fn finished(job: &Value) -> bool {
    cond(job, "Complete") || cond(job, "Failed")
}

/// One pass over every Job.
pub fn pass(st: &mut State) {
    for job in st.list(Res::Job, None) {
        if finished(&job) {
            ttl(st, &job);
            continue;
        }
        if job.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        sync(st, &job);
    }
}

fn ttl(st: &mut State, job: &Value) {
    let Some(ttl) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_i64)
    else {
        return;
    };
    if job.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let done = parse_time(s(job, "/status/completionTime"))
        .or_else(|| {
            job["status"]["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .filter(|c| c["type"] == "Failed" || c["type"] == "Complete")
                    .filter_map(|c| parse_time(c["lastTransitionTime"].as_str().unwrap_or("")))
                    .max()
            })
        })
        .unwrap_or(0);
    if now_secs() >= done + ttl {
        // The TTL controller deletes in the foreground, so the pods go first.
        let _ = st.delete(
            Res::Job,
            util::ns_of(job),
            name_of(job),
            &DeleteOpts {
                propagation: Some("Foreground".into()),
                ..Default::default()
            },
        );
    }
}

fn sync(st: &mut State, job: &Arc<Value>) {
    let (ns, name, uid) = (
        util::ns_of(job).to_string(),
        name_of(job).to_string(),
        uid_of(job).to_string(),
    );
    let pods: Vec<Arc<Value>> = st
        .list(Res::Pod, Some(&ns))
        .into_iter()
        .filter(|p| controlled_by(p, &uid))
        .collect();
    let phase = |p: &Value| s(p, "/status/phase").to_string();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
    let failed_pods = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
    // With restartPolicy OnFailure, container restarts count as failures too.
    let restarts: i64 = pods
        .iter()
        .flat_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let failed = failed_pods + restarts;
    let active: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| {
            !matches!(phase(p).as_str(), "Succeeded" | "Failed")
                && p.pointer("/metadata/deletionTimestamp").is_none()
        })
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            !matches!(phase(p).as_str(), "Succeeded" | "Failed")
                && p.pointer("/metadata/deletionTimestamp").is_some()
        })
        .count();
    let ready = active.iter().filter(|p| cond(p, "Ready")).count();
    let completions = job
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let parallelism = job
        .pointer("/spec/parallelism")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let backoff_limit = job
        .pointer("/spec/backoffLimit")
        .and_then(Value::as_i64)
        .unwrap_or(6);
    let t = now();
    let start = job
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map(String::from);
    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let mut status = json!({
        "active": active.len(),
        "succeeded": succeeded,
        "failed": failed,
        "ready": ready,
        "terminating": terminating,
        "uncountedTerminatedPods": {},
        "startTime": start.clone().unwrap_or_else(|| t.clone()),
    });
    if suspended {
        status.as_object_mut().expect("object").remove("startTime");
    }
    let mut outcome: Option<(&str, &str, &str)> = None;
    if succeeded >= completions {
        outcome = Some((
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
    } else if failed > backoff_limit {
        outcome = Some((
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    } else if let (Some(deadline), Some(start)) = (
        job.pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64),
        start.as_deref().and_then(parse_time),
    ) && now_secs() - start >= deadline
    {
        outcome = Some((
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ));
    }
    if let Some((ty, reason, message)) = outcome {
        // Active pods of a failed Job are stopped.
        for p in &active {
            let _ = st.delete(Res::Pod, &ns, name_of(p), &DeleteOpts::default());
        }
        let target = if ty == "Complete" {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        };
        status["conditions"] = json!([
            {"type": target, "status": "True", "reason": reason, "message": message, "lastProbeTime": t, "lastTransitionTime": t},
            {"type": ty, "status": "True", "reason": reason, "message": message, "lastProbeTime": t, "lastTransitionTime": t},
        ]);
        status["active"] = json!(0);
        status["ready"] = json!(0);
        if ty == "Complete" {
            status["completionTime"] = json!(t);
        }
        st.modify(Res::Job, &ns, &name, |j| j["status"] = status);
        if ty == "Complete" {
            events::record(
                st,
                Res::Job,
                job,
                "Normal",
                "Completed",
                "Job completed",
                "job-controller",
            );
        } else {
            events::record(
                st,
                Res::Job,
                job,
                "Warning",
                reason,
                message,
                "job-controller",
            );
        }
        return;
    }
    let keep_conditions = job["status"]["conditions"].clone();
    if !keep_conditions.is_null() {
        status["conditions"] = keep_conditions;
    }
    if !suspended {
        let wanted = parallelism.min(completions - succeeded) - active.len() as i64;
        let seen = st
            .job_failures
            .entry(uid.clone())
            .or_insert((0, Instant::now()));
        if seen.0 != failed {
            *seen = (failed, Instant::now());
        }
        let backing_off = failed > 0 && seen.1.elapsed() < st.rt.job_backoff;
        if wanted > 0 && !backing_off && terminating == 0 {
            for _ in 0..wanted {
                if let Err(e) = create_pod(st, job) {
                    events::record(
                        st,
                        Res::Job,
                        job,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                        "job-controller",
                    );
                    break;
                }
            }
        }
    }
    let active_now = st
        .list(Res::Pod, Some(&ns))
        .iter()
        .filter(|p| {
            controlled_by(p, &uid)
                && !matches!(phase(p).as_str(), "Succeeded" | "Failed")
                && p.pointer("/metadata/deletionTimestamp").is_none()
        })
        .count();
    status["active"] = json!(active_now);
    if let Some(cur) = st.get(Res::Job, &ns, &name)
        && cur["status"] != status
    {
        st.modify(Res::Job, &ns, &name, |j| j["status"] = status);
    }
}

fn create_pod(st: &mut State, job: &Value) -> Result<(), ApiError> {
    let ns = util::ns_of(job).to_string();
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut pod = json!({
        "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    let base: String = name_of(job).chars().take(57).collect();
    pod["metadata"]["name"] = json!(format!("{base}-{}", suffix(5)));
    pod["metadata"]["ownerReferences"] = json!([util::controller_ref(Res::Job, job)]);
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("namespace");
        m.remove("generateName");
    }
    let created = st.create(Res::Pod, &ns, pod, Actor::Controller, false)?;
    events::record(
        st,
        Res::Job,
        job,
        "Normal",
        "SuccessfulCreate",
        &format!("Created pod: {}", name_of(&created)),
        "job-controller",
    );
    Ok(())
}

/// Creates the Job a CronJob would create now, as the CronJob controller does.
pub fn fire_cronjob(st: &mut State, ns: &str, name: &str) -> Result<String, ApiError> {
    let cj = st
        .get(Res::CronJob, ns, name)
        .ok_or_else(|| ApiError::not_found(Res::CronJob, name))?;
    let secs = now_secs();
    let scheduled = secs - secs % 60;
    let job_name = format!("{name}-{}", scheduled / 60);
    let tmpl = cj
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = tmpl.get("metadata").cloned().unwrap_or(json!({}));
    meta["name"] = json!(job_name);
    util::set(
        &mut meta,
        &[
            "annotations",
            "batch.kubernetes.io/cronjob-scheduled-timestamp",
        ],
        json!(util::rfc3339(scheduled)),
    );
    meta["ownerReferences"] = json!([util::controller_ref(Res::CronJob, &cj)]);
    let job = json!({"metadata": meta, "spec": tmpl.get("spec").cloned().unwrap_or(json!({}))});
    let created = st.create(Res::Job, ns, job, Actor::Controller, false)?;
    let jref = json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": ns, "name": job_name,
        "uid": uid_of(&created), "resourceVersion": s(&created, "/metadata/resourceVersion")});
    st.modify(Res::CronJob, ns, name, |c| {
        let mut active = c["status"]["active"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        active.push(jref);
        c["status"]["active"] = json!(active);
        c["status"]["lastScheduleTime"] = json!(util::rfc3339(scheduled));
    });
    events::record(
        st,
        Res::CronJob,
        &cj,
        "Normal",
        "SuccessfulCreate",
        &format!("Created job {job_name}"),
        "cronjob-controller",
    );
    Ok(job_name)
}

/// Keeps each CronJob's status.active to Jobs that still run.
pub fn cronjobs(st: &mut State) {
    for cj in st.list(Res::CronJob, None) {
        let Some(active) = cj["status"]["active"].as_array() else {
            continue;
        };
        let ns = util::ns_of(&cj).to_string();
        let keep: Vec<Value> = active
            .iter()
            .filter(|r| {
                st.get(Res::Job, &ns, s(r, "/name"))
                    .is_some_and(|j| !finished(&j))
            })
            .cloned()
            .collect();
        if keep.len() != active.len() {
            let t = now();
            st.modify(Res::CronJob, &ns, name_of(&cj), |c| {
                c["status"]["active"] = json!(keep);
                if keep.is_empty() {
                    c["status"]["lastSuccessfulTime"] = json!(t);
                    if let Some(m) = c["status"].as_object_mut() {
                        m.remove("active");
                    }
                }
            });
        }
    }
}
