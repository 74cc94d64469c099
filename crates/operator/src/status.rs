//! A run's status as the resource shows it, from what the workflow reported: pure, tested
//! without a cluster.

use cluster::run::Outcome;
use cluster::workflow::steps::failure_text;
use contract::snapshots::SnapshotRecord;
use contract::{ExitCode, Report};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use resources::common::{Phase, RunStatus, Snapshot, Stats, Verification};

/// The condition every run carries: `Unknown` while it runs, `True` once every entry was
/// copied, `False` when it ended otherwise; its reason is the phase.
pub const SUCCEEDED: &str = "Succeeded";

/// The status of a run that starts (or is taken up again) with Job `job`: phase Running, the
/// start time kept from an earlier status.
pub fn running(earlier: &RunStatus, job: &str, generation: Option<i64>, now: Time) -> RunStatus {
    let start = earlier.start_time.clone().unwrap_or_else(|| now.clone());
    RunStatus {
        phase: Some(Phase::Running),
        conditions: vec![condition(
            "Unknown",
            Phase::Running,
            &format!("Job {job} runs the mover"),
            generation,
            now,
        )],
        start_time: Some(start),
        job: Some(job.to_owned()),
        observed_generation: generation,
        ..RunStatus::default()
    }
}

/// The status of a run whose movers ended: the phase from the worst exit code, what they
/// copied (entries and bytes of the source as the largest run saw them, bytes written summed
/// over the runs, failures of the worst run), the snapshot made or restored, and on anything
/// but success what went wrong. `said` tells what was done when no mover ran (a CSI clone).
pub fn finished(
    running: &RunStatus,
    outcomes: &[Outcome],
    said: Option<&str>,
    now: Time,
) -> RunStatus {
    let phase_of = |o: &Outcome| match ExitCode::from_code(o.exit_code) {
        Some(ExitCode::Ok) => Phase::Succeeded,
        Some(ExitCode::Partial) => Phase::PartiallyFailed,
        _ => Phase::Failed,
    };
    let rank = |p: Phase| match p {
        Phase::Failed => 2,
        Phase::PartiallyFailed => 1,
        _ => 0,
    };
    let worst = outcomes.iter().max_by_key(|o| rank(phase_of(o)));
    let phase = worst.map_or(Phase::Succeeded, phase_of);
    let reports: Vec<Report> = outcomes
        .iter()
        .map(|o| o.summaries.last().map(Report::read).unwrap_or_default())
        .collect();
    let mut stats: Option<Stats> = None;
    for report in &reports {
        let Some(entries) = &report.entries else {
            continue;
        };
        let bytes = report.bytes.clone().unwrap_or_default();
        let s = stats.get_or_insert_with(Stats::default);
        s.entries = s.entries.max(clamp(entries.total));
        s.bytes = s.bytes.max(clamp(bytes.total));
        s.bytes_copied = s.bytes_copied.saturating_add(clamp(bytes.copied));
        s.failed = s.failed.max(clamp(entries.failed));
    }
    let snapshot = reports.iter().rev().find_map(|r| r.snapshot.clone());
    let kept = reports
        .iter()
        .rev()
        .find(|r| !r.kept.is_empty())
        .map(|r| snapshots(&r.kept))
        .unwrap_or_default();
    let message = match (phase, worst) {
        (Phase::Succeeded, _) | (_, None) => None,
        (_, Some(o)) => Some(format!(
            "the mover (Job {}) ended with exit code {}{}",
            o.job,
            o.exit_code,
            failure_text(o)
        )),
    };
    let said = message.clone().unwrap_or_else(|| match (said, &snapshot) {
        (Some(said), _) => said.to_owned(),
        (None, Some(s)) => format!("snapshot {s} made"),
        (None, None) => "every entry was copied".to_owned(),
    });
    ended(running, phase, &said, now, |s| {
        s.stats = stats;
        s.snapshot = snapshot;
        s.snapshots = kept;
        s.message = message;
    })
}

/// Snapshots a status shows at most.
pub const MAX_SNAPSHOTS: usize = 100;

