//! `Schedule::next_after` against Python's croniter, an implementation written by other people
//! from the same cron rules: the same table of expressions, time zones and start instants goes
//! to both, and every answer must agree.
//!
//! croniter runs once, with every case as JSON on its standard input, so the test takes about a
//! second. Without croniter it skips (`pip install croniter`; scripts/test.sh installs it as
//! root); with CI=true that skip is a failure.
//!
//! Where the two differ on purpose the table leaves the instant out. croniter fires a wall time
//! that the clock shows twice (clocks going back) twice, once in each pass; `Schedule` fires it
//! once, at its first occurrence. So no start instant lies inside a repeated hour: both passes
//! are skipped and the starts sit before the first pass and after the second. Every other DST
//! start, including all around the spring-forward gaps, is compared: there croniter fires a
//! missing wall time at the first instant after the gap, or skips it when the hour field is `*`,
//! which is `Schedule`'s documented choice too. `@every` is not compared; croniter has no such
//! form (the unit tests cover it).

use std::io::Write;
use std::process::{Command, Stdio};

use cluster::cron::Schedule;
use jiff::Timestamp;
use serde_json::{Value, json};

/// Five-field expressions and descriptors, each read in every zone from every start.
const EXPRESSIONS: &[&str] = &[
    "* * * * *",
    "*/5 * * * *",
    "*/7 * * * *",
    "0 * * * *",
    "30 * * * *",
    "15,45 * * * *",
    "5/20 * * * *",
    "0 */2 * * *",
    "0 0 * * *",
    "0 2 * * *",
    "30 2 * * *",
    "15 1 * * *",
    "45 1 * * *",
    "0 3 * * *",
    "59 23 * * *",
    "0 1-3 * * *",
    "*/15 1-2 * * *",
    "*/20 9-17/2 * * *",
    "0 12 * * 1-5",
    "30 4 * * MON-FRI",
    "59 * * * sat",
    "0 0 ? * 6",
    "0 0 1 * *",
    "0 0 1,15 * *",
    "0 0 31 * *",
    "0 0 20/5 * *",
    "0 0 29 2 *",
    "0 0 1 jan,Jul *",
    "0 22 * jan,feb,DEC sun",
    "30 2 * 3,10 0",
    // Day of month and day of week both restricted: either matches.
    "0 6 13 * 5",
    "0 12 1-7 * 1",
    "0 0 */10 * 1",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// Start instants for every zone.
const STARTS: &[&str] = &[
    "2024-01-15T08:17:23Z",
    "2024-02-28T23:59:59Z",
    "2024-06-30T23:59:00Z",
    "2024-12-31T23:30:00Z",
    "2025-07-04T12:00:00Z",
];

/// The zones, each with start instants around its clock changes of 2024. The comments give the
/// change in UTC; starts inside a repeated hour are left out (see the file's comment).
const ZONES: &[(&str, &[&str])] = &[
    ("UTC", &[]),
    ("Asia/Kolkata", &[]),
    (
        "Europe/Berlin",
        &[
            // Forward at 2024-03-31T01:00Z: 02:00 CET becomes 03:00 CEST.
            "2024-03-30T22:00:00Z",
            "2024-03-31T00:29:00Z",
            "2024-03-31T00:59:00Z",
            "2024-03-31T01:00:00Z",
            "2024-03-31T01:30:00Z",
            // Back at 2024-10-27T01:00Z: 02:00-03:00 runs from 00:00Z and again from 01:00Z.
            "2024-10-26T22:10:00Z",
            "2024-10-26T23:59:00Z",
            "2024-10-27T02:00:00Z",
            "2024-10-27T02:40:00Z",
        ],
    ),
    (
        "America/New_York",
        &[
            // Forward at 2024-03-10T07:00Z: 02:00 EST becomes 03:00 EDT.
            "2024-03-10T04:00:00Z",
            "2024-03-10T06:29:00Z",
            "2024-03-10T06:59:59Z",
            "2024-03-10T07:00:00Z",
            "2024-03-10T07:45:00Z",
            // Back at 2024-11-03T06:00Z: 01:00-02:00 runs from 05:00Z and again from 06:00Z.
            "2024-11-03T03:00:00Z",
            "2024-11-03T04:59:00Z",
            "2024-11-03T07:00:00Z",
            "2024-11-03T07:40:00Z",
        ],
    ),
    (
        // Half-hour daylight saving time: +10:30 in winter, +11 in summer.
        "Australia/Lord_Howe",
        &[
            // Back at 2024-04-06T15:00Z: 01:30-02:00 runs from 14:30Z and again from 15:00Z.
            "2024-04-06T12:00:00Z",
            "2024-04-06T14:29:00Z",
            "2024-04-06T15:30:00Z",
            "2024-04-06T16:10:00Z",
            // Forward at 2024-10-05T15:30Z: 02:00 (+10:30) becomes 02:30 (+11).
            "2024-10-05T13:00:00Z",
            "2024-10-05T15:00:00Z",
            "2024-10-05T15:29:00Z",
            "2024-10-05T15:30:00Z",
            "2024-10-05T16:00:00Z",
        ],
    ),
];

/// Reads the cases as JSON on stdin; writes, for each, the next firing in Unix seconds, null
/// when croniter finds none, or the error it raised as a string.
const CRONITER: &str = r#"
import json, sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from croniter import croniter, CroniterBadDateError

answers = []
for case in json.load(sys.stdin):
    start = datetime.fromtimestamp(case["start"], timezone.utc).astimezone(ZoneInfo(case["zone"]))
    try:
        answers.append(int(croniter(case["expr"], start).get_next(datetime).timestamp()))
    except CroniterBadDateError:
        answers.append(None)
    except Exception as e:
        answers.append("%s: %s" % (type(e).__name__, e))
json.dump(answers, sys.stdout)
"#;

const TEST: &str = "cron_oracle";

/// Whether Python with croniter and time zone data is here; skips (or fails under CI) if not.
fn have_croniter() -> bool {
    let probe = |code: &str| {
        Command::new("python3")
            .args(["-c", code])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !probe("import croniter") {
        return testkit::skip::skip(TEST, "croniter is not installed (pip install croniter)");
    }
    if !probe("import zoneinfo; zoneinfo.ZoneInfo('Australia/Lord_Howe')") {
        return testkit::skip::skip(
            TEST,
            "Python has no time zone data (apt-get install tzdata, or pip install tzdata)",
        );
    }
    true
}

fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text} is not a timestamp: {e}"))
}

