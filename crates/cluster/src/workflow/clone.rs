//! `pvc-backup clone CLAIM --to NAME [--count N]`: one or N independent copies of a claim.
//!
//! A CSI clone (a claim whose `dataSource` names the source) costs the driver's time, not a
//! copy; it works only inside the source's storage class with a driver that clones. A copy runs
//! the mover once: it reads the source into the first target and mirrors that into the others
//! (`mover sync --also`), so the workload's volume is read once however many copies are made.

use std::time::Duration;

use contract::{ExitCode, MoverCommand};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::Value;

use crate::access;
use crate::connect::Kube;
use crate::names::{self, SOURCE_LABEL, SOURCE_MOUNT, TARGET_MOUNT};
use crate::objects::claim::{self, ClaimRequest, Role};
use crate::objects::mover::{MoverJob, Placement};
use crate::objects::{self, volume};
use crate::run::{Observer, Outcome};
use crate::workflow::steps::{self, mount};
use crate::workflow::stopped::{CLONE_STEPS, StoppedFor};
use crate::workflow::{self, MoverSettings};
use crate::{Error, Result, placement, workload};

/// How the copies are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// A CSI clone when source and targets share a CSI storage class, falling back to a copy
    /// when the clone does not bind in time; a copy otherwise.
    #[default]
    Auto,
    /// A CSI clone (`dataSource`) only.
    Csi,
    /// The mover copies.
    Copy,
}

impl Method {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Csi => "csi",
            Method::Copy => "copy",
        }
    }
}

/// What to clone, into what.
#[derive(Debug, Clone)]
pub struct CloneRequest {
    /// The source claim.
    pub claim: String,
    /// The name of the copy; with `count` > 1, the copies are `NAME-1` ... `NAME-N`.
    pub to: String,
    /// How many copies.
    pub count: u32,
    /// Storage class of the copies (default: the source's).
    pub storage_class: Option<String>,
    /// Size of the copies (default and minimum: the source's capacity).
    pub size: Option<String>,
    /// CSI clone, copy, or either.
    pub method: Method,
    /// Scale the workloads using the source to zero while copying, and back up afterwards.
    pub scale_down: bool,
    /// The run's id in its Jobs' names, for a caller that takes the same run up again after a
    /// restart and must find the Jobs it created (the operator gives its resource's); `None`
    /// gives a fresh one. A run that goes on from a record on the claim keeps the record's id.
    pub run: Option<String>,
}

impl CloneRequest {
    /// The arguments a recorded `--scale-down` clone must be run again with, as a command line
    /// would give them.
    pub fn arguments(&self) -> String {
        let mut a = format!(
            "--scale-down --to {} --count {} --method {}",
            self.to,
            self.count,
            self.method.as_str()
        );
        if let Some(c) = &self.storage_class {
            a.push_str(&format!(" --storage-class {c}"));
        }
        if let Some(s) = &self.size {
            a.push_str(&format!(" --size {s}"));
        }
        a
    }

    /// The names of the copies.
    pub fn targets(&self) -> Vec<String> {
        if self.count <= 1 {
            vec![self.to.clone()]
        } else {
            (1..=self.count)
                .map(|i| format!("{}-{i}", self.to))
                .collect()
        }
    }

    fn check(&self) -> Result<()> {
        names::check_name("claim", &self.claim, 253)?;
        if self.count == 0 {
            return Err(Error::Invalid(
                "--count 0 makes no copy: give at least 1".to_owned(),
            ));
        }
        for t in self.targets() {
            names::check_name("copy", &t, 253)?;
            if t == self.claim {
                return Err(Error::Invalid(format!(
                    "the copy {t} would be the source claim itself: choose another --to"
                )));
            }
        }
        Ok(())
    }
}

/// The objects a clone creates, in order.
#[derive(Debug, Clone)]
pub struct ClonePlan {
    /// `Csi` or `Copy` (never `Auto`: the plan has decided).
    pub method: Method,
    /// Whether a CSI clone that does not bind falls back to a copy (`--method auto`).
    pub fallback: bool,
    /// The copies.
    pub targets: Vec<String>,
    /// The claims to create (CSI clones carry a `dataSource`).
    pub claims: Vec<PersistentVolumeClaim>,
    /// Existing copies of the same source that a copy brings up to date.
    pub reused: Vec<String>,
    /// The mover Jobs (a copy of a filesystem claim: one; of a block claim: one per copy).
    pub jobs: Vec<MoverJob>,
}

