//! The verification pass: read both sides again and compare BLAKE3 hashes chunk by chunk.

use crate::copy::{Buffers, Job, Reporter};
use crate::pool::for_each_chunk;
use crate::summary::{ChunkError, Summary, VerifySummary};
use crate::volume::{Volume, VolumeKind};
use contract::progress::block::{Phase, Progress};

struct Checked {
    offset: u64,
    len: u64,
    bytes_read: u64,
    problem: Option<String>,
    mismatch: bool,
}

/// Hashes one side of a chunk, adding the bytes read to `read`.
fn hash_side(
    job: &Job,
    vol: &Volume,
    buf: &mut crate::buffer::AlignedBuf,
    index: u64,
    read: &mut u64,
) -> Result<blake3::Hash, String> {
    let (hash, n) = job
        .geo
        .hash_chunk(vol, buf, index)
        .map_err(|e| format!("cannot read {} again: {e}", vol.path.display()))?;
    *read += n;
    Ok(hash)
}

fn check_chunk(job: &Job, bufs: &mut Buffers, index: u64) -> Checked {
    let (offset, len) = job.chunk_range(index);
    let mut c = Checked {
        offset,
        len: len as u64,
        bytes_read: 0,
        problem: None,
        mismatch: false,
    };
    let src = hash_side(job, &job.src, &mut bufs.src, index, &mut c.bytes_read);
    let dst = hash_side(job, &job.dst, &mut bufs.dst, index, &mut c.bytes_read);
    match (src, dst) {
        (Ok(s), Ok(d)) if s == d => {}
        (Ok(s), Ok(d)) => {
            c.mismatch = true;
            c.problem = Some(format!(
                "destination differs from source: BLAKE3 {} on the source, {} on the destination",
                s.to_hex(),
                d.to_hex()
            ));
        }
        (Err(e), _) | (_, Err(e)) => c.problem = Some(e),
    }
    c
}

/// Compares every chunk of SRC and DST by BLAKE3, recording mismatches and read failures as errors.
pub(crate) fn verify_pass(job: &Job, summary: &mut Summary, progress: &mut dyn FnMut(&Progress)) {
    let chunks = job.chunks();
    let mut v = VerifySummary::default();
    // An image destination must end where the source ends; a device may be larger.
    if job.dst.kind == VolumeKind::File {
        let dst_len = std::fs::metadata(&job.dst.path).map(|m| m.len());
        match dst_len {
            Ok(n) if n == job.size() => {}
            Ok(n) => summary.errors.push(ChunkError {
                phase: "verify",
                offset: n.min(job.size()),
                len: n.abs_diff(job.size()),
                reason: format!(
                    "destination image is {n} bytes, the source {} bytes",
                    job.size()
                ),
            }),
            Err(e) => summary.errors.push(ChunkError {
                phase: "verify",
                offset: 0,
                len: 0,
                reason: format!("cannot stat destination {}: {e}", job.dst.path.display()),
            }),
        }
    }
    let mut reporter = Reporter::new(Phase::Verify, chunks, job.size());
    reporter.emit(progress);
    for_each_chunk(
        chunks,
        job.options.threads,
        || job.buffers(),
        |bufs, index| check_chunk(job, bufs, index),
        |event| {
            let Some(c) = event else {
                reporter.maybe_emit(progress);
                return;
            };
            v.chunks += 1;
            v.bytes_read += c.bytes_read;
            v.mismatches += u64::from(c.mismatch);
            if let Some(reason) = c.problem {
                summary.errors.push(ChunkError {
                    phase: "verify",
                    offset: c.offset,
                    len: c.len,
                    reason,
                });
            }
            reporter.advance(c.len);
            reporter.maybe_emit(progress);
        },
    );
    reporter.emit(progress);
    job.src.forget();
    job.dst.forget();
    summary.verify = Some(v);
}
