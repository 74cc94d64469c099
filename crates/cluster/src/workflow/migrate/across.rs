//! `pvc-backup migrate CLAIM --to-namespace NS` (and `--to-kubeconfig FILE`): move a claim's
//! data into a claim of the same name in another namespace or cluster, with the workload stopped
//! only for the last changes.
//!
//! 1. Copy over the wire ([`across`](crate::workflow::across)) while the workload runs (most
//!    of the data), into a new claim of the same name.
//! 2. Scale the workload to zero, copy what changed since, then verify: a third transfer whose
//!    receiver compares every file by content (`--checksum`) and must find nothing to change.
//! 3. Mark both claims ([`MIGRATED_AWAY`] on the source, [`super::MIGRATED_FROM`] on the copy).
//! 4. With `--start`, scale the destination's workload of the same kind and name to the count
//!    the source's had.
//!
//! The source claim and its workload are never deleted: the workload stays at zero (its
//! `scaled-down-from` annotation keeps its count), so that the data is not written on both
//! sides. A failure before the claims are marked scales it back up. Each step is recorded
//! ([`PROGRESS`](crate::workflow::progress::PROGRESS) on the source claim): the same command run again after an interruption goes on
//! from the first step not done.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};

use crate::access;
use crate::connect::Kube;
use crate::objects::claim::Role;
use crate::objects::mover::Placement;
use crate::run::Observer;
use crate::workflow::across::{self, AcrossReport, AcrossRequest, WireKeys};
use crate::workflow::progress::{Progress, Steps};
use crate::workflow::{self, MoverSettings, steps};
use crate::workload::{self, ScaledDown, Workload};
use crate::{Error, Result, placement};

/// Annotation on a claim whose data was migrated into another namespace or cluster: where it
/// went, as JSON (`namespace`, `claim`, and `cluster`: the other kubeconfig and context, when
/// there is one).
pub const MIGRATED_AWAY: &str = "pvc-backup.io/migrated-away";

/// The steps of a migration into another namespace or cluster.
pub const STEPS: Steps = Steps {
    workflow: "migrate --to-namespace",
    names: &[FIRST_COPY, STOP, FINAL_COPY, VERIFY, MARK, START],
};

const FIRST_COPY: &str = "first-copy";
const STOP: &str = "scale-down";
const FINAL_COPY: &str = "final-copy";
const VERIFY: &str = "verify";
const MARK: &str = "mark";
const START: &str = "start-copy";

// What the record keeps for later steps.
const WORKLOAD: &str = "workload";
// Where the sending mover runs once the workload is stopped: its pods' node.
const PINNED: &str = "pinnedTo";
// The run id of the transfer under way: a run that goes on after a kill removes its objects.
const TRANSFER: &str = "transfer";

/// What to migrate, where to.
#[derive(Debug, Clone)]
pub struct MigrateAcrossRequest {
    /// The transfer: the claim, the namespace and cluster it goes to (under the same name), the
    /// copy's class and size, how the movers reach each other.
    pub copy: AcrossRequest,
    /// The workload to stop (default: the one whose pods use the claim).
    pub workload: Option<Workload>,
    /// Scale the workload of the same kind and name in the destination to the source's count.
    pub start: bool,
    /// How long the workload's pods may take to stop.
    pub scale_timeout: Duration,
}

impl MigrateAcrossRequest {
    /// The transfer of a migration of `claim` into `namespace` (of `cluster`): same name,
    /// labelled as a migration's.
    pub fn transfer(claim: &str, namespace: &str) -> AcrossRequest {
        AcrossRequest {
            claim: claim.to_owned(),
            to: claim.to_owned(),
            namespace: namespace.to_owned(),
            storage_class: None,
            size: None,
            scale_down: false,
            compress: false,
            expose: crate::objects::wire::Expose::ClusterIp,
            address: None,
            via_local: false,
            cluster: None,
            checksum: false,
            role: Role::Migrate,
            snapshot: None,
        }
    }