/// A backup's kept snapshots as a status shows them: newest first, at most [`MAX_SNAPSHOTS`].
pub fn snapshots(kept: &[SnapshotRecord]) -> Vec<Snapshot> {
    let time = |t: &str| t.parse::<jiff::Timestamp>().ok().map(Time);
    kept.iter()
        .take(MAX_SNAPSHOTS)
        .map(|r| Snapshot {
            id: r.id.clone(),
            time: time(&r.time),
            bytes: r.bytes.map(clamp),
            last_verification: match (&r.verified_at, &r.verified) {
                (Some(at), Some(result)) => time(at).map(|t| Verification {
                    time: t,
                    ok: result == "ok",
                }),
                _ => None,
            },
        })
        .collect()
}

/// The status of a run that could not be carried out (a claim that is missing, a Job that could
/// not start): phase Failed, with the workflow's message.
pub fn failed(running: &RunStatus, message: &str, now: Time) -> RunStatus {
    ended(running, Phase::Failed, message, now, |s| {
        s.message = Some(message.to_owned());
    })
}

fn ended(
    running: &RunStatus,
    phase: Phase,
    said: &str,
    now: Time,
    fill: impl FnOnce(&mut RunStatus),
) -> RunStatus {
    let verdict = if phase == Phase::Succeeded {
        "True"
    } else {
        "False"
    };
    let mut status = RunStatus {
        phase: Some(phase),
        conditions: vec![condition(
            verdict,
            phase,
            said,
            running.observed_generation,
            now.clone(),
        )],
        duration: running
            .start_time
            .as_ref()
            .map(|start| duration(start, &now)),
        completion_time: Some(now),
        ..running.clone()
    };
    fill(&mut status);
    status
}

fn condition(
    status: &str,
    phase: Phase,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: SUCCEEDED.to_owned(),
        status: status.to_owned(),
        reason: format!("{phase:?}"),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Whether a phase is final: nothing more happens to the run.
pub fn is_final(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Succeeded | Phase::PartiallyFailed | Phase::Failed)
    )
}

