//! `pvc-backup clone CLAIM --to NAME --to-namespace NS`: a copy of a claim in another namespace.
//!
//! A pod mounts claims of its own namespace only, so one mover cannot read the source and write
//! the copy. Two do, over the wire between movers (`mover send` and `mover receive`, mutual TLS
//! with pinned certificates): a receiving mover in NS mounts the copy and listens behind a
//! ClusterIP Service; a sending mover in the source's namespace mounts the source read-only and
//! connects to that Service by its DNS name. Each side's Secret holds only its own key and
//! certificate and its peer's certificate, from a pair the caller makes for this run alone.
//! With `--via local` no Service is made: both movers listen and the command joins them through
//! port-forwards ([`super::relay`]). A Block claim is copied the same way by `mover block` on
//! each side, device to device, only the chunks whose hashes differ crossing the wire.
//!
//! The Secrets, the Service and both Jobs (with their pods) are deleted at the end, whatever the
//! outcome; the copy, when this run created it and nothing usable was written, too.

use std::time::Duration;

use contract::{ExitCode, MoverCommand, SendPeer};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use kube::api::{DeleteParams, DynamicObject};
use serde_json::Value;

use crate::access;
use crate::api;
use crate::connect::Kube;
use crate::names::{
    self, KEYS_MOUNT, MANAGED_BY, ROLE_LABEL, SERVICE_ACCOUNT, SOURCE_LABEL, SOURCE_MOUNT,
    SOURCE_NAMESPACE_LABEL, TARGET_MOUNT, WIRE_PORT,
};
use crate::objects;
use crate::objects::claim::{self, ClaimRequest, Role};
use crate::objects::mover::{KeysVolume, MoverJob, Placement};
use crate::objects::wire::{self, Expose, Side};
use crate::run::{self as runner, Observer, Outcome};
use crate::workflow::relay;
use crate::workflow::steps::{self, mount};
use crate::workflow::stopped::{CLONE_STEPS, StoppedFor};
use crate::workflow::{self, MoverSettings};
use crate::{Error, Result, placement, workload};

mod address;
use address::{receiver_address, routes};

/// A copy of a claim into another namespace.
#[derive(Debug, Clone)]
pub struct AcrossRequest {
    /// The source claim, in the namespace commands work in.
    pub claim: String,
    /// The copy's name in `namespace`.
    pub to: String,
    /// The namespace of the copy.
    pub namespace: String,
    /// Storage class of the copy (default: the source's).
    pub storage_class: Option<String>,
    /// Size of the copy (default and minimum: the source's capacity).
    pub size: Option<String>,
    /// Scale the workloads using the source to zero while copying, and back up afterwards.
    pub scale_down: bool,
    /// Compress file content on the wire.
    pub compress: bool,
    /// How the receiving mover's Service is reached.
    pub expose: Expose,
    /// The host the sending mover dials instead of the one pvc-backup finds: a node's name or
    /// address that the source's cluster reaches, or the load balancer's.
    pub address: Option<String>,
    /// Carry the bytes through the command's own machine (`--via local`): both movers listen
    /// and the command joins a port-forward to each; no Service is made, and `expose` and
    /// `address` are not used.
    pub via_local: bool,
    /// The other cluster the copy goes to (`--to-kubeconfig`, `--to-context`); `None` within
    /// the source's cluster.
    pub cluster: Option<OtherCluster>,
    /// Compare files whose size and mtime are equal by content too (the receiver's
    /// `--checksum`): a migration's verification.
    pub checksum: bool,
    /// What the copy is for, in its labels: [`Role::Clone`], [`Role::Migrate`] for a
    /// migration's copy, [`Role::Backup`] for a backup.
    pub role: Role,
    /// A backup (`pvc-backup backup --to-namespace`): the receiving mover adds a snapshot to
    /// the claim `to` (`mover receive --snapshot`), keeping these, instead of making it a
    /// mirror of the source. Filesystem claims only.
    pub snapshot: Option<contract::Retention>,
}

/// Another cluster, as the command line names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherCluster {
    /// Its kubeconfig (`--to-kubeconfig`); `None`: the one the source's cluster came from.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// A context of that kubeconfig (`--to-context`); `None`: its current one.
    pub context: Option<String>,
}

impl std::fmt::Display for OtherCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.kubeconfig, &self.context) {
            (Some(k), Some(c)) => write!(f, "context {c} of {}", k.display()),
            (Some(k), None) => write!(f, "the cluster of {}", k.display()),
            (None, Some(c)) => write!(f, "context {c}"),
            (None, None) => write!(f, "the same cluster"),
        }
    }
}

