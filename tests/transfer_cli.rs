//! `pvc-backup mover send` and `mover receive` as a user runs them: the received target is what
//! `mover sync` makes, only what differs is sent, both directions of connection work, and what
//! is not the pinned peer is refused.

mod listening;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use listening::Listening;
use testkit::oracle::assert_mirror;
use testkit::skip::{ROOT_SQUASHED, is_root, need_root_and, skip};
use testkit::tree::{Tree, many_owners};

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Makes a key pair in `dir`.
fn keys(dir: &Path) {
    let o = bin().args(["mover", "keys"]).arg(dir).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

fn receive_listening(dst: &Path, keys: &Path, extra: &[&str]) -> Listening {
    let mut cmd = bin();
    cmd.args(["mover", "receive"])
        .arg(dst)
        .args(["--listen", "127.0.0.1:0", "--keys"])
        .arg(keys)
        .args(extra);
    Listening::start(cmd)
}

fn send_to(src: &Path, addr: &str, keys: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args(["mover", "send"])
        .arg(src)
        .args(["--to", addr, "--keys"])
        .arg(keys)
        .args(extra)
        .output()
        .unwrap()
}

/// One transfer, receiver listening: both exit codes, and the sender's JSON line.
fn transfer(src: &Path, dst: &Path, keys: &Path) -> (i32, i32, serde_json::Value) {
    let r = receive_listening(dst, keys, &[]);
    let s = send_to(src, &r.addr, keys, &["--json"]);
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    let line = String::from_utf8_lossy(&s.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let json = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "no JSON from the sender (exit {}):\n{}\nreceiver:\n{rerr}",
            code(&s),
            stderr(&s)
        )
    });
    (code(&s), rc, json)
}

fn sent_files(j: &serde_json::Value) -> u64 {
    j["sent"]["files"].as_u64().unwrap()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("keys");
    keys(&k);
    (dir, k)
}

#[test]
fn a_rich_tree_received_is_what_sync_makes_and_a_second_run_sends_nothing() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let sockets = testkit::tree::rich_tree(&src, is_root());
    let synced = dir.path().join("synced");
    let o = bin()
        .args(["mover", "sync"])
        .arg(&src.root)
        .arg(&synced)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dst = dir.path().join("dst");
    let t0 = Instant::now();
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    eprintln!("first transfer took {:?}", t0.elapsed());
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_mirror(&synced, &dst, &[]);
    assert_mirror(&src.root, &dst, &sockets);
    assert!(dst.join(".pvc-backup/last-sync.json").exists());
    // The 64 MiB sparse file went as its few bytes of data, and stays sparse.
    let sparse = std::fs::metadata(dst.join("sparse.img")).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    assert!(j["sent"]["bytes"].as_u64().unwrap() < 1 << 20, "{j}");

    // Nothing changed: no content goes over the wire.
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 0, "{j}");
    assert_eq!(j["summary"]["entries"]["copied"], 0, "{j}");
    assert_eq!(j["summary"]["bytes"]["copied"], 0, "{j}");

    // One file changed: only it is sent.
    src.file(b"dir/nested/deep.txt", b"deeper now");
    src.remove(b"empty");
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 1, "{j}");
    assert_eq!(j["sent"]["bytes"], 10, "{j}");
    assert_eq!(j["summary"]["entries"]["deleted"], 1, "{j}");
    assert_mirror(&src.root, &dst, &sockets);
}

/// A source of more files than one batch of the listing (`wire::send::BATCH_FILES`, 65,536)
/// is listed with a pause, each batch followed by the content of its own files: the target is
/// still exactly the source, hard links whose names fall in different batches are joined, and
/// a re-run sends only the files that changed, wherever they are.
#[test]
fn more_files_than_one_batch_arrive_whole_with_hard_links_across_batches() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    // 20 folders of 3,500 files: 70,000 files, a batch and a part of the next; the folders
    // from d19 on are in the second batch, d18 straddles the pause.
    assert!(
        (wire::send::BATCH_FILES + 3_500..2 * wire::send::BATCH_FILES).contains(&70_000)
            && 19 * 3_500 > wire::send::BATCH_FILES,
        "the batch size changed: make this tree span two batches again, d19 in the second"
    );
    for d in 0..20 {
        for f in 0..3500 {
            let rel = format!("d{d:02}/f{f:04}");
            src.file(rel.as_bytes(), format!("{d} {f}\n").as_bytes());
        }
    }
    // Hard links: a first name in the first batch with extra names in the first and the
    // second; and a group wholly within the second batch.
    src.file(b"d00/linked", b"one content, three names");
    src.hardlink(b"d00/linked", b"d10/linked-too");
    src.hardlink(b"d00/linked", b"d19/linked-last");
    src.file(b"d19/pair", b"two names");
    src.hardlink(b"d19/pair", b"d19/pair-too");
    // A file large enough to be sent against its older version on the re-run.
    src.file(b"d15/large.bin", &noise(6 << 20));
    let dst = dir.path().join("dst");

    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 70_003, "{j}");
    assert_eq!(j["summary"]["entries"]["linked"], 3, "{j}");
    assert_mirror(&src.root, &dst, &[]);

    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 0, "{j}");
    assert_eq!(j["summary"]["entries"]["copied"], 0, "{j}");

    // One change in each batch, one file gone, one name more for the first group.
    src.file(b"d00/f0007", b"changed in the first batch");
    src.file(b"d19/f2500", b"changed in the second batch");
    src.remove(b"d12/f0001");
    src.hardlink(b"d00/linked", b"d19/linked-new");
    let mut large = noise(6 << 20);
    large[2 << 20] ^= 0xff;
    src.file(b"d15/large.bin", &large);
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 3, "{j}");
    assert!(j["sent"]["bytes"].as_u64().unwrap() < 2 << 20, "{j}");
    assert_eq!(j["summary"]["entries"]["deleted"], 1, "{j}");
    assert_eq!(j["summary"]["entries"]["linked"], 1, "{j}");
    assert_mirror(&src.root, &dst, &[]);
}

