//! The operator's metrics, in the Prometheus text format on `/metrics`, and its health on
//! `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use resources::common::Phase;

/// The labels of a finished run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    kind: String,
    namespace: String,
    result: String,
}

/// The labels of a kind of run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The labels of a schedule.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    namespace: String,
    schedule: String,
}

/// The labels of a claim.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    namespace: String,
    claim: String,
}

fn duration_histogram() -> Histogram {
    // 1 s to 18 h, each bucket four times the one before.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

/// What the operator counts, and whether it is ready.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    last_success: Family<ClaimLabels, Gauge>,
    missed: Family<ScheduleLabels, Counter>,
    overdue: Family<ClaimLabels, Gauge>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics with nothing counted yet, not ready.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pvc_backup");
        let runs = Family::<RunLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let last_success = Family::<ClaimLabels, Gauge>::default();
        registry.register(
            "runs",
            "Runs that ended, by kind, namespace and result (the phase they ended in)",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "How long runs took, from start to end, by kind",
            durations.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the last Backup of each claim succeeded (Unix time)",
            last_success.clone(),
        );
        let missed = Family::<ScheduleLabels, Counter>::default();
        registry.register(
            "missed_schedules",
            "Firings of a BackupSchedule that made no Backup (the operator was down, or the \
             claim's Backup of the firing before still ran), by namespace and schedule",
            missed.clone(),
        );
        let overdue = Family::<ClaimLabels, Gauge>::default();
        registry.register(
            "claim_overdue",
            "1 for a claim of a BackupSchedule with no Backup succeeded since the firing before \
             the last (its last success is older than the schedule allows), else 0",
            overdue.clone(),
        );
        Metrics {
            registry,
            runs,
            durations,
            last_success,
            missed,
            overdue,
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a run of `kind` that ended in `phase` after `seconds`; a Backup that succeeded
    /// sets its claim's last success to `now` (Unix seconds).
    pub fn run_ended(
        &self,
        kind: &str,
        namespace: &str,
        claim: &str,
        phase: Phase,
        seconds: f64,
        now: i64,
    ) {
        self.runs
            .get_or_create(&RunLabels {
                kind: kind.to_owned(),
                namespace: namespace.to_owned(),
                result: format!("{phase:?}"),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(seconds);
        if kind == "Backup" && phase == Phase::Succeeded {
            self.last_success
                .get_or_create(&ClaimLabels {
                    namespace: namespace.to_owned(),
                    claim: claim.to_owned(),
                })
                .set(now);
        }
    }

    /// Counts `n` firings of a schedule that made no Backup.
    pub fn missed(&self, namespace: &str, schedule: &str, n: u64) {
        self.missed
            .get_or_create(&ScheduleLabels {
                namespace: namespace.to_owned(),
                schedule: schedule.to_owned(),
            })
            .inc_by(n);
    }

    /// Says whether a scheduled claim is overdue.
    pub fn set_overdue(&self, namespace: &str, claim: &str, overdue: bool) {
        self.overdue
            .get_or_create(&ClaimLabels {
                namespace: namespace.to_owned(),
                claim: claim.to_owned(),
            })
            .set(i64::from(overdue));
    }

    /// Marks the operator ready: it reached the API server.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    }
    let router = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_page))
        .with_state(metrics);
    axum::serve(listener, router).await
}

async fn metrics_page(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.text(),
    )
}

async fn ready_page(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the API server yet",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_durations_and_last_successes_are_counted_by_their_labels() {
        let m = Metrics::new();
        m.run_ended(
            "Backup",
            "shop",
            "data",
            Phase::Succeeded,
            3.0,
            1_765_000_000,
        );
        m.run_ended("Backup", "shop", "data", Phase::Failed, 70.0, 1_765_000_100);
        m.run_ended(
            "Backup",
            "shop",
            "logs",
            Phase::Succeeded,
            2.0,
            1_765_000_200,
        );
        m.missed("shop", "nightly", 2);
        m.missed("shop", "nightly", 1);
        m.set_overdue("shop", "data", true);
        m.set_overdue("shop", "logs", true);
        m.set_overdue("shop", "logs", false);
        let text = m.text();
        for line in [
            "pvc_backup_runs_total{kind=\"Backup\",namespace=\"shop\",result=\"Succeeded\"} 2",
            "pvc_backup_runs_total{kind=\"Backup\",namespace=\"shop\",result=\"Failed\"} 1",
            // A failure does not move the last success.
            "pvc_backup_last_success_timestamp_seconds{namespace=\"shop\",claim=\"data\"} 1765000000",
            "pvc_backup_last_success_timestamp_seconds{namespace=\"shop\",claim=\"logs\"} 1765000200",
            "pvc_backup_run_duration_seconds_count{kind=\"Backup\"} 3",
            "pvc_backup_run_duration_seconds_sum{kind=\"Backup\"} 75.0",
            "pvc_backup_run_duration_seconds_bucket{le=\"4.0\",kind=\"Backup\"} 2",
            "pvc_backup_run_duration_seconds_bucket{le=\"64.0\",kind=\"Backup\"} 2",
            "pvc_backup_run_duration_seconds_bucket{le=\"256.0\",kind=\"Backup\"} 3",
            "pvc_backup_missed_schedules_total{namespace=\"shop\",schedule=\"nightly\"} 3",
            "pvc_backup_claim_overdue{namespace=\"shop\",claim=\"data\"} 1",
            "pvc_backup_claim_overdue{namespace=\"shop\",claim=\"logs\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in:\n{text}");
        }
    }
}
