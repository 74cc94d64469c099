//! The errors that stop a block copy before or while it runs.

use std::io;
use std::path::PathBuf;

use contract::ExitCode as Exit;

/// A result whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a block copy could not be done at all. Errors of single chunks are not fatal: they are
/// listed in [`crate::Summary::errors`] instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source does not exist.
    #[error("source {path} does not exist: give an existing block device or image file")]
    SourceMissing {
        /// The source path as given.
        path: PathBuf,
    },
    /// The source has a size of zero bytes.
    #[error(
        "source {path} is empty (0 bytes): refusing to copy, since that would wipe the destination"
    )]
    SourceEmpty {
        /// The source path as given.
        path: PathBuf,
    },
    /// A path is neither a block device nor a regular file.
    #[error("{path} is a {kind}, not a block device or image file")]
    NotAVolume {
        /// The path as given.
        path: PathBuf,
        /// What it is instead (directory, character device, ...).
        kind: &'static str,
    },
    /// SRC and DST are the same device or file.
    #[error("source {src} and destination {dst} are the same {what}: refusing to copy onto itself")]
    SameVolume {
        /// The source path as given.
        src: PathBuf,
        /// The destination path as given.
        dst: PathBuf,
        /// "block device" or "file".
        what: &'static str,
    },
    /// The destination block device is smaller than the source.
    #[error(
        "destination {dst} ({dst_size} bytes) is smaller than source {src} ({src_size} bytes): \
         nothing was written; give a destination of at least {src_size} bytes"
    )]
    TooSmall {
        /// The source path as given.
        src: PathBuf,
        /// The source size in bytes.
        src_size: u64,
        /// The destination path as given.
        dst: PathBuf,
        /// The destination size in bytes.
        dst_size: u64,
    },
    /// The destination block device is held by someone else (mounted, part of a RAID or LVM, or
    /// opened exclusively by another program).
    #[error(
        "destination {path} is in use (mounted or opened exclusively elsewhere): \
         unmount it or stop its user first"
    )]
    InUse {
        /// The destination path as given.
        path: PathBuf,
    },
    /// The options cannot work (a chunk size that is not a multiple of 4096, zero threads, ...).
    #[error("{0}")]
    Usage(String),
    /// The backup folder's bookkeeping failed (lock held, bad version name, unreadable folder),
    /// as it would for a file backup.
    #[error("{0}")]
    Backup(#[from] store::Error),
    /// A system call on a whole volume failed (open, size, truncate, sync).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot open source".
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The mover's exit code for this error: 254 for a missing or empty source, 2 for a usage
    /// error, 1 for everything else.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::SourceMissing { .. } | Error::SourceEmpty { .. } => Exit::Refused,
            Error::Usage(_) | Error::Backup(store::Error::Usage(_)) => Exit::Usage,
            _ => Exit::Fatal,
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
