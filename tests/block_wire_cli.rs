//! `pvc-backup mover block` over the wire as a user runs it: `mover block DST --listen` on one
//! side, `mover block SRC --to` on the other, over loopback TCP. What arrives is checked with
//! `cmp` and `b3sum`, sparseness with the kernel's `stat`, and what crossed the network with a
//! byte-counting TCP relay of the test's own, never with the mover's counters.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use listening::Listening;
use testkit::skip::need_root_and;

mod listening;

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CHUNK: u64 = 256 << 10;
/// 100 chunks: one chunk is 1% of the volume.
const SIZE: u64 = 100 * CHUNK;

/// Makes a key pair in `dir`.
fn keys(dir: &Path) {
    let o = bin().args(["mover", "keys"]).arg(dir).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// Deterministic bytes that do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A sparse image of [`SIZE`]: chunks 0..60 hold data, 60..100 are a hole.
fn source_image(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    f.write_all_at(&noise(60 * CHUNK as usize, 1), 0).unwrap();
    f.sync_all().unwrap();
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

/// `cmp` says both are byte for byte the same (over `len` bytes, or all of both).
fn same(a: &Path, b: &Path, len: Option<u64>) -> bool {
    let mut c = Command::new("cmp");
    if let Some(n) = len {
        c.arg("-n").arg(n.to_string());
    }
    let o = c.arg(a).arg(b).output().expect("cmp runs (diffutils)");
    if !o.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    }
    o.status.success()
}

/// The BLAKE3 hash of a whole file by `b3sum`, when it is installed.
fn b3sum(path: &Path) -> Option<String> {
    let o = Command::new("b3sum")
        .arg("--no-names")
        .arg(path)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Bytes the kernel allocated for a file (`stat -c '%b %B'`).
fn allocated(path: &Path) -> u64 {
    let o = Command::new("stat")
        .args(["-c", "%b %B"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let mut it = text.split_whitespace().map(|s| s.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// Starts `pvc-backup mover block ARGS --listen 127.0.0.1:0 --progress json`.
fn listen(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Listening {
    let mut cmd = bin();
    cmd.arg("mover").arg("block");
    for a in args {
        cmd.arg(a);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--progress", "json"]);
    Listening::start(cmd)
}

/// Waits for a listening side to exit: its exit code, its summary (the last stdout line) and
/// its stderr.
fn finish(l: Listening, limit: Duration) -> (i32, serde_json::Value, String) {
    let (code, out, err) = l.wait(limit);
    let last = out.lines().last().unwrap_or("null");
    (code, serde_json::from_str(last).unwrap_or_default(), err)
}

/// A TCP relay of the test's own between a sender and `target`: it counts every byte the
/// sender sends through it (TLS records included), and can cut the first connection once
/// `cut_after` bytes went through; a connection made after that is relayed whole.
struct Relay {
    addr: String,
    up: Arc<AtomicU64>,
}

impl Relay {
    fn start(target: &str, cut_after: Option<u64>) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicU64::new(0));
        let (target, counter) = (target.to_string(), up.clone());
        std::thread::spawn(move || {
            let mut cut_after = cut_after;
            while let Ok((client, _)) = l.accept() {
                let server = TcpStream::connect(&target).unwrap();
                Self::relay(client, server, counter.clone(), cut_after.take());
            }
        });
        Relay { addr, up }
    }

    /// Copies bytes both ways until either side closes, or `cut_after` more bytes went from
    /// the client; counts what the client sends in `counter`.
    fn relay(
        client: TcpStream,
        server: TcpStream,
        counter: Arc<AtomicU64>,
        cut_after: Option<u64>,
    ) {
        let cut_after = cut_after.map(|c| c + counter.load(Ordering::SeqCst));
        let pipe = |mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Some(c) = &count {
                        let total = c.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                        if cut_after.is_some_and(|cut| total >= cut) {
                            break;
                        }
                    }
                }
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
            })
        };
        let a = pipe(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            Some(counter),
        );
        let b = pipe(server, client, None);
        let _ = (a.join(), b.join());
    }

    /// Bytes the sender sent through the relay so far.
    fn sent(&self) -> u64 {
        self.up.load(Ordering::SeqCst)
    }
}

fn send_to(src: &Path, addr: &str, k: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args(["mover", "block"])
        .arg(src)
        .args(["--to", addr, "--keys"])
        .arg(k)
        .args(["--progress", "json"])
        .args(extra)
        .output()
        .unwrap()
}

/// The sender's summary: its last stdout line.
fn summary(o: &std::process::Output) -> serde_json::Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("null")).unwrap_or_default()
}

