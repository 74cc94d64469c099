//! Leader election on a Lease (`coordination.k8s.io/v1`), as Kubernetes' own controllers do it:
//! the replica named in `spec.holderIdentity` acts, and renews `spec.renewTime` well within
//! `spec.leaseDurationSeconds`; another replica takes the Lease over only once it has gone that
//! long without renewal. Every write names the Lease's resourceVersion, so of two replicas that
//! try at once the API server lets one win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

use crate::Error;

/// What a replica does with the Lease as it finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// It holds the Lease: renew it.
    Renew,
    /// The holder stopped renewing (or none is named): take it over.
    TakeOver,
    /// Another replica holds it: wait.
    Wait,
}

/// What to do with `spec` (`None`: no Lease) at `now`, as replica `me`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: jiff::Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => return Decision::Renew,
        None | Some("") => return Decision::TakeOver,
        Some(_) => {}
    }
    let duration =
        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at.saturating_add(duration).is_ok_and(|end| end > now) => Decision::Wait,
        _ => Decision::TakeOver,
    }
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    /// Replica `identity` in the election on Lease `name` of `api`'s namespace, holding it for
    /// `duration` after each renewal.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Elector {
        Elector {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// How long a holder keeps the Lease without renewing it.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// This replica's name in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Tries once to hold the Lease: creates, renews or takes it over as [`decide`] says.
    /// `Ok(true)` when this replica holds it now; `Ok(false)` when another one does, or won the
    /// same write.
    pub async fn try_hold(&self) -> Result<bool, Error> {
        let action = format!("read Lease {}", self.name);
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(cluster::Error::api(action))?;
        let now = jiff::Timestamp::now();
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let earlier = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let held = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let result = match decision {
            Decision::Wait => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(held(None, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Renew | Decision::TakeOver => {
                let mut lease = current.unwrap_or_default();
                let transitions = earlier.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == Decision::Renew {
                    held(earlier.acquire_time.clone(), transitions)
                } else {
                    held(None, transitions + 1)
                });
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Another replica wrote the Lease first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(cluster::Error::api(format!("write Lease {}", self.name))(e).into()),
        }
    }
}

impl Elector {
    /// Gives the Lease up if this replica holds it, so that another need not wait for it to
    /// run out.
    pub async fn release(&self) -> Result<(), Error> {
        let action = format!("release Lease {}", self.name);
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(cluster::Error::api(action.clone()))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| cluster::Error::api(action)(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn lease(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_created_renewed_waited_for_or_taken_over() {
        let now = at("2026-12-06T10:00:00Z");
        assert_eq!(decide(None, "a", now), Decision::Create);
        let fresh = lease("b", "2026-12-06T09:59:50Z");
        assert_eq!(decide(Some(&fresh), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&fresh), "b", now), Decision::Renew);
        // 15 s without renewal: the holder is gone.
        let stale = lease("b", "2026-12-06T09:59:45Z");
        assert_eq!(decide(Some(&stale), "a", now), Decision::TakeOver);
        // Even a stale Lease of its own is renewed, not taken over.
        assert_eq!(decide(Some(&stale), "b", now), Decision::Renew);
        // Released (no holder), or never renewed: free.
        let released = LeaseSpec::default();
        assert_eq!(decide(Some(&released), "a", now), Decision::TakeOver);
        let unrenewed = LeaseSpec {
            holder_identity: Some("b".into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&unrenewed), "a", now), Decision::TakeOver);
    }
}