impl AcrossRequest {
    /// The arguments a recorded `--scale-down` run must be run again with.
    pub fn arguments(&self) -> String {
        let mut a = format!(
            "--scale-down --to {} --to-namespace {}",
            self.to, self.namespace
        );
        if let Some(c) = &self.storage_class {
            a.push_str(&format!(" --storage-class {c}"));
        }
        if let Some(s) = &self.size {
            a.push_str(&format!(" --size {s}"));
        }
        if let Some(c) = &self.cluster {
            if let Some(k) = &c.kubeconfig {
                a.push_str(&format!(" --to-kubeconfig {}", k.display()));
            }
            if let Some(x) = &c.context {
                a.push_str(&format!(" --to-context {x}"));
            }
        }
        if self.via_local {
            a.push_str(" --via local");
            return a;
        }
        if self.expose != self.default_expose() {
            a.push_str(&format!(" --expose {}", self.expose.flag()));
        }
        if let Some(h) = &self.address {
            a.push_str(&format!(" --to-address {h}"));
        }
        a
    }

    /// What the run does, in its objects' names: `backup` or `clone`.
    pub fn verb(&self) -> &'static str {
        match self.snapshot {
            Some(_) => "backup",
            None => "clone",
        }
    }

    /// `--expose` when not given: the Service's name within a cluster, a node's port across.
    pub fn default_expose(&self) -> Expose {
        if self.cluster.is_some() {
            Expose::NodePort
        } else {
            Expose::ClusterIp
        }
    }

    pub(crate) fn check(&self, source_namespace: &str) -> Result<()> {
        names::check_name("claim", &self.claim, 253)?;
        names::check_name("copy", &self.to, 253)?;
        names::check_namespace(&self.namespace)?;
        if self.cluster.is_none() && self.namespace == source_namespace {
            return Err(Error::Invalid(format!(
                "--to-namespace {ns} is the source claim's own namespace: leave --to-namespace \
                 out to copy within {ns}",
                ns = self.namespace
            )));
        }
        if self.via_local && self.address.is_some() {
            return Err(Error::Invalid(
                "--to-address with --via local: no mover dials the other, the command joins \
                 them; leave one of the two out"
                    .to_owned(),
            ));
        }
        if let Some(other) = &self.cluster
            && !self.via_local
            && self.expose == Expose::ClusterIp
            && self.address.is_none()
        {
            return Err(Error::Invalid(format!(
                "--expose clusterip into {other}: a ClusterIP Service is reached from its own \
                 cluster only; use --expose nodeport (the default into another cluster) or \
                 loadbalancer, or give --to-address HOST that the source's cluster reaches"
            )));
        }
        if let Some(h) = &self.address
            && h.parse::<std::net::IpAddr>().is_err()
            && (h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(Error::Invalid(format!(
                "--to-address {h:?}: give a host name or an IP address, without a port (the \
                 port is the Service's)"
            )));
        }
        Ok(())
    }
}

/// The two sides' files of a transfer's key pair, as (file name, PEM content): what each side's
/// Secret holds. The caller makes a fresh pair for every run (`wire::keys::Pair`).
#[derive(Clone)]
pub struct WireKeys {
    /// The sending side's key and certificate and the receiver's certificate.
    pub sender: Vec<(String, String)>,
    /// The receiving side's key and certificate and the sender's certificate.
    pub receiver: Vec<(String, String)>,
}

impl std::fmt::Debug for WireKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |files: &[(String, String)]| -> Vec<String> {
            files.iter().map(|(n, _)| n.clone()).collect()
        };
        f.debug_struct("WireKeys")
            .field("sender", &names(&self.sender))
            .field("receiver", &names(&self.receiver))
            .finish()
    }
}

/// The objects of a copy into another namespace.
#[derive(Debug, Clone)]
pub struct AcrossPlan {
    /// The copy's name.
    pub target: String,
    /// The copy's namespace.
    pub namespace: String,
    /// The claim to create; `None` when an earlier copy of the same source is brought up to
    /// date.
    pub claim: Option<PersistentVolumeClaim>,
    /// The receiving side's Secret (in the copy's namespace).
    pub receiver_secret: Secret,
    /// The Service in front of the receiving mover; `None` with `--via local`.
    pub service: Option<Service>,
    /// The OpenShift Route in front of the Service (`--expose route`).
    pub route: Option<Value>,
    /// The receiving mover (in the copy's namespace).
    pub receiver: MoverJob,
    /// The sending side's Secret (in the source's namespace).
    pub sender_secret: Secret,
    /// The sending mover (in the source's namespace). Its arguments are empty until the
    /// address it dials is known (`sender_to`).
    pub sender: MoverJob,
    /// `host:port` the sending mover dials; `None` until the receiving side exists, for a
    /// node's port or a load balancer's address, and with `--via local`.
    pub sender_to: Option<String>,
    /// Both movers listen and the command joins them (`--via local`).
    pub via_local: bool,
    /// The claims are Block claims: the movers are `mover block` over the wire, each with its
    /// claim as a device.
    pub block: bool,
}

