//! The BackupSchedule controller: at each firing of its cron schedule, one Backup for each claim
//! its source names (one claim, or every claim its selector matches), carried out by the Backup
//! controller.
//!
//! - The first firing is the first after the schedule was created: applying a schedule starts
//!   no backup.
//! - Each firing's Backups are named from the firing's time, so a firing makes its Backups once
//!   however often it is reconciled, on whichever replica.
//! - Firings the operator was down for are counted as missed, and only the latest of them is
//!   made up for. A claim whose Backup of an earlier firing still runs gets none (also missed).
//! - With `jitterSeconds`, each firing starts up to that many seconds late, by an offset drawn
//!   from the schedule's uid and the firing's time: the same on every replica and restart.
//! - While suspended, firings are skipped (not missed): resuming starts no backup at once.
//! - The newest finished Backups are kept per claim, as the history limits say; older ones are
//!   deleted (their snapshots stay in the backup claim).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster::cron;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use resources::backup::{Backup, BackupSpec};
use resources::common::Snapshot;
use resources::common::{ClaimSource, Phase};
use resources::schedule::{BackupSchedule, ClaimSnapshots, ScheduleStatus};
use serde_json::json;

use crate::{Context, Error, status};

/// The label on a schedule's Backups that names the schedule.
pub const SCHEDULE_LABEL: &str = "pvc-backup.io/schedule";

/// The label on a schedule's Backups that names the claim backed up.
pub const CLAIM_LABEL: &str = "pvc-backup.io/claim";

/// Succeeded Backups kept per claim when the schedule does not say.
pub const DEFAULT_SUCCESSFUL_KEPT: usize = 3;

/// Failed (or partly failed) Backups kept per claim when the schedule does not say.
pub const DEFAULT_FAILED_KEPT: usize = 1;

/// Firings counted at most when the operator was down for long (more are counted as this many).
const MAX_FIRINGS: usize = 1000;

/// The condition that says whether the schedule can fire.
pub const READY: &str = "Ready";

/// What is due at `now`: the latest firing not yet made (if any) and how many before it were
/// missed. `last` is the last firing made or skipped (`None`: none yet, count from `anchor`, the
/// schedule's creation).
pub fn due(
    schedule: &cron::Schedule,
    anchor: Timestamp,
    last: Option<Timestamp>,
    now: Timestamp,
) -> (Option<Timestamp>, u64) {
    let from = last.unwrap_or(anchor).max(anchor);
    let (firings, more) = schedule.firings_between(from, now, anchor, MAX_FIRINGS);
    match firings.last() {
        Some(latest) => {
            let missed = firings.len() as u64 - 1 + u64::from(more);
            (Some(*latest), missed)
        }
        None => (None, 0),
    }
}

