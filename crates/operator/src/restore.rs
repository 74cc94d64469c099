//! The Restore controller: a snapshot of a backup claim restored into a claim by the restore
//! workflow of the command line (`pvc-backup restore CLAIM --from BACKUP`), as
//! [`run`](crate::run) describes. With `target.create`, the claim is created first when it
//! does not exist: like the backup claim (its size and class) unless the Restore says otherwise;
//! from a repository, of the size it gives, on its class or the cluster's default.
//! A Restore without `target` is a volume populator's source, carried out for each claim that
//! names it by [`populate`](crate::populate), never by itself.

use std::time::Duration;

use cluster::connect::Kube;
use cluster::objects::claim::{ClaimRequest, Role, claim};
use cluster::run::Observer;
use cluster::workflow::restore::{self as flow, RestoreRequest};
use cluster::workflow::{self, MoverSettings};
use cluster::{api, workload};
use resources::common::{Mover, RunStatus, WorkloadKind, WorkloadRef};
use resources::restore::Restore;

use crate::run::{Ended, RunKind};

/// The workflow's request for a Restore into claim `into`: its spec as `pvc-backup restore`
/// flags would give it, with `run` (from the Restore's uid) naming the Job.
pub fn request(restore: &Restore, into: &str, run: &str) -> RestoreRequest {
    let spec = &restore.spec;
    let repository = spec.source.repository.as_ref();
    RestoreRequest {
        claim: into.to_owned(),
        from: spec
            .source
            .claim
            .clone()
            .or_else(|| repository.map(|r| r.url.clone()))
            .unwrap_or_default(),
        repository: repository.map(crate::backup::repository),
        host: repository.and_then(|r| r.host.clone()),
        snapshot: spec
            .source
            .snapshot
            .clone()
            .unwrap_or_else(|| store::layout::LATEST.to_owned()),
        workload: spec.workload.as_ref().map(workload_of),
        swap: false,
        scale_timeout: scale_timeout(spec.scale_timeout_seconds),
        run: Some(run.to_owned()),
    }
}

/// The name of the Job that restores into claim `into` in run `run`, as the restore workflow
/// names it.
pub fn job_name(into: &str, run: &str) -> String {
    workflow::job_name_in_run(&format!("{into}-restore"), run)
}

/// How long a workload's pods may take to stop: `scaleTimeoutSeconds`, or the commands'
/// default of 300 s.
pub fn scale_timeout(seconds: Option<i32>) -> Duration {
    Duration::from_secs(seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(300))
}

/// A resource's workload as the workflows name one.
pub fn workload_of(w: &WorkloadRef) -> workload::Workload {
    workload::Workload {
        kind: match w.kind {
            WorkloadKind::Deployment => workload::Kind::Deployment,
            WorkloadKind::StatefulSet => workload::Kind::StatefulSet,
            WorkloadKind::DeploymentConfig => workload::Kind::DeploymentConfig,
        },
        name: w.name.clone(),
    }
}

impl RunKind for Restore {
    const KIND: &'static str = "Restore";

    fn run_status(&self) -> Option<&RunStatus> {
        self.status.as_ref()
    }

    fn claim(&self) -> &str {
        match &self.spec.target {
            Some(t) => &t.claim,
            None => self.spec.source.claim.as_deref().unwrap_or_default(),
        }
    }

    fn carried_out(&self) -> bool {
        self.spec.target.is_some()
    }

    fn mover(&self) -> Option<&Mover> {
        self.spec.mover.as_ref()
    }

    fn first_job(&self, run: &str) -> String {
        job_name(self.claim(), run)
    }