    /// The arguments a recorded migration must be run again with.
    pub fn arguments(&self) -> String {
        let mut a = format!("--to-namespace {}", self.copy.namespace);
        if let Some(c) = &self.copy.cluster {
            if let Some(k) = &c.kubeconfig {
                a.push_str(&format!(" --to-kubeconfig {}", k.display()));
            }
            if let Some(x) = &c.context {
                a.push_str(&format!(" --to-context {x}"));
            }
        }
        if let Some(c) = &self.copy.storage_class {
            a.push_str(&format!(" --storage-class {c}"));
        }
        if let Some(s) = &self.copy.size {
            a.push_str(&format!(" --size {s}"));
        }
        if let Some(w) = &self.workload {
            a.push_str(&format!(" --workload {w}"));
        }
        a
    }

    fn where_to(&self) -> String {
        match &self.copy.cluster {
            Some(other) => format!("namespace {} of {other}", self.copy.namespace),
            None => format!("namespace {}", self.copy.namespace),
        }
    }
}

/// How a migration into another namespace or cluster ended.
#[derive(Debug, Clone, Default)]
pub struct MigrateAcrossReport {
    /// The claim, in the source's namespace and, under the same name, in the destination's.
    pub claim: String,
    /// The destination's namespace.
    pub namespace: String,
    /// The workload stopped in the source's namespace, and the replica count it had.
    pub workload: Option<(String, i32)>,
    /// Whether the destination's workload was scaled up (`--start`).
    pub started: bool,
    /// The transfers: with the workload running, the final one, the verification.
    pub transfers: Vec<AcrossReport>,
    /// Things the user should know.
    pub notes: Vec<String>,
}

