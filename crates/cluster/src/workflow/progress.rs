//! Where a workflow stands, recorded on the cluster so that a run that was killed can go on.
//!
//! A workflow is an ordered list of named steps ([`Steps`]). Its [`Progress`] says which
//! workflow runs with which arguments, the last step completed, and what later steps need (the
//! workloads stopped and their replica counts, the snapshot picked, the volumes involved). It is
//! written as one JSON annotation, [`PROGRESS`], on an object that lives as long as the workflow
//! (the claim it works on; for `migrate --keep-name`, also the old volume while the claim is
//! recreated). The same command run again finds it and goes on from the first step not
//! completed; different arguments are refused, so nothing is lost. This module is pure: reading
//! and writing the annotation is the workflows' business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::workload::Workload;
use crate::{Error, Result};

/// The annotation that holds a workflow's [`Progress`] while it runs.
pub const PROGRESS: &str = "pvc-backup.io/progress";

/// The ordered steps of one workflow.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    /// The workflow's name, as recorded (`migrate`, `restore --swap`).
    pub workflow: &'static str,
    /// The steps, in the order they run.
    pub names: &'static [&'static str],
}

impl Steps {
    fn position(&self, step: &str) -> usize {
        self.names
            .iter()
            .position(|n| *n == step)
            .unwrap_or_else(|| panic!("{step} is not a step of {}", self.workflow))
    }

    /// Whether `step` was completed (it, or a step after it, is the last one recorded).
    pub fn is_done(&self, progress: &Progress, step: &str) -> bool {
        let at = self.position(step);
        progress
            .done
            .as_deref()
            .and_then(|d| self.names.iter().position(|n| *n == d))
            .is_some_and(|done| done >= at)
    }

    /// The position of the last step completed.
    fn done_at(&self, progress: &Progress) -> Option<usize> {
        let done = progress.done.as_deref()?;
        self.names.iter().position(|n| *n == done)
    }

    /// Whether a step after `step` was completed.
    pub fn is_past(&self, progress: &Progress, step: &str) -> bool {
        self.done_at(progress) > Some(self.position(step))
    }

    /// Whether record `a` went further than record `b`.
    pub fn went_further(&self, a: &Progress, b: &Progress) -> bool {
        self.done_at(a) > self.done_at(b)
    }

    /// Whether any step from `first` to `last` (both included) is still to do.
    pub fn any_pending(&self, progress: &Progress, first: &str, last: &str) -> bool {
        self.names[self.position(first)..=self.position(last)]
            .iter()
            .any(|s| !self.is_done(progress, s))
    }

    /// Records `step` as completed; a step never goes back to an earlier one.
    pub fn complete(&self, progress: &mut Progress, step: &str) {
        if !self.is_done(progress, step) {
            progress.done = Some(step.to_owned());
        }
    }

    /// The record to go on with: `found` when it is a record of this workflow with the same
    /// arguments, a fresh one when there is none. A record of another workflow, or of this one
    /// with other arguments, is refused: `holder` names the object it is on.
    pub fn resume_or_start(
        &self,
        found: Option<Progress>,
        claim: &str,
        arguments: &str,
        holder: &str,
    ) -> Result<Progress> {
        let Some(found) = found else {
            return Ok(Progress::new(self.workflow, claim, arguments));
        };
        if found.workflow == self.workflow && found.arguments == arguments && found.claim == claim {
            return Ok(found);
        }
        Err(Error::Invalid(format!(
            "{holder} carries annotation {PROGRESS}: `{}` of claim {} with arguments \"{}\" was \
             interrupted after step {}. Run that command again with the same arguments to finish \
             it; or, once you have checked that nothing of it needs finishing (workloads scaled \
             down, claims half-moved), remove the annotation: `kubectl annotate {holder} \
             {PROGRESS}-`. Nothing was changed",
            found.workflow,
            found.claim,
            found.arguments,
            found.done.as_deref().unwrap_or("(none)"),
        )))
    }
}

/// A workload a workflow stopped, and the replica count it gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// `KIND/NAME`.
    pub workload: String,
    /// Its replica count before the workflow stopped it.
    pub replicas: i32,
}

/// Where a workflow stands: what [`PROGRESS`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The workflow ([`Steps::workflow`]).
    pub workflow: String,
    /// The claim it works on, `NAME` in the command's namespace.
    pub claim: String,
    /// The arguments that decide what the workflow does, as a canonical text.
    pub arguments: String,
    /// A short id of this run, part of its Jobs' names, so that a run that goes on finds the
    /// Jobs the interrupted one created.
    pub run: String,
    /// The last step completed; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    /// The workloads stopped, with their replica counts from before (never the zero seen later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<Stopped>,
    /// Values later steps need, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, String>,
}

impl Progress {
    /// A fresh record, no step done yet.
    pub fn new(workflow: &str, claim: &str, arguments: &str) -> Progress {
        Progress {
            workflow: workflow.to_owned(),
            claim: claim.to_owned(),
            arguments: arguments.to_owned(),
            run: crate::workflow::job_suffix(),
            ..Progress::default()
        }
    }

