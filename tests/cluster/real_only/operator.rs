//! `pvc-backup operator` against the real API server: it runs on the host with the test's
//! kubeconfig, watching the test's namespace, and carries out each kind through a real kubelet.
//! The data it made is judged on the host (rsync against the source), the Jobs, workloads and
//! Backups it made through the API server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use testcluster::fake::ClaimOptions;

use super::{ClusterScoped, apply, install_resources, kubectl, manifests, real, repository};
use crate::util::{
    Cluster, assert_holds, assert_latest_snapshot_holds, claim_with_data, deployment_using,
    expect_code, latest_snapshot,
};

/// An operator process, killed when dropped; its log is kept in a file to show on failure.
struct Operator {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Operator {
    fn start(c: &Cluster) -> Operator {
        Operator::start_with(c, &[])
    }

    /// A replica of several: it acts only while it holds the Lease, under this name.
    fn replica(c: &Cluster, name: &str) -> Operator {
        Operator::start_with(
            c,
            &[
                "--leader-elect",
                "--identity",
                name,
                "--lease-duration",
                "6",
            ],
        )
    }

    fn start_with(c: &Cluster, extra: &[&str]) -> Operator {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
            .args([
                "operator",
                "-n",
                c.ns(),
                "--image",
                &c.image(),
                "--kubeconfig",
            ])
            .arg(c.kubeconfig())
            .args(extra)
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start pvc-backup operator");
        Operator { child, log }
    }

