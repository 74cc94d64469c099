//! `--exclude`, `--exclude-caches` and `--delete-excluded`, checked with rsync given the same
//! filters, and with std's view of both trees.

use std::process::Command;

use mover::Options;
use mover::exclude::{CACHEDIR_SIGNATURE, Excludes};
use testkit::oracle::Snapshot;
use testkit::skip::need_tools;

use super::util::{Pair, assert_ok, sync_with};

fn opts(patterns: &[&str], caches: bool, delete: bool) -> Options {
    let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    Options {
        excludes: Excludes::new(&p, caches, delete).unwrap(),
        ..Options::default()
    }
}

/// What `rsync -aHAXn --delete [--delete-excluded] --itemize-changes` with these filters would
/// still change (rsync's own pattern rules agree with gitignore's for the ones used here).
fn rsync_left(pair: &Pair, filters: &[&str], delete_excluded: bool) -> Vec<String> {
    let mut cmd = Command::new("rsync");
    cmd.args([
        "-aHAXn",
        "--numeric-ids",
        "--delete",
        "--itemize-changes",
        "--exclude=/.pvc-backup",
    ]);
    if delete_excluded {
        // The mover's own state folder is never deleted: protect it from rsync's deletion too.
        cmd.args(["--delete-excluded", "--filter=P /.pvc-backup"]);
    }
    for f in filters {
        cmd.arg(format!("--exclude={f}"));
    }
    let out = cmd
        .arg(format!("{}/", pair.src.root.display()))
        .arg(format!("{}/", pair.dst.root.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn tree(pair: &Pair) {
    pair.src
        .file(b"keep.txt", b"copied")
        .file(b"debug.log", b"left out at the top")
        .file(b"deep/inner/trace.log", b"left out at any depth")
        .file(b"build/out.o", b"left out: anchored folder")
        .file(
            b"src/build/kept.rs",
            b"a build folder below the top is copied",
        )
        .file(b"logs/a/b/old.gz", b"left out by logs/**/*.gz")
        .file(b"logs/a/b/new.txt", b"copied")
        .file(b"other/logs/x.gz", b"copied: logs/ anchored at the top");
}

const PATTERNS: [&str; 3] = ["*.log", "/build/", "logs/**/*.gz"];

#[test]
fn excluded_entries_are_not_copied_and_the_rest_mirrors() {
    if !need_tools(
        "excluded_entries_are_not_copied_and_the_rest_mirrors",
        &["rsync"],
    ) {
        return;
    }
    let pair = Pair::new();
    tree(&pair);
    let s = sync_with(
        &pair.src.root,
        &pair.dst.root,
        opts(&PATTERNS, false, false),
    );
    assert_ok(&s);
    assert_eq!(s.entries.excluded, 4, "debug.log, trace.log, build, old.gz");
    let seen = Snapshot::take(&pair.dst.root, &[]);
    let names: Vec<String> = seen
        .entries
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    for gone in [
        "debug.log",
        "deep/inner/trace.log",
        "build",
        "logs/a/b/old.gz",
    ] {
        assert!(
            !names.contains(&gone.to_string()),
            "{gone} copied: {names:?}"
        );
    }
    for kept in [
        "keep.txt",
        "src/build/kept.rs",
        "logs/a/b/new.txt",
        "other/logs/x.gz",
    ] {
        assert!(
            names.contains(&kept.to_string()),
            "{kept} missing: {names:?}"
        );
    }
    let left = rsync_left(&pair, &PATTERNS, false);
    assert!(
        left.is_empty(),
        "rsync would still change:\n{}",
        left.join("\n")
    );

    // Verifying against the source leaves out what the copy left out, and only that.
    let ex = opts(&PATTERNS, false, false).excludes;
    let verified =
        mover::verify::verify_excluding(&pair.dst.root, "latest", Some(&pair.src.root), &ex)
            .unwrap();
    assert!(verified.iter().all(|(_, o)| o.ok()), "{verified:?}");
    let plain = mover::verify::verify(&pair.dst.root, "latest", Some(&pair.src.root)).unwrap();
    assert_eq!(plain[0].1.differences_total, 4, "{plain:?}");
}

#[test]
fn target_entries_an_exclude_matches_stay_unless_delete_excluded() {
    if !need_tools(
        "target_entries_an_exclude_matches_stay_unless_delete_excluded",
        &["rsync"],
    ) {
        return;
    }
    let pair = Pair::new();
    tree(&pair);
    // A first full copy, then the excludes: the target holds what they match.
    assert_ok(&pair.sync());
    pair.src
        .file(b"extra.log", b"only in the source, never copied");
    pair.dst
        .file(b"only-in-target.log", b"kept: an exclude matches it");
    pair.dst
        .file(b"only-in-target.txt", b"removed: no exclude matches it");
    let s = sync_with(
        &pair.src.root,
        &pair.dst.root,
        opts(&PATTERNS, false, false),
    );
    assert_ok(&s);
    assert!(pair.dst.path(b"debug.log").exists());
    assert!(pair.dst.path(b"build/out.o").exists());
    assert!(pair.dst.path(b"only-in-target.log").exists());
    assert!(!pair.dst.path(b"only-in-target.txt").exists());
    assert!(!pair.dst.path(b"extra.log").exists());
    let left = rsync_left(&pair, &PATTERNS, false);
    assert!(
        left.is_empty(),
        "rsync would still change:\n{}",
        left.join("\n")
    );

    let s = sync_with(&pair.src.root, &pair.dst.root, opts(&PATTERNS, false, true));
    assert_ok(&s);
    for gone in [
        &b"debug.log"[..],
        b"build",
        b"only-in-target.log",
        b"logs/a/b/old.gz",
    ] {
        assert!(
            !pair.dst.path(gone).exists(),
            "{} kept despite --delete-excluded",
            String::from_utf8_lossy(gone)
        );
    }
    let left = rsync_left(&pair, &PATTERNS, true);
    assert!(
        left.is_empty(),
        "rsync would still change:\n{}",
        left.join("\n")
    );
}

#[test]
fn folders_tagged_as_caches_are_skipped_with_exclude_caches() {
    if !need_tools(
        "folders_tagged_as_caches_are_skipped_with_exclude_caches",
        &["rsync"],
    ) {
        return;
    }
    let pair = Pair::new();
    let mut tag = CACHEDIR_SIGNATURE.to_vec();
    tag.extend_from_slice(b"\n# This file is a cache directory tag.\n");
    pair.src
        .file(b"data/file", b"copied")
        .file(b"data/.cache/CACHEDIR.TAG", &tag)
        .file(b"data/.cache/blob", b"left out")
        .file(b"fake/CACHEDIR.TAG", b"Signature: not the right one\n")
        .file(b"fake/blob", b"copied: the tag is not signed");
    let s = sync_with(&pair.src.root, &pair.dst.root, opts(&[], true, false));
    assert_ok(&s);
    assert_eq!(s.entries.excluded, 1);
    assert!(!pair.dst.path(b"data/.cache").exists());
    assert!(pair.dst.path(b"fake/blob").exists());
    assert!(pair.dst.path(b"data/file").exists());
    let left = rsync_left(&pair, &["/data/.cache/"], false);
    assert!(
        left.is_empty(),
        "rsync would still change:\n{}",
        left.join("\n")
    );
    // Without the option, the cache is copied like anything else.
    let s = sync_with(&pair.src.root, &pair.dst.root, Options::default());
    assert_ok(&s);
    assert!(pair.dst.path(b"data/.cache/blob").exists());
}