/// One copy through a counting relay: both exit codes, both summaries, and the bytes the
/// sender sent over the network.
fn copy(
    src: &Path,
    dst: &Path,
    k: &Path,
    extra: &[&str],
) -> (i32, i32, serde_json::Value, serde_json::Value, u64) {
    let r = listen(&[&dst, &"--keys", &k]);
    let relay = Relay::start(&r.addr, None);
    let s = send_to(src, &relay.addr, k, extra);
    let (rc, rsum, rerr) = finish(r, Duration::from_secs(120));
    assert_eq!(
        rc,
        code(&s),
        "both sides end alike:\n{rerr}\n{}",
        stderr(&s)
    );
    (code(&s), rc, summary(&s), rsum, relay.sent())
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("keys");
    keys(&k);
    (dir, k)
}

#[test]
fn only_the_chunks_that_differ_cross_the_network() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);

    // First copy: into a missing image, which is created sparse.
    let (sc, _, s, r, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&src, &dst, None));
    if let (Some(a), Some(b)) = (b3sum(&src), b3sum(&dst)) {
        assert_eq!(a, b);
    }
    assert!(
        allocated(&dst) <= allocated(&src) + CHUNK,
        "the hole stays a hole"
    );
    assert!(wire >= 60 * CHUNK, "all data crossed: {wire}");
    assert!(wire < 60 * CHUNK + (1 << 20), "and not the hole: {wire}");
    assert_eq!(r["chunks_written"], 60, "{r}");
    assert_eq!(
        s["chunks_written"], 60,
        "the sender prints the receiver's summary: {s}"
    );
    assert_eq!(s["sent"]["chunks"], 60, "{s}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("dst.img.pvcb-manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["chunks"].as_array().unwrap().len(), 100);

    // Unchanged: no chunk data crosses, only the protocol's few frames.
    let (sc, _, s, r, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(wire < 64 << 10, "{wire} bytes sent for an unchanged volume");
    assert_eq!(r["chunks_written"], 0, "{r}");
    assert_eq!(r["chunks_equal"], 100, "{r}");

    // 1% changed: one chunk's 4 KiB block; that chunk crosses, one block of it is written.
    write_at(&src, 30 * CHUNK + 8192, &noise(4096, 2));
    let (sc, _, s, r, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&src, &dst, None));
    assert!((CHUNK..CHUNK + (64 << 10)).contains(&wire), "{wire}");
    assert_eq!(
        (r["chunks_written"].as_u64(), r["bytes_written"].as_u64()),
        (Some(1), Some(4096)),
        "{r}"
    );

    // A chunk that became zeros crosses as a message, not as bytes, and becomes a hole.
    let before = allocated(&dst);
    write_at(&src, 10 * CHUNK, &vec![0; CHUNK as usize]);
    let (sc, _, s, r, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K", "--verify"]);
    assert_eq!(sc, 0, "{s}");
    assert!(wire < 64 << 10, "{wire}");
    assert_eq!(s["sent"]["zero_chunks"], 1, "{s}");
    assert_eq!(r["chunks_zeroed"], 1, "{r}");
    assert_eq!(r["verify"]["mismatches"], 0, "{r}");
    assert!(same(&src, &dst, None));
    assert!(allocated(&dst) + CHUNK <= before, "a hole was punched");
}

