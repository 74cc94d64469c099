//! The crate's error type.
//!
//! Each error prints what it says once: an error that wraps another (the client's, the watch's,
//! the parser's, the operating system's) says only what was being done, and gives the other as its
//! [`source`](std::error::Error::source). A reporter that prints an error and then its sources,
//! such as [`Error::full_message`] or the command line's, so prints every cause once.

/// What can go wrong on the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be carried out as given; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The cluster cannot be reached or the kubeconfig is unusable.
    #[error("{0}")]
    Connect(String),
    /// A call to the API server failed. Its message says what was being done; the source is the
    /// client's error.
    #[error("{action}")]
    Api {
        /// What was being done ("create Job x").
        action: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// Watching for a condition failed (the watch could not be started or broke off). Its
    /// message names what was watched; the source is the watch's error.
    #[error("cannot watch {what}")]
    Wait {
        /// The object or objects watched ("claim data").
        what: String,
        /// The watch's error.
        #[source]
        source: WatchError,
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
    /// Text that should be JSON is not. The message says what was read; the source is the
    /// parser's error.
    #[error("{what}")]
    Decode {
        /// What was read, and what to do about it.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A local I/O operation failed (reading a pod's log, watching for Ctrl-C). The message says
    /// what was being done; the source is the operating system's error.
    #[error("{what}")]
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

/// The client's error as a user reads it, the source of [`Error::Api`]: for the API server's
/// refusals the server's message and reason (kube's own text repeats the message and adds the
/// status's debug form), the client's text otherwise. That text already holds what caused it (a
/// refused connection, a TLS failure), so it has no source of its own.
#[derive(Debug)]
pub struct ClientError(pub kube::Error);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ClientText(&self.0).fmt(f)
    }
}

/// An API server's `Status` as a user reads it: its message and reason.
fn status_text(s: &kube::core::Status, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match (s.message.is_empty(), s.reason.is_empty()) {
        (false, false) => write!(f, "{} ({})", s.message, s.reason),
        (false, true) => f.write_str(&s.message),
        (true, false) => f.write_str(&s.reason),
        (true, true) => write!(f, "the API server answered {}", s.code),
    }
}

/// A watch's error as a user reads it, the source of [`Error::Wait`]: how the watch failed, with
/// the API server's message and reason where it refused (the watcher's own text adds the status's
/// debug form). Like [`ClientError`] it holds its cause in its text.
#[derive(Debug)]
pub struct WatchError(pub kube::runtime::watcher::Error);

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use kube::runtime::watcher::Error as W;
        match &self.0 {
            W::InitialListFailed(e) => write!(f, "the first list failed: {}", ClientText(e)),
            W::WatchStartFailed(e) => write!(f, "the watch could not start: {}", ClientText(e)),
            W::WatchFailed(e) => write!(f, "the watch broke off: {}", ClientText(e)),
            W::WatchError(s) => {
                f.write_str("the API server ended the watch: ")?;
                status_text(s, f)
            }
            e => e.fmt(f),
        }
    }
}

impl std::error::Error for WatchError {}

/// [`ClientError`]'s text for a borrowed client error.
struct ClientText<'a>(&'a kube::Error);

impl std::fmt::Display for ClientText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            kube::Error::Api(s) => status_text(s, f),
            e => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The HTTP status code of the API server's refusal, if it refused.
    pub fn code(&self) -> Option<u16> {
        match &self.0 {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

/// An error and its sources, each printed once and joined with ": ". A source whose text the
/// error above it already holds (an error from another crate that prints its cause too, such as
/// "what: cause") is left out.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut last = text.clone();
    let mut next = err.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !line.is_empty() && !last.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        last = line;
        next = cause.source();
    }
    text
}

impl Error {
    /// A closure for `map_err` that names the action that failed.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api {
            action,
            source: ClientError(source),
        }
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

    /// The whole message: this error's, then those of the errors below it (a context's step
    /// error, an undo failure's step error, the client's or the parser's error), each once, as
    /// the command line prints them.
    pub fn full_message(&self) -> String {
        chain_text(self)
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
            Error::Api { source, .. } => source.code() == Some(404),
            Error::NotFound(_) => true,
            _ => false,
        }
    }

    /// Whether the API server refused a change because the object changed meanwhile (or exists
    /// already).
    pub fn is_conflict(&self) -> bool {
        matches!(self.primary(), Error::Api { source, .. } if source.code() == Some(409))
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
    fn each_error_says_what_was_done_and_its_source_why_each_once() {
        // An API server's refusal: the action, then the server's message and reason.
        assert_eq!(refused(404).to_string(), "read claim data");
        assert_eq!(
            refused(404).context("nothing was changed").full_message(),
            "nothing was changed: read claim data: claims \"data\" not found (NotFound)"
        );
        // A watch the API server refused.
        let mut status = kube::core::Status::failure(
            "pods is forbidden: User \"x\" cannot watch resource \"pods\"",
            "Forbidden",
        );
        status.code = 403;
        let watch = Error::Wait {
            what: "pods of Job j".into(),
            source: WatchError(kube::runtime::watcher::Error::WatchStartFailed(
                kube::Error::Api(status.boxed()),
            )),
        };
        assert_eq!(watch.to_string(), "cannot watch pods of Job j");
        assert_eq!(
            watch.full_message(),
            "cannot watch pods of Job j: the watch could not start: pods is forbidden: User \"x\" \
             cannot watch resource \"pods\" (Forbidden)"
        );
        // Text that is not JSON, and a local I/O failure.
        let decode = Error::Decode {
            what: "the annotation pvc-backup.io/progress of claim data".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(
            decode.full_message(),
            "the annotation pvc-backup.io/progress of claim data: expected value at line 1 column 1"
        );
        let io = Error::Io {
            what: "read the log of pod p".into(),
            source: std::io::Error::other("connection reset"),
        };
        assert_eq!(io.full_message(), "read the log of pod p: connection reset");
        // Errors that hold no other: their text alone.
        assert_eq!(Error::Failed("f".into()).full_message(), "f");
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
