//! `clone --expose route`: the receiving mover behind an OpenShift Route with TLS passthrough.
//! The API server validates the Route (OpenShift's own definition, which
//! scripts/local-cluster.sh installs). No OpenShift router runs here, so the test plays one as
//! OpenShift's router is built: HAProxy, its engine, on the node's address at port 443, hands
//! the TLS connection whose hello names the Route's host to the Route's Service untouched (a
//! hello without that name goes nowhere), and the test writes the Route's status as a router
//! admitting it does.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use testcluster::fake::ClaimOptions;

use super::repository::node_address;
use super::{apply, assert_no_transfer_left, kubectl, manifests, person_in_both, real};
use crate::util::{Cluster, assert_holds, claim_with_data, cluster, expect_code};

/// HAProxy serving one passthrough Route, as OpenShift's router configures it; stopped when
/// dropped.
struct Router {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Router {
    fn start(address: &str, host: &str, backend: &str) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        let mut f = std::fs::File::create(&config).unwrap();
        write!(
            f,
            "global\n  maxconn 64\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n  timeout server 10m\n\
             frontend router\n  bind {address}:443\n  tcp-request inspect-delay 5s\n\
             \x20 tcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
             \x20 use_backend route if {{ req_ssl_sni -i {host} }}\n\
             backend route\n  server receiver {backend}\n"
        )
        .unwrap();
        drop(f);
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("run haproxy -c");
        expect_code(&check, 0);
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Router { child, _dir: dir }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first Route in `c`'s namespace, once there is one.
fn wait_for_route(c: &Cluster) -> Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let out = kubectl(c, &["get", "routes", "-n", c.ns(), "-o", "json"], None);
        expect_code(&out, 0);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Some(r) = list["items"].as_array().and_then(|i| i.first()) {
            return r.clone();
        }
        assert!(Instant::now() < until, "no Route appeared in {}", c.ns());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_copy_through_a_route_reaches_the_receiver_by_the_name_in_its_tls_hello() {
    let Some(c) = real("through_a_route") else {
        return;
    };
    if !testkit::skip::need_tools("through_a_route", &["haproxy", "rsync"]) {
        return;
    }
    let lab = cluster();
    apply(&c, &manifests(&c, &[]));
    let (alice, _bindings) = person_in_both(&c, &lab, "alice");
    let src = claim_with_data(&c, "data", ClaimOptions::default());
    let node = node_address(&c).to_string();

    // The copy waits for its Route's host, then its sender dials the router (--to-address).
    let clone = Command::new(env!("CARGO_BIN_EXE_pvc-backup"))
        .args(["clone", "data", "--to", "data", "--to-namespace", lab.ns()])
        .args(["--expose", "route", "--to-address", &node, "-o", "json"])
        .arg("--kubeconfig")
        .arg(&alice)
        .env_remove("KUBECONFIG")
        .env("PVC_BACKUP_IMAGE", c.image())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pvc-backup");
    let route = wait_for_route(&lab);
    assert_eq!(
        route["spec"]["tls"]["termination"], "passthrough",
        "{route:#}"
    );
    let name = route["metadata"]["name"].as_str().unwrap().to_owned();
    let service = route["spec"]["to"]["name"].as_str().unwrap();
    let backend: Service = lab.get(lab.ns(), service).expect("the Route's Service");
    let ip = backend.spec.unwrap().cluster_ip.expect("a ClusterIP");
    let host = format!("{name}-{}.apps.pvcb.test", lab.ns());
    let _router = Router::start(&node, &host, &format!("{ip}:7443"));
    let status = json!({"status": {"ingress": [{"host": host, "routerName": "default",
        "wildcardPolicy": "None",
        "conditions": [{"type": "Admitted", "status": "True"}]}]}});
    let admitted = kubectl(
        &lab,
        &[
            "patch",
            "route",
            &name,
            "-n",
            lab.ns(),
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
    expect_code(&admitted, 0);

    let out = clone.wait_with_output().expect("pvc-backup ends");
    expect_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["address"], format!("{node}:443"), "{report:#}");
    assert_holds(&lab, "data", &src);
    // The Route went with the rest of the run.
    let routes = kubectl(&lab, &["get", "routes", "-n", lab.ns(), "-o", "name"], None);
    expect_code(&routes, 0);
    assert_eq!(String::from_utf8_lossy(&routes.stdout).trim(), "");
    assert_no_transfer_left(&c, &lab);
}
