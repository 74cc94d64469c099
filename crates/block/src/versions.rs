//! Versioned backups of a block volume: each run adds a sparse image of the volume to the backup
//! folder, laid out as file backups are (the [`store`] owns the layout): the image of each
//! version in its snapshot folder with the BLAKE3 manifest of its chunks beside it, and a marker
//! in the state folder that tells a folder of block versions from one of file snapshots. The
//! lock is the same as for file backups.
//!
//! A new version starts as a clone (`FICLONE`) of the previous version's image, so on xfs and
//! btrfs it shares every extent with it; then the source is read once, each chunk hashed, and only
//! the chunks whose hash differs from the previous version's manifest are written, un-sharing
//! just those. The destination is not read for unchanged chunks. Where the filesystem cannot clone
//! (ext4, tmpfs, or the previous version on another filesystem), the version is a full sparse
//! image written from the source. A version is built under a partial name and renamed
//! once its image and manifest are complete; a run with failed chunks makes no version.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use store::SnapshotId;
use store::layout::{self, IMAGE, Target};
use store::lock::AsCaller;
use store::record::Verification;
use store::retention::Policy;

use serde::{Deserialize, Serialize};

use crate::buffer::AlignedBuf;
use crate::copy::{Geometry, Job, Reporter};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, manifest_path};
use crate::options::Options;
use crate::pool::for_each_chunk;
use crate::reflink;
use contract::ExitCode;
use contract::progress::block::{Phase, Progress};
use contract::snapshots::VersionInfo;

use crate::summary::{ChunkError, Summary};
use crate::volume::Volume;

/// What a versioned block backup is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// Chunk size and workers (`verify`, `verify_only`, `manifest` and `no_compare` are ignored:
    /// a version always gets a manifest).
    pub copy: Options,
    /// Which versions to keep after a run without errors.
    pub policy: Policy,
}

/// How a version's image was made.
pub mod method {
    /// Cloned from the previous version (reflink), then only changed chunks written.
    pub const REFLINK: &str = "reflink";
    /// Written in full from the source (first version, or no reflinks on this filesystem).
    pub const FULL: &str = "full";
}

/// What a versioned block backup did. Printed as JSON by `--progress json` and kept as the run
/// record of its version.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// Always `block`: tells these records from those of file backups.
    pub kind: &'static str,
    /// The new version's name.
    pub snapshot: String,
    /// The version it was built from, if any.
    pub previous: Option<String>,
    /// The new image's path.
    pub image: String,
    /// [`method::REFLINK`] or [`method::FULL`].
    pub method: &'static str,
    /// Why the image could not be cloned from the previous version, when it could not.
    pub reflink_error: Option<String>,
    /// Chunks whose content differs from the previous version (every non-zero chunk for a first
    /// version), from the two manifests.
    pub changed_chunks: u64,
    /// `ok`, or `failed` when some chunks failed and no version was made.
    pub result: &'static str,
    /// The copy pass.
    pub summary: Summary,
    /// Versions removed by retention.
    pub removed: Vec<String>,
    /// Partial versions of earlier runs that died, removed first.
    pub cleaned: Vec<String>,
}

/// The fields of a run record that listing needs.
#[derive(Debug, Deserialize)]
struct RecordView {
    method: Option<String>,
    changed_chunks: Option<u64>,
    result: Option<String>,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl Fn(io::Error) -> Error + 'a {
    move |e| Error::io(what, path, e)
}

