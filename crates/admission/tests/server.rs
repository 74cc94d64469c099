//! The real server over TLS on 127.0.0.1, with certificates made for the test.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::server::{Running, ServerOptions, Webhook, start};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::util::{all_cases, own_policy};

/// A certificate for 127.0.0.1 and localhost, as PEM and DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn make_cert() -> TestCert {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    TestCert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        der: certified.cert.der().clone(),
    }
}

/// Writes the pair the way a Kubernetes secret volume updates: new files, then a rename.
fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str) {
    for (name, content) in [("tls.crt", cert_pem), ("tls.key", key_pem)] {
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

struct Fixture {
    _dir: TempDir,
    dir: std::path::PathBuf,
    running: Running,
    trusted: Vec<CertificateDer<'static>>,
}

async fn serve(tweak: impl FnOnce(&mut ServerOptions)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert();
    write_pair(dir.path(), &cert.cert_pem, &cert.key_pem);
    let mut options = ServerOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    tweak(&mut options);
    let webhook = Webhook::new(own_policy(), &options);
    let running = start(webhook, &options).await.unwrap();
    Fixture {
        dir: dir.path().to_owned(),
        _dir: dir,
        running,
        trusted: vec![cert.der],
    }
}

async fn connect(
    addr: SocketAddr,
    trusted: &[CertificateDer<'static>],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// Sends one request on a new connection; returns the status, the body and the server's
/// certificate.
async fn send(
    fixture: &Fixture,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>, CertificateDer<'static>) {
    send_to(
        fixture.running.local_addr(),
        &fixture.trusted,
        method,
        path,
        body,
    )
    .await
}

async fn send_to(
    addr: SocketAddr,
    trusted: &[CertificateDer<'static>],
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>, CertificateDer<'static>) {
    let stream = connect(addr, trusted).await.unwrap();
    let peer = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes, peer)
}

#[tokio::test]
async fn every_case_over_tls() {
    let fixture = serve(|_| {}).await;
    let mut answered = 0;
    for (i, case) in all_cases().into_iter().enumerate() {
        if !case.own_policy && case.allowed != own_policy_verdict(&case.review) {
            // The fixtures assume their own policy; the server here runs the richer one, which
            // includes it, so the verdicts are the same.
            panic!("{} changes verdict under the richer policy", case.name);
        }
        let path = if i % 2 == 0 { "/validate" } else { "/" };
        let (status, body, _) = send(
            &fixture,
            Method::POST,
            path,
            serde_json::to_vec(&case.review).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", case.name);
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            response["apiVersion"], case.review["apiVersion"],
            "{}",
            case.name
        );
        assert_eq!(response["kind"], "AdmissionReview");
        assert_eq!(
            response["response"]["uid"], case.review["request"]["uid"],
            "{}",
            case.name
        );
        assert_eq!(
            response["response"]["allowed"], case.allowed,
            "{}",
            case.name
        );
        if !case.allowed {
            assert_eq!(response["response"]["status"]["code"], 403);
            assert_eq!(response["response"]["status"]["reason"], "Forbidden");
            let message = response["response"]["status"]["message"].as_str().unwrap();
            for word in &case.must_name {
                assert!(
                    message.contains(word.as_str()),
                    "{}: {word} not in {message}",
                    case.name
                );
            }
        }
        answered += 1;
    }
    let metrics = fixture.running.webhook().metrics();
    use admission::metrics::Verdict;
    assert_eq!(
        metrics.verdicts(Verdict::Allowed) + metrics.verdicts(Verdict::Denied),
        answered
    );
    let (status, text, _) = send(&fixture, Method::GET, "/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!(
            "pvc_backup_admission_requests_total{{verdict=\"denied\"}} {}",
            metrics.verdicts(Verdict::Denied)
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "pvc_backup_admission_request_duration_seconds_count {answered}"
    )));
}

fn own_policy_verdict(review: &Value) -> bool {
    admission::review::review(&own_policy(), &serde_json::to_vec(review).unwrap())
        .unwrap()
        .allowed
}

#[tokio::test]
async fn health_readiness_and_shutdown() {
    let fixture = serve(|o| o.shutdown_grace = Duration::from_secs(5)).await;
    let (status, body, _) = send(&fixture, Method::GET, "/healthz", Vec::new()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"ok\n"[..]));
    let (status, _, _) = send(&fixture, Method::GET, "/readyz", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&fixture, Method::GET, "/validate", Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let addr = fixture.running.local_addr();
    fixture.running.shutdown();
    fixture.running.wait().await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed after shutdown"
    );
}

#[tokio::test]
async fn malformed_bodies_get_400_and_are_counted() {
    let fixture = serve(|_| {}).await;
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        vec![0xff, 0xfe, 0x00],
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{}}"#.to_vec(),
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ];
    for body in &bodies {
        let (status, text, _) = send(&fixture, Method::POST, "/validate", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert!(!text.is_empty(), "a 400 says why");
    }
    use admission::metrics::{ErrorKind, Verdict};
    let metrics = fixture.running.webhook().metrics();
    assert_eq!(metrics.errors(ErrorKind::Malformed), bodies.len() as u64);
    assert_eq!(metrics.verdicts(Verdict::Error), bodies.len() as u64);
    assert_eq!(metrics.verdicts(Verdict::Allowed), 0);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let fixture = serve(|o| o.body_limit = 64 * 1024).await;
    let mut review = crate::util::review(
        "v1",
        "",
        "Pod",
        "pods",
        "CREATE",
        crate::util::pod(serde_json::json!([crate::util::mover("m")])),
    );
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"big": "x".repeat(100 * 1024)});
    let (status, _, _) = send(
        &fixture,
        Method::POST,
        "/validate",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is still answered.
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"big": "x".repeat(32 * 1024)});
    let (status, _, _) = send(
        &fixture,
        Method::POST,
        "/validate",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A chunked body declares no length: it is cut off at the limit all the same.
    let mut stream = connect(fixture.running.local_addr(), &fixture.trusted)
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
    for _ in 0..8 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let _ = stream.flush().await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    use admission::metrics::ErrorKind;
    assert_eq!(
        fixture
            .running
            .webhook()
            .metrics()
            .errors(ErrorKind::TooLarge),
        2
    );
}