    /// The record in an object's annotations, `None` when there is none. `holder` names the
    /// object for the error about an unreadable record.
    pub fn read(
        annotations: Option<&BTreeMap<String, String>>,
        holder: &str,
    ) -> Result<Option<Progress>> {
        let Some(text) = annotations.and_then(|a| a.get(PROGRESS)) else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|source| Error::Decode {
                what: format!(
                    "annotation {PROGRESS} of {holder} is not a record pvc-backup can read \
                     (remove it with `kubectl annotate {holder} {PROGRESS}-` once you have \
                     checked what it describes)"
                ),
                source,
            })
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a record of strings serializes")
    }

    /// The workloads stopped, with their counts, parsed.
    pub fn stopped_workloads(&self) -> Result<Vec<(Workload, i32)>> {
        self.stopped
            .iter()
            .map(|s| Ok((s.workload.parse()?, s.replicas)))
            .collect()
    }

    /// Records the workloads about to be stopped and the counts they get back.
    pub fn set_stopped(&mut self, workloads: &[(Workload, i32)]) {
        self.stopped = workloads
            .iter()
            .map(|(w, n)| Stopped {
                workload: w.to_string(),
                replicas: *n,
            })
            .collect();
    }

    /// A value later steps need.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.state.get(key).map(String::as_str)
    }

    /// Keeps a value for later steps.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.state.insert(key.to_owned(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: Steps = Steps {
        workflow: "migrate",
        names: &["create", "copy", "stop", "switch", "start"],
    };

    #[test]
    fn steps_are_done_up_to_the_last_recorded_one() {
        let mut p = Progress::new("migrate", "data", "storage-class=fast");
        assert!(!STEPS.is_done(&p, "create"));
        assert!(STEPS.any_pending(&p, "create", "start"));
        STEPS.complete(&mut p, "copy");
        assert!(STEPS.is_done(&p, "create") && STEPS.is_done(&p, "copy"));
        assert!(!STEPS.is_done(&p, "stop"));
        assert!(!STEPS.any_pending(&p, "create", "copy"));
        assert!(STEPS.any_pending(&p, "copy", "switch"));
        // Doing an earlier step again does not move the record back.
        STEPS.complete(&mut p, "create");
        assert_eq!(p.done.as_deref(), Some("copy"));
        assert!(STEPS.is_past(&p, "create") && !STEPS.is_past(&p, "copy"));
        let fresh = Progress::new("migrate", "data", "storage-class=fast");
        assert!(STEPS.went_further(&p, &fresh) && !STEPS.went_further(&fresh, &p));
    }

    #[test]
    fn a_record_goes_through_its_annotation_unchanged() {
        let mut p = Progress::new("migrate", "data", "storage-class=fast keep-name=true");
        STEPS.complete(&mut p, "stop");
        p.set_stopped(&[("deployment/web".parse().unwrap(), 3)]);
        p.set("oldVolume", "pv-1");
        let annotations = BTreeMap::from([(PROGRESS.to_owned(), p.to_annotation())]);
        let back = Progress::read(Some(&annotations), "pvc/data")
            .unwrap()
            .unwrap();
        assert_eq!(back, p);
        assert_eq!(
            back.stopped_workloads().unwrap(),
            [("deployment/web".parse().unwrap(), 3)]
        );
        assert_eq!(back.get("oldVolume"), Some("pv-1"));
        assert_eq!(Progress::read(None, "pvc/data").unwrap(), None);
        let bad = BTreeMap::from([(PROGRESS.to_owned(), "{".to_owned())]);
        let err = Progress::read(Some(&bad), "pvc/data").unwrap_err();
        assert!(err.to_string().contains("pvc-backup.io/progress-"), "{err}");
    }

    #[test]
    fn a_run_goes_on_only_with_the_same_workflow_claim_and_arguments() {
        let fresh = STEPS
            .resume_or_start(None, "data", "a=1", "pvc/data")
            .unwrap();
        assert_eq!(fresh.done, None);
        assert_eq!(fresh.run.len(), 5);
        let mut recorded = fresh.clone();
        STEPS.complete(&mut recorded, "copy");
        let again = STEPS
            .resume_or_start(Some(recorded.clone()), "data", "a=1", "pvc/data")
            .unwrap();
        assert_eq!(again, recorded);
        let err = STEPS
            .resume_or_start(Some(recorded.clone()), "data", "a=2", "pvc/data")
            .unwrap_err()
            .to_string();
        for part in [
            "pvc/data",
            PROGRESS,
            "\"a=1\"",
            "after step copy",
            "same arguments",
            "kubectl annotate pvc/data pvc-backup.io/progress-",
            "Nothing was changed",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let other = Steps {
            workflow: "restore --swap",
            ..STEPS
        };
        assert!(
            other
                .resume_or_start(Some(recorded), "data", "a=1", "pvc/data")
                .is_err()
        );
    }
}
