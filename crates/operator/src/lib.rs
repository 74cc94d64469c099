//! pvc-backup's operator: controllers that carry out the pvc-backup.io resources with the same
//! workflows as the command line (crates/cluster), keeping each run's progress in its status.
//!
//! It reconciles Backup, Restore, Clone and Migration (each carried out once, [`run`]),
//! BackupSchedule ([`schedule`]), and fills the claims whose data source is a Restore
//! ([`populate`]).

pub mod backup;
pub mod clone;
pub mod install;
pub mod lease;
pub mod metrics;
pub mod migration;
pub mod populate;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::security::Privilege;
use cluster::workflow::MoverSettings;
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use resources::Backup;
use resources::clone::ClaimClone;
use resources::common::Mover;
use resources::migration::Migration;
use resources::restore::Restore;
use resources::schedule::BackupSchedule;
use tokio::task::AbortHandle;

/// What can stop a reconcile; the controller logs it and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    /// Adding or removing the finalizer, or the work under it, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Another replica holds the Lease now, or it could not be renewed in time: this one
    /// stops acting (and exits, for its pod to start it again as a follower).
    #[error(
        "lost the Lease {0}: another replica leads now, or it could not be renewed in time; this \
         one stops"
    )]
    LostLease(String),
    /// The address for the metrics cannot be listened on.
    #[error(
        "cannot listen on {address} for /metrics, /healthz and /readyz; give a free address with --metrics-address"
    )]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch only this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// The mover's settings before a resource's own (its image above all).
    pub settings: MoverSettings,
    /// Act only while holding this Lease (several replicas, one acting); `None`: always act.
    pub lease: Option<LeaseOptions>,
    /// Serve `/metrics`, `/healthz` and `/readyz` here; `None`: not at all.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// The Lease of the leader election.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// This replica's name in it (its pod's name in a cluster).
    pub identity: String,
    /// How long a holder keeps it without renewing.
    pub duration: Duration,
}

/// What the reconcilers share: the client, the settings, and the runs this process follows.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The mover's settings before a resource's own.
    pub settings: MoverSettings,
    /// What the runs add up to.
    pub metrics: Arc<metrics::Metrics>,
    /// Where a run's start and end are told, as Events on its resource.
    pub recorder: Recorder,
    runs: Mutex<HashMap<String, AbortHandle>>,
}

impl Context {
    /// A context with no run followed yet.
    pub fn new(client: Client, settings: MoverSettings, metrics: Arc<metrics::Metrics>) -> Context {
        let reporter = Reporter {
            controller: install::NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this process follows the run of the object with this uid.
    pub fn runs(&self, uid: &str) -> bool {
        self.runs
            .lock()
            .unwrap()
            .get(uid)
            .is_some_and(|h| !h.is_finished())
    }

    fn started(&self, uid: &str, handle: AbortHandle) {
        self.runs.lock().unwrap().insert(uid.to_owned(), handle);
    }

    fn forget(&self, uid: &str) {
        self.runs.lock().unwrap().remove(uid);
    }
}

/// The mover's settings with what a resource's `mover` says over them.
pub fn mover_settings(base: &MoverSettings, mover: Option<&Mover>) -> MoverSettings {
    let mut s = base.clone();
    let Some(m) = mover else {
        return s;
    };
    if m.unprivileged {
        s.privilege = Privilege::Unprivileged { uid: m.run_as_user };
    }
    if m.resources.is_some() {
        s.resources = m.resources.clone();
    }
    if let Some(t) = m.start_timeout_seconds {
        s.run.start_timeout = Duration::from_secs(u64::try_from(t).unwrap_or(0));
    }
    if let Some(d) = m.active_deadline_seconds {
        s.limits.active_deadline_seconds = d;
    }
    if let Some(b) = m.backoff_limit {
        s.limits.backoff_limit = b;
    }
    if !m.exclude.is_empty() {
        s.excludes.patterns = m.exclude.clone();
    }
    s
}

/// Runs the controllers until SIGINT or SIGTERM; with a Lease, only while holding it. Runs in
/// progress are left to their Jobs: the next replica to act follows them again.
pub async fn run(client: Client, options: Options) -> Result<(), Error> {
    let metrics = Arc::new(metrics::Metrics::new());
    let _server = match options.metrics_address {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| Error::Listen { address, source })?;
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
            ))))
        }
        None => None,
    };
    let Some(lease) = &options.lease else {
        return controllers(client, &options, metrics).await;
    };
    let elector = lease::Elector::new(
        Api::namespaced(client.clone(), &lease.namespace),
        &lease.name,
        &lease.identity,
        lease.duration,
    );
    tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity,
        "waiting to hold the Lease");
    tokio::select! {
        held = lead(&elector, &metrics) => held?,
        _ = shutdown_signal() => return Ok(()),
    }
    tracing::info!(lease = %lease.name, identity = %lease.identity, "holds the Lease: acting");
    let result = tokio::select! {
        ended = controllers(client, &options, metrics) => ended,
        lost = keep(&elector) => Err(lost),
    };
    if result.is_ok() {
        // Stopped on a signal: the next replica need not wait for the Lease to run out.
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %cluster::error::chain_text(&e), "Lease not released");
        }
    }
    result
}

/// Waits until this replica holds the Lease.
async fn lead(elector: &lease::Elector, metrics: &metrics::Metrics) -> Result<(), Error> {
    let retry = (elector.duration() / 5).max(Duration::from_secs(1));
    loop {
        let held = elector.try_hold().await;
        if held.is_ok() {
            // A replica that waits is healthy and ready to take over.
            metrics.set_ready();
        }
        match held {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %cluster::error::chain_text(&e), "Lease not read"),
        }
        tokio::time::sleep(retry).await;
    }
}

