//! `pvc-backup backup`, `schedule`, `schedules`, `unschedule` and `list` against the fake cluster.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use testcluster::fake::ClaimOptions;
use testkit::oracle::rsync_itemize;

use crate::util::{
    IMAGE, access_mode, assert_latest_snapshot_holds, cluster, cluster_with_data, deployment_using,
    expect_code, job_succeeds, latest_snapshot, pods_labelled, run, run_failing, run_json,
    run_offline, yaml_docs,
};

fn mover_pods(c: &crate::util::Cluster) -> Vec<Pod> {
    pods_labelled(c, "app.kubernetes.io/managed-by", "pvc-backup")
}

#[test]
fn backup_runs_next_to_the_workload_and_snapshots_the_claim() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    let node = deployment_using(&c, "web", "data");

    let out = run(&c, &["backup", "data", "-n", c.ns(), "--keep-last", "3"]);
    expect_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("into data-backup: done"), "{stdout}");

    // The target claim was made like the source and labelled as a backup of it.
    let target: PersistentVolumeClaim = c.get(c.ns(), "data-backup").expect("data-backup");
    let labels = target.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["pvc-backup.io/source"], "data");
    assert_eq!(labels["pvc-backup.io/role"], "backup");
    let last: serde_json::Value = serde_json::from_str(
        &target.metadata.annotations.clone().unwrap_or_default()["pvc-backup.io/last-run"],
    )
    .expect("last-run annotation is JSON");
    assert_eq!(last["result"], "ok", "{last}");

    // The mover ran on the node where the claim is attached, pinned by required affinity.
    let pods = mover_pods(&c);
    assert_eq!(pods.len(), 1, "one mover pod");
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("pvc-backup-deployer")
    );
    assert_eq!(spec.containers[0].image, Some(c.image()));

    // The snapshot holds what the source holds (rsync as the judge).
    let backup = c.volume_dir(c.ns(), "data-backup").expect("backup volume");
    let snap = latest_snapshot(&backup);
    let diff = rsync_itemize(&src, &snap, &[]);
    assert!(
        diff.is_empty(),
        "snapshot differs from the source: {diff:#?}"
    );

    // A second run adds a snapshot that shares unchanged files with the first.
    std::fs::write(src.join("a.txt"), b"changed\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let report = run_json(&c, &["backup", "data", "-o", "json"]);
    assert_eq!(report["exitCode"], 0);
    let snap2 = latest_snapshot(&backup);
    assert_ne!(snap, snap2);
    assert!(rsync_itemize(&src, &snap2, &[]).is_empty());
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&snap.join("sub/b.bin")), ino(&snap2.join("sub/b.bin")));
    assert_eq!(std::fs::read(snap.join("a.txt")).unwrap(), b"alpha\n");

    // `list` shows it with its last run.
    let list = run_json(&c, &["list", "-o", "json"]);
    let item = &list["items"][0];
    assert_eq!(item["name"], "data-backup");
    assert_eq!(item["source"], "data");
    assert_eq!(item["lastRun"]["result"], "ok");
}

#[test]
fn dry_run_client_prints_objects_kubernetes_accepts_without_a_cluster() {
    let out = run_offline(&[
        "backup",
        "data",
        "--size",
        "2Gi",
        "--dry-run=client",
        "-n",
        "shop",
        "--subdir",
        "www",
        "--keep-daily",
        "7",
        "--image",
        IMAGE,
    ]);
    expect_code(&out, 0);
    let yaml = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_docs(&yaml);
    assert_eq!(docs.len(), 2, "{yaml}");
    let claim: PersistentVolumeClaim = serde_saphyr::from_str(docs[0]).expect("a claim");
    assert_eq!(claim.metadata.name.as_deref(), Some("data-backup"));
    assert_eq!(claim.metadata.namespace.as_deref(), Some("shop"));
    let job: Job = serde_saphyr::from_str(docs[1]).expect("a Job");
    let pod = job.spec.unwrap().template.spec.unwrap();
    let ctr = &pod.containers[0];
    assert_eq!(
        ctr.command.as_deref(),
        Some(&["/pvc-backup".to_owned()][..])
    );
    let args = ctr.args.clone().unwrap().join(" ");
    assert_eq!(
        args,
        "mover backup /source /backup --progress json --keep-daily 7 --subdir www"
    );
    let sc = ctr.security_context.clone().unwrap();
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap().len(), 5);
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let mounts = ctr.volume_mounts.clone().unwrap();
    assert_eq!(mounts[0].mount_path, "/source");
    assert_eq!(mounts[0].read_only, Some(true));
    assert_eq!(mounts[1].mount_path, "/backup");
}

