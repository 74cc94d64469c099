//! `mover check`: a preflight that walks a source without copying and tells whether a copy with
//! the current privileges would be complete, which owners and groups the source holds, and which
//! entries cannot be read.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{OFlags, readlinkat};
use serde::{Deserialize, Serialize};

use crate::access::{Alternate, Via};
use crate::listing::Listing;
use crate::meta::{Kind, Meta, stat_at, stat_fd};
use crate::owner::{Impersonate, Owners};
use contract::ExitCode;
use contract::summary::EntryError;

use crate::summary::MAX_LISTED;
use crate::{Result, preflight, relpath, xattr};
use store::layout::STATE_DIR;

/// How many entries and bytes belong to one uid or gid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdCount {
    /// The numeric id.
    pub id: u32,
    /// Entries it owns.
    pub entries: u64,
    /// Bytes of regular files it owns.
    pub bytes: u64,
}

/// An entry that its owner's bits do not let the mover read, and the identity a copy reads it as
/// instead (under `root_squash`, or without `CAP_DAC_OVERRIDE`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityUse {
    /// Path relative to the source root (escaped, see [`crate::relpath::display`]).
    pub path: String,
    /// The fsuid a copy acts as.
    pub uid: u32,
    /// The fsgid a copy acts as.
    pub gid: u32,
    /// Why the entry's permissions let that identity in: `group` (a member of its group that is
    /// not its owner), `acl-user`, `acl-group` or `other`.
    pub via: Via,
}

/// The capabilities that matter to the mover, as the kernel reports them for this process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Privileges {
    /// Effective uid.
    pub euid: u32,
    /// Effective capabilities the mover uses, by name (`CHOWN`, `DAC_OVERRIDE`, ...).
    pub capabilities: Vec<String>,
    /// Whether the process can act as other owners (CAP_SETUID and CAP_SETGID).
    pub can_act_as_owners: bool,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    /// The source as given.
    pub source: String,
    /// Entries found.
    pub entries: u64,
    /// Bytes of regular files found.
    pub bytes: u64,
    /// Owners, by uid.
    pub owners: Vec<IdCount>,
    /// Groups, by gid.
    pub groups: Vec<IdCount>,
    /// Entries that cannot be read with the current privileges (at most 10,000 listed).
    pub unreadable: Vec<EntryError>,
    /// How many entries cannot be read.
    pub unreadable_total: u64,
    /// Entries read as an identity other than their owner because their owner's bits refuse
    /// it (at most 10,000 listed).
    #[serde(default)]
    pub identities: Vec<IdentityUse>,
    /// How many entries are read as an identity other than their owner.
    #[serde(default)]
    pub identities_total: u64,
    /// Whether a copy with the current privileges would be complete.
    pub complete: bool,
    /// What this process may do.
    pub privileges: Privileges,
    /// 0 when complete, 23 when not.
    pub exit_code: u8,
}

/// CAP_CHOWN's bit in the capability sets (linux/capability.h).
pub const CAP_CHOWN: u32 = 0;
/// CAP_SETGID's bit.
pub const CAP_SETGID: u32 = 6;
/// CAP_SETUID's bit.
pub const CAP_SETUID: u32 = 7;

const CAPS: [(u32, &str); 9] = [
    (CAP_CHOWN, "CHOWN"),
    (1, "DAC_OVERRIDE"),
    (2, "DAC_READ_SEARCH"),
    (3, "FOWNER"),
    (4, "FSETID"),
    (CAP_SETGID, "SETGID"),
    (CAP_SETUID, "SETUID"),
    (21, "SYS_ADMIN"),
    (27, "MKNOD"),
];

/// This process's effective capability set as a bit mask, from `/proc/self/status`; `None`
/// where that cannot be read.
pub fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Whether this process can give files their owners: it runs as root or holds CAP_CHOWN.
/// Without it, owners and setuid/setgid bits go to the metadata manifest instead.
pub fn can_chown() -> bool {
    rustix::process::geteuid().is_root()
        || effective_capabilities().unwrap_or(0) & (1 << CAP_CHOWN) != 0
}

/// What this process may do, from `/proc/self/status`.
pub fn privileges() -> Privileges {
    let eff = effective_capabilities().unwrap_or(0);
    let has = |bit: u32| eff & (1 << bit) != 0;
    Privileges {
        euid: rustix::process::geteuid().as_raw(),
        capabilities: CAPS
            .iter()
            .filter(|(b, _)| has(*b))
            .map(|(_, n)| n.to_string())
            .collect(),
        can_act_as_owners: has(CAP_SETUID) && has(CAP_SETGID),
    }
}

struct Walk<'a> {
    owners: &'a Owners,
    by_uid: BTreeMap<u32, (u64, u64)>,
    by_gid: BTreeMap<u32, (u64, u64)>,
    entries: u64,
    bytes: u64,
    unreadable: Vec<EntryError>,
    unreadable_total: u64,
    identities: Vec<IdentityUse>,
    identities_total: u64,
}

impl Walk<'_> {
    fn fail(&mut self, rel: &[u8], op: &str, e: impl std::fmt::Display) {
        self.unreadable_total += 1;
        if self.unreadable.len() < MAX_LISTED {
            self.unreadable.push(EntryError {
                path: relpath::display(rel),
                op: op.into(),
                error: e.to_string(),
            });
        }
    }

    fn acted(&mut self, rel: &[u8], alt: Option<Alternate>) {
        let Some(alt) = alt else { return };
        self.identities_total += 1;
        if self.identities.len() < MAX_LISTED {
            self.identities.push(IdentityUse {
                path: relpath::display(rel),
                uid: alt.id.0,
                gid: alt.id.1,
                via: alt.via,
            });
        }
    }

    fn count(&mut self, m: &Meta) {
        let bytes = if m.kind == Kind::File { m.size } else { 0 };
        self.entries += 1;
        self.bytes += bytes;
        let u = self.by_uid.entry(m.uid).or_default();
        u.0 += 1;
        u.1 += bytes;
        let g = self.by_gid.entry(m.gid).or_default();
        g.0 += 1;
        g.1 += bytes;
    }
}

