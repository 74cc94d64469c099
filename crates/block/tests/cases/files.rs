//! Image files: no root needed.

use std::path::Path;

use crate::util::{
    Rng, allocated, apparent_size, copy, opts, random_file, same_bytes, sparse_file, write_at,
};

const MIB: u64 = 1 << 20;

/// A 20 MiB + 1000 byte sparse image: whole chunks of data, a chunk half data half zero, holes,
/// and an unaligned tail. Returns the number of non-zero bytes written.
fn mixed_image(path: &Path, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let size = 20 * MIB + 1000;
    let parts = vec![
        (0, rng.bytes(MIB as usize)),
        (3 * MIB, rng.bytes(2 * MIB as usize)),
        (7 * MIB + 512 * 1024, rng.bytes(512 * 1024)),
        (12 * MIB + 4096, rng.bytes(8192)),
        (20 * MIB, rng.bytes(1000)),
    ];
    let data: u64 = parts.iter().map(|(_, d)| d.len() as u64).sum();
    sparse_file(path, size, &parts);
    data
}

#[test]
fn image_copy_is_exact_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let data = mixed_image(&src, 1);
    let s = copy(&src, &dst, &opts(MIB));
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(s.errors.is_empty());
    assert_eq!(apparent_size(&dst), apparent_size(&src));
    assert!(same_bytes(&src, &dst, apparent_size(&src)));
    // The kernel allocates no more than the non-zero data (rounded to 4 KiB blocks).
    let limit = data.div_ceil(4096) * 4096 + 4096;
    assert!(
        allocated(&dst) <= limit,
        "allocated {} > {limit}",
        allocated(&dst)
    );
    // Holes of the source were skipped without reading.
    assert!(s.chunks_hole >= 10, "{s:?}");
    assert_eq!(s.chunks, 21);
}

#[test]
fn second_copy_writes_nothing_and_changed_chunks_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 2);
    let first = copy(&src, &dst, &opts(MIB));
    assert!(first.chunks_written > 0);
    let again = copy(&src, &dst, &opts(MIB));
    assert_eq!(
        (again.chunks_written, again.chunks_zeroed),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(again.bytes_written, 0);
    assert_eq!(again.chunks_equal, again.chunks);
    // Change three chunks: one with data, one hole, one that becomes zero.
    let mut rng = Rng::new(99);
    write_at(&src, 3 * MIB + 100, &rng.bytes(5000));
    write_at(&src, 15 * MIB, &rng.bytes(MIB as usize));
    write_at(&src, 0, &vec![0u8; MIB as usize]);
    let third = copy(&src, &dst, &opts(MIB));
    assert_eq!(third.chunks_written + third.chunks_zeroed, 3, "{third:?}");
    assert_eq!(third.chunks_zeroed, 1);
    assert!(same_bytes(&src, &dst, apparent_size(&src)));
}

#[test]
fn an_old_larger_image_is_overwritten_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 3);
    random_file(&dst, 30 * MIB, 4);
    let s = copy(&src, &dst, &opts(MIB));
    assert_eq!(s.exit_code, 0);
    assert_eq!(apparent_size(&dst), 20 * MIB + 1000);
    assert!(same_bytes(&src, &dst, apparent_size(&src)));
    // Zero ranges over old data became holes, not written zeros.
    assert!(s.chunks_zeroed > 0);
    assert!(allocated(&dst) < 8 * MIB, "allocated {}", allocated(&dst));
}

#[test]
fn missing_or_empty_source_is_refused_with_254() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst.img");
    let e = block::run(&dir.path().join("nope"), &dst, &opts(MIB), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 254);
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(!dst.exists(), "nothing may be created for a missing source");
    let empty = dir.path().join("empty.img");
    std::fs::File::create(&empty).unwrap();
    let e = block::run(&empty, &dst, &opts(MIB), &mut |_| {}).unwrap_err();
    assert_eq!(e.exit_code(), 254);
}