/// The calls `calls` (comma-separated) that a receiver run under strace made while serving one
/// transfer from `src` into `dst`, in the order they were made; and the received target.
fn traced_receiver(calls: &str, src: &Path, dst: &Path, k: &Path, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace");
    let mut cmd = Command::new("strace");
    cmd.args(["-ff", "-qq", "-ttt", "-e", &format!("trace={calls}"), "-o"])
        .arg(&log)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "receive"])
        .arg(dst)
        .args(["--listen", "127.0.0.1:0", "--keys"])
        .arg(k)
        .args(extra);
    let r = Listening::start(cmd);
    let s = send_to(src, &r.addr, k, &[]);
    let (rc, _, err) = r.wait(Duration::from_secs(60));
    assert_eq!((code(&s), rc), (0, 0), "{}\n{err}", stderr(&s));
    // One log per thread (-ff): no call is split in two lines. Failed calls are left out.
    let mut timed: Vec<(f64, String)> = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| {
            let (time, call) = l.split_once(' ')?;
            (!call.contains(" = -1 ")).then(|| (time.parse().unwrap(), call.to_owned()))
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    timed.into_iter().map(|(_, c)| c).collect()
}

/// One transfer into a new snapshot of the backup folder `dst` (`mover receive --snapshot`,
/// with `extra`): both exit codes, the sender's JSON line and the receiver's report.
fn snapshot_transfer(
    src: &Path,
    dst: &Path,
    keys: &Path,
    extra: &[&str],
) -> (i32, i32, serde_json::Value, serde_json::Value) {
    let mut args = vec!["--snapshot", "--json"];
    args.extend_from_slice(extra);
    let r = receive_listening(dst, keys, &args);
    let s = send_to(src, &r.addr, keys, &["--json"]);
    let (rc, out, rerr) = r.wait(Duration::from_secs(60));
    let last = |text: &str| {
        serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or(serde_json::Value::Null)
    };
    let (sj, rj) = (last(&String::from_utf8_lossy(&s.stdout)), last(&out));
    assert!(
        !sj.is_null() && !rj.is_null(),
        "sender (exit {}):\n{}\nreceiver (exit {rc}):\n{out}\n{rerr}",
        code(&s),
        stderr(&s)
    );
    (code(&s), rc, sj, rj)
}

fn ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(p).unwrap().ino()
}

