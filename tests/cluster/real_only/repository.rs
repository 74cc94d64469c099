//! Backups of a claim into a restic-format repository on a real S3 server (SeaweedFS on this
//! machine, bound to the node's address so that the mover pod reaches it): what the mover wrote
//! is judged by Debian's restic (`snapshots --json`, `check --read-data`, `restore` compared
//! with the source by rsync), what the commands made by the real API server.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};
use testcluster::fake::ClaimOptions;
use testkit::oracle::rsync_itemize;
use testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

use super::real;
use crate::util::{
    Cluster, assert_holds, claim_with_data, expect_code, job_succeeds, reference_copy, run,
    run_json,
};

pub(super) const PASSWORD: &str = "correct horse battery staple";

/// The node's address as the API server lists it (InternalIP): the host's address that pods
/// reach, where the S3 server listens.
pub(super) fn node_address(c: &Cluster) -> IpAddr {
    let node = c.nodes().into_iter().next().expect("a node");
    let v = c.get_value("v1", "Node", "", &node).expect("the node");
    v["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("node {node} lists no InternalIP: {v}"))
}

/// An S3 server the mover pods reach, or `None` after printing why the test skips.
pub(super) fn s3_for_pods(c: &Cluster, test: &str, dir: &Path) -> Option<S3Server> {
    if !testkit::skip::need_tools(test, &["weed", "restic", "rsync"]) {
        return None;
    }
    match S3Server::start_on(&dir.join("s3"), node_address(c)) {
        Ok(s) => Some(s),
        Err(why) => {
            testkit::skip::skip(test, &why);
            None
        }
    }
}

/// Debian's restic on the host, against the same server and password.
fn restic(server: &S3Server, url: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .args(["--no-cache", "-r", url])
        .args(args)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env("RESTIC_PASSWORD", PASSWORD)
        .envs(server.env())
        .output()
        .expect("run restic")
}

/// The snapshots restic lists, oldest first.
pub(super) fn restic_snapshots(server: &S3Server, url: &str) -> Vec<Value> {
    let o = restic(server, url, &["snapshots", "--json"]);
    expect_code(&o, 0);
    serde_json::from_slice(&o.stdout).expect("restic's JSON")
}

/// The snapshots restic lists, or `None` when it finds no repository at `url`.
pub(super) fn restic_snapshots_or_none(server: &S3Server, url: &str) -> Option<Vec<Value>> {
    let o = restic(server, url, &["snapshots", "--json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("restic's JSON"))
}

/// A Secret `name` in the test's namespace holding `keys`.
pub(super) fn secret(c: &Cluster, name: &str, keys: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> =
        keys.iter().map(|(k, v)| ((*k).into(), json!(v))).collect();
    c.create_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": c.ns()}, "stringData": data}))
        .expect("create the Secret");
}

/// Every key an S3 repository needs.
pub(super) fn s3_keys() -> [(&'static str, &'static str); 3] {
    [
        ("RESTIC_PASSWORD", PASSWORD),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

#[test]
fn a_claim_backed_up_into_s3_is_what_restic_restores_and_comes_back_into_the_claim() {
    let Some(c) = real("repository_round_trip") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = s3_for_pods(&c, "repository_round_trip", dir.path()) else {
        return;
    };
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    secret(&c, "repo", &s3_keys());
    let url = server.url(&format!("backups/{}", c.ns()));
    let host = format!("{}/data", c.ns());
    let repo = ["--repository", url.as_str(), "--repository-secret", "repo"];

    let mut args = vec!["backup", "data", "--init", "-o", "json"];
    args.extend(repo);
    let out = run_json(&c, &args);
    assert_eq!(out["exitCode"], 0, "{out}");
    // restic lists the one snapshot the mover reported, in the claim's series.
    let snapshots = restic_snapshots(&server, &url);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let id = snapshots[0]["id"].as_str().unwrap();
    assert_eq!(out["summary"]["snapshot"], id, "{out}");
    assert_eq!(snapshots[0]["hostname"], host.as_str());
    assert_eq!(snapshots[0]["paths"], json!(["/source"]));
    // The counts the user sees are the mover's summary.
    let summary = &out["summary"]["summary"];
    assert_eq!(summary["result"], "ok", "{out}");
    assert_eq!(summary["entries"]["failed"], 0, "{out}");
    assert!(summary["bytes"]["total"].as_u64() > Some(5 << 20), "{out}");

    expect_code(&restic(&server, &url, &["check", "--read-data"]), 0);
    let theirs = dir.path().join("theirs");
    let restored = restic(
        &server,
        &url,
        &["restore", id, "--target", theirs.to_str().unwrap()],
    );
    expect_code(&restored, 0);
    // restic 0.14 writes holes as zeros: the sparse file's content is compared alone.
    assert_eq!(
        std::fs::read(src.join("sparse")).unwrap(),
        std::fs::read(theirs.join("source/sparse")).unwrap()
    );
    let diff = rsync_itemize(&src, &theirs.join("source"), &[]);
    assert!(diff.is_empty(), "restic restored another tree: {diff:#?}");

    // `list` shows the run, recorded on the claim.
    let listed = run_json(&c, &["list", "-o", "json"]);
    let entry = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["role"] == "repository")
        .unwrap_or_else(|| panic!("no repository in {listed}"))
        .clone();
    assert_eq!(
        (&entry["name"], &entry["source"]),
        (&json!(url), &json!("data"))
    );
    assert_eq!(entry["lastRun"]["result"], "ok", "{entry}");
    assert_eq!(entry["lastRun"]["snapshot"], id, "{entry}");

    // Damage the claim; a restore from the repository brings back the snapshot exactly.
    let (_keep, reference) = reference_copy(&src);
    std::fs::write(src.join("a.txt"), b"damaged\n").unwrap();
    std::fs::write(src.join("extra"), b"not in the snapshot\n").unwrap();
    let mut args = vec!["restore", "data", "-o", "json"];
    args.extend(repo);
    let out = run_json(&c, &args);
    assert_eq!(out["exitCode"], 0, "{out}");
    assert_eq!(out["summary"]["snapshot"], id, "{out}");
    assert_eq!(out["summary"]["summary"]["entries"]["deleted"], 1, "{out}");
    assert_holds(&c, "data", &reference);

    // A schedule's Job backs up into the same series; unschedule names the repository.
    let mut args = vec!["schedule", "data", "--cron", "0 3 * * *"];
    args.extend(repo);
    expect_code(&run(&c, &args), 0);
    let fired = c
        .fire_cronjob(c.ns(), "data-repository")
        .expect("a Job from the CronJob");
    assert!(job_succeeds(&c, &fired), "{}", c.dump());
    let snapshots = restic_snapshots(&server, &url);
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert_eq!(snapshots[1]["hostname"], host.as_str());
    assert_eq!(snapshots[1]["parent"], id, "the first backup is the parent");
    let other = server.url("elsewhere");
    let out = run(&c, &["unschedule", "data", "--repository", &other]);
    expect_code(&out, 1);
    assert!(c.get::<CronJob>(c.ns(), "data-repository").is_some());
    expect_code(&run(&c, &["unschedule", "data", "--repository", &url]), 0);
    assert!(c.get::<CronJob>(c.ns(), "data-repository").is_none());
}

#[test]
fn a_missing_repository_secret_or_key_stops_the_command_before_any_job() {
    let Some(c) = real("repository_secret") else {
        return;
    };
    claim_with_data(&c, "data", ClaimOptions::default());
    // No S3 server is needed: nothing may reach it.
    let url = "s3:http://127.0.0.1:9/backups";
    let with = |verb: &str, secret: &str| -> String {
        let mut args = vec![
            verb,
            "data",
            "--repository",
            url,
            "--repository-secret",
            secret,
        ];
        if verb == "schedule" {
            args.extend(["--cron", "0 3 * * *"]);
        }
        let out = run(&c, &args);
        expect_code(&out, 1);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for verb in ["backup", "restore", "schedule"] {
        let err = with(verb, "absent");
        assert!(
            err.contains("Secret absent not found") && err.contains("RESTIC_PASSWORD"),
            "{verb}: {err}"
        );
    }
    let mut keys = s3_keys().to_vec();
    keys.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    secret(&c, "partial", &keys);
    for verb in ["backup", "restore", "schedule"] {
        let err = with(verb, "partial");
        assert!(
            err.contains("has no AWS_SECRET_ACCESS_KEY"),
            "{verb}: {err}"
        );
    }
    assert!(c.list::<Job>(Some(c.ns())).is_empty(), "{}", c.dump());
    assert!(c.list::<CronJob>(Some(c.ns())).is_empty(), "{}", c.dump());
}