/// Reads until the server closes the connection or answers; bounded so a hung server fails the
/// test instead of hanging it.
async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept a stalled connection open for a minute"),
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let fixture = serve(|o| o.request_timeout = Duration::from_secs(3)).await;
    // Headers that never end.
    let mut stream = connect(fixture.running.local_addr(), &fixture.trusted)
        .await
        .unwrap();
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let _ = read_until_closed(&mut stream).await;
    // A body that stops halfway.
    let mut stream = connect(fixture.running.local_addr(), &fixture.trusted)
        .await
        .unwrap();
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000\r\n\r\n{\"apiVersion\":")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    use admission::metrics::ErrorKind;
    assert_eq!(
        fixture
            .running
            .webhook()
            .metrics()
            .errors(ErrorKind::Timeout),
        1
    );
    // A silent client that never starts TLS is dropped too.
    let mut tcp = TcpStream::connect(fixture.running.local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test]
async fn certificates_are_reloaded_without_restart() {
    let fixture = serve(|o| o.reload_interval = Duration::from_millis(100)).await;
    let first = fixture.trusted[0].clone();
    let (_, _, served) = send(&fixture, Method::GET, "/healthz", Vec::new()).await;
    assert_eq!(served, first);

    // A half-written rotation (certificate without its key) is refused and the old pair stays.
    let second = make_cert();
    std::fs::write(fixture.dir.join("tls.crt"), &second.cert_pem).unwrap();
    let metrics = fixture.running.webhook().metrics();
    use admission::metrics::ErrorKind;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.errors(ErrorKind::TlsReload) == 0 {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, served) = send(&fixture, Method::GET, "/healthz", Vec::new()).await;
    assert_eq!((status, served), (StatusCode::OK, first.clone()));

    // The complete pair is picked up.
    write_pair(&fixture.dir, &second.cert_pem, &second.key_pem);
    let trusted = vec![first, second.der.clone()];
    let addr = fixture.running.local_addr();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, served) =
            send_to(addr, &trusted, Method::GET, "/healthz", Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        if served == second.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fixture.running.webhook().metrics().tls_reloads() >= 1);
}

#[tokio::test]
async fn bad_certificate_files_fail_at_start_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let options = ServerOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    let err = start(Webhook::new(own_policy(), &options), &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");
    let missing = ServerOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("nope.crt"),
        dir.path().join("tls.key"),
    );
    let err = start(Webhook::new(own_policy(), &missing), &missing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope.crt"), "{err}");
}

/// Set in the child process of [`sigterm_stops_the_server_gracefully`], which then serves until
/// a signal comes.
const CHILD: &str = "ADMISSION_TEST_SIGTERM_CHILD";

#[test]
fn sigterm_stops_the_server_gracefully() {
    if let Ok(spec) = std::env::var(CHILD) {
        let parts: Vec<&str> = spec.split('|').collect();
        let options = ServerOptions::new(parts[0].parse().unwrap(), parts[1], parts[2]);
        admission::server::run(own_policy(), options).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert();
    write_pair(dir.path(), &cert.cert_pem, &cert.key_pem);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = format!(
        "{addr}|{}|{}",
        dir.path().join("tls.crt").display(),
        dir.path().join("tls.key").display()
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server::sigterm_stops_the_server_gracefully",
            "--test-threads=1",
        ])
        .env(CHILD, spec)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let trusted = vec![cert.der];
    let deadline = Instant::now() + Duration::from_secs(60);
    runtime.block_on(async {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the server exited before serving: {status}");
            }
            if connect(addr, &trusted).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the server never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, _, _) = send_to(addr, &trusted, Method::GET, "/healthz", Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "the server exited with {status} after SIGTERM"
    );
}