/// `mover receive --snapshot` keeps versions as `mover backup` does: each transfer is a new
/// complete snapshot, what did not change is a hard link to the previous snapshot and is not
/// sent, a changed large file is sent by its changed chunk against its previous version, the
/// earlier snapshots stay as they were, `mover verify` proves each against its manifest, and
/// retention removes the oldest.
#[test]
fn received_snapshots_link_what_did_not_change_and_send_only_what_did() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let sockets = testkit::tree::rich_tree(&src, is_root());
    let mut big = noise(8 << 20);
    src.file(b"big.bin", &big);
    let dst = dir.path().join("store");
    let (sc, rc, j, r1) = snapshot_transfer(&src.root, &dst, &k, &[]);
    assert_eq!((sc, rc), (0, 0), "{j}\n{r1}");
    let first = r1["snapshot"].as_str().unwrap().to_string();
    assert!(r1["previous"].is_null(), "{r1}");
    let snap1 = dst.join("snapshots").join(&first);
    assert_eq!(
        std::fs::read_link(dst.join("latest")).unwrap(),
        Path::new("snapshots").join(&first)
    );
    assert_mirror(&src.root, &snap1, &sockets);
    // What the first snapshot holds, to compare it with after later runs.
    let before = dir.path().join("before");
    let o = Command::new("cp")
        .args(["-a", "--"])
        .arg(&src.root)
        .arg(&before)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Ten bytes of the large file and one small file change.
    big[(5 << 20) + 1..(5 << 20) + 11].copy_from_slice(b"0123456789");
    src.file(b"big.bin", &big);
    src.file(b"dir/nested/deep.txt", b"deeper now");
    let (sc, rc, j, r2) = snapshot_transfer(&src.root, &dst, &k, &[]);
    assert_eq!((sc, rc), (0, 0), "{j}\n{r2}");
    let second = r2["snapshot"].as_str().unwrap().to_string();
    assert_eq!(r2["previous"], first.as_str(), "{r2}");
    assert_eq!(sent_files(&j), 2, "{j}");
    // The changed MiB of the large file (against its version in the first snapshot), and
    // the ten bytes of the small one.
    assert_eq!(j["sent"]["bytes"], (1 << 20) + 10, "{j}");
    let snap2 = dst.join("snapshots").join(&second);
    assert_mirror(&src.root, &snap2, &sockets);
    assert_mirror(&before, &snap1, &sockets);
    // The kernel's inode numbers: unchanged files are the first snapshot's, changed ones new.
    assert_eq!(ino(&snap1.join("plain")), ino(&snap2.join("plain")));
    assert_ne!(ino(&snap1.join("big.bin")), ino(&snap2.join("big.bin")));
    assert_ne!(
        ino(&snap1.join("dir/nested/deep.txt")),
        ino(&snap2.join("dir/nested/deep.txt"))
    );
    let o = bin().args(["mover", "verify"]).arg(&dst).output().unwrap();
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );

    // Nothing changed, and two snapshots are kept: nothing is sent, the first goes.
    let (sc, rc, j, r3) = snapshot_transfer(&src.root, &dst, &k, &["--keep-last", "2"]);
    assert_eq!((sc, rc), (0, 0), "{j}\n{r3}");
    assert_eq!(sent_files(&j), 0, "{j}");
    assert_eq!(r3["removed"], serde_json::json!([first]), "{r3}");
    assert!(!snap1.exists());
    let third = dst.join("snapshots").join(r3["snapshot"].as_str().unwrap());
    assert_mirror(&src.root, &third, &sockets);
    assert_eq!(ino(&snap2.join("big.bin")), ino(&third.join("big.bin")));
    let o = bin()
        .args(["mover", "snapshots"])
        .arg(&dst)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // --keep-* without --snapshot is refused before anything is made.
    let o = bin()
        .args(["mover", "receive"])
        .arg(dir.path().join("mirror"))
        .args(["--listen", "127.0.0.1:0", "--keep-last", "2", "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("add --snapshot"), "{}", stderr(&o));
    assert!(!dir.path().join("mirror").exists());
}

#[test]
fn with_fsync_the_receiver_flushes_its_filesystem_after_the_last_entry_is_placed() {
    if !testkit::skip::need_tools(
        "with_fsync_the_receiver_flushes_its_filesystem_after_the_last_entry_is_placed",
        &["strace"],
    ) {
        return;
    }
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    for i in 0..20 {
        src.file(format!("many/{i}").as_bytes(), b"x");
    }
    let calls = "syncfs,rename,renameat,renameat2";
    let plain = traced_receiver(calls, &src.root, &dir.path().join("plain"), &k, &[]);
    assert!(
        !plain.iter().any(|c| c.starts_with("syncfs(")),
        "{plain:#?}"
    );
    let flushed = dir.path().join("flushed");
    let with = traced_receiver(calls, &src.root, &flushed, &k, &["--fsync"]);
    assert_mirror(&src.root, &flushed, &[]);
    // The last entry placed under its own name (the summary's file aside) comes before the
    // flush, and the summary after it.
    let placed = with
        .iter()
        .rposition(|c| c.starts_with("rename") && !c.contains("last-sync"))
        .unwrap_or_else(|| panic!("no rename in {with:#?}"));
    let synced = with
        .iter()
        .position(|c| c.starts_with("syncfs("))
        .unwrap_or_else(|| panic!("no syncfs in {with:#?}"));
    assert!(placed < synced, "{with:#?}");
    if let Some(summary) = with
        .iter()
        .position(|c| c.starts_with("rename") && c.contains("last-sync"))
    {
        assert!(synced < summary, "{with:#?}");
    }
}

#[test]
fn excludes_leave_out_and_keep_exactly_what_sync_leaves_out_and_keeps() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"keep.txt", b"kept")
        .file(b"a.tmp", b"new tmp")
        .file(b"logs/x.log", b"left out by path")
        .file(b"logs/y.log", b"sent")
        .file(
            b"cache/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .file(b"cache/blob", b"a cache");
    let flags = [
        "--exclude=*.tmp",
        "--exclude=/logs/x.log",
        "--exclude-caches",
    ];
    for delete in [false, true] {
        let mut args: Vec<&str> = flags.to_vec();
        if delete {
            args.push("--delete-excluded");
        }
        let tag = if delete { "delete" } else { "keep" };
        let synced = dir.path().join(format!("synced-{tag}"));
        let received = dir.path().join(format!("received-{tag}"));
        // Both targets hold the same older copy: excluded names, and one the source lacks.
        let old = Tree::new(synced.clone());
        old.file(b"a.tmp", b"old tmp")
            .file(b"logs/x.log", b"old log")
            .file(b"cache/old", b"old cache")
            .file(b"gone", b"not in the source");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&synced)
            .arg(&received)
            .output()
            .unwrap();
        assert_eq!(code(&cp), 0, "{}", stderr(&cp));
        let o = bin()
            .args(["mover", "sync", "-q"])
            .args(&args)
            .arg(&src.root)
            .arg(&synced)
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let r = receive_listening(&received, &k, &[]);
        let mut send_args = vec!["--json"];
        send_args.extend(&args);
        let s = send_to(&src.root, &r.addr, &k, &send_args);
        let (rc, _, rerr) = r.wait(Duration::from_secs(60));
        assert_eq!((code(&s), rc), (0, 0), "{}\n{rerr}", stderr(&s));
        // rsync sees the received target as the synced one, entry by entry.
        assert_mirror(&synced, &received, &[]);
        let read = |p: &str| std::fs::read(received.join(p)).ok();
        assert_eq!(read("logs/y.log").as_deref(), Some(&b"sent"[..]));
        assert_eq!(read("gone"), None);
        if delete {
            assert_eq!((read("a.tmp"), read("logs/x.log")), (None, None), "{tag}");
            assert!(!received.join("cache").exists(), "{tag}");
        } else {
            assert_eq!(read("a.tmp").as_deref(), Some(&b"old tmp"[..]));
            assert_eq!(read("logs/x.log").as_deref(), Some(&b"old log"[..]));
            assert_eq!(read("cache/old").as_deref(), Some(&b"old cache"[..]));
            assert_eq!(read("cache/blob"), None);
        }
        let line = String::from_utf8_lossy(&s.stdout)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["summary"]["entries"]["excluded"], 3, "{j}");
    }
    // A pattern that is no glob is refused before anything listens or connects.
    let o = send_to(
        &src.root,
        "127.0.0.1:9",
        &k,
        &["--exclude=a[z-a]", "--retry-for", "1s"],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--exclude \"a[z-a]\" is not a valid pattern"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn checksum_finds_a_change_that_keeps_size_and_mtime() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"f", b"aaaa").mtime(b"f", 1_600_000_000, 0);
    let dst = dir.path().join("dst");
    assert_eq!(transfer(&src.root, &dst, &k).0, 0);
    src.file(b"f", b"bbbb").mtime(b"f", 1_600_000_000, 0);
    // Without --checksum, size and mtime decide, as for sync.
    let (_, _, j) = transfer(&src.root, &dst, &k);
    assert_eq!(sent_files(&j), 0, "{j}");
    let r = receive_listening(&dst, &k, &["--checksum"]);
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(30)).0, 0);
    assert_eq!(std::fs::read(dst.join("f")).unwrap(), b"bbbb");
}