impl AcrossPlan {
    /// The plan's objects as JSON, in the order they are created: the receiving side first.
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        if let Some(c) = &self.claim {
            out.push(objects::to_value(c)?);
        }
        out.push(objects::to_value(&self.receiver_secret)?);
        if let Some(service) = &self.service {
            out.push(objects::to_value(service)?);
        }
        out.extend(self.route.clone());
        out.push(objects::to_value(&self.receiver.job())?);
        out.push(objects::to_value(&self.sender_secret)?);
        // A node's port or a load balancer's address exists once the Service does.
        if self.sender_to.is_some() || self.via_local {
            out.push(objects::to_value(&self.sender.job())?);
        }
        Ok(out)
    }
}

fn is_our_copy(
    existing: &PersistentVolumeClaim,
    source_namespace: &str,
    source: &str,
    role: Role,
) -> bool {
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    let is = |k: &str, v: &str| labels.get(k).map(String::as_str) == Some(v);
    is(MANAGED_BY.0, MANAGED_BY.1)
        && is(SOURCE_LABEL, source)
        && is(SOURCE_NAMESPACE_LABEL, source_namespace)
        && is(ROLE_LABEL, role.as_str())
}

/// How long each mover keeps trying to reach the other (the sender also while the receiving pod
/// starts and its Service's name becomes known), and waits for it after a dropped connection.
fn retry_for(settings: &MoverSettings) -> u64 {
    settings.run.start_timeout.as_secs() + 60
}

