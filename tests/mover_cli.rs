//! `pvc-backup mover sync` as a user runs it: exit codes, output, and runs that are killed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use contract::{Line, Listing, Progress, Report, Summary};
use testkit::oracle::assert_mirror;
use testkit::skip::{is_root, need_tools, skip};
use testkit::tree::Tree;

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
}

/// Runs `pvc-backup mover ARGS FROM TO`.
fn mover(args: &[&str], from: &Path, to: &Path) -> std::process::Output {
    bin()
        .arg("mover")
        .args(args)
        .arg(from)
        .arg(to)
        .output()
        .expect("run pvc-backup")
}

fn sync(src: &Path, dst: &Path, extra: &[&str]) -> std::process::Output {
    mover(&[&["sync"], extra].concat(), src, dst)
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_codes_follow_the_documented_table() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    let dst = dir.path().join("dst");
    // Empty source: refused with 254, target not created.
    let o = sync(&src.root, &dst, &[]);
    assert_eq!(code(&o), 254, "{}", stderr(&o));
    assert!(stderr(&o).contains("empty"));
    assert!(!dst.exists());
    // Missing source: 254.
    let o = sync(&dir.path().join("nope"), &dst, &[]);
    assert_eq!(code(&o), 254, "{}", stderr(&o));
    // Usage: an unknown flag, an escaping subdir, a target inside the source.
    assert_eq!(code(&sync(&src.root, &dst, &["--no-such-flag"])), 2);
    src.file(b"f", b"1");
    assert_eq!(code(&sync(&src.root, &dst, &["--subdir", "../x"])), 2);
    assert_eq!(code(&sync(&src.root, &src.path(b"inner"), &[])), 2);
    // Done.
    let o = sync(&src.root, &dst, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ok: 1 entries (1 copied"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn excludes_come_from_the_command_line_and_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a.tmp", b"1")
        .file(b"b.bak", b"2")
        .file(b"cache/x", b"3")
        .file(b"keep.txt", b"4");
    let list = dir.path().join("excludes");
    std::fs::write(&list, "# left out by the file\n*.bak\n\n/cache/\n").unwrap();
    let dst = dir.path().join("dst");
    let o = sync(
        &src.root,
        &dst,
        &[
            "--exclude",
            "*.tmp",
            "--exclude-from",
            list.to_str().unwrap(),
            "--progress",
            "json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&dst)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".pvc-backup")
        .collect();
    names.sort();
    assert_eq!(names, ["keep.txt"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let summary: Summary = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary.entries.excluded, 3);

    // A file that cannot be read and a bad pattern are usage errors that name them.
    let missing = dir.path().join("no-such-list");
    let o = sync(
        &src.root,
        &dst,
        &["--exclude-from", missing.to_str().unwrap()],
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no-such-list"), "{}", stderr(&o));
    let o = sync(&src.root, &dst, &["--exclude", "a[z-a]"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("a[z-a]"), "{}", stderr(&o));
    // --delete-excluded with --no-delete says nothing sensible.
    let o = sync(&src.root, &dst, &["--delete-excluded", "--no-delete"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn json_progress_lines_and_the_summary_parse() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    for i in 0..300 {
        src.file(
            format!("d{}/f{i}", i % 10).as_bytes(),
            &vec![b'x'; 1000 + i],
        );
    }
    let dst = dir.path().join("dst");
    let o = sync(
        &src.root,
        &dst,
        &["--progress", "json", "--progress-interval", "0.05"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2);
    let (events, summary) = lines.split_at(lines.len() - 1);
    let events: Vec<Progress> = events
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last.phase, "done");
    assert!(last.scan_complete);
    assert_eq!((last.entries_done, last.entries_known), (310, 310));
    let expected_bytes: u64 = (0..300u64).map(|i| 1000 + i).sum();
    assert_eq!(
        (last.bytes_done, last.bytes_known),
        (expected_bytes, expected_bytes)
    );
    // The field names callers read, spelled out rather than taken from the types that wrote them.
    let keys = |line: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    let mut progress_keys = keys(lines[lines.len() - 2]);
    progress_keys.sort();
    assert_eq!(
        progress_keys,
        [
            "bytes_copied",
            "bytes_done",
            "bytes_known",
            "elapsed_ms",
            "entries_done",
            "entries_known",
            "errors",
            "phase",
            "rate_bytes_per_sec",
            "scan_complete"
        ]
    );
    let raw: serde_json::Value = serde_json::from_str(summary[0]).unwrap();
    for path in [
        "/schema",
        "/exit_code",
        "/entries/total",
        "/entries/failed",
        "/bytes/total",
        "/bytes/copied",
        "/duration_ms",
        "/errors",
    ] {
        assert!(raw.pointer(path).is_some(), "{path} missing in {raw}");
    }
    let summary: Summary = serde_json::from_str(summary[0]).unwrap();
    assert_eq!(
        (
            summary.exit_code,
            summary.entries.copied,
            summary.bytes.copied
        ),
        (0, 300, expected_bytes)
    );
}

#[test]
fn a_caller_reads_the_backup_report_and_block_progress_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"alpha").file(b"sub/b", &[7u8; 10_000]);
    let dst = dir.path().join("dst");
    let o = mover(&["backup", "--progress", "json"], &src.root, &dst);
    assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Line> = text.lines().map(Line::parse).collect();
    assert!(matches!(lines.first(), Some(Line::Progress(_))), "{text}");
    let Some(Line::Summary(last)) = lines.last() else {
        panic!("no summary last: {text}");
    };
    let report = Report::read(last);
    let snapshot = report.snapshot.expect("the snapshot's name");
    assert!(dst.join("snapshots").join(&snapshot).is_dir(), "{snapshot}");
    let entries = report.entries.expect("entry counts");
    assert_eq!((entries.total, entries.failed), (3, 0));
    assert_eq!(report.bytes.map(|b| b.total), Some(10_005));

    // A block copy's progress lines leave out what only a tree copy knows.
    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![1u8; 1 << 20]).unwrap();
    let copy = dir.path().join("copy.img");
    let o = mover(&["block", "--progress", "json"], &image, &copy);
    assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let done = text
        .lines()
        .rev()
        .find_map(|l| match Line::parse(l) {
            Line::Progress(p) => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no progress line: {text}"));
    assert_eq!((done.phase.as_str(), done.bytes_known), ("done", 1 << 20));
}

#[test]
fn a_backup_report_lists_the_snapshots_retention_kept_with_their_verification() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"alpha");
    let dst = dir.path().join("dst");
    let backup = || {
        // Snapshot names are the time to the second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let o = mover(
            &["backup", "--keep-last", "2", "--progress", "json"],
            &src.root,
            &dst,
        );
        assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        match text.lines().map(Line::parse).next_back() {
            Some(Line::Summary(last)) => Report::read(&last),
            _ => panic!("no summary last: {text}"),
        }
    };
    backup();
    backup();
    let third = backup();
    // What is on the disk, read with the kernel's own listing: the two newest.
    let on_disk = testkit::oracle::snapshot_names(&dst);
    let kept: Vec<&str> = third.kept.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(kept, on_disk, "newest first, as on the disk");
    assert_eq!(Some(kept[0]), third.snapshot.as_deref());
    assert!(third.kept[0].latest && !third.kept[1].latest);
    assert_eq!(third.kept[0].entries, Some(1));
    assert_eq!(third.kept[0].bytes, Some(5));
    assert_eq!(third.kept[0].verified, None);

    // Verified, a snapshot carries the result and its time into the next backup's report.
    let o = bin()
        .args(["mover", "verify", "--snapshot", "all"])
        .arg(&dst)
        .output()
        .expect("run pvc-backup");
    assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
    let fourth = backup();
    let older = &fourth.kept[1];
    assert_eq!(older.id, kept[0]);
    assert_eq!(older.verified.as_deref(), Some("ok"));
    assert!(older.verified_at.is_some());
    assert_eq!(
        fourth.kept[0].verified, None,
        "the new one is not verified yet"
    );
}

#[test]
fn the_snapshot_listing_reads_back_as_the_contract_types_for_folders_and_block_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let listing = |dst: &Path| {
        let o = bin()
            .args(["mover", "snapshots", "--json"])
            .arg(dst)
            .output()
            .expect("run pvc-backup");
        assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        let listing: Listing =
            serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{e}: {text}"));
        // What the contract writes back is what the mover printed.
        assert_eq!(serde_json::to_string(&listing).unwrap(), text.trim_end());
        listing
    };

    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"alpha");
    let dst = dir.path().join("files");
    let o = mover(&["backup"], &src.root, &dst);
    assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
    let Listing::Tree(snapshots) = listing(&dst) else {
        panic!("a folder's backup lists snapshots");
    };
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].latest);
    assert_eq!(snapshots[0].entries, Some(1));
    assert!(dst.join("snapshots").join(&snapshots[0].id).is_dir());

    let image = dir.path().join("disk.img");
    std::fs::write(&image, vec![1u8; 1 << 20]).unwrap();
    let dst = dir.path().join("volume");
    let o = mover(&["backup", "--block"], &image, &dst);
    assert_eq!(code(&o), contract::ExitCode::Ok, "{}", stderr(&o));
    let listed = listing(&dst);
    let Listing::Block(versions) = &listed else {
        panic!("a block volume's backup lists versions");
    };
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].size, 1 << 20);
    assert_eq!(listed.latest(), Some(versions[0].id.as_str()));
}

