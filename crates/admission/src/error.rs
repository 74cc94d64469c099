//! The one error type of the admission crate.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the admission guard, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference in a pod is not a valid reference.
    #[error("image {image:?} is not a valid image reference: {why}")]
    InvalidImage {
        /// The reference as written.
        image: String,
        /// What is wrong with it.
        why: String,
    },
    /// An `--allowed-image` rule cannot be parsed.
    #[error(
        "allowed image {rule:?} is not valid: {why}; write REPOSITORY[:TAG], REPOSITORY[:TAG]@DIGEST, REPOSITORY:* or PREFIX/*"
    )]
    InvalidRule {
        /// The rule as written.
        rule: String,
        /// What is wrong with it.
        why: String,
    },
    /// The policy was given no allowed image, so it could never allow the mover.
    #[error("no allowed image: give the mover's image with --allowed-image (at least once)")]
    NoAllowedImages,
    /// A name (service account, entrypoint) is not usable.
    #[error("{what} {value:?} is not valid: {why}")]
    InvalidName {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A TLS file could not be read.
    #[error(
        "cannot read the TLS {what} {path}: {error}; check --tls-cert/--tls-key and the mounted secret"
    )]
    TlsRead {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// A TLS file was read but cannot be used.
    #[error("the TLS {what} in {path} is not usable: {why}")]
    TlsInvalid {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {error}; is the address right and the port free?")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        error: io::Error,
    },
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start the server runtime: {0}")]
    Runtime(io::Error),
    /// The server stopped with an error.
    #[error("the webhook server failed: {0}")]
    Serve(io::Error),
    /// Objects could not be written as YAML.
    #[error("cannot write the manifests as YAML: {0}")]
    Yaml(String),
}

/// The result type of the admission crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
