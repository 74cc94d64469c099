//! Interrupted workflows go on where they stopped. `migrate`, `restore --swap`, a restore by
//! copy, `backup --scale-down` and `clone --scale-down` are killed (SIGKILL, nothing the product
//! could catch) as each step begins, then run again with the same arguments; the end state must
//! be the one an uninterrupted run leaves: the claims, their classes and volumes, the data
//! (judged by rsync against a copy taken before), the workload back at its replica count on the
//! right claim, no temporary claim, no unfinished Job, and no progress record left behind.
//!
//! A real cluster runs `migrate --keep-name` and `restore --swap` killed at each step; the fake
//! cluster runs every workflow (see [`fake_only`] for why).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use testcluster::fake::ClaimOptions;

use crate::util::{
    Cluster, add_fast_class, assert_holds, claim_with_data, cluster, deployment_using, expect_code,
    latest_snapshot, reference_copy, run, run_json, wait_running_with,
};
use testkit::oracle::rsync_itemize;

const PROGRESS: &str = "pvc-backup.io/progress";

/// A cluster set up for one run, and what its data was before.
struct Prepared {
    c: Cluster,
    _keep: tempfile::TempDir,
    before: PathBuf,
}

/// How a run that was to be killed ended.
struct Killed {
    /// The step lines it printed.
    lines: Vec<String>,
    /// Whether the kill stopped it (it may have ended before).
    killed: bool,
}

/// Runs the binary and SIGKILLs it as its `k`-th step line appears (never, with `None`).
fn run_killed_at(c: &Cluster, args: &[&str], k: Option<usize>) -> Killed {
    let mut seen = 0;
    let lines = run_killed_when(c, c.kubeconfig(), args, |_| {
        seen += 1;
        Some(seen) == k
    });
    match lines {
        Ok(lines) => Killed {
            lines,
            killed: true,
        },
        Err(lines) => Killed {
            lines,
            killed: false,
        },
    }
}

/// Runs the binary with `kubeconfig` and SIGKILLs it as a step line (`pvc-backup: ...`) makes
/// `kill_at` say so: `Ok` with the step lines up to that one when the kill stopped it, `Err` with
/// all its step lines when it ended first (it must succeed).
pub fn run_killed_when(
    c: &Cluster,
    kubeconfig: &std::path::Path,
    args: &[&str],
    mut kill_at: impl FnMut(&str) -> bool,
) -> Result<Vec<String>, Vec<String>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pvc-backup");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut lines = Vec::new();
    let mut said = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("read stderr");
        said.push(line.clone());
        if line.starts_with("pvc-backup: ") {
            lines.push(line.clone());
            if kill_at(&line) {
                child.kill().expect("kill pvc-backup");
                let status = child.wait().expect("reap pvc-backup");
                return if status.signal() == Some(9) {
                    Ok(lines)
                } else {
                    Err(lines)
                };
            }
        }
    }
    let status = child.wait().expect("wait for pvc-backup");
    assert!(status.success(), "{args:?} failed: {}", said.join("\n"));
    Err(lines)
}

/// Whether a progress record is left on a claim or a volume of the namespace (runs in other
/// namespaces go on at the same time).
fn recorded(c: &Cluster) -> bool {
    let on = |a: Option<&std::collections::BTreeMap<String, String>>| {
        a.is_some_and(|a| a.contains_key(PROGRESS))
    };
    c.list::<PersistentVolumeClaim>(Some(c.ns()))
        .iter()
        .any(|claim| on(claim.metadata.annotations.as_ref()))
        || c.list::<PersistentVolume>(None).iter().any(|pv| {
            let of_ns = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.namespace.as_deref())
                == Some(c.ns());
            of_ns && on(pv.metadata.annotations.as_ref())
        })
}