/// Walks `src` (or `src/subdir`) as a copy would read it, without writing anything.
pub fn check(src: &Path, subdir: Option<&Path>, impersonate: Impersonate) -> Result<CheckReport> {
    let owners = Owners::new(impersonate);
    let root = preflight::open_source(src, subdir, &owners)?;
    let root_meta = stat_fd(&root)
        .map_err(|e| crate::Error::io("cannot stat source", src.display().to_string(), e))?;
    let mut w = Walk {
        owners: &owners,
        by_uid: BTreeMap::new(),
        by_gid: BTreeMap::new(),
        entries: 0,
        bytes: 0,
        unreadable: Vec::new(),
        unreadable_total: 0,
        identities: Vec::new(),
        identities_total: 0,
    };
    let root_id = (root_meta.uid, root_meta.gid);
    if let Err(e) = owners.retry_entry(root.as_fd(), root_id, || {
        xattr::read(xattr::Target::Fd(root.as_fd()))
    }) {
        w.fail(b"", "read xattrs", e);
    }
    // Each directory with the identity that searches it: its owner, or the one that opened it.
    let mut stack: Vec<(Arc<OwnedFd>, crate::owner::Id, Vec<u8>)> =
        vec![(Arc::new(root), root_id, Vec::new())];
    while let Some((dir, dir_id, rel)) = stack.pop() {
        let listing = match Listing::read(&*dir) {
            Ok(l) => l,
            Err(e) => {
                w.fail(&rel, "read directory", e);
                continue;
            }
        };
        for i in 0..listing.len() {
            let name = listing.name(i);
            if rel.is_empty() && name.to_bytes() == STATE_DIR.as_bytes() {
                continue;
            }
            let path = relpath::join(&rel, name.to_bytes());
            let meta = match w.owners.retry(&[dir_id], || stat_at(&*dir, name)) {
                Ok(m) => m,
                Err(e) => {
                    w.fail(&path, "stat", e);
                    continue;
                }
            };
            w.count(&meta);
            let id = (meta.uid, meta.gid);
            match meta.kind {
                Kind::Dir => {
                    let flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match w
                        .owners
                        .open_as_via(dir.as_fd(), dir_id, name, Some(id), flags)
                    {
                        Ok((fd, via)) => {
                            let fd = Arc::new(fd);
                            let r = w.owners.retry_entry_via(fd.as_fd(), id, || {
                                xattr::read(xattr::Target::Fd(fd.as_fd()))
                            });
                            let via = match r {
                                Err(e) => {
                                    w.fail(&path, "read xattrs", e);
                                    via
                                }
                                Ok((_, later)) => via.or(later),
                            };
                            w.acted(&path, via);
                            stack.push((fd, via.map_or(id, |a| a.id), path));
                        }
                        Err(e) => w.fail(&path, "open directory", e),
                    }
                }
                Kind::File => {
                    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match w
                        .owners
                        .open_as_via(dir.as_fd(), dir_id, name, Some(id), flags)
                    {
                        Ok((fd, via)) => {
                            let r = w.owners.retry_entry_via(fd.as_fd(), id, || {
                                xattr::read(xattr::Target::Fd(fd.as_fd()))
                            });
                            match r {
                                Err(e) => {
                                    w.fail(&path, "read xattrs", e);
                                    w.acted(&path, via);
                                }
                                Ok((_, later)) => w.acted(&path, via.or(later)),
                            }
                        }
                        Err(e) => w.fail(&path, "open", e),
                    }
                }
                Kind::Symlink => {
                    let r = w.owners.retry(&[dir_id], || {
                        readlinkat(&*dir, name, Vec::<u8>::new())
                            .map(|_: CString| ())
                            .map_err(Into::into)
                    });
                    if let Err(e) = r {
                        w.fail(&path, "readlink", e);
                    } else if let Err(e) = w.owners.source_xattrs(dir.as_fd(), dir_id, name, &meta)
                    {
                        w.fail(&path, "read xattrs", e);
                    }
                }
                Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                    if let Err(e) = w.owners.source_xattrs(dir.as_fd(), dir_id, name, &meta) {
                        w.fail(&path, "read xattrs", e);
                    }
                }
                Kind::Socket => {}
            }
        }
    }
    let to_counts = |m: BTreeMap<u32, (u64, u64)>| {
        m.into_iter()
            .map(|(id, (entries, bytes))| IdCount { id, entries, bytes })
            .collect()
    };
    let complete = w.unreadable_total == 0;
    Ok(CheckReport {
        source: relpath::display(src.as_os_str().as_encoded_bytes()),
        entries: w.entries,
        bytes: w.bytes,
        owners: to_counts(std::mem::take(&mut w.by_uid)),
        groups: to_counts(std::mem::take(&mut w.by_gid)),
        unreadable: std::mem::take(&mut w.unreadable),
        unreadable_total: w.unreadable_total,
        identities: std::mem::take(&mut w.identities),
        identities_total: w.identities_total,
        complete,
        privileges: privileges(),
        exit_code: if complete {
            ExitCode::Ok
        } else {
            ExitCode::Partial
        }
        .code(),
    })
}