/// Runs a migration into another namespace or cluster (`other`: the other cluster's client), or
/// goes on with one that was interrupted (its record is on the source claim). `keys` is the key
/// pair of this process's transfers.
pub async fn run(
    kube: &Kube,
    request: &MigrateAcrossRequest,
    settings: &MoverSettings,
    keys: &WireKeys,
    other: Option<&Kube>,
    observer: &mut dyn Observer,
) -> Result<MigrateAcrossReport> {
    let copy = &request.copy;
    copy.check(&kube.namespace)?;
    let target = across::target_kube(kube, copy, other);
    let start: &[access::Permission] = if request.start { access::SCALE } else { &[] };
    across::check_both(kube, &target, copy, access::SCALE, start).await?;
    let source = workflow::get_claim(kube, &copy.claim).await?;
    let holder = format!("pvc/{} -n {}", copy.claim, kube.namespace);
    let found = Progress::read(source.metadata.annotations.as_ref(), &holder)?;
    let resuming = found.is_some();
    let mut progress = STEPS.resume_or_start(found, &copy.claim, &request.arguments(), &holder)?;
    let mut report = MigrateAcrossReport {
        claim: copy.claim.clone(),
        namespace: copy.namespace.clone(),
        ..MigrateAcrossReport::default()
    };
    let exclusive_in_use = if resuming {
        observer.step(&format!(
            "going on with the migration of claim {} into {} recorded in {holder} (last step \
             done: {})",
            copy.claim,
            request.where_to(),
            progress.done.as_deref().unwrap_or("none")
        ));
        !STEPS.is_done(&progress, FIRST_COPY)
            && steps::is_read_write_once_pod(&source)
            && !placement::users(kube, &copy.claim).await?.is_empty()
    } else {
        begin(
            kube,
            &target,
            request,
            settings,
            keys,
            &source,
            &mut progress,
        )
        .await?
    };
    let workload: Option<Workload> = progress.get(WORKLOAD).map(str::parse).transpose()?;
    let transfers = Transfers {
        kube,
        target: &target,
        settings,
        keys,
        source: &source,
        timeout: request.scale_timeout,
    };
    let save = |progress: &Progress| {
        let record = progress.clone();
        async move { workflow::record_progress(kube, &copy.claim, Some(&record)).await }
    };
    let clear = || workflow::record_progress(kube, &copy.claim, None);

    // 1. The bulk of the data, with the workload running.
    if !STEPS.is_done(&progress, FIRST_COPY) {
        let first = async {
            if exclusive_in_use {
                report.notes.push(format!(
                    "claim {} is ReadWriteOncePod and in use, so nothing could read it while \
                     the workload ran: it was copied once, with the workload stopped",
                    copy.claim
                ));
            } else {
                observer.step(&format!(
                    "copying claim {} into {} while the workload runs",
                    copy.claim,
                    request.where_to()
                ));
                let done = transfers.run(copy, None, &mut progress, observer).await;
                report.transfers.push(accept(done?, "the copy", true)?);
            }
            STEPS.complete(&mut progress, FIRST_COPY);
            save(&progress).await
        }
        .await;
        if let Err(e) = first {
            // Nothing was stopped: the record has nothing to keep.
            return Error::with_undo(Err(e), clear().await);
        }
    }

    // 2. The rest, with the workload stopped; then the proof and the marks.
    let must_stop = STEPS.any_pending(&progress, STOP, MARK);
    let guard = match &workload {
        Some(w) if must_stop => {
            let counts = match progress.stopped_workloads()? {
                c if !c.is_empty() => c,
                _ => {
                    let c = workload::counts_to_restore(kube, std::slice::from_ref(w)).await?;
                    progress.set_stopped(&c);
                    save(&progress).await?;
                    c
                }
            };
            observer.step(&format!("scaling {w} to zero"));
            match workload::scale_down_to_zero(kube, &counts, &[&copy.claim], request.scale_timeout)
                .await
            {
                Ok(g) => g,
                Err(e) => {
                    let e = workload::stopped_then(
                        e,
                        format!(
                            "the migration stopped; the workload runs on its data (claim {})",
                            copy.claim
                        ),
                    );
                    return Error::with_undo(Err(e), clear().await);
                }
            }
        }
        _ => ScaledDown::left_by_earlier_run(progress.stopped_workloads()?),
    };
    report.workload = guard.workloads().first().map(|(w, n)| (w.to_string(), *n));
    if must_stop {
        STEPS.complete(&mut progress, STOP);
        save(&progress).await?;
    }
    let last = async {
        // With the workload stopped, the sending mover runs where its pods ran: the volume may
        // stay attached there for a while.
        let pinned = Some(match progress.get(PINNED) {
            Some(p) => super::record::pinned_from(p)?,
            None => Placement::Anywhere,
        });
        if !STEPS.is_done(&progress, FINAL_COPY) {
            observer.step("copying what changed, with the workload stopped");
            let done = transfers
                .run(copy, pinned.clone(), &mut progress, observer)
                .await;
            report
                .transfers
                .push(accept(done?, "the final copy", false)?);
            STEPS.complete(&mut progress, FINAL_COPY);
            save(&progress).await?;
        }
        if !STEPS.is_done(&progress, VERIFY) {
            observer.step(&format!(
                "verifying claim {} in {} against the source, {} by content",
                copy.claim,
                request.where_to(),
                if steps::is_block(transfers.source) {
                    "chunk by chunk"
                } else {
                    "file by file"
                }
            ));
            let verify = AcrossRequest {
                checksum: true,
                ..copy.clone()
            };
            let done = transfers
                .run(&verify, pinned, &mut progress, observer)
                .await;
            let verified = accept(done?, "the verification", false)?;
            let changed = changes(&verified);
            report.transfers.push(verified);
            if changed > 0 {
                let what = if steps::is_block(transfers.source) {
                    "chunks"
                } else {
                    "entries"
                };
                return Err(Error::Failed(format!(
                    "the verification found {changed} {what} of claim {} that differed from \
                     the source after the final copy, with the workload stopped: something else \
                     writes to the claim (a pod of another workload, a process outside the \
                     cluster). They were copied again; stop what writes and run the same \
                     command again",
                    copy.claim
                )));
            }
            STEPS.complete(&mut progress, VERIFY);
            save(&progress).await?;
        }
        if !STEPS.is_done(&progress, MARK) {
            mark(kube, &target, request).await?;
            STEPS.complete(&mut progress, MARK);
            save(&progress).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = last {
        // The data stays where it was: the workload goes back to it.
        let e = e.context(format!(
            "the migration stopped; claim {} in namespace {} keeps its data and its workload \
             is scaled back up",
            copy.claim, kube.namespace
        ));
        let undone = guard.scale_up_after(kube, observer, Err::<(), _>(e)).await;
        let cleared = clear().await;
        return Error::with_undo(undone, cleared).map(|()| report);
    }
    // The data now lives in the destination: the source's workload stays stopped.
    guard.leave_down();

    if request.start && !STEPS.is_done(&progress, START) {
        if let Some(w) = &workload {
            let count = report.workload.as_ref().map_or(1, |(_, n)| *n);
            observer.step(&format!("scaling {w} in {} to {count}", request.where_to()));
            if let Err(e) = w.scale(&target, count).await {
                let _ = save(&progress).await;
                return Err(e.context(format!(
                    "the data was migrated and verified, but {w} in {} was not started: run the \
                     same command again to start it",
                    request.where_to()
                )));
            }
            report.started = true;
        }
        STEPS.complete(&mut progress, START);
    }
    clear().await?;
    Ok(report)
}

/// The checks and decisions of a fresh migration, recorded before its first step: the workload
/// to stop, and with `--start` the destination's workload to start. Returns whether the claim is
/// ReadWriteOncePod and in use (copied once, with the workload stopped).
async fn begin(
    kube: &Kube,
    target: &Kube,
    request: &MigrateAcrossRequest,
    settings: &MoverSettings,
    keys: &WireKeys,
    source: &PersistentVolumeClaim,
    progress: &mut Progress,
) -> Result<bool> {
    let claim = &request.copy.claim;
    if let Some(to) = annotation(source, MIGRATED_AWAY) {
        return Err(Error::Invalid(format!(
            "claim {claim} was migrated already ({MIGRATED_AWAY}: {to}): its data lives there \
             now, and copying again would overwrite what was written since. Remove the \
             annotation first to migrate it again: `kubectl annotate pvc/{claim} -n {} \
             {MIGRATED_AWAY}-`",
            kube.namespace
        )));
    }
    // The pods and their owners, read once: who uses the claim decides the workload to stop and
    // whether anything else writes to it.
    let pods = placement::pods(kube).await?;
    let users = placement::users_in(&pods, claim);
    let owners = workload::owners(kube, &users).await?;
    let workload = match &request.workload {
        Some(w) => {
            w.get(kube).await?;
            Some(w.clone())
        }
        None => workload::pick(claim, workload::workloads_of(claim, &users, &owners)?)?,
    };
    for (user, owner) in users.iter().zip(owners) {
        if owner.is_none() || owner != workload {
            return Err(Error::Invalid(format!(
                "pod {} ({}) uses claim {claim} too and would keep writing to it while the last \
                 changes are copied: stop it first, or migrate with that workload named in \
                 --workload",
                user.pod,
                owner.map_or("no workload".to_owned(), |o| o.to_string()),
            )));
        }
    }
    if request.start {
        let Some(w) = &workload else {
            return Err(Error::Invalid(format!(
                "--start: no workload uses claim {claim} in namespace {}, so there is nothing \
                 to start in {}; name it with --workload, or leave --start out",
                kube.namespace,
                request.where_to()
            )));
        };
        let there = w.get(target).await.map_err(|e| {
            e.context(format!(
                "--start scales {w} in {} once the data is there: create it first, with 0 \
                 replicas and claim {claim} as its volume",
                request.where_to()
            ))
        })?;
        if workload::spec_replicas(&there) != 0 {
            return Err(Error::Invalid(format!(
                "{w} in {} has {} replicas: its pods would use claim {claim} while it is copied. \
                 Scale it to zero first (kubectl scale {w} --replicas=0), then --start gives it \
                 the source's count once the data is verified",
                request.where_to(),
                workload::spec_replicas(&there)
            )));
        }
        if workload::claim_use(&there, claim)?.is_none() {
            return Err(Error::Invalid(format!(
                "{w} in {} has no volume that uses claim {claim}: --start would start it \
                 without the migrated data",
                request.where_to()
            )));
        }
    }
    // The copy as planned (its claim, a claim of that name that is not a migration's), before
    // anything is changed.
    let run = workflow::job_name(&format!("{claim}-migrate"));
    across::plan_with(
        kube,
        target,
        &request.copy,
        settings,
        source,
        keys,
        &run,
        Some(Placement::Anywhere),
    )
    .await?;
    if let Some(w) = &workload {
        progress.set(WORKLOAD, w.to_string());
    }
    if let Placement::Node { node, tolerations } = steps::pin_to(&[source], &pods) {
        progress.set(
            PINNED,
            json!({"node": node, "tolerations": tolerations}).to_string(),
        );
    }
    workflow::record_progress(kube, claim, Some(progress)).await?;
    Ok(steps::is_read_write_once_pod(source) && !users.is_empty())
}

/// What every transfer of a migration shares.
struct Transfers<'a> {
    kube: &'a Kube,
    target: &'a Kube,
    settings: &'a MoverSettings,
    keys: &'a WireKeys,
    source: &'a PersistentVolumeClaim,
    timeout: Duration,
}

impl Transfers<'_> {
    /// One transfer, its objects named after a fresh run id recorded first (the objects of each
    /// transfer are deleted when it ends; those of a transfer whose command was killed, found
    /// from the record, before the next one starts).
    async fn run(
        &self,
        copy: &AcrossRequest,
        pinned: Option<Placement>,
        progress: &mut Progress,
        observer: &mut dyn Observer,
    ) -> Result<AcrossReport> {
        let (kube, target) = (self.kube, self.target);
        if let Some(old) = progress.get(TRANSFER) {
            observer.step(&format!(
                "removing the movers of the interrupted transfer {old}"
            ));
            // With the workload stopped, only movers may hold the source.
            let stopped = STEPS.is_done(progress, STOP);
            across::remove_run(kube, target, copy, old, stopped, self.timeout).await?;
        }
        let run = workflow::job_name(&format!("{}-migrate", copy.claim));
        progress.set(TRANSFER, run.clone());
        workflow::record_progress(kube, &copy.claim, Some(progress)).await?;
        across::transfer_once(
            kube,
            target,
            copy,
            self.settings,
            self.source,
            self.keys,
            &run,
            pinned,
            observer,
        )
        .await
    }
}

