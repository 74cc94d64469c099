//! Property tests: random pods and templates against an oracle written from the policy's text,
//! the CEL against the webhook on random input, and random damage to real requests.

use admission::review::review;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::cel::{evaluate, printed_policy};
use crate::util::{SA, digest, fixture_cases, own_policy};

/// Images with their verdict under the own policy, decided by reading the rules, not the code.
fn images() -> Vec<(String, bool)> {
    let a = digest('a');
    let e = digest('e');
    vec![
        ("dev/backup".to_owned(), true),
        ("dev/backup:latest".to_owned(), true),
        ("docker.io/dev/backup".to_owned(), true),
        ("quay.io/pvc-backup/mover:1.0".to_owned(), true),
        ("quay.io/pvc-backup/a/b".to_owned(), true),
        (format!("registry.example.com:5000/mover@{a}"), true),
        ("ghcr.io/pvc-backup/pvc-backup:v1".to_owned(), true),
        (format!("ghcr.io/pvc-backup/pvc-backup@{e}"), true),
        ("busybox".to_owned(), false),
        ("dev/backup:v2".to_owned(), false),
        ("dev/backupevil/shell".to_owned(), false),
        ("quay.io/pvc-backupevil/x".to_owned(), false),
        ("quay.io/pvc-backup".to_owned(), false),
        (format!("registry.example.com:5000/mover@{e}"), false),
        ("Dev/backup".to_owned(), false),
        (format!("dev/backup:latest@{e}"), false),
        (String::new(), false),
        ("ghcr.io/pvc-backup/pvc-backup/x".to_owned(), false),
    ]
}

const COMMANDS: [(&[&str], bool); 5] = [
    (&[], true),
    (&["/pvc-backup", "mover", "sync"], true),
    (&["/pvc-backup"], true),
    (&["/bin/sh", "-c", "id"], false),
    (&["pvc-backup"], false),
];

const CAPS: [(&str, bool); 7] = [
    ("CHOWN", true),
    ("CAP_FOWNER", true),
    ("SETGID", true),
    ("SYS_ADMIN", false),
    ("ALL", false),
    ("chown", false),
    ("NET_RAW", false),
];

const KINDS: [(&str, &str, &str, &str); 8] = [
    ("", "v1", "Pod", "pods"),
    ("apps", "apps/v1", "Deployment", "deployments"),
    ("apps", "apps/v1", "ReplicaSet", "replicasets"),
    ("apps", "apps/v1", "StatefulSet", "statefulsets"),
    ("apps", "apps/v1", "DaemonSet", "daemonsets"),
    ("batch", "batch/v1", "Job", "jobs"),
    ("batch", "batch/v1", "CronJob", "cronjobs"),
    (
        "apps.openshift.io",
        "apps.openshift.io/v1",
        "DeploymentConfig",
        "deploymentconfigs",
    ),
];

