//! The HTTPS webhook server: axum on axum-server with rustls.
//!
//! Routes: `POST /` and `POST /validate` take an AdmissionReview; `GET /healthz` says the
//! process is alive; `GET /readyz` says it is serving (503 once shutdown has begun); `GET
//! /metrics` gives Prometheus text. A body that is not an AdmissionReview gets HTTP 400, one over
//! the limit 413, one that arrives too slowly 408: none of them is ever allowed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use crate::metrics::{ErrorKind, Metrics, Verdict};
use crate::policy::Policy;
use crate::review::review;
use crate::tls::{Reload, TlsFiles};
use crate::{Error, Result};

/// The default body limit: AdmissionReviews of large pods stay well below it.
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// How a webhook server listens and behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub tls_cert: PathBuf,
    /// PEM private key.
    pub tls_key: PathBuf,
    /// Largest request body accepted, in bytes (larger: HTTP 413).
    pub body_limit: usize,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
    /// Time allowed for a TLS handshake, for request headers, and for a request body.
    pub request_timeout: Duration,
    /// Time given to requests in flight when shutting down.
    pub shutdown_grace: Duration,
}

impl ServerOptions {
    /// Options with the defaults: 3 MiB bodies, certificate check every 10 s, 10 s to send a
    /// request, 20 s of grace at shutdown.
    pub fn new(
        listen: SocketAddr,
        tls_cert: impl Into<PathBuf>,
        tls_key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            listen,
            tls_cert: tls_cert.into(),
            tls_key: tls_key.into(),
            body_limit: DEFAULT_BODY_LIMIT,
            reload_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

#[derive(Debug)]
struct Shared {
    policy: Policy,
    metrics: Metrics,
    body_limit: usize,
    request_timeout: Duration,
    ready: AtomicBool,
}

/// The webhook application: the policy, its metrics and its routes, without a socket.
#[derive(Debug, Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
}

impl Webhook {
    /// A webhook enforcing `policy` with the body limit and timeout of `options`.
    pub fn new(policy: Policy, options: &ServerOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                policy,
                metrics: Metrics::default(),
                body_limit: options.body_limit,
                request_timeout: options.request_timeout,
                ready: AtomicBool::new(true),
            }),
        }
    }

    /// The routes, for serving or for calling in process.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(validate))
            .route("/validate", post(validate))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.shared.clone())
    }

    /// The counters and latency histogram.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

async fn validate(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let (verdict, response) = answer(&shared, request).await;
    shared.metrics.observe(verdict, started.elapsed());
    response
}

/// How much of an oversized HTTP/2 request body is read and thrown away after the 413, as a
/// multiple of the body limit (see [`drain_after_answer`]).
const DRAIN_FACTOR: usize = 4;

/// What reading a request body came to.
enum Read {
    /// The whole body, within the limit.
    Whole(Vec<u8>),
    /// More than the limit: the rest is still to come.
    TooLarge,
}

/// Reads `body` up to `limit` bytes; stops at the first byte over it, leaving the rest unread.
async fn read_limited(body: &mut Body, limit: usize) -> std::result::Result<Read, axum::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Ok(Read::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Read::Whole(out))
}

/// Keeps reading an HTTP/2 request's body after the answer was given, and throws it away.
///
/// A server may answer before the request body is complete, but dropping the body then resets
/// the stream (`RST_STREAM`), and clients still sending (curl 7.88, for one) take the reset
/// for a failure and lose the 413 they were given: the request "closes with no status". So the
/// rest is read, up to `DRAIN_FACTOR` times the limit and within the request timeout; a client
/// that sends more than that, or too slowly, has its stream reset after all.
fn drain_after_answer(mut body: Body, budget: usize, timeout: Duration) {
    tokio::spawn(async move {
        let drained = tokio::time::timeout(timeout, async {
            let mut left = budget;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    if data.len() > left {
                        return;
                    }
                    left -= data.len();
                }
            }
        });
        let _ = drained.await;
    });
}

