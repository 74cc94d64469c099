//! What can go wrong with a repository, and the mover's exit code for each.

use contract::ExitCode;

/// An error of a repository command. Each names the repository or the file it is about and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository URL, the password or the credentials are missing or malformed (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The repository could not be opened, read or written (exit 1).
    #[error("repository {location}: {message}")]
    Repository {
        /// The repository, as the user gave it (credentials are never part of it).
        location: String,
        /// What failed, and what to do about it.
        message: String,
    },
    /// The source could not be opened, is missing or is empty (the mover's own checks).
    #[error(transparent)]
    Source(#[from] mover::Error),
}

impl Error {
    /// The mover's exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Repository { .. } => ExitCode::Fatal,
            Error::Source(e) => e.exit_code(),
        }
    }

    pub(crate) fn repo(location: &str, message: impl Into<String>) -> Error {
        Error::Repository {
            location: location.to_string(),
            message: message.into(),
        }
    }
}

/// A repository command's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
