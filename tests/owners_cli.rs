//! Root-squashed sources: the mover runs as root without CAP_DAC_OVERRIDE and
//! CAP_DAC_READ_SEARCH (what root_squash leaves root with, reproduced with setpriv), keeping
//! CHOWN, FOWNER, SETUID and SETGID, and reads each entry as its owner.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use contract::Summary;
use mover::check::CheckReport;
use testkit::oracle::assert_mirror;
use testkit::skip::{MOVER_POD, ROOT_SQUASHED, need_root_and};
use testkit::tree::{Tree, many_owners};

fn squashed(args: &[&str], paths: &[&Path]) -> std::process::Output {
    under_setpriv(&ROOT_SQUASHED, args, paths)
}

/// Runs pvc-backup under `setpriv` with `setpriv_args` (which end with `--`).
fn under_setpriv(setpriv_args: &[&str], args: &[&str], paths: &[&Path]) -> std::process::Output {
    Command::new("setpriv")
        .args(setpriv_args)
        .arg(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(args)
        .args(paths)
        .output()
        .expect("run pvc-backup under setpriv")
}

/// The summary: the last line of `--progress json` output.
fn summary_of(o: &std::process::Output) -> Summary {
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

fn ready(test: &str) -> bool {
    need_root_and(test, &["setpriv", "rsync"])
}

#[test]
fn a_root_squashed_source_is_copied_exactly_as_each_owner() {
    if !ready("a_root_squashed_source_is_copied_exactly_as_each_owner") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    let dst = dir.path().join("dst");
    let o = squashed(&["mover", "sync", "--progress", "json"], &[&src.root, &dst]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let summary = summary_of(&o);
    assert_eq!(summary.entries.failed, 0, "{:?}", summary.errors);
    // Checked by full root, with rsync, std's stat and getfacl.
    assert_mirror(&src.root, &dst, &[]);
}

#[test]
fn without_acting_as_owners_the_unreadable_entries_are_listed_and_check_agrees() {
    if !ready("without_acting_as_owners_the_unreadable_entries_are_listed_and_check_agrees") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    let dst = dir.path().join("dst");
    let o = squashed(
        &[
            "mover",
            "sync",
            "--impersonate",
            "never",
            "--progress",
            "json",
        ],
        &[&src.root, &dst],
    );
    assert_eq!(
        o.status.code(),
        Some(23),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = summary_of(&o);
    let mut failed: Vec<String> = summary.errors.iter().map(|e| e.path.clone()).collect();
    failed.sort();
    assert!(!failed.is_empty(), "a partial run must list what failed");
    assert!(failed.contains(&"a".to_string()), "{failed:?}");
    let c = squashed(
        &["mover", "check", "--impersonate", "never", "--json"],
        &[&src.root],
    );
    let text = String::from_utf8(c.stdout).unwrap();
    let report: CheckReport =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut unreadable: Vec<String> = report.unreadable.iter().map(|e| e.path.clone()).collect();
    unreadable.sort();
    assert_eq!(c.status.code(), Some(23));
    assert!(!report.complete);
    assert_eq!(
        unreadable, failed,
        "check and sync disagree on what cannot be read"
    );
}

#[test]
fn check_counts_owners_and_groups_like_the_kernel_does() {
    if !ready("check_counts_owners_and_groups_like_the_kernel_does") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    let c = squashed(&["mover", "check", "--json"], &[&src.root]);
    assert_eq!(
        c.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&c.stderr)
    );
    let report: CheckReport = serde_json::from_slice(&c.stdout).unwrap();
    assert!(report.complete && report.unreadable.is_empty());
    assert!(report.privileges.can_act_as_owners);
    assert!(
        !report
            .privileges
            .capabilities
            .iter()
            .any(|c| c == "DAC_OVERRIDE")
    );
    // The same counts from std's lstat over the tree, walked by full root.
    let (mut uids, mut gids) = (BTreeMap::new(), BTreeMap::new());
    let mut stack = vec![src.root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            *uids.entry(m.uid()).or_insert(0u64) += 1;
            *gids.entry(m.gid()).or_insert(0u64) += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    let got = |v: &[mover::check::IdCount]| {
        v.iter()
            .map(|c| (c.id, c.entries))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(got(&report.owners), uids);
    assert_eq!(got(&report.groups), gids);
    assert_eq!(report.entries, uids.values().sum::<u64>());
}

#[test]
fn a_protected_target_is_filled_and_updated_as_each_owner() {
    if !ready("a_protected_target_is_filled_and_updated_as_each_owner") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    // The target's top directory belongs to another uid and only it may enter.
    let dst = Tree::new(dir.path().join("dst"));
    dst.owner(b"", 4444, 4444).mode(b"", 0o700);
    let run = |what: &str| {
        let o = squashed(&["mover", "sync"], &[&src.root, &dst.root]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_mirror(&src.root, &dst.root, &[]);
    };
    run("first run");
    // Both sides now hold 0700 directories of several owners: change things across them.
    src.file(b"a/b/c/new-c", b"new file of 1003")
        .owner(b"a/b/c/new-c", 1003, 1003)
        .mode(b"a/b/c/new-c", 0o600)
        .remove(b"a/own-a-link")
        .file(b"a/b/own-b", b"rewritten by 1002")
        .owner(b"a/b/own-b", 1002, 1002)
        .mode(b"d/e/deep", 0o640)
        .owner(b"d/shared-group", 1005, 3000)
        .xattr(b"a/b/c/own-c", "user.added", b"later");
    run("second run");
    // Nothing left to do: the third run changes nothing.
    let o = squashed(
        &["mover", "sync", "--progress", "json"],
        &[&src.root, &dst.root],
    );
    let summary = summary_of(&o);
    assert_eq!(
        (
            summary.exit_code,
            summary.entries.copied,
            summary.entries.updated
        ),
        (0, 0, 0)
    );
}

/// Runs pvc-backup as uid/gid 65534 with no capability at all.
fn unprivileged(args: &[&str], paths: &[&Path]) -> std::process::Output {
    under_setpriv(&testkit::skip::AS_NOBODY, args, paths)
}

#[test]
fn an_unprivileged_copy_keeps_owners_in_its_manifest_and_a_restore_applies_them() {
    if !ready("an_unprivileged_copy_keeps_owners_in_its_manifest_and_a_restore_applies_them") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let src = Tree::new(dir.path().join("src"));
    src.file(b"pub/readme", b"for everyone")
        .owner(b"pub/readme", 1001, 1001)
        .owner(b"pub", 1002, 3000)
        .mode(b"pub", 0o2775)
        .file(b"pub/tool", b"#!/bin/true\n")
        .owner(b"pub/tool", 0, 0)
        .mode(b"pub/tool", 0o4755)
        .file(b"pub/sub/data", b"readable data of 1003")
        .owner(b"pub/sub/data", 1003, 1004)
        .owner(b"pub/sub", 1003, 1003)
        .symlink(b"pub/sub/link", b"data")
        .owner(b"pub/sub/link", 1005, 1005)
        .file(b"secret.key", b"0600 of 1002")
        .owner(b"secret.key", 1002, 1002)
        .mode(b"secret.key", 0o600)
        .file(b"private/inside", b"in a 0700 dir")
        .owner(b"private/inside", 1003, 1003)
        .owner(b"private", 1003, 1003)
        .mode(b"private", 0o700)
        .mode(b"", 0o755);
    let backup = Tree::new(dir.path().join("backup"));
    backup.owner(b"", 65534, 65534);

    let o = unprivileged(
        &["mover", "sync", "--progress", "json"],
        &[&src.root, &backup.root],
    );
    assert_eq!(
        o.status.code(),
        Some(23),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = summary_of(&o);
    let mut failed: Vec<&str> = summary.errors.iter().map(|e| e.path.as_str()).collect();
    failed.sort();
    assert_eq!(
        failed,
        ["private", "secret.key"],
        "exactly the unreadable entries"
    );
    // The copy belongs to the mover's uid and carries no setuid or setgid bit.
    for p in [&b"pub/tool"[..], b"pub", b"pub/sub/data"] {
        let m = std::fs::symlink_metadata(backup.path(p)).unwrap();
        assert_eq!(m.uid(), 65534, "{:?}", String::from_utf8_lossy(p));
        assert_eq!(
            m.mode() & 0o6000,
            0,
            "{:?} kept a setuid/setgid bit",
            String::from_utf8_lossy(p)
        );
    }
    assert!(backup.path(b".pvc-backup/metadata.jsonl").exists());

    // A privileged restore from the backup gives back the exact owners and modes.
    let restored = dir.path().join("restored");
    let o = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "sync"])
        .arg(&backup.root)
        .arg(&restored)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_mirror(&src.root, &restored, &["private", "secret.key"]);
    assert!(!restored.join(".pvc-backup/metadata.jsonl").exists());

    // One folder of the backup, restored with --subdir, gets its recorded owners too.
    let one = dir.path().join("restored-pub");
    let o = Command::new(assert_cmd::cargo::cargo_bin!("pvc-backup"))
        .args(["mover", "sync", "--subdir", "pub"])
        .arg(&backup.root)
        .arg(&one)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_mirror(&src.path(b"pub"), &one, &[]);
    assert_eq!(
        std::fs::metadata(&one).unwrap().uid(),
        1002,
        "the folder itself"
    );
}

/// Runs pvc-backup as root with exactly the mover pod's five capabilities (no CAP_FSETID).
fn five_capabilities(args: &[&str], paths: &[&Path]) -> std::process::Output {
    under_setpriv(&MOVER_POD, args, paths)
}

#[test]
fn the_five_capabilities_keep_setgid_bits_of_groups_the_mover_is_not_in() {
    if !ready("the_five_capabilities_keep_setgid_bits_of_groups_the_mover_is_not_in") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = many_owners(dir.path().join("src"));
    // Without CAP_FSETID the kernel drops these bits from a chmod and says nothing.
    src.file(b"d/setgid-tool", b"#!/bin/true\n")
        .owner(b"d/setgid-tool", 1004, 3000)
        .mode(b"d/setgid-tool", 0o2755)
        .file(b"root-group-dir/x", b"x")
        .owner(b"root-group-dir", 0, 3001)
        .mode(b"root-group-dir", 0o2775);
    let dst = dir.path().join("dst");
    for round in ["first copy", "re-run on an equal target"] {
        let o = five_capabilities(&["mover", "sync", "--progress", "json"], &[&src.root, &dst]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{round}: {err}");
        assert_eq!(summary_of(&o).entries.failed, 0, "{round}");
        assert_mirror(&src.root, &dst, &[]);
    }
    for p in [&b"d"[..], b"d/e", b"d/setgid-tool", b"root-group-dir"] {
        let m = std::fs::symlink_metadata(dst.join(String::from_utf8_lossy(p).as_ref())).unwrap();
        assert_eq!(
            m.mode() & 0o2000,
            0o2000,
            "{:?}",
            String::from_utf8_lossy(p)
        );
    }
}

/// Runs pvc-backup with the mover pod's capabilities less the two that root_squash takes away:
/// CHOWN, FOWNER, SETUID and SETGID, without DAC_OVERRIDE and DAC_READ_SEARCH.
fn squashed_pod(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let setpriv = [
        "--bounding-set=-all,+chown,+fowner,+setuid,+setgid",
        "--inh-caps=-all",
        "--",
    ];
    under_setpriv(&setpriv, args, paths)
}

/// Entries whose owner bits refuse what their group bits or a named ACL entry allow: only an
/// identity that is not their owner may read them, or write into them.
fn refused_owners(root: PathBuf) -> Tree {
    let t = Tree::new(root);
    t.file(
        b"grp/only-group",
        b"1001's file that only group 3003 may read",
    )
    .owner(b"grp/only-group", 1001, 3003)
    .mode(b"grp/only-group", 0o040)
    .xattr(b"grp/only-group", "user.note", b"read as a member of 3003")
    .file(b"team/report", b"in a folder only group 3003 may enter")
    .owner(b"team/report", 1002, 3003)
    .mode(b"team/report", 0o040)
    .file(b"team/other-group", b"1003's, group 1003, in 3003's folder")
    .owner(b"team/other-group", 1003, 1003)
    .mode(b"team/other-group", 0o604)
    .owner(b"team", 1001, 3003)
    .mode(b"team", 0o2070)
    .owner(b"grp", 1001, 1001)
    .mode(b"grp", 0o755)
    .file(b"acl/named-user", b"owner 1001 may not read it, 1002 may")
    .owner(b"acl/named-user", 1001, 1001)
    .mode(b"acl/named-user", 0o000)
    .acl(b"acl/named-user", &["-m", "u:1002:r"])
    .file(b"acl/named-group", b"group 4004 may read it")
    .owner(b"acl/named-group", 1001, 1001)
    .mode(b"acl/named-group", 0o000)
    .acl(b"acl/named-group", &["-m", "g:4004:r"])
    .file(
        b"acl/closed/inside",
        b"in a folder group 4005 may enter and write to",
    )
    .owner(b"acl/closed/inside", 1001, 4005)
    .mode(b"acl/closed/inside", 0o040)
    .owner(b"acl/closed", 1001, 1001)
    .mode(b"acl/closed", 0o000)
    .acl(b"acl/closed", &["-m", "g:4005:rwx"])
    .owner(b"acl", 1001, 1001)
    .mode(b"acl", 0o755);
    t.owner(b"", 1001, 1001).mode(b"", 0o755);
    t
}

#[test]
fn entries_their_owner_may_not_read_are_read_as_a_member_the_permissions_allow() {
    let test = "entries_their_owner_may_not_read_are_read_as_a_member_the_permissions_allow";
    if !need_root_and(test, &["setpriv", "rsync", "setfacl", "getfacl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = refused_owners(dir.path().join("src"));
    let dst = dir.path().join("dst");

    // check says which identity a copy takes for each such entry.
    let c = squashed_pod(&["mover", "check", "--json"], &[&src.root]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert_eq!(
        c.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&c.stderr)
    );
    let report: CheckReport = serde_json::from_str(text.trim()).unwrap();
    assert!(report.complete, "{:?}", report.unreadable);
    let used: BTreeMap<&str, (u32, u32, &str)> = report
        .identities
        .iter()
        .map(|u| {
            let via = match u.via {
                mover::access::Via::Group => "group",
                mover::access::Via::AclUser => "acl-user",
                mover::access::Via::AclGroup => "acl-group",
                mover::access::Via::Other => "other",
            };
            (u.path.as_str(), (u.uid, u.gid, via))
        })
        .collect();
    let want: BTreeMap<&str, (u32, u32, &str)> = [
        ("grp/only-group", (65534, 3003, "group")),
        ("team", (65534, 3003, "group")),
        ("team/report", (65534, 3003, "group")),
        ("acl/named-user", (1002, 1001, "acl-user")),
        ("acl/named-group", (65534, 4004, "acl-group")),
        ("acl/closed", (65534, 4005, "acl-group")),
        ("acl/closed/inside", (65534, 4005, "group")),
    ]
    .into();
    assert_eq!(used, want);
    assert_eq!(report.identities_total, 7);
    let human = squashed_pod(&["mover", "check"], &[&src.root]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("grp/only-group: as uid 65534 gid 3003 (a member of its group)"),
        "{human}"
    );

    // The copy is complete and exact, checked by full root with rsync, std's stat and getfacl.
    let o = squashed_pod(&["mover", "sync", "--progress", "json"], &[&src.root, &dst]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(summary_of(&o).entries.failed, 0);
    assert_mirror(&src.root, &dst, &[]);
    let note = Command::new("getfattr")
        .args(["--only-values", "-n", "user.note"])
        .arg(dst.join("grp/only-group"))
        .output();
    if let Ok(note) = note
        && note.status.success()
    {
        assert_eq!(note.stdout, b"read as a member of 3003");
    }

    // Writing into the target's folders that only group 3003 (or ACL group 4005) may enter: a
    // new file of another owner and group, a changed one, and one removed.
    src.file(b"team/new", b"made by 1004, group 1004")
        .owner(b"team/new", 1004, 1004)
        .mode(b"team/new", 0o640)
        .file(b"team/report", b"rewritten")
        .owner(b"team/report", 1002, 3003)
        .mode(b"team/report", 0o040)
        .remove(b"team/other-group")
        .file(b"acl/closed/second", b"another one")
        .owner(b"acl/closed/second", 1001, 4005)
        .mode(b"acl/closed/second", 0o040)
        .mode(b"team", 0o2070)
        .acl(b"acl/closed", &["-m", "g:4005:rwx"]);
    let o = squashed_pod(&["mover", "sync", "--progress", "json"], &[&src.root, &dst]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_mirror(&src.root, &dst, &[]);
    let o = squashed_pod(&["mover", "sync", "--progress", "json"], &[&src.root, &dst]);
    let s = summary_of(&o);
    assert_eq!(
        (s.exit_code, s.entries.copied, s.entries.updated),
        (0, 0, 0)
    );
}