/// A transfer's report, or the error it ended with. A copy made while the workload runs may
/// end partial (files that changed while they were read): the next copy takes them.
fn accept(report: AcrossReport, what: &str, partial_ok: bool) -> Result<AcrossReport> {
    let code = report.exit_code();
    if code == 0 || (partial_ok && contract::ExitCode::Partial == code) {
        return Ok(report);
    }
    let failed = report
        .sender
        .as_ref()
        .filter(|s| s.exit_code != 0 && report.receiver.exit_code == 0)
        .unwrap_or(&report.receiver);
    Err(Error::Failed(format!(
        "{what} (Job {}) ended with exit code {code}{}",
        failed.job,
        steps::failure_text(failed)
    )))
}

/// What a transfer changed in the copy, from the receiver's summary: entries of a Filesystem
/// claim; chunks of a Block claim written, zeroed or that could not be compared (a block
/// transfer hashes every chunk on both sides and sends only those that differ).
fn changes(report: &AcrossReport) -> u64 {
    report
        .receiver
        .summaries
        .iter()
        .map(|s| {
            if contract::summary::is_block_summary(s) {
                let n = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
                let errors = s
                    .get("errors")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                return n("chunks_written") + n("chunks_zeroed") + errors as u64;
            }
            let e = contract::summary::Report::read(s)
                .entries
                .unwrap_or_default();
            e.copied + e.linked + e.updated + e.deleted + e.failed
        })
        .sum()
}

