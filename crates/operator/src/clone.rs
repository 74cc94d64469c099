//! The Clone controller: copies of a claim made by the clone workflow of the command line
//! (`pvc-backup clone CLAIM --to NAME`), as [`run`](crate::run) describes.

use cluster::connect::Kube;
use cluster::run::Observer;
use cluster::workflow::clone::{self as flow, CloneRequest, Method};
use cluster::workflow::{self, MoverSettings};
use resources::clone::{ClaimClone, CloneMethod};
use resources::common::{Mover, RunStatus};

use crate::run::{Ended, RunKind};

/// The workflow's request for a Clone: its spec as `pvc-backup clone` flags would give it, with
/// `run` (from the Clone's uid) naming the Job.
pub fn request(clone: &ClaimClone, run: &str) -> CloneRequest {
    let spec = &clone.spec;
    CloneRequest {
        claim: spec.source.claim.clone(),
        to: spec.target.name.clone(),
        count: spec
            .target
            .count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1),
        storage_class: spec.target.claim.storage_class_name.clone(),
        size: spec.target.claim.size.as_ref().map(|q| q.0.clone()),
        method: match spec.method {
            CloneMethod::Auto => Method::Auto,
            CloneMethod::Csi => Method::Csi,
            CloneMethod::Copy => Method::Copy,
        },
        scale_down: spec.scale_down,
        run: Some(run.to_owned()),
    }
}

impl RunKind for ClaimClone {
    const KIND: &'static str = "Clone";

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
        workflow::job_name_in_run(&format!("{}-clone", self.spec.source.claim), run)
    }

    async fn carry_out(
        &self,
        kube: Kube,
        run: String,
        settings: MoverSettings,
        observer: &mut dyn Observer,
    ) -> cluster::Result<Ended> {
        let report = flow::run(&kube, &request(self, &run), &settings, observer).await?;
        let how = match report.method {
            Method::Csi => "as CSI clones",
            _ => "by the mover",
        };
        let mut said = format!(
            "claim {} copied into {} {how}",
            self.spec.source.claim,
            report.targets.join(", ")
        );
        if let Some(why) = &report.fell_back {
            said.push_str(&format!(" (a CSI clone was given up: {why})"));
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
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use resources::clone::{CloneSpec, CloneTarget};
    use resources::common::ClaimSource;
    use resources::restore::NewClaim;

    #[test]
    fn a_clone_asks_what_the_command_line_would() {
        let c = ClaimClone::new(
            "copies",
            CloneSpec {
                source: ClaimSource {
                    claim: "data".into(),
                },
                target: CloneTarget {
                    name: "data-copy".into(),
                    count: Some(3),
                    claim: NewClaim {
                        storage_class_name: Some("fast".into()),
                        size: Some(Quantity("2Gi".into())),
                    },
                },
                method: CloneMethod::Copy,
                scale_down: true,
                mover: None,
            },
        );
        let r = request(&c, "ab12c");
        assert_eq!(r.targets(), ["data-copy-1", "data-copy-2", "data-copy-3"]);
        assert_eq!(r.storage_class.as_deref(), Some("fast"));
        assert_eq!(r.size.as_deref(), Some("2Gi"));
        assert_eq!(r.method, Method::Copy);
        assert!(r.scale_down);
        assert_eq!(r.run.as_deref(), Some("ab12c"));
        assert_eq!(c.first_job("ab12c"), "data-clone-ab12c");
    }
}