/// Plans a copy of `source` into another namespace: `existing` is the claim of the copy's name
/// there, if any; `run` names the run's objects (a Job name: `CLAIM-clone-xxxxx`); the
/// placements are where each mover must run (next to the pods using its claim).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    request: &AcrossRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    existing: Option<&PersistentVolumeClaim>,
    keys: &WireKeys,
    run: &str,
    source_placement: Placement,
    target_placement: Placement,
) -> Result<AcrossPlan> {
    let source_namespace = source.metadata.namespace.clone().unwrap_or_default();
    request.check(&source_namespace)?;
    let block = steps::is_block(source);
    if block {
        workflow::check_no_excludes_for_block(&settings.excludes, &request.claim)?;
    }
    if !matches!(settings.privilege, crate::security::Privilege::Mover) {
        return Err(Error::Invalid(
            "--unprivileged cannot copy into another namespace: each mover reads its key from \
             a Secret that only root in the pod may read; leave --unprivileged out"
                .to_owned(),
        ));
    }
    if request.snapshot.is_some() && block {
        return Err(Error::Invalid(format!(
            "claim {} is a Block claim: a backup into another namespace or cluster keeps \
             snapshots of folders; back it up within its namespace (versions of the volume, \
             docs/block.md), or clone it with --to-namespace",
            request.claim
        )));
    }
    // A backup claim is used as it is, as within a namespace: its snapshots go into their own
    // folder beside whatever else it holds, and nothing else in it is touched.
    if let Some(found) = existing
        && request.snapshot.is_none()
        && !is_our_copy(found, &source_namespace, &request.claim, request.role)
    {
        return Err(Error::Invalid(format!(
            "claim {} exists in namespace {} and is not a copy of {}/{} made by pvc-backup: \
             choose another --to, or delete it",
            request.to, request.namespace, source_namespace, request.claim
        )));
    }
    if let Some(found) = existing
        && steps::is_block(found) != block
    {
        let mode = |b: bool| if b { "Block" } else { "Filesystem" };
        return Err(Error::Invalid(format!(
            "claim {} in namespace {} is a {} claim and {} a {} claim: a copy keeps the \
             source's volume mode; choose another --to, or delete it",
            request.to,
            request.namespace,
            mode(!block),
            request.claim,
            mode(block)
        )));
    }
    let claim = match existing {
        Some(_) => None,
        None => {
            let mut req = ClaimRequest::like(
                source,
                &request.to,
                request.role,
                request.storage_class.as_deref(),
                request.size.as_deref(),
            )?;
            req.namespace = request.namespace.clone();
            let mut c = claim::claim(&req);
            c.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(SOURCE_NAMESPACE_LABEL.to_owned(), source_namespace.clone());
            Some(c)
        }
    };

    let receiver_name = steps::suffixed(run, "receive");
    let sender_name = steps::suffixed(run, "send");
    let service_name = service_name(run);
    let labels = |side| wire::transfer_labels(&request.claim, request.role, run, side);
    let retry = retry_for(settings);

    let receiver_secret = wire::keys_secret(
        &receiver_name,
        &request.namespace,
        labels(Side::Receiver),
        &keys.receiver,
    );
    let mut selector = std::collections::BTreeMap::new();
    for key in [names::TRANSFER_LABEL, names::SIDE_LABEL] {
        selector.insert(key.to_owned(), labels(Side::Receiver)[key].clone());
    }
    let service = (!request.via_local).then(|| {
        wire::receiver_service(
            &service_name,
            &request.namespace,
            labels(Side::Receiver),
            selector,
            request.expose,
        )
    });
    let mut receiver = steps::mover_job(
        settings,
        &receiver_name,
        &request.namespace,
        &request.claim,
        request.role,
    );
    receiver.args = if block {
        // Every chunk is compared by its hash: a re-run is a comparison by content.
        MoverCommand::BlockReceive {
            dst: TARGET_MOUNT.to_owned(),
            listen: format!("0.0.0.0:{WIRE_PORT}"),
            keys: KEYS_MOUNT.to_owned(),
            retry_for_secs: retry,
        }
    } else {
        MoverCommand::Receive {
            dst: TARGET_MOUNT.to_owned(),
            listen: format!("0.0.0.0:{WIRE_PORT}"),
            keys: KEYS_MOUNT.to_owned(),
            retry_for_secs: retry,
            // On the disk before the copy is reported, as a copy within a namespace is.
            fsync: true,
            checksum: request.checksum,
            snapshot: request.snapshot,
        }
    }
    .args();
    receiver.mounts = vec![mount("backup", &request.to, TARGET_MOUNT, false, block)];
    receiver.keys = Some(KeysVolume {
        secret: receiver_name.clone(),
        path: KEYS_MOUNT.to_owned(),
    });
    receiver.port = Some(WIRE_PORT);
    receiver.extra_labels = labels(Side::Receiver);
    receiver.placement = target_placement;

    let sender_secret = wire::keys_secret(
        &sender_name,
        &source_namespace,
        labels(Side::Sender),
        &keys.sender,
    );
    let mut sender = steps::mover_job(
        settings,
        &sender_name,
        &source_namespace,
        &request.claim,
        request.role,
    );
    let sender_to = match (request.expose, &request.address) {
        _ if request.via_local => None,
        (Expose::ClusterIp, None) => Some(wire::service_address(&service_name, &request.namespace)),
        (Expose::ClusterIp | Expose::LoadBalancer, Some(host)) => {
            Some(wire::host_port(host, WIRE_PORT))
        }
        // The node's port is given when the Service is made; the load balancer's address and
        // the Route's host later.
        (Expose::NodePort | Expose::Route, _) | (Expose::LoadBalancer, None) => None,
    };
    sender.args = if request.via_local {
        sender_command(
            request,
            settings,
            block,
            SendPeer::Relayed(format!("0.0.0.0:{WIRE_PORT}")),
            None,
        )
    } else {
        sender_to
            .as_deref()
            .map(|to| sender_command(request, settings, block, SendPeer::To(to.to_owned()), None))
            .unwrap_or_default()
    };
    if request.via_local {
        // The command reaches it through a port-forward, which needs no declared port; the
        // declaration says what listens there.
        sender.port = Some(WIRE_PORT);
    }
    let route = (!request.via_local && request.expose == Expose::Route).then(|| {
        wire::receiver_route(
            &service_name,
            &request.namespace,
            &labels(Side::Receiver),
            &service_name,
        )
    });
    sender.mounts = vec![mount("source", &request.claim, SOURCE_MOUNT, true, block)];
    sender.keys = Some(KeysVolume {
        secret: sender_name.clone(),
        path: KEYS_MOUNT.to_owned(),
    });
    sender.extra_labels = labels(Side::Sender);
    sender.placement = source_placement;

    Ok(AcrossPlan {
        target: request.to.clone(),
        namespace: request.namespace.clone(),
        claim,
        receiver_secret,
        service,
        route,
        receiver,
        sender_secret,
        sender,
        sender_to,
        via_local: request.via_local,
        block,
    })
}

/// The sending mover's arguments: `mover send` (`mover block` for a Block claim), meeting the
/// receiver as `peer` says, asking for `server_name` in its TLS hello when given (a Route's
/// host).
fn sender_command(
    request: &AcrossRequest,
    settings: &MoverSettings,
    block: bool,
    peer: SendPeer,
    server_name: Option<&str>,
) -> Vec<String> {
    let keys = KEYS_MOUNT.to_owned();
    let retry_for_secs = retry_for(settings);
    let server_name = server_name.map(str::to_owned);
    if block {
        return MoverCommand::BlockSend {
            src: SOURCE_MOUNT.to_owned(),
            peer,
            keys,
            retry_for_secs,
            compress: request.compress,
            server_name,
        }
        .args();
    }
    MoverCommand::Send {
        src: SOURCE_MOUNT.to_owned(),
        peer,
        keys,
        retry_for_secs,
        compress: request.compress,
        excludes: settings.excludes.clone(),
        server_name,
    }
    .args()
}

