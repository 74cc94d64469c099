//! Stopping the workloads that use a claim and starting them again: the scale-down guard that
//! gives each its count back whatever happens.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use serde_json::json;

use crate::api;
use crate::connect::Kube;
use crate::placement;
use crate::run::Observer;
use crate::{Error, Result};

use super::*;

/// Workloads pvc-backup scaled to zero, with the counts to give back: the guard of every step
/// that runs with workloads stopped.
///
/// Scale down with [`scale_down`], run the step, and hand its result to
/// [`ScaledDown::scale_up_after`], which scales back up whatever happened and combines the
/// errors one way ([`Error::with_undo`]). Dropping it does nothing; the count is also kept in
/// the [`SCALED_DOWN_FROM`] annotation on each workload, where a later `scale_down` (or
/// `rollback`) finds it if this process dies first.
#[derive(Debug, Default)]
#[must_use = "restore() scales the workloads back up"]
pub struct ScaledDown {
    workloads: Vec<(Workload, i32)>,
}

impl ScaledDown {
    /// The workloads and the replica counts they will get back.
    pub fn workloads(&self) -> &[(Workload, i32)] {
        &self.workloads
    }

    /// The guard of workloads an interrupted run stopped, with the counts its record keeps: what
    /// a run that goes on scales back up.
    pub fn left_by_earlier_run(workloads: Vec<(Workload, i32)>) -> ScaledDown {
        ScaledDown { workloads }
    }

    /// Whether nothing was scaled down.
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// Scales the workloads back up after a step that ran with them stopped, and returns the
    /// step's result: its error stays the primary one, and a failure to scale back up is
    /// attached to it (or is the error, when the step succeeded).
    pub async fn scale_up_after<T>(
        self,
        kube: &Kube,
        observer: &mut dyn Observer,
        step: Result<T>,
    ) -> Result<T> {
        if let Some(message) = self.scaling_up() {
            observer.step(&message);
        }
        let restored = self.restore(kube).await;
        Error::with_undo(step, restored)
    }

    /// Leaves the workloads scaled down, for a step that goes on after this process (a detached
    /// copy): their [`SCALED_DOWN_FROM`] annotations keep the counts for `rollback`.
    pub fn leave_down(self) {}

    /// The step line for scaling back up; `None` when nothing was scaled down.
    pub(super) fn scaling_up(&self) -> Option<String> {
        match self.workloads.as_slice() {
            [] => None,
            [(w, _)] => Some(format!("scaling {w} back up")),
            _ => Some("scaling the workloads back up".to_owned()),
        }
    }

