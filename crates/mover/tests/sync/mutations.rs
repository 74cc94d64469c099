//! Changes in the source between runs, each mirrored.

use std::os::unix::fs::MetadataExt;

use mover::Options;
use testkit::oracle::assert_mirror;
use testkit::skip::{have_tool, is_root};
use testkit::tree::rich_tree;

use super::util::{Pair, assert_ok, sync_with};

#[test]
fn changes_of_every_kind_are_mirrored() {
    let p = Pair::new();
    let sockets = rich_tree(&p.src, is_root());
    assert_ok(&p.sync());
    // Leftovers a killed run would leave, and an entry only the target has.
    p.dst.file(b".pvcb-tmp.4242.7", b"half written");
    p.dst.file(b"dir/nested/only-in-target", b"x");

    p.src
        .file(b"plain", b"new content, new size")
        .mode(b"empty", 0o600)
        .xattr(b"empty", "user.added", b"1")
        .remove(b"dir/nested/deep.txt")
        .file(b"dir/nested/deep.txt/now-a-dir", b"file became a directory")
        .remove(b"empty-dir")
        .file(b"empty-dir", b"directory became a file")
        .remove(b"link-rel")
        .file(b"link-rel", b"symlink became a file")
        .remove(b"pipe")
        .symlink(b"pipe", b"fifo became a symlink")
        .remove(b"dir/hard-b")
        .file(b"dir/hard-b", b"no longer linked")
        .hardlink(b"plain", b"plain-second-name")
        .remove(b"hostile");
    if have_tool("setfacl") {
        p.src.acl(b"dir", &["-b"]);
    }
    if is_root() {
        p.src
            .owner(b"owned/by-1001", 4004, 4005)
            .mode(b"owned/setuid", 0o2711);
    }
    let s = p.sync();
    assert_ok(&s);
    assert!(s.entries.deleted > 0);
    assert!(
        !p.dst.path(b".pvcb-tmp.4242.7").exists(),
        "leftover temporary file kept"
    );
    assert_mirror(&p.src.root, &p.dst.root, &sockets);
}

#[test]
fn attribute_only_changes_update_in_place() {
    let p = Pair::new();
    p.src.file(b"f", b"content").xattr(b"f", "user.a", b"1");
    assert_ok(&p.sync());
    let ino = std::fs::metadata(p.dst.path(b"f")).unwrap().ino();
    p.src
        .mode(b"f", 0o600)
        .xattr(b"f", "user.a", b"2")
        .xattr(b"f", "user.b", b"3");
    let s = p.sync();
    assert_ok(&s);
    assert_eq!((s.entries.updated, s.entries.copied), (1, 0));
    assert_eq!(std::fs::metadata(p.dst.path(b"f")).unwrap().ino(), ino);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}

#[test]
fn checksum_finds_changes_that_keep_size_and_mtime() {
    let p = Pair::new();
    p.src.file(b"f", b"aaaa").mtime(b"f", 1_700_000_000, 5);
    assert_ok(&p.sync());
    p.src.file(b"f", b"bbbb").mtime(b"f", 1_700_000_000, 5);
    // Size and mtime equal: the quick check trusts them, as rsync does.
    let quick = p.sync();
    assert_eq!(quick.entries.copied, 0);
    assert_eq!(std::fs::read(p.dst.path(b"f")).unwrap(), b"aaaa");
    let full = sync_with(
        &p.src.root,
        &p.dst.root,
        Options {
            checksum: true,
            ..Options::default()
        },
    );
    assert_ok(&full);
    assert_eq!(full.entries.copied, 1);
    assert_eq!(std::fs::read(p.dst.path(b"f")).unwrap(), b"bbbb");
}

#[test]
fn a_target_file_linked_elsewhere_is_split_when_the_source_is_not() {
    let p = Pair::new();
    p.src
        .file(b"a", b"same")
        .file(b"b", b"same")
        .mtime(b"a", 1_000, 0)
        .mtime(b"b", 1_000, 0);
    assert_ok(&p.sync());
    // Someone linked the two target files together.
    std::fs::remove_file(p.dst.path(b"b")).unwrap();
    std::fs::hard_link(p.dst.path(b"a"), p.dst.path(b"b")).unwrap();
    assert_ok(&p.sync());
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}

#[test]
fn a_new_file_does_not_keep_an_acl_inherited_from_the_target_directory() {
    if !testkit::skip::need_tools(
        "a_new_file_does_not_keep_an_acl_inherited_from_the_target_directory",
        &["setfacl", "getfacl"],
    ) {
        return;
    }
    let p = Pair::new();
    p.src
        .file(b"d/old", b"1")
        .acl(b"d", &["-d", "-m", "u:4321:rwx"]);
    assert_ok(&p.sync());
    // The source directory loses its default ACL and gets a file without ACL; the target
    // directory still has the default ACL when the new file is made in it.
    p.src.acl(b"d", &["-k"]).file(b"d/new", b"2");
    assert_ok(&p.sync());
    let acl = std::process::Command::new("getfacl")
        .args(["-n", "-c"])
        .arg(p.dst.path(b"d/new"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&acl.stdout).contains("4321"),
        "inherited ACL kept"
    );
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}
