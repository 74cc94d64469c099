//! Errors that end a transfer (a file that fails is an entry of the summary, not an error).

use std::io;

use contract::ExitCode;

/// A failure that ends a `send` or `receive`; each maps to one of the mover's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or certificate file is missing, unreadable or malformed, or cannot be written.
    #[error("{what} {path}: {detail}")]
    Keys {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// Setting up TLS failed before any peer was involved.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The network failed (connect, listen, a connection that broke).
    #[error("{what}: {source}")]
    Net {
        /// What was being done.
        what: String,
        /// What the system said.
        source: io::Error,
    },
    /// The peer sent something the protocol does not allow; the transfer was stopped and
    /// nothing outside the target was touched.
    #[error("the peer broke the protocol: {0}")]
    Protocol(String),
    /// The mover refused or failed on this side (empty source, lock held, bad target, ...).
    #[error(transparent)]
    Mover(#[from] mover::Error),
    /// The block copier refused or failed on this side (missing or empty source, destination
    /// device too small or in use, ...).
    #[error(transparent)]
    Block(#[from] block::Error),
    /// The peer ended the transfer with an error of its own.
    #[error("the {side} reported: {message}")]
    Remote {
        /// `sender` or `receiver`.
        side: &'static str,
        /// Its exit code.
        code: ExitCode,
        /// Its message.
        message: String,
    },
    /// Command line values that cannot work.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The mover exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Mover(e) => e.exit_code(),
            Error::Block(e) => e.exit_code(),
            Error::Remote { code, .. } => *code,
            Error::Usage(_) => ExitCode::Usage,
            Error::Keys { .. } | Error::Tls(_) | Error::Net { .. } | Error::Protocol(_) => {
                ExitCode::Fatal
            }
        }
    }

    /// A network error while `what`.
    pub(crate) fn net(what: impl Into<String>, source: io::Error) -> Self {
        Error::Net {
            what: what.into(),
            source,
        }
    }

    /// A protocol violation.
    pub(crate) fn protocol(what: impl Into<String>) -> Self {
        Error::Protocol(what.into())
    }
}

/// Result of a wire operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
