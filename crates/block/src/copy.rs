//! The copy pass: read both sides chunk by chunk, write only what differs.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::buffer::{AlignedBuf, is_zero};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, manifest_path, remove_stale};
use crate::options::Options;
use crate::pool::for_each_chunk;
use contract::progress::block::{Phase, Progress};

use crate::summary::{ChunkError, Summary};
use crate::verify::verify_pass;
use crate::volume::{Volume, VolumeKind, inspect};

/// Granularity inside a chunk at which differences and zeros are found when writing: a page,
/// the allocation unit of every common filesystem.
const BLOCK: usize = 4096;

/// After this many chunks in a row needed a write (a data chunk that differed from the destination,
/// or a zero chunk where the destination was not zero), chunks are written without reading the
/// destination first: a copy onto a fresh or unrelated device would otherwise read the whole
/// destination only to learn that everything differs. A zero chunk whose destination already reads
/// as zero neither counts nor breaks the run: a blank device reads as zero there too, so it says
/// nothing about whether the destination holds an earlier copy.
const DIFFERING_STREAK: u32 = 8;

/// While writing without comparing, one chunk in this many is still compared; when a data chunk
/// is found equal, comparing resumes for all chunks. A destination that holds an older copy with a
/// burst of changes thus costs at most this many needless chunk writes after the burst.
const PROBE_EVERY: u64 = 16;

/// Chunk geometry of a copy, local or over the wire: the volume's size, the chunk size, a chunk
/// of zeros and the hashes of all-zero chunks (full and last).
pub(crate) struct Geometry {
    pub(crate) size: u64,
    pub(crate) chunk_size: u64,
    pub(crate) zeros: Vec<u8>,
    zero_full: blake3::Hash,
    zero_tail: blake3::Hash,
}

impl Geometry {
    pub(crate) fn new(size: u64, chunk_size: u64) -> Geometry {
        let zeros = vec![0u8; chunk_size as usize];
        let tail = match size % chunk_size {
            0 => chunk_size,
            t => t,
        };
        Geometry {
            zero_full: blake3::hash(&zeros),
            zero_tail: blake3::hash(&zeros[..tail as usize]),
            zeros,
            size,
            chunk_size,
        }
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    pub(crate) fn range(&self, index: u64) -> (u64, usize) {
        let offset = index * self.chunk_size;
        (offset, self.chunk_size.min(self.size - offset) as usize)
    }

    pub(crate) fn zero_hash(&self, len: usize) -> blake3::Hash {
        if len as u64 == self.chunk_size {
            self.zero_full
        } else {
            self.zero_tail
        }
    }

    /// The BLAKE3 hash of chunk `index` of `vol`, and the bytes read for it. A hole of an image
    /// file is zeros by the kernel's word and is not read; a chunk read as zeros takes the known
    /// hash of zeros rather than hashing them.
    pub(crate) fn hash_chunk(
        &self,
        vol: &Volume,
        buf: &mut AlignedBuf,
        index: u64,
    ) -> std::io::Result<(blake3::Hash, u64)> {
        let (offset, len) = self.range(index);
        if vol.is_hole(offset, len as u64) {
            return Ok((self.zero_hash(len), 0));
        }
        vol.read_exact_at(buf.slice_mut(len), offset)?;
        let data = buf.slice(len);
        let hash = if is_zero(data) {
            self.zero_hash(len)
        } else {
            blake3::hash(data)
        };
        Ok((hash, len as u64))
    }
}

/// A checked pair of volumes, ready to copy. Opening one writes nothing.
pub struct Job {
    pub(crate) src: Volume,
    pub(crate) dst: Volume,
    pub(crate) options: Options,
    pub(crate) geo: Geometry,
    /// What the destination's chunks are known to hash to, without reading them (empty: unknown).
    known: Vec<Option<blake3::Hash>>,
    /// Chunks in a row (as the workers finish them) that needed a write (see [`DIFFERING_STREAK`]).
    differing: AtomicU32,
    /// What reading and zeroing the destination have cost so far in this run.
    costs: Costs,
    /// Which destination chunks were holes when the copy pass began (see [`Volume::hole_map`]).
    dst_holes: Vec<bool>,
}

/// Measured cost of the two ways to handle a zero chunk once the destination stopped being
/// compared: read it and zero it only where it is not zero, or zero it without reading.
///
/// Which is cheaper depends on the device and cannot be known beforehand. On a loop device over a
/// sparse file, reading a blank 4 MiB range costs about 8 ms (the loop driver copies zero pages),
/// while zeroing it (`fallocate(PUNCH_HOLE)`, passed on as a hole punched in the backing file) is
/// a metadata update of some microseconds; thin volumes and SSDs with write-zeroes are alike. A
/// device whose zeroing falls back to writing zero pages (`BLKZEROOUT` without write-zeroes
/// support, or plain writes) is the other way round. So both are timed during the run (wall time
/// per byte of the latest destination reads and zeroings) and the cheaper one is taken, weighing
/// reading by how often a read zero chunk turned out not to be zero (it then has to be zeroed
/// anyway).
#[derive(Default)]
struct Costs {
    read: Mutex<Samples>,
    zero: Mutex<Samples>,
    /// Zero chunks whose destination was read, and how many of them were not zero there.
    zero_chunks_read: AtomicU64,
    zero_chunks_dirty: AtomicU64,
}

/// The latest timings of one kind of request, in nanoseconds per MiB. Their median is the
/// estimate: on a shared machine a request now and then waits behind others (a journal commit, a
/// busy queue) many times as long as usual, which would sway a mean for the rest of the run.
#[derive(Default)]
struct Samples {
    ring: [u64; 15],
    len: usize,
    next: usize,
}

impl Samples {
    fn add(&mut self, started: Instant, bytes: u64) {
        let ns = started.elapsed().as_nanos() as u64;
        self.ring[self.next] = ns.saturating_mul(1 << 20) / bytes.max(1);
        self.next = (self.next + 1) % self.ring.len();
        self.len = (self.len + 1).min(self.ring.len());
    }