#[test]
fn compressed_content_takes_less_on_the_wire_and_arrives_the_same() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let text: Vec<u8> = b"a line of text that repeats\n".repeat(100_000);
    src.file(b"text", &text)
        .sparse(b"holes", 8 << 20, &[(4 << 20, b"x")]);
    let dst = dir.path().join("dst");
    let r = receive_listening(&dst, &k, &[]);
    let s = send_to(&src.root, &r.addr, &k, &["--compress", "--json"]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(30)).0, 0);
    let line = String::from_utf8_lossy(&s.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    let (bytes, wire) = (
        j["sent"]["bytes"].as_u64().unwrap(),
        j["sent"]["wire_bytes"].as_u64().unwrap(),
    );
    // The sparse file's data goes as the filesystem's block that holds it, not its holes.
    let text_len = text.len() as u64;
    assert!(bytes > text_len && bytes <= text_len + 64 * 1024, "{j}");
    assert!(wire * 20 < bytes, "{wire} of {bytes} bytes on the wire");
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn a_large_file_changed_in_place_sends_only_its_changed_chunk() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    // 8 MiB that do not compress or repeat: each 1 MiB chunk is its own.
    let mut data = Vec::with_capacity(8 << 20);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while data.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    src.file(b"big.bin", &data).file(b"small", b"s");
    let dst = dir.path().join("dst");
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(j["sent"]["bytes"], (8 << 20) + 1, "{j}");
    // Ten bytes change inside the fourth MiB, and the file grows by a few bytes.
    data[(3 << 20) + 5..(3 << 20) + 15].copy_from_slice(b"0123456789");
    data.extend_from_slice(b"tail");
    src.file(b"big.bin", &data);
    let (sc, rc, j) = transfer(&src.root, &dst, &k);
    assert_eq!((sc, rc), (0, 0), "{j}");
    assert_eq!(sent_files(&j), 1, "{j}");
    // The changed chunk, and the new last chunk (the old one was shorter).
    assert_eq!(j["sent"]["bytes"], (1 << 20) + 4, "{j}");
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn the_sender_may_listen_and_the_receiver_connect() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1").file(b"d/b", b"2").symlink(b"l", b"a");
    let dst = dir.path().join("dst");
    let mut cmd = bin();
    cmd.args(["mover", "send"])
        .arg(&src.root)
        .args(["--listen", "127.0.0.1:0", "--keys"])
        .arg(&k);
    let s = Listening::start(cmd);
    let o = bin()
        .args(["mover", "receive"])
        .arg(&dst)
        .args(["--from", &s.addr, "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s.wait(Duration::from_secs(30)).0, 0);
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn subdir_sends_one_folder_and_an_escaping_one_is_refused() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"top", b"1")
        .file(b"app/data/x", b"2")
        .file(b"app/y", b"3");
    let dst = dir.path().join("dst");
    let r = receive_listening(&dst, &k, &[]);
    let s = send_to(&src.root, &r.addr, &k, &["--subdir", "app"]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(30)).0, 0);
    assert_mirror(&src.path(b"app"), &dst, &[]);
    let r = receive_listening(&dst, &k, &[]);
    let s = send_to(&src.root, &r.addr, &k, &["--subdir", "../src"]);
    assert_eq!(code(&s), 2, "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(30)).0, 2);
    assert_mirror(&src.path(b"app"), &dst, &[]);
}

#[test]
fn an_empty_source_is_refused_on_both_sides_and_the_target_kept() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let dst = Tree::new(dir.path().join("dst"));
    dst.file(b"keep", b"backup");
    let r = receive_listening(&dst.root, &k, &[]);
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 254, "{}", stderr(&s));
    assert!(stderr(&s).contains("empty"), "{}", stderr(&s));
    let (rc, _, rerr) = r.wait(Duration::from_secs(30));
    assert_eq!(rc, 254, "{rerr}");
    assert_eq!(std::fs::read(dst.path(b"keep")).unwrap(), b"backup");
}

#[test]
fn a_locked_target_is_refused_on_both_sides() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1");
    let dst = dir.path().join("dst");
    std::fs::create_dir_all(dst.join(".pvc-backup")).unwrap();
    let lock = std::fs::File::create(dst.join(".pvc-backup/lock")).unwrap();
    // SAFETY: flock on an open file.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let r = receive_listening(&dst, &k, &[]);
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(30)).0, 1);
    assert!(!dst.join("a").exists());
}

/// A keys folder with `side`'s files from `own` and the peer's certificate from `peer`.
fn mixed(dir: &Path, side: &str, own: &Path, peer: &Path) -> PathBuf {
    let other = if side == "sender" {
        "receiver"
    } else {
        "sender"
    };
    let out = dir.join(format!("mixed-{side}"));
    std::fs::create_dir_all(&out).unwrap();
    for f in [format!("{side}.key"), format!("{side}.crt")] {
        std::fs::copy(own.join(&f), out.join(&f)).unwrap();
    }
    std::fs::copy(
        peer.join(format!("{other}.crt")),
        out.join(format!("{other}.crt")),
    )
    .unwrap();
    out
}

#[test]
fn a_wrong_certificate_is_refused_on_both_sides() {
    let (dir, k) = setup();
    let other = dir.path().join("other-keys");
    keys(&other);
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1");
    let dst = dir.path().join("dst");
    let r = receive_listening(&dst, &k, &[]);
    // The receiver presents a certificate the sender was not given.
    let s = send_to(
        &src.root,
        &r.addr,
        &mixed(dir.path(), "sender", &k, &other),
        &[],
    );
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    assert!(stderr(&s).contains("handshake"), "{}", stderr(&s));
    // The sender presents a certificate the receiver was not given.
    let s = send_to(&src.root, &r.addr, &other, &[]);
    assert_eq!(code(&s), 1, "{}", stderr(&s));
    assert!(!dst.join("a").exists());
    // The receiver is still waiting, and serves the right sender.
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let (rc, _, rerr) = r.wait(Duration::from_secs(30));
    assert_eq!(rc, 0, "{rerr}");
    assert!(rerr.contains("refused"), "{rerr}");
    assert_mirror(&src.root, &dst, &[]);
}