    /// Scales every workload back to its count and removes the annotation. Tries all of them
    /// even when one fails, and reports every failure with the command that finishes the job.
    async fn restore(self, kube: &Kube) -> Result<()> {
        let mut failures = Vec::new();
        for (w, n) in &self.workloads {
            let patch = json!({
                "metadata": {"annotations": {SCALED_DOWN_FROM: null}},
                "spec": {"replicas": n},
            });
            if let Err(e) = w.patch(kube, patch).await {
                failures.push(format!(
                    "{} (run: kubectl scale {w} --replicas={n} -n {})",
                    e.full_message(),
                    kube.namespace
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "could not scale back up: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Scales `workloads` to zero and waits until no pod holds any of `claims` any more.
///
/// The previous replica count is written to each workload's [`SCALED_DOWN_FROM`] annotation
/// first. A workload already at zero with that annotation (left by a run that died) keeps the
/// annotated count as the one to return to. If the pods are not gone within `timeout`, the
/// workloads are scaled back up and the error names the pods still running.
pub async fn scale_down(
    kube: &Kube,
    workloads: &[Workload],
    claims: &[&str],
    timeout: Duration,
) -> Result<ScaledDown> {
    let counts = counts_to_restore(kube, workloads).await?;
    scale_down_to_zero(kube, &counts, claims, timeout).await
}

/// The replica count each of `workloads` gets back once it was stopped: its count now, or the
/// one in its [`SCALED_DOWN_FROM`] annotation when it is at zero with one (left by a run that
/// died).
pub async fn counts_to_restore(
    kube: &Kube,
    workloads: &[Workload],
) -> Result<Vec<(Workload, i32)>> {
    let mut counts = Vec::new();
    for w in workloads {
        let obj = w.get(kube).await?;
        let current = spec_replicas(&obj);
        let annotated = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SCALED_DOWN_FROM))
            .and_then(|v| v.parse::<i32>().ok());
        let back_to = match annotated {
            Some(n) if current == 0 => n,
            _ => current,
        };
        counts.push((w.clone(), back_to));
    }
    Ok(counts)
}

/// [`scale_down`] with the counts to give back known (from [`counts_to_restore`], or from a
/// workflow's record when it goes on after an interruption: never the zero seen then).
/// Stopping a workload already at zero is harmless, so a step that was half done can be done
/// again.
pub async fn scale_down_to_zero(
    kube: &Kube,
    counts: &[(Workload, i32)],
    claims: &[&str],
    timeout: Duration,
) -> Result<ScaledDown> {
    let mut done = ScaledDown::default();
    for (w, back_to) in counts {
        let back_to = *back_to;
        let patch = json!({
            "metadata": {"annotations": {SCALED_DOWN_FROM: back_to.to_string()}},
            "spec": {"replicas": 0},
        });
        if let Err(e) = w.patch(kube, patch).await {
            let back = done.restore(kube).await;
            return Error::with_undo(Err(e), back);
        }
        done.workloads.push((w.clone(), back_to));
    }
    if let Err(e) = wait_unused(kube, claims, timeout).await {
        let back = done.restore(kube).await;
        return Error::with_undo(Err(e), back)
            .map_err(|e| stopped_then(e, "the workloads were scaled back up"));
    }
    Ok(done)
}

/// `context` attached to a step's error, unless undoing what came before the step failed too
/// (then what the undo left is what the user must know first).
pub fn stopped_then(e: Error, context: impl Into<String>) -> Error {
    match e {
        Error::UndoFailed { .. } => e,
        e => e.context(context),
    }
}

/// Scales down the workloads that use `claim` (found from its pods) and waits for their pods
/// to be gone: what `--scale-down` does. Nothing using the claim gives an empty guard.
pub async fn scale_down_users(kube: &Kube, claim: &str, timeout: Duration) -> Result<ScaledDown> {
    let users = users_of(kube, claim).await?;
    scale_down(kube, &users, &[claim], timeout).await
}

/// Waits until no pod holds any of `claims`.
pub async fn wait_unused(kube: &Kube, claims: &[&str], timeout: Duration) -> Result<()> {
    let watched = api::wait_all(
        api::namespaced::<Pod>(kube),
        &format!("the pods in namespace {}", kube.namespace),
        watcher::Config::default(),
        timeout,
        |pods| holding(pods, claims).is_empty(),
    )
    .await?;
    if watched.done {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "pods {} still use claim {} after {} s of waiting for them to stop",
        holding(&watched.objects, claims).join(", "),
        claims.join(", "),
        timeout.as_secs()
    )))
}

/// The pods (sorted, once each) that still hold one of `claims`.
pub(super) fn holding(pods: &[Arc<Pod>], claims: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| placement::holds_volumes(p) && claims.iter().any(|c| placement::mounts(p, c)))
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pods_still_running_with_a_claim_hold_it() {
        let pod = |name: &str, claim: &str, phase: &str| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": name},
                    "spec": {"containers": [], "volumes": [
                        {"name": "v", "persistentVolumeClaim": {"claimName": claim}}
                    ]},
                    "status": {"phase": phase}
                }))
                .unwrap(),
            )
        };
        let pods = [
            pod("web-2", "data", "Running"),
            pod("web-1", "data", "Pending"),
            pod("done", "data", "Succeeded"),
            pod("other", "logs", "Running"),
        ];
        assert_eq!(holding(&pods, &["data"]), ["web-1", "web-2"]);
        assert_eq!(
            holding(&pods, &["data", "logs"]),
            ["other", "web-1", "web-2"]
        );
        assert!(holding(&pods, &["conf"]).is_empty());
    }

    #[test]
    fn the_guard_names_what_it_scales_up_and_an_undo_failure_outranks_context() {
        let w = |n: &str| {
            (
                Workload {
                    kind: Kind::Deployment,
                    name: n.into(),
                },
                2,
            )
        };
        assert_eq!(ScaledDown::default().scaling_up(), None);
        let one = ScaledDown {
            workloads: vec![w("web")],
        };
        assert_eq!(
            one.scaling_up().as_deref(),
            Some("scaling deployment/web back up")
        );
        let two = ScaledDown {
            workloads: vec![w("web"), w("api")],
        };
        assert_eq!(
            two.scaling_up().as_deref(),
            Some("scaling the workloads back up")
        );
        // A step that failed, with the workloads back up: what that means comes first.
        let step = Error::Failed("pods web-1 still use claim data".into());
        assert_eq!(
            stopped_then(step, "the workloads were scaled back up").full_message(),
            "the workloads were scaled back up: pods web-1 still use claim data"
        );
        // Scaling back up failed too: that is what the user must act on, then the step's error.
        let both = Error::with_undo::<()>(
            Err(Error::Failed("the final copy failed".into())),
            Err(Error::Failed(
                "could not scale back up: deployment/web".into(),
            )),
        )
        .unwrap_err();
        let kept = stopped_then(both, "the workloads were scaled back up");
        assert_eq!(
            kept.full_message(),
            "could not scale back up: deployment/web; before that: the final copy failed"
        );
        assert!(matches!(kept.primary(), Error::Failed(m) if m == "the final copy failed"));
    }
}
