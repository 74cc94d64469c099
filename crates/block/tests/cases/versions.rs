//! Versioned backups of image files (no root): layout, content, manifests, retention, verify,
//! restore and refusals. Devices and reflinking filesystems are in `versions_fs.rs`.

use std::path::{Path, PathBuf};

use block::versions::{self, BackupOptions};
use store::layout::IMAGE;

use crate::util::{Rng, apparent_size, opts, same_bytes, sparse_file, write_at};

const MIB: u64 = 1 << 20;

/// A 16 MiB sparse image with data in chunks 0, 3, 4, 9 and half of 12.
pub fn volume(path: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut parts: Vec<(u64, Vec<u8>)> = [0u64, 3, 4, 9]
        .iter()
        .map(|c| (c * MIB, rng.bytes(MIB as usize)))
        .collect();
    parts.push((12 * MIB, rng.bytes(MIB as usize / 2)));
    sparse_file(path, 16 * MIB, &parts);
}

pub fn backup_opts(keep_last: Option<u32>) -> BackupOptions {
    BackupOptions {
        copy: opts(MIB),
        policy: store::retention::Policy {
            last: keep_last,
            ..Default::default()
        },
    }
}

pub fn backup(src: &Path, dst: &Path, o: &BackupOptions) -> versions::BackupReport {
    versions::backup(src, dst, o, &mut |_| {}).unwrap_or_else(|e| panic!("backup failed: {e}"))
}

pub fn image_of(dst: &Path, id: &str) -> PathBuf {
    dst.join("snapshots").join(id).join(IMAGE)
}

/// The BLAKE3 hash of each `chunk`-byte piece of a file, read whole by std (not by the crate).
pub fn chunk_hashes(path: &Path, chunk: u64) -> Vec<String> {
    std::fs::read(path)
        .unwrap()
        .chunks(chunk as usize)
        .map(|c| blake3::hash(c).to_hex().to_string())
        .collect()
}

#[test]
fn versions_are_exact_images_with_manifests_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src, 1);
    let v1_copy = dir.path().join("v1.copy");
    std::fs::copy(&src, &v1_copy).unwrap();

    let r1 = backup(&src, &dst, &backup_opts(None));
    assert_eq!((r1.result, r1.previous.as_deref()), ("ok", None), "{r1:?}");
    assert_eq!(r1.method, versions::method::FULL);
    assert_eq!(r1.changed_chunks, 5, "chunks 0, 3, 4, 9 and 12 hold data");
    let img1 = image_of(&dst, &r1.snapshot);
    assert!(same_bytes(&src, &img1, 16 * MIB));
    assert_eq!(apparent_size(&img1), 16 * MIB);
    let latest = std::fs::read_link(dst.join("latest")).unwrap();
    assert_eq!(latest, Path::new("snapshots").join(&r1.snapshot));
    let m = block::Manifest::read(&block::manifest_path(&img1)).unwrap();
    assert_eq!(m.chunks, chunk_hashes(&src, MIB));
    assert!(
        dst.join(".pvc-backup/snapshots")
            .join(format!("{}.json", r1.snapshot))
            .is_file()
    );

    // Change two chunks: one of data, one that was a hole.
    let mut rng = Rng::new(2);
    write_at(&src, 3 * MIB + 4096, &rng.bytes(8192));
    write_at(&src, 7 * MIB, &rng.bytes(MIB as usize));
    let r2 = backup(&src, &dst, &backup_opts(None));
    assert_eq!(r2.previous.as_deref(), Some(r1.snapshot.as_str()));
    assert_eq!(r2.changed_chunks, 2, "{r2:?}");
    // The previous version's manifest says what the image holds: only the source is read.
    assert!(
        r2.summary.bytes_read <= 8 * MIB,
        "read {} bytes",
        r2.summary.bytes_read
    );
    let img2 = image_of(&dst, &r2.snapshot);
    assert!(same_bytes(&src, &img2, 16 * MIB));
    assert!(
        same_bytes(&v1_copy, &img1, 16 * MIB),
        "the older version changed"
    );
    if r2.method == versions::method::REFLINK {
        // Cloned: only the two changed chunks were written, and of the first only what changed.
        assert_eq!(r2.summary.chunks_written, 2, "{:?}", r2.summary);
        assert_eq!(r2.summary.bytes_written, 8192 + MIB, "{:?}", r2.summary);
    } else {
        assert!(r2.reflink_error.is_some());
    }

    let list = versions::list(&dst).unwrap();
    let ids: Vec<&str> = list.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, [r2.snapshot.as_str(), r1.snapshot.as_str()]);
    assert!(list[0].latest && !list[1].latest);
    assert_eq!(list[0].changed_chunks, Some(2));
    assert_eq!(list[0].size, 16 * MIB);
    assert_eq!(list[1].verified, None);

    // Verify all: both good. Then damage one byte of the older image and verify it again.
    let all = versions::verify(&dst, "all", None, 2, &mut |_| {}).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|(_, c)| c.ok()), "{all:?}");
    let byte = std::fs::read(&img1).unwrap()[(9 * MIB + 77) as usize];
    write_at(&img1, 9 * MIB + 77, &[byte ^ 0x10]);
    let bad = versions::verify(&dst, &r1.snapshot, None, 2, &mut |_| {}).unwrap();
    let c = &bad[0].1;
    assert!(!c.ok());
    assert_eq!(c.mismatches, 1);
    assert_eq!((c.errors[0].offset, c.errors[0].len), (9 * MIB, MIB));
    let listed = versions::list(&dst).unwrap();
    assert!(
        listed[1].verified.as_deref().unwrap().starts_with("failed"),
        "{listed:?}"
    );
    assert!(listed[0].verified.as_deref().unwrap().starts_with("ok"));
    // The newer version does not share the damage.
    let good = versions::verify(&dst, "latest", None, 2, &mut |_| {}).unwrap();
    assert!(good[0].1.ok(), "{good:?}");
    // Against the live source: the latest version equals it.
    let live = versions::verify(&dst, "latest", Some(&src), 2, &mut |_| {}).unwrap();
    assert!(live[0].1.ok(), "{live:?}");
    assert!(live[0].1.against.starts_with("source"));
}

