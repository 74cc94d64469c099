//! What one review costs in CPU, without HTTP or TLS: `cargo test -p pvc-backup-admission
//! --release -- --ignored --nocapture review_cost`. It prints figures and asserts only the
//! verdicts, so a slow or busy machine cannot fail it.

use std::time::Instant;

use admission::review::review;
use serde_json::json;

use crate::util::own_policy;

/// The body `bench/webhook.sh` sends: a v1 AdmissionReview of the mover's pod, about 1.1 KB.
fn bench_body(image: &str) -> Vec<u8> {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "developer", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "mover", "namespace": "shop",
                    "labels": {"app.kubernetes.io/name": "pvc-backup"}},
                "spec": {
                    "serviceAccountName": "pvc-backup-deployer",
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "mover", "image": image,
                        "args": ["mover", "sync", "/source", "/backup"],
                        "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"],
                                "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]}},
                        "volumeMounts": [{"name": "source", "mountPath": "/source", "readOnly": true},
                            {"name": "backup", "mountPath": "/backup"}]
                    }],
                    "volumes": [
                        {"name": "source", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
                        {"name": "backup", "persistentVolumeClaim": {"claimName": "data-backup"}}
                    ]
                }
            },
            "oldObject": null, "dryRun": false
        }
    });
    serde_json::to_vec(&review).unwrap()
}

#[test]
#[ignore = "a measurement: run in release with --nocapture to read the figures"]
fn review_cost() {
    let policy = own_policy();
    for (what, image, allowed) in [
        ("allowed", "quay.io/pvc-backup/mover:1.0", true),
        ("denied", "docker.io/library/busybox:latest", false),
    ] {
        let body = bench_body(image);
        assert_eq!(review(&policy, &body).unwrap().allowed, allowed);
        let rounds = 100_000u32;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(review(&policy, std::hint::black_box(&body)).unwrap());
        }
        let each = started.elapsed() / rounds;
        println!("review of a {} byte {what} request: {each:?}", body.len());
    }
}
