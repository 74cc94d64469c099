//! The commands that work on a cluster: the flags they share (how to reach the cluster, dry runs
//! and machine output, how the mover pod runs) and how they show progress.

pub mod across;
pub mod backup;
pub mod clone;
pub mod list;
pub mod migrate;
pub mod restore;
pub mod schedule;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use cluster::connect::{ConnectOptions, Kube};
use cluster::objects::mover::JobLimits;
use cluster::run::RunOptions;
use cluster::security::Privilege;
use cluster::workflow::{DryRun, MoverSettings};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::output::{self, Format, progress::Console};

/// How to reach the cluster, as kubectl.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// The kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the pod's service
    /// account inside a cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// The namespace of the claims (default: the context's).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,
}

impl KubeArgs {
    /// Connects to the cluster (the client lives in the runtime this is awaited in).
    pub async fn connect(&self) -> anyhow::Result<Kube> {
        let options = ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        };
        Ok(cluster::connect::connect(&options).await?)
    }

    /// The kubeconfig file given, if any.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.kubeconfig.as_deref()
    }

    /// The namespace for planning without a cluster.
    pub fn offline_namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned())
    }
}

/// `--dry-run` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRunArg {
    /// Read the cluster to plan exactly (claims, the node the mover must run on); change nothing.
    Cluster,
    /// Do not contact the cluster: plan from the command line alone.
    Client,
}

/// `--dry-run` and `-o`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Print the objects that would be created, as YAML (or -o json), and change nothing.
    /// `--dry-run=client` does not contact the cluster at all.
    #[arg(long, value_enum, value_name = "WHERE", num_args = 0..=1, require_equals = true,
          default_missing_value = "cluster")]
    dry_run: Option<DryRunArg>,
    /// Machine output: the result (or the dry run's objects) as yaml or json on stdout.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    output: Option<Format>,
}

impl OutputArgs {
    /// The dry-run mode.
    pub fn dry_run(&self) -> DryRun {
        match self.dry_run {
            None => DryRun::No,
            Some(DryRunArg::Cluster) => DryRun::Cluster,
            Some(DryRunArg::Client) => DryRun::Client,
        }
    }

    /// Prints objects of a dry run (YAML unless -o json).
    pub fn print_objects(&self, objects: &[Value]) -> anyhow::Result<()> {
        output::print_objects(self.output, objects)
    }

    /// Prints a result: as YAML/JSON with -o, else the human text.
    pub fn print_result(&self, value: &Value, human: &str) -> anyhow::Result<()> {
        output::print_result(self.output, value, human)
    }

    /// Whether machine output was asked for.
    pub fn machine(&self) -> bool {
        self.output.is_some()
    }
}

/// Which snapshots a backup keeps (`--keep-*`), shared by `backup` and `schedule`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep one snapshot for each of the last N hours.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep one snapshot for each of the last N days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep one snapshot for each of the last N weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep one snapshot for each of the last N months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
}

impl RetentionArgs {
    /// The retention the workflows pass to the mover.
    pub fn retention(&self) -> contract::Retention {
        contract::Retention {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

/// A restic-format repository as the target (backup, schedule) or the source (restore).
#[derive(Debug, Clone, clap::Args)]
pub struct RepositoryFlags {
    /// A restic-format repository instead of a backup claim: s3:http(s)://HOST:PORT/BUCKET[/PREFIX]
    /// or rest:http(s)://HOST:PORT/PATH, as the mover pod reaches it.
    #[arg(long, value_name = "URL", requires = "repository_secret")]
    repository: Option<String>,
    /// The Secret in the namespace with the repository's RESTIC_PASSWORD (and, for S3,
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), given to the mover as environment.
    #[arg(long, value_name = "NAME", requires = "repository")]
    repository_secret: Option<String>,
}

impl RepositoryFlags {
    /// The repository the workflow uses, if one was given.
    pub fn target(&self) -> Option<cluster::objects::repository::RepositoryTarget> {
        Some(cluster::objects::repository::RepositoryTarget {
            url: self.repository.clone()?,
            secret: self.repository_secret.clone()?,
            ..Default::default()
        })
    }
}

/// How the mover pod runs.
#[derive(Debug, Clone, clap::Args)]
pub struct MoverFlags {
    /// The pvc-backup image the mover pod runs.
    #[arg(long, value_name = "IMAGE", env = "PVC_BACKUP_IMAGE",
          default_value = cluster::names::DEFAULT_IMAGE)]
    image: String,
    /// Run the mover without capabilities as a non-root user (namespaces under Pod Security
    /// "restricted"): files that user cannot read are reported, owners are recorded rather than
    /// applied.
    #[arg(long)]
    unprivileged: bool,
    /// The user an --unprivileged mover runs as. Without it the pod names no user: the image's
    /// user (65532) runs it, or on OpenShift a user from the project's range.
    #[arg(long, value_name = "UID", requires = "unprivileged")]
    run_as_user: Option<i64>,
    /// Resource requests of the mover, e.g. cpu=500m,memory=128Mi.
    #[arg(long, value_name = "LIST")]
    requests: Option<String>,
    /// Resource limits of the mover, e.g. memory=1Gi.
    #[arg(long, value_name = "LIST")]
    limits: Option<String>,
    /// Seconds the mover pod may take to start before the run fails (scheduling, attaching,
    /// pulling the image).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    start_timeout: u64,
    /// Seconds after which the Job is stopped (activeDeadlineSeconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    deadline: i64,
    /// Retries of the mover pod after a failure (backoffLimit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: i32,
    /// Create the Job and return at once, without following it (Ctrl-C then cannot stop it).
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    excludes: crate::mover::ExcludeArgs,
}

