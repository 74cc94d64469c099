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
    /// A call to the API server failed. Its message carries the client's: for the API server's
    /// refusals just the server's words and reason, not the whole status.
    #[error("{action}: {}", api_text(.source))]
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
    /// An object the command needs does not exist; the message says where it was looked for and
    /// how to list what is there.
    #[error("{0}")]
    NotFound(String),
    /// A workflow stopped; the message says what happened and what to do.
    #[error("{0}")]
    Failed(String),
    /// A step failed; `context` says what that leaves behind for the user (the source is the
    /// step's own error, printed after it).
    #[error("{context}")]
    Context {
        /// What the failure means for the user's data and workloads.
        context: String,
        /// The step's error.
        #[source]
        source: Box<Error>,
    },
    /// A step failed, and undoing what came before it (scaling a workload back up, giving a
    /// claim back its volume) failed too. The step's error stays the primary one (the source,
    /// printed after); `undo` says what is left undone and how to finish it by hand.
    #[error("{}; before that", .undo.full_message())]
    UndoFailed {
        /// The failure of the undo.
        undo: Box<Error>,
        /// The step's error.
        #[source]
        primary: Box<Error>,
    },
    /// Text that should be JSON is not.
    #[error("{what}: {source}")]
    Decode {
        /// What was read, and what to do about it.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A local I/O operation failed (reading a pod's log, watching for Ctrl-C).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
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

/// The client's error as a user reads it: the API server's message and reason for a refusal
/// (kube's own text repeats the message and adds the status's debug form), the client's text
/// otherwise.
fn api_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.reason),
        e => e.to_string(),
    }
}

impl Error {
    /// Whether the message already carries the text of the error below it (the client's, the
    /// parser's, the operating system's); printing a chain of causes stops after it.
    pub fn prints_its_source(&self) -> bool {
        matches!(
            self,
            Error::Api { .. } | Error::Wait { .. } | Error::Decode { .. } | Error::Io { .. }
        )
    }

    /// A closure for `map_err` that names the action that failed.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api { action, source }
    }

    /// Attaches what a failure means for the user: the error becomes the source of a
    /// [`Error::Context`].
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Combines the result of a step with the result of undoing what came before it: the step's
    /// error stays primary and an undo failure is attached to it; with the step done, an undo
    /// failure is the error.
    pub fn with_undo<T>(step: Result<T>, undo: Result<()>) -> Result<T> {
        match (step, undo) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(u)) => Err(u),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(u)) => Err(Error::UndoFailed {
                undo: Box::new(u),
                primary: Box::new(e),
            }),
        }
    }

    /// The whole message: this error's, then those of the errors attached below it (a context's
    /// step error, an undo failure's step error), as the command line prints them.
    pub fn full_message(&self) -> String {
        match self {
            Error::Context { context, source } => format!("{context}: {}", source.full_message()),
            Error::UndoFailed { undo, primary } => {
                format!(
                    "{}; before that: {}",
                    undo.full_message(),
                    primary.full_message()
                )
            }
            e => e.to_string(),
        }
    }

    /// The error that stopped the work, below any context or undo failure attached to it.
    pub fn primary(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.primary(),
            Error::UndoFailed { primary, .. } => primary.primary(),
            e => e,
        }
    }

    /// Whether the work stopped because an object does not exist: the API server said so, or
    /// the command looked for it and did not find it.
    pub fn is_not_found(&self) -> bool {
        match self.primary() {
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } => s.code == 404,
            Error::NotFound(_) => true,
            _ => false,
        }
    }

    /// Whether the API server refused a change because the object changed meanwhile (or exists
    /// already).
    pub fn is_conflict(&self) -> bool {
        matches!(self.primary(), Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// Whether the work stopped for a reason of its own (a step that failed, Ctrl-C), not
    /// because the API server could not be asked: what it created can then be removed.
    pub fn is_stop(&self) -> bool {
        matches!(
            self.primary(),
            Error::Failed(_) | Error::NotFound(_) | Error::Interrupted(_)
        )
    }

    /// Whether the user interrupted the work (Ctrl-C).
    pub fn is_interrupted(&self) -> bool {
        matches!(self.primary(), Error::Interrupted(_))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: u16) -> Error {
        let mut status = kube::core::Status::failure("claims \"data\" not found", "NotFound");
        status.code = code;
        Error::api("read claim data")(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn not_found_and_conflict_are_seen_through_context_and_undo_failures() {
        let missing = refused(404);
        assert!(missing.is_not_found() && !missing.is_conflict());
        let wrapped = refused(404).context("the volume cannot be read");
        assert!(wrapped.is_not_found());
        assert!(
            Error::NotFound("claim data not found".into())
                .context("x")
                .is_not_found()
        );
        let undo = Error::with_undo::<()>(Err(refused(409)), Err(refused(404))).unwrap_err();
        assert!(undo.is_conflict() && !undo.is_not_found(), "{undo:?}");
        assert!(!Error::Failed("x".into()).is_not_found());
    }

    #[test]
    fn the_step_error_stays_primary_and_an_undo_failure_is_attached() {
        let step = || {
            Err::<u8, _>(Error::Failed(
                "the final copy ended with exit code 1".into(),
            ))
        };
        let undo = || {
            Err(Error::Failed(
                "could not scale back up: deployment/web".into(),
            ))
        };
        // Both failed: the step's error is the primary one; the undo's comes first in the text,
        // the step's follows as its source.
        let both = Error::with_undo(step(), undo()).unwrap_err();
        assert!(matches!(both.primary(), Error::Failed(m) if m.contains("final copy")));
        assert_eq!(
            both.full_message(),
            "could not scale back up: deployment/web; before that: the final copy ended with \
             exit code 1"
        );
        let source = std::error::Error::source(&both).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("the final copy ended with exit code 1")
        );
        // Only one failed: that one, unchanged.
        let only_step = Error::with_undo(step(), Ok(())).unwrap_err();
        assert_eq!(
            only_step.to_string(),
            "the final copy ended with exit code 1"
        );
        let only_undo = Error::with_undo(Ok(1u8), undo()).unwrap_err();
        assert!(only_undo.to_string().starts_with("could not scale back up"));
        assert_eq!(Error::with_undo(Ok(7u8), Ok(())).unwrap(), 7);
        // Stops (failures of our own, Ctrl-C) are told apart from API errors below context.
        assert!(step().unwrap_err().context("c").is_stop());
        assert!(
            Error::Interrupted("Job x deleted".into())
                .context("c")
                .is_interrupted()
        );
        assert!(!refused(500).context("c").is_stop());
    }
}