/// The Service's name: a DNS label that starts with a letter whatever the claim is called
/// (`pvc-backup-` and the run's five characters).
fn service_name(run: &str) -> String {
    let id = run.rsplit('-').next().unwrap_or(run);
    format!("pvc-backup-{id}")
}

/// How a copy into another namespace ended.
#[derive(Debug, Clone)]
pub struct AcrossReport {
    /// The copy's name.
    pub target: String,
    /// The copy's namespace.
    pub namespace: String,
    /// Whether this run created the copy's claim (and did not delete it again).
    pub created: bool,
    /// Workloads scaled down for the copy (and back up).
    pub scaled: Vec<String>,
    /// The receiving mover's run: its summary is the copy's.
    pub receiver: Outcome,
    /// The sending mover's run; `None` when it had not ended a while after the receiver did
    /// (it was deleted with the rest).
    pub sender: Option<Outcome>,
    /// The `host:port` the sending mover dialled; `local` with `--via local`.
    pub address: String,
}

impl AcrossReport {
    /// The names of the run's Jobs: the receiving mover's, and the sending mover's when it
    /// ended.
    pub fn jobs(&self) -> Vec<&str> {
        std::iter::once(self.receiver.job.as_str())
            .chain(self.sender.as_ref().map(|s| s.job.as_str()))
            .collect()
    }

    /// The result of the copy: the receiver's exit code, or the sender's when only it failed.
    pub fn exit_code(&self) -> i32 {
        match &self.sender {
            Some(s) if self.receiver.exit_code == ExitCode::Ok => s.exit_code,
            _ => self.receiver.exit_code,
        }
    }
}

/// Checks the copy's namespace before anything is made: it exists (when the caller may read
/// namespaces; otherwise the service account's absence says it) and the mover's service account
/// is there.
async fn check_namespace(target: &Kube) -> Result<()> {
    let ns = &target.namespace;
    match api::get_opt::<Namespace>(&api::cluster(target), "namespace", ns).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Error::NotFound(format!(
                "namespace {ns} (--to-namespace) does not exist; nothing was changed. \
                 `kubectl get namespaces` lists them"
            )));
        }
        // May not read namespaces: the service account's lookup below answers instead.
        Err(_) => {}
    }
    let account = api::get_opt::<ServiceAccount>(
        &api::namespaced(target),
        "service account",
        SERVICE_ACCOUNT,
    )
    .await?;
    if account.is_none() {
        return Err(Error::NotFound(format!(
            "namespace {ns} (--to-namespace) has no service account {SERVICE_ACCOUNT}, which \
             runs the receiving mover (or the namespace does not exist); nothing was changed. \
             Install pvc-backup there: `pvc-backup manifests --backup-namespace {ns} | kubectl \
             apply -f -`"
        )));
    }
    Ok(())
}

/// The checks before anything is changed: the rights a transfer needs on both sides, with
/// `source_more` in the source's namespace and `target_more` in the copy's, then the copy's
/// namespace and its service account.
pub(crate) async fn check_both(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    source_more: &[access::Permission],
    target_more: &[access::Permission],
) -> Result<()> {
    let relay: &[access::Permission] = if request.via_local {
        access::PORT_FORWARD
    } else {
        &[]
    };
    access::check(kube, &[access::MOVER_RUN, access::WIRE, relay, source_more]).await?;
    // Through this machine, no Service is made.
    let service: &[&[access::Permission]] = match request.expose {
        _ if request.via_local => &[],
        Expose::LoadBalancer if request.address.is_none() => {
            &[access::SERVICE, access::SERVICE_STATUS]
        }
        Expose::Route => &[access::SERVICE, access::ROUTE],
        _ => &[access::SERVICE],
    };
    // Rights first: without them the namespace's service account cannot even be looked up.
    access::check(
        target,
        &[
            &[access::MOVER_RUN, access::WIRE, relay, target_more],
            service,
        ]
        .concat(),
    )
    .await?;
    check_namespace(target).await
}

/// One transfer of `source` into the copy (created when missing), with the run's objects named
/// after `run` and the sending mover placed at `pinned` (default: next to the source's users):
/// planned against both namespaces, then run as [`run`] runs it, without stopping anything.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn transfer_once(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    keys: &WireKeys,
    run: &str,
    pinned: Option<Placement>,
    observer: &mut dyn Observer,
) -> Result<AcrossReport> {
    let plan = plan_with(kube, target, request, settings, source, keys, run, pinned).await?;
    transfer(kube, target, request, &plan, settings, observer).await
}

