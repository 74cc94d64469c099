//! The webhook's answers to every case, without HTTP.

use admission::review::{ReviewError, review};
use serde_json::{Value, json};

use crate::util::{all_cases, fixture_cases, fixture_policy, fixtures_dir};

#[test]
fn public_fixtures_get_their_verdicts() {
    let cases = fixture_cases();
    if fixtures_dir().is_none() {
        return;
    }
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
