//! What the kinds share: the claim a run reads, retention, how the mover pod runs, and the
//! status of a run.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use kube::core::Rule;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rule on a name of a claim (or another object) that a resource reads or writes: one of its
/// own namespace, never `namespace/name`.
pub(crate) fn of_this_namespace() -> Rule {
    Rule::new("!self.contains('/')").message(
        "names an object of another namespace: a pvc-backup.io resource reads and writes claims \
         of its own namespace only; create it in that namespace",
    )
}

/// The rule on a claim's name: a DNS subdomain, as the API server requires of a claim.
pub(crate) fn claim_name() -> Rule {
    Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message(
        "must be a claim's name: lower-case letters, digits, '-' and '.', starting and ending \
         with a letter or digit",
    )
}

/// The rule on a folder inside a claim: relative to the claim's root, and never out of it.
pub(crate) fn relative_folder() -> Rule {
    Rule::new("!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')")
        .message("must be a folder inside the claim, relative to its root (a/b), without '..'")
}

/// The claim a run reads, in the resource's own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct ClaimSource {
    /// The claim's name. A resource reads and writes claims of its own namespace only.
    #[x_kube(validation = of_this_namespace(), validation = claim_name())]
    #[schemars(length(min = 1, max = 253))]
    pub claim: String,
}

/// A restic-format repository: where a Backup puts its snapshots instead of a backup claim, or
/// where a Restore reads one. The mover pod reaches it over the network and gets its password
/// and keys from a Secret of the resource's namespace by `secretKeyRef`; the operator itself
/// never reads that Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// Its URL as the mover pod reaches it: `s3:http(s)://HOST:PORT/BUCKET[/PREFIX]` or
    /// `rest:http(s)://HOST:PORT/PATH`.
    #[x_kube(validation = Rule::new("self.matches('^(s3|rest):https?://[^/]+')").message(
        "must be s3:http(s)://HOST:PORT/BUCKET[/PREFIX] or rest:http(s)://HOST:PORT/PATH: the \
         mover pod has no folder of its own to keep a repository in"
    ))]
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The Secret of this namespace that holds `RESTIC_PASSWORD` and, for `s3:`,
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[x_kube(validation = of_this_namespace())]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The snapshot series (restic's host): a Backup's snapshots go into it, a Restore's
    /// `latest` is its newest. Default `NAMESPACE/CLAIM` of the claim backed up (for a Restore:
    /// of the claim restored into); give the original's to restore into another claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// A Backup's: create the repository when it does not exist yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// Which snapshots a backup keeps, as `--keep-*` on the command line: a snapshot is kept when
/// any rule keeps it; with no rule, all are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Keep {
    /// Keep the N newest snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub last: Option<i32>,
    /// Keep one snapshot for each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub hourly: Option<i32>,
    /// Keep one snapshot for each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub daily: Option<i32>,
    /// Keep one snapshot for each of the last N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weekly: Option<i32>,
    /// Keep one snapshot for each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub monthly: Option<i32>,
}

impl Keep {
    /// The retention the mover applies. The schema keeps every count at 0 or above; a negative
    /// one read from elsewhere counts as 0.
    pub fn retention(&self) -> contract::Retention {
        let n = |v: Option<i32>| v.map(|v| u32::try_from(v).unwrap_or(0));
        contract::Retention {
            last: n(self.last),
            hourly: n(self.hourly),
            daily: n(self.daily),
            weekly: n(self.weekly),
            monthly: n(self.monthly),
        }
    }
}

/// How the mover pod runs, as the command line's mover flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.runAsUser) || self.unprivileged").message(
    "runAsUser needs unprivileged: true (a mover with its capabilities runs as root)"
))]
pub struct Mover {
    /// Run without capabilities as a non-root user (namespaces under Pod Security
    /// "restricted"): files that user cannot read are reported, owners are recorded rather
    /// than applied.
    #[serde(default)]
    pub unprivileged: bool,
    /// The user an unprivileged mover runs as (default: the image's, 65532, or on OpenShift one
    /// from the project's range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// The mover container's resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Seconds the mover pod may take to start before the run fails (scheduling, attaching,
    /// pulling the image); default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub start_timeout_seconds: Option<i32>,
    /// Seconds after which the Job is stopped (its activeDeadlineSeconds); default 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of the mover pod after a failure (the Job's backoffLimit); default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backoff_limit: Option<i32>,
    /// Entries left out, as gitignore-style patterns relative to the copied folder (`*.tmp`,
    /// `/cache`, `logs/`, `!keep.tmp`); the last matching pattern wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted, not started yet.
    Pending,
    /// Its Job runs.
    Running,
    /// Done: every entry was copied.
    Succeeded,
    /// Done, but some entries could not be copied (listed in the message and the mover's log).
    PartiallyFailed,
    /// Stopped: nothing usable was made, or the workflow could not finish.
    Failed,
}

/// What a run read and wrote, from the mover's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Entries seen in the source.
    pub entries: i64,
    /// Bytes of the source's files.
    pub bytes: i64,
    /// Bytes written to the target (what changed).
    pub bytes_copied: i64,
    /// Entries that could not be copied.
    pub failed: i64,
}

/// The status of one run (a Backup, a Restore, a Clone or a Migration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Where the run stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The run's conditions, by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it ended, either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How long it took, as "1h2m3s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// What it read and wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// The snapshot it made or restored, as `mover snapshots` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The name of its Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The last lines of the mover's messages when the run did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A Backup's: the snapshots in its backup claim after its run (retention applied),
    /// newest first, at most 100; what `pvc-backup snapshots` lists, without mounting the claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Snapshot>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One snapshot in a backup claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Its id (`mover snapshots`, `restore --snapshot`).
    pub id: String,
    /// When it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Bytes of its files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// When it was last verified, and whether that found it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<Verification>,
}

/// A verification of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// When it ran.
    pub time: Time,
    /// Whether every file matched its recorded hash.
    pub ok: bool,
}

/// A workload the run stops (and for a migration, repoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct WorkloadRef {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name, in the resource's namespace.
    #[x_kube(validation = of_this_namespace())]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds of workload pvc-backup can scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// OpenShift's apps.openshift.io/v1 DeploymentConfig.
    DeploymentConfig,
}
