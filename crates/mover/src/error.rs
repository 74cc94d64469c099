//! Errors that stop a run before or instead of copying (per-entry failures are
//! [`crate::EntryError`] records, not errors).

use std::io;

use contract::ExitCode;

/// A failure that ends a mover command; each maps to one of the mover's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source does not exist (a claim that failed to mount looks like this).
    #[error(
        "source {path} does not exist ({source}); check that the source volume is mounted there. \
         The target was not touched"
    )]
    SourceMissing {
        /// The source path as given.
        path: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// The source has no entries, so mirroring it would delete everything in the target.
    #[error(
        "source {path} is empty; mirroring it would delete everything in the target, so nothing \
         was done. Check that the right volume is mounted, or pass --allow-empty to mirror an \
         empty source on purpose"
    )]
    SourceEmpty {
        /// The source path as given.
        path: String,
    },
    /// Arguments or paths that cannot work (overlapping trees, an escaping `--subdir`, ...).
    #[error("{0}")]
    Usage(String),
    /// Another mover holds the target's lock.
    #[error(transparent)]
    Locked(store::Locked),
    /// The target's filesystem has less free room than the copy needs (checked before writing).
    #[error(
        "target {target} is too small for this copy: it needs {} and {} more, and its \
         filesystem has {} and {} free. Nothing was written. Make room there or give the volume \
         more space; --no-space-check copies anyway, and stops at the first write that finds \
         no room",
        crate::space::show_bytes(need.bytes),
        crate::space::show_inodes(Some(need.inodes)),
        crate::space::show_bytes(free.bytes),
        crate::space::show_inodes(free.inodes)
    )]
    NoSpace {
        /// The target path as given.
        target: String,
        /// What the copy adds to the target.
        need: crate::space::Need,
        /// What its filesystem has free.
        free: crate::space::Room,
    },
    /// The target's filesystem ran out of room (or the owner's quota) during the copy, which
    /// stopped there.
    #[error(
        "target {target} is full: {path}: {op}: {error}. The copy stopped there; what was copied \
         is kept. {advice}"
    )]
    TargetFull {
        /// The target path as given.
        target: String,
        /// The entry whose write found no room.
        path: String,
        /// What was being done.
        op: String,
        /// What the kernel said.
        error: String,
        /// How much more room the rest of the copy needs, and what to do.
        advice: String,
    },
    /// An I/O failure on the roots themselves (the target root cannot be opened or written).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Which path.
        path: String,
        /// What the kernel said.
        source: io::Error,
    },
}

impl Error {
    /// The mover exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::SourceMissing { .. } | Error::SourceEmpty { .. } => ExitCode::Refused,
            Error::Usage(_) => ExitCode::Usage,
            Error::Locked { .. }
            | Error::Io { .. }
            | Error::NoSpace { .. }
            | Error::TargetFull { .. } => ExitCode::Fatal,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Usage(m) => Error::Usage(m),
            store::Error::Locked(l) => Error::Locked(l),
            store::Error::Io { what, path, source } => Error::Io { what, path, source },
        }
    }
}

/// Result of a mover operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
