//! Refusals that protect the target, and writes that never leave it.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use contract::ExitCode;
use mover::{Error, Mirror, Options};
use testkit::oracle::assert_mirror;

use super::util::{Pair, assert_ok, sync_with};

fn prepare(p: &Pair, opts: Options) -> Result<Mirror, Error> {
    Mirror::prepare(&p.src.root, &p.dst.root, opts)
}

fn target_listing(p: &Pair) -> Vec<String> {
    let mut v: Vec<String> = walk(&p.dst.root);
    v.sort();
    v
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        out.push(e.path().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn an_empty_source_is_refused_and_the_target_untouched() {
    let p = Pair::new();
    p.dst.file(b"precious/backup", b"keep me");
    let before = target_listing(&p);
    let err = prepare(&p, Options::default()).unwrap_err();
    assert!(matches!(err, Error::SourceEmpty { .. }), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Refused.code());
    assert!(err.to_string().contains("--allow-empty"));
    assert_eq!(target_listing(&p), before);
}

#[test]
fn a_fresh_ext4_source_with_only_lost_found_counts_as_empty() {
    let p = Pair::new();
    p.src.dir(b"lost+found");
    p.dst.file(b"backup", b"keep");
    assert!(matches!(
        prepare(&p, Options::default()),
        Err(Error::SourceEmpty { .. })
    ));
    assert!(p.dst.path(b"backup").exists());
}

#[test]
fn a_missing_source_is_refused() {
    let p = Pair::new();
    std::fs::remove_dir(&p.src.root).unwrap();
    p.dst.file(b"backup", b"keep");
    let err = prepare(&p, Options::default()).unwrap_err();
    assert!(matches!(err, Error::SourceMissing { .. }), "{err}");
    assert_eq!(err.exit_code(), 254);
    assert!(p.dst.path(b"backup").exists());
}

#[test]
fn allow_empty_mirrors_an_empty_source() {
    let p = Pair::new();
    p.dst.file(b"old", b"x");
    let s = sync_with(
        &p.src.root,
        &p.dst.root,
        Options {
            allow_empty: true,
            ..Options::default()
        },
    );
    assert_ok(&s);
    assert!(!p.dst.path(b"old").exists());
    assert!(p.dst.path(b".pvc-backup/last-sync.json").exists());
}

#[test]
fn subdir_mirrors_only_that_folder() {
    let p = Pair::new();
    p.src.file(b"app/data/x", b"1").file(b"other/y", b"2");
    let opts = Options {
        subdir: Some("app/data".into()),
        ..Options::default()
    };
    assert_ok(&sync_with(&p.src.root, &p.dst.root, opts));
    assert_eq!(std::fs::read(p.dst.path(b"x")).unwrap(), b"1");
    assert!(!p.dst.path(b"y").exists() && !p.dst.path(b"other").exists());
    assert_mirror(&p.src.path(b"app/data"), &p.dst.root, &[]);
}

#[test]
fn a_subdir_that_escapes_the_source_is_refused() {
    let p = Pair::new();
    p.src
        .file(b"real/f", b"1")
        .symlink(b"via-link", b"real")
        .symlink(b"out", b"/etc");
    for bad in [
        "../src",
        "/etc",
        "via-link",
        "out",
        "real/../../x",
        "real/f",
    ] {
        let err = prepare(
            &p,
            Options {
                subdir: Some(bad.into()),
                ..Options::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage.code(), "{bad}: {err}");
    }
    let err = prepare(
        &p,
        Options {
            subdir: Some("missing".into()),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Refused.code());
    assert!(!p.dst.root.exists(), "a refused run created the target");
}

#[test]
fn overlapping_source_and_target_are_refused() {
    let p = Pair::new();
    p.src.file(b"inner/f", b"1");
    let s = p.src.root.clone();
    let link = p._dir.path().join("alias");
    std::os::unix::fs::symlink(&s, &link).unwrap();
    let cases: [(PathBuf, PathBuf); 4] = [
        (s.clone(), s.clone()),
        (s.clone(), s.join("inner")),
        (s.join("inner"), s.clone()),
        (s.clone(), link.join("inner/new")),
    ];
    assert!(!link.join("inner/new").exists());
    for (a, b) in cases {
        let existed = b.exists();
        let err = Mirror::prepare(&a, &b, Options::default()).unwrap_err();
        assert_eq!(
            err.exit_code(),
            ExitCode::Usage.code(),
            "{a:?} -> {b:?}: {err}"
        );
        assert_eq!(b.exists(), existed, "a refused run created {b:?}");
    }
}

#[test]
fn symlinks_planted_in_the_target_are_replaced_not_followed() {
    let p = Pair::new();
    let outside = p._dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"untouched").unwrap();
    p.src
        .file(b"d/file", b"into d")
        .file(b"f", b"into f")
        .file(b"n/deeper/g", b"into n");
    p.dst.dir(b"n");
    std::os::unix::fs::symlink(&outside, p.dst.path(b"d")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), p.dst.path(b"f")).unwrap();
    std::os::unix::fs::symlink(&outside, p.dst.path(b"n/deeper")).unwrap();
    assert_ok(&p.sync());
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "something was written outside"
    );
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}

#[test]
fn a_state_folder_that_is_a_symlink_is_refused() {
    let p = Pair::new();
    p.src.file(b"f", b"1");
    let outside = p._dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    p.dst.dir(b"");
    std::os::unix::fs::symlink(&outside, p.dst.path(b".pvc-backup")).unwrap();
    let err = prepare(&p, Options::default()).unwrap_err();
    assert_eq!(err.exit_code(), ExitCode::Usage.code(), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn the_state_folder_is_neither_copied_nor_deleted() {
    let p = Pair::new();
    p.src
        .file(b".pvc-backup/from-source", b"state of another backup")
        .file(b"data", b"1");
    p.dst.file(b".pvc-backup/mine", b"keep");
    assert_ok(&p.sync());
    assert!(p.dst.path(b".pvc-backup/mine").exists());
    assert!(!p.dst.path(b".pvc-backup/from-source").exists());
}

#[test]
fn a_second_mover_on_the_same_target_is_refused_until_the_first_ends() {
    let p = Pair::new();
    p.src.file(b"f", b"1");
    let first = prepare(&p, Options::default()).unwrap();
    let err = prepare(&p, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(err.exit_code(), ExitCode::Fatal.code());
    assert!(
        err.to_string().contains(&std::process::id().to_string()),
        "names the holder: {err}"
    );
    assert_ok(&first.run().unwrap());
    assert!(
        prepare(&p, Options::default()).is_ok(),
        "the lock was released"
    );
}

#[test]
fn a_directory_mtime_is_set_after_its_contents() {
    let p = Pair::new();
    p.src
        .file(b"d/a", b"1")
        .file(b"d/sub/b", b"2")
        .mtime(b"d/sub", 1_234_567_890, 111)
        .mtime(b"d", 1_111_111_111, 222);
    assert_ok(&p.sync());
    let m = std::fs::metadata(p.dst.path(b"d")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_111_111_111, 222));
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}
