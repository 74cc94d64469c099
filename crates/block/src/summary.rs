//! What a block copy did, for the caller and for `--progress json`.

use serde::{Deserialize, Deserializer, Serialize};

/// A name out of a fixed set ("device" or "file", "copy" or "verify"). Spelt as an alias, so
/// that serde does not take the field for one that borrows from its input (which would make a
/// summary readable only from `'static` bytes): it is read with [`one_of`] instead.
type Name = &'static str;

/// One chunk that could not be copied or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkError {
    /// "copy" or "verify".
    #[serde(deserialize_with = "phase_name")]
    pub phase: Name,
    /// Byte offset of the chunk in the volume.
    pub offset: u64,
    /// Length of the chunk in bytes.
    pub len: u64,
    /// What went wrong, with the side (source or destination) it went wrong on.
    pub reason: String,
}

/// Counts of the verification pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Chunks compared.
    pub chunks: u64,
    /// Bytes read from both sides (holes of image files are known to be zero and not read).
    pub bytes_read: u64,
    /// Chunks whose BLAKE3 hashes differ (each is also in [`Summary::errors`]).
    pub mismatches: u64,
}

/// What a block copy did. Printed as JSON at the end of `--progress json`; read back by the
/// sending side of a copy over the wire, which gets it from the receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The source path.
    pub source: String,
    /// The destination path.
    pub destination: String,
    /// "device" or "file" for the source.
    #[serde(deserialize_with = "kind_name")]
    pub source_kind: Name,
    /// "device" or "file" for the destination.
    #[serde(deserialize_with = "kind_name")]
    pub destination_kind: Name,
    /// Bytes copied: the size of the source.
    pub size: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Workers used.
    pub threads: usize,
    /// Chunks in the volume.
    pub chunks: u64,
    /// Chunks the copy pass handled (0 with `verify_only`).
    pub chunks_done: u64,
    /// Chunks whose source was read (not known to be a hole).
    pub chunks_read: u64,
    /// Bytes read from both sides during the copy pass.
    pub bytes_read: u64,
    /// Chunks into which data was written.
    pub chunks_written: u64,
    /// Bytes of data written.
    pub bytes_written: u64,
    /// Chunks of zeros in the source that had to be zeroed on the destination (hole punched,
    /// device zeroing command) rather than written.
    pub chunks_zeroed: u64,
    /// Bytes zeroed that way.
    pub bytes_zeroed: u64,
    /// Chunks already equal on both sides, skipped.
    pub chunks_equal: u64,
    /// Chunks written or zeroed without reading the destination first, because the chunks before
    /// them all differed from it (a fresh or unrelated destination).
    pub chunks_uncompared: u64,
    /// Chunks of the source that are all zero (whether or not anything had to be done).
    pub chunks_zero: u64,
    /// Source chunks known to be holes of an image file, skipped without reading.
    pub chunks_hole: u64,
    /// The verification pass, when asked for.
    pub verify: Option<VerifySummary>,
    /// Path of the manifest of per-chunk hashes written next to an image-file destination.
    pub manifest: Option<String>,
    /// Chunks that failed, with offset and reason.
    pub errors: Vec<ChunkError>,
    /// Milliseconds from start to end.
    pub duration_ms: u64,
    /// The exit code: 0 when DST equals SRC, 23 when some chunks failed.
    pub exit_code: u8,
}

/// Reads one of `names` as the `'static` string it is.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    names: &[&'static str],
) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    names
        .iter()
        .find(|n| **n == s)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not one of {names:?}")))
}

fn kind_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &["device", "file"])
}

fn phase_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &["copy", "verify"])
}

impl Summary {
    /// Sorts the errors by offset and sets the exit code: 0 without errors, 23 with.
    pub fn conclude(&mut self) {
        self.errors.sort_by_key(|e| (e.offset, e.phase));
        self.exit_code = if self.errors.is_empty() {
            contract::ExitCode::Ok
        } else {
            contract::ExitCode::Partial
        }
        .code();
    }

    /// Counts one chunk into which `written` bytes of data were written and `zeroed` bytes
    /// zeroed: a chunk written when any data was, else a chunk zeroed when anything was.
    /// Returns whether anything was done.
    pub fn count_written(&mut self, written: u64, zeroed: u64) -> bool {
        self.bytes_written += written;
        self.bytes_zeroed += zeroed;
        if written > 0 {
            self.chunks_written += 1;
        } else if zeroed > 0 {
            self.chunks_zeroed += 1;
        }
        written > 0 || zeroed > 0
    }

    /// The last progress line of a copy (phase `done`), from its summary.
    pub fn done_progress(&self) -> contract::progress::block::Progress {
        contract::progress::block::Progress {
            phase: contract::progress::block::Phase::Done,
            entries_done: self.chunks,
            entries_known: self.chunks,
            bytes_done: self.size,
            bytes_known: self.size,
            rate_bytes_per_sec: crate::copy::rate(self.size, self.duration_ms),
            elapsed_ms: self.duration_ms,
        }
    }

    /// One line for people: what was read, written, skipped and how long it took.
    pub fn human_line(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let secs = self.duration_ms as f64 / 1000.0;
        let mut line = format!(
            "{} -> {}: {} chunks of {} MiB: {} written ({:.1} MiB), {} zeroed, {} equal, {} zero in source \
             ({} holes not read), {:.1} MiB read, {:.2}s",
            self.source,
            self.destination,
            self.chunks,
            mib(self.chunk_size),
            self.chunks_written,
            mib(self.bytes_written),
            self.chunks_zeroed,
            self.chunks_equal,
            self.chunks_zero,
            self.chunks_hole,
            mib(self.bytes_read),
            secs,
        );
        if self.chunks_uncompared > 0 {
            line.push_str(&format!(
                ", {} written without reading the destination",
                self.chunks_uncompared
            ));
        }
        if let Some(v) = &self.verify {
            line.push_str(&format!(
                ", verified {} chunks: {} mismatched",
                v.chunks, v.mismatches
            ));
        }
        if !self.errors.is_empty() {
            line.push_str(&format!(", {} errors", self.errors.len()));
        }
        line.push_str(&format!(", exit {}", self.exit_code));
        line
    }
}