/// Runs `cmd` as the unprivileged user `nobody` when root, as itself otherwise.
fn as_unprivileged(mut cmd: Command) -> Command {
    if !is_root() {
        return cmd;
    }
    let mut c = Command::new("setpriv");
    c.args(testkit::skip::AS_NOBODY);
    c.arg(cmd.get_program()).args(cmd.get_args());
    cmd = c;
    cmd
}

#[test]
fn an_unreadable_file_is_listed_and_the_run_is_partial() {
    if is_root()
        && !need_tools(
            "an_unreadable_file_is_listed_and_the_run_is_partial",
            &["setpriv"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"readable", b"ok")
        .file(b"secret", b"no")
        .file(b"sub/more", b"ok")
        .mode(b"secret", 0o000);
    let dst = dir.path().join("dst");
    if is_root() {
        // Everything belongs to the user the mover runs as, so only the 0000 file is a problem.
        for p in [
            "src",
            "src/readable",
            "src/secret",
            "src/sub",
            "src/sub/more",
        ] {
            std::os::unix::fs::chown(dir.path().join(p), Some(65534), Some(65534)).unwrap();
        }
        std::fs::create_dir(&dst).unwrap();
        std::os::unix::fs::chown(&dst, Some(65534), Some(65534)).unwrap();
    }
    let mut cmd = bin();
    cmd.args(["mover", "sync", "--progress", "json"])
        .arg(&src.root)
        .arg(&dst);
    let o = as_unprivileged(cmd).output().unwrap();
    assert_eq!(code(&o), 23, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("FAILED") && stderr(&o).contains("secret"),
        "{}",
        stderr(&o)
    );
    let text = String::from_utf8(o.stdout).unwrap();
    let summary: Summary = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary.result, "partial");
    assert_eq!(summary.errors.len(), 1, "{:?}", summary.errors);
    assert_eq!(
        (
            summary.errors[0].path.as_str(),
            summary.errors[0].op.as_str()
        ),
        ("secret", "open")
    );
    assert_eq!(std::fs::read(dst.join("readable")).unwrap(), b"ok");
    assert_eq!(std::fs::read(dst.join("sub/more")).unwrap(), b"ok");
    assert!(!dst.join("secret").exists());
}