/// Whether the server closed `c` within `limit` (a read returns end of file or an error).
fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn plaintext_and_stalled_clients_are_dropped_while_a_good_sender_is_served() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1");
    let dst = dir.path().join("dst");
    let r = receive_listening(&dst, &k, &["--keep-listening", "--handshake-timeout", "3"]);
    // A plaintext client: refused at its first bytes.
    let mut plain = TcpStream::connect(&r.addr).unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_within(&mut plain, Duration::from_secs(2)));
    // One that connects and says nothing, and one that sends a byte every half second.
    let mut silent = TcpStream::connect(&r.addr).unwrap();
    let mut dribbler = TcpStream::connect(&r.addr).unwrap();
    let mut d2 = dribbler.try_clone().unwrap();
    let dribbling = std::thread::spawn(move || {
        // A TLS record header, one byte at a time: never a complete hello.
        for b in [0x16u8, 3, 1, 0x40, 0].iter().cycle().take(40) {
            if d2.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // Meanwhile a correct sender is served at once.
    let t0 = Instant::now();
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Both stalled connections are dropped when the handshake time is up.
    let t1 = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(6)));
    assert!(closed_within(&mut dribbler, Duration::from_secs(6)));
    assert!(t1.elapsed() < Duration::from_secs(6));
    dribbling.join().unwrap();
    // And it keeps serving.
    src.file(b"b", b"2");
    let s = send_to(&src.root, &r.addr, &k, &[]);
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    assert_mirror(&src.root, &dst, &[]);
    let err = r.stderr();
    assert!(err.contains("did not complete in time"), "{err}");
}

/// Two network namespaces joined by a veth pair, removed when dropped.
struct Netns {
    names: [String; 2],
}

impl Netns {
    fn ip(args: &[&str]) -> Result<(), String> {
        let o = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    fn new(tag: &str) -> Result<Netns, String> {
        let id = std::process::id() % 100_000;
        let n = Netns {
            names: [format!("pvcb-{tag}-{id}-a"), format!("pvcb-{tag}-{id}-b")],
        };
        let [a, b] = &n.names;
        // Tests run at once in one process: the pair's names differ by tag too.
        let t = &tag[..1];
        let (va, vb) = (format!("pva{id}{t}"), format!("pvb{id}{t}"));
        Self::ip(&["netns", "add", a])?;
        Self::ip(&["netns", "add", b])?;
        Self::ip(&[
            "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
        ])?;
        Self::ip(&["-n", a, "addr", "add", "10.231.7.1/24", "dev", &va])?;
        Self::ip(&["-n", b, "addr", "add", "10.231.7.2/24", "dev", &vb])?;
        for (ns, dev) in [(a, &va), (b, &vb)] {
            Self::ip(&["-n", ns, "link", "set", dev, "up"])?;
            Self::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }

    /// The name of the veth end in namespace `i`.
    fn dev(&self, i: usize) -> String {
        let id = std::process::id() % 100_000;
        let t = &self.names[i].split('-').nth(1).unwrap()[..1];
        format!("{}{id}{t}", ["pva", "pvb"][i])
    }

    fn exec(&self, i: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]])
            .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"));
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Self::ip(&["netns", "delete", n]);
        }
    }
}