/// A request body sent in `count` chunks of `size` bytes with no length declared.
struct Chunks {
    left: usize,
    size: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        let chunk = Bytes::from(vec![b'x'; self.size]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// Sends one request over HTTP/2 (ALPN `h2`, as the API server speaks to webhooks); returns the
/// status, or the error that ended the stream without one.
async fn send_h2<B>(fixture: &Fixture, body: B) -> Result<StatusCode, hyper::Error>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let tls = connect_h2(fixture).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(Method::POST)
        .uri("https://127.0.0.1/validate")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .expect("no answer within 30 s")?;
    let status = response.status();
    // The answer is complete: its body is read to its end, not cut off by a reset stream.
    let body = response.into_body().collect().await?.to_bytes();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("larger than the limit"), "{text}");
    }
    Ok(status)
}

#[tokio::test]
async fn oversized_bodies_get_413_over_http2_too() {
    let fixture = serve(|o| o.body_limit = 64 * 1024).await;
    // A declared length over the limit, and more than the stream's flow-control window: the
    // client is still sending when the answer comes.
    let big = Full::new(Bytes::from(vec![b'x'; 8 << 20]));
    let status = send_h2(&fixture, big).await;
    assert_eq!(
        status.as_ref().ok(),
        Some(&StatusCode::PAYLOAD_TOO_LARGE),
        "{status:?}"
    );
    // No length declared: cut off at the limit all the same.
    let status = send_h2(
        &fixture,
        Chunks {
            left: 512,
            size: 16 * 1024,
        },
    )
    .await;
    assert_eq!(
        status.as_ref().ok(),
        Some(&StatusCode::PAYLOAD_TOO_LARGE),
        "{status:?}"
    );
    // Under the limit, the same connection kind gets an answer (400: not an AdmissionReview).
    let small = Full::new(Bytes::from(vec![b'x'; 1024]));
    let status = send_h2(&fixture, small).await;
    assert_eq!(
        status.as_ref().ok(),
        Some(&StatusCode::BAD_REQUEST),
        "{status:?}"
    );
    use admission::metrics::ErrorKind;
    let metrics = fixture.running.webhook().metrics();
    assert_eq!(metrics.errors(ErrorKind::TooLarge), 2);
}

/// A TLS connection that offers only HTTP/2 (ALPN `h2`), as the API server's client does.
async fn connect_h2(fixture: &Fixture) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in &fixture.trusted {
        roots.add(cert.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(fixture.running.local_addr())
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the server did not agree to HTTP/2"
    );
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_an_oversized_body_over_http2_finishes_and_gets_413() {
    // More than the limit plus the server's flow-control windows: the client can send it all
    // only if the server goes on reading after its answer instead of resetting the stream.
    const LIMIT: usize = 1 << 20;
    const TOTAL: usize = 3 << 20;
    let fixture = serve(|o| o.body_limit = LIMIT).await;
    let (client, conn) = h2::client::handshake(connect_h2(&fixture).await)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for declared in [true, false] {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("https://127.0.0.1/validate")
            .header("content-type", "application/json");
        if declared {
            request = request.header("content-length", TOTAL.to_string());
        }
        let (response, mut stream) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        let upload = tokio::spawn(async move {
            let mut sent = 0;
            while sent < TOTAL {
                stream.reserve_capacity((TOTAL - sent).min(64 * 1024));
                let n = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(n)) => n.min(TOTAL - sent),
                    Some(Err(e)) => return Err(format!("reset after {sent} bytes: {e}")),
                    None => return Err(format!("stream closed after {sent} bytes")),
                };
                let last = sent + n == TOTAL;
                stream
                    .send_data(Bytes::from(vec![b'x'; n]), last)
                    .map_err(|e| format!("reset after {sent} bytes: {e}"))?;
                sent += n;
            }
            Ok(sent)
        });
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("larger than the limit"), "{text}");
        assert_eq!(
            upload.await.unwrap(),
            Ok(TOTAL),
            "declared length: {declared}"
        );
        client = client.ready().await.unwrap();
    }
    let metrics = fixture.running.webhook().metrics();
    assert_eq!(metrics.errors(admission::metrics::ErrorKind::TooLarge), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_gets_the_413() {
    if !testkit::skip::need_tools("curl_over_http2_gets_the_413", &["curl"]) {
        return;
    }
    let fixture = serve(|o| o.body_limit = 1 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, std::fs::read(fixture.dir.join("tls.crt")).unwrap()).unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b'x'; 3 << 20]).unwrap();
    let url = format!(
        "https://127.0.0.1:{}/validate",
        fixture.running.local_addr().port()
    );
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-sS",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    ])
    .arg("--cacert")
    .arg(&ca)
    .args(["-H", "content-type: application/json", "--data-binary"])
    .arg(format!("@{}", big.display()))
    .arg(&url);
    // The server runs on this runtime: wait for curl off its threads.
    let out = tokio::task::spawn_blocking(move || curl.output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said,
        "2 413",
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
