//! The copy engine of pvc-backup.
//!
//! [`sync`] makes a target directory an exact mirror of a source directory: content (sparse files
//! stay sparse), every entry type, numeric owners, all mode bits, nanosecond times, extended
//! attributes, POSIX ACLs and hard links. It works relative to directory descriptors, never follows
//! a symlink in the target, writes each file under a temporary name before renaming it into place,
//! and records a failing entry instead of stopping the run.
//!
//! It knows nothing of Kubernetes: in a cluster it runs in a pod with the source at `/source` and
//! the target at `/backup`, and it runs the same way on any two local folders.
//!
//! Data flows one way: [`listing`] reads directories, [`sync`] compares and acts (with
//! [`content`], [`attrs`], [`xattr`], [`remove`] and [`hardlink`]), and [`summary`] reports.

pub mod access;
pub mod also;
pub mod attrs;
pub mod check;
pub mod content;
mod error;
pub mod exclude;
pub mod hardlink;
pub mod listing;
pub mod manifest;
pub mod meta;
pub mod metalog;
pub mod owner;
pub mod preflight;
pub mod relpath;
pub mod remove;
pub mod snapshot;
pub mod space;
pub mod summary;
pub mod sync;
pub mod verify;
pub mod xattr;

pub use error::{Error, Result};
pub use owner::Impersonate;
pub use summary::Stats;
pub use sync::{Mirror, Options};
