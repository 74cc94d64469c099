//! Incremental, sparse-aware copies of raw block devices and image files.
//!
//! [`run`] copies a source volume (a block device or an image file) onto a destination volume
//! chunk by chunk. Both sides are read in large chunks by several workers at once; a chunk is
//! written only when it differs, so copying a mostly unchanged volume again writes almost nothing.
//! Chunks of zeros become holes in image files and are zeroed with the device's own zeroing
//! command on block devices, never by sending megabytes of zeros. Reads and writes bypass the page
//! cache where the kernel allows it (`O_DIRECT`), so copying a whole volume does not push a node's
//! working set out of memory.
//!
//! The flow is one way: [`Job::open`] checks both sides and writes nothing; [`Job::run`] copies,
//! optionally verifies with BLAKE3, and returns a [`Summary`].

mod buffer;
mod copy;
mod error;
mod manifest;
mod options;
mod pool;
pub mod reflink;
pub mod remote;
mod summary;
mod verify;
pub mod versions;
mod volume;

pub use error::{Error, Result};
pub use manifest::{MANIFEST_FORMAT, MANIFEST_SUFFIX, Manifest, manifest_path};
pub use options::{DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, Options, default_threads, parse_size};
pub use summary::{ChunkError, Summary, VerifySummary};
pub use volume::VolumeKind;

use std::path::Path;

use contract::progress::block::Progress;

pub use copy::{Job, Reporter};

/// Checks SRC and DST, copies SRC onto DST (unless [`Options::verify_only`]), verifies when asked,
/// and returns what was done.
///
/// `progress` is called from the calling thread at each phase start, about twice a second while a
/// phase runs, and once with [`Phase::Done`] at the end.
pub fn run(
    src: &Path,
    dst: &Path,
    options: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    Job::open(src, dst, options)?.run(progress)
}