#[test]
fn compressed_chunks_take_less_on_the_wire_and_arrive_the_same() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(8 * CHUNK).unwrap();
    f.write_all_at(&b"compressible text ".repeat(60_000), 0)
        .unwrap();
    let (sc, _, s, _, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K", "--compress"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&src, &dst, None));
    assert!(wire < 200 << 10, "{wire}");
}

#[test]
fn the_sender_may_listen_and_the_receiver_connect() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    let s = listen(&[&src, &"--send", &"--keys", &k]);
    let r = bin()
        .args(["mover", "block"])
        .arg(&dst)
        .args(["--from", &s.addr, "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    let (sc, _, serr) = finish(s, Duration::from_secs(60));
    assert_eq!((sc, code(&r)), (0, 0), "{serr}\n{}", stderr(&r));
    assert!(same(&src, &dst, None));
}

#[test]
fn options_on_the_wrong_side_and_two_paths_with_a_peer_are_usage_errors() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = bin();
        c.args(["mover", "block"]);
        for a in args {
            c.arg(a);
        }
        c.arg("--keys").arg(&k).output().unwrap()
    };
    for o in [
        run(&[&src, &dst, &"--to", &"127.0.0.1:1"]),
        run(&[&dst, &"--listen", &"127.0.0.1:0", &"--verify"]),
        run(&[&dst, &"--from", &"127.0.0.1:1", &"--chunk-size", &"1M"]),
        run(&[&src, &"--to", &"127.0.0.1:1", &"--verify-only"]),
        run(&[&src, &"--to", &"127.0.0.1:1", &"--listen", &"127.0.0.1:0"]),
    ] {
        assert_eq!(code(&o), 2, "{}", stderr(&o));
    }
    assert!(!dst.exists());
}

/// A key folder with this side's key and certificate and the other side's certificate from
/// another pair.
fn mixed(dir: &Path, own: &Path, peer: &Path) -> PathBuf {
    let out = dir.join("mixed");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["sender.key", "sender.crt"] {
        std::fs::copy(own.join(f), out.join(f)).unwrap();
    }
    std::fs::copy(peer.join("receiver.crt"), out.join("receiver.crt")).unwrap();
    out
}

