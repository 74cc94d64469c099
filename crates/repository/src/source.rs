//! The source of a backup, read the way the mover reads it: directory descriptors, no symlink
//! followed, and each entry read as its owner where the mover itself is refused (root-squashed
//! NFS, no `CAP_DAC_OVERRIDE`).
//!
//! rustic's archiver takes the entries in path order (each folder before what it holds, names
//! sorted as bytes) and opens the files it must read on its own threads; [`Source`] gives it
//! that order from a stack of open directories, one listing per level, so memory follows the
//! tree's depth and widest folder, never its size.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use mover::exclude::Excludes;
use mover::listing::Listing;
use mover::meta::{self, Kind, Meta, Ts};
use mover::owner::{Id, Owners};
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    ErrorKind, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
};
use rustix::fs::{OFlags, readlinkat};
use store::layout::STATE_DIR;

/// An entry that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// Path relative to the source.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// Entries that could not be read, collected from the walk and from the archiver's threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Vec<Failure>>>);

impl Failures {
    fn add(&self, path: &[u8], error: impl std::fmt::Display) {
        let path = if path.is_empty() {
            ".".to_string()
        } else {
            String::from_utf8_lossy(path).into_owned()
        };
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.push(Failure {
            path,
            error: error.to_string(),
        });
    }

    pub(crate) fn take(&self) -> Vec<Failure> {
        let mut list = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }
}

/// A source folder for rustic's archiver.
pub(crate) struct Source {
    root: Arc<OwnedFd>,
    root_meta: Meta,
    /// The path the snapshot records for the root (`/source` in a mover pod).
    base: PathBuf,
    owners: Arc<Owners>,
    excludes: Arc<Excludes>,
    failures: Failures,
}

impl Source {
    /// A source whose root is the open folder `root`, recorded in snapshots as `base`.
    pub(crate) fn new(
        root: OwnedFd,
        base: PathBuf,
        owners: Arc<Owners>,
        excludes: Excludes,
        failures: Failures,
    ) -> io::Result<Source> {
        let root_meta = meta::stat_fd(&root)?;
        Ok(Source {
            root: Arc::new(root),
            root_meta,
            base,
            owners,
            excludes: Arc::new(excludes),
            failures,
        })
    }
}

impl ReadSource for Source {
    type Open = OpenAs;
    type Iter = Walk;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Walk {
        Walk {
            base: self.base.clone(),
            owners: self.owners.clone(),
            excludes: self.excludes.clone(),
            failures: self.failures.clone(),
            root: Some((self.root.clone(), self.root_meta)),
            stack: Vec::new(),
        }
    }
}

/// One open folder of the walk and how far it has been listed.
struct Frame {
    dir: Arc<OwnedFd>,
    id: Id,
    rel: Vec<u8>,
    listing: Listing,
    next: usize,
}

/// The entries of a [`Source`], in the archiver's order.
pub(crate) struct Walk {
    base: PathBuf,
    owners: Arc<Owners>,
    excludes: Arc<Excludes>,
    failures: Failures,
    root: Option<(Arc<OwnedFd>, Meta)>,
    stack: Vec<Frame>,
}