#[test]
fn copying_onto_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    mixed_image(&src, 5);
    let link = dir.path().join("link.img");
    std::fs::hard_link(&src, &link).unwrap();
    let before = std::fs::read(&src).unwrap();
    for dst in [&src, &link] {
        let e = block::run(&src, dst, &opts(MIB), &mut |_| {}).unwrap_err();
        assert!(matches!(e, block::Error::SameVolume { .. }), "{e}");
        assert_eq!(e.exit_code(), 1);
    }
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn a_directory_is_not_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    mixed_image(&src, 6);
    let e = block::run(&src, dir.path(), &opts(MIB), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
    let e = block::run(dir.path(), &src, &opts(MIB), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn verify_only_finds_a_corrupted_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 7);
    let s = copy(
        &src,
        &dst,
        &block::Options {
            verify: true,
            ..opts(MIB)
        },
    );
    assert_eq!(s.exit_code, 0);
    assert_eq!(s.verify.as_ref().unwrap().mismatches, 0);
    // Flip one byte in chunk 3 (data) and one in chunk 9 (a hole of the source).
    let mut b = [0u8; 1];
    let f = std::fs::File::open(&dst).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, 3 * MIB + 12345).unwrap();
    write_at(&dst, 3 * MIB + 12345, &[b[0] ^ 0x40]);
    write_at(&dst, 9 * MIB + 7, &[1]);
    let check = block::Options {
        verify_only: true,
        ..opts(MIB)
    };
    let v = copy(&src, &dst, &check);
    assert_eq!(v.exit_code, 23, "{v:?}");
    assert_eq!(v.bytes_written, 0, "verify-only writes nothing");
    let offsets: Vec<u64> = v.errors.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![3 * MIB, 9 * MIB]);
    assert!(v.errors.iter().all(|e| e.phase == "verify"));
    assert_eq!(v.verify.unwrap().mismatches, 2);
    // A copy repairs exactly those chunks, and then verifies.
    let fix = copy(
        &src,
        &dst,
        &block::Options {
            verify: true,
            ..opts(MIB)
        },
    );
    assert_eq!(fix.chunks_written + fix.chunks_zeroed, 2, "{fix:?}");
    assert_eq!(fix.exit_code, 0);
}

#[test]
fn manifest_holds_the_hash_of_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 8);
    let s = copy(&src, &dst, &opts(MIB));
    let path = block::manifest_path(&dst);
    assert_eq!(s.manifest.as_deref(), Some(path.to_str().unwrap()));
    let m = block::Manifest::read(&path).unwrap();
    let bytes = std::fs::read(&src).unwrap();
    assert_eq!(m.size, bytes.len() as u64);
    assert_eq!(m.chunks.len(), bytes.len().div_ceil(MIB as usize));
    for (i, chunk) in bytes.chunks(MIB as usize).enumerate() {
        assert_eq!(
            m.chunks[i],
            blake3::hash(chunk).to_hex().to_string(),
            "chunk {i}"
        );
    }
}

#[test]
fn progress_lines_are_json_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 9);
    let mut lines = Vec::new();
    let o = block::Options {
        verify: true,
        ..opts(MIB)
    };
    let summary = block::run(&src, &dst, &o, &mut |p| {
        lines.push(serde_json::to_string(p).unwrap())
    })
    .unwrap();
    let mut phases = Vec::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for field in [
            "entries_done",
            "entries_known",
            "bytes_done",
            "bytes_known",
            "rate_bytes_per_sec",
            "elapsed_ms",
        ] {
            assert!(v[field].is_u64(), "{field} missing in {line}");
        }
        assert!(v["entries_done"].as_u64() <= v["entries_known"].as_u64());
        phases.push(v["phase"].as_str().unwrap().to_string());
    }
    assert_eq!(phases.first().map(String::as_str), Some("copy"));
    assert!(phases.iter().any(|p| p == "verify"));
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["phase"], "done");
    assert_eq!(last["entries_done"], 21);
    assert_eq!(last["bytes_done"], 20 * MIB + 1000);
    // The summary is JSON too, with the counts a caller needs.
    let v: serde_json::Value = serde_json::to_value(&summary).unwrap();
    for field in [
        "chunks_read",
        "bytes_read",
        "chunks_written",
        "bytes_written",
        "chunks_equal",
        "chunks_zero",
        "errors",
        "duration_ms",
        "exit_code",
    ] {
        assert!(!v[field].is_null(), "{field} missing in summary");
    }
}