/// Writes `value` as JSON to `dir/name` atomically (temporary file, rename).
fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Adds a version of the block volume (or image file) `src` to the backup folder `dst`, then
/// applies retention. Checks the source before creating anything in `dst`.
pub fn backup(
    src: &Path,
    dst: &Path,
    options: &BackupOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BackupReport> {
    let copy = Options {
        verify: false,
        verify_only: false,
        manifest: true,
        no_compare: false,
        ..options.copy.clone()
    };
    copy.validate()?;
    let source = Volume::open_source(src)?;
    if source.size == 0 {
        return Err(Error::SourceEmpty {
            path: src.to_path_buf(),
        });
    }
    drop(source);

    std::fs::create_dir_all(dst).map_err(io_err("cannot create backup folder", dst))?;
    let root = File::open(dst).map_err(io_err("cannot open backup folder", dst))?;
    let shown = dst.display().to_string();
    let _lock = store::lock::lock(root.as_fd(), &shown, &AsCaller)?;
    let target = Target::new(dst);
    let snaps = target.snapshots_dir();
    if !target.block_marker().exists() {
        if snaps.is_dir() && !target.list_ids()?.is_empty() {
            return Err(Error::Usage(format!(
                "{} holds backups of a file tree, not of a block volume: give the block volume \
                 a backup folder of its own",
                dst.display()
            )));
        }
        target
            .mark_block_versions()
            .map_err(io_err("cannot mark backup folder", dst))?;
    }
    match std::fs::create_dir(&snaps) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::io("cannot create", &snaps, e));
        }
        _ => {}
    }

    // Partial versions of runs that died (the lock says none is running now).
    let mut cleaned = Vec::new();
    for entry in std::fs::read_dir(&snaps).map_err(io_err("cannot read", &snaps))? {
        let entry = entry.map_err(io_err("cannot read", &snaps))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if layout::is_partial(name.as_bytes()) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io_err("cannot remove a partial version", &path))?;
            cleaned.push(name);
        }
    }

    let existing = target.list_ids()?;
    let previous = existing.first().cloned();
    let mut new_id = SnapshotId::now();
    if existing.contains(&new_id.to_string()) {
        // Two runs within one second: wait for the next one, names stay times.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        new_id = SnapshotId::now();
    }
    let id = new_id.to_string();
    let partial = target.partial_dir(&new_id);
    std::fs::create_dir(&partial).map_err(io_err("cannot create", &partial))?;
    let image = partial.join(IMAGE);
    let new_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&image)
        .map_err(io_err("cannot create", &image))?;

    let mut method_used = method::FULL;
    let mut reflink_error = None;
    let mut previous_manifest = None;
    if let Some(prev) = &previous {
        let prev_image = target.image(prev);
        previous_manifest = Manifest::read(&manifest_path(&prev_image)).ok();
        match File::open(&prev_image).and_then(|f| reflink::clone_file(&f, &new_file)) {
            Ok(()) => method_used = method::REFLINK,
            Err(e) if reflink::is_unsupported(&e) || e.kind() == io::ErrorKind::NotFound => {
                reflink_error = Some(format!("cannot clone {}: {e}", prev_image.display()));
                // A failed clone leaves the file empty; make sure of it.
                new_file
                    .set_len(0)
                    .map_err(io_err("cannot truncate", &image))?;
            }
            Err(e) => {
                return Err(Error::io(
                    "cannot clone the previous version into",
                    &image,
                    e,
                ));
            }
        }
    }
    drop(new_file);

    let mut job = Job::open(src, &image, &copy)?;
    if method_used == method::REFLINK
        && let Some(m) = &previous_manifest
    {
        job.assume_destination(known_hashes(m, job.size(), copy.chunk_size));
    }
    let summary = job.run(progress)?;
    let mut report = BackupReport {
        kind: "block",
        snapshot: id.clone(),
        previous: previous.clone(),
        image: target.image(&id).display().to_string(),
        method: method_used,
        reflink_error,
        changed_chunks: 0,
        result: "failed",
        summary,
        removed: Vec::new(),
        cleaned,
    };
    if report.summary.exit_code != ExitCode::Ok.code() {
        // An image with chunks that failed is not the volume: no version is made.
        std::fs::remove_dir_all(&partial).map_err(io_err("cannot remove", &partial))?;
        return Ok(report);
    }
    let manifest = Manifest::read(&manifest_path(&image))?;
    report.changed_chunks = changed_chunks(&manifest, previous_manifest.as_ref());

    sync_dir(&partial).map_err(io_err("cannot flush", &partial))?;
    let final_dir = target.snapshot_dir(&id);
    std::fs::rename(&partial, &final_dir).map_err(io_err("cannot name the version", &final_dir))?;
    report.summary.destination = report.image.clone();
    report.summary.manifest = Some(manifest_path(&final_dir.join(IMAGE)).display().to_string());
    sync_dir(&snaps).map_err(io_err("cannot flush", &snaps))?;
    target
        .point_latest(&id)
        .map_err(io_err("cannot point latest at the version in", dst))?;
    report.result = "ok";

    if options.policy.is_set() {
        report.removed = apply_retention(dst, &id, &options.policy)?;
    }
    write_json(&target.records_dir(), &layout::run_record(&id), &report)
        .map_err(io_err("cannot record the version in", dst))?;
    Ok(report)
}

