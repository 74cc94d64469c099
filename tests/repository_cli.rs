//! `pvc-backup mover backup|snapshots|restore|verify --repository`: restic-format repositories
//! on a local disk and on a real S3 server (SeaweedFS), checked by Debian's restic and by the
//! kernel's own view of the restored trees (rsync's itemized dry run, `stat`, `getfacl`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::cmd::expect_code;
use testkit::oracle::assert_mirror;
use testkit::s3::S3Server;
use testkit::skip::{MOVER_POD, ROOT_SQUASHED, is_root, need_root_and, need_tools, skip};
use testkit::tree::{Tree, many_owners, rich_tree};

const PASSWORD: &str = "correct horse battery staple";

/// The environment of every command: the password, and the S3 keys of `server` if given.
fn env(cmd: &mut Command, server: Option<&S3Server>) {
    for k in [
        "RESTIC_PASSWORD",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_REPOSITORY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("RESTIC_PASSWORD", PASSWORD);
    if let Some(s) = server {
        cmd.envs(s.env());
    }
}

/// `pvc-backup mover ARGS`.
fn mover(args: &[&str], server: Option<&S3Server>) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"));
    cmd.arg("mover").args(args);
    env(&mut cmd, server);
    cmd.output().expect("run pvc-backup")
}

/// Debian's restic, the independent reader and writer of the format.
fn restic(repo: &str, args: &[&str], server: Option<&S3Server>) -> Output {
    let mut cmd = Command::new("restic");
    cmd.args(["--no-cache", "-r", repo]).args(args);
    env(&mut cmd, server);
    cmd.output().expect("run restic")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The mover's JSON report (the last line of stdout).
fn report(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no report:\n{}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("report {line:?}: {e}"))
}

/// The entries (files and folders, the root among them) under `root` and the bytes of its
/// files, as the kernel lists them.
fn walk(root: &Path) -> (u64, u64) {
    let (mut entries, mut bytes) = (1, 0);
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            let (n, b) = walk(&e.path());
            entries += n;
            bytes += b;
        } else {
            entries += 1;
            bytes += if meta.is_file() { meta.len() } else { 0 };
        }
    }
    (entries, bytes)
}