    fn median(&self) -> Option<u128> {
        if self.len == 0 {
            return None;
        }
        let mut v = self.ring;
        let v = &mut v[..self.len];
        v.sort_unstable();
        Some(u128::from(v[self.len / 2]))
    }
}

impl Costs {
    fn add_read(&self, started: Instant, bytes: u64) {
        lock(&self.read).add(started, bytes);
    }

    fn add_zero(&self, started: Instant, bytes: u64) {
        lock(&self.zero).add(started, bytes);
    }

    fn add_zero_chunk_read(&self, dirty: bool) {
        self.zero_chunks_read.fetch_add(1, Ordering::Relaxed);
        self.zero_chunks_dirty
            .fetch_add(u64::from(dirty), Ordering::Relaxed);
    }

    /// Whether zeroing without reading is expected to cost less than reading first. Zeroing that
    /// has not been timed yet is tried, so that both costs get known.
    fn zeroing_is_cheaper(&self) -> bool {
        let (Some(read), Some(zero)) = (lock(&self.read).median(), lock(&self.zero).median())
        else {
            return true;
        };
        let load = |a: &AtomicU64| u128::from(a.load(Ordering::Relaxed));
        let (reads, dirty) = (load(&self.zero_chunks_read), load(&self.zero_chunks_dirty));
        if reads == 0 {
            return zero < read;
        }
        // Reading costs R, plus zeroing Z for the share p of chunks found not zero: zeroing
        // directly wins when Z < R + p Z, that is Z (1 - p) < R, with p = dirty / reads.
        zero * reads.saturating_sub(dirty) < read * reads
    }
}

/// Timings are plain numbers: one left half-written by a panicking worker is still usable.
fn lock(m: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What happened to one chunk in the copy pass.
struct Outcome {
    index: u64,
    offset: u64,
    len: u64,
    read_source: bool,
    hole: bool,
    zero: bool,
    equal: bool,
    uncompared: bool,
    bytes_read: u64,
    written: u64,
    zeroed: u64,
    hash: Option<blake3::Hash>,
    error: Option<String>,
}

/// What the destination holds where a chunk is to be written.
#[derive(Clone, Copy)]
pub(crate) enum Dest<'a> {
    /// These bytes (it was read).
    Known(&'a [u8]),
    /// Zeros (a hole of an image file).
    Zero,
    /// Not known (`--no-compare`): every block is written or zeroed.
    Unknown,
}

/// Per-worker buffers.
pub(crate) struct Buffers {
    pub(crate) src: AlignedBuf,
    pub(crate) dst: AlignedBuf,
}

impl Job {
    /// Opens SRC and DST and checks everything that can be checked before writing: SRC exists and
    /// is not empty, both are block devices or regular files, they are not the same volume, a
    /// destination device is at least as large as SRC and not in use. A missing DST is created as
    /// an empty image file (unless only verifying).
    pub fn open(src: &Path, dst: &Path, options: &Options) -> Result<Job> {
        options.validate()?;
        let src_vol = Volume::open_source(src)?;
        if src_vol.size == 0 {
            return Err(Error::SourceEmpty {
                path: src.to_path_buf(),
            });
        }
        match inspect(dst)? {
            Some((_, id)) if id == src_vol.identity()? => {
                return Err(Error::SameVolume {
                    src: src.to_path_buf(),
                    dst: dst.to_path_buf(),
                    what: match src_vol.kind {
                        VolumeKind::Device => "block device",
                        VolumeKind::File => "file",
                    },
                });
            }
            None if options.verify_only => {
                return Err(Error::io(
                    "cannot verify against destination",
                    dst,
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            _ => {}
        }
        let (dst_vol, _created) = Volume::open_dest(dst)?;
        if dst_vol.kind == VolumeKind::Device && dst_vol.size < src_vol.size {
            return Err(Error::TooSmall {
                src: src.to_path_buf(),
                src_size: src_vol.size,
                dst: dst.to_path_buf(),
                dst_size: dst_vol.size,
            });
        }
        Ok(Job {
            geo: Geometry::new(src_vol.size, options.chunk_size),
            src: src_vol,
            dst: dst_vol,
            options: options.clone(),
            known: Vec::new(),
            differing: AtomicU32::new(0),
            costs: Costs::default(),
            dst_holes: Vec::new(),
        })
    }

    /// Takes `hashes[i]` as the BLAKE3 hash of the destination's chunk `i` as it is now (`None`:
    /// not known). A source chunk with the same hash is then left alone without reading the
    /// destination, so a copy onto a clone of an image whose manifest is at hand reads only the
    /// source.
    pub(crate) fn assume_destination(&mut self, hashes: Vec<Option<blake3::Hash>>) {
        self.known = hashes;
    }

    /// Size of the source in bytes: what will be copied.
    pub fn size(&self) -> u64 {
        self.geo.size
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.geo.chunks()
    }

    /// What the source is.
    pub fn source_kind(&self) -> VolumeKind {
        self.src.kind
    }

    /// What the destination is.
    pub fn destination_kind(&self) -> VolumeKind {
        self.dst.kind
    }

    /// Whether both sides are read and written with `O_DIRECT` (bypassing the page cache).
    pub fn is_direct(&self) -> (bool, bool) {
        (self.src.is_direct(), self.dst.is_direct())
    }

    pub(crate) fn chunk_range(&self, index: u64) -> (u64, usize) {
        self.geo.range(index)
    }

    /// The BLAKE3 hash of a chunk of zeros of `len` bytes (full, or the last chunk's).
    pub(crate) fn zero_hash(&self, len: usize) -> blake3::Hash {
        self.geo.zero_hash(len)
    }

    pub(crate) fn buffers(&self) -> Buffers {
        Buffers {
            src: AlignedBuf::new(self.options.chunk_size as usize),
            dst: AlignedBuf::new(self.options.chunk_size as usize),
        }
    }

    /// Copies (unless only verifying), verifies when asked, writes the manifest of an image-file
    /// destination, and reports. Chunk failures do not stop the copy; they are listed in the
    /// summary and make its exit code 23. Only failures that concern the whole destination (its
    /// size cannot be set, its data cannot be synced) are returned as errors.
    pub fn run(mut self, progress: &mut dyn FnMut(&Progress)) -> Result<Summary> {
        let started = Instant::now();
        let mut summary = Summary {
            source: self.src.path.display().to_string(),
            destination: self.dst.path.display().to_string(),
            source_kind: self.src.kind.name(),
            destination_kind: self.dst.kind.name(),
            size: self.geo.size,
            chunk_size: self.options.chunk_size,
            threads: self.options.threads,
            chunks: self.chunks(),
            ..Summary::default()
        };
        let with_manifest =
            self.options.manifest && !self.options.verify_only && self.dst.kind == VolumeKind::File;
        let manifest_file = manifest_path(&self.dst.path);
        if !self.options.verify_only {
            if with_manifest {
                // A manifest from an earlier copy stops being true with the first write.
                remove_stale(&manifest_file)?;
            }
            if self.dst.kind == VolumeKind::File && self.dst.size != self.geo.size {
                self.dst.set_len(self.geo.size)?;
            }
            self.dst_holes = self.dst.hole_map(self.options.chunk_size, self.geo.size);
            let hashes = self.copy_pass(&mut summary, with_manifest, progress);
            self.dst
                .sync()
                .map_err(|e| Error::io("cannot flush the writes to", &self.dst.path, e))?;
            self.src.forget();
            if with_manifest && summary.errors.is_empty() {
                let manifest = Manifest::new(self.geo.size, self.options.chunk_size, &hashes);
                manifest.write(&manifest_file)?;
                summary.manifest = Some(manifest_file.display().to_string());
            }
        }
        if self.options.verify || self.options.verify_only {
            verify_pass(&self, &mut summary, progress);
        }
        summary.conclude();
        summary.duration_ms = started.elapsed().as_millis() as u64;
        progress(&summary.done_progress());
        Ok(summary)
    }

    fn copy_pass(
        &self,
        summary: &mut Summary,
        with_hashes: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Vec<blake3::Hash> {
        let chunks = self.chunks();
        let mut hashes = if with_hashes {
            vec![self.zero_hash(self.options.chunk_size as usize); chunks as usize]
        } else {
            Vec::new()
        };
        let mut reporter = Reporter::new(Phase::Copy, chunks, self.geo.size);
        reporter.emit(progress);
        for_each_chunk(
            chunks,
            self.options.threads,
            || self.buffers(),
            |bufs, index| self.copy_chunk(bufs, index, with_hashes),
            |event| {
                let Some(o) = event else {
                    reporter.maybe_emit(progress);
                    return;
                };
                summary.chunks_done += 1;
                summary.bytes_read += o.bytes_read;
                summary.chunks_read += u64::from(o.read_source);
                summary.chunks_hole += u64::from(o.hole);
                summary.chunks_zero += u64::from(o.zero);
                summary.chunks_equal += u64::from(o.equal);
                summary.chunks_uncompared += u64::from(o.uncompared);
                summary.count_written(o.written, o.zeroed);
                if let Some(h) = o.hash {
                    hashes[o.index as usize] = h;
                }
                if let Some(reason) = o.error {
                    summary.errors.push(ChunkError {
                        phase: "copy",
                        offset: o.offset,
                        len: o.len,
                        reason,
                    });
                }
                reporter.advance(o.len);
                reporter.maybe_emit(progress);
            },
        );
        reporter.emit(progress);
        hashes
    }

    fn copy_chunk(&self, bufs: &mut Buffers, index: u64, with_hash: bool) -> Outcome {
        let (offset, len) = self.chunk_range(index);
        let mut out = Outcome {
            index,
            offset,
            len: len as u64,
            read_source: false,
            hole: false,
            zero: false,
            equal: false,
            uncompared: false,
            bytes_read: 0,
            written: 0,
            zeroed: 0,
            hash: None,
            error: None,
        };
        if let Err(reason) = self.copy_chunk_inner(bufs, &mut out, with_hash) {
            out.error = Some(reason);
        }
        out
    }

    fn copy_chunk_inner(
        &self,
        bufs: &mut Buffers,
        out: &mut Outcome,
        with_hash: bool,
    ) -> std::result::Result<(), String> {
        let (offset, len) = (out.offset, out.len as usize);
        out.hole = self.src.is_hole(offset, len as u64);
        let src = if out.hole {
            &self.geo.zeros[..len]
        } else {
            self.src
                .read_exact_at(bufs.src.slice_mut(len), offset)
                .map_err(|e| format!("cannot read source {}: {e}", self.src.path.display()))?;
            out.read_source = true;
            out.bytes_read += len as u64;
            bufs.src.slice(len)
        };
        out.zero = out.hole || is_zero(src);
        if with_hash || !self.known.is_empty() {
            let hash = if out.zero {
                self.zero_hash(len)
            } else {
                blake3::hash(src)
            };
            if with_hash {
                out.hash = Some(hash);
            }
            if self.known.get(out.index as usize) == Some(&Some(hash)) {
                out.equal = true;
                return Ok(());
            }
        }
        let dst_err = |what: &str, e: std::io::Error| {
            format!("cannot {what} destination {}: {e}", self.dst.path.display())
        };
        // Each chunk is written by one worker only, so the map taken before the first write holds.
        if self.dst_holes.get(out.index as usize) == Some(&true) {
            if out.zero {
                out.equal = true;
                return Ok(());
            }
            return self.write_changes(src, Dest::Zero, offset, out);
        }
        if self.options.no_compare {
            // The destination is not read: every chunk is written, zero chunks by zeroing.
            if out.zero {
                return self.zero_dest(offset, len, out);
            }
            return self.write_changes(src, Dest::Unknown, offset, out);
        }
        if self.differing.load(Ordering::Relaxed) >= DIFFERING_STREAK {
            let slot = out.index % PROBE_EVERY;
            if out.zero {
                // Slot 0 reads, to keep learning whether the destination is dirty and what reading
                // costs; the middle slot zeroes, to keep the cost of zeroing current.
                let zero =
                    slot == PROBE_EVERY / 2 || (slot != 0 && self.costs.zeroing_is_cheaper());
                if zero {
                    out.uncompared = true;
                    return self.zero_dest(offset, len, out);
                }
            } else if slot != 0 {
                out.uncompared = true;
                return self.write_changes(src, Dest::Unknown, offset, out);
            }
        }
        let started = Instant::now();
        self.dst
            .read_exact_at(bufs.dst.slice_mut(len), offset)
            .map_err(|e| dst_err("read", e))?;
        self.costs.add_read(started, len as u64);
        out.bytes_read += len as u64;
        let dst = bufs.dst.slice(len);
        let equal = src == dst;
        if out.zero {
            self.costs.add_zero_chunk_read(!equal);
            // A destination that reads as zero where the source is zero is no sign of an earlier
            // copy (a blank device does too): the run is left as it is.
            if !equal {
                self.differing.fetch_add(1, Ordering::Relaxed);
            }
        } else if equal {
            self.differing.store(0, Ordering::Relaxed);
        } else {
            self.differing.fetch_add(1, Ordering::Relaxed);
        }
        if equal {
            out.equal = true;
        } else if out.zero {
            self.zero_dest(offset, len, out)?;
        } else {
            self.write_changes(src, Dest::Known(dst), offset, out)?;
        }
        Ok(())
    }

    /// Zeroes a whole chunk of the destination, timing it for [`Costs`].
    fn zero_dest(
        &self,
        offset: u64,
        len: usize,
        out: &mut Outcome,
    ) -> std::result::Result<(), String> {
        let started = Instant::now();
        self.dst
            .zero_range(offset, len as u64, &self.geo.zeros)
            .map_err(|e| {
                format!(
                    "cannot zero a range of destination {}: {e}",
                    self.dst.path.display()
                )
            })?;
        self.costs.add_zero(started, len as u64);
        out.zeroed = len as u64;
        Ok(())
    }

    /// Writes the blocks of `src` that differ from what the destination holds (see
    /// [`write_changes`]), counting them in `out`.
    fn write_changes(
        &self,
        src: &[u8],
        dst: Dest<'_>,
        offset: u64,
        out: &mut Outcome,
    ) -> std::result::Result<(), String> {
        let done = write_changes(&self.dst, &self.geo.zeros, src, dst, offset)?;
        out.written += done.written;
        out.zeroed += done.zeroed;
        Ok(())
    }
}

/// Writes the blocks of `src` that differ from what the destination holds.
///
/// A device gets one write spanning the first to the last differing block: one large request
/// beats many small ones. An image file gets the differing runs, data written and zero runs
/// punched, so it allocates no more than the source's non-zero data.
pub(crate) fn write_changes(
    vol: &Volume,
    zeros: &[u8],
    src: &[u8],
    dst: Dest<'_>,
    offset: u64,
) -> std::result::Result<Written, String> {
    let mut out = Written::default();
    let out = &mut out;
    let changed = |start: usize| {
        let end = (start + BLOCK).min(src.len());
        match dst {
            Dest::Known(d) => src[start..end] != d[start..end],
            Dest::Zero => !is_zero(&src[start..end]),
            Dest::Unknown => true,
        }
    };
    let write = |from: usize, to: usize, out: &mut Written| {
        vol.write_all_at(&src[from..to], offset + from as u64)
            .map_err(|e| {
                format!(
                    "cannot write destination {} at byte {}: {e}",
                    vol.path.display(),
                    offset + from as u64
                )
            })?;
        out.written += (to - from) as u64;
        Ok::<(), String>(())
    };
    let starts = (0..src.len()).step_by(BLOCK);
    match vol.kind {
        VolumeKind::Device => {
            let mut span: Option<(usize, usize)> = None;
            for start in starts {
                if changed(start) {
                    let end = (start + BLOCK).min(src.len());
                    span = Some(span.map_or((start, end), |(s, _)| (s, end)));
                }
            }
            if let Some((from, to)) = span {
                write(from, to, out)?;
            }
        }
        VolumeKind::File => {
            // Runs of changed blocks of one class: (start, end, is_zero).
            let mut run: Option<(usize, usize, bool)> = None;
            let flush = |run: (usize, usize, bool), out: &mut Written| {
                let (from, to, zero) = run;
                if zero {
                    vol.zero_range(offset + from as u64, (to - from) as u64, zeros)
                        .map_err(|e| {
                            format!(
                                "cannot punch a hole in destination {} at byte {}: {e}",
                                vol.path.display(),
                                offset + from as u64
                            )
                        })?;
                    out.zeroed += (to - from) as u64;
                    Ok(())
                } else {
                    write(from, to, out)
                }
            };
            for start in starts {
                let end = (start + BLOCK).min(src.len());
                if !changed(start) {
                    if let Some(r) = run.take() {
                        flush(r, out)?;
                    }
                    continue;
                }
                let zero = is_zero(&src[start..end]);
                run = match run {
                    Some((s, _, z)) if z == zero => Some((s, end, z)),
                    Some(r) => {
                        flush(r, out)?;
                        Some((start, end, zero))
                    }
                    None => Some((start, end, zero)),
                };
            }
            if let Some(r) = run {
                flush(r, out)?;
            }
        }
    }
    Ok(*out)
}

/// Bytes a [`write_changes`] wrote and zeroed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) written: u64,
    pub(crate) zeroed: u64,
}

/// Keeps the counts of a phase and emits a progress report at most twice a second.
pub struct Reporter {
    phase: Phase,
    started: Instant,
    last: Instant,
    done: u64,
    bytes_done: u64,
    known: u64,
    bytes_known: u64,
}

impl Reporter {
    /// A phase of `known` chunks holding `bytes_known` bytes, starting now.
    pub fn new(phase: Phase, known: u64, bytes_known: u64) -> Self {
        let now = Instant::now();
        Reporter {
            phase,
            started: now,
            last: now,
            done: 0,
            bytes_done: 0,
            known,
            bytes_known,
        }
    }

    /// Counts one chunk of `bytes` bytes as done.
    pub fn advance(&mut self, bytes: u64) {
        self.done += 1;
        self.bytes_done += bytes;
    }

    /// Emits a report when the last one is half a second old.
    pub fn maybe_emit(&mut self, progress: &mut dyn FnMut(&Progress)) {
        if self.last.elapsed().as_millis() >= 500 {
            self.emit(progress);
        }
    }

    /// Emits a report now.
    pub fn emit(&mut self, progress: &mut dyn FnMut(&Progress)) {
        self.last = Instant::now();
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        progress(&Progress {
            phase: self.phase,
            entries_done: self.done,
            entries_known: self.known,
            bytes_done: self.bytes_done,
            bytes_known: self.bytes_known,
            rate_bytes_per_sec: rate(self.bytes_done, elapsed_ms),
            elapsed_ms,
        });
    }
}

pub(crate) fn rate(bytes: u64, ms: u64) -> u64 {
    if ms == 0 {
        0
    } else {
        (bytes as u128 * 1000 / ms as u128) as u64
    }
}