#[test]
fn a_transfer_between_two_network_namespaces_over_veth() {
    let test = "a_transfer_between_two_network_namespaces_over_veth";
    if !need_root_and(test, &["ip"]) {
        return;
    }
    let net = match Netns::new("xfer") {
        Ok(n) => n,
        Err(e) => {
            skip(test, &format!("cannot make network namespaces here: {e}"));
            return;
        }
    };
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let sockets = testkit::tree::rich_tree(&src, true);
    let dst = dir.path().join("dst");
    // The receiver listens in the first namespace, the sender connects from the second.
    let mut cmd = net.exec(0);
    cmd.args(["mover", "receive"])
        .arg(&dst)
        .args(["--listen", "10.231.7.1:7443", "--keys"])
        .arg(&k);
    let r = Listening::start(cmd);
    assert_eq!(r.addr, "10.231.7.1:7443");
    let t0 = Instant::now();
    let s = net
        .exec(1)
        .args(["mover", "send"])
        .arg(&src.root)
        .args(["--to", "10.231.7.1:7443", "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    assert_eq!(rc, 0, "{rerr}");
    eprintln!("transfer over veth took {:?}", t0.elapsed());
    assert_mirror(&src.root, &dst, &sockets);
    // The other way round: the sender listens in the second namespace.
    src.file(b"plain", b"changed\n");
    let mut cmd = net.exec(1);
    cmd.args(["mover", "send"])
        .arg(&src.root)
        .args(["--listen", "10.231.7.2:7444", "--keys"])
        .arg(&k);
    let s = Listening::start(cmd);
    let o = net
        .exec(0)
        .args(["mover", "receive"])
        .arg(&dst)
        .args(["--from", "10.231.7.2:7444", "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s.wait(Duration::from_secs(60)).0, 0);
    assert_mirror(&src.root, &dst, &sockets);
}

/// Runs `pvc-backup ARGS` as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as on a
/// root-squashed NFS volume.
fn squashed() -> Command {
    let mut c = Command::new("setpriv");
    c.args(ROOT_SQUASHED)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"));
    c
}

#[test]
fn root_squashed_sides_read_and_write_as_each_owner() {
    let test = "root_squashed_sides_read_and_write_as_each_owner";
    if !need_root_and(test, &["setpriv", "rsync"]) {
        return;
    }
    let (dir, k) = setup();
    let src = many_owners(dir.path().join("src"));
    let dst = dir.path().join("dst");
    let mut cmd = squashed();
    cmd.args(["mover", "receive"])
        .arg(&dst)
        .args(["--listen", "127.0.0.1:0", "--keys"])
        .arg(&k);
    let r = Listening::start(cmd);
    let s = squashed()
        .args(["mover", "send"])
        .arg(&src.root)
        .args(["--to", &r.addr, "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&s), 0, "{}", stderr(&s));
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    assert_eq!(rc, 0, "{rerr}");
    assert_mirror(&src.root, &dst, &[]);
    // The squash is real: a sender that may not act as the owners cannot read those files.
    let other = dir.path().join("other");
    let r = receive_listening(&other, &k, &[]);
    let s = squashed()
        .args(["mover", "send"])
        .arg(&src.root)
        .args(["--impersonate", "never", "--to", &r.addr, "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&s), 23, "{}", stderr(&s));
    assert!(stderr(&s).contains("on the sender"), "{}", stderr(&s));
    assert_eq!(r.wait(Duration::from_secs(60)).0, 23);
}

/// `len` bytes that neither compress nor repeat.
fn noise(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len + 8);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// The first entry of `dir` whose name starts with `prefix`.
fn named(dir: &Path, prefix: &str) -> Option<std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
}

/// The partial snapshot in the backup folder `store`, if there is one.
fn partial_snapshot(store: &Path) -> Option<PathBuf> {
    named(&store.join("snapshots"), ".partial-").map(|e| e.path())
}

/// The size of the partly received file in `dst` (or in its partial snapshot, when `dst` is a
/// backup folder), if there is one.
fn partial_size(dst: &Path) -> Option<u64> {
    let size = |d: &Path| named(d, ".pvcb-part.").map(|e| e.metadata().map_or(0, |m| m.len()));
    size(dst).or_else(|| size(&partial_snapshot(dst)?))
}

/// Waits until at least `bytes` of the large file have arrived in `dst`.
fn wait_partial(dst: &Path, bytes: u64) {
    let t0 = Instant::now();
    while partial_size(dst).is_none_or(|n| n < bytes) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the large file did not arrive: {:?}",
            partial_size(dst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two namespaces whose link carries 100 Mbit/s from the sender's side (namespace 1), so a
/// large file takes seconds and can be cut in the middle.
fn slow_link(test: &str, tag: &str) -> Option<Netns> {
    if !need_root_and(test, &["ip", "tc"]) {
        return None;
    }
    let net = match Netns::new(tag) {
        Ok(n) => n,
        Err(e) => {
            skip(test, &format!("cannot make network namespaces here: {e}"));
            return None;
        }
    };
    let dev = net.dev(1);
    let ns = net.names[1].clone();
    if let Err(e) = Netns::ip(&[
        "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "100mbit",
        "burst", "64kb", "latency", "100ms",
    ]) {
        skip(test, &format!("cannot limit the link's rate: {e}"));
        return None;
    }
    Some(net)
}

fn receiver_in(net: &Netns, dst: &Path, k: &Path, port: u16, extra: &[&str]) -> Listening {
    let mut cmd = net.exec(0);
    cmd.args(["mover", "receive"])
        .arg(dst)
        .args(["--listen", &format!("10.231.7.1:{port}"), "--keys"])
        .arg(k)
        .args(extra);
    Listening::start(cmd)
}

fn sender_in(net: &Netns, src: &Path, k: &Path, port: u16, extra: &[&str]) -> Child {
    net.exec(1)
        .args(["mover", "send"])
        .arg(src)
        .args(["--to", &format!("10.231.7.1:{port}"), "--json", "--keys"])
        .arg(k)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The sender's exit code and JSON line.
fn sender_result(c: Child) -> (i32, serde_json::Value) {
    let o = c.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let json = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
    assert!(!json.is_null() || code(&o) != 0, "{}", stderr(&o));
    (code(&o), json)
}

const BIG: usize = 64 << 20;

/// Bytes of `BIG` that a run going on from a partly received file of `part` bytes must send
/// again at most: the chunks not complete in it, and the one-byte file after it.
fn left_after(part: u64) -> u64 {
    const CHUNK: u64 = 1 << 20;
    BIG as u64 - part / CHUNK * CHUNK + 1
}

/// A transfer into a new snapshot whose sender is killed in the middle of the large file
/// leaves its partial snapshot; the next run takes it up under its own name and sends only
/// what it lacks, and the snapshot it completes is the source.
#[test]
fn a_snapshot_cut_mid_file_is_taken_up_by_the_next_run() {
    let test = "a_snapshot_cut_mid_file_is_taken_up_by_the_next_run";
    let Some(net) = slow_link(test, "snap") else {
        return;
    };
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"big.bin", &noise(BIG)).file(b"small", b"s");
    let store = dir.path().join("store");
    let r = receiver_in(&net, &store, &k, 7461, &["--snapshot"]);
    let mut s = sender_in(&net, &src.root, &k, 7461, &[]);
    wait_partial(&store, (BIG / 3) as u64);
    s.kill().unwrap();
    let _ = s.wait();
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    assert_eq!(rc, 1, "{rerr}");
    let part = partial_size(&store).expect("the partly received file was kept");
    let left = partial_snapshot(&store).expect("the partial snapshot was kept");
    assert!(!store.join("latest").exists());

    let r = receiver_in(&net, &store, &k, 7462, &["--snapshot", "-v", "--json"]);
    let (sc, j) = sender_result(sender_in(&net, &src.root, &k, 7462, &[]));
    let (rc, out, rerr) = r.wait(Duration::from_secs(120));
    assert_eq!((sc, rc), (0, 0), "{j}\n{rerr}");
    let taken = format!(
        "going on with the partial snapshot {}",
        left.file_name().unwrap().to_string_lossy()
    );
    assert!(rerr.contains(&taken), "{rerr}");
    let bytes = j["sent"]["bytes"].as_u64().unwrap();
    assert!(
        bytes <= left_after(part),
        "the second run sent {bytes} bytes with {part} of {BIG} received before: {j}"
    );
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let snap = store
        .join("snapshots")
        .join(report["snapshot"].as_str().unwrap());
    assert_eq!(partial_snapshot(&store), None);
    assert_eq!(partial_size(&snap), None);
    assert_mirror(&src.root, &snap, &[]);
}

/// A partial snapshot left by a run that broke off may hold files linked from the previous
/// snapshot. When the source's attributes of such a file change before the next run, that run
/// must not change them in place: the inode is the previous snapshot's too.
#[test]
fn a_taken_up_partial_snapshot_never_changes_the_previous_snapshots_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    // Hard-linked in the source too: a target file with other names is then not rewritten
    // apart for that reason alone.
    src.file(b"kept", b"same content").file(b"other", b"x");
    src.hardlink(b"kept", b"kept-too");
    src.mode(b"kept", 0o644);
    let store = dir.path().join("store");
    let (sc, rc, j, r1) = snapshot_transfer(&src.root, &store, &k, &[]);
    assert_eq!((sc, rc), (0, 0), "{j}\n{r1}");
    let first = store
        .join("snapshots")
        .join(r1["snapshot"].as_str().unwrap());
    // What a run that broke off after linking `kept` from the first snapshot leaves.
    let partial = store.join("snapshots/.partial-2000-01-01T00-00-00Z");
    std::fs::create_dir(&partial).unwrap();
    std::fs::hard_link(first.join("kept"), partial.join("kept")).unwrap();
    // Only the mode changes: same size, mtime and content.
    src.mode(b"kept", 0o600);
    let (sc, rc, j, r2) = snapshot_transfer(&src.root, &store, &k, &[]);
    assert_eq!((sc, rc), (0, 0), "{j}\n{r2}");
    let second = store
        .join("snapshots")
        .join(r2["snapshot"].as_str().unwrap());
    assert_mirror(&src.root, &second, &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(&first.join("kept")),
        0o644,
        "the first snapshot's file changed"
    );
    assert_eq!(mode(&second.join("kept")), 0o600);
    assert_ne!(ino(&first.join("kept")), ino(&second.join("kept")));
    assert_eq!(partial_snapshot(&store), None);
}

/// The sender killed in the middle of the large file, then the receiver killed in the middle of
/// the next attempt: each rerun goes on from the chunks the partly received file holds.
#[test]
fn either_side_killed_mid_file_is_resumed_by_a_rerun_from_its_last_chunk() {
    let test = "either_side_killed_mid_file_is_resumed_by_a_rerun_from_its_last_chunk";
    let Some(net) = slow_link(test, "kill") else {
        return;
    };
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"big.bin", &noise(BIG)).file(b"small", b"s");
    let dst = dir.path().join("dst");

    // The sender is killed a quarter of the way: the receiver gives up and keeps the part.
    let r = receiver_in(&net, &dst, &k, 7451, &[]);
    let mut s = sender_in(&net, &src.root, &k, 7451, &[]);
    wait_partial(&dst, (BIG / 4) as u64);
    s.kill().unwrap();
    let _ = s.wait();
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    assert_eq!(rc, 1, "{rerr}");
    let first = partial_size(&dst).expect("the partly received file was kept");

    // The rerun goes on from there (the receiver says from how many chunks); its receiver is
    // killed two thirds of the way, and the sender gives up after its idle timeout.
    let r = receiver_in(&net, &dst, &k, 7452, &["-v"]);
    let s = sender_in(&net, &src.root, &k, 7452, &["--idle-timeout", "5"]);
    wait_partial(&dst, (BIG * 2 / 3) as u64);
    let going_on = format!("going on from {} chunks", first.div_ceil(1 << 20));
    assert!(r.stderr().contains(&going_on), "{}", r.stderr());
    drop(r);
    let (sc, _) = sender_result(s);
    assert_eq!(sc, 1);
    let second = partial_size(&dst).expect("the partly received file was kept");

    // The last run sends only what the part lacks.
    let r = receiver_in(&net, &dst, &k, 7453, &[]);
    let (sc, j) = sender_result(sender_in(&net, &src.root, &k, 7453, &[]));
    let (rc, _, rerr) = r.wait(Duration::from_secs(120));
    assert_eq!((sc, rc), (0, 0), "{j}\n{rerr}");
    let bytes = j["sent"]["bytes"].as_u64().unwrap();
    assert!(
        bytes <= left_after(second),
        "the last run sent {bytes} bytes with {second} of {BIG} received before: {j}"
    );
    assert_eq!(partial_size(&dst), None);
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn a_link_down_for_30_s_mid_file_is_bridged_by_retry_for() {
    let test = "a_link_down_for_30_s_mid_file_is_bridged_by_retry_for";
    let Some(net) = slow_link(test, "down") else {
        return;
    };
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"big.bin", &noise(BIG)).file(b"small", b"s");
    let dst = dir.path().join("dst");
    let retry = ["--retry-for", "2m", "--idle-timeout", "5"];
    let r = receiver_in(&net, &dst, &k, 7455, &retry);
    let s = sender_in(&net, &src.root, &k, 7455, &retry);
    wait_partial(&dst, (BIG / 3) as u64);
    let dev = net.dev(0);
    Netns::ip(&["-n", &net.names[0], "link", "set", &dev, "down"]).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    Netns::ip(&["-n", &net.names[0], "link", "set", &dev, "up"]).unwrap();
    let (sc, j) = sender_result(s);
    let (rc, _, rerr) = r.wait(Duration::from_secs(180));
    assert_eq!((sc, rc), (0, 0), "{j}\n{rerr}");
    assert!(
        rerr.contains("trying again"),
        "no reconnect happened:\n{rerr}"
    );
    let bytes = j["sent"]["bytes"].as_u64().unwrap();
    assert!(
        bytes * 10 < (BIG as u64) * 13,
        "{bytes} bytes sent in all for {BIG}: {j}"
    );
    assert_eq!(partial_size(&dst), None);
    assert_mirror(&src.root, &dst, &[]);
}

/// What `clone --via local` does between two listening movers, here over TCP on this machine:
/// connects to both and copies bytes both ways, until either side ends or `cut_after` bytes
/// went from the sender to the receiver (then both connections are closed, as a broken
/// port-forward closes them). The bytes it carried from the sender.
fn relay(sender: &str, receiver: &str, cut_after: Option<u64>) -> u64 {
    use std::net::Shutdown;
    let s = TcpStream::connect(sender).unwrap();
    let r = TcpStream::connect(receiver).unwrap();
    let pipe = |mut from: TcpStream, mut to: TcpStream, limit: Option<u64>| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut carried = 0u64;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                carried += n as u64;
                if limit.is_some_and(|l| carried >= l) {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            carried
        })
    };
    let up = pipe(s.try_clone().unwrap(), r.try_clone().unwrap(), cut_after);
    let down = pipe(r, s, None);
    let carried = up.join().unwrap();
    down.join().unwrap();
    carried
}

#[test]
fn two_listening_sides_joined_by_a_relay_transfer_and_resume_after_it_breaks() {
    let (dir, k) = setup();
    let src = Tree::new(dir.path().join("src"));
    let sockets = testkit::tree::rich_tree(&src, is_root());
    src.file(b"big.bin", &noise(32 << 20));
    let o = bin()
        .args(["mover", "send"])
        .arg(&src.root)
        .args(["--to", "127.0.0.1:9", "--tls-client", "--keys"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--tls-client applies to a sender that listens"));
    let dst = dir.path().join("dst");
    let retry = ["--retry-for", "60s"];
    let r = receive_listening(&dst, &k, &retry);
    let mut cmd = bin();
    cmd.args(["mover", "send"])
        .arg(&src.root)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-client",
            "--json",
            "--keys",
        ])
        .arg(&k)
        .args(retry);
    let s = Listening::start(cmd);
    // The first connection breaks in the middle of the large file; a second one completes the
    // transfer without sending again what arrived.
    let first = relay(&s.addr, &r.addr, Some(8 << 20));
    assert!(first >= 8 << 20, "{first}");
    relay(&s.addr, &r.addr, None);
    let (sc, out, serr) = s.wait(Duration::from_secs(120));
    let (rc, _, rerr) = r.wait(Duration::from_secs(60));
    assert_eq!((sc, rc), (0, 0), "sender:\n{serr}\nreceiver:\n{rerr}");
    assert!(
        rerr.contains("trying again"),
        "no second connection:\n{rerr}"
    );
    let j: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(
        j["sent"]["bytes"].as_u64().unwrap() < (32 << 20) + (16 << 20),
        "the large file went twice: {j}"
    );
    assert_mirror(&src.root, &dst, &sockets);

    // A plain listening sender waits for a ClientHello as the receiver does: joined, neither
    // starts, and both drop the connection at the handshake deadline.
    let r = receive_listening(&dst, &k, &["--handshake-timeout", "1"]);
    let mut cmd = bin();
    cmd.args(["mover", "send"])
        .arg(&src.root)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--handshake-timeout",
            "1",
            "--keys",
        ])
        .arg(&k);
    let s = Listening::start(cmd);
    let t0 = Instant::now();
    relay(&s.addr, &r.addr, None);
    assert!(t0.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        r.stderr().contains("handshake") || s.stderr().contains("handshake"),
        "{}\n{}",
        r.stderr(),
        s.stderr()
    );
}

#[test]
fn a_router_that_picks_the_backend_by_the_tls_hello_passes_the_name_given() {
    // HAProxy as OpenShift's router runs it for a passthrough Route: it reads the name in the
    // client's hello and hands the connection, untouched, to the backend of that name only.
    if !testkit::skip::need_tools("sni_router", &["haproxy"]) {
        return;
    }
    let (dir, k) = setup();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), b"routed\n").unwrap();
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let r = receive_listening(&dst, &k, &["--keep-listening"]);
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = front.local_addr().unwrap().to_string();
    drop(front);
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 16\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\nfrontend router\n  bind {front_addr}\n  tcp-request inspect-delay 5s\n  \
             tcp-request content accept if {{ req_ssl_hello_type 1 }}\n  use_backend route if {{ \
             req_ssl_sni -i copy-lab.apps.example.com }}\nbackend route\n  server receiver {}\n",
            r.addr
        ),
    )
    .unwrap();
    let mut router = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Instant::now();
    while TcpStream::connect(&front_addr).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "haproxy did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The default name routes nowhere: the router drops the connection.
    let lost = send_to(&src, &front_addr, &k, &[]);
    assert_eq!(code(&lost), 1, "{}", stderr(&lost));
    assert!(!dst.join("a").exists());
    // The Route's host reaches the receiver, and the copy is what sync makes.
    let routed = send_to(
        &src,
        &front_addr,
        &k,
        &["--server-name", "copy-lab.apps.example.com"],
    );
    assert_eq!(
        code(&routed),
        0,
        "{}\nreceiver:\n{}",
        stderr(&routed),
        r.stderr()
    );
    assert_mirror(&src, &dst, &[]);
    // Not a DNS name: refused before anything connects.
    let bad = send_to(&src, &front_addr, &k, &["--server-name", "10.0.0.1"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--server-name"), "{}", stderr(&bad));
    let _ = router.kill();
    let _ = router.wait();
}