/// Runs croniter once over all cases.
fn croniter_answers(cases: &[Value]) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", CRONITER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(cases).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread: python may fill its output pipe before it has read all.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("python3 finishes");
    writer.join().unwrap().expect("python3 reads the cases");
    assert!(
        out.status.success(),
        "the croniter script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the croniter script prints a JSON list")
}

#[test]
fn next_after_agrees_with_croniter() {
    if !have_croniter() {
        return;
    }
    let anchor = ts("2020-01-01T00:00:00Z");
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for &(zone, dst_starts) in ZONES {
        for &expr in EXPRESSIONS {
            let schedule = Schedule::parse(expr, Some(zone))
                .unwrap_or_else(|e| panic!("{expr} in {zone}: {e}"));
            for &start in STARTS.iter().chain(dst_starts) {
                let start = ts(start);
                cases.push(json!({"expr": expr, "zone": zone, "start": start.as_second()}));
                ours.push(schedule.next_after(start, anchor));
            }
        }
    }
    let theirs = croniter_answers(&cases);
    assert_eq!(theirs.len(), cases.len(), "croniter answered every case");

    let show = |t: Option<Timestamp>| t.map_or("none".to_owned(), |t| t.to_string());
    let mut disagreements = Vec::new();
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        let theirs = match theirs {
            Value::Null => None,
            Value::Number(n) => Some(Timestamp::from_second(n.as_i64().unwrap()).unwrap()),
            other => {
                disagreements.push(format!("{case}: croniter raised {other}"));
                continue;
            }
        };
        if *ours != theirs {
            let start = Timestamp::from_second(case["start"].as_i64().unwrap()).unwrap();
            disagreements.push(format!(
                "{:?} in {} after {start}: ours {}, croniter {}",
                case["expr"].as_str().unwrap(),
                case["zone"].as_str().unwrap(),
                show(*ours),
                show(theirs),
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
    // Say how much was compared: the harness shows it with --nocapture.
    println!("{TEST}: {} cases agree with croniter", cases.len());
}