impl Walk {
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.base.clone()
        } else {
            self.base.join(OsStr::from_bytes(rel))
        }
    }

    /// Lists an opened folder and puts it on the stack.
    fn enter(&mut self, dir: Arc<OwnedFd>, id: Id, rel: Vec<u8>) -> bool {
        match Listing::read(dir.as_fd()) {
            Ok(listing) => {
                self.stack.push(Frame {
                    dir,
                    id,
                    rel,
                    listing,
                    next: 0,
                });
                true
            }
            Err(e) => {
                self.failures
                    .add(&rel, format!("cannot list the folder: {e}"));
                false
            }
        }
    }

    /// The next entry of the top folder as an archiver entry, or `None` when it is left out
    /// (excluded, the mover's state folder, or unreadable: then recorded as a failure).
    fn next_in_top(&mut self) -> Option<Option<ReadSourceEntry<OpenAs>>> {
        let frame = self.stack.last_mut()?;
        if frame.next == frame.listing.len() {
            self.stack.pop();
            return Some(None);
        }
        let i = frame.next;
        frame.next += 1;
        let name: CString = frame.listing.name(i).to_owned();
        let dir = frame.dir.clone();
        let dir_id = frame.id;
        let mut rel = frame.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        let at_root = frame.rel.is_empty();
        if at_root && name.to_bytes() == STATE_DIR.as_bytes() {
            return Some(None);
        }
        let owners = self.owners.clone();
        let m = match owners.retry(&[dir_id], || meta::stat_at(dir.as_fd(), &name)) {
            Ok(m) => m,
            Err(e) => {
                self.failures
                    .add(&rel, format!("cannot read its attributes: {e}"));
                return Some(None);
            }
        };
        if !self.excludes.is_empty() && self.excludes.matches(&rel, m.kind == Kind::Dir) {
            return Some(None);
        }
        // As in a mirror: a socket exists only while a process listens on it.
        if m.kind == Kind::Socket {
            return Some(None);
        }
        let xattrs = match owners.source_xattrs(dir.as_fd(), dir_id, &name, &m) {
            Ok(x) => x,
            Err(e) => {
                self.failures
                    .add(&rel, format!("cannot read its extended attributes: {e}"));
                return Some(None);
            }
        };
        let mut extended = Vec::new();
        for (k, v) in xattrs.iter() {
            match k.to_str() {
                Ok(k) => extended.push((k.to_string(), v.to_vec())),
                Err(_) => self.failures.add(
                    &rel,
                    format!(
                        "the extended attribute {k:?} has a name that is not UTF-8, which a \
                         restic repository cannot hold"
                    ),
                ),
            }
        }
        let node_type = match m.kind {
            Kind::File => NodeType::File,
            Kind::Dir => NodeType::Dir,
            Kind::Symlink => {
                match owners.retry(&[dir_id], || {
                    readlinkat(dir.as_fd(), &*name, Vec::new()).map_err(io::Error::from)
                }) {
                    Ok(t) => NodeType::from_link(Path::new(OsStr::from_bytes(t.as_bytes()))),
                    Err(e) => {
                        self.failures
                            .add(&rel, format!("cannot read the link: {e}"));
                        return Some(None);
                    }
                }
            }
            Kind::Fifo => NodeType::Fifo,
            Kind::Socket => NodeType::Socket,
            Kind::CharDevice => NodeType::Chardev { device: m.rdev },
            Kind::BlockDevice => NodeType::Dev { device: m.rdev },
        };
        let node = Node::new_node(
            OsStr::from_bytes(name.to_bytes()),
            node_type,
            metadata(&m, &extended),
        );
        let path = self.path_of(&rel);
        match m.kind {
            Kind::Dir => {
                if self.excludes.caches()
                    && let Ok(fd) = owners.open_as(
                        dir.as_fd(),
                        dir_id,
                        &name,
                        Some((m.uid, m.gid)),
                        dir_flags(),
                    )
                    && mover::exclude::is_cache_dir(fd.as_fd()).unwrap_or(false)
                {
                    return Some(None);
                }
                let fd = match owners.open_as(
                    dir.as_fd(),
                    dir_id,
                    &name,
                    Some((m.uid, m.gid)),
                    dir_flags(),
                ) {
                    Ok(fd) => Arc::new(fd),
                    Err(e) => {
                        self.failures
                            .add(&rel, format!("cannot open the folder: {e}"));
                        return Some(None);
                    }
                };
                if !self.enter(fd, (m.uid, m.gid), rel) {
                    return Some(None);
                }
                Some(Some(ReadSourceEntry {
                    path,
                    node,
                    open: None,
                }))
            }
            Kind::File => Some(Some(ReadSourceEntry {
                path,
                node,
                open: Some(OpenAs {
                    owners,
                    dir,
                    dir_id,
                    name,
                    id: (m.uid, m.gid),
                    rel,
                    failures: self.failures.clone(),
                }),
            })),
            _ => Some(Some(ReadSourceEntry {
                path,
                node,
                open: None,
            })),
        }
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Iterator for Walk {
    type Item = RusticResult<ReadSourceEntry<OpenAs>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((root, m)) = self.root.take() {
            let name = self.base.file_name().unwrap_or(OsStr::new("/")).to_owned();
            let node = Node::new_node(&name, NodeType::Dir, metadata(&m, &root_xattrs(&root)));
            let path = self.base.clone();
            if self.enter(root, (m.uid, m.gid), Vec::new()) {
                return Some(Ok(ReadSourceEntry {
                    path,
                    node,
                    open: None,
                }));
            }
            return None;
        }
        loop {
            match self.next_in_top()? {
                Some(entry) => return Some(Ok(entry)),
                None => continue,
            }
        }
    }
}