/// The ids of the snapshots restic lists.
fn restic_snapshots(repo: &str, server: Option<&S3Server>) -> Vec<String> {
    let o = restic(repo, &["snapshots", "--json"], server);
    expect_code(&o, 0);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("restic JSON");
    list.iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Asserts that `restic check` (with `--read-data`) finds no error.
fn restic_checks_clean(repo: &str, server: Option<&S3Server>) {
    let o = restic(repo, &["check", "--read-data"], server);
    expect_code(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no errors were found"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Asserts that the repository has one key file and that restic reads it with the password,
/// with the scrypt settings restic itself picks here (32 MiB to derive, not rustic's 128 MiB).
fn restic_sees_one_key_with_restics_settings(repo: &str) {
    let o = restic(repo, &["list", "keys"], None);
    expect_code(&o, 0);
    let ids = String::from_utf8_lossy(&o.stdout).into_owned();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 1, "keys: {ids:?}");
    let o = restic(repo, &["cat", "key", ids[0]], None);
    expect_code(&o, 0);
    let key: serde_json::Value = serde_json::from_slice(&o.stdout).expect("key JSON");
    assert_eq!(
        (&key["kdf"], &key["N"], &key["r"], &key["p"]),
        (&"scrypt".into(), &32768.into(), &8.into(), &7.into()),
        "{key}"
    );
}

/// A SeaweedFS of its own for a test, in `dir`; `None` (after saying why) when `tools` or
/// `weed` are missing.
fn s3_server_or_skip(test: &str, tools: &[&str], dir: &Path) -> Option<S3Server> {
    if !need_tools(test, tools) {
        return None;
    }
    match S3Server::start(&dir.join("s3")) {
        Ok(s) => Some(s),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// A source with one of everything (other owners, devices and `trusted.` attributes as root).
fn rich_source(root: PathBuf) -> (Tree, Vec<&'static str>) {
    let t = Tree::new(root);
    let not_copied = rich_tree(&t, is_root());
    (t, not_copied)
}

#[test]
fn a_snapshot_in_a_local_repository_restores_exactly_with_ours_and_with_restic() {
    if !need_tools(
        "a_snapshot_in_a_local_repository_restores_exactly_with_ours_and_with_restic",
        &["restic", "rsync"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, sockets) = rich_source(dir.path().join("src"));
    // More entries than one batch of a restore holds (4,096), with a hard-link pair whose
    // members are listed far apart: the pair must come back as one inode.
    src.dir(b"many");
    for i in 0..4500 {
        src.file(format!("many/{i:04}").as_bytes(), format!("{i}").as_bytes());
    }
    src.hardlink(b"many/0000", b"zz-linked");
    let repo = dir.path().join("repo");
    let r = s(&repo);

    // No repository yet: refused without --init, and nothing is created.
    let o = mover(&["backup", s(&src.root), "--repository", r], None);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("--init"), "{}", stderr(&o));
    assert!(!repo.exists());

    let o = mover(
        &[
            "backup",
            s(&src.root),
            "--repository",
            r,
            "--init",
            "--progress",
            "json",
        ],
        None,
    );
    expect_code(&o, 0);
    let first = report(&o);
    assert_eq!(
        restic_snapshots(r, None),
        vec![first["snapshot"].as_str().unwrap()]
    );
    restic_checks_clean(r, None);
    restic_sees_one_key_with_restics_settings(r);

    // Ours restores it exactly, into a new folder and over a used one.
    let ours = dir.path().join("ours");
    expect_code(&mover(&["restore", "--repository", r, s(&ours)], None), 0);
    assert_mirror(&src.root, &ours, &sockets);
    Tree::new(ours.clone())
        .file(b"extra/inside", b"not in the snapshot")
        .file(b"plain", b"changed")
        .remove(b"link-rel")
        .file(b"link-rel", b"a file where a link was")
        .remove(b"pipe");
    let o = mover(
        &["restore", "--repository", r, s(&ours), "--progress", "json"],
        None,
    );
    expect_code(&o, 0);
    assert_eq!(report(&o)["removed"], 2, "extra/ and extra/inside");
    assert_eq!(report(&o)["summary"]["entries"]["deleted"], 2);
    assert_mirror(&src.root, &ours, &sockets);

    // restic restores it too, under the path the snapshot records.
    let theirs = dir.path().join("theirs");
    expect_code(
        &restic(r, &["restore", "latest", "--target", s(&theirs)], None),
        0,
    );
    let inner = theirs.join(src.root.strip_prefix("/").unwrap());
    // restic 0.14's restore writes a symlink's extended attributes through the link, onto its
    // target (rich_tree gives link-rel one, as root): those two are compared in ours only.
    let through_link: &[&str] = if is_root() {
        &["link-rel", "dir/nested/deep.txt"]
    } else {
        &[]
    };
    // It also writes holes as zeros (`restore --sparse` came with restic 0.15): the content of
    // the sparse files is compared alone.
    let holes = ["sparse.img", "all-hole"];
    for h in holes {
        assert!(
            std::fs::read(src.path(h.as_bytes())).unwrap() == std::fs::read(inner.join(h)).unwrap(),
            "{h}: restic restored other content"
        );
    }
    assert_mirror(
        &src.root,
        &inner,
        &[&sockets[..], through_link, &holes].concat(),
    );
}

#[test]
fn a_snapshot_restic_wrote_restores_exactly() {
    if !need_tools(
        "a_snapshot_restic_wrote_restores_exactly",
        &["restic", "rsync"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, sockets) = rich_source(dir.path().join("src"));
    let repo = dir.path().join("repo");
    let r = s(&repo);
    expect_code(&restic(r, &["init"], None), 0);
    expect_code(&restic(r, &["backup", s(&src.root)], None), 0);
    let o = mover(&["snapshots", "--repository", r, "--json"], None);
    expect_code(&o, 0);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["paths"][0], s(&src.root));
    let target = dir.path().join("restored");
    expect_code(&mover(&["restore", "--repository", r, s(&target)], None), 0);
    // restic 0.14 does not record the extended attributes of symlinks (rich_tree gives one, as
    // root): ours restores them from the snapshots it writes, checked above.
    let link_xattrs_unrecorded: &[&str] = if is_root() { &["link-rel"] } else { &[] };
    assert_mirror(
        &src.root,
        &target,
        &[&sockets[..], link_xattrs_unrecorded].concat(),
    );
    // One folder of it.
    let one = dir.path().join("one");
    expect_code(
        &mover(
            &["restore", "--repository", r, s(&one), "--subdir", "dir"],
            None,
        ),
        0,
    );
    assert_mirror(&src.path(b"dir"), &one, &[]);
}

#[test]
fn backups_to_s3_read_only_what_changed_and_retention_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = s3_server_or_skip(
        "backups_to_s3_read_only_what_changed_and_retention_prunes",
        &["restic", "rsync", "weed"],
        dir.path(),
    ) else {
        return;
    };
    let sv = Some(&server);
    let src = Tree::new(dir.path().join("src"));
    for i in 0..200 {
        src.file(
            format!("files/{:03}", i).as_bytes(),
            format!("file {i} ").repeat(100).as_bytes(),
        );
    }
    src.file(b"big", &vec![7u8; 5 << 20]);
    let url = server.url("backups/shop/data");
    let u = url.as_str();
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            s(&src.root),
            "--repository",
            u,
            "--progress",
            "json",
            "--host",
            "shop/data",
        ];
        args.extend_from_slice(extra);
        let o = mover(&args, sv);
        expect_code(&o, 0);
        report(&o)
    };
    let first = backup(&["--init"]);
    assert_eq!(first["files_new"], 201);
    // The summary every mover command prints, as the cluster reads it: the entries and bytes
    // the kernel sees in the source.
    let (entries, bytes) = walk(&src.root);
    assert_eq!(first["kind"], "repository");
    let summary = &first["summary"];
    assert_eq!(summary["entries"]["total"], entries, "{first}");
    assert_eq!(summary["entries"]["copied"], 201, "{first}");
    assert_eq!(summary["bytes"]["total"], bytes, "{first}");
    // What the repository did not hold yet: at most every byte, once deduplicated.
    let copied = summary["bytes"]["copied"].as_u64().unwrap();
    assert!(copied > 0 && copied <= bytes, "{first}");
    assert_eq!(
        (&summary["result"], &summary["exit_code"]),
        (&"ok".into(), &0.into())
    );

    // Nothing changed: nothing is read again, and next to nothing is added.
    let second = backup(&[]);
    assert_eq!(second["files_unmodified"], 201, "{second}");
    assert_eq!(second["files_new"], 0);
    assert_eq!(second["data_added_files"], 0, "{second}");
    assert_eq!(second["summary"]["entries"]["unchanged"], 201, "{second}");
    assert_eq!(second["summary"]["bytes"]["copied"], 0, "{second}");

    // One file changed: only it is read.
    std::thread::sleep(Duration::from_millis(20));
    src.file(b"files/007", b"changed");
    let third = backup(&[]);
    assert_eq!(third["files_changed"], 1, "{third}");
    assert_eq!(third["files_unmodified"], 200, "{third}");

    let ids = restic_snapshots(u, sv);
    assert_eq!(ids.len(), 3);
    restic_checks_clean(u, sv);
    let o = mover(&["verify", "--repository", u, "--read-data"], sv);
    expect_code(&o, 0);

    let target = dir.path().join("restored");
    expect_code(&mover(&["restore", "--repository", u, s(&target)], sv), 0);
    assert_mirror(&src.root, &target, &[]);
    // An older snapshot, by restic's short id.
    let old = dir.path().join("old");
    let first_id = first["snapshot"].as_str().unwrap();
    expect_code(
        &mover(
            &[
                "restore",
                "--repository",
                u,
                s(&old),
                "--snapshot",
                &first_id[..8],
            ],
            sv,
        ),
        0,
    );
    assert_eq!(
        std::fs::read(old.join("files/007")).unwrap(),
        "file 7 ".repeat(100).as_bytes()
    );

    // Retention: keep the newest two; the oldest is forgotten and its data pruned.
    let fourth = backup(&["--keep-last", "2"]);
    assert_eq!(fourth["forgotten"].as_array().unwrap().len(), 2, "{fourth}");
    let left = restic_snapshots(u, sv);
    assert_eq!(left.len(), 2);
    assert!(left.contains(&fourth["snapshot"].as_str().unwrap().to_string()));
    assert!(!left.contains(&first_id.to_string()));
    restic_checks_clean(u, sv);
}

#[test]
fn an_init_cut_off_after_its_key_is_named_and_not_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1");
    // What an --init cut off between its key and its config leaves: a key file, no config.
    let repo = dir.path().join("repo");
    let whole = dir.path().join("whole");
    expect_code(
        &mover(
            &["backup", s(&src.root), "--repository", s(&whole), "--init"],
            None,
        ),
        0,
    );
    let key = std::fs::read_dir(whole.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    std::fs::create_dir_all(repo.join("keys")).unwrap();
    std::fs::copy(key.path(), repo.join("keys").join(key.file_name())).unwrap();
    let o = mover(
        &["backup", s(&src.root), "--repository", s(&repo), "--init"],
        None,
    );
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("1 key file(s) but no config") && stderr(&o).contains("keys/"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(repo.join("keys")).unwrap().count(), 1);
    assert!(!repo.join("config").exists());
}

#[test]
fn repository_errors_are_clear_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = s3_server_or_skip(
        "repository_errors_are_clear_and_write_nothing",
        &["restic", "weed"],
        dir.path(),
    ) else {
        return;
    };
    let sv = Some(&server);
    let src = Tree::new(dir.path().join("src"));
    src.file(b"a", b"1");
    let url = server.url("errors/repo");
    let u = url.as_str();
    expect_code(
        &mover(&["backup", s(&src.root), "--repository", u, "--init"], sv),
        0,
    );
    let before = restic_snapshots(u, sv);

    let run = |args: &[&str], envs: &[(&str, Option<&str>)]| {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"));
        cmd.arg("mover").args(args);
        env(&mut cmd, sv);
        for (k, v) in envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.output().unwrap()
    };
    let backup = ["backup", s(&src.root), "--repository", u];
    // A wrong password.
    let o = run(&backup, &[("RESTIC_PASSWORD", Some("wrong"))]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("password"), "{}", stderr(&o));
    // No password at all.
    let o = run(&backup, &[("RESTIC_PASSWORD", None)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("RESTIC_PASSWORD"), "{}", stderr(&o));
    // A password file: its first line.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\nignored\n")).unwrap();
    let o = run(
        &["snapshots", "--repository", u, "--password-file", s(&pw)],
        &[("RESTIC_PASSWORD", None)],
    );
    expect_code(&o, 0);
    // No S3 credentials.
    let o = run(&backup, &[("AWS_ACCESS_KEY_ID", None)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("AWS_ACCESS_KEY_ID"), "{}", stderr(&o));
    // Credentials the server refuses.
    let o = run(
        &backup,
        &[("AWS_SECRET_ACCESS_KEY", Some("not-the-secret"))],
    );
    expect_code(&o, 1);
    assert!(stderr(&o).contains("refused access"), "{}", stderr(&o));
    // A bucket that does not exist, without --init: nothing is created there.
    let missing = server.url("no-such-bucket/repo");
    let o = run(&["backup", s(&src.root), "--repository", &missing], &[]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no repository here"), "{}", stderr(&o));
    let o = restic(&missing, &["snapshots"], sv);
    assert_ne!(
        o.status.code(),
        Some(0),
        "restic found a repository in a missing bucket"
    );
    // A server that does not answer.
    let o = run(
        &[
            "snapshots",
            "--repository",
            "s3:http://127.0.0.1:1/bucket/repo",
        ],
        &[],
    );
    expect_code(&o, 1);
    // A URL of a kind restic has but this build has not.
    let o = run(&["snapshots", "--repository", "sftp:host:/repo"], &[]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("not supported"), "{}", stderr(&o));
    // An empty source: refused with 254 before the repository is touched.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&["backup", s(&empty), "--repository", u], &[]);
    expect_code(&o, 254);
    // Options that mean nothing for a repository.
    let o = run(
        &["backup", s(&src.root), "--repository", u, "--checksum"],
        &[],
    );
    expect_code(&o, 2);
    let o = run(&["verify", s(&src.root), "--read-data"], &[]);
    expect_code(&o, 2);

    assert_eq!(
        restic_snapshots(u, sv),
        before,
        "an error added or removed a snapshot"
    );
    restic_checks_clean(u, sv);
}

#[test]
fn a_server_killed_mid_backup_leaves_a_repository_the_next_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = s3_server_or_skip(
        "a_server_killed_mid_backup_leaves_a_repository_the_next_run_completes",
        &["restic", "rsync", "weed"],
        dir.path(),
    ) else {
        return;
    };
    let src = Tree::new(dir.path().join("src"));
    // Incompressible content, so that packs are written for a while.
    for i in 0..40 {
        src.file(format!("blob-{i:02}").as_bytes(), &noise(2 << 20, i + 1));
    }
    let url = server.url("crash/repo");
    let u = url.as_str();
    expect_code(
        &mover(
            &["backup", s(&src.root), "--repository", u, "--init"],
            Some(&server),
        ),
        0,
    );
    src.file(b"late", b"added after the first snapshot");
    for i in 0..40 {
        src.file(format!("new-{i:02}").as_bytes(), &noise(2 << 20, 100 + i));
    }

    // The second backup, with the server killed once it has written part of it.
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"));
    cmd.args(["mover", "backup", s(&src.root), "--repository", u])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    env(&mut cmd, Some(&server));
    let data = server.dir.join("data");
    let before = bytes_under(&data);
    let mut child = cmd.spawn().unwrap();
    // Killed once the server holds 8 MiB more of this backup's 80 MiB, whatever the speed.
    let part_written =
        testkit::poll_until(Duration::from_secs(120), Duration::from_millis(10), || {
            bytes_under(&data) >= before + (8 << 20) || child.try_wait().is_ok_and(|s| s.is_some())
        });
    assert!(part_written, "the backup wrote nothing for 120 s");
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the backup did not notice the server was gone"
    );
    server.restart().unwrap();

    let o = mover(
        &[
            "backup",
            s(&src.root),
            "--repository",
            u,
            "--progress",
            "json",
        ],
        Some(&server),
    );
    expect_code(&o, 0);
    let ids = restic_snapshots(u, Some(&server));
    assert!(ids.contains(&report(&o)["snapshot"].as_str().unwrap().to_string()));
    restic_checks_clean(u, Some(&server));
    let target = dir.path().join("restored");
    expect_code(
        &mover(&["restore", "--repository", u, s(&target)], Some(&server)),
        0,
    );
    assert_mirror(&src.root, &target, &[]);
}

#[test]
fn verify_finds_a_damaged_pack_as_restic_does() {
    if !need_tools("verify_finds_a_damaged_pack_as_restic_does", &["restic"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Tree::new(dir.path().join("src"));
    // Incompressible, so that the pack holding it is by far the largest.
    src.file(b"data", &noise(1 << 20, 1));
    let repo = dir.path().join("repo");
    let r = s(&repo);
    expect_code(
        &mover(&["backup", s(&src.root), "--repository", r, "--init"], None),
        0,
    );
    expect_code(
        &mover(&["verify", "--repository", r, "--read-data"], None),
        0,
    );
    // Flip one byte in the middle of the largest pack.
    let mut packs: Vec<PathBuf> = walk_files(&repo.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let pack = packs.last().expect("a pack");
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();
    // Without --read-data the structure is still whole; with it, the damage is found.
    expect_code(&mover(&["verify", "--repository", r], None), 0);
    let o = mover(&["verify", "--repository", r, "--read-data"], None);
    expect_code(&o, 23);
    assert!(stderr(&o).contains("DAMAGED"), "{}", stderr(&o));
    let o = restic(r, &["check", "--read-data"], None);
    assert_ne!(o.status.code(), Some(0), "restic finds the same damage");
}

/// `len` bytes no compressor shrinks (xorshift from `seed`).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The bytes of the files below `dir` (0 for what cannot be read: the server writes as we read).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_root_squashed_source_is_read_as_each_owner_and_restored_with_the_pods_capabilities() {
    if !need_root_and(
        "a_root_squashed_source_is_read_as_each_owner_and_restored_with_the_pods_capabilities",
        &["setpriv", "rsync", "restic"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    let repo = dir.path().join("repo");
    let r = s(&repo);
    let mut cmd = Command::new("setpriv");
    cmd.args(ROOT_SQUASHED)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "backup", s(&src.root), "--repository", r, "--init"]);
    env(&mut cmd, None);
    let o = cmd.output().unwrap();
    expect_code(&o, 0);
    let target = dir.path().join("restored");
    expect_code(&mover(&["restore", "--repository", r, s(&target)], None), 0);
    assert_mirror(&src.root, &target, &[]);
    restic_checks_clean(r, None);
    // A restore in the mover's pod: no CAP_FSETID, so a plain chmod would drop the setgid bit
    // of the entries whose group is not root's, and punching holes would clear both set-id bits.
    src.owner(b"", 1001, 3000)
        .mode(b"", 0o2775)
        .file(b"d/setgid-tool", b"#!/bin/true\n")
        .owner(b"d/setgid-tool", 1004, 3000)
        .mode(b"d/setgid-tool", 0o2755)
        .file(
            b"d/setuid-image",
            &[&[0u8; 128 << 10][..], b"code"].concat(),
        )
        .owner(b"d/setuid-image", 1004, 3000)
        .mode(b"d/setuid-image", 0o6755);
    let mut cmd = Command::new("setpriv");
    cmd.args(ROOT_SQUASHED)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "backup", s(&src.root), "--repository", r]);
    env(&mut cmd, None);
    expect_code(&cmd.output().unwrap(), 0);
    let in_pod = dir.path().join("in-pod");
    let mut cmd = Command::new("setpriv");
    cmd.args(MOVER_POD)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "restore", "--repository", r, s(&in_pod)]);
    env(&mut cmd, None);
    expect_code(&cmd.output().unwrap(), 0);
    assert_mirror(&src.root, &in_pod, &[]);
}
