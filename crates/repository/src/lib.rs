//! Restic-format repositories as a backup target: on a local disk, in S3 (SeaweedFS, MinIO,
//! AWS, Ceph) or behind a restic REST server.
//!
//! A backup reads its source through the mover's own walker ([`source`]), so entries the mover
//! itself may not read (root-squashed NFS) are read as their owners, and it writes a snapshot
//! that plain restic lists, checks and restores. The repository format, its encryption,
//! chunking, packing, checking and pruning are rustic_core's.
//!
//! Each command is a file: [`backup`], [`snapshots`], [`restore`], [`verify`] (`check`), and
//! [`retention`] (forget + prune). [`location`] reads restic's URL syntax and [`open`] the
//! password.

pub mod backup;
mod error;
mod key;
pub mod location;
pub mod open;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod source;
mod summary;
pub mod verify;

pub use error::{Error, Result};
pub use location::{Location, S3Env};
pub use open::PasswordSource;
