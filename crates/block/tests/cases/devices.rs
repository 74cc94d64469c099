//! Loop devices (root): exact copies, counted writes, refusals, size changes, restores.

use std::path::Path;

use crate::util::{
    Loop, Rng, allocated, apparent_size, copy, opts, random_file, root_or_skip, same_bytes,
    sparse_file, write_at,
};

const MIB: u64 = 1 << 20;

/// A sparse backing file with data in about 30% of its 1 MiB chunks, one chunk half data.
fn volume_file(path: &Path, size: u64, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut parts = Vec::new();
    let mut chunk = 0;
    while chunk * MIB < size {
        if rng.next() % 10 < 3 {
            parts.push((chunk * MIB, rng.bytes(MIB as usize)));
        }
        chunk += 1;
    }
    if parts.iter().all(|(off, _)| *off != 5 * MIB) {
        parts.push((5 * MIB, rng.bytes(MIB as usize / 2)));
    }
    let data = parts.iter().map(|(_, d)| d.len() as u64).sum();
    sparse_file(path, size, &parts);
    data
}

#[test]
fn device_to_device_is_exact_and_rewrites_only_changed_chunks() {
    if !root_or_skip("device_to_device_is_exact_and_rewrites_only_changed_chunks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 48 * MIB;
    volume_file(&sf, size, 11);
    random_file(&df, size, 12); // old data everywhere: zero chunks must really be zeroed
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    let s = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(s.chunks_zeroed > 0, "{s:?}");
    assert!(same_bytes(&src.dev, &dst.dev, size));

    let before = dst.sectors_written();
    let again = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(
        (again.chunks_written, again.chunks_zeroed),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(dst.sectors_written(), before, "the block layer saw writes");

    // Change k = 4 whole chunks on the source device.
    let mut rng = Rng::new(13);
    for c in [0u64, 7, 20, 47] {
        write_at(&src.dev, c * MIB, &rng.bytes(MIB as usize));
    }
    let before = dst.sectors_written();
    let third = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(third.chunks_written, 4, "{third:?}");
    assert_eq!(third.chunks_zeroed, 0);
    assert_eq!(dst.sectors_written() - before, 4 * MIB / 512);
    assert!(same_bytes(&src.dev, &dst.dev, size));
}

#[test]
fn old_data_on_a_device_under_a_mostly_zero_source_is_zeroed_without_being_read_to_the_end() {
    if !root_or_skip(
        "old_data_on_a_device_under_a_mostly_zero_source_is_zeroed_without_being_read_to_the_end",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 64 * MIB;
    let mut rng = Rng::new(41);
    sparse_file(&sf, size, &[(40 * MIB, rng.bytes(MIB as usize))]);
    random_file(&df, size, 42);
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    let s = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(same_bytes(&src.dev, &dst.dev, size));
    assert_eq!((s.chunks_zero, s.chunks_written), (63, 1), "{s:?}");
    // The whole source is read (a device has no holes to skip); of the destination, the 8 chunks
    // that start the run of differing ones, those the 3 workers had under way, and one probe in
    // 16 after that.
    let dst_read = s.bytes_read - size;
    assert!(dst_read <= (8 + 3 + 64 / 16 + 1) * MIB, "{s:?}");
    assert!(s.chunks_uncompared >= 40, "{s:?}");

    let before = dst.sectors_written();
    let again = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(
        (
            again.chunks_equal,
            again.chunks_written,
            again.chunks_zeroed
        ),
        (64, 0, 0),
        "{again:?}"
    );
    assert_eq!(dst.sectors_written(), before, "the block layer saw writes");
}

#[test]
fn a_blank_device_gets_an_exact_copy_and_a_rerun_writes_nothing() {
    if !root_or_skip("a_blank_device_gets_an_exact_copy_and_a_rerun_writes_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 64 * MIB;
    volume_file(&sf, size, 43);
    sparse_file(&df, size, &[]);
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    // Whether the blank zero chunks are read or zeroed depends on which the device does faster;
    // either way the copy is exact.
    let s = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(same_bytes(&src.dev, &dst.dev, size));
    assert!(s.chunks_uncompared > 0, "{s:?}");

    // A re-run onto the copy compares every chunk: the zero chunks read as zero and the data
    // chunks as equal, so the run of differing chunks never starts and nothing is written.
    let before = dst.sectors_written();
    let again = copy(&src.dev, &dst.dev, &opts(MIB));
    assert_eq!(
        (
            again.chunks_equal,
            again.chunks_written,
            again.chunks_zeroed,
            again.chunks_uncompared,
            again.bytes_read
        ),
        (64, 0, 0, 0, 2 * size),
        "{again:?}"
    );
    assert_eq!(dst.sectors_written(), before, "the block layer saw writes");
}

#[test]
fn no_compare_onto_an_old_device_is_exact() {
    if !root_or_skip("no_compare_onto_an_old_device_is_exact") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 24 * MIB;
    volume_file(&sf, size, 15);
    random_file(&df, size, 16);
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    let o = block::Options {
        no_compare: true,
        ..opts(MIB)
    };
    let s = copy(&src.dev, &dst.dev, &o);
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert_eq!(s.bytes_read, size, "only the source is read");
    assert_eq!(s.chunks_written + s.chunks_zeroed, 24);
    assert!(same_bytes(&src.dev, &dst.dev, size));
}

#[test]
fn device_to_image_allocates_only_the_data() {
    if !root_or_skip("device_to_image_allocates_only_the_data") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sf = dir.path().join("src");
    let size = 40 * MIB;
    let data = volume_file(&sf, size, 21);
    let src = Loop::attach(&sf);
    let img = dir.path().join("copy.img");
    let s = copy(&src.dev, &img, &opts(MIB));
    assert_eq!(s.exit_code, 0);
    assert_eq!(apparent_size(&img), size);
    assert!(same_bytes(&src.dev, &img, size));
    // The filesystem counts its extent blocks too: compare with the sparse backing file, which
    // holds exactly the data, and allow ext4 a few metadata blocks over the bare data.
    assert!(
        allocated(&img) <= allocated(&sf),
        "image allocates {} bytes, the source file {}",
        allocated(&img),
        allocated(&sf)
    );
    assert!(
        allocated(&img) <= data + 4 * 4096,
        "image allocates {} bytes for {data} bytes of data",
        allocated(&img)
    );
}

#[test]
fn too_small_destination_is_refused_and_untouched() {
    if !root_or_skip("too_small_destination_is_refused_and_untouched") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df, keep) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("dst.orig"),
    );
    volume_file(&sf, 32 * MIB, 31);
    random_file(&df, 16 * MIB, 32);
    std::fs::copy(&df, &keep).unwrap();
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    let before = dst.sectors_written();
    let e = block::run(&src.dev, &dst.dev, &opts(MIB), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains(&(32 * MIB).to_string()) && msg.contains(&(16 * MIB).to_string()),
        "{msg}"
    );
    assert_eq!(dst.sectors_written(), before);
    assert!(same_bytes(&dst.dev, &keep, 16 * MIB));
}

#[test]
fn a_grown_source_device_is_followed_or_refused_clearly() {
    if !root_or_skip("a_grown_source_device_is_followed_or_refused_clearly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    volume_file(&sf, 16 * MIB, 41);
    sparse_file(&df, 16 * MIB, &[]);
    let (src, dst) = (Loop::attach(&sf), Loop::attach(&df));
    let img = dir.path().join("copy.img");
    assert_eq!(copy(&src.dev, &img, &opts(MIB)).exit_code, 0);
    assert_eq!(copy(&src.dev, &dst.dev, &opts(MIB)).exit_code, 0);

    // Grow the backing file, put data in the new part, and tell the loop driver.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sf)
        .unwrap()
        .set_len(24 * MIB)
        .unwrap();
    write_at(&sf, 20 * MIB, &Rng::new(42).bytes(MIB as usize));
    src.refresh_size();
    assert_eq!(src.size(), 24 * MIB);

    // An image follows the new size.
    let s = copy(&src.dev, &img, &opts(MIB));
    assert_eq!(s.exit_code, 0);
    assert_eq!(apparent_size(&img), 24 * MIB);
    assert!(same_bytes(&src.dev, &img, 24 * MIB));
    // A device that is now too small is refused, naming both sizes.
    let e = block::run(&src.dev, &dst.dev, &opts(MIB), &mut |_| {}).unwrap_err();
    assert!(matches!(e, block::Error::TooSmall { .. }), "{e}");
    assert!(e.to_string().contains(&(24 * MIB).to_string()));
}

#[test]
fn an_image_is_restored_back_to_a_device() {
    if !root_or_skip("an_image_is_restored_back_to_a_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    let size = 32 * MIB;
    volume_file(&sf, size, 51);
    let src = Loop::attach(&sf);
    let img = dir.path().join("backup.img");
    assert_eq!(copy(&src.dev, &img, &opts(MIB)).exit_code, 0);
    // Restore onto a larger device full of other data; its tail beyond the image stays.
    random_file(&df, size + 4 * MIB, 52);
    let tail_before = std::fs::read(&df).unwrap()[size as usize..].to_vec();
    let dst = Loop::attach(&df);
    let s = copy(
        &img,
        &dst.dev,
        &block::Options {
            verify: true,
            ..opts(MIB)
        },
    );
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(same_bytes(&img, &dst.dev, size));
    assert!(same_bytes(&src.dev, &dst.dev, size));
    drop(dst);
    assert_eq!(
        std::fs::read(&df).unwrap()[size as usize..],
        tail_before[..]
    );
}

#[test]
fn a_mounted_destination_is_refused() {
    if !root_or_skip("a_mounted_destination_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sf, df) = (dir.path().join("src"), dir.path().join("dst"));
    volume_file(&sf, 32 * MIB, 61);
    sparse_file(&df, 32 * MIB, &[]);
    let dst = Loop::attach(&df);
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&dst.dev)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .arg(&dst.dev)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Umount(&mnt);
    let e = block::run(&sf, &dst.dev, &opts(MIB), &mut |_| {}).unwrap_err();
    assert!(matches!(e, block::Error::InUse { .. }), "{e}");
}

#[test]
fn a_full_destination_filesystem_gives_a_partial_copy_with_offsets() {
    if !root_or_skip("a_full_destination_filesystem_gives_a_partial_copy_with_offsets") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    // 12 MiB of data in a 16 MiB image; the destination filesystem holds only 6 MiB.
    let mut rng = Rng::new(71);
    sparse_file(&src, 16 * MIB, &[(MIB, rng.bytes(12 * MIB as usize))]);
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "pvcb-test"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Umount(&mnt);
    let dst = mnt.join("dst.img");
    let s = block::run(&src, &dst, &opts(MIB), &mut |_| {}).unwrap();
    assert_eq!(s.exit_code, 23, "{s:?}");
    assert!(!s.errors.is_empty());
    for e in &s.errors {
        assert_eq!(e.phase, "copy");
        assert_eq!(e.offset % MIB, 0);
        assert!((MIB..13 * MIB).contains(&e.offset), "{e:?}");
        assert!(e.reason.contains("dst.img"), "{e:?}");
    }
    // The chunks that did not fail are exact, and no manifest claims otherwise.
    let failed: Vec<u64> = s.errors.iter().map(|e| e.offset / MIB).collect();
    let a = std::fs::read(&src).unwrap();
    let b = std::fs::read(&dst).unwrap();
    for c in 0..16usize {
        if !failed.contains(&(c as u64)) {
            let r = c * MIB as usize..(c + 1) * MIB as usize;
            assert!(a[r.clone()] == b[r], "chunk {c} differs");
        }
    }
    assert!(!block::manifest_path(&dst).exists());
    assert_eq!(apparent_size(&dst), 16 * MIB);
}