/// The time from `start` to `end` as Kubernetes prints durations: "45s", "3m7s", "1h0m12s".
pub fn duration(start: &Time, end: &Time) -> String {
    let secs = (end.0.as_second() - start.0.as_second()).max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn outcome(code: i32, summary: serde_json::Value, messages: &[&str]) -> Outcome {
        Outcome {
            job: "data-now-ab12c".into(),
            pod: "data-now-ab12c-xyz".into(),
            node: Some("node-a".into()),
            exit_code: code,
            summaries: vec![summary],
            messages: messages.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// A backup's report line as `mover backup` prints it.
    fn backup_report(failed: u64, errors: serde_json::Value) -> serde_json::Value {
        json!({"snapshot": "2026-12-06T02-00-00Z",
               "kept": [
                   {"id": "2026-12-06T02-00-00Z", "time": "2026-12-06T02:00:00Z", "latest": true,
                    "entries": 12, "bytes": 4096, "result": "ok", "verified_at": null,
                    "verified": null},
                   {"id": "2026-12-05T02-00-00Z", "time": "2026-12-05T02:00:00Z", "latest": false,
                    "entries": 11, "bytes": 4000, "result": "ok",
                    "verified_at": "2026-12-05T09:00:00Z", "verified": "failed: 2 differences"}],
               "summary": {
            "entries": {"total": 12, "copied": 11, "linked": 1, "updated": 0, "unchanged": 0,
                        "deleted": 0, "skipped": 0, "failed": failed},
            "bytes": {"total": 4096, "copied": 2048},
            "duration_ms": 1500, "errors": errors}})
    }

    #[test]
    fn a_run_starts_running_and_keeps_its_first_start_time() {
        let s = running(
            &RunStatus::default(),
            "data-now-ab12c",
            Some(1),
            at("2026-12-06T02:00:00Z"),
        );
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(s.job.as_deref(), Some("data-now-ab12c"));
        assert_eq!(s.conditions[0].status, "Unknown");
        // Taken up again after a restart: the start time stays the first one.
        let again = running(&s, "data-now-ab12c", Some(1), at("2026-12-06T02:05:00Z"));
        assert_eq!(again.start_time, Some(at("2026-12-06T02:00:00Z")));
    }

    #[test]
    fn each_exit_code_gives_its_phase_stats_snapshot_and_message() {
        let start = running(
            &RunStatus::default(),
            "data-now-ab12c",
            Some(1),
            at("2026-12-06T02:00:00Z"),
        );
        let end = at("2026-12-06T03:02:05Z");

        let ok = finished(
            &start,
            &[outcome(0, backup_report(0, json!([])), &[])],
            None,
            end.clone(),
        );
        assert_eq!(ok.phase, Some(Phase::Succeeded));
        assert_eq!(ok.snapshot.as_deref(), Some("2026-12-06T02-00-00Z"));
        assert_eq!(
            ok.stats,
            Some(Stats {
                entries: 12,
                bytes: 4096,
                bytes_copied: 2048,
                failed: 0
            })
        );
        assert_eq!(ok.duration.as_deref(), Some("1h2m5s"));
        // The backup claim's snapshots after the run, as the mover's records told them.
        let ids: Vec<&str> = ok.snapshots.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["2026-12-06T02-00-00Z", "2026-12-05T02-00-00Z"]);
        assert_eq!(ok.snapshots[0].bytes, Some(4096));
        assert_eq!(ok.snapshots[0].time, Some(at("2026-12-06T02:00:00Z")));
        assert_eq!(ok.snapshots[0].last_verification, None);
        let checked = ok.snapshots[1].last_verification.as_ref().unwrap();
        assert_eq!(
            (checked.time.clone(), checked.ok),
            (at("2026-12-05T09:00:00Z"), false)
        );
        assert_eq!(ok.completion_time, Some(end.clone()));
        assert_eq!(ok.message, None);
        assert_eq!(ok.job.as_deref(), Some("data-now-ab12c"));
        assert_eq!(
            (
                ok.conditions[0].status.as_str(),
                ok.conditions[0].reason.as_str()
            ),
            ("True", "Succeeded")
        );

        let errors = json!([{"path": "sub/locked", "op": "open", "error": "Permission denied"}]);
        let partial = finished(
            &start,
            &[outcome(23, backup_report(1, errors), &[])],
            None,
            end.clone(),
        );
        assert_eq!(partial.phase, Some(Phase::PartiallyFailed));
        assert_eq!(partial.stats.as_ref().map(|s| s.failed), Some(1));
        let message = partial.message.unwrap();
        assert!(
            message.contains("exit code 23") && message.contains("sub/locked"),
            "{message}"
        );
        assert_eq!(partial.conditions[0].status, "False");

        let refused = finished(
            &start,
            &[outcome(
                254,
                json!({}),
                &["pvc-backup: error: the source is empty"],
            )],
            None,
            end.clone(),
        );
        assert_eq!(refused.phase, Some(Phase::Failed));
        assert_eq!(refused.stats, None);
        assert!(refused.message.unwrap().contains("the source is empty"),);

        // Several movers (the copies of a clone, a migration's two copies): the worst decides,
        // the source is counted once, what was written adds up.
        let two = finished(
            &start,
            &[
                outcome(0, backup_report(0, json!([])), &[]),
                outcome(23, backup_report(1, json!([])), &[]),
            ],
            None,
            end.clone(),
        );
        assert_eq!(two.phase, Some(Phase::PartiallyFailed));
        assert_eq!(
            two.stats,
            Some(Stats {
                entries: 12,
                bytes: 4096,
                bytes_copied: 4096,
                failed: 1
            })
        );
        // No mover at all (a CSI clone): done, as said.
        let csi = finished(&start, &[], Some("2 CSI clones made"), end.clone());
        assert_eq!(csi.phase, Some(Phase::Succeeded));
        assert_eq!(csi.conditions[0].message, "2 CSI clones made");
        assert_eq!(csi.stats, None);

        let broke = failed(&start, "claim data not found in namespace x", end);
        assert_eq!(broke.phase, Some(Phase::Failed));
        assert_eq!(
            broke.message.as_deref(),
            Some("claim data not found in namespace x")
        );
        assert_eq!(broke.conditions[0].reason, "Failed");
    }

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        let t = |s| at(s);
        assert_eq!(
            duration(&t("2026-01-01T00:00:00Z"), &t("2026-01-01T00:00:45Z")),
            "45s"
        );
        assert_eq!(
            duration(&t("2026-01-01T00:00:00Z"), &t("2026-01-01T00:03:07Z")),
            "3m7s"
        );
        assert_eq!(
            duration(&t("2026-01-01T00:00:00Z"), &t("2026-01-01T01:00:12Z")),
            "1h0m12s"
        );
        // A clock that went back does not give a negative duration.
        assert_eq!(
            duration(&t("2026-01-01T00:00:10Z"), &t("2026-01-01T00:00:00Z")),
            "0s"
        );
    }
}