/// The delay of a firing within `jitter` seconds: drawn from the schedule's uid and the firing's
/// time (FNV-1a), the same wherever and however often it is computed.
pub fn jitter(uid: &str, firing: Timestamp, jitter: Option<i32>) -> Duration {
    let Some(max) = jitter
        .and_then(|j| u64::try_from(j).ok())
        .filter(|j| *j > 0)
    else {
        return Duration::ZERO;
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes().chain(firing.as_second().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_secs(hash % (max + 1))
}

/// A value that fits a label (63 characters): the text itself, or its head and a hash of it.
pub fn label_value(text: &str) -> String {
    if text.len() <= 63 {
        return text.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut head: String = text.chars().take(50).collect();
    while head.ends_with(['-', '.', '_']) {
        head.pop();
    }
    format!("{head}-{:012x}", hash & 0xffff_ffff_ffff)
}

/// The name of the Backup of `claim` made at `firing`: `SCHEDULE-TIME` for a schedule of one
/// claim, `SCHEDULE-CLAIM-TIME` with a selector; the time in UTC as `20261206-020000`.
pub fn backup_name(schedule: &str, claim: Option<&str>, firing: Timestamp) -> String {
    let stamp = firing.strftime("%Y%m%d-%H%M%S").to_string();
    let head = match claim {
        Some(c) => format!("{schedule}-{c}"),
        None => schedule.to_owned(),
    };
    // A name is at most 253 characters.
    let room = 253 - stamp.len() - 1;
    let head = if head.len() > room {
        label_value(&head)
    } else {
        head
    };
    format!("{head}-{stamp}")
}

/// One of a schedule's Backups, as the history and the status need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    /// Its name.
    pub name: String,
    /// The claim it backs up.
    pub claim: String,
    /// Its phase.
    pub phase: Option<Phase>,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// When it ended.
    pub completed: Option<Timestamp>,
    /// The backup claim's snapshots after its run.
    pub snapshots: Vec<Snapshot>,
}

impl Made {
    fn of(backup: &Backup) -> Made {
        let status = backup.status.as_ref();
        Made {
            name: backup.name_any(),
            claim: backup.spec.source.claim.clone(),
            phase: status.and_then(|s| s.phase),
            created: backup.meta().creation_timestamp.as_ref().map(|t| t.0),
            completed: status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0),
            snapshots: status.map(|s| s.snapshots.clone()).unwrap_or_default(),
        }
    }

    fn running(&self) -> bool {
        !status::is_final(self.phase)
    }
}

/// The finished Backups to delete: per claim, all but the newest `successful` that succeeded
/// and the newest `failed` that did not.
pub fn beyond_history(made: &[Made], successful: usize, failed: usize) -> Vec<String> {
    let mut by_claim: BTreeMap<&str, (Vec<&Made>, Vec<&Made>)> = BTreeMap::new();
    for m in made.iter().filter(|m| !m.running()) {
        let entry = by_claim.entry(&m.claim).or_default();
        if m.phase == Some(Phase::Succeeded) {
            entry.0.push(m);
        } else {
            entry.1.push(m);
        }
    }
    let mut out = Vec::new();
    for (_, (mut ok, mut bad)) in by_claim {
        for (list, keep) in [(&mut ok, successful), (&mut bad, failed)] {
            // Newest first: by creation, then name (the name holds the firing's time).
            list.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
            out.extend(list.iter().skip(keep).map(|m| m.name.clone()));
        }
    }
    out
}

/// Whether a claim is overdue: no Backup of it succeeded since the firing before the latest
/// one, although that firing came after the schedule started.
pub fn overdue(
    schedule: &cron::Schedule,
    anchor: Timestamp,
    last_success: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    // Two firings after the last success (and after the start): the first of them is at or
    // before the one before the latest.
    let from = last_success.map_or(anchor, |s| s.max(anchor));
    let (firings, _) = schedule.firings_between(from, now, anchor, 2);
    firings.len() >= 2
}

/// Reconciles one BackupSchedule (the controller's reconciler).
pub async fn reconcile(schedule: Arc<BackupSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let schedules: Api<BackupSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    // The controller's cache can lag behind this process's own writes: a firing just made must
    // not be made (and counted) again from an older copy.
    let schedule = match schedules
        .get_opt(&name)
        .await
        .map_err(cluster::Error::api(format!("read BackupSchedule {name}")))?
    {
        Some(s) if s.meta().deletion_timestamp.is_none() => s,
        _ => return Ok(Action::await_change()),
    };
    let spec = &schedule.spec;
    let earlier = schedule.status.clone().unwrap_or_default();
    let generation = schedule.meta().generation;
    let now = Timestamp::now();
    let anchor = schedule
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let cron = match cron::Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let mut s = earlier.clone();
            s.conditions = vec![ready(
                "False",
                "InvalidSchedule",
                &e.to_string(),
                generation,
            )];
            s.next_schedule_time = None;
            s.observed_generation = generation;
            write_status(&schedules, &name, &earlier, &s).await?;
            return Ok(Action::await_change());
        }
    };
    let uid = schedule.uid().unwrap_or_default();
    let list = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={}", label_value(&name)));
    let mut made: Vec<Made> = backups
        .list(&list)
        .await
        .map_err(cluster::Error::api(format!(
            "list the Backups of BackupSchedule {name}"
        )))?
        .items
        .iter()
        .filter(|b| b.owner_references().iter().any(|o| o.uid == uid))
        .map(Made::of)
        .collect();

    let mut next_status = earlier.clone();
    let mut wake: Option<Timestamp> = None;
    let last = earlier.last_schedule_time.as_ref().map(|t| t.0);
    let (firing, missed) = due(&cron, anchor, last, now);
    let mut missed_now = 0;
    if let Some(firing) = firing {
        let start = firing + jitter(&uid, firing, spec.jitter_seconds);
        if spec.suspend {
            next_status.last_schedule_time = Some(Time(firing));
        } else if start > now {
            wake = Some(start);
        } else {
            missed_now += missed;
            let claims = claims(&ctx, &namespace, &schedule).await?;
            let by_selector = spec.source.selector.is_some();
            for claim in &claims {
                if made.iter().any(|m| &m.claim == claim && m.running()) {
                    tracing::info!(schedule = %name, claim = %claim,
                        "its Backup of an earlier firing still runs: this firing is missed");
                    missed_now += 1;
                    continue;
                }
                let backup_name = backup_name(&name, by_selector.then_some(claim), firing);
                let backup = backup_for(&schedule, claim, &backup_name);
                match backups.create(&PostParams::default(), &backup).await {
                    Ok(b) => {
                        tracing::info!(schedule = %name, backup = %backup_name, "firing: Backup made");
                        made.push(Made::of(&b));
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        return Err(
                            cluster::Error::api(format!("create Backup {backup_name}"))(e).into(),
                        );
                    }
                }
            }
            next_status.last_schedule_time = Some(Time(firing));
        }
    }
    if missed_now > 0 {
        ctx.metrics.missed(&namespace, &name, missed_now);
        next_status.missed_schedules =
            Some(earlier.missed_schedules.unwrap_or(0) + missed_now as i64);
    }

    // History.
    let kept_ok = limit(
        spec.successful_backups_history_limit,
        DEFAULT_SUCCESSFUL_KEPT,
    );
    let kept_bad = limit(spec.failed_backups_history_limit, DEFAULT_FAILED_KEPT);
    for old in beyond_history(&made, kept_ok, kept_bad) {
        match backups.delete(&old, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(schedule = %name, backup = %old, "beyond the history limit: deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(cluster::Error::api(format!("delete Backup {old}"))(e).into()),
        }
        made.retain(|m| m.name != old);
    }

    // Status.
    let mut active: Vec<String> = made
        .iter()
        .filter(|m| m.running())
        .map(|m| m.name.clone())
        .collect();
    active.sort();
    next_status.active = active;
    let success_of = |claim: Option<&str>| {
        made.iter()
            .filter(|m| m.phase == Some(Phase::Succeeded) && claim.is_none_or(|c| m.claim == c))
            .filter_map(|m| m.completed)
            .max()
    };
    let newest = success_of(None).map(Time);
    next_status.last_successful_time = newest.or(earlier.last_successful_time.clone());
    // A schedule into a repository names the repository where a backup claim would be.
    let target_claim = spec.template.target.as_ref().and_then(|t| {
        t.claim
            .clone()
            .or(t.repository.as_ref().map(|r| r.url.clone()))
    });
    let names: BTreeSet<String> = made
        .iter()
        .map(|m| m.claim.clone())
        .chain(spec.source.claim.clone())
        .collect();
    next_status.claims = names
        .iter()
        .map(|claim| {
            let earlier_claim = earlier.claims.iter().find(|c| &c.claim == claim);
            let last = success_of(Some(claim))
                .map(Time)
                .or_else(|| earlier_claim.and_then(|c| c.last_successful_time.clone()));
            ctx.metrics.set_overdue(
                &namespace,
                claim,
                !spec.suspend && overdue(&cron, anchor, last.as_ref().map(|t| t.0), now),
            );
            ClaimSnapshots {
                claim: claim.clone(),
                backup_claim: target_claim
                    .clone()
                    .unwrap_or_else(|| format!("{claim}-backup")),
                last_successful_time: last,
                snapshots: made
                    .iter()
                    .filter(|m| &m.claim == claim && !m.snapshots.is_empty())
                    .max_by_key(|m| (m.completed, m.name.clone()))
                    .map(|m| m.snapshots.clone())
                    .or_else(|| earlier_claim.map(|c| c.snapshots.clone()))
                    .unwrap_or_default(),
            }
        })
        .collect();
    let after = next_status
        .last_schedule_time
        .as_ref()
        .map_or(now, |t| t.0)
        .max(now);
    let next = cron.next_after(after, anchor);
    next_status.next_schedule_time = next.map(Time);
    let (verdict, reason, message) = match (&next, spec.suspend) {
        (_, true) => (
            "False",
            "Suspended",
            "suspended: no Backup is made until suspend is false".to_owned(),
        ),
        (Some(n), false) => ("True", "Scheduled", format!("next firing at {n}")),
        (None, false) => (
            "False",
            "NeverFires",
            format!(
                "schedule {:?} has no firing in the next five years",
                spec.schedule
            ),
        ),
    };
    next_status.conditions = vec![ready(verdict, reason, &message, generation)];
    next_status.observed_generation = generation;
    write_status(&schedules, &name, &earlier, &next_status).await?;

    let wake = match (wake, next) {
        (Some(w), _) => Some(w),
        (None, Some(n)) => Some(n + jitter(&uid, n, spec.jitter_seconds)),
        (None, None) => None,
    };
    Ok(match wake {
        Some(w) => {
            let secs = (w.as_second() - Timestamp::now().as_second()).max(1);
            // Woken at the firing, or earlier when the Backups change (they are watched).
            Action::requeue(Duration::from_secs(u64::try_from(secs).unwrap_or(1)))
        }
        None => Action::await_change(),
    })
}

