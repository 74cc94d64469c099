//! The two halves of a block copy whose sides are on different machines (`mover block` over the
//! wire): a [`Source`] that reads and hashes chunks, and a [`Target`] that hashes its own chunks
//! and writes the ones it is sent with the same write path as a local copy.
//!
//! The target tells the BLAKE3 hash of each of its chunks first; the source then sends only the
//! chunks whose hash differs. Neither half knows about the network: the wire crate carries what
//! one returns to the other.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use contract::progress::block::{Phase, Progress};

use crate::buffer::{AlignedBuf, is_zero};
use crate::copy::{Dest, Geometry, Reporter, write_changes};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, manifest_path, remove_stale};
use crate::options::Options;
use crate::pool::for_each_chunk;
use crate::summary::{ChunkError, Summary, VerifySummary};
use crate::volume::{Volume, VolumeKind};

/// Hashes every chunk of `vol` with `threads` workers: `hashes[i]` is `Err` with the reason
/// where chunk `i` could not be read. Also returns the bytes read.
fn hash_all(
    vol: &Volume,
    geo: &Geometry,
    threads: usize,
    phase: Phase,
    progress: &mut dyn FnMut(&Progress),
) -> (Vec<std::result::Result<blake3::Hash, String>>, u64) {
    let chunks = geo.chunks();
    let mut hashes = vec![Ok(geo.zero_hash(geo.chunk_size as usize)); chunks as usize];
    let mut read = 0;
    let mut reporter = Reporter::new(phase, chunks, geo.size);
    reporter.emit(progress);
    for_each_chunk(
        chunks,
        threads,
        || AlignedBuf::new(geo.chunk_size as usize),
        |buf, index| {
            let hashed = geo
                .hash_chunk(vol, buf, index)
                .map_err(|e| format!("cannot read {}: {e}", vol.path.display()));
            (index, hashed)
        },
        |event| {
            if let Some((index, r)) = event {
                if let Ok((_, n)) = &r {
                    read += n;
                }
                hashes[index as usize] = r.map(|(h, _)| h);
                reporter.advance(geo.range(index).1 as u64);
            }
            reporter.maybe_emit(progress);
        },
    );
    reporter.emit(progress);
    vol.forget();
    (hashes, read)
}

/// One chunk of the source, as [`Source::scan`] hands it over.
#[derive(Debug)]
pub struct SourceChunk {
    /// Its number (chunk `index` starts at byte `index * chunk_size`).
    pub index: u64,
    /// Its length in bytes (the last chunk may be shorter).
    pub len: u64,
    /// Its BLAKE3 hash (`None` when it could not be read).
    pub hash: Option<blake3::Hash>,
    /// It is all zeros (a hole of an image file, or read as zeros).
    pub zero: bool,
    /// It was a hole of an image file, not read.
    pub hole: bool,
    /// Bytes read for it.
    pub bytes_read: u64,
    /// Its bytes, when it is to be sent: not zero, and its hash is not the one the target has.
    pub data: Option<Vec<u8>>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// Where `data`'s buffer goes back when the chunk is dropped: the scan's few buffers for
    /// chunks to be sent, used again and again.
    pool: Option<crossbeam_channel::Sender<Vec<u8>>>,
}

impl Drop for SourceChunk {
    fn drop(&mut self) {
        if let (Some(pool), Some(data)) = (self.pool.take(), self.data.take()) {
            let _ = pool.try_send(data);
        }
    }
}

/// The most chunks a scan holds the bytes of at once, beyond its workers' buffers: chunks
/// wait for one connection that sends them one at a time, so a few keep it busy. Each is a
/// buffer that goes back to the scan when its chunk is dropped, so nothing is allocated per
/// chunk (a fresh 4 MiB allocation per chunk left 100 MiB resident with 8 workers).
fn places(threads: usize) -> usize {
    (threads / 2).clamp(2, 8)
}

/// The source side of a block copy over the wire: a volume read chunk by chunk.
pub struct Source {
    vol: Volume,
    geo: Geometry,
}

impl Source {
    /// Opens SRC read-only and checks it: a missing or empty source is refused (exit code 254),
    /// as a local copy refuses it.
    pub fn open(src: &Path, options: &Options) -> Result<Source> {
        options.validate()?;
        let vol = Volume::open_source(src)?;
        if vol.size == 0 {
            return Err(Error::SourceEmpty {
                path: src.to_path_buf(),
            });
        }
        let geo = Geometry::new(vol.size, options.chunk_size);
        Ok(Source { vol, geo })
    }