/// Whether a progress record is left once a killed run's last requests are served. The process
/// may have sent the request that removes its record just before the kill: the API server reads
/// it from the socket and serves it after the process is reaped. The record is given a few
/// seconds to go; the process is dead, so nothing else removes it.
fn recorded_after_kill(c: &Cluster) -> bool {
    for _ in 0..30 {
        if !recorded(c) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// What a run leaves, in terms that do not depend on generated names.
#[derive(Debug, PartialEq)]
struct EndState {
    /// Each claim: name, class, phase, its volume's class, its annotations' keys.
    claims: Vec<String>,
    /// Each volume of the namespace: phase, class, reclaim policy, annotations' keys.
    volumes: Vec<String>,
    /// The workload: replicas, the claim and sub-paths of volume `data`, its annotations.
    workload: String,
    /// How many Jobs, and whether all succeeded.
    jobs: (usize, bool),
}

fn keys(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Vec<String> {
    annotations
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default()
}

/// The end state; `id` (a snapshot's name) is written `ID`, as it differs between clusters.
fn end_state(c: &Cluster, id: Option<&str>) -> EndState {
    let normal = |s: String| match id {
        Some(id) => s.replace(id, "ID"),
        None => s,
    };
    let volumes_of_ns: Vec<PersistentVolume> = c
        .list::<PersistentVolume>(None)
        .into_iter()
        .filter(|v| {
            v.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.namespace.as_deref())
                == Some(c.ns())
        })
        .collect();
    let mut claims: Vec<String> = c
        .list::<PersistentVolumeClaim>(Some(c.ns()))
        .into_iter()
        .map(|claim| {
            let spec = claim.spec.clone().unwrap_or_default();
            let volume_class = spec.volume_name.as_ref().and_then(|v| {
                let pv: PersistentVolume = c.get("", v)?;
                pv.spec?.storage_class_name
            });
            format!(
                "{} class={:?} phase={:?} volume-class={volume_class:?} annotations={:?}",
                claim.metadata.name.clone().unwrap_or_default(),
                spec.storage_class_name,
                claim.status.and_then(|s| s.phase),
                keys(claim.metadata.annotations.as_ref()),
            )
        })
        .collect();
    claims.sort();
    let mut volumes: Vec<String> = volumes_of_ns
        .into_iter()
        .map(|v| {
            let spec = v.spec.unwrap_or_default();
            format!(
                "phase={:?} class={:?} reclaim={:?} annotations={:?}",
                v.status.and_then(|s| s.phase),
                spec.storage_class_name,
                spec.persistent_volume_reclaim_policy,
                keys(v.metadata.annotations.as_ref()),
            )
        })
        .collect();
    volumes.sort();
    let web: Deployment = c.get(c.ns(), "web").expect("deployment web");
    let mut annotations = web.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("deployment.kubernetes.io/revision");
    let template = web.spec.clone().unwrap_or_default().template;
    let workload = normal(format!(
        "replicas={:?} data={:?} annotations={annotations:?}",
        web.spec.and_then(|s| s.replicas),
        testcluster::objects::claim_and_sub_paths(&template, "data"),
    ));
    // A real Job controller counts a pod's success a moment after the mover exits.
    let ended = |j: &Job| {
        let s = j.status.clone().unwrap_or_default();
        s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0
    };
    c.wait_for(Duration::from_secs(60), |c| {
        c.list::<Job>(Some(c.ns())).iter().all(ended)
    });
    let jobs = c.list::<Job>(Some(c.ns()));
    let succeeded = jobs
        .iter()
        .all(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1));
    EndState {
        claims,
        volumes,
        workload,
        jobs: (jobs.len(), succeeded),
    }
}

/// Claim `data` with a tree in it, used by Deployment `web`.
fn data_used_by_web() -> Prepared {
    let c = cluster();
    add_fast_class(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    deployment_using(&c, "web", "data");
    let (_keep, before) = reference_copy(&src);
    Prepared { c, _keep, before }
}

/// How many interrupted runs go on at once, each in a namespace of its own. Most of a run is
/// waiting for pods to start and stop, so a few at once shorten the suite on a two-core node.
const AT_ONCE: usize = 4;

/// Runs `args` once uninterrupted, then once per step killed as that step begins and run again;
/// `check` judges the data and returns the end state, which must be the uninterrupted run's.
/// The interrupted runs go [`AT_ONCE`] at a time, each with its own namespace.
/// Returns how many of the kills left Deployment `web` scaled to zero.
fn kill_at_each_step(
    prepare: impl Fn() -> Prepared + Sync,
    args: &[&str],
    check: impl Fn(&Prepared) -> EndState + Sync,
) -> usize {
    let p = prepare();
    let calibration = run_killed_at(&p.c, args, None).lines;
    let steps = calibration.len();
    assert!(steps >= 3, "only {steps} step lines");
    eprintln!("{args:?}: {steps} steps, each interrupted in turn");
    let expected = check(&p);
    drop(p);
    let next = AtomicUsize::new(1);
    let kills = AtomicUsize::new(0);
    let left_down = AtomicUsize::new(0);
    let one = |k: usize| {
        let p = prepare();
        let first = run_killed_at(&p.c, args, Some(k));
        // Lines about a pod's start depend on timing: this run may have printed fewer and
        // ended; or the kill at the last line came once all was done, the record removed.
        let done = !first.killed
            || (first.lines.last() == calibration.last() && !recorded_after_kill(&p.c));
        if done {
            assert_eq!(check(&p), expected, "a run that ended, at step line {k}");
            return;
        }
        kills.fetch_add(1, Ordering::Relaxed);
        let web: Deployment = p.c.get(p.c.ns(), "web").expect("deployment web");
        if web.spec.and_then(|s| s.replicas) == Some(0) {
            left_down.fetch_add(1, Ordering::Relaxed);
        }
        let out = run(&p.c, args);
        expect_code(&out, 0);
        let got = check(&p);
        assert_eq!(
            got,
            expected,
            "killed at step line {k} of {steps}, then run again: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE.min(steps) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k > steps {
                        break;
                    }
                    one(k);
                }
            });
        }
    });
    let kills = kills.into_inner();
    assert!(
        kills + 2 >= steps,
        "only {kills} of {steps} runs were killed"
    );
    left_down.into_inner()
}

