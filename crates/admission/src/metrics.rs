//! The webhook's Prometheus metrics, kept in atomics and written in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The outcome of one request, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered, allowed.
    Allowed,
    /// Answered, denied.
    Denied,
    /// Not answered with an AdmissionReview (400, 408, 413).
    Error,
}

/// Why a request could not be answered, or what else went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body was not an AdmissionReview (HTTP 400).
    Malformed,
    /// The body was over the limit (HTTP 413).
    TooLarge,
    /// The client was too slow sending the body (HTTP 408).
    Timeout,
    /// New certificate files could not be loaded (the old ones stay in use).
    TlsReload,
}

impl ErrorKind {
    const ALL: [ErrorKind; 4] = [
        Self::Malformed,
        Self::TooLarge,
        Self::Timeout,
        Self::TlsReload,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::TlsReload => "tls_reload",
        }
    }
}

/// Counters and the latency histogram of one webhook server.
#[derive(Debug, Default)]
pub struct Metrics {
    verdicts: [AtomicU64; 3],
    errors: [AtomicU64; 4],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    tls_reloads: AtomicU64,
}

impl Metrics {
    /// Counts one request with its verdict and how long it took.
    pub fn observe(&self, verdict: Verdict, elapsed: Duration) {
        self.verdicts[verdict as usize].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one successful certificate reload.
    pub fn tls_reloaded(&self) {
        self.tls_reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests got this verdict so far.
    pub fn verdicts(&self, verdict: Verdict) -> u64 {
        self.verdicts[verdict as usize].load(Ordering::Relaxed)
    }

    /// How many errors of this kind happened so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// How many times new certificates were loaded.
    pub fn tls_reloads(&self) -> u64 {
        self.tls_reloads.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP pvc_backup_admission_requests_total AdmissionReview requests by verdict (error: answered with HTTP 4xx)."
        );
        let _ = writeln!(out, "# TYPE pvc_backup_admission_requests_total counter");
        for (verdict, label) in [
            (Verdict::Allowed, "allowed"),
            (Verdict::Denied, "denied"),
            (Verdict::Error, "error"),
        ] {
            let _ = writeln!(
                out,
                "pvc_backup_admission_requests_total{{verdict=\"{label}\"}} {}",
                self.verdicts(verdict)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pvc_backup_admission_errors_total Errors by kind."
        );
        let _ = writeln!(out, "# TYPE pvc_backup_admission_errors_total counter");
        for kind in ErrorKind::ALL {
            let _ = writeln!(
                out,
                "pvc_backup_admission_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.errors(kind)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pvc_backup_admission_request_duration_seconds Time from request to response, body read included."
        );
        let _ = writeln!(
            out,
            "# TYPE pvc_backup_admission_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "pvc_backup_admission_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "pvc_backup_admission_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "pvc_backup_admission_request_duration_seconds_sum {sum}"
        );
        let _ = writeln!(
            out,
            "pvc_backup_admission_request_duration_seconds_count {count}"
        );
        let _ = writeln!(
            out,
            "# HELP pvc_backup_admission_tls_reloads_total Certificate reloads since start."
        );
        let _ = writeln!(out, "# TYPE pvc_backup_admission_tls_reloads_total counter");
        let _ = writeln!(
            out,
            "pvc_backup_admission_tls_reloads_total {}",
            self.tls_reloads()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe(Verdict::Allowed, Duration::from_micros(50));
        m.observe(Verdict::Denied, Duration::from_millis(3));
        m.observe(Verdict::Denied, Duration::from_secs(5));
        m.error(ErrorKind::TooLarge);
        let text = m.render();
        assert!(
            text.contains("pvc_backup_admission_requests_total{verdict=\"denied\"} 2"),
            "{text}"
        );
        assert!(text.contains("_bucket{le=\"0.0001\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(
            text.contains("pvc_backup_admission_errors_total{kind=\"too_large\"} 1"),
            "{text}"
        );
    }
}