    /// The source's size in bytes.
    pub fn size(&self) -> u64 {
        self.geo.size
    }

    /// What the source is.
    pub fn kind(&self) -> VolumeKind {
        self.vol.kind
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.geo.chunks()
    }

    /// Reads every chunk with `threads` workers (in ascending order, so reads stay nearly
    /// sequential), hashes it, and calls `on_chunk(Some(chunk))` on the calling thread for each
    /// as it is done, with its bytes when it is not zero and `differs(index, hash)` says the
    /// target's chunk differs. `on_chunk(None)` runs when no chunk came for a quarter of a
    /// second. Returning `false` from `on_chunk` stops the scan.
    ///
    /// At most a few chunks with bytes are held at once (beside each worker's buffer): a worker
    /// whose chunk is to be sent waits until one handed over before is dropped.
    pub fn scan(
        &self,
        threads: usize,
        differs: &(dyn Fn(u64, &blake3::Hash) -> bool + Sync),
        on_chunk: &mut dyn FnMut(Option<SourceChunk>) -> bool,
    ) {
        let geo = &self.geo;
        // Once the caller stops, the workers run through the remaining numbers without reading.
        let stop = AtomicBool::new(false);
        let n = places(threads);
        let (give, take) = crossbeam_channel::bounded::<Vec<u8>>(n);
        for _ in 0..n {
            give.send(Vec::new()).expect("room for every buffer");
        }
        let buffers = (&give, &take);
        for_each_chunk(
            geo.chunks(),
            threads,
            || AlignedBuf::new(geo.chunk_size as usize),
            |buf, index| {
                (!stop.load(Ordering::Relaxed))
                    .then(|| self.read_chunk(buf, index, differs, buffers))
            },
            |event| {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let go_on = match event {
                    None => on_chunk(None),
                    Some(None) => true,
                    Some(Some(c)) => on_chunk(Some(c)),
                };
                if !go_on {
                    stop.store(true, Ordering::Relaxed);
                }
            },
        );
        self.vol.forget();
    }

    fn read_chunk(
        &self,
        buf: &mut AlignedBuf,
        index: u64,
        differs: &(dyn Fn(u64, &blake3::Hash) -> bool + Sync),
        (give, take): (
            &crossbeam_channel::Sender<Vec<u8>>,
            &crossbeam_channel::Receiver<Vec<u8>>,
        ),
    ) -> SourceChunk {
        let (offset, len) = self.geo.range(index);
        let mut c = SourceChunk {
            index,
            len: len as u64,
            hash: None,
            zero: false,
            hole: false,
            bytes_read: 0,
            data: None,
            error: None,
            pool: None,
        };
        if self.vol.is_hole(offset, len as u64) {
            c.hole = true;
            c.zero = true;
            c.hash = Some(self.geo.zero_hash(len));
            return c;
        }
        if let Err(e) = self.vol.read_exact_at(buf.slice_mut(len), offset) {
            c.error = Some(format!(
                "cannot read source {}: {e}",
                self.vol.path.display()
            ));
            return c;
        }
        c.bytes_read = len as u64;
        let data = buf.slice(len);
        c.zero = is_zero(data);
        let hash = if c.zero {
            self.geo.zero_hash(len)
        } else {
            blake3::hash(data)
        };
        if !c.zero && differs(index, &hash) {
            // Every buffer comes back when its chunk is dropped, whichever way the scan ends.
            let mut bytes = take.recv().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(data);
            c.data = Some(bytes);
            c.pool = Some(give.clone());
        }
        c.hash = Some(hash);
        c
    }

    /// Hashes every chunk of the source again, for a verification on the target's side:
    /// `hashes[i]` is `Err` with the reason where chunk `i` could not be read.
    pub fn rehash(
        &self,
        threads: usize,
        progress: &mut dyn FnMut(&Progress),
    ) -> Vec<std::result::Result<blake3::Hash, String>> {
        hash_all(&self.vol, &self.geo, threads, Phase::Verify, progress).0
    }
}

/// How a [`Target`] chunk was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Bytes of data written.
    pub written: u64,
    /// Bytes zeroed without data (holes punched, write-zeroes).
    pub zeroed: u64,
    /// Bytes of the destination read to find which blocks differ.
    pub read: u64,
}