#[test]
fn a_peer_with_another_certificate_is_refused_and_nothing_is_written() {
    let (dir, k) = setup();
    let other = dir.path().join("other");
    keys(&other);
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    let r = listen(&[&dst, &"--keys", &k]);
    // A sender whose certificate the receiver was not given.
    let s = send_to(&src, &r.addr, &other, &[]);
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    // A sender that was given another receiver's certificate.
    let s = send_to(&src, &r.addr, &mixed(dir.path(), &k, &other), &[]);
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    assert!(stderr(&s).contains("handshake"), "{}", stderr(&s));
    assert!(!dst.exists());
    // The receiver still waits, and serves the right sender.
    let s = send_to(&src, &r.addr, &k, &[]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let (rc, _, rerr) = finish(r, Duration::from_secs(30));
    assert_eq!(rc, 0, "{rerr}");
    assert!(rerr.contains("refused"), "{rerr}");
    assert!(same(&src, &dst, None));
}

#[test]
fn a_hostile_sender_is_refused_and_nothing_is_written_outside_the_target() {
    use wire::message::Message;
    let (dir, k) = setup();
    let dst = dir.path().join("dst.img");
    std::fs::write(dir.path().join("other"), b"keep").unwrap();
    let r = listen(&[&dst, &"--keys", &k]);
    let id = wire::keys::load(&k, wire::keys::Side::Sender).unwrap();
    let t = wire::tls::Timeouts {
        handshake: Duration::from_secs(10),
        idle: Duration::from_secs(30),
    };
    let config = wire::tls::client_config(&id).unwrap();
    let (stream, _) = wire::net::connect(&r.addr, config, t, wire::tls::SERVER_NAME).unwrap();
    let mut conn = wire::frame::Conn::new(stream, t.idle);
    conn.send(&Message::Hello {
        version: wire::PROTOCOL_VERSION,
        side: wire::volume::SIDE_BLOCK_SENDER,
        checksum: false,
    })
    .unwrap();
    conn.send(&Message::BlockBegin {
        size: 4 * CHUNK,
        chunk_size: CHUNK,
        source_file: true,
        compare: true,
        verify: false,
    })
    .unwrap();
    conn.flush().unwrap();
    assert!(matches!(conn.recv().unwrap(), Message::Hello { .. }));
    assert!(matches!(conn.recv().unwrap(), Message::BlockHashes { .. }));
    // A chunk past the end of the volume: its data would land past DST's end.
    conn.send(&Message::BlockChunk { index: 1 << 40 }).unwrap();
    conn.flush().unwrap();
    let answer = conn.recv();
    let (rc, _, rerr) = finish(r, Duration::from_secs(30));
    assert_eq!(rc, 1, "{rerr}");
    assert!(rerr.contains("past the end"), "{rerr}");
    assert!(
        matches!(answer, Ok(Message::Abort { code: 1, .. })),
        "{answer:?}"
    );
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 4 * CHUNK);
    assert_eq!(allocated(&dst), 0, "nothing was written into DST either");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dst.img", "keys", "other"]);
    assert_eq!(std::fs::read(dir.path().join("other")).unwrap(), b"keep");
}

#[test]
fn a_cut_connection_is_resumed_by_a_rerun_that_sends_only_the_rest() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    // The relay cuts the connection after about half the data.
    let r = listen(&[&dst, &"--keys", &k]);
    let relay = Relay::start(&r.addr, Some(30 * CHUNK));
    let s = send_to(&src, &relay.addr, &k, &["--chunk-size", "256K"]);
    let (rc, _, rerr) = finish(r, Duration::from_secs(60));
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    assert_eq!(rc, 1, "{rerr}");
    assert!(!dir.path().join("dst.img.pvcb-manifest.json").exists());
    // Run again: the chunks that arrived are equal now and do not cross again.
    let (sc, _, s, r, wire) = copy(&src, &dst, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&src, &dst, None));
    let arrived = r["chunks_equal"].as_u64().unwrap() - 40;
    assert!(arrived >= 20, "{r}");
    assert!(wire <= (60 - arrived) * CHUNK + (64 << 10), "{wire}");
}

/// With `--retry-for` on both sides, a connection cut in the middle of the copy is made again
/// by the sender and taken by the same receiver; the second attempt compares again and sends
/// only the chunks that had not arrived.
#[test]
fn a_cut_connection_is_bridged_by_retry_for_sending_only_the_rest() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    let retry = ["--retry-for", "1m", "--chunk-size", "256K"];
    let r = listen(&[&dst, &"--keys", &k, &retry[0], &retry[1]]);
    let relay = Relay::start(&r.addr, Some(30 * CHUNK));
    let s = send_to(&src, &relay.addr, &k, &retry);
    let (rc, rsum, rerr) = finish(r, Duration::from_secs(120));
    assert_eq!((code(&s), rc), (0, 0), "{}\n{rerr}", stderr(&s));
    assert!(
        stderr(&s).contains("trying again"),
        "the sender did not connect again:\n{}",
        stderr(&s)
    );
    assert!(same(&src, &dst, None));
    // The receiver's summary is the second attempt's: what arrived before the cut was equal.
    let arrived = rsum["chunks_equal"].as_u64().unwrap() - 40;
    assert!(arrived >= 20, "{rsum}");
    let wire = relay.sent();
    assert!(
        wire <= 30 * CHUNK + (60 - arrived) * CHUNK + (128 << 10),
        "{wire} bytes crossed for 60 chunks of data, {arrived} of them before the cut"
    );
}

