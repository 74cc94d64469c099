//! Versioned backups of loop devices onto real filesystems (root): reflinked versions on xfs and
//! btrfs share unchanged extents (checked with `filefrag -v` and `df`), ext4 gets full images,
//! and versions are restored onto devices writing only what differs.

use std::path::Path;
use std::process::Command;

use block::versions::{self, method};
use testkit::fs::{Kind, Mounted};
use testkit::skip::need_root_and;

use crate::util::{Loop, Rng, opts, random_file, same_bytes, sparse_file, write_at};
use crate::versions::{backup, backup_opts, image_of};

const MIB: u64 = 1 << 20;

/// A 32 MiB sparse backing file: 10 chunks of 1 MiB random data, the rest zero.
fn backing_file(path: &Path, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let chunks = [0u64, 2, 5, 8, 11, 14, 19, 23, 27, 31];
    let parts: Vec<(u64, Vec<u8>)> = chunks
        .iter()
        .map(|c| (c * MIB, rng.bytes(MIB as usize)))
        .collect();
    sparse_file(path, 32 * MIB, &parts);
    chunks.len() as u64 * MIB
}

/// Bytes of a file's extents with and without the `shared` flag, as `filefrag -v` prints them.
fn filefrag_shared(path: &Path) -> (u64, u64) {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .expect("filefrag runs (e2fsprogs)");
    assert!(out.status.success(), "filefrag {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let block: u64 = text
        .split("blocks of ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block size in {text}"));
    let (mut shared, mut own) = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        // "  0:   0..  255:   24..  279:   256:   shared,last"
        if fields.len() < 5 || fields[0].parse::<u64>().is_err() {
            continue;
        }
        let len = fields[3].parse::<u64>().unwrap() * block;
        if fields.last().unwrap().contains("shared") {
            shared += len;
        } else {
            own += len;
        }
    }
    (shared, own)
}

