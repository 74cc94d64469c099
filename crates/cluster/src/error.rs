//! The crate's error type.

/// What can go wrong on the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be carried out as given; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The cluster cannot be reached or the kubeconfig is unusable.
    #[error("{0}")]
    Connect(String),
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done ("create Job x").
        action: String,
        /// The client's error (the API server's `Status` message for refusals).
        #[source]
        source: kube::Error,
    },
    /// Watching for a condition failed (the watch could not be started or broke off).
    #[error("cannot watch {what}: {source}")]
    Wait {
        /// The object or objects watched ("claim data").
        what: String,
        /// The watch's error.
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// A workflow stopped; the message says what happened and what to do.
    #[error("{0}")]
    Failed(String),
    /// Interrupted by the user (Ctrl-C); what was created has been removed.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// An object could not be turned into YAML or JSON.
    #[error("cannot serialise {what}: {message}")]
    Serialise {
        /// The object or document.
        what: String,
        /// The serialiser's message.
        message: String,
    },
}

impl Error {
    /// A closure for `map_err` that names the action that failed.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api { action, source }
    }

    /// Whether this is the API server saying the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
