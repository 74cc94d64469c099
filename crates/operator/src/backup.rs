//! The Backup controller: each Backup is carried out once by the backup workflow of the command
//! line (`pvc-backup backup`), as [`run`](crate::run) describes.

use cluster::connect::Kube;
use cluster::objects::repository::RepositoryTarget;
use cluster::run::Observer;
use cluster::workflow::MoverSettings;
use cluster::workflow::backup::{self as flow, BackupRequest};
use resources::backup::{Backup, Method};
use resources::common::{Mover, Repository, RunStatus};

use crate::run::{Ended, RunKind};

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
        init: target.repository.as_ref().is_some_and(|r| r.init),
        repository: target.repository.as_ref().map(repository),
    }
}

/// A resource's repository as the workflows take it. The operator may not read Secrets: a
/// missing Secret or key shows as the mover pod's `CreateContainerConfigError`, which ends the
/// run with the kubelet's words.
pub fn repository(r: &Repository) -> RepositoryTarget {
    RepositoryTarget {
        url: r.url.clone(),
        secret: r.secret_name.clone(),
        host: r.host.clone(),
        skip_secret_check: true,
    }
}

impl RunKind for Backup {
    const KIND: &'static str = "Backup";

    fn run_status(&self) -> Option<&RunStatus> {
        self.status.as_ref()
    }

    fn claim(&self) -> &str {
        &self.spec.source.claim
    }

    fn mover(&self) -> Option<&Mover> {
        self.spec.options.mover.as_ref()
    }

    fn first_job(&self, run: &str) -> String {
        request(self, run).job_name()
    }

    async fn carry_out(
        &self,
        kube: Kube,
        run: String,
        settings: MoverSettings,
        observer: &mut dyn Observer,
    ) -> cluster::Result<Ended> {
        let report = flow::run(&kube, &request(self, &run), &settings, observer).await?;
        match report.outcome {
            Some(outcome) => Ok(Ended {
                outcomes: vec![outcome],
                said: None,
                ..Ended::default()
            }),
            None => Err(cluster::Error::Failed(format!(
                "Job {} was not followed",
                report.job
            ))),
        }
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
                repository: None,
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
    fn a_backup_into_a_repository_asks_for_it_without_reading_its_secret() {
        let b = backup(BackupOptions {
            target: Some(BackupTarget {
                repository: Some(Repository {
                    url: "s3:http://s3.example:8333/backups/apps".into(),
                    secret_name: "apps-repository".into(),
                    host: None,
                    init: true,
                }),
                ..BackupTarget::default()
            }),
            ..BackupOptions::default()
        });
        let r = request(&b, "ab12c");
        let repo = r.repository.clone().expect("a repository");
        assert_eq!(
            (repo.url.as_str(), repo.secret.as_str()),
            ("s3:http://s3.example:8333/backups/apps", "apps-repository")
        );
        assert!(r.init && !repo.checks_secret());
        assert_eq!(r.destination(), "s3:http://s3.example:8333/backups/apps");
        assert_eq!(
            flow::secret_permissions(r.repository.as_ref()),
            &[] as &[cluster::access::Permission]
        );

        // The Job the workflow makes of it: the source alone, the repository command, the keys
        // by reference.
        let source = flow::offline_source(&r, "apps", "Filesystem").unwrap();
        let plan = flow::plan(
            &r,
            &MoverSettings::default(),
            &source,
            None,
            Default::default(),
            "data-backup-ab12c",
        )
        .unwrap();
        assert!(plan.create_claim.is_none());
        let job: serde_json::Value = plan.objects().unwrap().pop().unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"].as_array().map(Vec::len), Some(1), "{job:#}");
        let container = &pod["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args[..8],
            [
                "mover",
                "backup",
                "/source",
                "--repository",
                "s3:http://s3.example:8333/backups/apps",
                "--host",
                "apps/data",
                "--init"
            ]
        );
        let env = container["env"].as_array().unwrap();
        assert_eq!(env.len(), 3, "{env:?}");
        for e in env {
            assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "apps-repository");
            assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], e["name"]);
        }
    }

    #[test]
    fn the_job_is_named_once_from_the_uid_and_kept() {
        use crate::run::job_name;
        let mut b = backup(BackupOptions::default());
        let uid = "5F3a-9b21-0000";
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
        let s = crate::run::settings(&MoverSettings::default(), &b);
        assert!(!s.run.stop_job_on_interrupt && !s.detach);
    }
}
