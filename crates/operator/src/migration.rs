//! The Migration controller: a claim moved to another storage class and its workload cut over
//! by the migrate workflow of the command line (`pvc-backup migrate CLAIM --storage-class SC`),
//! or with `rollback: true` moved back (`pvc-backup migrate CLAIM --rollback`), as
//! [`run`](crate::run) describes. Nothing is deleted: the old volume stays.

use cluster::connect::Kube;
use cluster::run::Observer;
use cluster::workflow::migrate::{self as flow, MigrateRequest};
use cluster::workflow::{self, MoverSettings};
use resources::common::{Mover, RunStatus};
use resources::migration::Migration;

use crate::restore::{scale_timeout, workload_of};
use crate::run::{Ended, RunKind};

/// The workflow's request for a Migration (not a rollback): its spec as `pvc-backup migrate`
/// flags would give it, with `run` (from the Migration's uid) naming the Jobs.
pub fn request(migration: &Migration, run: &str) -> MigrateRequest {
    let spec = &migration.spec;
    MigrateRequest {
        claim: spec.source.claim.clone(),
        storage_class: spec.storage_class_name.clone().unwrap_or_default(),
        workload: spec.workload.as_ref().map(workload_of),
        keep_name: spec.keep_name,
        size: spec.size.as_ref().map(|q| q.0.clone()),
        scale_timeout: scale_timeout(spec.scale_timeout_seconds),
        run: Some(run.to_owned()),
    }
}

impl RunKind for Migration {
    const KIND: &'static str = "Migration";

    fn run_status(&self) -> Option<&RunStatus> {
        self.status.as_ref()
    }

    fn claim(&self) -> &str {
        &self.spec.source.claim
    }

    fn mover(&self) -> Option<&Mover> {
        self.spec.mover.as_ref()
    }

    fn first_job(&self, run: &str) -> String {
        workflow::job_name_in_run(&format!("{}-migrate", self.spec.source.claim), run)
    }

    async fn carry_out(
        &self,
        kube: Kube,
        run: String,
        settings: MoverSettings,
        observer: &mut dyn Observer,
    ) -> cluster::Result<Ended> {
        let spec = &self.spec;
        if spec.rollback {
            let workload = spec.workload.as_ref().map(workload_of);
            let report = flow::rollback(
                &kube,
                &spec.source.claim,
                spec.storage_class_name.as_deref(),
                workload.as_ref(),
                scale_timeout(spec.scale_timeout_seconds),
                observer,
            )
            .await?;
            let mut said = format!("claim {} is back where it was", report.claim);
            if let Some(w) = &report.workload {
                said.push_str(&format!(", used by {w}"));
            }
            said.push_str(&format!(
                "; what was written since the migration is kept in claim {}",
                report.newer_data
            ));
            return Ok(Ended {
                outcomes: Vec::new(),
                said: Some(said),
                ..Ended::default()
            });
        }
        let report = flow::run(&kube, &request(self, &run), &settings, observer).await?;
        let mut said = format!(
            "claim {} moved from volume {} to volume {}; {} uses claim {}",
            report.claim,
            report.old_volume,
            report.new_volume,
            report.workload.as_deref().unwrap_or("no workload"),
            report.now_used
        );
        for note in &report.notes {
            said.push_str("; ");
            said.push_str(note);
        }
        Ok(Ended {
            outcomes: report.outcomes,
            said: Some(said),
            ..Ended::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::common::ClaimSource;
    use resources::migration::MigrationSpec;
    use std::time::Duration;

    #[test]
    fn a_migration_asks_what_the_command_line_would() {
        let m = Migration::new(
            "to-fast",
            MigrationSpec {
                source: ClaimSource {
                    claim: "data".into(),
                },
                storage_class_name: Some("fast".into()),
                workload: None,
                keep_name: true,
                size: None,
                scale_timeout_seconds: None,
                rollback: false,
                mover: None,
            },
        );
        let r = request(&m, "ab12c");
        assert_eq!(
            (r.claim.as_str(), r.storage_class.as_str()),
            ("data", "fast")
        );
        assert!(r.keep_name);
        assert_eq!(r.scale_timeout, Duration::from_secs(300));
        assert_eq!(r.run.as_deref(), Some("ab12c"));
        assert_eq!(m.first_job("ab12c"), "data-migrate-ab12c");
    }
}