/// The checks every migration ends with: the data on the claim the workload uses, which has
/// the new class; the workload running on it; no record left.
fn migrated(p: &Prepared, now_used: &str) -> EndState {
    let c = &p.c;
    let claim: PersistentVolumeClaim = c.get(c.ns(), now_used).expect("the claim in use");
    let spec = claim.spec.clone().unwrap_or_default();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_holds(c, now_used, &p.before);
    assert!(wait_running_with(c, "web-", now_used), "{}", c.dump());
    // The volume's own phase follows its claim's a moment later.
    let volume = spec.volume_name.expect("bound");
    let bound = c.wait_for(Duration::from_secs(30), |c| {
        c.get::<PersistentVolume>("", &volume)
            .and_then(|v| v.status?.phase)
            .as_deref()
            == Some("Bound")
    });
    assert!(bound, "volume {volume} of claim {now_used} is not Bound");
    let state = end_state(c, None);
    assert!(
        !format!("{state:?}").contains(PROGRESS),
        "a record is left: {state:#?}"
    );
    state
}

#[test]
fn a_migration_keeping_the_name_killed_at_any_step_and_run_again_ends_as_an_uninterrupted_one() {
    kill_at_each_step(
        data_used_by_web,
        &["migrate", "data", "--storage-class", "fast", "--keep-name"],
        |p| {
            let state = migrated(p, "data");
            assert!(
                p.c.get::<PersistentVolumeClaim>(p.c.ns(), "data-fast")
                    .is_none()
            );
            state
        },
    );
}

/// Claim `data` used by `web`, backed up into `data-backup`, then damaged.
fn backed_up_then_damaged() -> Prepared {
    let p = data_used_by_web();
    let report = run_json(&p.c, &["backup", "data", "-o", "json"]);
    assert!(report["summary"]["snapshot"].is_string(), "{report}");
    let src = p.c.volume_dir(p.c.ns(), "data").unwrap();
    std::fs::write(src.join("a.txt"), b"garbage\n").unwrap();
    p
}

#[test]
fn a_swap_killed_at_any_step_and_run_again_ends_as_an_uninterrupted_one() {
    let _never_stopped = kill_at_each_step(
        backed_up_then_damaged,
        &["restore", "data", "--from", "data-backup", "--swap"],
        |p| {
            let c = &p.c;
            let backup = c.volume_dir(c.ns(), "data-backup").unwrap();
            let snapshot = latest_snapshot(&backup);
            let diff = rsync_itemize(&p.before, &snapshot, &[]);
            assert!(diff.is_empty(), "{diff:#?}");
            assert!(wait_running_with(c, "web-", "data-backup"), "{}", c.dump());
            let id = snapshot.file_name().unwrap().to_string_lossy().into_owned();
            let state = end_state(c, Some(&id));
            assert!(state.workload.contains("snapshots/ID"), "{state:#?}");
            assert!(
                !format!("{state:?}").contains(PROGRESS),
                "a record is left: {state:#?}"
            );
            state
        },
    );
}