async fn answer(shared: &Shared, request: Request) -> (Verdict, Response) {
    let error = |kind: ErrorKind, status: StatusCode, message: String| {
        shared.metrics.error(kind);
        tracing::warn!(%status, "{message}");
        (Verdict::Error, plain(status, message))
    };
    let too_large = |body: Body, version: Version| {
        if version == Version::HTTP_2 {
            let budget = shared.body_limit.saturating_mul(DRAIN_FACTOR);
            drain_after_answer(body, budget, shared.request_timeout);
        }
        error(
            ErrorKind::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                shared.body_limit
            ),
        )
    };
    let version = request.version();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body();
    if declared.is_some_and(|len| len > shared.body_limit as u64) {
        return too_large(body, version);
    }
    let read = tokio::time::timeout(
        shared.request_timeout,
        read_limited(&mut body, shared.body_limit),
    )
    .await;
    let body = match read {
        Err(_) => {
            return error(
                ErrorKind::Timeout,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}",
                    shared.request_timeout
                ),
            );
        }
        Ok(Ok(Read::TooLarge)) => return too_large(body, version),
        Ok(Err(err)) => {
            return error(
                ErrorKind::Malformed,
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {err}"),
            );
        }
        Ok(Ok(Read::Whole(bytes))) => bytes,
    };
    match review(&shared.policy, &body) {
        Ok(reviewed) => {
            let verdict = if reviewed.allowed {
                Verdict::Allowed
            } else {
                if let Some(message) = &reviewed.message {
                    tracing::info!("denied: {message}");
                }
                Verdict::Denied
            };
            let mut response = Response::new(Body::from(reviewed.body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (verdict, response)
        }
        Err(err) => error(
            ErrorKind::Malformed,
            StatusCode::BAD_REQUEST,
            err.to_string(),
        ),
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok".to_owned())
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Relaxed) {
        plain(StatusCode::OK, "ready".to_owned())
    } else {
        plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_owned())
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

/// A webhook server that is listening.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    server: JoinHandle<std::io::Result<()>>,
    reloader: JoinHandle<()>,
    webhook: Webhook,
    grace: Duration,
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook being served.
    pub fn webhook(&self) -> &Webhook {
        &self.webhook
    }

    /// Begins a graceful shutdown: `/readyz` turns 503, no new connections are taken, requests
    /// in flight get the configured grace period.
    pub fn shutdown(&self) {
        self.webhook.shared.ready.store(false, Ordering::Relaxed);
        self.handle.graceful_shutdown(Some(self.grace));
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<()> {
        let result = self.server.await;
        self.reloader.abort();
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Error::Serve(err)),
            Err(join) => Err(Error::Serve(std::io::Error::other(join.to_string()))),
        }
    }
}

/// Loads the certificates, binds, and starts serving `webhook` on the current tokio runtime.
pub async fn start(webhook: Webhook, options: &ServerOptions) -> Result<Running> {
    let (mut files, config) = TlsFiles::load(&options.tls_cert, &options.tls_key)?;
    let rustls = RustlsConfig::from_config(config);
    let handle: Handle<SocketAddr> = Handle::new();
    let mut server = axum_server::bind_rustls(options.listen, rustls.clone())
        .map(|acceptor| acceptor.handshake_timeout(options.request_timeout))
        .first_request_timeout(options.request_timeout)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(options.request_timeout);
    let app = webhook.router();
    let task = tokio::spawn(server.serve(app.into_make_service()));
    let Some(addr) = handle.listening().await else {
        let error = match task.await {
            Ok(Err(err)) => err,
            Ok(Ok(())) => std::io::Error::other("the server stopped before listening"),
            Err(join) => std::io::Error::other(join.to_string()),
        };
        return Err(Error::Listen {
            addr: options.listen,
            error,
        });
    };
    let interval = options.reload_interval;
    let reload_webhook = webhook.clone();
    let reloader = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match files.check() {
                Reload::Unchanged => {}
                Reload::Changed(config) => {
                    rustls.reload_from_config(config);
                    reload_webhook.metrics().tls_reloaded();
                    tracing::info!("loaded new TLS certificate");
                }
                Reload::Failed(err) => {
                    reload_webhook.metrics().error(ErrorKind::TlsReload);
                    tracing::warn!("keeping the current TLS certificate: {err}");
                }
            }
        }
    });
    Ok(Running {
        addr,
        handle,
        server: task,
        reloader,
        webhook,
        grace: options.shutdown_grace,
    })
}

/// Serves `policy` until SIGTERM or SIGINT, then shuts down gracefully. Builds its own tokio
/// runtime, so a caller needs none.
pub fn run(policy: Policy, options: ServerOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("webhook")
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(Error::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Runtime)?;
        let webhook = Webhook::new(policy, &options);
        let mut running = start(webhook, &options).await?;
        tracing::info!(addr = %running.local_addr(), "webhook listening");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            result = &mut running.server => {
                running.reloader.abort();
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(Error::Serve(err)),
                    Err(join) => Err(Error::Serve(std::io::Error::other(join.to_string()))),
                };
            }
        }
        running.shutdown();
        running.wait().await
    })
}