#[test]
fn no_compare_overwrites_old_data_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    mixed_image(&src, 10);
    random_file(&dst, 20 * MIB + 1000, 11);
    let o = block::Options {
        no_compare: true,
        ..opts(MIB)
    };
    let s = copy(&src, &dst, &o);
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(same_bytes(&src, &dst, apparent_size(&src)));
    assert!(allocated(&dst) < 8 * MIB, "allocated {}", allocated(&dst));
    // Only the source's data chunks were read (0, 3, 4, 7, 12 and the 1000-byte tail), not the
    // destination's old data.
    assert_eq!(s.bytes_read, 5 * MIB + 1000, "{s:?}");
    let e = block::run(
        &src,
        &dst,
        &block::Options {
            verify_only: true,
            ..o
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn an_unrelated_destination_is_overwritten_without_being_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let size = 64 * MIB;
    random_file(&src, size, 21);
    random_file(&dst, size, 22);
    let first = copy(&src, &dst, &opts(MIB));
    assert_eq!(first.exit_code, 0, "{first:?}");
    assert!(same_bytes(&src, &dst, size));
    assert_eq!(first.chunks_written, 64, "{first:?}");
    // After a run of differing chunks the destination stops being read, except for probes.
    assert!(first.chunks_uncompared >= 40, "{first:?}");
    assert!(first.bytes_read <= size + 24 * MIB, "{first:?}");

    // An equal destination is compared chunk by chunk and nothing is written.
    let again = copy(&src, &dst, &opts(MIB));
    assert_eq!(
        (
            again.chunks_equal,
            again.chunks_uncompared,
            again.bytes_written
        ),
        (64, 0, 0),
        "{again:?}"
    );

    // A burst of 20 changed chunks: comparing stops within it and resumes after it at the first
    // probe found equal, so few equal chunks are written again.
    let mut rng = Rng::new(23);
    write_at(&src, 10 * MIB, &rng.bytes(20 * MIB as usize));
    let burst = copy(&src, &dst, &opts(MIB));
    assert!(same_bytes(&src, &dst, size));
    assert!(burst.chunks_uncompared > 0, "{burst:?}");
    let threads = opts(MIB).threads as u64;
    assert!(
        burst.chunks_written <= 20 + 16 + threads,
        "{} chunks written for 20 changed: {burst:?}",
        burst.chunks_written
    );
    assert!(burst.chunks_equal >= 64 - 20 - 16 - threads, "{burst:?}");
}

#[test]
fn old_data_under_a_mostly_zero_source_is_zeroed_without_being_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let size = 64 * MIB;
    let mut rng = Rng::new(31);
    // Zeros everywhere but two chunks in the middle; the destination holds other data throughout.
    sparse_file(
        &src,
        size,
        &[
            (30 * MIB, rng.bytes(MIB as usize)),
            (31 * MIB, rng.bytes(MIB as usize)),
        ],
    );
    random_file(&dst, size, 32);
    let s = copy(&src, &dst, &opts(MIB));
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(same_bytes(&src, &dst, size));
    assert_eq!((s.chunks_zero, s.chunks_written), (62, 2), "{s:?}");
    // Only the two data chunks of the source are read (the rest are holes); of the destination,
    // the 8 chunks that start the run of differing ones, those the 3 workers had under way, and
    // one probe in 16 after that.
    let dst_read = s.bytes_read - 2 * MIB;
    assert!(dst_read <= (8 + 3 + 64 / 16 + 1) * MIB, "{s:?}");
    assert!(s.chunks_uncompared >= 40, "{s:?}");
    assert!(
        allocated(&dst) <= 2 * MIB + 4096,
        "allocated {}",
        allocated(&dst)
    );

    // The destination now equals the source: nothing is written or zeroed again.
    let again = copy(&src, &dst, &opts(MIB));
    assert_eq!(
        (
            again.chunks_equal,
            again.chunks_written,
            again.chunks_zeroed,
            again.chunks_uncompared
        ),
        (64, 0, 0, 0),
        "{again:?}"
    );
}