/// Deployment `web` runs again, once, on claim `data`.
fn web_back_on_data(c: &Cluster) {
    let web: Deployment = c.get(c.ns(), "web").expect("deployment web");
    assert_eq!(web.spec.and_then(|s| s.replicas), Some(1));
    assert!(wait_running_with(c, "web-", "data"), "{}", c.dump());
}

/// Interrupted runs the fake cluster alone runs. Each kill needs a fresh namespace and a run of
/// its own, about 50 s on one real node (the 16 kills of `migrate --keep-name` take 14 minutes
/// one at a time, those of `restore --swap` 3), so a real cluster runs those two, and the fake
/// cluster them all.
mod fake_only {
    use super::*;

    fn on_the_fake_cluster() {
        assert!(
            testcluster::real::Settings::from_env().is_none(),
            "this test runs on the fake cluster only: a real node takes too long for a kill at \
             each step of every workflow"
        );
    }

    #[test]
    fn a_migration_killed_at_any_step_and_run_again_ends_as_an_uninterrupted_one() {
        on_the_fake_cluster();
        let left_down = kill_at_each_step(
            data_used_by_web,
            &["migrate", "data", "--storage-class", "fast"],
            |p| migrated(p, "data-fast"),
        );
        // Some kills left the workload stopped; each run again gave it its replica back.
        assert!(left_down >= 3, "{left_down}");
    }

    #[test]
    fn a_run_again_with_other_arguments_is_refused_and_loses_nothing() {
        on_the_fake_cluster();
        let p = data_used_by_web();
        let c = &p.c;
        let args = ["migrate", "data", "--storage-class", "fast", "--keep-name"];
        // Killed as the workload is stopped.
        assert!(run_killed_at(c, &args, Some(4)).killed);
        let record = |c: &Cluster| {
            c.get::<PersistentVolumeClaim>(c.ns(), "data")
                .and_then(|claim| claim.metadata.annotations)
                .and_then(|a| a.get(PROGRESS).cloned())
        };
        let before = record(c).expect("a record on claim data");
        let out = run(c, &["migrate", "data", "--storage-class", "fast"]);
        expect_code(&out, 1);
        let err = String::from_utf8_lossy(&out.stderr);
        for part in [
            "pvc/data",
            PROGRESS,
            "--storage-class fast --keep-name",
            "same arguments",
            "kubectl annotate pvc/data",
            "Nothing was changed",
        ] {
            assert!(err.contains(part), "{part:?} missing in: {err}");
        }
        assert_eq!(record(c).as_deref(), Some(before.as_str()));
        // The same arguments finish it.
        expect_code(&run(c, &args), 0);
        assert!(record(c).is_none());
        let _ = migrated(&p, "data");
        let web: Deployment = c.get(c.ns(), "web").unwrap();
        assert_eq!(web.spec.unwrap().replicas, Some(1));
    }

    #[test]
    fn a_backup_with_scale_down_killed_at_any_step_and_run_again_leaves_no_workload_stopped() {
        on_the_fake_cluster();
        let left_down =
            kill_at_each_step(data_used_by_web, &["backup", "data", "--scale-down"], |p| {
                let c = &p.c;
                let backup = c.volume_dir(c.ns(), "data-backup").unwrap();
                let diff = rsync_itemize(&p.before, &latest_snapshot(&backup), &[]);
                assert!(diff.is_empty(), "{diff:#?}");
                web_back_on_data(c);
                end_state(c, None)
            });
        assert!(left_down >= 2, "{left_down}");
    }

    #[test]
    fn a_restore_by_copy_killed_at_any_step_and_run_again_leaves_no_workload_stopped() {
        on_the_fake_cluster();
        let left_down = kill_at_each_step(
            backed_up_then_damaged,
            &["restore", "data", "--from", "data-backup"],
            |p| {
                assert_holds(&p.c, "data", &p.before);
                web_back_on_data(&p.c);
                end_state(&p.c, None)
            },
        );
        assert!(left_down >= 2, "{left_down}");
    }

    #[test]
    fn a_clone_with_scale_down_killed_at_any_step_and_run_again_leaves_no_workload_stopped() {
        on_the_fake_cluster();
        let left_down = kill_at_each_step(
            data_used_by_web,
            &[
                "clone",
                "data",
                "--to",
                "copy",
                "--method",
                "copy",
                "--scale-down",
            ],
            |p| {
                assert_holds(&p.c, "copy", &p.before);
                web_back_on_data(&p.c);
                end_state(&p.c, None)
            },
        );
        assert!(left_down >= 2, "{left_down}");
    }
}
