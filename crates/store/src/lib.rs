//! The backup store: what is where in a backup target (`DST`), and the rules for it.
//!
//! ```text
//! DST/snapshots/2026-11-25T02-00-00Z/        one complete snapshot (a tree, or a block image)
//! DST/snapshots/2026-11-25T02-00-00Z/volume.img   the image of a block version
//! DST/snapshots/.partial-ID/                 a snapshot being made, or left by a run that died
//! DST/latest -> snapshots/2026-11-26T02-00-00Z
//! DST/.pvc-backup/lock                       held for the whole run
//! DST/.pvc-backup/block-volume               marks a target of block versions
//! DST/.pvc-backup/manifest                   the manifest of a mirror (`sync --manifest`)
//! DST/.pvc-backup/snapshots/ID.json          the record of the run that made snapshot ID
//! DST/.pvc-backup/snapshots/ID.manifest      what snapshot ID holds, with content hashes
//! DST/.pvc-backup/snapshots/ID.verify.json   its last verification
//! ```
//!
//! The file mover, the block copier and the command line all ask this crate for these names,
//! lock a target through it, and list, resolve and retire snapshots with it. Nothing else spells
//! them.

mod error;
pub mod id;
pub mod layout;
pub mod lock;
pub mod record;
pub mod retention;

pub use error::{Error, Locked, Result};
pub use id::SnapshotId;
pub use layout::Target;