/// Twelve files of 6 MiB and 3,000 small ones: long enough a copy to be killed in the middle.
fn big_tree(src: &Tree) {
    for i in 0..12 {
        let big: Vec<u8> = (0..(6 << 20))
            .map(|j: u32| (j.wrapping_mul(2_654_435_761) >> (i % 7)) as u8)
            .collect();
        src.file(format!("big/{i}.bin").as_bytes(), &big);
    }
    for i in 0..3000 {
        src.file(
            format!("small/{}/{i}", i % 30).as_bytes(),
            format!("{i}").repeat(i % 50 + 1).as_bytes(),
        );
    }
}

/// Polls `cond` until it holds or the child ends (at most 30 s).
fn wait_until(child: &mut std::process::Child, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end && child.try_wait().unwrap().is_none() && !cond() {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether any temporary file or folder of the mover exists below `dir`.
fn has_temp_file(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".pvcb-tmp.") || name.starts_with(".pvcb-new.") {
                return true;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    false
}

/// Every regular file under a real name in `dst` has exactly its source's content (a new folder
/// keeps a temporary name until it is complete: what is in it is not looked at).
fn no_half_written_file(src: &Path, dst: &Path) -> usize {
    let mut checked = 0;
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dst.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let r = rel.join(&name);
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                if r.as_os_str() != ".pvc-backup"
                    && !name.to_string_lossy().starts_with(".pvcb-new.")
                {
                    stack.push(r);
                }
            } else if ft.is_file() && !name.to_string_lossy().starts_with(".pvcb-tmp.") {
                let a = std::fs::read(src.join(&r)).unwrap();
                let b = std::fs::read(dst.join(&r)).unwrap();
                assert!(
                    a == b,
                    "{r:?} is visible under its real name with {} of {} bytes",
                    b.len(),
                    a.len()
                );
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn a_sync_killed_at_random_moments_never_shows_a_half_written_file_and_finishes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    let mut x: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {x}");
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    big_tree(&src);
    let dst = dir.path().join("dst");
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = bin()
            .args(["mover", "sync", "-q", "--threads", "4"])
            .arg(&src.root)
            .arg(&dst)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first run is killed as soon as a file is being written (surely mid-copy, however
        // fast the machine); later ones at random moments.
        if kills == 0 {
            wait_until(&mut child, || has_temp_file(&dst));
        } else {
            std::thread::sleep(Duration::from_millis(next() % 300));
        }
        if child.try_wait().unwrap().is_none() {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            kills += 1;
        }
        let _ = child.wait();
        no_half_written_file(&src.root, &dst);
    }
    if kills == 0 {
        skip(
            "killed_sync",
            "every run finished before it could be killed: machine too fast for this tree",
        );
        return;
    }
    let o = sync(&src.root, &dst, &["-q"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(no_half_written_file(&src.root, &dst), 3012);
    assert_mirror(&src.root, &dst, &[]);
}

/// In a pod the mover is process 1, which the kernel does not end on a signal it has no handler
/// for: a deleted pod would wait out its grace period. The mover stops at SIGTERM itself.
#[test]
fn sigterm_mid_copy_stops_the_mover_with_143_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    big_tree(&src);
    let dst = dir.path().join("dst");
    let mut child = bin()
        .args(["mover", "sync", "-q", "--threads", "2"])
        .arg(&src.root)
        .arg(&dst)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&mut child, || has_temp_file(&dst));
    if child.try_wait().unwrap().is_some() {
        skip(
            "sigterm_mid_copy",
            "the copy finished before a file was seen being written",
        );
        return;
    }
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    no_half_written_file(&src.root, &dst);
    let o = sync(&src.root, &dst, &["-q"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!has_temp_file(&dst));
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn a_backup_killed_midway_leaves_no_snapshot_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"first", b"in the first snapshot");
    let dst = dir.path().join("dst");
    let o = mover(&["backup", "-q"], &src.root, &dst);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let first = std::fs::read_link(dst.join("latest")).unwrap();
    big_tree(&src);
    std::thread::sleep(Duration::from_millis(1100));
    let mut child = bin()
        .args(["mover", "backup", "-q", "--threads", "4"])
        .arg(&src.root)
        .arg(&dst)
        .spawn()
        .unwrap();
    // Killed as soon as the snapshot is being built: surely before it is complete.
    wait_until(&mut child, || {
        std::fs::read_dir(dst.join("snapshots")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
        })
    });
    let killed = child.try_wait().unwrap().is_none();
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    if !killed {
        skip(
            "killed_backup",
            "the backup finished before it could be killed",
        );
        return;
    }
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dst.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let after_kill = names();
    assert_eq!(
        after_kill
            .iter()
            .filter(|n| !n.starts_with(".partial-"))
            .count(),
        1,
        "{after_kill:?}"
    );
    assert_eq!(
        std::fs::read_link(dst.join("latest")).unwrap(),
        first,
        "latest moved to an incomplete snapshot"
    );
    let o = mover(&["backup", "-q"], &src.root, &dst);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after = names();
    assert!(
        after.iter().all(|n| !n.starts_with(".partial-")),
        "{after:?}"
    );
    assert_eq!(after.len(), 2);
    // The manifest the killed run had begun is gone with its partial snapshot.
    let half_written: Vec<String> = std::fs::read_dir(dst.join(".pvc-backup/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(half_written.is_empty(), "{half_written:?}");
    assert_mirror(&src.root, &dst.join("latest"), &[]);
}

#[test]
fn restore_copies_a_snapshot_back_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a/b", b"content").mode(b"a/b", 0o640);
    let backup = dir.path().join("backup");
    let o = mover(&["backup", "-q"], &src.root, &backup);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let target = dir.path().join("target");
    let o = mover(&["restore", "-q"], &backup, &target);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_mirror(&src.root, &target, &[]);
    let o = mover(
        &["restore", "--snapshot", "2001-01-01T00-00-00Z"],
        &backup,
        &target,
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("mover snapshots"), "{}", stderr(&o));
}

#[test]
fn also_makes_every_extra_target_a_mirror_from_one_read_of_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"data/a", b"alpha")
        .file(b"data/b", &vec![7u8; 200_000])
        .hardlink(b"data/a", b"data/a-link")
        .symlink(b"data/to-b", b"b")
        .file(b"other/c", b"kept out by --subdir")
        .mtime(b"data/a", 1_000_000_000, 5);
    let (dst, two, three) = (
        dir.path().join("dst"),
        dir.path().join("two"),
        dir.path().join("three"),
    );
    // A stale file in an extra target must go: each extra copy is a mirror too.
    Tree::new(&three).file(b"stale", b"x");
    let o = sync(
        &src.root,
        &dst,
        &[
            "--subdir",
            "data",
            "--progress",
            "json",
            "--also",
            two.to_str().unwrap(),
            "--also",
            three.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for target in [&dst, &two, &three] {
        assert_mirror(&src.path(b"data"), target, &[]);
    }
    // One summary line per copy, each naming its own source and target.
    let text = String::from_utf8(o.stdout).unwrap();
    let summaries: Vec<Summary> = text
        .lines()
        .filter(|l| l.contains("\"schema\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(summaries.len(), 3, "{text}");
    let first = &summaries[0].entries;
    assert_eq!((first.copied, first.linked), (3, 1), "{first:?}");
    assert_eq!(
        summaries[2].entries.deleted, 1,
        "{:?}",
        summaries[2].entries
    );
    assert!(summaries[1].target.ends_with("two") && summaries[1].source.ends_with("dst"));
}

#[test]
fn also_refuses_a_folder_that_overlaps_another_copy_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"f", b"1");
    let dst = dir.path().join("dst");
    for bad in [
        dst.join("inner"),
        src.path(b"inside"),
        dir.path().to_path_buf(),
    ] {
        let o = sync(&src.root, &dst, &["--also", bad.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("--also"), "{}", stderr(&o));
        assert!(!dst.exists() && !src.path(b"inside").exists());
    }
    let two = dir.path().join("two");
    let o = sync(
        &src.root,
        &dst,
        &[
            "--also",
            two.to_str().unwrap(),
            "--also",
            two.join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!dst.exists() && !two.exists());
}

/// What strace printed of the calls of `calls` (its `-e trace=` list) that the mover made, all
/// threads' logs together; `-ttt` puts the time of each call at the start of its line. With
/// `umask`, the mover runs with that file mode creation mask.
fn strace_log(calls: &str, args: &[&std::ffi::OsStr], umask: Option<u32>, timed: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    // One log per thread (-ff): no call is split into "unfinished" and "resumed" lines.
    let log = dir.path().join("strace");
    let mut cmd = Command::new("strace");
    cmd.args(["-ff", "-qq", "-e", &format!("trace={calls}")]);
    if timed {
        cmd.arg("-ttt");
    }
    cmd.arg("-o")
        .arg(&log)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(args);
    if let Some(mask) = umask {
        // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                libc::umask(mask as libc::mode_t);
                Ok(())
            });
        }
    }
    let o = cmd.output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// Whether an strace line is a call named in `calls` (comma-separated) that succeeded; strace
/// prints the calls it has no name for whatever the filter.
fn succeeded(line: &str, calls: &str) -> bool {
    line.trim_end().ends_with("= 0")
        && calls
            .split(',')
            .any(|c| line.strip_prefix(c).is_some_and(|r| r.starts_with('(')))
}

/// The calls of `calls` (strace's `-e trace=` list) that the mover made and that succeeded, as
/// strace printed them, one line each.
fn traced_calls(calls: &str, args: &[&std::ffi::OsStr], umask: Option<u32>) -> Vec<String> {
    strace_log(calls, args, umask, false)
        .lines()
        .filter(|l| succeeded(l, calls))
        .map(String::from)
        .collect()
}

/// Like [`traced_calls`], in the order the calls were made (across threads), without the times.
fn traced_in_order(calls: &str, args: &[&std::ffi::OsStr]) -> Vec<String> {
    let text = strace_log(calls, args, None, true);
    let mut timed: Vec<(f64, String)> = text
        .lines()
        .filter_map(|l| {
            let (time, call) = l.split_once(' ')?;
            succeeded(call, calls).then(|| (time.parse().unwrap(), call.to_string()))
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    timed.into_iter().map(|(_, call)| call).collect()
}

/// Renames the mover made, as strace saw them: (old name, new name) of each
/// rename/renameat/renameat2 call that succeeded.
fn traced_renames(args: &[&std::ffi::OsStr]) -> Vec<(String, String)> {
    let quoted =
        |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(String::from).collect() };
    traced_calls("rename,renameat,renameat2", args, None)
        .iter()
        .map(|l| {
            let q = quoted(l);
            assert_eq!(q.len(), 2, "unexpected strace line: {l}");
            (q[0].clone(), q[1].clone())
        })
        .collect()
}

#[test]
fn a_snapshot_is_on_the_disk_before_it_is_named_and_before_retention_removes_any() {
    if !need_tools(
        "a_snapshot_is_on_the_disk_before_it_is_named_and_before_retention_removes_any",
        &["strace"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    for i in 0..50 {
        src.file(format!("d/{i}").as_bytes(), format!("{i}").as_bytes());
    }
    let backup = dir.path().join("backup");
    let snapshot = |b: &Path| {
        let latest = std::fs::read_link(b.join("latest")).unwrap();
        latest.file_name().unwrap().to_str().unwrap().to_string()
    };
    let o = mover(&["backup", "-q", "--keep-last", "1"], &src.root, &backup);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let old = snapshot(&backup);
    src.file(b"d/new", b"new");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let calls = traced_in_order(
        "syncfs,fsync,rename,renameat,renameat2,unlinkat",
        &[
            os("mover"),
            os("backup"),
            os("-q"),
            os("--keep-last"),
            os("1"),
            src.root.as_os_str(),
            backup.as_os_str(),
        ],
    );
    let new = snapshot(&backup);
    assert_ne!(new, old);
    assert!(!backup.join("snapshots").join(&old).exists());
    let first = |from: usize, what: &str, f: &dyn Fn(&str) -> bool| {
        from + calls[from..]
            .iter()
            .position(|c| f(c))
            .unwrap_or_else(|| panic!("no {what} after call {from} in {calls:#?}"))
    };
    let manifest = first(0, "rename of the manifest", &|c| {
        c.starts_with("rename") && c.contains(&format!("\"{new}.manifest\""))
    });
    let named = first(0, "rename of the snapshot", &|c| {
        c.starts_with("rename")
            && c.contains(&format!("\".partial-{new}\""))
            && c.contains(&format!("\"{new}\""))
    });
    let latest = first(named, "rename of latest", &|c| {
        c.starts_with("rename") && c.contains("\"latest\"")
    });
    let removed = first(latest, "removal of the old snapshot", &|c| {
        c.starts_with("unlinkat") && !c.contains(".latest.tmp")
    });
    // Every entry and the manifest are written when the manifest gets its name; one `syncfs`
    // between that and the snapshot's name puts them on the disk first.
    let flushed = first(manifest, "syncfs", &|c| c.starts_with("syncfs("));
    assert!(flushed < named, "{calls:#?}");
    // The new names (manifest, snapshot, latest: three folders) reach the disk before retention
    // unlinks anything of the old snapshot.
    let synced = calls[latest..removed]
        .iter()
        .filter(|c| c.starts_with("fsync("))
        .count();
    assert!(synced >= 3, "{calls:#?}");
    assert!(
        calls[removed..]
            .iter()
            .any(|c| c.starts_with("unlinkat") && c.contains(&format!("\"{old}\""))),
        "{calls:#?}"
    );
}

#[test]
fn a_mirror_with_fsync_flushes_its_filesystem_after_the_last_entry_is_placed() {
    if !need_tools(
        "a_mirror_with_fsync_flushes_its_filesystem_after_the_last_entry_is_placed",
        &["strace"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    for i in 0..20 {
        src.file(format!("many/{i}").as_bytes(), b"x");
    }
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let calls = "syncfs,rename,renameat,renameat2";
    let plain = dir.path().join("plain");
    let without = traced_in_order(
        calls,
        &[
            os("mover"),
            os("sync"),
            os("-q"),
            src.root.as_os_str(),
            plain.as_os_str(),
        ],
    );
    assert!(
        !without.iter().any(|c| c.starts_with("syncfs(")),
        "{without:#?}"
    );
    let flushed = dir.path().join("flushed");
    let with = traced_in_order(
        calls,
        &[
            os("mover"),
            os("sync"),
            os("-q"),
            os("--fsync"),
            src.root.as_os_str(),
            flushed.as_os_str(),
        ],
    );
    // The new folder gets its name once everything in it is complete: the flush comes after.
    let placed = with
        .iter()
        .position(|c| c.starts_with("rename") && c.contains("\"many\""))
        .unwrap_or_else(|| panic!("no rename of many in {with:#?}"));
    let synced = with
        .iter()
        .position(|c| c.starts_with("syncfs("))
        .unwrap_or_else(|| panic!("no syncfs in {with:#?}"));
    assert!(placed < synced, "{with:#?}");
    assert_mirror(&src.root, &flushed, &[]);
}

#[test]
fn a_snapshot_is_built_without_temporary_names_and_a_mirror_with_them() {
    if !need_tools(
        "a_snapshot_is_built_without_temporary_names_and_a_mirror_with_them",
        &["strace"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    let sockets = testkit::tree::rich_tree(&src, is_root());
    for i in 0..200 {
        src.file(format!("many/{i}").as_bytes(), format!("{i}").as_bytes());
    }
    let backup = dir.path().join("backup");
    let mirror = dir.path().join("mirror");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let backup_renames = traced_renames(&[
        os("mover"),
        os("backup"),
        os("-q"),
        src.root.as_os_str(),
        backup.as_os_str(),
    ]);
    // A snapshot folder is published whole: its own entries go straight to their names, so the
    // run renames only its bookkeeping (the snapshot folder, its manifest, `latest`), however
    // many entries the tree has.
    let tmp_named: Vec<_> = backup_renames
        .iter()
        .filter(|(from, _)| from.contains(".pvcb-tmp."))
        .collect();
    assert!(tmp_named.is_empty(), "{tmp_named:?}");
    assert!(backup_renames.len() < 10, "{backup_renames:?}");
    assert_mirror(&src.root, &backup.join("latest"), &sockets);
    // A mirror shows every file whole under its real name. A new folder is filled under a
    // temporary name and gets its own once complete: one rename for the 200 files of `many`.
    let sync_args = [
        os("mover"),
        os("sync"),
        os("-q"),
        src.root.as_os_str(),
        mirror.as_os_str(),
    ];
    let mirror_renames = traced_renames(&sync_args);
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert!(
        mirror_renames.contains(&pair(".pvcb-new.many", "many")),
        "{mirror_renames:?}"
    );
    let placed = |renames: &[(String, String)]| {
        renames
            .iter()
            .filter(|(from, _)| from.starts_with(".pvcb-tmp."))
            .count()
    };
    assert!(placed(&mirror_renames) < 100, "{mirror_renames:?}");
    assert_mirror(&src.root, &mirror, &sockets);
    // In a folder that exists, each new file is made under a temporary name and renamed over
    // the old one.
    for i in 0..200 {
        src.file(
            format!("many/{i}").as_bytes(),
            format!("new {i}").as_bytes(),
        );
    }
    let rerun_renames = traced_renames(&sync_args);
    assert!(placed(&rerun_renames) >= 200, "{rerun_renames:?}");
    assert_mirror(&src.root, &mirror, &sockets);
}

#[test]
fn a_file_that_belongs_to_the_mover_is_made_with_its_mode_and_others_are_chowned() {
    let test = "a_file_that_belongs_to_the_mover_is_made_with_its_mode_and_others_are_chowned";
    if !testkit::skip::need_root_and(test, &["strace", "rsync"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    let modes = [
        0o644, 0o600, 0o755, 0o666, 0o444, 0o000, 0o4755, 0o2755, 0o1777,
    ];
    let mut special = 0;
    for i in 0..100 {
        let mode = modes[i % modes.len()];
        special += usize::from(mode & 0o7000 != 0);
        let mine = format!("mine/{i}");
        src.file(mine.as_bytes(), b"x").mode(mine.as_bytes(), mode);
        let other = format!("other/{i}");
        src.file(other.as_bytes(), b"y")
            .mode(other.as_bytes(), 0o640)
            .owner(other.as_bytes(), 1234, 1234);
    }
    for i in 0..20 {
        let rel = format!("grp/{i}");
        src.file(rel.as_bytes(), b"z").mode(rel.as_bytes(), 0o664);
    }
    // A folder of the target that exists already and is setgid: what is made in it gets the
    // folder's group, not the mover's, so its files start as 0600 and are given their owner.
    let mirror = dir.path().join("mirror");
    std::fs::create_dir_all(mirror.join("grp")).unwrap();
    std::os::unix::fs::chown(mirror.join("grp"), None, Some(4321)).unwrap();
    std::fs::set_permissions(mirror.join("grp"), PermissionsExt::from_mode(0o2775)).unwrap();
    let os = std::ffi::OsStr::new;
    let args = [
        os("mover"),
        os("sync"),
        os("-q"),
        src.root.as_os_str(),
        mirror.as_os_str(),
    ];
    // Under umask 077 a file made with its mode lacks the bits the umask takes: the mover reads
    // the mode back and sets it (the itemized rsync comparison below checks every mode).
    let calls = traced_calls("fchown,fchmod", &args, Some(0o077));
    let chowns_to = |owner: &str| {
        calls
            .iter()
            .filter(|l| l.starts_with("fchown(") && l.contains(owner))
            .count()
    };
    assert_eq!(chowns_to(", 1234, 1234)"), 100, "{calls:#?}");
    // The mover's own files with plain modes need no chown; those with setuid, setgid or
    // sticky bits, and those made in the setgid folder, do (and a few folders).
    let to_root = chowns_to(", 0, 0)");
    assert!(
        (special + 20..special + 20 + 10).contains(&to_root),
        "{to_root} chowns to root for {special} special files: {calls:#?}"
    );
    assert_mirror(&src.root, &mirror, &[]);
    let grp = std::fs::metadata(mirror.join("grp/0")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&grp), 0);
}

/// A source with a socket: the mover logs a warning about it (a log line on stderr).
fn source_that_logs(root: &Path) -> Tree {
    let src = Tree::new(root);
    src.file(b"data", b"kept").socket(b"listening.sock");
    src
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_that_logs(&dir.path().join("src"));
    let o = sync(&src.root, &dir.path().join("dst"), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("socket not copied"), "{}", stderr(&o));
    assert!(
        !o.stderr.contains(&0x1b),
        "an escape byte in piped stderr: {:?}",
        stderr(&o)
    );
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    if !need_tools(
        "logs_on_a_terminal_are_coloured_unless_no_color_is_set",
        &["script"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source_that_logs(&dir.path().join("src"));
    let bin = assert_cmd::cargo::cargo_bin!("pvc-backup");
    // script(1) gives the command a pseudo-terminal and copies what it prints to our pipe.
    let on_terminal = |no_color: Option<&str>, dst: &str| {
        let line = format!(
            "{} mover sync --progress none {} {}",
            bin.display(),
            src.root.display(),
            dir.path().join(dst).display()
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
        cmd.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let o = cmd.output().expect("run script");
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let coloured = on_terminal(None, "a");
    assert!(coloured.contains("socket not copied"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let empty = on_terminal(Some(""), "b");
    assert!(
        empty.contains("\x1b["),
        "an empty NO_COLOR is unset: {empty:?}"
    );
    let plain = on_terminal(Some("1"), "c");
    assert!(plain.contains("socket not copied"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "colour despite NO_COLOR: {plain:?}"
    );
}

/// `stat -f` of a folder: free bytes (available blocks × block size) and free inodes, as the
/// kernel reports them to a tool that shares no code with the mover.
fn df(path: &Path) -> (u64, u64) {
    let o = Command::new("stat")
        .args(["-f", "-c", "%a %S %d"])
        .arg(path)
        .output()
        .expect("run stat -f");
    let text = String::from_utf8_lossy(&o.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (v[0] * v[1], v[2])
}

/// Bytes allocated to the entries below `root` (not `root` itself), by std's stat.
fn allocated(root: &Path) -> u64 {
    let snap = testkit::oracle::Snapshot::take(root, &[]);
    snap.entries.values().map(|s| s.blocks * 512).sum()
}

/// A source of `n` files of `kib` KiB each, every byte written (no holes).
fn source_of(root: &Path, n: usize, kib: usize) -> Tree {
    let src = Tree::new(root);
    for i in 0..n {
        let content = vec![b'a' + (i % 26) as u8; kib * 1024];
        src.file(format!("d{}/f{i}", i % 3).as_bytes(), &content);
    }
    src
}

#[test]
fn a_target_too_small_is_refused_before_anything_is_written() {
    let test = "a_target_too_small_is_refused_before_anything_is_written";
    if !testkit::skip::need_root_and(test, &["stat"]) {
        return;
    }
    let small = testkit::fs::Mounted::new(testkit::fs::Kind::Tmpfs, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = source_of(&dir.path().join("src"), 12, 256);
    let (free, _) = df(&small.path);
    let o = sync(&src.root, &small.path, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(err.contains("too small"), "{err}");
    assert!(
        err.contains(&format!("needs {} bytes", allocated(&src.root))),
        "the need, as std's stat adds it up: {err}"
    );
    assert!(
        err.contains(&format!("has {free} bytes")),
        "the free room, as stat -f says: {err}"
    );
    assert!(err.contains("--no-space-check"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&small.path).unwrap().collect();
    assert!(left.is_empty(), "the target was written to: {left:?}");

    // Too few inodes, with room enough for the bytes.
    let few = testkit::fs::Mounted::tmpfs_with_inodes(64, 16).unwrap();
    let many = source_of(&dir.path().join("many"), 40, 1);
    let (_, free_inodes) = df(&few.path);
    let o = sync(&many.root, &few.path, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    // 40 files in 3 folders.
    assert!(err.contains("and 43 inodes more"), "{err}");
    assert!(
        err.contains(&format!("and {free_inodes} inodes free")),
        "{err}"
    );
}

#[test]
fn a_re_run_needs_only_the_room_of_what_changed() {
    let test = "a_re_run_needs_only_the_room_of_what_changed";
    if !testkit::skip::need_root_and(test, &["stat", "rsync"]) {
        return;
    }
    let fs = testkit::fs::Mounted::new(testkit::fs::Kind::Tmpfs, 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = source_of(&dir.path().join("src"), 10, 256);
    let o = sync(&src.root, &fs.path, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Less room is left than the source holds, but the target holds it already.
    assert!(df(&fs.path).0 < allocated(&src.root));
    src.file(b"d0/new", b"a small new file");
    let o = sync(&src.root, &fs.path, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_mirror(&src.root, &fs.path, &[]);
}

#[test]
fn a_copy_that_fills_the_target_stops_at_the_first_write_without_room() {
    let test = "a_copy_that_fills_the_target_stops_at_the_first_write_without_room";
    if !testkit::skip::need_root_and(test, &["stat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = source_of(&dir.path().join("src"), 40, 100);
    for threads in ["1", "4"] {
        let small = testkit::fs::Mounted::new(testkit::fs::Kind::Tmpfs, 1).unwrap();
        let o = sync(
            &src.root,
            &small.path,
            &["--no-space-check", "--threads", threads],
        );
        let err = stderr(&o);
        assert_eq!(code(&o), 1, "{err}");
        let failures = err
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("No space left on device"))
            .count();
        let most: usize = threads.parse().unwrap();
        assert!(
            (1..=most).contains(&failures),
            "{failures} writes failed with {threads} threads: {err}"
        );
        assert!(err.contains("is full"), "{err}");
        // What is left to copy, less what is free now, by std's and stat -f's count.
        let copied = allocated(&small.path);
        let (free, _) = df(&small.path);
        let more = allocated(&src.root)
            .saturating_sub(copied)
            .saturating_sub(free);
        let said: u64 = err
            .split("needs about ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure: {err}"));
        // Files under way when the room ran out were removed: the estimate may only be a
        // little higher than what the files left behind say.
        assert!(
            said >= more && said <= more + 4 * 100 * 1024 + 64 * 1024,
            "said {said}, expected about {more}: {err}"
        );
    }
}
