//! `BackupSchedule`: Backups made on a cron schedule, of one claim or of every claim with a label.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::BackupOptions;
pub use crate::common::{Snapshot, Verification};

/// Backups on a schedule: at each firing, one Backup for each claim the source names.
// kube's printcolumn(...) lists repeat `type_ = "..."`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "pvc-backup.io",
    version = "v1alpha1",
    kind = "BackupSchedule",
    namespaced,
    status = "ScheduleStatus",
    category = "pvc-backup",
    doc = "Backups of a claim, or of every claim with a label, on a cron schedule.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Last success",
        type_ = "date",
        json_path = ".status.lastSuccessfulTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.source.selector) || !has(self.template) || !has(self.template.target) \
         || !has(self.template.target.claim)"
    )
        .message(
            "with source.selector each claim is backed up into its own CLAIM-backup: leave \
             template.target.claim out"
        ),
    validation = Rule::new(
        "!has(self.source.selector) || !has(self.template) || !has(self.template.target) \
         || !has(self.template.target.repository) || !has(self.template.target.repository.host)"
    )
        .message(
            "with source.selector each claim's snapshots form their own series NAMESPACE/CLAIM \
             in the repository: leave template.target.repository.host out"
        )
)]
pub struct BackupScheduleSpec {
    /// When to run, in cron form: minute hour day-of-month month day-of-week ("0 2 * * *"), or
    /// @yearly, @monthly, @weekly, @daily, @hourly, or "@every 6h".
    #[x_kube(validation = cron_rule())]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// The time zone the schedule is read in, as an IANA name ("Europe/Berlin"); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// Start each firing up to this many seconds late, chosen at random, so that schedules
    /// that fire at the same minute do not all start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub jitter_seconds: Option<i32>,
    /// No new Backups while true; those running go on.
    #[serde(default)]
    pub suspend: bool,
    /// Succeeded Backups kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_backups_history_limit: Option<i32>,
    /// Failed Backups kept (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failed_backups_history_limit: Option<i32>,
    /// The claim, or the claims, to back up.
    pub source: ScheduleSource,
    /// What each Backup does.
    #[serde(default)]
    pub template: BackupOptions,
}

/// The claims a schedule backs up: one by name, or all those a label selector matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.claim) != has(self.selector)")
        .message("give either claim or selector, one of them")
)]
pub struct ScheduleSource {
    /// The claim's name, in the schedule's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::common::of_this_namespace(),
        validation = crate::common::claim_name()
    )]
    #[schemars(length(min = 1, max = 253))]
    pub claim: Option<String>,
    /// Every claim of the schedule's namespace with these labels, one Backup per claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The rule on a cron expression: five fields, each a value, a range, a step or a list of them
/// within that field's bounds, or one of the @ names; the message says what is allowed.
fn cron_rule() -> kube::core::Rule {
    kube::core::Rule::new(format!("self.matches('{}')", cron_pattern())).message(
        "must be a cron expression: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or \
         jan-dec) day-of-week (0-6 or sun-sat), each *, a value, a range a-b, a step */n or a-b/n, \
         or a list of them (\"0 2 * * *\", \"*/15 * * * 1-5\"); or @yearly, @monthly, @weekly, \
         @daily, @hourly, or @every with hours, minutes and seconds (\"@every 6h\")",
    )
}

/// The regular expression of [`cron_rule`]. It holds no backslash and no quote, so it goes into a
/// CEL string as it is, and reads the same in RE2 (the API server's) and Rust's regex.
pub fn cron_pattern() -> String {
    let field = |value: &str| {
        let item = format!("([*]|{value}(-{value})?)(/[0-9]+)?");
        format!("{item}(,{item})*")
    };
    let minute = field("[0-5]?[0-9]");
    let hour = field("([01]?[0-9]|2[0-3])");
    let dom = field("(0?[1-9]|[12][0-9]|3[01])");
    let month = field("(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))");
    let dow = field("([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))");
    format!(
        "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(h|m|s))+|\
         {minute} +{hour} +({dom}|[?]) +{month} +({dow}|[?]))$"
    )
}

/// What a schedule has done, and each backup claim's snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The schedule's conditions, by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last Backup that succeeded ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Firings that did not happen (the operator was down or the previous Backup still ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_schedules: Option<i64>,
    /// The Backups running now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Each backup claim with its snapshots, as `mover snapshots` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimSnapshots>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One source claim, its backup claim and the snapshots there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSnapshots {
    /// The claim backed up.
    pub claim: String,
    /// Its backup claim (with `template.target.repository`: the repository's URL).
    pub backup_claim: String,
    /// When its last Backup succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Its snapshots after its newest finished Backup, newest first (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Snapshot>,
}