/// Renews the Lease until another replica holds it or it could not be renewed for as long as it
/// lasts; returns why it stopped.
async fn keep(elector: &lease::Elector) -> Error {
    let every = (elector.duration() / 3).max(Duration::from_secs(1));
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match elector.try_hold().await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => return Error::LostLease(elector.identity().to_owned()),
            Err(e) => {
                tracing::warn!(error = %cluster::error::chain_text(&e), "Lease not renewed");
                // Stop before another replica may take it over and act too.
                if renewed.elapsed() + every >= elector.duration() {
                    return Error::LostLease(elector.identity().to_owned());
                }
            }
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return futures::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The controllers, until SIGINT or SIGTERM.
async fn controllers(
    client: Client,
    options: &Options,
    metrics: Arc<metrics::Metrics>,
) -> Result<(), Error> {
    metrics.set_ready();
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.settings.clone(),
        metrics,
    ));
    tracing::info!(namespace = ?options.namespace, "reconciling BackupSchedules, Backups, Restores, Clones and Migrations");
    let ns = options.namespace.as_deref();
    futures::join!(
        schedules(&client, ns, &ctx),
        one_run::<Backup>(&client, ns, &ctx),
        one_run::<Restore>(&client, ns, &ctx),
        one_run::<ClaimClone>(&client, ns, &ctx),
        one_run::<Migration>(&client, ns, &ctx),
        claims(&client, ns, &ctx),
    );
    tracing::info!("operator stops; running Jobs go on");
    Ok(())
}

/// Reconciles run at once per controller. Unbounded, 1,000 schedules opened 1,000 connections
/// to the API server at start (the client speaks HTTP/1.1: one connection per request in flight)
/// and held 82 MiB; 64 settles them as fast with 41 MiB (docs/benchmarks.md).
const CONCURRENCY: u16 = 64;

fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(CONCURRENCY)
}

/// The BackupSchedule controller, woken by its schedules' Backups too, until SIGINT or SIGTERM.
async fn schedules(client: &Client, namespace: Option<&str>, ctx: &Arc<Context>) {
    let (schedules, backups): (Api<BackupSchedule>, Api<Backup>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    Controller::new(schedules, watcher::Config::default().any_semantic())
        .owns(
            backups,
            watcher::Config::default()
                .labels(schedule::SCHEDULE_LABEL)
                .any_semantic(),
        )
        .with_config(controller_config())
        .shutdown_on_signal()
        .run(schedule::reconcile, schedule::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(kind = "BackupSchedule", error = %cluster::error::chain_text(&e),
                    "reconcile failed")
            }
        })
        .await;
}

/// The controller of one kind carried out once, until SIGINT or SIGTERM.
async fn one_run<K: run::RunKind>(client: &Client, namespace: Option<&str>, ctx: &Arc<Context>) {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Controller::new(api, watcher::Config::default().any_semantic())
        .with_config(controller_config())
        .shutdown_on_signal()
        .run(run::reconcile::<K>, run::error_policy::<K>, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => {
                    tracing::warn!(kind = K::KIND, error = %cluster::error::chain_text(&e),
                        "reconcile failed")
                }
            }
        })
        .await;
}

/// The volume populator: the controller of claims, which fills those whose data source is a
/// Restore, until SIGINT or SIGTERM.
async fn claims(client: &Client, namespace: Option<&str>, ctx: &Arc<Context>) {
    let api: Api<PersistentVolumeClaim> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let restores: Api<Restore> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let known = controller.store();
    // A Restore created after the claim that names it wakes that claim.
    controller
        .watches(
            restores,
            watcher::Config::default().any_semantic(),
            move |restore: Restore| {
                let (namespace, name) = (restore.namespace(), restore.name_any());
                known
                    .state()
                    .into_iter()
                    .filter(|claim| {
                        claim.namespace() == namespace
                            && populate::restore_named(claim).is_some_and(|(n, _)| n == name)
                    })
                    .map(|claim| ObjectRef::from_obj(&*claim))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(controller_config())
        .shutdown_on_signal()
        .run(populate::reconcile, populate::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(kind = "PersistentVolumeClaim",
                    error = %cluster::error::chain_text(&e), "reconcile failed")
            }
        })
        .await;
}

/// A task stopped when its owner goes.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn a_resource_mover_overrides_only_what_it_says() {
        let base = MoverSettings {
            image: "localhost/pvc-backup:dev".into(),
            ..MoverSettings::default()
        };
        let same = mover_settings(&base, None);
        assert_eq!(same.image, base.image);
        assert!(matches!(same.privilege, Privilege::Mover));

        let m = Mover {
            unprivileged: true,
            run_as_user: Some(1000),
            resources: Some(ResourceRequirements::default()),
            start_timeout_seconds: Some(60),
            active_deadline_seconds: Some(3600),
            backoff_limit: Some(2),
            exclude: vec!["*.tmp".into()],
        };
        let s = mover_settings(&base, Some(&m));
        assert_eq!(s.image, base.image);
        assert!(matches!(
            s.privilege,
            Privilege::Unprivileged { uid: Some(1000) }
        ));
        assert!(s.resources.is_some());
        assert_eq!(s.run.start_timeout, Duration::from_secs(60));
        assert_eq!(s.limits.active_deadline_seconds, 3600);
        assert_eq!(s.limits.backoff_limit, 2);
        assert_eq!(s.excludes.patterns, ["*.tmp"]);
    }
}