/// Deletes the objects of transfer `run` (named as [`plan`] names them) from both namespaces and
/// waits until no pod holds the copy (and, with `source_too`, the source): the movers of a
/// transfer whose command was killed go on running, and that receiver would hold the copy's
/// lock.
pub(crate) async fn remove_run(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    run: &str,
    source_too: bool,
    timeout: Duration,
) -> Result<()> {
    let receiver = steps::suffixed(run, "receive");
    let sender = steps::suffixed(run, "send");
    let dp = DeleteParams::default();
    runner::delete_job(kube, &sender).await?;
    runner::delete_job(target, &receiver).await?;
    api::delete::<Secret>(&api::namespaced(kube), "Secret", &sender, &dp).await?;
    api::delete::<Secret>(&api::namespaced(target), "Secret", &receiver, &dp).await?;
    api::delete::<Service>(&api::namespaced(target), "Service", &service_name(run), &dp).await?;
    workload::wait_unused(target, &[&request.to], timeout).await?;
    if source_too {
        workload::wait_unused(kube, &[&request.claim], timeout).await?;
    }
    Ok(())
}

/// Reads what the plan needs from both namespaces and plans (also for `--dry-run`).
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &AcrossRequest,
    settings: &MoverSettings,
    keys: &WireKeys,
    run: &str,
    other: Option<&Kube>,
) -> Result<AcrossPlan> {
    request.check(&kube.namespace)?;
    let target = target_kube(kube, request, other);
    check_namespace(&target).await?;
    let source = workflow::get_claim(kube, &request.claim).await?;
    plan_with(kube, &target, request, settings, &source, keys, run, None).await
}