#[test]
fn a_version_is_restored_to_an_image_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src, 3);
    let r1 = backup(&src, &dst, &backup_opts(None));
    write_at(&src, 4 * MIB, &Rng::new(4).bytes(MIB as usize));
    let r2 = backup(&src, &dst, &backup_opts(None));

    let target = dir.path().join("restored.img");
    let s = versions::restore(&dst, &r1.snapshot, &target, &opts(MIB), &mut |_| {}).unwrap();
    assert_eq!(s.exit_code, 0);
    assert!(same_bytes(&image_of(&dst, &r1.snapshot), &target, 16 * MIB));
    // Restoring the newer version over it writes only the chunk that differs.
    let s = versions::restore(&dst, "latest", &target, &opts(MIB), &mut |_| {}).unwrap();
    assert_eq!((s.exit_code, s.chunks_written), (0, 1), "{s:?}");
    assert!(same_bytes(&image_of(&dst, &r2.snapshot), &target, 16 * MIB));
    assert!(same_bytes(&src, &target, 16 * MIB));
    // A name that is no version is a usage error.
    let e = versions::restore(
        &dst,
        "2001-01-01T00-00-00Z",
        &target,
        &opts(MIB),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    // A folder as target is refused, naming a file to give instead.
    let e = versions::restore(&dst, "latest", dir.path(), &opts(MIB), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[test]
fn retention_removes_old_versions_and_partial_ones_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src, 5);
    let r1 = backup(&src, &dst, &backup_opts(Some(2)));
    let r2 = backup(&src, &dst, &backup_opts(Some(2)));
    assert_eq!(r2.changed_chunks, 0);
    assert!(r2.removed.is_empty());
    // A run that died left a partial version behind.
    let partial = dst.join("snapshots/.partial-2001-01-01T00-00-00Z");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join(IMAGE), b"half").unwrap();
    let r3 = backup(&src, &dst, &backup_opts(Some(2)));
    assert_eq!(r3.removed, std::slice::from_ref(&r1.snapshot));
    assert_eq!(r3.cleaned, [".partial-2001-01-01T00-00-00Z"]);
    assert!(!partial.exists());
    assert!(!dst.join("snapshots").join(&r1.snapshot).exists());
    let state = dst.join(".pvc-backup/snapshots");
    assert!(!state.join(format!("{}.json", r1.snapshot)).exists());
    assert!(state.join(format!("{}.json", r3.snapshot)).exists());
    let ids: Vec<String> = versions::list(&dst)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, [r3.snapshot, r2.snapshot]);
}