/// Marks both claims: the source with where its data went, the copy with where it came from.
async fn mark(kube: &Kube, target: &Kube, request: &MigrateAcrossRequest) -> Result<()> {
    let copy = &request.copy;
    let mut away = json!({"namespace": copy.namespace, "claim": copy.to});
    if let Some(c) = &copy.cluster {
        away["cluster"] = json!(c.to_string());
    }
    workflow::annotate_claim(
        kube,
        &copy.claim,
        BTreeMap::from([(MIGRATED_AWAY.to_owned(), away.to_string())]),
    )
    .await?;
    workflow::annotate_claim(
        target,
        &copy.to,
        BTreeMap::from([(
            super::MIGRATED_FROM.to_owned(),
            format!("{}/{}", kube.namespace, copy.claim),
        )]),
    )
    .await
}

fn annotation<'a>(claim: &'a PersistentVolumeClaim, key: &str) -> Option<&'a str> {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::across::OtherCluster;

    #[test]
    fn the_recorded_arguments_name_everything_that_decides_the_migration() {
        let mut copy = MigrateAcrossRequest::transfer("data", "lab");
        copy.storage_class = Some("fast".into());
        copy.cluster = Some(OtherCluster {
            kubeconfig: Some("/k".into()),
            context: Some("east".into()),
        });
        let request = MigrateAcrossRequest {
            copy,
            workload: Some("deployment/web".parse().unwrap()),
            start: true,
            scale_timeout: Duration::from_secs(5),
        };
        assert_eq!(
            request.arguments(),
            "--to-namespace lab --to-kubeconfig /k --to-context east --storage-class fast \
             --workload deployment/web"
        );
        assert_eq!(request.copy.to, "data");
        assert_eq!(request.copy.role, Role::Migrate);
    }

    fn transferred(summary: Value) -> AcrossReport {
        let outcome = crate::run::Outcome {
            job: "data-migrate-bcdfg-receive".into(),
            pod: "p".into(),
            node: None,
            exit_code: 0,
            summaries: vec![summary],
            messages: Vec::new(),
        };
        AcrossReport {
            target: "data".into(),
            namespace: "lab".into(),
            created: false,
            scaled: Vec::new(),
            receiver: outcome,
            sender: None,
            address: "local".into(),
        }
    }

    #[test]
    fn a_verification_counts_changed_entries_or_changed_chunks() {
        let files = json!({"schema": 1, "command": "receive",
            "entries": {"total": 9, "copied": 1, "linked": 0, "updated": 2, "deleted": 1,
                "failed": 0, "unchanged": 5, "skipped": 0, "excluded": 0}});
        assert_eq!(changes(&transferred(files)), 4);
        let chunks = json!({"chunk_size": 4194304, "chunks": 16, "chunks_written": 1,
            "chunks_zeroed": 2, "chunks_equal": 12, "errors": [{"phase": "copy",
            "offset": 0, "len": 4194304, "reason": "on the sender: EIO"}], "exit_code": 23});
        assert_eq!(changes(&transferred(chunks)), 4);
        let unchanged = json!({"chunk_size": 4194304, "chunks": 16, "chunks_written": 0,
            "chunks_zeroed": 0, "chunks_equal": 16, "errors": [], "exit_code": 0});
        assert_eq!(changes(&transferred(unchanged)), 0);
    }
}