#[test]
fn a_missing_claim_is_named_and_nothing_is_created() {
    let c = cluster();
    let err = run_failing(&c, &["backup", "nope"]);
    assert!(
        err.contains(&format!("claim nope not found in namespace {}", c.ns())),
        "{err}"
    );
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
    assert!(c.list::<PersistentVolumeClaim>(Some(c.ns())).is_empty());
}

#[test]
fn a_backup_into_another_namespace_refuses_what_it_cannot_do_before_anything_is_made() {
    // The run itself is real_only::a_backup_into_another_namespace_adds_snapshots_there_...
    let (c, _src) = cluster_with_data(ClaimOptions::default());
    for (flags, says) in [
        (
            &["--from-snapshot"][..],
            "--from-snapshot with a backup into another namespace",
        ),
        (
            &["--scale-down"][..],
            "--scale-down with a backup into another namespace",
        ),
        (
            &["--subdir", "x"][..],
            "--subdir with a backup into another namespace",
        ),
        (
            &[
                "--repository",
                "s3:http://127.0.0.1:1/b",
                "--repository-secret",
                "s",
            ][..],
            "--repository with a backup into another namespace",
        ),
    ] {
        let mut args = vec!["backup", "data", "--to-namespace", "lab"];
        args.extend_from_slice(flags);
        let err = run_failing(&c, &args);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    let err = run_failing(&c, &["backup", "data", "--compress"]);
    assert!(
        err.contains("--compress applies to a copy between two movers"),
        "{err}"
    );
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
    assert_eq!(c.list::<PersistentVolumeClaim>(Some(c.ns())).len(), 1);
}

#[test]
fn an_image_that_cannot_be_pulled_fails_early_and_cleans_up() {
    let (c, _) = cluster_with_data(ClaimOptions::default());
    c.make_mover_unpullable();
    let err = run_failing(&c, &["backup", "data", "--start-timeout", "60"]);
    assert!(
        err.contains("cannot start") && err.contains("--image"),
        "{err}"
    );
    // The Job and the claim this run made are gone; the source is untouched.
    let gone = c.wait_for(Duration::from_secs(20), |c| {
        c.list::<Job>(Some(c.ns())).is_empty() && mover_pods(c).is_empty()
    });
    assert!(gone, "the Job or its pod was left behind");
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-backup")
            .is_none()
    );
    assert!(c.get::<PersistentVolumeClaim>(c.ns(), "data").is_some());
}

#[test]
fn a_read_write_once_pod_claim_in_use_suggests_scaling_down() {
    let (c, _) = cluster_with_data(access_mode("ReadWriteOncePod"));
    deployment_using(&c, "db", "data");
    let err = run_failing(&c, &["backup", "data"]);
    assert!(
        err.contains("ReadWriteOncePod") && err.contains("--scale-down"),
        "{err}"
    );
    assert!(c.list::<Job>(Some(c.ns())).is_empty());
}

#[test]
fn scheduled_backups_run_list_and_go() {
    let (c, src) = cluster_with_data(ClaimOptions::default());

    // A schedule Kubernetes would refuse is refused before anything is made.
    let err = run_failing(&c, &["schedule", "data", "--cron", "0 2 * * * *"]);
    assert!(err.contains("6 fields, not 5"), "{err}");
    assert!(c.list::<CronJob>(Some(c.ns())).is_empty());
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-backup")
            .is_none()
    );

    let out = run(
        &c,
        &[
            "schedule",
            "data",
            "--cron",
            "0 2 * * *",
            "--keep-daily",
            "7",
        ],
    );
    expect_code(&out, 0);
    let cron: CronJob = c.get(c.ns(), "data-backup").expect("CronJob data-backup");
    assert_eq!(cron.spec.as_ref().unwrap().schedule, "0 2 * * *");
    assert_eq!(
        cron.spec.as_ref().unwrap().concurrency_policy.as_deref(),
        Some("Forbid")
    );

    // The controller fires it: the Job it makes backs the claim up.
    let job = c.fire_cronjob(c.ns(), "data-backup").expect("fire");
    assert!(job_succeeds(&c, &job), "the scheduled Job did not succeed");
    assert_latest_snapshot_holds(&c, "data-backup", &src);

    let list = run_json(&c, &["schedules", "-o", "json"]);
    assert_eq!(list["items"][0]["source"], "data");
    assert_eq!(list["items"][0]["target"], "data-backup");

    let out = run(&c, &["unschedule", "data"]);
    expect_code(&out, 0);
    assert!(c.list::<CronJob>(Some(c.ns())).is_empty());
    // The backups stay.
    assert!(
        c.get::<PersistentVolumeClaim>(c.ns(), "data-backup")
            .is_some()
    );
    let out = run(&c, &["unschedule", "data"]);
    expect_code(&out, 1);
}

