//! One of everything, mirrored exactly.

use std::os::unix::fs::MetadataExt;

use testkit::oracle::assert_mirror;
use testkit::skip::is_root;
use testkit::tree::rich_tree;

use super::util::{Pair, assert_ok};

#[test]
fn every_kind_of_entry_and_attribute_is_mirrored() {
    let p = Pair::new();
    let sockets = rich_tree(&p.src, is_root());
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(s.entries.skipped, 1, "the socket is skipped");
    assert!(
        s.notes
            .iter()
            .any(|n| n.path == "sock" && n.note.contains("socket"))
    );
    assert_mirror(&p.src.root, &p.dst.root, &sockets);
}

#[test]
fn a_second_run_rewrites_nothing() {
    let p = Pair::new();
    let sockets = rich_tree(&p.src, is_root());
    assert_ok(&p.sync());
    let before = std::fs::metadata(p.dst.path(b"plain")).unwrap().ino();
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(
        (
            s.entries.copied,
            s.entries.linked,
            s.entries.updated,
            s.entries.deleted
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.bytes.copied, 0);
    assert_eq!(
        std::fs::metadata(p.dst.path(b"plain")).unwrap().ino(),
        before,
        "file was rewritten"
    );
    assert_mirror(&p.src.root, &p.dst.root, &sockets);
}

#[test]
fn sparse_files_keep_their_holes() {
    let p = Pair::new();
    p.src.sparse(
        b"vm.img",
        256 << 20,
        &[(1 << 20, b"data"), (200 << 20, b"more")],
    );
    assert_ok(&p.sync());
    let (s, d) = (
        std::fs::metadata(p.src.path(b"vm.img")).unwrap(),
        std::fs::metadata(p.dst.path(b"vm.img")).unwrap(),
    );
    assert_eq!(d.len(), 256 << 20);
    // The kernel's count of allocated blocks: a few pages, not 256 MiB.
    assert!(
        d.blocks() <= s.blocks() + 64,
        "target allocates {} blocks, source {}",
        d.blocks(),
        s.blocks()
    );
    assert!(d.blocks() * 512 < 1 << 20);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}

#[test]
fn a_hard_link_group_of_many_names_is_one_inode() {
    let p = Pair::new();
    p.src.file(b"a/first", b"shared");
    for i in 0..40 {
        p.src.dir(format!("d{}", i % 7).as_bytes());
        p.src
            .hardlink(b"a/first", format!("d{}/name{i}", i % 7).as_bytes());
    }
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(s.entries.copied + s.entries.linked, 41);
    assert_eq!(
        std::fs::metadata(p.dst.path(b"a/first")).unwrap().nlink(),
        41
    );
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}

#[test]
fn the_summary_is_written_into_the_state_folder() {
    let p = Pair::new();
    p.src.file(b"x", b"1");
    let s = p.sync();
    let text = std::fs::read_to_string(p.dst.path(b".pvc-backup/last-sync.json")).unwrap();
    let on_disk: contract::Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk, s);
    assert_eq!(on_disk.entries.copied, 1);
}

/// Regression: the counting pass (on with progress output) read the source root through a
/// duplicate of the copy's descriptor; the two shared one directory offset, and the copy could
/// see only part of the root, or none of it.
#[test]
fn the_counting_pass_never_hides_entries_from_the_copy() {
    let p = Pair::new();
    for i in 0..400 {
        p.src.file(format!("f{i:03}").as_bytes(), b"x");
    }
    for round in 0..40 {
        std::fs::remove_dir_all(&p.dst.root).ok();
        let opts = mover::Options {
            count_ahead: true,
            ..mover::Options::default()
        };
        let s = super::util::sync_with(&p.src.root, &p.dst.root, opts);
        assert_eq!(
            (s.entries.total, s.entries.copied),
            (400, 400),
            "round {round}"
        );
    }
}
