//! Failures of the store's own bookkeeping: a held lock, a bad snapshot name, a folder that cannot
//! be read.

use std::io;

/// A failure to lock, list or resolve in a backup target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name or a target that cannot work (not a snapshot name, no such snapshot, a state
    /// folder that is not a folder).
    #[error("{0}")]
    Usage(String),
    /// Another mover holds the target's lock.
    #[error(transparent)]
    Locked(#[from] Locked),
    /// An I/O failure on the target's folders.
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

/// Another mover holds a target's lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "target {target} is in use by another pvc-backup mover (pid {holder}); wait for it to \
     finish. A lock left by a mover that died is released by the kernel and taken over \
     automatically"
)]
pub struct Locked {
    /// The target path as given.
    pub target: String,
    /// What the lock file says about its holder.
    pub holder: String,
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
