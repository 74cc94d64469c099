//! The crate's error type.

/// What can go wrong on the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be carried out as given; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// An object could not be turned into YAML or JSON.
    #[error("cannot serialise {what}: {message}")]
    Serialise {
        /// The object or document.
        what: String,
        /// The serialiser's message.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