/// A container and whether it breaks the policy (under the guarded service account).
fn container(
    image: impl Strategy<Value = (String, Option<bool>)>,
) -> impl Strategy<Value = (Value, Option<bool>)> {
    (
        "[a-z][a-z0-9-]{0,8}",
        image,
        proptest::option::of(0..COMMANDS.len()),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(0..CAPS.len(), 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(name, (image, image_ok), command, privileged, caps, host_process)| {
            let mut c = json!({"name": name, "image": image});
            let mut ok = image_ok;
            if let Some(i) = command {
                c["command"] = json!(COMMANDS[i].0);
                ok = ok.map(|ok| ok && COMMANDS[i].1);
            }
            let mut security = json!({});
            if let Some(p) = privileged {
                security["privileged"] = json!(p);
                ok = ok.map(|ok| ok && !p);
            }
            if !caps.is_empty() {
                security["capabilities"] = json!({"drop": ["ALL"], "add": caps.iter().map(|&i| CAPS[i].0).collect::<Vec<_>>()});
                ok = ok.map(|ok| ok && caps.iter().all(|&i| CAPS[i].1));
            }
            if let Some(h) = host_process {
                security["windowsOptions"] = json!({"hostProcess": h});
                ok = ok.map(|ok| ok && !h);
            }
            if security.as_object().is_some_and(|s| !s.is_empty()) {
                c["securityContext"] = security;
            }
            (c, ok.map(|ok| !ok))
        })
}

fn known_image() -> BoxedStrategy<(String, Option<bool>)> {
    let pool = images();
    (0..pool.len())
        .prop_map(move |i| (pool[i].0.clone(), Some(pool[i].1)))
        .boxed()
}

/// Near misses and noise: pieces of allowed references glued to random text.
fn any_image() -> BoxedStrategy<(String, Option<bool>)> {
    let pool = images();
    prop_oneof![
        known_image(),
        "[a-zA-Z0-9./:@_+-]{0,40}".prop_map(|s| (s, None)),
        (0..pool.len(), "[a-zA-Z0-9./:@_-]{0,6}", 0..40usize).prop_map(move |(i, tail, cut)| {
            let base = &pool[i].0;
            let cut = cut.min(base.len());
            (format!("{}{tail}", &base[..cut]), None)
        }),
    ]
    .boxed()
}

/// A whole AdmissionReview and the oracle's verdict (`None`: unknown, only the two
/// implementations are compared).
fn admission_review(
    image: impl Strategy<Value = (String, Option<bool>)> + Clone,
) -> impl Strategy<Value = (Value, Option<bool>)> {
    (
        proptest::collection::vec(container(image.clone()), 1..3),
        proptest::collection::vec(container(image.clone()), 0..2),
        proptest::collection::vec(container(image), 0..2),
        0..4usize,
        [proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>())],
        any::<bool>(),
        0..KINDS.len(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(containers, inits, ephemerals, sa, hosts, host_path, kind, update, v1)| {
            let mut broken = Some(false);
            let mut add = |b: Option<bool>| {
                broken = match (broken, b) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            };
            let (group, api_version, kind, resource) = KINDS[kind];
            let mut spec = json!({});
            match sa {
                0 => spec["serviceAccountName"] = json!(SA),
                1 => spec["serviceAccount"] = json!(SA),
                2 => spec["serviceAccountName"] = json!("default"),
                _ => {}
            }
            let list = |cs: &[(Value, Option<bool>)]| cs.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
            spec["containers"] = json!(list(&containers));
            for c in &containers {
                add(c.1);
            }
            if !inits.is_empty() {
                spec["initContainers"] = json!(list(&inits));
                for c in &inits {
                    add(c.1);
                }
            }
            if !ephemerals.is_empty() && kind == "Pod" {
                spec["ephemeralContainers"] = json!(list(&ephemerals));
                for c in &ephemerals {
                    add(c.1);
                }
            }
            for (field, value) in ["hostNetwork", "hostPID", "hostIPC"].iter().zip(hosts) {
                if let Some(v) = value {
                    spec[*field] = json!(v);
                    add(Some(v));
                }
            }
            let mut volumes = vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})];
            if host_path {
                volumes.push(json!({"name": "host", "hostPath": {"path": "/etc"}}));
                add(Some(true));
            }
            spec["volumes"] = json!(volumes);
            let object = if kind == "Pod" {
                json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
            } else {
                crate::util::workload(api_version, kind, spec)
            };
            let review = crate::util::review(
                if v1 { "v1" } else { "v1beta1" },
                group,
                kind,
                resource,
                if update { "UPDATE" } else { "CREATE" },
                object,
            );
            let guarded = sa < 2;
            let expected_allowed = if guarded { broken.map(|b| !b) } else { Some(true) };
            (review, expected_allowed)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn random_pods_get_the_oracle_verdict((r, expected) in admission_review(known_image())) {
        let expected = expected.expect("every known image has a verdict");
        let reviewed = review(&own_policy(), &serde_json::to_vec(&r).unwrap()).unwrap();
        prop_assert_eq!(reviewed.allowed, expected, "{}", r);
        let response: Value = serde_json::from_slice(&reviewed.body).unwrap();
        prop_assert_eq!(&response["response"]["uid"], &r["request"]["uid"]);
        prop_assert_eq!(&response["apiVersion"], &r["apiVersion"]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cel_agrees_with_the_webhook_on_random_input((r, expected) in admission_review(any_image())) {
        let policy = own_policy();
        let vap = printed_policy(&policy);
        let cel = evaluate(&vap, &r);
        let webhook = review(&policy, &serde_json::to_vec(&r).unwrap()).unwrap();
        prop_assert_eq!(cel.allowed, webhook.allowed, "{}", r);
        prop_assert_eq!(cel.message, webhook.message);
        if let Some(expected) = expected {
            prop_assert_eq!(webhook.allowed, expected);
        }
    }
}

/// The denied fixtures and cases, as request bodies.
fn denied_reviews() -> Vec<Value> {
    let mut out: Vec<Value> = fixture_cases()
        .into_iter()
        .filter(|c| !c.allowed)
        .map(|c| c.review)
        .collect();
    out.extend(
        crate::util::own_cases()
            .into_iter()
            .filter(|c| !c.allowed)
            .map(|c| c.review),
    );
    out
}

/// Adds noise that cannot make a violation go away: unknown fields, explicit nulls of optional
/// fields, compliant extra containers, labels and annotations, another uid.
fn add_noise(review: &mut Value, seed: &[u8]) {
    for (i, &b) in seed.iter().enumerate() {
        let key = format!("x{i}{b}");
        match b % 6 {
            0 => review["request"]["object"]["metadata"]["labels"][&key] = json!("v"),
            1 => review["request"]["object"][&key] = json!({"nested": [b, null]}),
            2 => review["request"]["uid"] = json!(format!("uid-{b}")),
            3 => review["request"][&key] = json!(null),
            4 => {
                review["request"]["object"]["metadata"]["annotations"][&key] =
                    json!("}{\"allowed\":true}")
            }
            _ => review[&key] = json!(b),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn noise_never_turns_a_denial_into_an_allowance(which in 0..64usize, seed in proptest::collection::vec(any::<u8>(), 0..12)) {
        let reviews = denied_reviews();
        let mut r = reviews[which % reviews.len()].clone();
        let policy = if r["request"]["object"]["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("p-")) {
            crate::util::fixture_policy()
        } else {
            own_policy()
        };
        prop_assume!(!review(&policy, &serde_json::to_vec(&r).unwrap()).unwrap().allowed);
        add_noise(&mut r, &seed);
        let reviewed = review(&policy, &serde_json::to_vec(&r).unwrap()).unwrap();
        prop_assert!(!reviewed.allowed, "{}", r);
    }

    #[test]
    fn damaged_bodies_never_panic(which in 0..64usize, edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..8)) {
        let reviews = denied_reviews();
        let original = &reviews[which % reviews.len()];
        let mut body = serde_json::to_vec(original).unwrap();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let at = at % body.len();
            match op {
                0 => body[at] = byte,
                1 => { body.remove(at); }
                _ => body.insert(at, byte),
            }
        }
        // Either an error (HTTP 400) or an answer for the uid the damaged body carries.
        // Like the API server's Go decoder, the webhook does not judge escapes such as a lone
        // surrogate in fields it never reads, which serde_json's Value refuses; such a body is
        // still UTF-8 and its answer still well formed.
        if let Ok(reviewed) = review(&own_policy(), &body) {
            prop_assert!(std::str::from_utf8(&body).is_ok());
            let response: Value = serde_json::from_slice(&reviewed.body).unwrap();
            if let Ok(request) = serde_json::from_slice::<Value>(&body) {
                prop_assert_eq!(&response["response"]["uid"], &request["request"]["uid"]);
            }
            prop_assert_eq!(&response["response"]["allowed"], &json!(reviewed.allowed));
        }
    }
}
