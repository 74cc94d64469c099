//! The webhook's answers to every case, without HTTP.

use admission::review::{ReviewError, review};
use serde_json::{Value, json};

use crate::util::{SA, all_cases, fixture_cases, fixture_policy};

#[test]
fn public_fixtures_get_their_verdicts() {
    let cases = fixture_cases();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let reviewed = review(
            &fixture_policy(),
            &serde_json::to_vec(&case.review).unwrap(),
        )
        .unwrap();
        assert_eq!(reviewed.allowed, case.allowed, "{}", case.name);
    }
}

#[test]
fn every_case_is_answered_in_its_own_version_with_its_uid() {
    for case in all_cases() {
        let reviewed = review(&case.policy(), &serde_json::to_vec(&case.review).unwrap()).unwrap();
        let response: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert_eq!(
            response["apiVersion"], case.review["apiVersion"],
            "{}",
            case.name
        );
        assert_eq!(response["kind"], "AdmissionReview", "{}", case.name);
        assert_eq!(
            response["response"]["uid"], case.review["request"]["uid"],
            "{}",
            case.name
        );
        assert_eq!(
            response["response"]["allowed"], case.allowed,
            "{}",
            case.name
        );
        assert!(response.get("request").is_none(), "{}", case.name);
        if case.allowed {
            assert!(reviewed.message.is_none());
        } else {
            let status = &response["response"]["status"];
            assert_eq!(status["code"], 403, "{}", case.name);
            assert_eq!(status["reason"], "Forbidden", "{}", case.name);
            assert_eq!(status["status"], "Failure", "{}", case.name);
            let message = status["message"].as_str().unwrap();
            assert_eq!(Some(message), reviewed.message.as_deref());
            for word in &case.must_name {
                assert!(
                    message.contains(word.as_str()),
                    "{}: {word:?} not in {message:?}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn two_bad_containers_are_both_named() {
    let case = fixture_cases()
        .into_iter()
        .find(|c| c.name == "two_bad.json");
    let Some(case) = case else { return };
    let reviewed = review(
        &fixture_policy(),
        &serde_json::to_vec(&case.review).unwrap(),
    )
    .unwrap();
    let message = reviewed.message.unwrap();
    assert!(
        message.contains("container \"a\": image \"busybox\" is not allowed"),
        "{message}"
    );
    assert!(
        message.contains("container \"b\": image \"nginx\" is not allowed"),
        "{message}"
    );
}

#[test]
fn malformed_reviews_are_errors_never_answers() {
    let good = crate::util::review(
        "v1",
        "",
        "Pod",
        "pods",
        "CREATE",
        crate::util::pod(json!([])),
    );
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut empty_uid = good.clone();
    empty_uid["request"]["uid"] = json!("");
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v2");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("TokenReview");
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut bad_operation = good.clone();
    bad_operation["request"]["operation"] = json!("EXPLODE");
    let mut bad_object = good.clone();
    bad_object["request"]["object"] = json!("a pod");
    for (what, body) in [
        ("no uid", no_uid),
        ("empty uid", empty_uid),
        ("wrong version", wrong_version),
        ("wrong kind", wrong_kind),
        ("no request", no_request),
        ("unknown operation", bad_operation),
        ("object not an object", bad_object),
    ] {
        let result = review(&fixture_policy(), &serde_json::to_vec(&body).unwrap());
        assert!(result.is_err(), "{what}: {:?}", result.map(|r| r.allowed));
    }
    for raw in [&b""[..], b"{", b"null", b"42", b"\"x\"", b"[]"] {
        assert!(
            matches!(review(&fixture_policy(), raw), Err(ReviewError::Json(_))),
            "{raw:?}"
        );
    }
    // A byte that is not UTF-8, even in a field the policy never reads, makes the body not JSON.
    let mut marked = good;
    marked["request"]["object"]["metadata"]["annotations"] = json!({"note": "MARK"});
    let text = serde_json::to_vec(&marked).unwrap();
    let at = text.windows(4).position(|w| w == b"MARK").unwrap();
    let mut latin1 = text.clone();
    latin1[at] = 0xe9;
    assert!(review(&fixture_policy(), &text).is_ok());
    for (raw, bad_at) in [(&b"\xff\xfe"[..], 0), (&latin1[..], at)] {
        match review(&fixture_policy(), raw) {
            Err(ReviewError::Utf8(n)) => assert_eq!(n, bad_at),
            other => panic!("{raw:?}: {:?}", other.map(|r| r.allowed)),
        }
    }
}

#[test]
fn a_create_without_an_object_is_denied() {
    let mut r = crate::util::review("v1", "", "Pod", "pods", "CREATE", json!(null));
    r["request"]["name"] = json!("p");
    let reviewed = review(&fixture_policy(), &serde_json::to_vec(&r).unwrap()).unwrap();
    assert!(!reviewed.allowed);
}

/// Reads a response as kube-rs does: an independent reader of what the webhook writes.
fn kube_response(body: &[u8]) -> (String, kube_core::admission::AdmissionResponse) {
    let review: kube_core::admission::AdmissionReview<kube_core::DynamicObject> =
        serde_json::from_slice(body).unwrap();
    (review.types.api_version, review.response.unwrap())
}

#[test]
fn every_answer_reads_as_kube_rs_reads_it() {
    for case in all_cases() {
        let reviewed = review(&case.policy(), &serde_json::to_vec(&case.review).unwrap()).unwrap();
        let (api_version, response) = kube_response(&reviewed.body);
        assert_eq!(api_version, case.review["apiVersion"].as_str().unwrap());
        assert_eq!(
            response.uid,
            case.review["request"]["uid"].as_str().unwrap()
        );
        assert_eq!(response.allowed, case.allowed, "{}", case.name);
        if case.allowed {
            assert_eq!(response.result.code, 0, "{}", case.name);
            assert!(response.result.message.is_empty(), "{}", case.name);
        } else {
            assert_eq!(response.result.code, 403, "{}", case.name);
            assert_eq!(response.result.reason, "Forbidden", "{}", case.name);
            assert_eq!(Some(response.result.message), reviewed.message);
        }
    }
}

#[test]
fn a_uid_with_escapes_comes_back_as_sent() {
    let bad = json!([{"name": "c\"1\\", "image": "busybox"}]);
    for uid in [
        "quote\" backslash\\ slash/ tab\t newline\n",
        "\u{1}\u{1f} control",
        "é ü 名前 😀",
        "</script>&<'",
    ] {
        let mut r = crate::util::review(
            "v1",
            "",
            "Pod",
            "pods",
            "CREATE",
            crate::util::pod(bad.clone()),
        );
        r["request"]["uid"] = json!(uid);
        // Also as \u escapes, which the body may use for any character.
        let plain = serde_json::to_string(&r).unwrap();
        let escaped: String = plain
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        for body in [plain, escaped] {
            let reviewed = review(&fixture_policy(), body.as_bytes()).unwrap();
            let (_, response) = kube_response(&reviewed.body);
            assert_eq!(response.uid, uid);
            assert!(!response.allowed);
            assert!(
                response.result.message.contains("container \"c\"1\\\""),
                "{}",
                response.result.message
            );
        }
    }
}

#[test]
fn thousands_of_containers_are_all_judged() {
    let judge = |containers: &[Value]| {
        let r = crate::util::review(
            "v1",
            "",
            "Pod",
            "pods",
            "CREATE",
            crate::util::pod(json!(containers)),
        );
        review(&fixture_policy(), &serde_json::to_vec(&r).unwrap()).unwrap()
    };
    let mut containers: Vec<Value> = (0..5000)
        .map(|i| crate::util::mover(&format!("m{i}")))
        .collect();
    let reviewed = judge(&containers);
    assert!(reviewed.allowed);
    for i in [0, 2500, 4999] {
        containers[i] = json!({"name": format!("bad{i}"), "image": "busybox"});
    }
    let reviewed = judge(&containers);
    let message = reviewed.message.unwrap();
    for i in [0, 2500, 4999] {
        assert!(
            message.contains(&format!(
                "container \"bad{i}\": image \"busybox\" is not allowed"
            )),
            "{message}"
        );
    }
    assert_eq!(message.matches("is not allowed").count(), 3, "{message}");
}

#[test]
fn optional_fields_may_be_missing_and_required_ones_may_not() {
    let bad = json!([{"name": "shell", "image": "busybox"}]);
    let good = crate::util::review("v1", "", "Pod", "pods", "CREATE", crate::util::pod(bad));
    let answer = |r: &Value| review(&fixture_policy(), &serde_json::to_vec(r).unwrap());
    // Optional: what the API server leaves out on some requests.
    for field in [
        "namespace",
        "oldObject",
        "subResource",
        "name",
        "dryRun",
        "options",
    ] {
        let mut r = good.clone();
        r["request"].as_object_mut().unwrap().remove(field);
        assert!(!answer(&r).unwrap().allowed, "without {field}");
    }
    let mut no_metadata = good.clone();
    no_metadata["request"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("metadata");
    let message = answer(&no_metadata).unwrap().message.unwrap();
    assert!(message.starts_with("Pod \"\" uses"), "{message}");
    let mut generated = good.clone();
    generated["request"]["object"]["metadata"] = json!({"generateName": "p-"});
    let message = answer(&generated).unwrap().message.unwrap();
    assert!(message.starts_with("Pod \"p-\" uses"), "{message}");
    let mut no_spec = good.clone();
    no_spec["request"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("spec");
    assert!(answer(&no_spec).unwrap().allowed);
    let mut delete = good.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"].as_object_mut().unwrap().remove("object");
    assert!(answer(&delete).unwrap().allowed);
    // Required: every AdmissionRequest has them, so a body without one is not an AdmissionReview.
    for path in [
        &["request", "kind"][..],
        &["request", "resource"],
        &["request", "userInfo"],
        &["request", "operation"],
        &["request", "kind", "version"],
        &["apiVersion"],
        &["kind"],
    ] {
        let mut r = good.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut r;
        for p in parents {
            at = &mut at[*p];
        }
        at.as_object_mut().unwrap().remove(*last);
        assert!(answer(&r).is_err(), "without {path:?}");
    }
    // A JSON array is not an object, even with the fields in order.
    let mut listed = good.clone();
    listed["request"]["object"] = json!([{"name": "p"}, {"serviceAccountName": SA}]);
    assert!(answer(&listed).is_err());
    assert!(
        review(
            &fixture_policy(),
            br#"["admission.k8s.io/v1","AdmissionReview",null]"#
        )
        .is_err()
    );
}