/// The copy's side: the source's client, or the other cluster's (`other`), in the copy's
/// namespace.
pub(crate) fn target_kube(kube: &Kube, request: &AcrossRequest, other: Option<&Kube>) -> Kube {
    Kube {
        client: other.unwrap_or(kube).client.clone(),
        namespace: request.namespace.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn plan_with(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    keys: &WireKeys,
    run: &str,
    pinned: Option<Placement>,
) -> Result<AcrossPlan> {
    let existing = workflow::find_claim(target, &request.to).await?;
    let source_placement = match pinned {
        Some(p) => p,
        None => placement::place(kube, &[source], &[]).await?,
    };
    let target_placement = match &existing {
        Some(c) => placement::place(target, &[c], &[]).await?,
        None => Placement::Anywhere,
    };
    plan(
        request,
        settings,
        source,
        existing.as_ref(),
        keys,
        run,
        source_placement,
        target_placement,
    )
}

/// Copies the claim into the other namespace.
///
/// Nothing is created before both namespaces are checked (RBAC, the copy's namespace, the
/// source claim, a claim of the copy's name there). Whatever happens next, the Secrets, the
/// Service and both Jobs are deleted, workloads scaled down are scaled back up, and a copy this
/// run created is deleted unless the mover wrote it.
pub async fn run(
    kube: &Kube,
    request: &AcrossRequest,
    settings: &MoverSettings,
    keys: &WireKeys,
    other: Option<&Kube>,
    observer: &mut dyn Observer,
) -> Result<AcrossReport> {
    request.check(&kube.namespace)?;
    let target = target_kube(kube, request, other);
    let scale: &[access::Permission] = if request.scale_down {
        access::SCALE
    } else {
        &[]
    };
    check_both(kube, &target, request, scale, &[]).await?;
    let source = workflow::get_claim(kube, &request.claim).await?;
    let run = workflow::job_name(&format!("{}-{}", request.claim, request.verb()));
    // Planned (and so checked) before any workload is stopped.
    let pinned = if request.scale_down {
        Some(steps::pin_to_users(kube, &[&source]).await?)
    } else {
        None
    };
    let plan = plan_with(
        kube, &target, request, settings, &source, keys, &run, pinned,
    )
    .await?;
    let mut stopped = if request.scale_down {
        Some(StoppedFor::begin(
            CLONE_STEPS,
            &source,
            &kube.namespace,
            &request.arguments(),
        )?)
    } else {
        None
    };
    let guard = match stopped.as_mut() {
        Some(stopped) => stopped.stop_users(kube, observer).await?,
        None => workload::ScaledDown::default(),
    };
    let scaled: Vec<String> = guard
        .workloads()
        .iter()
        .map(|(w, _)| w.to_string())
        .collect();
    let result = transfer(kube, &target, request, &plan, settings, observer).await;
    let mut report = match stopped {
        Some(stopped) => stopped.start_after(kube, guard, observer, result).await?,
        None => result?,
    };
    report.scaled = scaled;
    Ok(report)
}

/// Creates the objects, runs both movers, and removes what the run no longer needs.
async fn transfer(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    plan: &AcrossPlan,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<AcrossReport> {
    let mut created = false;
    let mut address = match plan.via_local {
        true => "local".to_owned(),
        false => plan.sender_to.clone().unwrap_or_default(),
    };
    let ran = async {
        if let Some(c) = &plan.claim {
            observer.step(&format!(
                "creating claim {} in namespace {}",
                plan.target, plan.namespace
            ));
            workflow::create_claim(target, c).await?;
            created = true;
        }
        let secret = |s: &Secret| s.metadata.name.clone().unwrap_or_default();
        let service_name = |s: &Service| s.metadata.name.clone().unwrap_or_default();
        observer.step(&match &plan.service {
            Some(s) => format!(
                "creating Secret {} and Service {} in namespace {}",
                secret(&plan.receiver_secret),
                service_name(s),
                plan.namespace
            ),
            None => format!(
                "creating Secret {} in namespace {}",
                secret(&plan.receiver_secret),
                plan.namespace
            ),
        });
        api::create(
            &api::namespaced(target),
            "Secret",
            &secret(&plan.receiver_secret),
            &plan.receiver_secret,
        )
        .await?;
        let service = match &plan.service {
            Some(s) => {
                Some(api::create(&api::namespaced(target), "Service", &service_name(s), s).await?)
            }
            None => None,
        };
        if let Some(route) = &plan.route {
            let object: DynamicObject =
                serde_json::from_value(route.clone()).map_err(|source| Error::Decode {
                    what: "the Route pvc-backup builds".to_owned(),
                    source,
                })?;
            let name = object.metadata.name.clone().unwrap_or_default();
            observer.step(&format!(
                "creating Route {name} (TLS passthrough) in namespace {}",
                plan.namespace
            ));
            api::create(&routes(target), "Route", &name, &object).await?;
        }
        observer.step(&format!(
            "creating Secret {} in namespace {}",
            secret(&plan.sender_secret),
            kube.namespace
        ));
        api::create(
            &api::namespaced(kube),
            "Secret",
            &secret(&plan.sender_secret),
            &plan.sender_secret,
        )
        .await?;
        run_both(
            kube,
            target,
            request,
            plan,
            service.as_ref(),
            settings,
            &mut address,
            observer,
        )
        .await
    }
    .await;
    observer.step(if plan.service.is_some() {
        "removing the transfer's Jobs, Secrets and Service"
    } else {
        "removing the transfer's Jobs and Secrets"
    });
    let cleaned = clean_up(kube, target, plan).await;
    let (receiver, sender) = match (ran, cleaned) {
        (Ok(r), Ok(())) => r,
        (Ok(_), Err(e)) => return Err(e),
        (Err(e), _) => {
            if created && e.is_stop() {
                remove_copy(target, plan, observer).await;
            }
            return Err(e);
        }
    };
    let mut report = AcrossReport {
        target: plan.target.clone(),
        namespace: plan.namespace.clone(),
        created,
        scaled: Vec::new(),
        receiver,
        sender,
        address,
    };
    if !ExitCode::from_code(report.exit_code()).is_some_and(ExitCode::wrote_target) {
        // Nothing usable was written (a refused empty source, a fatal error): a copy made by
        // this run is removed, one that existed keeps what it had.
        if created {
            remove_copy(target, plan, observer).await;
            report.created = false;
        }
        return Ok(report);
    }
    workflow::record_run(target, &plan.target, &report.receiver).await?;
    Ok(report)
}

/// How long one mover may take to end after the other did: they end together, the receiver
/// right after it sent its summary, the sender once it has read it; the pod's status may lag.
const GRACE: Duration = Duration::from_secs(90);

/// Runs the receiving mover and, beside it, the sending one, each followed to its end (the
/// address the sender dials, once found, goes into `address`). The
/// first to fail to start (or to be followed) ends both: [`clean_up`] deletes the other. A
/// sender that ended without the receiver ending too (a refused handshake, a sender that could
/// not start its transfer) ends the run with an error that carries the sender's messages; a
/// sender still running after the receiver finished is left to the clean-up (`None`).
/// With `--via local`, [`relay::relay`] joins the two movers meanwhile, and stops with them.
#[allow(clippy::too_many_arguments)]
async fn run_both(
    kube: &Kube,
    target: &Kube,
    request: &AcrossRequest,
    plan: &AcrossPlan,
    service: Option<&Service>,
    settings: &MoverSettings,
    address: &mut String,
    observer: &mut dyn Observer,
) -> Result<(Outcome, Option<Outcome>)> {
    let shared = std::sync::Mutex::new(observer);
    let mut on_receiver = Shared {
        inner: &shared,
        prefix: "receiver",
    };
    let mut on_sender = Shared {
        inner: &shared,
        prefix: "sender",
    };
    let receiver_job = plan.receiver.job();
    let mut receiving = std::pin::pin!(runner::run_job(
        target,
        &receiver_job,
        &settings.run,
        &mut on_receiver
    ));
    let mut sending = std::pin::pin!(async {
        let mut sender = plan.sender.clone();
        if let (None, Some(service)) = (&plan.sender_to, service) {
            let (to, server_name) =
                receiver_address(target, request, plan, service, settings).await?;
            on_sender.step(&match &server_name {
                Some(host) => format!("the sending mover dials {to}, asking for {host}"),
                None => format!("the sending mover dials {to}"),
            });
            sender.args = sender_command(
                request,
                settings,
                plan.block,
                SendPeer::To(to.clone()),
                server_name.as_deref(),
            );
            *address = to;
        }
        runner::run_job(kube, &sender.job(), &settings.run, &mut on_sender).await
    });
    let mut on_relay = Shared {
        inner: &shared,
        prefix: "local",
    };
    // Runs beside both movers until both have been followed to their end.
    let relaying = async {
        if plan.via_local {
            let sender = relay::End {
                kube,
                job: &plan.sender.name,
            };
            let receiver = relay::End {
                kube: target,
                job: &plan.receiver.name,
            };
            // As long as the movers wait for each other.
            let give_up = Duration::from_secs(retry_for(settings));
            match relay::relay(sender, receiver, WIRE_PORT as u16, give_up, &mut on_relay).await? {}
        } else {
            std::future::pending::<Result<()>>().await
        }
    };
    let both = async {
        tokio::select! {
            received = &mut receiving => {
                let received = received?;
                match tokio::time::timeout(GRACE, &mut sending).await {
                    Ok(sent) => Ok((received, Some(sent?))),
                    Err(_) => Ok((received, None)),
                }
            }
            sent = &mut sending => {
                let sent = sent?;
                match tokio::time::timeout(GRACE, &mut receiving).await {
                    Ok(received) => Ok((received?, Some(sent))),
                    Err(_) => Err(Error::Failed(format!(
                        "the sending mover (Job {} in namespace {}) ended with exit code {}{}, and \
                         the receiving mover (Job {} in namespace {}) did not end within {} s after it",
                        sent.job,
                        kube.namespace,
                        sent.exit_code,
                        steps::failure_text(&sent),
                        plan.receiver.name,
                        plan.namespace,
                        GRACE.as_secs()
                    ))),
                }
            }
        }
    };
    tokio::select! {
        done = both => done,
        // The relay ends only when it gives up.
        Err(e) = relaying => Err(e),
    }
}

/// An observer shared by the two movers' runs: steps as they are, the movers' own lines with
/// the side they come from.
struct Shared<'a, 'o> {
    inner: &'a std::sync::Mutex<&'o mut dyn Observer>,
    prefix: &'static str,
}

impl Observer for Shared<'_, '_> {
    fn step(&mut self, message: &str) {
        if let Ok(mut o) = self.inner.lock() {
            o.step(message);
        }
    }

    fn progress(&mut self, progress: &contract::Progress) {
        if let Ok(mut o) = self.inner.lock() {
            o.progress(progress);
        }
    }

    fn text(&mut self, line: &str) {
        if let Ok(mut o) = self.inner.lock() {
            o.text(&format!("{}: {line}", self.prefix));
        }
    }
}

/// Deletes both Jobs (their pods with them), both Secrets and the Service; objects already gone
/// are fine. Every deletion is tried; the first failure is returned.
async fn clean_up(kube: &Kube, target: &Kube, plan: &AcrossPlan) -> Result<()> {
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let results = [
        runner::delete_job(kube, &plan.sender.name).await,
        runner::delete_job(target, &plan.receiver.name).await,
        api::delete::<Secret>(
            &api::namespaced(kube),
            "Secret",
            &name(&plan.sender_secret.metadata),
            &DeleteParams::default(),
        )
        .await,
        api::delete::<Secret>(
            &api::namespaced(target),
            "Secret",
            &name(&plan.receiver_secret.metadata),
            &DeleteParams::default(),
        )
        .await,
        match &plan.service {
            Some(s) => {
                api::delete::<Service>(
                    &api::namespaced(target),
                    "Service",
                    &name(&s.metadata),
                    &DeleteParams::default(),
                )
                .await
            }
            None => Ok(()),
        },
        match (&plan.route, &plan.service) {
            (Some(_), Some(s)) => {
                api::delete(
                    &routes(target),
                    "Route",
                    &name(&s.metadata),
                    &DeleteParams::default(),
                )
                .await
            }
            _ => Ok(()),
        },
    ];
    results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

async fn remove_copy(target: &Kube, plan: &AcrossPlan, observer: &mut dyn Observer) {
    observer.step(&format!(
        "deleting claim {} in namespace {}",
        plan.target, plan.namespace
    ));
    let _ = steps::delete_claim_and_wait(target, &plan.target, Duration::from_secs(60)).await;
}

#[cfg(test)]
mod tests;