impl ClonePlan {
    /// The plan's objects as JSON, in the order they are created.
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for c in &self.claims {
            out.push(objects::to_value(c)?);
        }
        for j in &self.jobs {
            out.push(objects::to_value(&j.job())?);
        }
        Ok(out)
    }
}

/// What is known about the source's storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassInfo {
    /// Its provisioner is a CSI driver (which may clone).
    pub csi: bool,
    /// It binds claims only once a pod uses them.
    pub wait_for_consumer: bool,
}

fn is_our_clone(existing: &PersistentVolumeClaim, source: &str) -> bool {
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    workflow::backup::managed(existing)
        && labels.get(SOURCE_LABEL).map(String::as_str) == Some(source)
        && labels.get(names::ROLE_LABEL).map(String::as_str) == Some(Role::Clone.as_str())
}

/// Plans a clone from what is known: the source claim, the copies that exist already (in the
/// order of [`CloneRequest::targets`]), its storage class (`None` when unknown: planning without
/// a cluster) and where a mover must run.
pub fn plan(
    request: &CloneRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    existing: &[Option<PersistentVolumeClaim>],
    class: Option<ClassInfo>,
    placement: Placement,
    job_name: &str,
) -> Result<ClonePlan> {
    request.check()?;
    let targets = request.targets();
    let source_spec = source.spec.clone().unwrap_or_default();
    let same_class =
        request.storage_class.is_none() || request.storage_class == source_spec.storage_class_name;
    let mut reused = Vec::new();
    for (name, found) in targets.iter().zip(existing) {
        if let Some(found) = found {
            if !is_our_clone(found, &request.claim) {
                return Err(Error::Invalid(format!(
                    "claim {name} exists and is not a copy of {} made by pvc-backup: choose \
                     another --to, or delete it",
                    request.claim
                )));
            }
            reused.push(name.clone());
        }
    }
    let method = match request.method {
        Method::Copy => Method::Copy,
        Method::Csi => {
            if !same_class {
                return Err(Error::Invalid(format!(
                    "a CSI clone stays in the source's storage class {}: drop --storage-class \
                     or use --method copy",
                    source_spec
                        .storage_class_name
                        .as_deref()
                        .unwrap_or("(none)")
                )));
            }
            if class.is_some_and(|c| !c.csi) {
                return Err(Error::Invalid(format!(
                    "storage class {} is not provisioned by a CSI driver, which cannot clone: \
                     use --method copy",
                    source_spec
                        .storage_class_name
                        .as_deref()
                        .unwrap_or("(none)")
                )));
            }
            if let Some(r) = reused.first() {
                return Err(Error::Invalid(format!(
                    "claim {r} exists already and a CSI clone can only be a new claim: delete \
                     it, choose another --to, or use --method copy to bring it up to date"
                )));
            }
            Method::Csi
        }
        Method::Auto => {
            if same_class && class.is_some_and(|c| c.csi) && reused.is_empty() {
                Method::Csi
            } else {
                Method::Copy
            }
        }
    };
    let mut claims = Vec::new();
    for (name, found) in targets.iter().zip(existing) {
        if found.is_some() {
            continue;
        }
        let req = ClaimRequest::like(
            source,
            name,
            Role::Clone,
            request.storage_class.as_deref(),
            request.size.as_deref(),
        )?;
        claims.push(match method {
            Method::Csi => volume::csi_clone(source, &req)?,
            _ => claim::claim(&req),
        });
    }
    let namespace = source.metadata.namespace.clone().unwrap_or_default();
    let block = steps::is_block(source);
    let jobs = if method == Method::Csi {
        Vec::new()
    } else if block {
        // A raw device is copied device to device: one Job per copy.
        workflow::check_no_excludes_for_block(&settings.excludes, &request.claim)?;
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut job = steps::mover_job(
                    settings,
                    &steps::suffixed(job_name, &(i + 1).to_string()),
                    &namespace,
                    &request.claim,
                    Role::Clone,
                );
                job.args = MoverCommand::Block {
                    src: SOURCE_MOUNT.to_owned(),
                    dst: TARGET_MOUNT.to_owned(),
                }
                .args();
                job.mounts = vec![
                    mount("source", &request.claim, SOURCE_MOUNT, true, true),
                    mount("backup", t, TARGET_MOUNT, false, true),
                ];
                job.placement = placement.clone();
                job
            })
            .collect()
    } else {
        let mut job = steps::mover_job(settings, job_name, &namespace, &request.claim, Role::Clone);
        // The copies are on the disk before the job reports success (`--fsync`): the claims may
        // stay mounted on the node after the pod ends, their writes still in its page cache.
        job.mounts = vec![mount("source", &request.claim, SOURCE_MOUNT, true, false)];
        let mut also = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let (volume, path) = target_mount(i);
            job.mounts.push(mount(&volume, t, &path, false, false));
            if i > 0 {
                also.push(path);
            }
        }
        job.args = MoverCommand::Sync {
            src: SOURCE_MOUNT.to_owned(),
            dst: TARGET_MOUNT.to_owned(),
            also,
            fsync: true,
            excludes: settings.excludes.clone(),
        }
        .args();
        job.placement = placement;
        vec![job]
    };
    Ok(ClonePlan {
        method,
        fallback: request.method == Method::Auto && method == Method::Csi,
        targets,
        claims,
        reused,
        jobs,
    })
}

