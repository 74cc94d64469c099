//! The manifest of a snapshot: every entry with its type, size, mode, owner, mtime, a digest of
//! its extended attributes and the BLAKE3 hash of its content, so that `verify` can prove later
//! that the copy is still what was written.
//!
//! The on-disk format and its reading are in `format`, building a manifest from a tree in
//! `build`, reading a previous snapshot's manifest one directory at a time in `previous`, and
//! writing one while a tree is being made in `recorder`.

mod build;
mod format;
mod previous;
mod recorder;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::BorrowedFd;

use crate::meta::{Kind, Meta, Ts};
use crate::xattr::Xattrs;

pub use build::{Known, build, describe, known};
pub use format::{Chunk, parse};
pub use previous::{Previous, PreviousFiles};
pub use recorder::Recorder;

/// How much older than the start of the run that recorded it a source's change time must be for
/// a later run to trust that the source entry is still what that run saw. Change times are
/// taken from a coarse clock (a tick of up to 10 ms, whole seconds on some filesystems, the
/// server's clock on network filesystems): a change made during the run, in the same tick as an
/// earlier change, leaves the change time as it was. Two seconds cover all of these, and a clock
/// skew of the source's filesystem of up to about a second.
pub const CHANGE_MARGIN: Ts = Ts { sec: 2, nsec: 0 };

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root.
    pub path: Vec<u8>,
    /// Type.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: Ts,
    /// Inode number when written (lets a later snapshot reuse the hash of a shared inode).
    pub ino: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// The source entry's change time (ctime) as seen when this entry was placed, when the run
    /// that placed it knows the entry's extended attributes were then the source's; `None` in
    /// manifests of older versions and for entries placed otherwise.
    pub ctime: Option<Ts>,
    /// Digest of the extended attributes (zero when none).
    pub xattrs: [u8; 16],
    /// BLAKE3 of the content (files) or the target (symlinks); zero otherwise.
    pub hash: [u8; 32],
}

impl Entry {
    /// The entry for attributes already read: `xattrs` is their [`xattr_digest`], `hash` the
    /// content hash (zero for entries without content).
    pub fn from_meta(m: &Meta, path: Vec<u8>, xattrs: [u8; 16], hash: [u8; 32]) -> Entry {
        Entry {
            path,
            kind: m.kind,
            mode: m.perm,
            uid: m.uid,
            gid: m.gid,
            size: if m.kind == Kind::Dir { 0 } else { m.size },
            mtime: m.mtime,
            ino: m.ino,
            rdev: m.rdev,
            ctime: None,
            xattrs,
            hash,
        }
    }

    /// The entry with the source's change time `ctime` recorded: the source entry had it when
    /// its attributes were read, and the entry's extended attributes are the ones read then.
    pub fn with_ctime(self, ctime: Ts) -> Entry {
        Entry {
            ctime: Some(ctime),
            ..self
        }
    }
}

/// Digest of a set of extended attributes (zero for none).
pub fn xattr_digest(x: &Xattrs) -> [u8; 16] {
    if x.is_empty() {
        return [0; 16];
    }
    let mut h = blake3::Hasher::new();
    for (n, v) in x.iter() {
        h.update(&(n.to_bytes().len() as u64).to_le_bytes());
        h.update(n.to_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let mut d = [0; 16];
    d.copy_from_slice(&h.finalize().as_bytes()[..16]);
    d
}

/// BLAKE3 of everything readable from `fd`.
pub fn hash_fd(fd: BorrowedFd<'_>) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::from(fd.try_clone_to_owned()?);
    h.update_reader(&mut f)?;
    Ok(*h.finalize().as_bytes())
}