/// Bytes in use on the filesystem at `path`, in `df`'s view, after flushing everything.
fn df_used(path: &Path) -> u64 {
    assert!(Command::new("sync").status().unwrap().success());
    let out = Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn reflinked_versions_share_unchanged_extents(kind: Kind) {
    let test = format!(
        "reflinked_versions_share_unchanged_extents_on_{}",
        kind.name()
    );
    if !need_root_and(&test, &["losetup", "filefrag", kind.mkfs().unwrap()]) {
        return;
    }
    let fs = Mounted::new(kind, 300).unwrap_or_else(|e| panic!("{test}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let sf = dir.path().join("src");
    let data = backing_file(&sf, 21);
    let src = Loop::attach(&sf);
    let dst = fs.join("backup");

    let r1 = backup(&src.dev, &dst, &backup_opts(None));
    assert_eq!(r1.method, method::FULL);
    let img1 = image_of(&dst, &r1.snapshot);
    assert!(same_bytes(&src.dev, &img1, 32 * MIB));
    let v1 = dir.path().join("v1");
    std::fs::copy(&img1, &v1).unwrap();

    // Change two whole chunks of data, and put data into one that was zero.
    let mut rng = Rng::new(22);
    for c in [5u64, 19, 20] {
        write_at(&src.dev, c * MIB, &rng.bytes(MIB as usize));
    }
    let used = df_used(&fs.path);
    let r2 = backup(&src.dev, &dst, &backup_opts(None));
    assert_eq!(r2.method, method::REFLINK, "{r2:?}");
    assert_eq!(r2.changed_chunks, 3);
    assert_eq!(r2.summary.chunks_written, 3, "{:?}", r2.summary);
    // Only the source was read, and only the two changed data chunks of the clone.
    assert!(
        r2.summary.bytes_read <= 32 * MIB + 2 * MIB,
        "{:?}",
        r2.summary
    );
    let img2 = image_of(&dst, &r2.snapshot);
    assert!(same_bytes(&src.dev, &img2, 32 * MIB));
    assert!(
        same_bytes(&v1, &img1, 32 * MIB),
        "the older version changed"
    );

    // The kernel's own view: the new image shares all but the three changed chunks with the old,
    // and the filesystem grew by about three chunks, not by a second copy of the data.
    let (shared, own) = filefrag_shared(&img2);
    assert_eq!(shared + own, data + MIB, "shared {shared}, own {own}");
    assert!(own <= 3 * MIB, "own {own}");
    assert!(shared >= data - 2 * MIB, "shared {shared}");
    let (shared1, _) = filefrag_shared(&img1);
    assert!(shared1 >= data - 2 * MIB, "old image shares {shared1}");
    let grown = df_used(&fs.path) - used;
    assert!(
        grown < data / 2,
        "the filesystem grew by {grown} bytes for 3 MiB of changes ({data} bytes of data)"
    );
    // Listing counts as unique what filefrag shows as not shared.
    let list = versions::list(&dst).unwrap();
    assert_eq!(list[0].unique_bytes, own, "{list:?}");
    assert_eq!(list[0].changed_chunks, Some(3));
    assert_eq!(list[0].method.as_deref(), Some(method::REFLINK));
    let all = versions::verify(&dst, "all", None, 2, &mut |_| {}).unwrap();
    assert!(all.iter().all(|(_, c)| c.ok()), "{all:?}");
}

#[test]
fn reflinked_versions_share_unchanged_extents_on_xfs() {
    reflinked_versions_share_unchanged_extents(Kind::Xfs);
}

#[test]
fn reflinked_versions_share_unchanged_extents_on_btrfs() {
    reflinked_versions_share_unchanged_extents(Kind::Btrfs);
}

#[test]
fn versions_on_ext4_are_full_sparse_images() {
    let test = "versions_on_ext4_are_full_sparse_images";
    if !need_root_and(test, &["losetup", "filefrag", "mkfs.ext4"]) {
        return;
    }
    let fs = Mounted::new(Kind::Ext4, 300).unwrap_or_else(|e| panic!("{test}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let sf = dir.path().join("src");
    let data = backing_file(&sf, 31);
    let src = Loop::attach(&sf);
    let dst = fs.join("backup");
    backup(&src.dev, &dst, &backup_opts(None));
    write_at(&src.dev, 8 * MIB, &Rng::new(32).bytes(4096));
    let r2 = backup(&src.dev, &dst, &backup_opts(None));
    assert_eq!(r2.method, method::FULL);
    assert!(r2.reflink_error.is_some(), "{r2:?}");
    assert_eq!(r2.changed_chunks, 1);
    let img2 = image_of(&dst, &r2.snapshot);
    assert!(same_bytes(&src.dev, &img2, 32 * MIB));
    // A full image: nothing shared, and it allocates the data (plus ext4's extent blocks).
    let (shared, own) = filefrag_shared(&img2);
    assert_eq!((shared, own), (0, data));
    assert!(crate::util::allocated(&img2) <= data + 4 * 4096);
}

#[test]
fn versions_are_restored_onto_devices_writing_only_what_differs() {
    let test = "versions_are_restored_onto_devices_writing_only_what_differs";
    if !need_root_and(test, &["losetup"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, tf, small) = (
        dir.path().join("src"),
        dir.path().join("target"),
        dir.path().join("small"),
    );
    backing_file(&sf, 41);
    let src = Loop::attach(&sf);
    let dst = dir.path().join("backup");
    let r1 = backup(&src.dev, &dst, &backup_opts(None));
    for c in [2u64, 3, 30] {
        write_at(&src.dev, c * MIB, &Rng::new(42 + c).bytes(MIB as usize));
    }
    // The volume grows by 8 MiB between the two versions.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sf)
        .unwrap()
        .set_len(40 * MIB)
        .unwrap();
    src.refresh_size();
    write_at(&src.dev, 36 * MIB, &Rng::new(49).bytes(MIB as usize));
    let r2 = backup(&src.dev, &dst, &backup_opts(None));
    assert_eq!(
        std::fs::metadata(image_of(&dst, &r2.snapshot))
            .unwrap()
            .len(),
        40 * MIB
    );
    assert!(same_bytes(
        &src.dev,
        &image_of(&dst, &r2.snapshot),
        40 * MIB
    ));
    assert_eq!(r2.changed_chunks, 3 + 1);

    // Restore the newest version onto a device full of other data.
    random_file(&tf, 40 * MIB, 43);
    let target = Loop::attach(&tf);
    let restored = versions::restore(
        &dst,
        "latest",
        &target.dev,
        &block::Options {
            verify: true,
            ..opts(MIB)
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(restored.exit_code, 0, "{restored:?}");
    assert!(same_bytes(&src.dev, &target.dev, 40 * MIB));
    // Then the older, smaller version over it: only the three chunks that differ are written,
    // by the block layer's own count, and the device's last 8 MiB stay as they were.
    let before = target.sectors_written();
    let s = versions::restore(&dst, &r1.snapshot, &target.dev, &opts(MIB), &mut |_| {}).unwrap();
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert_eq!(target.sectors_written() - before, 3 * MIB / 512, "{s:?}");
    assert!(same_bytes(
        &image_of(&dst, &r1.snapshot),
        &target.dev,
        32 * MIB
    ));
    drop(target);
    let (now, newer) = (
        std::fs::read(&tf).unwrap(),
        std::fs::read(image_of(&dst, &r2.snapshot)).unwrap(),
    );
    assert!(now[32 * MIB as usize..] == newer[32 * MIB as usize..]);

    // A device smaller than the version is refused and left untouched.
    random_file(&small, 16 * MIB, 44);
    let keep = std::fs::read(&small).unwrap();
    let small_dev = Loop::attach(&small);
    let before = small_dev.sectors_written();
    let e = versions::restore(&dst, "latest", &small_dev.dev, &opts(MIB), &mut |_| {}).unwrap_err();
    assert!(matches!(e, block::Error::TooSmall { .. }), "{e}");
    assert!(e.to_string().contains(&(40 * MIB).to_string()), "{e}");
    assert_eq!(small_dev.sectors_written(), before);
    drop(small_dev);
    assert!(std::fs::read(&small).unwrap() == keep);
}