/// The volume name and mount path of the `i`-th copy (0-based) in the mover pod.
fn target_mount(i: usize) -> (String, String) {
    if i == 0 {
        ("backup".to_owned(), TARGET_MOUNT.to_owned())
    } else {
        (
            format!("backup-{}", i + 1),
            format!("{TARGET_MOUNT}-{}", i + 1),
        )
    }
}

/// How a clone ended.
#[derive(Debug, Clone)]
pub struct CloneReport {
    /// The copies.
    pub targets: Vec<String>,
    /// `Csi` or `Copy`: how they were made.
    pub method: Method,
    /// Why a CSI clone was given up for a copy.
    pub fell_back: Option<String>,
    /// Claims this run created.
    pub created: Vec<String>,
    /// Workloads scaled down for the copy (and back up).
    pub scaled: Vec<String>,
    /// The mover runs (none for a CSI clone; none when detached).
    pub outcomes: Vec<Outcome>,
    /// The Jobs left running with `--detach`.
    pub detached: Vec<String>,
}

impl CloneReport {
    /// The worst exit code of the mover runs (0 for a CSI clone).
    pub fn exit_code(&self) -> i32 {
        self.outcomes
            .iter()
            .map(|o| o.exit_code)
            .find(|c| *c != ExitCode::Ok)
            .unwrap_or(ExitCode::Ok.into())
    }
}

/// Reads what the plan needs and plans (also for `--dry-run`). `method` overrides the
/// request's (a fallback plans a copy).
pub async fn plan_from_cluster(
    kube: &Kube,
    request: &CloneRequest,
    settings: &MoverSettings,
    job_name: &str,
    pinned: Option<Placement>,
) -> Result<(ClonePlan, Option<ClassInfo>)> {
    let source = workflow::get_claim(kube, &request.claim).await?;
    plan_with(kube, request, settings, &source, job_name, pinned).await
}

/// [`plan_from_cluster`] with the source claim already read.
async fn plan_with(
    kube: &Kube,
    request: &CloneRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    job_name: &str,
    pinned: Option<Placement>,
) -> Result<(ClonePlan, Option<ClassInfo>)> {
    let mut existing = Vec::new();
    for t in request.targets() {
        existing.push(workflow::find_claim(kube, &t).await?);
    }
    let class_name = source
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone());
    let class = steps::storage_class(kube, class_name.as_deref())
        .await?
        .map(|c| ClassInfo {
            csi: steps::is_csi(&c),
            wait_for_consumer: steps::waits_for_consumer(Some(&c)),
        });
    // With --scale-down the mover goes where the stopped pods ran (their node still has the
    // volume attached); `pinned` is that place, found before they were stopped.
    let placement = match pinned {
        Some(p) => p,
        None if request.scale_down => steps::pin_to_users(kube, &[source]).await?,
        None => {
            let mut claims: Vec<&PersistentVolumeClaim> = vec![source];
            claims.extend(existing.iter().flatten());
            placement::place(kube, &claims, &[]).await?
        }
    };
    let plan = plan(
        request, settings, source, &existing, class, placement, job_name,
    )?;
    Ok((plan, class))
}