/// The destination side of a block copy over the wire.
///
/// [`Target::open`] checks the destination against the size the source announced and writes
/// nothing; [`Target::prepare`] removes a stale manifest and sizes an image file;
/// [`Target::hashes`] reads the destination's chunks; [`Target::write_chunk`] and
/// [`Target::zero_chunk`] write what the source sends; [`Target::finish`] flushes, writes the
/// manifest of an image file and verifies when asked.
pub struct Target {
    vol: Volume,
    geo: Geometry,
    options: Options,
    buf: AlignedBuf,
    /// What each destination chunk hashes to now, as far as this side knows.
    hashes: Vec<Option<blake3::Hash>>,
}

impl Target {
    /// Opens DST (creating a missing one as an empty image file, mode 0600) for a source of
    /// `size` bytes named `source` in messages. A device smaller than `size` is refused with both
    /// sizes named, before anything is written.
    pub fn open(dst: &Path, source: &Path, size: u64, options: &Options) -> Result<Target> {
        options.validate()?;
        if size == 0 {
            return Err(Error::SourceEmpty {
                path: source.to_path_buf(),
            });
        }
        // Opening writes nothing (a missing DST becomes an empty file).
        let (vol, _created) = Volume::open_dest(dst)?;
        if vol.kind == VolumeKind::Device && vol.size < size {
            return Err(too_small(source, size, dst, vol.size));
        }
        let geo = Geometry::new(size, options.chunk_size);
        Ok(Target {
            buf: AlignedBuf::new(options.chunk_size as usize),
            hashes: vec![None; geo.chunks() as usize],
            vol,
            geo,
            options: options.clone(),
        })
    }

    /// What the destination is.
    pub fn kind(&self) -> VolumeKind {
        self.vol.kind
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.geo.chunks()
    }

    /// The byte range of chunk `index`: its offset and length.
    pub fn chunk_range(&self, index: u64) -> (u64, usize) {
        self.geo.range(index)
    }

    /// The BLAKE3 hash of an all-zero chunk of `len` bytes (a full chunk or the last one).
    pub fn zero_hash(&self, len: usize) -> blake3::Hash {
        self.geo.zero_hash(len)
    }

    /// Makes the destination ready to be written: the manifest of an earlier copy is removed
    /// (it stops being true with the first write), and an image file gets the source's size.
    pub fn prepare(&mut self) -> Result<()> {
        if self.with_manifest() {
            remove_stale(&manifest_path(&self.vol.path))?;
        }
        if self.vol.kind == VolumeKind::File && self.vol.size != self.geo.size {
            self.vol.set_len(self.geo.size)?;
        }
        Ok(())
    }

    fn with_manifest(&self) -> bool {
        self.options.manifest && self.vol.kind == VolumeKind::File
    }

    /// Reads and hashes every chunk of the destination (holes of an image file are not read)
    /// with the configured workers. `hashes[i]` is `None` where chunk `i` could not be read.
    /// Also returns the bytes read.
    pub fn hashes(
        &mut self,
        progress: &mut dyn FnMut(&Progress),
    ) -> (Vec<Option<blake3::Hash>>, u64) {
        let (hashes, read) = hash_all(
            &self.vol,
            &self.geo,
            self.options.threads,
            Phase::Copy,
            progress,
        );
        self.hashes = hashes.into_iter().map(|h| h.ok()).collect();
        (self.hashes.clone(), read)
    }

    /// Writes chunk `index` (`data` is all of it) where it differs from the destination: the
    /// destination chunk is read to find the differing 4 KiB blocks (unless it is a hole, or
    /// `--no-compare`), then written as a local copy writes it.
    pub fn write_chunk(
        &mut self,
        index: u64,
        data: &[u8],
    ) -> std::result::Result<WriteOutcome, String> {
        let (offset, len) = self.geo.range(index);
        if data.len() != len {
            return Err(format!(
                "chunk at byte {offset} has {} bytes, {len} expected",
                data.len()
            ));
        }
        let mut out = WriteOutcome::default();
        let hole = self.vol.is_hole(offset, len as u64);
        let known = if hole {
            Dest::Zero
        } else if self.options.no_compare {
            Dest::Unknown
        } else {
            match self.vol.read_exact_at(self.buf.slice_mut(len), offset) {
                Ok(()) => {
                    out.read = len as u64;
                    Dest::Known(self.buf.slice(len))
                }
                Err(_) => Dest::Unknown,
            }
        };
        let done = write_changes(&self.vol, &self.geo.zeros, data, known, offset)?;
        out.written = done.written;
        out.zeroed = done.zeroed;
        self.hashes[index as usize] = Some(blake3::hash(data));
        Ok(out)
    }