fn limit(set: Option<i32>, default: usize) -> usize {
    set.and_then(|n| usize::try_from(n).ok()).unwrap_or(default)
}

fn ready(status: &str, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// The claims a firing backs up: the one named, or those the selector matches now (not being
/// deleted), by name.
async fn claims(
    ctx: &Context,
    namespace: &str,
    schedule: &BackupSchedule,
) -> Result<Vec<String>, Error> {
    let source = &schedule.spec.source;
    if let Some(claim) = &source.claim {
        return Ok(vec![claim.clone()]);
    }
    let Some(selector) = &source.selector else {
        return Ok(Vec::new());
    };
    let name = schedule.name_any();
    let selector = Selector::try_from(selector.clone()).map_err(|e| {
        cluster::Error::Invalid(format!(
            "the selector of BackupSchedule {name} cannot be used: {e}; give matchLabels, or \
             matchExpressions with In, NotIn, Exists or DoesNotExist"
        ))
    })?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels_from(&selector))
        .await
        .map_err(cluster::Error::api(format!(
            "list the claims BackupSchedule {name} selects"
        )))?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|c| c.meta().deletion_timestamp.is_none())
        .map(|c| c.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// The Backup of `claim` for a firing: the template's options, owned by the schedule.
fn backup_for(schedule: &BackupSchedule, claim: &str, name: &str) -> Backup {
    let mut backup = Backup::new(
        name,
        BackupSpec {
            source: ClaimSource {
                claim: claim.to_owned(),
            },
            options: schedule.spec.template.clone(),
        },
    );
    backup.metadata.namespace = schedule.namespace();
    backup.metadata.labels = Some(BTreeMap::from([
        (SCHEDULE_LABEL.to_owned(), label_value(&schedule.name_any())),
        (CLAIM_LABEL.to_owned(), label_value(claim)),
    ]));
    backup.metadata.owner_references = Some(vec![OwnerReference {
        api_version: BackupSchedule::api_version(&()).into_owned(),
        kind: BackupSchedule::kind(&()).into_owned(),
        name: schedule.name_any(),
        uid: schedule.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    backup
}

/// The fields of a schedule's status, each sent (as null when empty) so that a merge patch
/// clears what is gone.
const STATUS_FIELDS: [&str; 8] = [
    "conditions",
    "lastScheduleTime",
    "lastSuccessfulTime",
    "nextScheduleTime",
    "missedSchedules",
    "active",
    "claims",
    "observedGeneration",
];

/// Writes the status when it changed (conditions compared without their times).
async fn write_status(
    api: &Api<BackupSchedule>,
    name: &str,
    earlier: &ScheduleStatus,
    next: &ScheduleStatus,
) -> Result<(), Error> {
    let timeless = |s: &ScheduleStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    if timeless(earlier) == timeless(next) {
        return Ok(());
    }
    let mut next = next.clone();
    // A condition keeps its transition time while its status stays.
    for c in &mut next.conditions {
        if let Some(old) = earlier
            .conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    let params = PatchParams {
        field_manager: Some(crate::run::MANAGER.to_owned()),
        ..PatchParams::default()
    };
    // A merge patch leaves alone what it leaves out: a list that became empty (no Backup
    // active any more) or a time that is gone must be sent as null to be cleared.
    let mut value = serde_json::to_value(&next).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        for key in STATUS_FIELDS {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    api.patch_status(name, &params, &Patch::Merge(&json!({"status": value})))
        .await
        .map(|_| ())
        .map_err(cluster::Error::api(format!(
            "write the status of BackupSchedule {name}"
        )))
        .map_err(Error::from)
}

/// What the controller does with a reconcile that failed: logs it and tries again in 30 s.
pub fn error_policy(schedule: Arc<BackupSchedule>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(
        schedule = %schedule.name_any(),
        error = %cluster::error::chain_text(error),
        "reconcile failed; trying again in 30 s"
    );
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_status_field_is_sent_so_that_what_is_gone_is_cleared() {
        let now = Time(t("2026-12-07T02:00:00Z"));
        let full = ScheduleStatus {
            conditions: vec![ready("True", "Scheduled", "next", Some(1))],
            last_schedule_time: Some(now.clone()),
            last_successful_time: Some(now.clone()),
            next_schedule_time: Some(now),
            missed_schedules: Some(1),
            active: vec!["b".into()],
            claims: vec![ClaimSnapshots::default()],
            observed_generation: Some(1),
        };
        let value = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut listed = STATUS_FIELDS.to_vec();
        listed.sort();
        assert_eq!(keys, listed);
    }

    #[test]
    fn a_schedule_fires_first_after_it_was_made_and_counts_what_it_missed() {
        let daily = cron::Schedule::parse("0 2 * * *", None).unwrap();
        let made = t("2026-12-06T10:00:00Z");
        // Applied at 10:00: nothing is due until 02:00 the next day.
        assert_eq!(
            due(&daily, made, None, t("2026-12-06T23:59:00Z")),
            (None, 0)
        );
        assert_eq!(
            due(&daily, made, None, t("2026-12-07T02:00:30Z")),
            (Some(t("2026-12-07T02:00:00Z")), 0)
        );
        // Made at 02:00 on the 7th; the operator was down until the 10th, 03:00: the firing of
        // the 10th is made, those of the 8th and 9th were missed.
        assert_eq!(
            due(
                &daily,
                made,
                Some(t("2026-12-07T02:00:00Z")),
                t("2026-12-10T03:00:00Z")
            ),
            (Some(t("2026-12-10T02:00:00Z")), 2)
        );
        // Nothing new since the last firing.
        assert_eq!(
            due(
                &daily,
                made,
                Some(t("2026-12-10T02:00:00Z")),
                t("2026-12-10T09:00:00Z")
            ),
            (None, 0)
        );
    }

    #[test]
    fn jitter_is_the_same_each_time_and_within_its_bound() {
        let f = t("2026-12-07T02:00:00Z");
        assert_eq!(jitter("uid-1", f, None), Duration::ZERO);
        assert_eq!(jitter("uid-1", f, Some(0)), Duration::ZERO);
        let a = jitter("uid-1", f, Some(600));
        assert_eq!(a, jitter("uid-1", f, Some(600)));
        assert!(a <= Duration::from_secs(600));
        // Different schedules spread out.
        let spread: BTreeSet<Duration> = (0..50)
            .map(|i| jitter(&format!("uid-{i}"), f, Some(600)))
            .collect();
        assert!(spread.len() > 40, "{spread:?}");
    }

    #[test]
    fn backup_names_come_from_the_firing_and_fit() {
        let f = t("2026-12-07T02:00:00Z");
        assert_eq!(backup_name("nightly", None, f), "nightly-20261207-020000");
        assert_eq!(
            backup_name("nightly", Some("db"), f),
            "nightly-db-20261207-020000"
        );
        let long = "a".repeat(250);
        let n = backup_name(&long, Some("db"), f);
        assert!(n.len() <= 253 && n.ends_with("-20261207-020000"), "{n}");
        assert_eq!(label_value("short"), "short");
        let v = label_value(&long);
        assert!(v.len() <= 63, "{v}");
        assert_ne!(v, label_value(&"a".repeat(251)));
    }

    fn made(name: &str, claim: &str, phase: Option<Phase>, created: &str) -> Made {
        Made {
            name: name.into(),
            claim: claim.into(),
            phase,
            created: Some(t(created)),
            completed: None,
            snapshots: Vec::new(),
        }
    }

    #[test]
    fn history_keeps_the_newest_per_claim_and_never_a_running_one() {
        let ok = Some(Phase::Succeeded);
        let bad = Some(Phase::Failed);
        let list = vec![
            made("s-a-1", "a", ok, "2026-12-01T02:00:00Z"),
            made("s-a-2", "a", ok, "2026-12-02T02:00:00Z"),
            made("s-a-3", "a", bad, "2026-12-03T02:00:00Z"),
            made(
                "s-a-4",
                "a",
                Some(Phase::PartiallyFailed),
                "2026-12-04T02:00:00Z",
            ),
            made("s-a-5", "a", ok, "2026-12-05T02:00:00Z"),
            made("s-a-6", "a", Some(Phase::Running), "2026-12-06T02:00:00Z"),
            made("s-b-1", "b", ok, "2026-12-01T02:00:00Z"),
        ];
        let mut gone = beyond_history(&list, 2, 1);
        gone.sort();
        assert_eq!(gone, ["s-a-1", "s-a-3"]);
        assert_eq!(beyond_history(&list, 0, 0).len(), 6);
    }

    #[test]
    fn a_claim_is_overdue_when_the_firing_before_the_last_brought_no_success() {
        let daily = cron::Schedule::parse("0 2 * * *", None).unwrap();
        let made = t("2026-12-01T10:00:00Z");
        let now = t("2026-12-04T12:00:00Z");
        // Firings: 2nd, 3rd, 4th. The one before the latest is the 3rd, 02:00.
        assert!(!overdue(&daily, made, Some(t("2026-12-03T02:30:00Z")), now));
        assert!(overdue(&daily, made, Some(t("2026-12-02T02:30:00Z")), now));
        assert!(overdue(&daily, made, None, now));
        // Only one firing since the schedule was made: not overdue yet.
        assert!(!overdue(&daily, made, None, t("2026-12-02T12:00:00Z")));
    }
}