    async fn carry_out(
        &self,
        kube: Kube,
        run: String,
        settings: MoverSettings,
        observer: &mut dyn Observer,
    ) -> cluster::Result<Ended> {
        let Some(target) = &self.spec.target else {
            return Err(cluster::Error::Failed(
                "a Restore without spec.target fills the claims that name it in \
                 spec.dataSourceRef; it is not run by itself"
                    .to_owned(),
            ));
        };
        let request = request(self, &target.claim, &run);
        if let Some(create) = &target.create
            && workflow::find_claim(&kube, &request.claim).await?.is_none()
        {
            let new = if request.repository.is_some() {
                // No claim to take after: the size is given (the API server requires it), the
                // class is the one named or the cluster's default.
                let Some(size) = &create.size else {
                    return Err(cluster::Error::Invalid(
                        "a claim created for a Restore from a repository needs \
                         target.create.size"
                            .to_owned(),
                    ));
                };
                cluster::quantity::bytes(&size.0)?;
                ClaimRequest {
                    name: request.claim.clone(),
                    namespace: kube.namespace.clone(),
                    source: request.claim.clone(),
                    role: Role::Restore,
                    size: size.clone(),
                    storage_class: create.storage_class_name.clone(),
                    access_modes: vec!["ReadWriteOnce".to_owned()],
                    volume_mode: "Filesystem".to_owned(),
                    data_source: None,
                }
            } else {
                let backup = workflow::get_claim(&kube, &request.from).await?;
                let mut new = ClaimRequest::like(
                    &backup,
                    &request.claim,
                    Role::Restore,
                    create.storage_class_name.as_deref(),
                    None,
                )?;
                // A snapshot can hold less than its backup claim: a size given is taken as it
                // is, not held to the backup claim's.
                if let Some(size) = &create.size {
                    cluster::quantity::bytes(&size.0)?;
                    new.size = size.clone();
                }
                new
            };
            observer.step(&format!("creating claim {}", request.claim));
            api::create(
                &api::namespaced(&kube),
                "claim",
                &request.claim,
                &claim(&new),
            )
            .await?;
        }
        let report = flow::run(&kube, &request, &settings, observer).await?;
        match report.outcome {
            Some(outcome) => Ok(Ended {
                outcomes: vec![outcome],
                said: Some(format!(
                    "snapshot {} of {} {} restored into claim {}",
                    report.snapshot,
                    if request.repository.is_some() {
                        "repository"
                    } else {
                        "claim"
                    },
                    report.from,
                    report.claim
                )),
                snapshot: Some(report.snapshot),
            }),
            None => Err(cluster::Error::Failed(
                "the restore's Job was not followed".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::restore::{NewClaim, RestoreSource, RestoreSpec, RestoreTarget};

    fn restore(snapshot: Option<&str>, workload: Option<WorkloadRef>) -> Restore {
        Restore::new(
            "back",
            RestoreSpec {
                source: RestoreSource {
                    claim: Some("data-backup".into()),
                    repository: None,
                    snapshot: snapshot.map(str::to_owned),
                },
                target: Some(RestoreTarget {
                    claim: "data".into(),
                    create: None::<NewClaim>,
                }),
                workload,
                scale_timeout_seconds: Some(60),
                mover: None,
            },
        )
    }

    #[test]
    fn a_restore_asks_what_the_command_line_would() {
        let r = request(
            &restore(
                Some("2026-12-06T02-00-00Z"),
                Some(WorkloadRef {
                    kind: WorkloadKind::StatefulSet,
                    name: "db".into(),
                }),
            ),
            "data",
            "ab12c",
        );
        assert_eq!((r.claim.as_str(), r.from.as_str()), ("data", "data-backup"));
        assert_eq!(r.snapshot, "2026-12-06T02-00-00Z");
        assert_eq!(
            r.workload.map(|w| w.to_string()).as_deref(),
            Some("statefulset/db")
        );
        assert_eq!(r.scale_timeout, Duration::from_secs(60));
        assert!(!r.swap);
        assert_eq!(r.run.as_deref(), Some("ab12c"));
        // No snapshot named: the newest, as the command line's default.
        assert_eq!(
            request(&restore(None, None), "data", "ab12c").snapshot,
            "latest"
        );
        assert_eq!(restore(None, None).first_job("ab12c"), "data-restore-ab12c");
    }

    #[test]
    fn a_restore_from_a_repository_asks_for_its_series_without_reading_its_secret() {
        let mut back = restore(Some("4f1c0d2e"), None);
        back.spec.source = RestoreSource {
            claim: None,
            repository: Some(resources::common::Repository {
                url: "s3:http://s3.example:8333/backups/apps".into(),
                secret_name: "apps-repository".into(),
                host: Some("apps/db".into()),
                init: false,
            }),
            snapshot: Some("4f1c0d2e".into()),
        };
        let r = request(&back, "data", "ab12c");
        let repo = r.repository.clone().expect("a repository");
        assert_eq!(repo.secret, "apps-repository");
        assert!(!repo.checks_secret());
        assert_eq!(r.from, "s3:http://s3.example:8333/backups/apps");
        assert_eq!(
            (r.host.as_deref(), r.snapshot.as_str()),
            (Some("apps/db"), "4f1c0d2e")
        );
        assert_eq!(back.claim(), "data");
    }
}