/// Makes the copies.
///
/// Whatever fails, the claims this run created are deleted (never a copy that existed before)
/// and workloads scaled down are scaled back up.
pub async fn run(
    kube: &Kube,
    request: &CloneRequest,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
) -> Result<CloneReport> {
    request.check()?;
    let scale: &[access::Permission] = if request.scale_down {
        access::SCALE
    } else {
        &[]
    };
    access::check(kube, &[access::MOVER_RUN, scale]).await?;
    // The source must exist before anything is scaled.
    let source = workflow::get_claim(kube, &request.claim).await?;
    let pinned = if request.scale_down {
        Some(steps::pin_to_users(kube, &[&source]).await?)
    } else {
        None
    };
    let mut stopped = if request.scale_down {
        Some(
            StoppedFor::begin(CLONE_STEPS, &source, &kube.namespace, &request.arguments())?
                .named(request.run.as_deref()),
        )
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
    let prefix = format!("{}-clone", request.claim);
    let job_name = match (&stopped, &request.run) {
        (Some(stopped), _) => stopped.job_name(&prefix),
        (None, Some(run)) => workflow::job_name_in_run(&prefix, run),
        (None, None) => workflow::job_name(&prefix),
    };
    let result = make_copies(
        kube, request, settings, &source, pinned, &job_name, observer,
    )
    .await;
    let mut report = match stopped {
        Some(stopped) => stopped.start_after(kube, guard, observer, result).await?,
        None => result?,
    };
    report.scaled = scaled;
    Ok(report)
}

async fn make_copies(
    kube: &Kube,
    request: &CloneRequest,
    settings: &MoverSettings,
    source: &PersistentVolumeClaim,
    pinned: Option<Placement>,
    job_name: &str,
    observer: &mut dyn Observer,
) -> Result<CloneReport> {
    let (plan, class) =
        plan_with(kube, request, settings, source, job_name, pinned.clone()).await?;
    let mut report = CloneReport {
        targets: plan.targets.clone(),
        method: plan.method,
        fell_back: None,
        created: Vec::new(),
        scaled: Vec::new(),
        outcomes: Vec::new(),
        detached: Vec::new(),
    };
    if plan.method == Method::Csi {
        match csi_clone(kube, &plan, class, settings, observer, &mut report).await {
            Ok(()) => return Ok(report),
            Err(e) => {
                remove_created(kube, &mut report, observer).await;
                if !plan.fallback || e.is_interrupted() {
                    return Err(e);
                }
                observer.step(&format!(
                    "{}; copying with the mover instead",
                    e.full_message()
                ));
                report.fell_back = Some(e.full_message());
                report.method = Method::Copy;
            }
        }
        let copy = CloneRequest {
            method: Method::Copy,
            ..request.clone()
        };
        let (plan, _) = plan_with(kube, &copy, settings, source, job_name, pinned).await?;
        copy_with_mover(kube, &plan, settings, observer, &mut report).await?;
    } else {
        copy_with_mover(kube, &plan, settings, observer, &mut report).await?;
    }
    Ok(report)
}

async fn csi_clone(
    kube: &Kube,
    plan: &ClonePlan,
    class: Option<ClassInfo>,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
    report: &mut CloneReport,
) -> Result<()> {
    for c in &plan.claims {
        let name = c.metadata.name.clone().unwrap_or_default();
        observer.step(&format!("creating CSI clone {name}"));
        workflow::create_claim(kube, c).await?;
        report.created.push(name);
    }
    let timeout = settings.run.start_timeout;
    if class.is_some_and(|c| c.wait_for_consumer) {
        // The class provisions only for a pod: a pod that mounts the clones and only prints
        // its version makes the driver clone now, so a failure shows here and not in the
        // workload that uses the copy later.
        let namespace = kube.namespace.clone();
        let source = plan.claims[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SOURCE_LABEL).cloned())
            .unwrap_or_default();
        let mut job = steps::mover_job(
            settings,
            &workflow::job_name(&format!("{source}-bind")),
            &namespace,
            &source,
            Role::Clone,
        );
        job.args = MoverCommand::Version.args();
        let block = plan.claims.iter().any(steps::is_block);
        for (i, name) in report.created.iter().enumerate() {
            let (volume, path) = target_mount(i);
            job.mounts.push(mount(&volume, name, &path, false, block));
        }
        steps::run_mover_ok(kube, &job, settings, "provisioning the clones", observer).await?;
    }
    for name in &report.created {
        observer.step(&format!("waiting for clone {name} to bind"));
        if workflow::wait_bound(kube, name, timeout).await?.is_none() {
            let why = steps::last_warning(kube, name)
                .await?
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            return Err(Error::Failed(format!(
                "the CSI clone {name} did not bind within {} s{why}: the storage class's \
                 driver may not clone claims; the clones were deleted. Use --method copy, or \
                 raise --start-timeout",
                timeout.as_secs()
            )));
        }
    }
    Ok(())
}