/// The hashes of the previous version's chunks that hold for the same chunks of the new volume:
/// same chunk size, and the chunk covers the same bytes in both (a volume that changed size keeps
/// the hashes of its untouched full chunks).
fn known_hashes(m: &Manifest, size: u64, chunk_size: u64) -> Vec<Option<blake3::Hash>> {
    if m.chunk_size != chunk_size {
        return Vec::new();
    }
    (0..size.div_ceil(chunk_size))
        .map(|i| {
            let off = i * chunk_size;
            let end = (off + chunk_size).min(size);
            let old_end = (off + chunk_size).min(m.size);
            if off >= m.size || end != old_end {
                return None;
            }
            m.chunks
                .get(i as usize)
                .and_then(|h| blake3::Hash::from_hex(h).ok())
        })
        .collect()
}

/// Chunks of `new` whose hash differs from `old`'s at the same place. Without `old`, and past
/// `old`'s end (a grown volume), the chunks that are not all zeros.
fn changed_chunks(new: &Manifest, old: Option<&Manifest>) -> u64 {
    let geo = Geometry::new(new.size, new.chunk_size);
    let comparable = old.filter(|o| o.chunk_size == new.chunk_size);
    let span = |i: usize, size: u64| {
        let off = i as u64 * new.chunk_size;
        (off + new.chunk_size).min(size) - off.min(size)
    };
    new.chunks
        .iter()
        .enumerate()
        .filter(|&(i, h)| match comparable {
            Some(o) if i < o.chunks.len() => {
                o.chunks[i] != *h || span(i, o.size) != span(i, new.size)
            }
            _ => *h != geo.zero_hash(span(i, new.size) as usize).to_hex().as_str(),
        })
        .count() as u64
}

/// Removes the versions the policy does not keep (never `newest`), with their records.
fn apply_retention(dst: &Path, newest: &str, policy: &Policy) -> Result<Vec<String>> {
    let target = Target::new(dst);
    let all = target.list_ids()?;
    let times: Vec<_> = all
        .iter()
        .filter_map(|id| layout::snapshot_time(id))
        .collect();
    let keep = store::retention::keep(&times, policy);
    let mut removed = Vec::new();
    for (i, id) in all.iter().enumerate() {
        if keep.contains(&i) || id == newest {
            continue;
        }
        let dir = target.snapshot_dir(id);
        std::fs::remove_dir_all(&dir).map_err(io_err("cannot remove an expired version", &dir))?;
        for record in layout::records(id) {
            let _ = std::fs::remove_file(target.records_dir().join(record));
        }
        removed.push(id.clone());
    }
    Ok(removed)
}

/// The image of version `which` (a name or `latest`) of the backup folder `dst`.
pub fn version_image(dst: &Path, which: &str) -> Result<(String, PathBuf)> {
    let dir = Target::new(dst).resolve(which)?;
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let image = dir.join(IMAGE);
    if !image.is_file() {
        return Err(Error::Usage(format!(
            "version {id} of {} has no {IMAGE}: was it made by `pvc-backup mover backup` of a \
             block volume?",
            dst.display()
        )));
    }
    Ok((id, image))
}