/// The root folder's extended attributes (its ACLs, say); none when they cannot be read, since
/// the walk below it reports what it cannot read entry by entry.
fn root_xattrs(root: &OwnedFd) -> Vec<(String, Vec<u8>)> {
    mover::xattr::read(mover::xattr::Target::Fd(root.as_fd()))
        .map(|x| {
            x.iter()
                .filter_map(|(k, v)| Some((k.to_str().ok()?.to_string(), v.to_vec())))
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `os.FileMode` bits, which restic's format stores as an entry's mode.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// The mode as restic writes it: the permission bits, Go's type bits, and Go's own bits for
/// setuid, setgid and sticky.
pub(crate) fn restic_mode(kind: Kind, perm: u32) -> u32 {
    let mut mode = perm & 0o777;
    mode |= match kind {
        Kind::File => 0,
        Kind::Dir => go_mode::DIR,
        Kind::Symlink => go_mode::SYMLINK,
        Kind::Fifo => go_mode::NAMED_PIPE,
        Kind::Socket => go_mode::SOCKET,
        Kind::BlockDevice => go_mode::DEVICE,
        Kind::CharDevice => go_mode::DEVICE | go_mode::CHAR_DEVICE,
    };
    for (bit, go) in [
        (0o4000, go_mode::SETUID),
        (0o2000, go_mode::SETGID),
        (0o1000, go_mode::STICKY),
    ] {
        if perm & bit != 0 {
            mode |= go;
        }
    }
    mode
}

/// The permission bits (with setuid, setgid and sticky) of a mode as restic writes it.
pub(crate) fn perm_from_restic(mode: u32) -> u32 {
    let mut perm = mode & 0o777;
    for (bit, go) in [
        (0o4000, go_mode::SETUID),
        (0o2000, go_mode::SETGID),
        (0o1000, go_mode::STICKY),
    ] {
        if mode & go != 0 {
            perm |= bit;
        }
    }
    perm
}

fn timestamp(t: Ts) -> Option<Timestamp> {
    Timestamp::new(t.sec, i32::try_from(t.nsec).ok()?).ok()
}

/// An entry's attributes as restic records them.
fn metadata(m: &Meta, xattrs: &[(String, Vec<u8>)]) -> Metadata {
    use base64::Engine as _;
    // rustic_core 0.13 does not export the type of an extended attribute, so the list is built
    // from restic's JSON form of it: a name, and the value in base64.
    let json = xattrs
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "name": k,
                "value": base64::engine::general_purpose::STANDARD.encode(v),
            })
        })
        .collect();
    let extended_attributes = serde_json::from_value(serde_json::Value::Array(json))
        .expect("restic's JSON form of extended attributes");
    Metadata {
        mode: Some(restic_mode(m.kind, m.perm)),
        mtime: timestamp(m.mtime),
        atime: timestamp(m.atime),
        ctime: timestamp(m.ctime),
        uid: Some(m.uid),
        gid: Some(m.gid),
        user: None,
        group: None,
        inode: m.ino,
        device_id: m.dev,
        size: if m.kind == Kind::File { m.size } else { 0 },
        links: u64::from(m.nlink),
        extended_attributes,
    }
}

/// A file the archiver opens when it needs its content: as the mover, else as its owner.
pub(crate) struct OpenAs {
    owners: Arc<Owners>,
    dir: Arc<OwnedFd>,
    dir_id: Id,
    name: CString,
    id: Id,
    rel: Vec<u8>,
    failures: Failures,
}

impl ReadSourceOpen for OpenAs {
    type Reader = Recorded;

    fn open(self) -> RusticResult<Recorded> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match self.owners.open_as(
            self.dir.as_fd(),
            self.dir_id,
            &self.name,
            Some(self.id),
            flags,
        ) {
            Ok(fd) => Ok(Recorded {
                file: File::from(fd),
                rel: self.rel,
                failures: self.failures,
            }),
            Err(e) => {
                self.failures
                    .add(&self.rel, format!("cannot open the file: {e}"));
                Err(
                    RusticError::with_source(ErrorKind::InputOutput, "cannot open `{path}`", e)
                        .attach_context("path", String::from_utf8_lossy(&self.rel).into_owned()),
                )
            }
        }
    }
}

/// A source file being read; a read error is recorded as the entry's failure (the archiver
/// then leaves the file out of the snapshot).
pub(crate) struct Recorded {
    file: File,
    rel: Vec<u8>,
    failures: Failures,
}

impl Read for Recorded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failures
                    .add(&self.rel, format!("cannot read the file: {e}"));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_gos_as_restic_writes_them() {
        // What `restic cat tree` shows for a 0755 folder, a symlink, a 0644 file, and a setuid
        // 0755 file.
        assert_eq!(restic_mode(Kind::Dir, 0o755), 2_147_484_141);
        assert_eq!(restic_mode(Kind::Symlink, 0o777), 134_218_239);
        assert_eq!(restic_mode(Kind::File, 0o644), 0o644);
        assert_eq!(restic_mode(Kind::File, 0o4755), (1 << 23) | 0o755);
        assert_eq!(
            restic_mode(Kind::CharDevice, 0o600),
            (1 << 26) | (1 << 21) | 0o600
        );
    }

    #[test]
    fn permission_bits_come_back_from_restics_mode() {
        for kind in [
            Kind::File,
            Kind::Dir,
            Kind::Symlink,
            Kind::Fifo,
            Kind::BlockDevice,
        ] {
            for perm in [0, 0o644, 0o4755, 0o2750, 0o1777, 0o7777] {
                assert_eq!(
                    perm_from_restic(restic_mode(kind, perm)),
                    perm,
                    "{kind:?} {perm:o}"
                );
            }
        }
    }
}