    /// Zeroes chunk `index` of the destination without sending zeros (a hole punched in an
    /// image file, the device's write-zeroes), as a local copy zeroes a zero chunk. Returns
    /// the bytes zeroed.
    pub fn zero_chunk(&mut self, index: u64) -> std::result::Result<u64, String> {
        let (offset, len) = self.geo.range(index);
        self.vol
            .zero_range(offset, len as u64, &self.geo.zeros)
            .map_err(|e| {
                format!(
                    "cannot zero a range of destination {}: {e}",
                    self.vol.path.display()
                )
            })?;
        self.hashes[index as usize] = Some(self.geo.zero_hash(len));
        Ok(len as u64)
    }

    /// Ends the copy: flushes the destination (`fdatasync`) and writes the manifest of an
    /// image file when `summary` has no error.
    pub fn finish(&mut self, summary: &mut Summary) -> Result<()> {
        self.vol
            .sync()
            .map_err(|e| Error::io("cannot flush the writes to", &self.vol.path, e))?;
        if self.with_manifest() && summary.errors.is_empty() {
            let hashes: Option<Vec<blake3::Hash>> = self.hashes.iter().copied().collect();
            if let Some(hashes) = hashes {
                let file = manifest_path(&self.vol.path);
                Manifest::new(self.geo.size, self.geo.chunk_size, &hashes).write(&file)?;
                summary.manifest = Some(file.display().to_string());
            }
        }
        Ok(())
    }

    /// Reads every chunk of the destination again (with `O_DIRECT`; holes are known to be zero)
    /// and compares its hash with the source's, which `source` gives once this side is done
    /// reading (the source's side reads its volume again meanwhile). Each chunk that differs
    /// or could not be read is listed as a verify error.
    pub fn verify<E>(
        &self,
        summary: &mut Summary,
        progress: &mut dyn FnMut(&Progress),
        source: impl FnOnce() -> std::result::Result<Vec<std::result::Result<blake3::Hash, String>>, E>,
    ) -> std::result::Result<(), E> {
        let (mine, read) = hash_all(
            &self.vol,
            &self.geo,
            self.options.threads,
            Phase::Verify,
            progress,
        );
        let source = source()?;
        let mut v = VerifySummary {
            chunks: mine.len() as u64,
            bytes_read: read,
            mismatches: 0,
        };
        for (index, (s, d)) in source.iter().zip(&mine).enumerate() {
            let (offset, len) = self.geo.range(index as u64);
            let reason = match (s, d) {
                (Ok(s), Ok(d)) if s == d => continue,
                (Ok(s), Ok(d)) => {
                    v.mismatches += 1;
                    format!(
                        "destination differs from source: BLAKE3 {} on the source, {} on the \
                         destination",
                        s.to_hex(),
                        d.to_hex()
                    )
                }
                (Err(e), _) => format!("on the sender: {e}"),
                (_, Err(e)) => e.clone(),
            };
            summary.errors.push(ChunkError {
                phase: "verify",
                offset,
                len: len as u64,
                reason,
            });
        }
        if source.len() != mine.len() {
            summary.errors.push(ChunkError {
                phase: "verify",
                offset: 0,
                len: 0,
                reason: format!(
                    "the sender verified {} chunks, the destination has {}",
                    source.len(),
                    mine.len()
                ),
            });
        }
        summary.verify = Some(v);
        Ok(())
    }

    /// A summary with this copy's sizes filled in, for the caller to count into.
    pub fn summary(&self, source: &str, source_kind: VolumeKind) -> Summary {
        Summary {
            source: source.to_string(),
            destination: self.vol.path.display().to_string(),
            source_kind: source_kind.name(),
            destination_kind: self.vol.kind.name(),
            size: self.geo.size,
            chunk_size: self.geo.chunk_size,
            threads: self.options.threads,
            chunks: self.geo.chunks(),
            ..Summary::default()
        }
    }
}

fn too_small(src: &Path, src_size: u64, dst: &Path, dst_size: u64) -> Error {
    Error::TooSmall {
        src: src.to_path_buf(),
        src_size,
        dst: dst.to_path_buf(),
        dst_size,
    }
}