/// Lists the versions in `dst`, newest first.
pub fn list(dst: &Path) -> Result<Vec<VersionInfo>> {
    let target = Target::new(dst);
    let latest = target.latest();
    let ids = match target.list_ids() {
        Ok(ids) => ids,
        Err(_) if !target.snapshots_dir().exists() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for id in ids {
        let image = target.image(&id);
        let file = File::open(&image).map_err(io_err("cannot open", &image))?;
        let meta = file.metadata().map_err(io_err("cannot stat", &image))?;
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        let unique = reflink::allocation(&file).map_or(allocated, |a| a.unique());
        let record: Option<RecordView> = std::fs::read(target.run_record(&id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let verified = std::fs::read(target.verify_record(&id))
            .ok()
            .and_then(|b| serde_json::from_slice::<Verification>(&b).ok())
            .map(|r| r.describe());
        let time = layout::snapshot_time(&id).map_or_else(String::new, |t| t.rfc3339());
        out.push(VersionInfo {
            latest: latest.as_deref() == Some(id.as_str()),
            time,
            size: meta.len(),
            allocated_bytes: allocated,
            unique_bytes: unique,
            changed_chunks: record.as_ref().and_then(|r| r.changed_chunks),
            method: record.as_ref().and_then(|r| r.method.clone()),
            result: record.and_then(|r| r.result),
            verified,
            id,
        });
    }
    Ok(out)
}

/// The result of checking an image against its manifest or a live volume.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageCheck {
    /// The image checked.
    pub image: String,
    /// What it was checked against: `manifest PATH` or `source PATH`.
    pub against: String,
    /// Size the image should have, in bytes.
    pub size: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Bytes read (holes are known to be zero and not read).
    pub bytes_read: u64,
    /// Chunks whose BLAKE3 hash differs.
    pub mismatches: u64,
    /// Every mismatch, wrong size and read failure, with its offset.
    pub errors: Vec<ChunkError>,
    /// Milliseconds taken.
    pub duration_ms: u64,
}

impl ImageCheck {
    /// Whether the image is exactly what it should be.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The exit code: 0 when the image is good, 23 when not.
    pub fn exit_code(&self) -> ExitCode {
        if self.ok() {
            ExitCode::Ok
        } else {
            ExitCode::Partial
        }
    }
}

/// Re-reads the image file `image` and compares the BLAKE3 hash of every chunk with its manifest
/// (`IMAGE.pvcb-manifest.json`, as `mover block` and versioned backups write it).
pub fn check_image(
    image: &Path,
    threads: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageCheck> {
    let started = Instant::now();
    let mpath = manifest_path(image);
    let manifest = Manifest::read(&mpath)?;
    if manifest.chunk_size == 0
        || manifest.chunks.len() as u64 != manifest.size.div_ceil(manifest.chunk_size)
    {
        return Err(Error::io(
            "inconsistent manifest (chunk count does not match size / chunk size)",
            &mpath,
            io::ErrorKind::InvalidData.into(),
        ));
    }
    let want: Vec<Option<blake3::Hash>> = manifest
        .chunks
        .iter()
        .map(|h| blake3::Hash::from_hex(h).ok())
        .collect();
    let vol = Volume::open_source(image)?;
    let mut check = ImageCheck {
        image: image.display().to_string(),
        against: format!("manifest {}", mpath.display()),
        size: manifest.size,
        chunks: 0,
        bytes_read: 0,
        mismatches: 0,
        errors: Vec::new(),
        duration_ms: 0,
    };
    if vol.size != manifest.size {
        check.errors.push(ChunkError {
            phase: "verify",
            offset: vol.size.min(manifest.size),
            len: vol.size.abs_diff(manifest.size),
            reason: format!(
                "image is {} bytes, its manifest says {}",
                vol.size, manifest.size
            ),
        });
    }
    let geo = Geometry::new(manifest.size, manifest.chunk_size);
    let count = geo.chunks();
    let mut reporter = Reporter::new(Phase::Verify, count, geo.size);
    reporter.emit(progress);
    for_each_chunk(
        count,
        threads.max(1),
        || AlignedBuf::new(geo.chunk_size as usize),
        |buf, i| {
            let (offset, len) = geo.range(i);
            let mut read = 0;
            let got = geo
                .hash_chunk(&vol, buf, i)
                .map(|(hash, n)| {
                    read = n;
                    hash
                })
                .map_err(|e| format!("cannot read {}: {e}", vol.path.display()));
            let problem = match (got, want[i as usize]) {
                (Ok(h), Some(w)) if h == w => None,
                (Ok(h), w) => Some((
                    true,
                    format!(
                        "chunk differs from the manifest: BLAKE3 {} in the image, {} in the \
                         manifest",
                        h.to_hex(),
                        w.map_or_else(
                            || "an unreadable value".to_string(),
                            |w| w.to_hex().to_string()
                        )
                    ),
                )),
                (Err(e), _) => Some((false, e)),
            };
            (offset, len as u64, read, problem)
        },
        |event| {
            let Some((offset, len, read, problem)) = event else {
                reporter.maybe_emit(progress);
                return;
            };
            check.chunks += 1;
            check.bytes_read += read;
            if let Some((mismatch, reason)) = problem {
                check.mismatches += u64::from(mismatch);
                check.errors.push(ChunkError {
                    phase: "verify",
                    offset,
                    len,
                    reason,
                });
            }
            reporter.advance(len);
            reporter.maybe_emit(progress);
        },
    );
    reporter.emit(progress);
    vol.forget();
    check.errors.sort_by_key(|e| e.offset);
    check.duration_ms = started.elapsed().as_millis() as u64;
    Ok(check)
}

/// Verifies versions of the backup folder `dst` (`which`: a name, `latest` or `all`) against
/// their manifests, or against the live volume `against`. Each result is recorded next to the
/// version's run record, where `mover snapshots` shows it.
pub fn verify(
    dst: &Path,
    which: &str,
    against: Option<&Path>,
    threads: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<(String, ImageCheck)>> {
    let target = Target::new(dst);
    let ids = if which == "all" {
        target.list_ids()?
    } else {
        vec![version_image(dst, which)?.0]
    };
    let mut out = Vec::new();
    for id in ids {
        let (_, image) = version_image(dst, &id)?;
        let check = match against {
            None => check_image(&image, threads, progress)?,
            Some(src) => against_source(src, &image, threads, progress)?,
        };
        let record = Verification {
            verified_at: store::id::rfc3339(SystemTime::now()),
            result: if check.ok() {
                "ok".into()
            } else {
                format!("failed ({} bad chunks)", check.errors.len())
            },
            entries: check.chunks,
            bytes_read: check.bytes_read,
        };
        // Recording is best effort: a read-only backup can still be verified.
        let _ = write_json(&target.records_dir(), &layout::verify_record(&id), &record);
        out.push((id, check));
    }
    Ok(out)
}

/// Compares an image with a live volume chunk by chunk (both read, nothing written).
pub fn against_source(
    src: &Path,
    image: &Path,
    threads: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ImageCheck> {
    let options = Options {
        verify_only: true,
        manifest: false,
        threads: threads.max(1),
        ..Options::default()
    };
    let s = Job::open(src, image, &options)?.run(progress)?;
    let v = s.verify.unwrap_or_default();
    Ok(ImageCheck {
        image: image.display().to_string(),
        against: format!("source {}", src.display()),
        size: s.size,
        chunks: v.chunks,
        bytes_read: v.bytes_read,
        mismatches: v.mismatches,
        errors: s.errors,
        duration_ms: s.duration_ms,
    })
}

/// Writes version `which` of `dst` back onto `target` (a block device at least as large, or an
/// image file) through the incremental copy: only chunks that differ are written.
pub fn restore(
    dst: &Path,
    which: &str,
    target: &Path,
    options: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let (_, image) = version_image(dst, which)?;
    if target.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a folder: restore a block version onto a block device or an image file \
             (e.g. {}/{IMAGE})",
            target.display(),
            target.display()
        )));
    }
    Job::open(&image, target, options)?.run(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(size: u64, cs: u64, chunks: &[&[u8]]) -> Manifest {
        let hashes: Vec<_> = chunks.iter().map(|c| blake3::hash(c)).collect();
        Manifest::new(size, cs, &hashes)
    }

    #[test]
    fn known_hashes_hold_only_for_chunks_covering_the_same_bytes() {
        let m = manifest(10_000, 4096, &[b"a", b"b", b"c"]);
        // Same size: every chunk known.
        let k = known_hashes(&m, 10_000, 4096);
        assert_eq!(k.len(), 3);
        assert!(k.iter().all(Option::is_some));
        // Grown: the old short tail and the new chunks are unknown.
        let k = known_hashes(&m, 20_000, 4096);
        assert_eq!(k.len(), 5);
        assert_eq!(k.iter().filter(|h| h.is_some()).count(), 2);
        assert!(k[2].is_none());
        // Shrunk to 6000: chunk 1 is now a short tail.
        let k = known_hashes(&m, 6000, 4096);
        assert_eq!((k.len(), k[0].is_some(), k[1].is_some()), (2, true, false));
        // Another chunk size: nothing known.
        assert!(known_hashes(&m, 10_000, 8192).is_empty());
    }

    #[test]
    fn changed_chunks_counts_differences_or_data() {
        let z = vec![0u8; 4096];
        let old = manifest(8192 + 100, 4096, &[&z, b"x", &z[..100]]);
        let same = old.clone();
        assert_eq!(changed_chunks(&same, Some(&old)), 0);
        let new = manifest(8192 + 100, 4096, &[&z, b"y", &z[..100]]);
        assert_eq!(changed_chunks(&new, Some(&old)), 1);
        // First version: the non-zero chunks.
        assert_eq!(changed_chunks(&new, None), 1);
        // Grown by a zero chunk and a data chunk: only the data counts.
        let grown = manifest(4 * 4096, 4096, &[&z, b"x", &z, b"new"]);
        let old = manifest(2 * 4096, 4096, &[&z, b"x"]);
        assert_eq!(changed_chunks(&grown, Some(&old)), 1);
    }
}