#[test]
fn installed_as_a_kubectl_plugin_it_speaks_of_kubectl_pvc_backup() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-pvc_backup");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pvc-backup"), &plugin).unwrap();
    let out = std::process::Command::new(&plugin)
        .args(["backup", "--help"])
        .output()
        .unwrap();
    expect_code(&out, 0);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: kubectl pvc-backup backup"), "{help}");
}

#[test]
fn ctrl_c_while_waiting_deletes_the_job_and_the_claim_it_made() {
    let (c, _) = cluster_with_data(ClaimOptions::default());
    // A request no node can meet (a thousand CPUs) keeps the pod Pending, without a reason to
    // give up early, and leaves the node to the tests that run beside this one.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args([
            "backup",
            "data",
            "--start-timeout",
            "600",
            "--requests",
            "cpu=1000",
        ])
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env("PVC_BACKUP_IMAGE", c.image())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = c.wait_for(Duration::from_secs(30), |c| {
        !c.list::<Job>(Some(c.ns())).is_empty()
    });
    assert!(started, "no Job was created");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted"), "{err}");
    // The claim goes once the pod that would have used it is gone (pvc-protection).
    let gone = c.wait_for(Duration::from_secs(30), |c| {
        c.list::<Job>(Some(c.ns())).is_empty()
            && c.get::<PersistentVolumeClaim>(c.ns(), "data-backup")
                .is_none()
    });
    assert!(gone, "the Job or the claim it made was left behind");
}

#[test]
fn detach_creates_the_job_and_returns() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    let report = run_json(&c, &["backup", "data", "--detach", "-o", "json"]);
    assert_eq!(report["detached"], true);
    let job = report["job"].as_str().unwrap();
    assert!(job_succeeds(&c, job), "the detached Job did not complete");
    assert_latest_snapshot_holds(&c, "data-backup", &src);
}

/// The sizes of every regular file below `dir`, each name counted.
fn regular_file_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            total += regular_file_bytes(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}

/// Records what a workflow reports.
#[derive(Default)]
struct Recorder {
    steps: Vec<String>,
    progress: Vec<contract::Progress>,
}

impl cluster::run::Observer for Recorder {
    fn step(&mut self, message: &str) {
        self.steps.push(message.to_owned());
    }
    fn progress(&mut self, p: &contract::Progress) {
        self.progress.push(p.clone());
    }
    fn text(&mut self, _: &str) {}
}

#[test]
fn the_workflow_follows_the_movers_progress_from_the_pod_log() {
    let (c, src) = cluster_with_data(ClaimOptions::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rec = Recorder::default();
    let report = rt
        .block_on(async {
            let kube = cluster::connect::Kube {
                client: c.client(),
                namespace: c.ns().into(),
            };
            let settings = cluster::workflow::MoverSettings {
                image: c.image(),
                ..Default::default()
            };
            let request = cluster::workflow::backup::BackupRequest {
                claim: "data".into(),
                ..Default::default()
            };
            cluster::workflow::backup::run(&kube, &request, &settings, &mut rec).await
        })
        .expect("backup");
    let outcome = report.outcome.expect("followed");
    assert_eq!(outcome.exit_code, 0);
    let last = rec
        .progress
        .last()
        .expect("progress lines were read from the log");
    assert_eq!(last.phase, "done");
    // The mover counts the bytes of every regular file entry (a hard link's as often as it has
    // names): the sizes the kernel gives for the source's files.
    assert_eq!(last.bytes_known, regular_file_bytes(&src));
    assert!(
        rec.steps
            .iter()
            .any(|s| s.starts_with("mover running in pod")),
        "{:?}",
        rec.steps
    );
    let report = contract::Report::read(outcome.summaries.last().unwrap());
    assert_eq!(report.entries.map(|e| e.failed), Some(0));
}

/// Tests only the fake cluster can run.
mod fake_only {
    use super::*;
    use testcluster::fake::Options;

    #[test]
    fn from_snapshot_copies_a_moment_and_removes_what_it_made() {
        // The local cluster has no CSI driver that takes snapshots (its volumes come from the
        // in-tree hostpath provisioner).
        let c = crate::util::fake_only(
            Options::default(),
            "needs a CSI driver that takes VolumeSnapshots",
        );
        let src = crate::util::claim_with_data(&c, "data", ClaimOptions::default());
        let out = run(&c, &["backup", "data", "--from-snapshot"]);
        expect_code(&out, 0);
        assert_latest_snapshot_holds(&c, "data-backup", &src);
        // Only the source and the backup claim remain; no snapshot is left.
        let mut claims: Vec<String> = c
            .list::<PersistentVolumeClaim>(Some(c.ns()))
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect();
        claims.sort();
        assert_eq!(claims, ["data", "data-backup"]);
        let url = format!(
            "{}/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots",
            c.url()
        );
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshot list");
        assert_eq!(list["kind"], "VolumeSnapshotList", "{list}");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    }
}