#[test]
fn a_killed_sender_is_resumed_by_a_rerun() {
    let (dir, k) = setup();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    source_image(&src);
    let r = listen(&[&dst, &"--keys", &k]);
    let relay = Relay::start(&r.addr, None);
    let mut s = bin()
        .args(["mover", "block"])
        .arg(&src)
        .args(["--to", &relay.addr, "--keys"])
        .arg(&k)
        .args(["--chunk-size", "256K"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while relay.sent() < 10 * CHUNK && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill().unwrap();
    let _ = s.wait();
    let (rc, _, rerr) = finish(r, Duration::from_secs(60));
    assert_ne!(rc, 0, "{rerr}");
    let (sc, _, s, _, _) = copy(&src, &dst, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&src, &dst, None));
}

/// A loop device over a new file of `size` bytes (filled from `data` at 0), detached when
/// dropped.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn over(file: &Path, size: u64, data: &[u8]) -> Loop {
        let f = std::fs::File::create(file).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(data, 0).unwrap();
        f.sync_all().unwrap();
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Loop {
            dev: PathBuf::from(String::from_utf8(o.stdout).unwrap().trim()),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn loop_devices_as_source_and_destination() {
    if !need_root_and("loop_devices_as_source_and_destination", &["losetup"]) {
        return;
    }
    let (dir, k) = setup();
    let src = Loop::over(&dir.path().join("a"), SIZE, &noise(40 * CHUNK as usize, 3));
    let dst = Loop::over(
        &dir.path().join("b"),
        SIZE + CHUNK,
        &noise(SIZE as usize, 4),
    );
    let (sc, _, s, r, _) = copy(
        &src.dev,
        &dst.dev,
        &k,
        &["--chunk-size", "256K", "--verify"],
    );
    assert_eq!(sc, 0, "{s}");
    assert_eq!(r["destination_kind"], "device", "{r}");
    assert_eq!(r["source_kind"], "device", "{r}");
    assert!(same(&src.dev, &dst.dev, Some(SIZE)));
    // No manifest beside a device.
    assert!(r["manifest"].is_null(), "{r}");
    // A re-run sends no chunk data.
    let (sc, _, _, r, wire) = copy(&src.dev, &dst.dev, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0);
    assert_eq!(r["chunks_written"], 0, "{r}");
    assert!(wire < 64 << 10, "{wire}");
    // An image file as the source, onto the device.
    let img = dir.path().join("img");
    source_image(&img);
    let (sc, _, s, _, _) = copy(&img, &dst.dev, &k, &["--chunk-size", "256K"]);
    assert_eq!(sc, 0, "{s}");
    assert!(same(&img, &dst.dev, Some(SIZE)));
}

#[test]
fn a_device_too_small_is_refused_on_both_sides_with_both_sizes_and_nothing_written() {
    if !need_root_and("a_device_too_small_is_refused", &["losetup"]) {
        return;
    }
    let (dir, k) = setup();
    let src = dir.path().join("src.img");
    source_image(&src);
    let old = noise(SIZE as usize / 2, 5);
    let dst = Loop::over(&dir.path().join("small"), SIZE / 2, &old);
    let r = listen(&[&dst.dev, &"--keys", &k]);
    let s = send_to(&src, &r.addr, &k, &[]);
    let (rc, _, rerr) = finish(r, Duration::from_secs(60));
    assert_eq!((code(&s), rc), (1, 1), "{}\n{rerr}", stderr(&s));
    for text in [stderr(&s), rerr] {
        assert!(text.contains(&SIZE.to_string()), "{text}");
        assert!(text.contains(&(SIZE / 2).to_string()), "{text}");
    }
    std::fs::write(dir.path().join("old"), &old).unwrap();
    assert!(same(&dst.dev, &dir.path().join("old"), None));
}
