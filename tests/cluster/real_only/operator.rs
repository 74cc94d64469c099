//! `pvc-backup operator` against the real API server: it runs on the host with the test's
//! kubeconfig, watching the test's namespace, and carries out Backups through a real kubelet.
//! The snapshot it reports is judged on the host (rsync against the source), the Jobs it made
//! through the API server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use testcluster::fake::ClaimOptions;

use super::{ClusterScoped, apply, install_resources, kubectl, manifests, real};
use crate::util::{
    Cluster, assert_latest_snapshot_holds, claim_with_data, expect_code, latest_snapshot,
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
    let selector = format!("involvedObject.kind=Backup,involvedObject.name={name}");
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

/// A Backup as the API server holds it.
fn backup(c: &Cluster, name: &str) -> Value {
    let out = kubectl(
        c,
        &[
            "get",
            "-n",
            c.ns(),
            "backup.pvc-backup.io",
            name,
            "-o",
            "json",
        ],
        None,
    );
    expect_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
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
        a.log().contains("backup runs") && !b.log().contains("backup runs"),
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
        ],
    };
    let printed = manifests(&c, &["--operator", "--namespace", &op_ns]);
    let mut docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&printed)).unwrap();
    for doc in &mut docs {
        if doc["kind"] == "Deployment" {
            // This local cluster runs no kube-proxy, so the Service address of the API server
            // (10.0.0.1) leads nowhere from a pod: point the pods at the node's address instead.
            let env = doc["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap();
            env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": "10.231.0.1"}));
            env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}));
        }
    }
    apply(&c, cluster::objects::to_yaml(&docs).unwrap().as_bytes());
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