impl MoverFlags {
    /// The settings the workflows use.
    pub fn settings(&self) -> anyhow::Result<MoverSettings> {
        let resources = if self.requests.is_some() || self.limits.is_some() {
            Some(ResourceRequirements {
                requests: self
                    .requests
                    .as_deref()
                    .map(|s| resource_list("--requests", s))
                    .transpose()?,
                limits: self
                    .limits
                    .as_deref()
                    .map(|s| resource_list("--limits", s))
                    .transpose()?,
                ..ResourceRequirements::default()
            })
        } else {
            None
        };
        Ok(MoverSettings {
            image: self.image.clone(),
            privilege: if self.unprivileged {
                Privilege::Unprivileged {
                    uid: self.run_as_user,
                }
            } else {
                Privilege::Mover
            },
            resources,
            limits: JobLimits {
                backoff_limit: self.retries,
                active_deadline_seconds: self.deadline,
                ..JobLimits::default()
            },
            run: RunOptions {
                start_timeout: Duration::from_secs(self.start_timeout),
                ..RunOptions::default()
            },
            detach: self.detach,
            excludes: self.excludes()?,
        })
    }
}

impl MoverFlags {
    /// Whether `--detach` was given.
    pub fn detached(&self) -> bool {
        self.detach
    }

    /// The excludes passed to the mover pod: the patterns of the --exclude-from files (read
    /// here, where the command runs) and of --exclude, checked here so that a bad one fails
    /// before anything is made.
    fn excludes(&self) -> anyhow::Result<contract::Excludes> {
        let patterns = self.excludes.patterns()?;
        self.excludes.excludes()?;
        Ok(contract::Excludes {
            patterns,
            caches: self.excludes.exclude_caches,
            delete_excluded: self.excludes.delete_excluded,
        })
    }
}

/// Parses `cpu=500m,memory=128Mi`.
fn resource_list(
    flag: &str,
    s: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Quantity>> {
    let mut map = std::collections::BTreeMap::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            anyhow::bail!("{flag} {s:?}: write NAME=QUANTITY pairs, e.g. cpu=500m,memory=128Mi");
        };
        if !matches!(k, "cpu" | "memory" | "ephemeral-storage") {
            anyhow::bail!("{flag}: unknown resource {k:?}; use cpu, memory or ephemeral-storage");
        }
        if k != "cpu" {
            cluster::quantity::bytes(v).with_context(|| format!("{flag} {k}"))?;
        }
        map.insert(k.to_owned(), Quantity(v.to_owned()));
    }
    Ok(map)
}

/// Runs a cluster command's workflow as `--dry-run` asks: with a dry run prints the objects the
/// workflow would create (from `client` without a cluster, from `plan` after reading it) and
/// returns `None`; otherwise runs `run` with a console for its steps and returns the connection
/// (for the namespace the messages name) with the report.
pub fn plan_or_run<R>(
    kube: &KubeArgs,
    output: &OutputArgs,
    client: impl FnOnce() -> anyhow::Result<Vec<Value>>,
    plan: impl AsyncFnOnce(&Kube) -> anyhow::Result<Vec<Value>>,
    run: impl AsyncFnOnce(&Kube, &mut Console) -> anyhow::Result<R>,
) -> anyhow::Result<Option<(Kube, R)>> {
    let objects = match output.dry_run() {
        DryRun::Client => client()?,
        DryRun::Cluster => with_cluster(kube, plan)?,
        DryRun::No => {
            let mut console = Console::new(output.machine());
            let result = runtime()?.block_on(async {
                let kube = kube.connect().await?;
                let report = run(&kube, &mut console).await?;
                anyhow::Ok((kube, report))
            });
            // The bar goes before any error or result is printed.
            console.finish();
            return result.map(Some);
        }
    };
    output.print_objects(&objects)?;
    Ok(None)
}

/// Connects to the cluster and runs `work` with the connection, in a runtime of its own.
pub fn with_cluster<T>(
    kube: &KubeArgs,
    work: impl AsyncFnOnce(&Kube) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let kube = kube.connect().await?;
        work(&kube).await
    })
}

/// A runtime for the cluster commands and the operator (the rest of the binary is synchronous).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // The operator polls whole workflows (a migration's is deep) on worker threads, whose
        // default 2 MiB of stack a debug build overflows; the main thread has 8 MiB. Stack is
        // reserved, not used, until it is needed.
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