#[test]
fn a_source_that_changed_size_gets_a_version_of_its_new_size() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("vol.img"), dir.path().join("backup"));
    volume(&src, 6);
    backup(&src, &dst, &backup_opts(None));
    // Grown by 8 MiB + 1000 bytes, with data in the new part.
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.set_len(24 * MIB + 1000).unwrap();
    write_at(&src, 20 * MIB, &Rng::new(7).bytes(MIB as usize + 1000));
    let grown = backup(&src, &dst, &backup_opts(None));
    assert_eq!(
        apparent_size(&image_of(&dst, &grown.snapshot)),
        24 * MIB + 1000
    );
    assert!(same_bytes(
        &src,
        &image_of(&dst, &grown.snapshot),
        24 * MIB + 1000
    ));
    // Shrunk into the middle of a data chunk.
    f.set_len(4 * MIB + 4096).unwrap();
    let shrunk = backup(&src, &dst, &backup_opts(None));
    let img = image_of(&dst, &shrunk.snapshot);
    assert_eq!(apparent_size(&img), 4 * MIB + 4096);
    assert!(same_bytes(&src, &img, 4 * MIB + 4096));
    assert_eq!(
        block::Manifest::read(&block::manifest_path(&img))
            .unwrap()
            .chunks,
        chunk_hashes(&src, MIB)
    );
    let all = versions::verify(&dst, "all", None, 2, &mut |_| {}).unwrap();
    assert!(all.iter().all(|(_, c)| c.ok()), "{all:?}");
}

#[test]
fn refusals_leave_the_backup_folder_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("backup");
    // A missing or empty source: 254, and no backup folder is created.
    let e = versions::backup(
        &dir.path().join("nope"),
        &dst,
        &backup_opts(None),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 254);
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let e = versions::backup(&empty, &dst, &backup_opts(None), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 254);
    assert!(!dst.exists());

    // A folder of file snapshots is not mixed with block versions, and the other way round.
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"data").unwrap();
    let files = dir.path().join("files");
    let b = mover::snapshot::Backup::prepare(
        &tree,
        &files,
        mover::Options::default(),
        Default::default(),
    )
    .unwrap();
    let id = b.run().unwrap().snapshot;
    let src = dir.path().join("vol.img");
    volume(&src, 8);
    let e = versions::backup(&src, &files, &backup_opts(None), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("file tree"), "{e}");
    assert_eq!(store::Target::new(&files).list_ids().unwrap(), [id]);
    assert!(!store::Target::new(&files).holds_block_versions());

    backup(&src, &dst, &backup_opts(None));
    assert!(store::Target::new(&dst).holds_block_versions());
    let e = mover::snapshot::Backup::prepare(
        &tree,
        &dst,
        mover::Options::default(),
        Default::default(),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("block volume"), "{e}");
}

#[test]
fn an_image_made_by_mover_block_is_checked_against_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (src, img) = (dir.path().join("vol.img"), dir.path().join("copy.img"));
    volume(&src, 9);
    assert_eq!(crate::util::copy(&src, &img, &opts(MIB)).exit_code, 0);
    let c = versions::check_image(&img, 2, &mut |_| {}).unwrap();
    assert!(c.ok(), "{c:?}");
    assert_eq!(c.chunks, 16);
    // Holes are known to be zero and not read.
    assert!(c.bytes_read < 16 * MIB, "{c:?}");
    // A chunk that was a hole now holds data; and the image is one block longer.
    write_at(&img, 14 * MIB + 4096, b"rot");
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(16 * MIB + 4096).unwrap();
    let c = versions::check_image(&img, 2, &mut |_| {}).unwrap();
    assert_eq!(c.mismatches, 1, "{c:?}");
    let offsets: Vec<u64> = c.errors.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [14 * MIB, 16 * MIB], "{c:?}");
    assert_eq!(c.exit_code(), 23);
    // No manifest: a clear error naming it.
    std::fs::remove_file(block::manifest_path(&img)).unwrap();
    let e = versions::check_image(&img, 2, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("pvcb-manifest.json"), "{e}");
}
