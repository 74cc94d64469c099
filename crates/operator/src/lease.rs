//! Leader election on a Lease (`coordination.k8s.io/v1`), as Kubernetes' own controllers do it:
//! the replica named in `spec.holderIdentity` acts, and renews the Lease well within
//! `spec.leaseDurationSeconds`; another replica takes it over only once it has seen the Lease
//! unchanged for that long. The time is measured on the waiting replica's own clock, from when it
//! last saw the Lease change, never by comparing its clock with the `renewTime` another node
//! wrote, so clocks that disagree cannot make two replicas act. Every write names the Lease's
//! resourceVersion, so of two replicas that try at once the API server lets one win.

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

/// What to do with `spec` (`None`: no Lease) as replica `me`, having seen it unchanged for
/// `unchanged_for`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => return Decision::Renew,
        None | Some("") => return Decision::TakeOver,
        Some(_) => {}
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    if unchanged_for >= duration {
        Decision::TakeOver
    } else {
        Decision::Wait
    }
}

/// What a replica last saw of the Lease, and when (on its own clock).
struct Seen {
    holder: Option<String>,
    renewed: Option<MicroTime>,
    transitions: Option<i32>,
    at: std::time::Instant,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    seen: std::sync::Mutex<Option<Seen>>,
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
            seen: std::sync::Mutex::new(None),
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

    /// How long this replica has seen the Lease as it is now (zero when it just changed).
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renewed = spec.and_then(|s| s.renew_time.clone());
        let transitions = spec.and_then(|s| s.lease_transitions);
        let mut seen = self.seen.lock().unwrap();
        match seen.as_ref() {
            Some(s)
                if s.holder == holder && s.renewed == renewed && s.transitions == transitions =>
            {
                s.at.elapsed()
            }
            _ => {
                *seen = Some(Seen {
                    holder,
                    renewed,
                    transitions,
                    at: std::time::Instant::now(),
                });
                Duration::ZERO
            }
        }
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
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(spec, &self.identity, self.unchanged_for(spec));
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

    fn lease(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime("2026-12-06T09:59:50Z".parse().unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_created_renewed_waited_for_or_taken_over() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0)), Decision::Create);
        let held = lease("b");
        assert_eq!(decide(Some(&held), "a", s(0)), Decision::Wait);
        assert_eq!(decide(Some(&held), "a", s(14)), Decision::Wait);
        assert_eq!(decide(Some(&held), "b", s(0)), Decision::Renew);
        // Seen unchanged for the lease's duration: the holder is gone.
        assert_eq!(decide(Some(&held), "a", s(15)), Decision::TakeOver);
        // Even a stale Lease of its own is renewed, not taken over.
        assert_eq!(decide(Some(&held), "b", s(60)), Decision::Renew);
        // Released (no holder): free at once.
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", s(0)),
            Decision::TakeOver
        );
    }
}