async fn copy_with_mover(
    kube: &Kube,
    plan: &ClonePlan,
    settings: &MoverSettings,
    observer: &mut dyn Observer,
    report: &mut CloneReport,
) -> Result<()> {
    let result = async {
        for c in &plan.claims {
            let name = c.metadata.name.clone().unwrap_or_default();
            observer.step(&format!("creating claim {name}"));
            workflow::create_claim(kube, c).await?;
            report.created.push(name);
        }
        for job in &plan.jobs {
            match steps::run_mover(kube, job, settings, settings.detach, observer).await? {
                Some(o) => report.outcomes.push(o),
                None => report.detached.push(job.name.clone()),
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = result {
        if e.is_stop() {
            remove_created(kube, report, observer).await;
        }
        return Err(e);
    }
    // The mover prints one summary per copy, in the order of the targets.
    let summaries: Vec<(&String, Outcome)> = if plan.jobs.len() == 1 {
        match report.outcomes.first() {
            Some(o) => plan
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut one = o.clone();
                    one.summaries = o.summaries.get(i).cloned().into_iter().collect();
                    (t, one)
                })
                .collect(),
            None => Vec::new(),
        }
    } else {
        plan.targets
            .iter()
            .zip(report.outcomes.iter().cloned())
            .collect()
    };
    let code = report.exit_code();
    if !ExitCode::from_code(code).is_some_and(ExitCode::wrote_target) {
        // Nothing usable was written (a refused empty source, a fatal error): copies made by
        // this run are removed, copies that existed keep what they had.
        remove_created(kube, report, observer).await;
        return Ok(());
    }
    for (target, outcome) in summaries {
        workflow::record_run(kube, target, &outcome).await?;
    }
    Ok(())
}

async fn remove_created(kube: &Kube, report: &mut CloneReport, observer: &mut dyn Observer) {
    for name in std::mem::take(&mut report.created) {
        observer.step(&format!("deleting claim {name}"));
        let _ = steps::delete_claim_and_wait(kube, &name, Duration::from_secs(60)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn source(class: &str, mode: &str) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "namespace": "shop"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "volumeMode": mode,
                "resources": {"requests": {"storage": "1Gi"}}
            },
            "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}}
        }))
        .unwrap()
    }

    fn request(method: Method, count: u32) -> CloneRequest {
        CloneRequest {
            claim: "data".into(),
            to: "copy".into(),
            count,
            storage_class: None,
            size: None,
            method,
            scale_down: false,
            run: None,
        }
    }

    const CSI: Option<ClassInfo> = Some(ClassInfo {
        csi: true,
        wait_for_consumer: false,
    });

    #[test]
    fn copies_are_named_and_one_mover_reads_the_source_once() {
        let req = request(Method::Copy, 3);
        assert_eq!(req.targets(), ["copy-1", "copy-2", "copy-3"]);
        let p = plan(
            &req,
            &MoverSettings::default(),
            &source("fast", "Filesystem"),
            &[None, None, None],
            CSI,
            Placement::Anywhere,
            "data-clone-x",
        )
        .unwrap();
        assert_eq!(p.method, Method::Copy);
        assert_eq!(p.claims.len(), 3);
        assert_eq!(p.jobs.len(), 1);
        let args = &p.jobs[0].args;
        assert_eq!(
            args.join(" "),
            "mover sync /source /backup --fsync --progress json --also /backup-2 --also /backup-3"
        );
        let claims: Vec<&str> = p.jobs[0].mounts.iter().map(|m| m.claim.as_str()).collect();
        assert_eq!(claims, ["data", "copy-1", "copy-2", "copy-3"]);
        assert!(p.jobs[0].mounts[0].read_only && !p.jobs[0].mounts[1].read_only);
        assert_eq!(request(Method::Copy, 1).targets(), ["copy"]);
    }

    #[test]
    fn auto_clones_with_csi_only_within_a_csi_class() {
        let src = source("fast", "Filesystem");
        let s = MoverSettings::default();
        let auto = request(Method::Auto, 2);
        let p = plan(
            &auto,
            &s,
            &src,
            &[None, None],
            CSI,
            Placement::Anywhere,
            "j",
        )
        .unwrap();
        assert_eq!((p.method, p.fallback, p.jobs.len()), (Method::Csi, true, 0));
        let ds = p.claims[1]
            .spec
            .as_ref()
            .unwrap()
            .data_source
            .clone()
            .unwrap();
        assert_eq!(
            (ds.kind.as_str(), ds.name.as_str()),
            ("PersistentVolumeClaim", "data")
        );
        // Another class, an in-tree provisioner, or an unknown class: a copy.
        let mut other = auto.clone();
        other.storage_class = Some("slow".into());
        let not_csi = Some(ClassInfo {
            csi: false,
            wait_for_consumer: false,
        });
        for (req, class) in [(&other, CSI), (&auto, not_csi), (&auto, None)] {
            let p = plan(
                req,
                &s,
                &src,
                &[None, None],
                class,
                Placement::Anywhere,
                "j",
            )
            .unwrap();
            assert_eq!(p.method, Method::Copy);
            assert!(
                p.claims
                    .iter()
                    .all(|c| c.spec.as_ref().unwrap().data_source.is_none())
            );
        }
        // --method csi across classes is refused with the way out.
        let mut csi = other.clone();
        csi.method = Method::Csi;
        let err = plan(&csi, &s, &src, &[None, None], CSI, Placement::Anywhere, "j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--method copy"), "{err}");
    }

    #[test]
    fn an_existing_claim_is_reused_only_when_it_is_our_copy_of_the_source() {
        let src = source("fast", "Filesystem");
        let s = MoverSettings::default();
        let req = request(Method::Auto, 1);
        let theirs = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("copy".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec::default()),
            status: None,
        };
        let err = plan(
            &req,
            &s,
            &src,
            &[Some(theirs)],
            CSI,
            Placement::Anywhere,
            "j",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a copy of data"), "{err}");
        let ours =
            claim::claim(&ClaimRequest::like(&src, "copy", Role::Clone, None, None).unwrap());
        let p = plan(
            &req,
            &s,
            &src,
            &[Some(ours.clone())],
            CSI,
            Placement::Anywhere,
            "j",
        )
        .unwrap();
        assert_eq!((p.method, p.claims.len()), (Method::Copy, 0));
        assert_eq!(p.reused, ["copy"]);
        let mut csi = req.clone();
        csi.method = Method::Csi;
        assert!(plan(&csi, &s, &src, &[Some(ours)], CSI, Placement::Anywhere, "j").is_err());
    }

    #[test]
    fn a_block_claim_is_copied_device_to_device_one_job_per_copy() {
        let p = plan(
            &request(Method::Copy, 2),
            &MoverSettings::default(),
            &source("fast", "Block"),
            &[None, None],
            CSI,
            Placement::Anywhere,
            "data-clone-x",
        )
        .unwrap();
        assert_eq!(p.jobs.len(), 2);
        assert_eq!(p.jobs[1].name, "data-clone-x-2");
        assert_eq!(p.jobs[1].mounts[1].claim, "copy-2");
        assert!(p.jobs[1].mounts.iter().all(|m| m.block));
        assert_eq!(p.jobs[1].args[..2], ["mover", "block"]);
    }
}
