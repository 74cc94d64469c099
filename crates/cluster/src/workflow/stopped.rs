//! One step run with the workloads using a claim stopped (`backup --scale-down`,
//! `clone --scale-down`, restore by copy), recorded so that no run that dies leaves them stopped: the workloads and their replica
//! counts go into the claim's [`PROGRESS`] record before they are scaled down, and the same
//! command run again stops the same workloads (found from the record, as their pods are gone),
//! runs its step and gives them those counts back.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::connect::Kube;
use crate::run::Observer;
use crate::workflow;
use crate::workflow::progress::{PROGRESS, Progress, Steps};
use crate::workload::{self, ScaledDown, Workload};
use crate::{Error, Result};

const STOP: &str = "scale-down";
const RUN: &str = "run";
const START: &str = "scale-up";

/// The steps of a backup with `--scale-down`.
pub const BACKUP_STEPS: Steps = Steps {
    workflow: "backup --scale-down",
    names: &[STOP, RUN, START],
};

/// The steps of a clone with `--scale-down`.
pub const CLONE_STEPS: Steps = Steps {
    workflow: "clone --scale-down",
    names: &[STOP, RUN, START],
};

/// The steps of a restore by copy.
pub const RESTORE_STEPS: Steps = Steps {
    workflow: "restore",
    names: &[STOP, RUN, START],
};

/// A workflow that stops workloads for one step, and its record on the claim.
#[derive(Debug)]
pub struct StoppedFor {
    steps: Steps,
    claim: String,
    progress: Progress,
    resumed: bool,
}

impl StoppedFor {
    /// Reads the record on `claim`: a run of `steps` with the same `arguments` goes on; a record
    /// of anything else is refused before anything is changed.
    pub fn begin(
        steps: Steps,
        claim: &PersistentVolumeClaim,
        namespace: &str,
        arguments: &str,
    ) -> Result<StoppedFor> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let holder = format!("pvc/{name} -n {namespace}");
        let found = Progress::read(claim.metadata.annotations.as_ref(), &holder)?;
        let resumed = found.is_some();
        let progress = steps.resume_or_start(found, &name, arguments, &holder)?;
        Ok(StoppedFor {
            steps,
            claim: name,
            progress,
            resumed,
        })
    }

    /// A fresh run gets the id `run` (when given) instead of a new one, for a caller that names
    /// its runs itself; a run that goes on keeps its record's.
    pub fn named(mut self, run: Option<&str>) -> StoppedFor {
        if let (false, Some(run)) = (self.resumed, run) {
            self.progress.run = run.to_owned();
        }
        self
    }

    /// The workloads a run that was interrupted stopped; `None` for a fresh run.
    pub fn recorded(&self) -> Result<Option<Vec<Workload>>> {
        if !self.resumed {
            return Ok(None);
        }
        Ok(Some(
            self.progress
                .stopped_workloads()?
                .into_iter()
                .map(|(w, _)| w)
                .collect(),
        ))
    }

    /// The name of the run's Job `prefix-RUN`: the same when an interrupted run goes on, which
    /// then follows the Job it created instead of starting a second copy beside it.
    pub fn job_name(&self, prefix: &str) -> String {
        workflow::job_name_in_run(prefix, &self.progress.run)
    }

    /// What `--scale-down` does: stops the workloads whose pods use the claim (or, when an
    /// interrupted run goes on, those its record names: their pods are gone).
    pub async fn stop_users(
        &mut self,
        kube: &Kube,
        observer: &mut dyn Observer,
    ) -> Result<ScaledDown> {
        let workloads = match self.recorded()? {
            Some(recorded) => recorded,
            None => workload::users_of(kube, &self.claim).await?,
        };
        observer.step(&format!(
            "scaling down the workloads that use claim {}",
            self.claim
        ));
        self.stop(kube, &workloads, workload::DEFAULT_SCALE_TIMEOUT)
            .await
    }

    /// Records `workloads` with the counts they get back (an interrupted run's, when it
    /// recorded them), then scales them to zero and waits for their pods to be gone.
    pub async fn stop(
        &mut self,
        kube: &Kube,
        workloads: &[Workload],
        timeout: std::time::Duration,
    ) -> Result<ScaledDown> {
        let mut counts = self.progress.stopped_workloads()?;
        let new: Vec<Workload> = workloads
            .iter()
            .filter(|w| !counts.iter().any(|(c, _)| c == *w))
            .cloned()
            .collect();
        counts.extend(workload::counts_to_restore(kube, &new).await?);
        self.progress.set_stopped(&counts);
        self.save(kube).await?;
        match workload::scale_down_to_zero(kube, &counts, &[&self.claim], timeout).await {
            Ok(guard) => {
                self.steps.complete(&mut self.progress, STOP);
                self.save(kube).await?;
                Ok(guard)
            }
            Err(e) => {
                // Scaled back up already, unless that failed too.
                if matches!(e, Error::UndoFailed { .. }) {
                    return Err(e);
                }
                let cleared = self.clear(kube).await;
                Error::with_undo(Err(e), cleared)
            }
        }
    }

    /// Scales the workloads back up after the step and removes the record; a failure to scale
    /// up keeps it, so that the same command run again does it.
    pub async fn start_after<T>(
        mut self,
        kube: &Kube,
        guard: ScaledDown,
        observer: &mut dyn Observer,
        result: Result<T>,
    ) -> Result<T> {
        if result.is_ok() {
            self.steps.complete(&mut self.progress, RUN);
        }
        let restored = guard.scale_up_after(kube, observer, Ok(())).await;
        let done = match restored {
            Ok(()) => {
                self.steps.complete(&mut self.progress, START);
                self.clear(kube).await
            }
            Err(e) => {
                let _ = self.save(kube).await;
                Err(e.context(format!(
                    "annotation {PROGRESS} on claim {} keeps the replica counts: run the same \
                     command again to scale the workloads back up",
                    self.claim
                )))
            }
        };
        Error::with_undo(result, done)
    }

    /// Leaves the workloads stopped for a step that goes on after this process (a detached
    /// copy; `rollback` scales them up) and removes the record.
    pub async fn leave_down(self, kube: &Kube, guard: ScaledDown) -> Result<()> {
        guard.leave_down();
        self.clear(kube).await
    }

    async fn save(&self, kube: &Kube) -> Result<()> {
        workflow::record_progress(kube, &self.claim, Some(&self.progress)).await
    }

    async fn clear(&self, kube: &Kube) -> Result<()> {
        workflow::record_progress(kube, &self.claim, None).await
    }
}
