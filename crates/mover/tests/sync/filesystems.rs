//! Real filesystems made by the tests (root only): tmpfs, and ext4, xfs and btrfs on loop
//! devices, on each side and across.

use std::process::Command;

use testkit::fs::{Kind, Mounted};
use testkit::oracle::assert_mirror;
use testkit::skip::need_root_and;
use testkit::tree::{Tree, rich_tree};

use super::util::{assert_ok, sync_with};

fn mirror_between(test: &str, from: Kind, to: Kind) {
    let mut tools = vec!["losetup", "mount"];
    tools.extend(from.mkfs());
    tools.extend(to.mkfs());
    if !need_root_and(test, &tools) {
        return;
    }
    let a = Mounted::new(from, 300).unwrap_or_else(|e| panic!("{test}: {e}"));
    let b = if from == to {
        None
    } else {
        Some(Mounted::new(to, 300).unwrap_or_else(|e| panic!("{test}: {e}")))
    };
    let src = Tree::new(a.join("src"));
    let dst = b.as_ref().unwrap_or(&a).join("dst");
    let sockets = rich_tree(&src, true);
    // Some volume of data: a file big enough to span several copy calls.
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    src.file(b"big.bin", &big);
    let s = sync_with(&src.root, &dst, mover::Options::default());
    assert_ok(&s);
    assert_mirror(&src.root, &dst, &sockets);
    let again = sync_with(&src.root, &dst, mover::Options::default());
    assert_ok(&again);
    assert_eq!(again.entries.copied, 0);
    // A run over an existing mirror keeps it exact (ACLs on XFS included).
    assert_mirror(&src.root, &dst, &sockets);
    if from == to && matches!(from, Kind::Xfs | Kind::Btrfs) {
        // Same filesystem with reflinks: the copy shares extents with the source.
        let out = Command::new("filefrag")
            .arg("-v")
            .arg(dst.join("big.bin"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("shared"),
            "expected a reflinked copy on {}:\n{text}",
            from.name()
        );
    }
}

#[test]
fn tmpfs_to_tmpfs() {
    mirror_between("tmpfs_to_tmpfs", Kind::Tmpfs, Kind::Tmpfs);
}

#[test]
fn ext4_to_ext4() {
    mirror_between("ext4_to_ext4", Kind::Ext4, Kind::Ext4);
}

#[test]
fn xfs_to_xfs_with_reflinks() {
    mirror_between("xfs_to_xfs_with_reflinks", Kind::Xfs, Kind::Xfs);
}

#[test]
fn btrfs_to_btrfs_with_reflinks() {
    mirror_between("btrfs_to_btrfs_with_reflinks", Kind::Btrfs, Kind::Btrfs);
}

#[test]
fn tmpfs_to_xfs() {
    mirror_between("tmpfs_to_xfs", Kind::Tmpfs, Kind::Xfs);
}

#[test]
fn ext4_to_tmpfs() {
    mirror_between("ext4_to_tmpfs", Kind::Ext4, Kind::Tmpfs);
}

#[test]
fn xfs_to_ext4() {
    mirror_between("xfs_to_ext4", Kind::Xfs, Kind::Ext4);
}