    /// Kills it at once (SIGKILL), as a node failure or an OOM kill would.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address on the loopback no one listens on now.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The body of a GET with curl, which must succeed.
fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "10", url])
        .output()
        .expect("run curl");
    expect_code(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// The Events on Backup `name`, as (type, reason, message).
fn events(c: &Cluster, name: &str) -> Vec<(String, String, String)> {
    events_of(c, "Backup", name)
}

/// A Backup as the API server holds it.
fn backup(c: &Cluster, name: &str) -> Value {
    object(c, "backup", name)
}

/// A pvc-backup.io resource of `kind` (`backup`, `restore`, ...) as the API server holds it.
fn object(c: &Cluster, kind: &str, name: &str) -> Value {
    let kind = format!("{kind}.pvc-backup.io");
    let out = kubectl(c, &["get", "-n", c.ns(), &kind, name, "-o", "json"], None);
    expect_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the resource `kind`/`name` satisfies `done`; panics with the operator's log
/// after `limit`.
fn wait_for_object(
    c: &Cluster,
    kind: &str,
    name: &str,
    operator: &Operator,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let o = object(c, kind, name);
        if done(&o) {
            return o;
        }
        assert!(
            start.elapsed() < limit,
            "{kind} {name} did not get there in {limit:?}: {o:#}\noperator log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Creates the resource `kind` (`Restore`, ...) `name` with `spec` in the test's namespace.
fn create_object(c: &Cluster, kind: &str, name: &str, spec: Value) {
    let doc = json!({"apiVersion": "pvc-backup.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec});
    expect_code(&super::create(c, &doc, false), 0);
}

/// Waits until Backup `name` satisfies `done`; panics with the operator's log after `limit`.
fn wait_until(
    c: &Cluster,
    name: &str,
    operator: &Operator,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_with_log(c, name, limit, done, || operator.log())
}

/// [`wait_until`] with the operator's log from `log`.
fn wait_with_log(
    c: &Cluster,
    name: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
    log: impl Fn() -> String,
) -> Value {
    let start = Instant::now();
    loop {
        let b = backup(c, name);
        if done(&b) {
            return b;
        }
        assert!(
            start.elapsed() < limit,
            "Backup {name} did not get there in {limit:?}: {b:#}\noperator log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn final_phase(b: &Value) -> bool {
    matches!(
        b["status"]["phase"].as_str(),
        Some("Succeeded" | "PartiallyFailed" | "Failed")
    )
}

/// Creates Backup `name` with `spec` in the test's namespace.
fn create_backup(c: &Cluster, name: &str, spec: Value) {
    let doc = json!({"apiVersion": "pvc-backup.io/v1alpha1", "kind": "Backup",
        "metadata": {"name": name}, "spec": spec});
    expect_code(&super::create(c, &doc, false), 0);
}

#[test]
fn the_operator_carries_out_a_backup_once_across_a_restart() {
    let Some(c) = real("the_operator_carries_out_a_backup_once_across_a_restart") else {
        return;
    };
    let _crds = install_resources(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());

    let operator = Operator::start(&c);
    create_backup(
        &c,
        "data-now",
        json!({"source": {"claim": "data"}, "keep": {"last": 2}}),
    );
    // The operator takes it: its finalizer, phase Running and the Job's name in the status.
    let running = wait_until(&c, "data-now", &operator, Duration::from_secs(60), |b| {
        b["status"]["job"].is_string() || final_phase(b)
    });
    assert_eq!(
        running["metadata"]["finalizers"],
        json!(["pvc-backup.io/stop-job"]),
        "{running:#}"
    );
    let job = running["status"]["job"].as_str().unwrap().to_owned();

    // Killed mid-run and started again, it follows the same Job to its end.
    let first_log = operator.kill();
    let address = free_address();
    let operator = Operator::start_with(&c, &["--metrics-address", &address]);
    let done = wait_until(
        &c,
        "data-now",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    let status = &done["status"];
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{done:#}\nfirst operator's log:\n{first_log}\nsecond's:\n{}",
        operator.log()
    );
    assert_eq!(status["job"], job.as_str(), "{done:#}");
    let jobs: Vec<Job> = c.list(Some(c.ns()));
    let names: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert_eq!(names, [job.as_str()], "one Job for one Backup");
    assert_eq!(status["conditions"][0]["type"], "Succeeded", "{done:#}");
    assert_eq!(status["conditions"][0]["status"], "True", "{done:#}");
    assert!(status["startTime"].is_string() && status["completionTime"].is_string());

    // The snapshot it names is the newest in the backup claim, and holds what the source holds.
    assert_latest_snapshot_holds(&c, "data-backup", &src);
    let backup_dir = c.volume_dir(c.ns(), "data-backup").unwrap();
    let newest = latest_snapshot(&backup_dir);
    assert_eq!(
        status["snapshot"].as_str(),
        newest.file_name().and_then(|n| n.to_str()),
        "{done:#}"
    );
    let stats = &status["stats"];
    assert!(stats["entries"].as_i64() > Some(5), "{done:#}");
    assert_eq!(stats["failed"], 0, "{done:#}");

    // Its metrics count the run and the claim's last success; it says it is ready (curl reads
    // them, as Prometheus and the kubelet would).
    let page = curl(&format!("http://{address}/metrics"));
    let ns = c.ns();
    let succeeded = format!(
        "pvc_backup_runs_total{{kind=\"Backup\",namespace=\"{ns}\",result=\"Succeeded\"}} 1"
    );
    assert!(
        page.lines().any(|l| l == succeeded),
        "{succeeded}\nnot in:\n{page}"
    );
    let last =
        format!("pvc_backup_last_success_timestamp_seconds{{namespace=\"{ns}\",claim=\"data\"}} ");
    let when: i64 = page
        .lines()
        .find_map(|l| l.strip_prefix(&last))
        .unwrap_or_else(|| panic!("{last}\nnot in:\n{page}"))
        .parse()
        .unwrap();
    let completed: String = status["completionTime"].as_str().unwrap().to_owned();
    let completed: i64 = completed.parse::<jiff::Timestamp>().unwrap().as_second();
    assert!((when - completed).abs() <= 5, "{when} vs {completed}");
    assert_eq!(curl(&format!("http://{address}/readyz")), "ok");

    // Events tell the run's start and end.
    let told = events(&c, "data-now");
    assert!(
        told.iter().any(|(t, r, _)| t == "Normal" && r == "Started")
            && told.iter().any(|(t, r, m)| t == "Normal"
                && r == "Succeeded"
                && m.contains(status["snapshot"].as_str().unwrap())),
        "{told:#?}"
    );

    // A Backup of a claim that does not exist fails, saying which.
    create_backup(&c, "nothing-now", json!({"source": {"claim": "nothing"}}));
    let failed = wait_until(
        &c,
        "nothing-now",
        &operator,
        Duration::from_secs(60),
        final_phase,
    );
    assert_eq!(failed["status"]["phase"], "Failed", "{failed:#}");
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nothing"), "{failed:#}");
    let told = events(&c, "nothing-now");
    assert!(
        told.iter()
            .any(|(t, r, m)| t == "Warning" && r == "Failed" && m.contains("nothing")),
        "{told:#?}"
    );

    // Deleting a Backup is not held up once its run ended: the operator lets the finalizer go.
    let out = kubectl(
        &c,
        &[
            "delete",
            "-n",
            c.ns(),
            "backup.pvc-backup.io",
            "data-now",
            "nothing-now",
            "--timeout=60s",
        ],
        None,
    );
    expect_code(&out, 0);

    // Deleted while its Job waits for a node (it asks for more CPUs than any node has), a Backup
    // takes its Job with it.
    create_backup(
        &c,
        "data-stuck",
        json!({"source": {"claim": "data"},
                     "mover": {"resources": {"requests": {"cpu": "1000"}}}}),
    );
    let stuck = wait_until(&c, "data-stuck", &operator, Duration::from_secs(60), |b| {
        b["status"]["job"].is_string() || final_phase(b)
    });
    let job = stuck["status"]["job"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let start = Instant::now();
    while c.get::<Job>(c.ns(), &job).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Job {job} was not made: {stuck:#}\noperator log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = kubectl(
        &c,
        &[
            "delete",
            "-n",
            c.ns(),
            "backup.pvc-backup.io",
            "data-stuck",
            "--timeout=60s",
        ],
        None,
    );
    expect_code(&out, 0);
    let start = Instant::now();
    while let Some(j) = c.get::<Job>(c.ns(), &job) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Job {job} outlived its Backup: {:#?}\noperator log:\n{}",
            j.metadata,
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The Lease of the operators' election, as the API server holds it.
fn lease(c: &Cluster) -> Option<Value> {
    let out = kubectl(
        c,
        &[
            "get",
            "-n",
            c.ns(),
            "lease",
            "pvc-backup-operator",
            "-o",
            "json",
        ],
        None,
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Waits until replica `name` holds the Lease.
fn wait_holder(c: &Cluster, name: &str, limit: Duration, logs: &[&Operator]) -> Value {
    let start = Instant::now();
    loop {
        if let Some(l) = lease(c)
            && l["spec"]["holderIdentity"] == name
        {
            return l;
        }
        assert!(
            start.elapsed() < limit,
            "{name} did not get the Lease in {limit:?}: {:#?}\nlogs:\n{}",
            lease(c),
            logs.iter()
                .map(|o| o.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn of_two_operators_one_acts_and_the_other_takes_over_when_it_dies() {
    let Some(c) = real("of_two_operators_one_acts_and_the_other_takes_over_when_it_dies") else {
        return;
    };
    let _crds = install_resources(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());

    // Replica a holds the Lease before b starts; b waits.
    let a = Operator::replica(&c, "replica-a");
    wait_holder(&c, "replica-a", Duration::from_secs(30), &[&a]);
    let b = Operator::replica(&c, "replica-b");
    create_backup(&c, "data-one", json!({"source": {"claim": "data"}}));
    let one = wait_until(&c, "data-one", &a, Duration::from_secs(300), final_phase);
    assert_eq!(one["status"]["phase"], "Succeeded", "{one:#}\n{}", a.log());
    let jobs: Vec<Job> = c.list(Some(c.ns()));
    assert_eq!(jobs.len(), 1, "one Job for one Backup: {jobs:#?}");
    assert!(
        a.log().contains("run starts") && !b.log().contains("run starts"),
        "only the holder acts\na:\n{}\nb:\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(
        lease(&c).unwrap()["spec"]["holderIdentity"],
        "replica-a",
        "the holder renews it"
    );

    // a dies without giving the Lease up: b takes it once it runs out, and acts.
    let a_log = a.kill();
    let held = wait_holder(&c, "replica-b", Duration::from_secs(60), &[&b]);
    assert!(
        held["spec"]["leaseTransitions"].as_i64() >= Some(1),
        "{held:#}"
    );
    create_backup(&c, "data-two", json!({"source": {"claim": "data"}}));
    let two = wait_until(&c, "data-two", &b, Duration::from_secs(300), final_phase);
    assert_eq!(
        two["status"]["phase"],
        "Succeeded",
        "{two:#}\nb:\n{}\na:\n{a_log}",
        b.log()
    );
    assert_latest_snapshot_holds(&c, "data-backup", &src);
    assert_eq!(
        c.list::<Job>(Some(c.ns())).len(),
        2,
        "one Job for each of the two Backups"
    );
}

#[test]
fn the_operator_installed_from_its_manifests_carries_out_a_backup() {
    let Some(c) = real("the_operator_installed_from_its_manifests_carries_out_a_backup") else {
        return;
    };
    let _crds = install_resources(&c);
    let op_ns = format!("{}-op", c.ns());
    let _objects = ClusterScoped {
        c: &c,
        objects: vec![
            format!("namespace/{op_ns}"),
            "clusterrole/pvc-backup-controller".into(),
            "clusterrolebinding/pvc-backup-controller".into(),
            "clusterrolebinding/pvc-backup-operator-runs".into(),
            "clusterrolebinding/pvc-backup-operator-volumes".into(),
        ],
    };
    // Applied as printed: the pods reach the API server by its Service, through kube-proxy.
    let printed = manifests(&c, &["--operator", "--namespace", &op_ns]);
    apply(&c, &printed);
    let logs = || {
        let out = kubectl(
            &c,
            &[
                "logs",
                "-n",
                &op_ns,
                "-l",
                "app.kubernetes.io/component=operator",
                "--tail=200",
                "--prefix",
            ],
            None,
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = kubectl(
        &c,
        &[
            "rollout",
            "status",
            "-n",
            &op_ns,
            "deployment/pvc-backup-operator",
            "--timeout=180s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "the operator did not become ready: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );

    let src = claim_with_data(&c, "data", ClaimOptions::default());
    create_backup(&c, "data-now", json!({"source": {"claim": "data"}}));
    let done = wait_with_log(&c, "data-now", Duration::from_secs(300), final_phase, logs);
    assert_eq!(done["status"]["phase"], "Succeeded", "{done:#}\n{}", logs());
    assert_latest_snapshot_holds(&c, "data-backup", &src);
    // The shipped RBAC lets it write Events.
    let told = events(&c, "data-now");
    assert!(
        told.iter().any(|(_, r, _)| r == "Succeeded"),
        "{told:#?}\n{}",
        logs()
    );

    // One of the two pods holds the Lease.
    let out = kubectl(&c, &["get", "pods", "-n", &op_ns, "-o", "name"], None);
    expect_code(&out, 0);
    let pods = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(pods.lines().count(), 2, "{pods}");
    let out = kubectl(
        &c,
        &[
            "get",
            "lease",
            "-n",
            &op_ns,
            "pvc-backup-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    expect_code(&out, 0);
    let holder = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        pods.lines().any(|p| p == format!("pod/{holder}")),
        "the Lease names {holder:?}, not one of {pods}"
    );
}

/// The claim a Deployment's pod template mounts.
fn claim_of_deployment(c: &Cluster, name: &str) -> String {
    let d: k8s_openapi::api::apps::v1::Deployment = c.get(c.ns(), name).expect("deployment");
    d.spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.volumes)
        .and_then(|v| v.into_iter().find_map(|v| v.persistent_volume_claim))
        .map(|p| p.claim_name)
        .unwrap_or_default()
}

#[test]
fn the_operator_carries_out_clones_restores_and_migrations() {
    let Some(c) = real("the_operator_carries_out_clones_restores_and_migrations") else {
        return;
    };
    let _crds = install_resources(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let (_keep, reference) = crate::util::reference_copy(&src);
    deployment_using(&c, "web", "data");
    let operator = Operator::start(&c);
    let succeeded = |kind: &str, name: &str| {
        let done = wait_for_object(
            &c,
            kind,
            name,
            &operator,
            Duration::from_secs(300),
            final_phase,
        );
        assert_eq!(
            done["status"]["phase"],
            "Succeeded",
            "{done:#}\noperator log:\n{}",
            operator.log()
        );
        done
    };

    // A Clone made by the mover: the copy holds what the source holds.
    create_object(
        &c,
        "Clone",
        "data-copy",
        json!({"source": {"claim": "data"}, "target": {"name": "copy"}, "method": "Copy"}),
    );
    let clone = succeeded("clone", "data-copy");
    assert_holds(&c, "copy", &reference);
    assert!(
        clone["status"]["stats"]["entries"].as_i64() > Some(5),
        "{clone:#}"
    );

    // A Backup, then a Restore of it into a new claim that the Restore creates.
    create_backup(&c, "data-now", json!({"source": {"claim": "data"}}));
    succeeded("backup", "data-now");
    create_object(
        &c,
        "Restore",
        "data-back",
        json!({"source": {"claim": "data-backup"},
               "target": {"claim": "restored", "create": {}}}),
    );
    let restore = succeeded("restore", "data-back");
    assert_holds(&c, "restored", &reference);
    assert_eq!(
        restore["status"]["job"],
        format!(
            "restored-restore-{}",
            &restore["metadata"]["uid"]
                .as_str()
                .unwrap()
                .replace('-', "")[..5]
        ),
        "{restore:#}"
    );

    // A Restore in place: the claim's damaged file comes back, the workload stopped meanwhile
    // and running again afterwards.
    std::fs::write(src.join("a.txt"), b"damaged\n").unwrap();
    create_object(
        &c,
        "Restore",
        "data-in-place",
        json!({"source": {"claim": "data-backup"}, "target": {"claim": "data"},
               "workload": {"kind": "Deployment", "name": "web"}}),
    );
    succeeded("restore", "data-in-place");
    assert_holds(&c, "data", &reference);
    assert!(
        crate::util::wait_running_with(&c, "web-", "data"),
        "web runs again on data"
    );

    // A Migration to class `other`: the Deployment now uses the new claim, which holds the
    // data; a rollback points it back.
    create_object(
        &c,
        "Migration",
        "data-to-other",
        json!({"source": {"claim": "data"}, "storageClassName": "other",
               "workload": {"kind": "Deployment", "name": "web"}}),
    );
    let migration = succeeded("migration", "data-to-other");
    assert_eq!(
        claim_of_deployment(&c, "web"),
        "data-other",
        "{migration:#}"
    );
    assert_holds(&c, "data-other", &reference);
    create_object(
        &c,
        "Migration",
        "data-back-home",
        json!({"source": {"claim": "data"}, "rollback": true}),
    );
    let back = succeeded("migration", "data-back-home");
    assert_eq!(claim_of_deployment(&c, "web"), "data", "{back:#}");
    let said = back["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(said.contains("data-other"), "{back:#}");
}

/// The names of the test namespace's Backups made by BackupSchedule `schedule`, with their
/// claims and phases.
fn scheduled_backups(c: &Cluster, schedule: &str) -> Vec<(String, String, String)> {
    let selector = format!("pvc-backup.io/schedule={schedule}");
    let out = kubectl(
        c,
        &[
            "get",
            "-n",
            c.ns(),
            "backup.pvc-backup.io",
            "-l",
            &selector,
            "-o",
            "json",
        ],
        None,
    );
    expect_code(&out, 0);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                b["spec"]["source"]["claim"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                b["status"]["phase"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The snapshots in a backup claim's folder.
fn snapshot_count(c: &Cluster, backup_claim: &str) -> usize {
    c.volume_dir(c.ns(), backup_claim)
        .and_then(|d| std::fs::read_dir(d.join("snapshots")).ok())
        .map(|r| {
            r.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_schedule_backs_up_each_claim_its_selector_matches() {
    let Some(c) = real("a_schedule_backs_up_each_claim_its_selector_matches") else {
        return;
    };
    let _crds = install_resources(&c);
    let mut sources = Vec::new();
    for name in ["db", "files", "logs", "other"] {
        let dir = claim_with_data(&c, name, ClaimOptions::default());
        if name != "other" {
            let out = kubectl(
                &c,
                &["label", "-n", c.ns(), "pvc", name, "backup=nightly"],
                None,
            );
            expect_code(&out, 0);
            sources.push((name, dir));
        }
    }
    let address = free_address();
    let operator = Operator::start_with(&c, &["--metrics-address", &address]);
    create_object(
        &c,
        "BackupSchedule",
        "nightly",
        json!({"schedule": "@every 20s", "source": {"selector": {"matchLabels": {"backup": "nightly"}}},
               "successfulBackupsHistoryLimit": 1,
               "template": {"keep": {"last": 5}}}),
    );
    // Applying it starts nothing: the first firing is one interval later.
    let first = wait_for_object(
        &c,
        "backupschedule",
        "nightly",
        &operator,
        Duration::from_secs(30),
        |s| s["status"]["nextScheduleTime"].is_string(),
    );
    assert!(scheduled_backups(&c, "nightly").is_empty(), "{first:#}");
    assert_eq!(
        first["status"]["conditions"][0]["type"], "Ready",
        "{first:#}"
    );
    assert_eq!(
        first["status"]["conditions"][0]["status"], "True",
        "{first:#}"
    );

    // Two firings: each selected claim is backed up twice, into its own CLAIM-backup; the
    // claim without the label never is. One succeeded Backup per claim is kept.
    let start = Instant::now();
    loop {
        let made = scheduled_backups(&c, "nightly");
        let settled = made.iter().all(|(_, _, phase)| phase == "Succeeded");
        let twice = sources
            .iter()
            .all(|(name, _)| snapshot_count(&c, &format!("{name}-backup")) >= 2);
        let one_each = sources
            .iter()
            .all(|(name, _)| made.iter().filter(|(_, claim, _)| claim == name).count() == 1);
        if settled && twice && one_each {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "two firings did not settle: {made:#?}\n{:#}\noperator log:\n{}",
            object(&c, "backupschedule", "nightly"),
            operator.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    for (name, dir) in &sources {
        assert_latest_snapshot_holds(&c, &format!("{name}-backup"), dir);
    }
    assert!(
        c.volume_dir(c.ns(), "other-backup").is_none(),
        "claim other was not selected"
    );
    assert!(
        scheduled_backups(&c, "nightly")
            .iter()
            .all(|(_, claim, _)| claim != "other")
    );

    // The status names each claim with its last success.
    let status = object(&c, "backupschedule", "nightly")["status"].clone();
    let claims: Vec<&str> = status["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["claim"].as_str().unwrap())
        .collect();
    assert_eq!(claims, ["db", "files", "logs"], "{status:#}");
    for x in status["claims"].as_array().unwrap() {
        assert!(x["lastSuccessfulTime"].is_string(), "{status:#}");
        assert_eq!(
            x["backupClaim"],
            format!("{}-backup", x["claim"].as_str().unwrap())
        );
    }
    assert!(
        status["lastSuccessfulTime"].is_string() && status["lastScheduleTime"].is_string(),
        "{status:#}"
    );
    let page = curl(&format!("http://{address}/metrics"));
    let ns = c.ns();
    for claim in ["db", "files", "logs"] {
        let line = format!("pvc_backup_claim_overdue{{namespace=\"{ns}\",claim=\"{claim}\"}} 0");
        assert!(page.lines().any(|l| l == line), "{line}\nnot in:\n{page}");
    }

    // Suspended, it says so and makes no more Backups.
    let out = kubectl(
        &c,
        &[
            "patch",
            "-n",
            c.ns(),
            "backupschedule.pvc-backup.io",
            "nightly",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
        None,
    );
    expect_code(&out, 0);
    wait_for_object(
        &c,
        "backupschedule",
        "nightly",
        &operator,
        Duration::from_secs(60),
        |s| {
            s["status"]["conditions"][0]["reason"] == "Suspended"
                && s["status"]["active"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
        },
    );

    // Settled, its status lists each backup claim's snapshots as they are on the disk, newest
    // first, without anyone mounting the claims.
    let status = object(&c, "backupschedule", "nightly")["status"].clone();
    for x in status["claims"].as_array().unwrap() {
        let claim = x["backupClaim"].as_str().unwrap();
        let dir = c.volume_dir(c.ns(), claim).unwrap();
        let on_disk = testkit::oracle::snapshot_names(&dir);
        let listed: Vec<&str> = x["snapshots"]
            .as_array()
            .unwrap_or_else(|| panic!("no snapshots of {claim}: {status:#}"))
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, on_disk, "{status:#}");
        assert!(
            x["snapshots"][0]["bytes"].as_i64() > Some(100_000),
            "{status:#}"
        );
    }

    // A time zone that does not exist: the schedule says so in its Ready condition.
    create_object(
        &c,
        "BackupSchedule",
        "elsewhere",
        json!({"schedule": "0 2 * * *", "timeZone": "Mars/Olympus_Mons", "source": {"claim": "db"}}),
    );
    let bad = wait_for_object(
        &c,
        "backupschedule",
        "elsewhere",
        &operator,
        Duration::from_secs(30),
        |s| s["status"]["conditions"][0]["reason"] == "InvalidSchedule",
    );
    let message = bad["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("Mars/Olympus_Mons"), "{bad:#}");
}

/// The Events on the object `kind`/`name` of the test's namespace, as (type, reason, message).
fn events_of(c: &Cluster, kind: &str, name: &str) -> Vec<(String, String, String)> {
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let out = kubectl(
        c,
        &[
            "get",
            "events",
            "-n",
            c.ns(),
            "--field-selector",
            &selector,
            "-o",
            "json",
        ],
        None,
    );
    expect_code(&out, 0);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |e: &Value, f: &str| e[f].as_str().unwrap_or_default().to_owned();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text(e, "type"), text(e, "reason"), text(e, "message")))
        .collect()
}

/// A claim of class `standard` whose data source is Restore `restore`.
fn claim_from(c: &Cluster, name: &str, restore: &str) {
    let doc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": c.ns()},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "resources": {"requests": {"storage": "1Gi"}},
                 "dataSourceRef": {"apiGroup": "pvc-backup.io", "kind": "Restore",
                                   "name": restore}}});
    expect_code(&super::create(c, &doc, false), 0);
}

/// A pod that mounts claim `claim`.
fn pod_using(c: &Cluster, name: &str, claim: &str) {
    let doc = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": c.ns()},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": c.app_image(),
                                 "command": ["sleep", "86400"],
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}});
    expect_code(&super::create(c, &doc, false), 0);
}

/// The names of the prime claims the volume populator has in the test's namespace (`None`
/// when kubectl fails).
fn prime_claims(c: &Cluster) -> Option<String> {
    let out = kubectl(
        c,
        &[
            "get",
            "pvc",
            "-n",
            c.ns(),
            "-l",
            "pvc-backup.io/populates",
            "-o",
            "name",
        ],
        None,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl get KIND NAME -o json` of a core object of the test's namespace.
fn core_object(c: &Cluster, kind: &str, name: &str) -> Value {
    let out = kubectl(c, &["get", "-n", c.ns(), kind, name, "-o", "json"], None);
    expect_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_claim_whose_data_source_is_a_restore_starts_with_the_snapshot() {
    let Some(c) = real("a_claim_whose_data_source_is_a_restore_starts_with_the_snapshot") else {
        return;
    };
    let _crds = install_resources(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let (_keep, reference) = crate::util::reference_copy(&src);
    let mut operator = Operator::start(&c);
    create_backup(&c, "data-now", json!({"source": {"claim": "data"}}));
    let backup = wait_until(
        &c,
        "data-now",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(backup["status"]["phase"], "Succeeded", "{backup:#}");
    let snapshot = backup["status"]["snapshot"].as_str().unwrap().to_owned();

    // As GitOps may apply them: the claim and a pod that mounts it first, the Restore later.
    // Kubernetes makes no volume for a data source it does not know, so the pod cannot start.
    claim_from(&c, "restored", "from-backup");
    pod_using(&c, "app", "restored");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        core_object(&c, "pvc", "restored")["status"]["phase"],
        "Pending"
    );
    assert_eq!(core_object(&c, "pod", "app")["status"]["phase"], "Pending");
    let missing = events_of(&c, "PersistentVolumeClaim", "restored");
    assert!(
        missing.iter().any(|(t, r, m)| t == "Warning"
            && r == "DataSourceMissing"
            && m.contains("from-backup")),
        "{missing:#?}\noperator log:\n{}",
        operator.log()
    );
    create_object(
        &c,
        "Restore",
        "from-backup",
        json!({"source": {"claim": "data-backup", "snapshot": snapshot}}),
    );
    let restore = wait_for_object(
        &c,
        "restore",
        "from-backup",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(
        restore["status"]["phase"],
        "Succeeded",
        "{restore:#}\noperator log:\n{}",
        operator.log()
    );
    assert_eq!(
        restore["status"]["snapshot"],
        snapshot.as_str(),
        "{restore:#}"
    );
    assert!(
        restore["status"]["stats"]["entries"].as_i64() > Some(5),
        "{restore:#}"
    );

    // The claim is bound to the filled volume, which holds the snapshot (judged by rsync); the
    // pod runs on it; no prime claim is left; the volume is the claim's alone.
    let claim = core_object(&c, "pvc", "restored");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim:#}");
    assert_holds(&c, "restored", &reference);
    let running = c.wait_for(Duration::from_secs(60), |c| {
        core_object(c, "pod", "app")["status"]["phase"] == "Running"
    });
    assert!(running, "pod app never ran on claim restored: {}", c.dump());
    let volume = claim["spec"]["volumeName"].as_str().unwrap();
    let pv = {
        let out = kubectl(&c, &["get", "pv", volume, "-o", "json"], None);
        expect_code(&out, 0);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(pv["spec"]["claimRef"]["name"], "restored", "{pv:#}");
    assert_eq!(
        pv["spec"]["claimRef"]["uid"], claim["metadata"]["uid"],
        "{pv:#}"
    );
    let gone = c.wait_for(Duration::from_secs(60), |c| {
        prime_claims(c).is_some_and(|names| names.is_empty())
    });
    assert!(gone, "a prime claim is left: {}", c.dump());
    let told = events_of(&c, "PersistentVolumeClaim", "restored");
    assert!(
        told.iter()
            .any(|(t, r, _)| t == "Normal" && r == "Populated"),
        "{told:#?}"
    );

    // The same Restore fills a second claim; the operator is killed (SIGKILL) once it has made
    // the prime claim, and the one started next finishes the population.
    claim_from(&c, "again", "from-backup");
    let primed = c.wait_for(Duration::from_secs(60), |c| {
        prime_claims(c).is_some_and(|names| !names.is_empty())
    });
    assert!(primed, "no prime claim for claim again: {}", operator.log());
    let log = operator.kill();
    operator = Operator::start(&c);
    let bound = c.wait_for(Duration::from_secs(180), |c| {
        core_object(c, "pvc", "again")["status"]["phase"] == "Bound"
    });
    assert!(bound, "first operator:\n{log}\nsecond:\n{}", operator.log());
    assert_holds(&c, "again", &reference);
    let gone = c.wait_for(Duration::from_secs(60), |c| {
        prime_claims(c).is_some_and(|names| names.is_empty())
    });
    assert!(gone, "a prime claim is left: {}", c.dump());

    // A Restore with a target is not a data source: the claim that names it is told so and
    // stays unbound.
    create_object(
        &c,
        "Restore",
        "into-data",
        json!({"source": {"claim": "data-backup"}, "target": {"claim": "nowhere"}}),
    );
    claim_from(&c, "refused", "into-data");
    let refused = c.wait_for(Duration::from_secs(60), |c| {
        events_of(c, "PersistentVolumeClaim", "refused")
            .iter()
            .any(|(t, r, m)| t == "Warning" && r == "DataSourceRefused" && m.contains("into-data"))
    });
    assert!(refused, "operator log:\n{}", operator.log());
    assert_eq!(
        core_object(&c, "pvc", "refused")["status"]["phase"],
        "Pending"
    );
}

#[test]
fn the_operator_backs_up_into_a_repository_and_restores_from_it_without_reading_secrets() {
    let Some(c) = real("operator_repository") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = repository::s3_for_pods(&c, "operator_repository", dir.path()) else {
        return;
    };
    let _crds = install_resources(&c);
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    repository::secret(&c, "repo", &repository::s3_keys());
    let url = server.url(&format!("operator/{}", c.ns()));
    let operator = Operator::start(&c);

    // The operator does not read Secrets: a missing one ends the run on the kubelet's words.
    create_backup(
        &c,
        "no-secret",
        json!({"source": {"claim": "data"},
            "target": {"repository": {"url": url, "secretName": "absent", "init": true}}}),
    );
    let failed = wait_until(
        &c,
        "no-secret",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(failed["status"]["phase"], "Failed", "{failed:#}");
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("absent") && message.contains("RESTIC_PASSWORD"),
        "{failed:#}"
    );
    assert!(repository::restic_snapshots_or_none(&server, &url).is_none());

    create_backup(
        &c,
        "data-offsite",
        json!({"source": {"claim": "data"},
            "target": {"repository": {"url": url, "secretName": "repo", "init": true}}}),
    );
    let done = wait_until(
        &c,
        "data-offsite",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(done["status"]["phase"], "Succeeded", "{done:#}");
    let snapshots = repository::restic_snapshots(&server, &url);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let id = snapshots[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(done["status"]["snapshot"], id.as_str(), "{done:#}");
    assert_eq!(
        snapshots[0]["hostname"],
        format!("{}/data", c.ns()).as_str()
    );
    assert!(
        done["status"]["stats"]["bytes"].as_i64() > Some(5 << 20),
        "{done:#}"
    );

    let (_keep, reference) = crate::util::reference_copy(&src);
    std::fs::write(src.join("a.txt"), b"damaged\n").unwrap();
    create_object(
        &c,
        "Restore",
        "data-back",
        json!({"source": {"repository": {"url": url, "secretName": "repo"}},
            "target": {"claim": "data"}}),
    );
    let back = wait_for_object(
        &c,
        "restore",
        "data-back",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(back["status"]["phase"], "Succeeded", "{back:#}");
    assert_eq!(back["status"]["snapshot"], id.as_str(), "{back:#}");
    assert_holds(&c, "data", &reference);

    // Into a new claim of the size the Restore gives: a repository holds no claim to take it
    // after. `latest` of the source claim's series.
    let series = format!("{}/data", c.ns());
    create_object(
        &c,
        "Restore",
        "data-elsewhere",
        json!({"source": {"repository": {"url": url, "secretName": "repo", "host": series}},
            "target": {"claim": "data-elsewhere", "create": {"size": "1Gi"}}}),
    );
    let elsewhere = wait_for_object(
        &c,
        "restore",
        "data-elsewhere",
        &operator,
        Duration::from_secs(300),
        final_phase,
    );
    assert_eq!(elsewhere["status"]["phase"], "Succeeded", "{elsewhere:#}");
    assert_eq!(
        elsewhere["status"]["snapshot"],
        id.as_str(),
        "{elsewhere:#}"
    );
    let made = core_object(&c, "pvc", "data-elsewhere");
    assert_eq!(
        made["spec"]["resources"]["requests"]["storage"], "1Gi",
        "{made:#}"
    );
    assert_holds(&c, "data-elsewhere", &reference);

    // A claim that starts from the repository's snapshot (volume populator).
    create_object(
        &c,
        "Restore",
        "from-offsite",
        json!({"source": {"repository": {"url": url, "secretName": "repo"}, "snapshot": id}}),
    );
    claim_from(&c, "seeded", "from-offsite");
    let bound = c.wait_for(Duration::from_secs(300), |c| {
        core_object(c, "pvc", "seeded")["status"]["phase"] == "Bound"
    });
    assert!(
        bound,
        "claim seeded was not filled: {}\noperator log:\n{}",
        c.dump(),
        operator.log()
    );
    assert_holds(&c, "seeded", &reference);
    let gone = c.wait_for(Duration::from_secs(60), |c| {
        prime_claims(c).is_some_and(|names| names.is_empty())
    });
    assert!(gone, "a prime claim is left: {}", c.dump());
}
