//! What a block copy is asked to do.

use crate::error::{Error, Result};

/// The default chunk size: 4 MiB, large enough for full-speed sequential I/O and small enough
/// that a change of a few bytes rewrites little.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

/// The smallest chunk size accepted (and the unit every chunk size is a multiple of): 4 KiB.
pub const MIN_CHUNK_SIZE: u64 = 4096;

/// The largest chunk size accepted: 1 GiB (each worker holds two chunks in memory).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

/// Settings of one block copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Bytes per chunk; a multiple of [`MIN_CHUNK_SIZE`].
    pub chunk_size: u64,
    /// Number of workers reading, comparing and writing chunks at once.
    pub threads: usize,
    /// After the copy, read both sides again and compare BLAKE3 hashes per chunk.
    pub verify: bool,
    /// Write nothing: only compare both sides with BLAKE3 (a check that DST is a faithful copy).
    pub verify_only: bool,
    /// Write a manifest of per-chunk BLAKE3 hashes next to an image-file destination.
    pub manifest: bool,
    /// Do not read the destination to compare: write every data chunk and zero every zero chunk
    /// (the fastest first copy onto a new device; not incremental).
    pub no_compare: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk_size: DEFAULT_CHUNK_SIZE,
            threads: default_threads(),
            verify: false,
            verify_only: false,
            manifest: true,
            no_compare: false,
        }
    }
}

impl Options {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_size < MIN_CHUNK_SIZE
            || self.chunk_size > MAX_CHUNK_SIZE
            || !self.chunk_size.is_multiple_of(MIN_CHUNK_SIZE)
        {
            return Err(Error::Usage(format!(
                "chunk size {} is not a multiple of 4 KiB between 4 KiB and 1 GiB",
                self.chunk_size
            )));
        }
        if self.no_compare && self.verify_only {
            return Err(Error::Usage(
                "--no-compare copies without comparing; it cannot go with --verify-only".into(),
            ));
        }
        if self.threads == 0 {
            return Err(Error::Usage("threads must be at least 1".into()));
        }
        Ok(())
    }
}

/// The default number of workers: four times the CPUs this process may run on (its affinity mask
/// and cgroup quota), at least 4 and at most 16.
///
/// Workers spend most of their time waiting for the disk; what makes a volume read fast is the
/// number of requests in flight, not the CPUs. With 4 MiB chunks, 8 workers keep 32 MiB of reads
/// queued, which on a 2-CPU node read a loop device about a third faster than 4 workers did.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * 4).clamp(4, 16)
}

/// Parses a size such as `4194304`, `4M`, `4MiB`, `512k` or `1G` (binary units; a trailing `B`
/// or `iB` is accepted).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "{text:?} is not a size: write a number with an optional unit, e.g. 4M"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is too large a number"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use K, M or G (powers of 1024)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn chunk_sizes_must_be_multiples_of_4k() {
        let ok = Options {
            chunk_size: 64 << 10,
            ..Options::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [0, 1000, 4097, 2 << 30] {
            let o = Options {
                chunk_size: bad,
                ..Options::default()
            };
            assert_eq!(o.validate().unwrap_err().exit_code(), 2, "{bad}");
        }
        let o = Options {
            threads: 0,
            ..Options::default()
        };
        assert!(o.validate().is_err());
    }

    #[test]
    fn default_threads_is_bounded() {
        let t = default_threads();
        assert!((4..=16).contains(&t));
    }
}
