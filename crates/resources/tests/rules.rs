//! The definitions' CEL rules, evaluated by kube's own CEL engine (kube-cel) on the fixtures the
//! real API server judges in the cluster tests (`tests/cluster/real_only.rs`): every valid example
//! passes, and every refused one whose refusal is a CEL rule's fails with that rule's message. The
//! refusals of the schema (bounds, enums) and of strict field validation only the API server
//! judges.

use std::path::Path;

use serde_json::Value;

/// The documents of a fixture file.
fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The openAPIV3Schema of the definition of `kind`.
fn schema(kind: &str) -> Value {
    let crd = resources::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no definition of kind {kind}"));
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, resources::VERSION);
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The CEL verdict on a document: the messages of the rules it breaks.
fn cel(doc: &Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().expect("a kind");
    kube_cel::validate(&schema(kind), doc, None).map_err(|e| e.to_string())
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap()
}

#[test]
fn every_example_of_each_kind_passes_the_rules_and_reads_as_its_type() {
    let docs = fixture("valid.yaml");
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["Backup", "BackupSchedule", "Restore", "Clone", "Migration"]
    );
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "pvc-backup.io/v1alpha1");
        if let Err(e) = cel(doc) {
            panic!("{} was refused: {e}", name(doc));
        }
        // Each reads as its type, and writes back to the same object.
        let back = match doc["kind"].as_str().unwrap() {
            "Backup" => roundtrip::<resources::Backup>(doc),
            "BackupSchedule" => roundtrip::<resources::BackupSchedule>(doc),
            "Restore" => roundtrip::<resources::Restore>(doc),
            "Clone" => roundtrip::<resources::ClaimClone>(doc),
            "Migration" => roundtrip::<resources::Migration>(doc),
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(&strip_defaults(back), doc, "{}", name(doc));
    }
}

fn roundtrip<K: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
    let object: K = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not read as its type: {e}", name(doc)));
    serde_json::to_value(object).unwrap()
}

/// A written object without the fields serde writes at their defaults (false, the default
/// method) where the example leaves them out.
fn strip_defaults(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        if let Value::Object(map) = v {
            map.retain(|k, v| {
                !(v == &Value::Bool(false)
                    || (k == "method" && (v == "Live" || v == "Auto"))
                    || (k == "template" && v.as_object().is_some_and(|m| m.is_empty())))
            });
            for v in map.values_mut() {
                walk(v);
            }
        }
    }
    walk(&mut v);
    v
}

#[test]
fn every_spec_a_rule_refuses_is_refused_with_that_rules_message() {
    let docs = fixture("refused.yaml");
    let annotation = |doc: &Value, key: &str| {
        doc["metadata"]["annotations"][format!("test.pvc-backup.io/{key}")]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {key} annotation", name(doc)))
            .to_owned()
    };
    let mut by_cel = 0;
    for doc in &docs {
        let by = annotation(doc, "by");
        assert!(["cel", "schema", "strict"].contains(&by.as_str()), "{by}");
        if by != "cel" {
            continue;
        }
        by_cel += 1;
        let expected = annotation(doc, "message");
        match cel(doc) {
            Ok(()) => panic!("{} passed the rules", name(doc)),
            Err(e) => assert!(e.contains(&expected), "{}: {e}", name(doc)),
        }
    }
    assert!(by_cel >= 10, "{by_cel}");
}

#[test]
fn the_cron_rule_takes_what_a_cron_schedule_takes() {
    // The rule's pattern as Rust's regex reads it (the API server's RE2 reads it alike; the
    // cluster tests hold it against the CronJob validation of a real API server).
    let re = regex::Regex::new(&resources::schedule::cron_pattern()).unwrap();
    for ok in [
        "0 2 * * *",
        "*/15 * * * 1-5",
        "0,30 8-18/2 1,15 jan-jun mon-fri",
        "59 23 31 12 6",
        "0 0 ? * SUN",
        "@daily",
        "@hourly",
        "@every 1h30m",
    ] {
        assert!(re.is_match(ok), "{ok} refused");
    }
    for bad in [
        "",
        "* * * *",
        "61 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 7",
        "every night",
        "@often",
        "TZ=UTC 0 2 * * *",
        "0 2 * * * *",
    ] {
        assert!(!re.is_match(bad), "{bad} accepted");
    }
}
