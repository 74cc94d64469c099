//! Proving a copy is good: `verify` re-reads a snapshot and checks it against its manifest (bit
//! rot, truncation, a changed mode or owner, a missing or unexpected entry), or compares a copy
//! with a live source. Directories are checked in parallel and each byte is read once.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use rayon::prelude::*;
use rustix::fs::{Mode, OFlags, openat};
use serde::{Deserialize, Serialize};

use crate::exclude::Excludes;
use crate::listing::Listing;
use crate::manifest::{self, Entry};
use crate::meta::{Kind, stat_at};
use crate::relpath;
use store::layout::{self, STATE_DIR, Target};
use store::record::Verification;

/// One way in which a copy is not what it should be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Difference {
    /// Path relative to the root (escaped as in summaries).
    pub path: String,
    /// What differs, in words.
    pub what: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    /// Entries checked.
    pub entries: u64,
    /// Bytes of content read and hashed.
    pub bytes_read: u64,
    /// Every difference found (at most 10,000 listed; `differences_total` is exact).
    pub differences: Vec<Difference>,
    /// How many differences there are.
    pub differences_total: u64,
}

impl Outcome {
    /// Whether the copy is exactly what it should be.
    pub fn ok(&self) -> bool {
        self.differences_total == 0
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

#[derive(Default)]
struct Acc {
    out: Mutex<Outcome>,
}

impl Acc {
    fn diff(&self, path: &[u8], what: impl Into<String>) {
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        o.differences_total += 1;
        if o.differences.len() < crate::summary::MAX_LISTED {
            o.differences.push(Difference {
                path: relpath::display(path),
                what: what.into(),
            });
        }
    }

    fn count(&self, entries: u64, bytes: u64) {
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        o.entries += entries;
        o.bytes_read += bytes;
    }

    fn finish(self) -> Outcome {
        let mut o = self.out.into_inner().unwrap_or_else(|p| p.into_inner());
        o.differences.sort_by(|a, b| a.path.cmp(&b.path));
        o
    }
}

/// The differences between what a manifest says and what is on disk for one entry.
fn compare(path: &[u8], want: &Entry, have: &Entry, acc: &Acc) {
    let d = |what: String| acc.diff(path, what);
    if want.kind != have.kind {
        return d(format!(
            "is a {}, should be a {}",
            have.kind.name(),
            want.kind.name()
        ));
    }
    if want.kind != Kind::Symlink && want.mode != have.mode {
        d(format!("mode {:o}, should be {:o}", have.mode, want.mode));
    }
    if (want.uid, want.gid) != (have.uid, have.gid) {
        d(format!(
            "owner {}:{}, should be {}:{}",
            have.uid, have.gid, want.uid, want.gid
        ));
    }
    if want.kind != Kind::Dir && want.size != have.size {
        d(format!("size {}, should be {}", have.size, want.size));
    }
    if want.mtime != have.mtime {
        d("mtime differs".to_string());
    }
    if want.rdev != have.rdev {
        d("device number differs".to_string());
    }
    if want.xattrs != have.xattrs {
        d("extended attributes or ACLs differ".to_string());
    }
    if want.hash != have.hash {
        d(if want.kind == Kind::Symlink {
            "symlink target differs"
        } else {
            "content differs"
        }
        .to_string());
    }
}

fn open_rel(root: BorrowedFd<'_>, rel: &[u8]) -> std::io::Result<OwnedFd> {
    let mut cur = root.try_clone_to_owned()?;
    for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let c = CString::new(comp).map_err(std::io::Error::other)?;
        cur = openat(&cur, c.as_c_str(), DIR_FLAGS, Mode::empty())?;
    }
    Ok(cur)
}

/// Checks the tree at `root` against its manifest.
pub fn against_manifest(root: BorrowedFd<'_>, entries: &[Entry]) -> Outcome {
    let mut by_dir: BTreeMap<&[u8], Vec<&Entry>> = BTreeMap::new();
    by_dir.insert(b"", Vec::new());
    for e in entries {
        let (dir, _) = relpath::split(&e.path);
        by_dir.entry(dir).or_default().push(e);
        if e.kind == Kind::Dir {
            by_dir.entry(&e.path).or_default();
        }
    }
    let acc = Acc::default();
    by_dir.par_iter().for_each(|(dir, want)| {
        let fd = match open_rel(root, dir) {
            Ok(fd) => fd,
            // The directory itself is reported missing by its parent.
            Err(_) => return,
        };
        let listing = match Listing::read(&fd) {
            Ok(l) => l,
            Err(e) => return acc.diff(dir, format!("cannot read directory: {e}")),
        };
        let expected: BTreeSet<&[u8]> = want.iter().map(|e| relpath::split(&e.path).1).collect();
        for i in 0..listing.len() {
            let name = listing.name_bytes(i);
            if dir.is_empty() && name == STATE_DIR.as_bytes() {
                continue;
            }
            if !expected.contains(name) {
                let m = stat_at(&fd, listing.name(i));
                if m.is_ok_and(|m| m.kind == Kind::Socket) {
                    continue;
                }
                acc.diff(
                    &relpath::join(dir, name),
                    "unexpected entry, not in the manifest",
                );
            }
        }
        for e in want {
            let name = relpath::split(&e.path).1;
            let Ok(c) = CString::new(name) else { continue };
            let m = match stat_at(&fd, &c) {
                Ok(m) => m,
                Err(_) => {
                    acc.diff(&e.path, "missing");
                    continue;
                }
            };
            match manifest::describe(fd.as_fd(), &c, &m, e.path.clone(), None) {
                Ok(have) => {
                    acc.count(1, if m.kind == Kind::File { m.size } else { 0 });
                    compare(&e.path, e, &have, &acc);
                }
                Err(err) => acc.diff(&e.path, format!("cannot read: {err}")),
            }
        }
    });
    acc.finish()
}

/// Compares the copy at `copy` with the live tree at `source`: the same entries with the same
/// attributes and content.
pub fn against_source(copy: BorrowedFd<'_>, source: BorrowedFd<'_>) -> Outcome {
    against_source_excluding(copy, source, &Excludes::default())
}

/// [`against_source`], leaving out what `excludes` left out of the copy: source entries it
/// matches are not looked for in the copy, and entries of the copy it matches are not extra.
pub fn against_source_excluding(
    copy: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
    excludes: &Excludes,
) -> Outcome {
    let acc = Acc::default();
    let (Ok(a), Ok(b)) = (copy.try_clone_to_owned(), source.try_clone_to_owned()) else {
        acc.diff(b"", "cannot open");
        return acc.finish();
    };
    rayon::scope(|s| pair(s, a, b, Vec::new(), &acc, excludes));
    acc.finish()
}

/// Whether `excludes` leaves out the entry `name` of `dir` (at `path`, a folder when `is_dir`).
fn left_out(excludes: &Excludes, dir: &OwnedFd, name: &CStr, path: &[u8], is_dir: bool) -> bool {
    if excludes.matches(path, is_dir) {
        return true;
    }
    is_dir
        && excludes.caches()
        && openat(dir, name, DIR_FLAGS, Mode::empty())
            .is_ok_and(|d| crate::exclude::is_cache_dir(d.as_fd()).unwrap_or(false))
}

fn pair<'s>(
    s: &rayon::Scope<'s>,
    copy: OwnedFd,
    source: OwnedFd,
    rel: Vec<u8>,
    acc: &'s Acc,
    excludes: &'s Excludes,
) {
    let (lc, ls) = match (Listing::read(&copy), Listing::read(&source)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return acc.diff(&rel, format!("cannot read directory: {e}")),
    };
    let skip = |name: &[u8]| rel.is_empty() && name == STATE_DIR.as_bytes();
    for i in 0..lc.len() {
        let n = lc.name_bytes(i);
        if !skip(n) && ls.find(n).is_none() {
            let path = relpath::join(&rel, n);
            if !excludes.is_empty() {
                let is_dir = stat_at(&copy, lc.name(i)).is_ok_and(|m| m.kind == Kind::Dir);
                if left_out(excludes, &copy, lc.name(i), &path, is_dir) {
                    continue;
                }
            }
            acc.diff(&path, "not in the source");
        }
    }
    for i in 0..ls.len() {
        let name = ls.name(i);
        let n = name.to_bytes();
        if skip(n) {
            continue;
        }
        let path = relpath::join(&rel, n);
        let Ok(sm) = stat_at(&source, name) else {
            continue;
        };
        if sm.kind == Kind::Socket
            || (!excludes.is_empty()
                && left_out(excludes, &source, name, &path, sm.kind == Kind::Dir))
        {
            continue;
        }
        let Ok(cm) = stat_at(&copy, name) else {
            acc.diff(&path, "missing in the copy");
            continue;
        };
        let want = manifest::describe(source.as_fd(), name, &sm, path.clone(), None);
        let have = manifest::describe(copy.as_fd(), name, &cm, path.clone(), None);
        match (want, have) {
            (Ok(w), Ok(h)) => {
                acc.count(
                    1,
                    if sm.kind == Kind::File {
                        sm.size + cm.size
                    } else {
                        0
                    },
                );
                compare(&path, &w, &h, acc);
            }
            (Err(e), _) => acc.diff(&path, format!("cannot read in the source: {e}")),
            (_, Err(e)) => acc.diff(&path, format!("cannot read in the copy: {e}")),
        }
        if sm.kind == Kind::Dir
            && cm.kind == Kind::Dir
            && let (Ok(c), Ok(sd)) = (
                openat(&copy, name, DIR_FLAGS, Mode::empty()),
                openat(&source, name, DIR_FLAGS, Mode::empty()),
            )
        {
            s.spawn(move |s| pair(s, c, sd, path, acc, excludes));
        }
    }
}

/// Verifies snapshots of the backup at `dst` (`which`: a name, `latest` or `all`) against their
/// manifests, or against the live tree `against`; the result of each is recorded next to its
/// summary, where `mover snapshots` shows it. A target without snapshots (a mirror) can only be
/// compared with a live source.
pub fn verify(
    dst: &std::path::Path,
    which: &str,
    against: Option<&std::path::Path>,
) -> crate::Result<Vec<(String, Outcome)>> {
    verify_excluding(dst, which, against, &Excludes::default())
}

/// [`verify`], leaving out of a comparison with the live tree what `excludes` left out of the
/// copy (see [`against_source_excluding`]).
pub fn verify_excluding(
    dst: &std::path::Path,
    which: &str,
    against: Option<&std::path::Path>,
    excludes: &Excludes,
) -> crate::Result<Vec<(String, Outcome)>> {
    use crate::Error;
    let open = |p: &std::path::Path| -> crate::Result<OwnedFd> {
        let c = CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Usage(format!("NUL in {}", p.display())))?;
        openat(
            rustix::fs::CWD,
            c.as_c_str(),
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )
        .map_err(|e| Error::io("cannot open", p.display().to_string(), e.into()))
    };
    let source = against.map(open).transpose()?;
    let target = Target::new(dst);
    if !target.has_snapshots() {
        // A mirror: against its source, or against the manifest `sync --manifest` wrote.
        let copy = open(dst)?;
        let outcome = match source {
            Some(src) => against_source_excluding(copy.as_fd(), src.as_fd(), excludes),
            None => {
                let mpath = target.mirror_manifest();
                let data = std::fs::read(&mpath).map_err(|_| {
                    Error::Usage(format!(
                        "{} has no snapshots and no manifest; give --against SOURCE to compare \
                         it with its source, or make the mirror with `sync --manifest`",
                        dst.display()
                    ))
                })?;
                let entries = manifest::parse(&data).map_err(|e| {
                    Error::io("cannot read the manifest", mpath.display().to_string(), e)
                })?;
                against_manifest(copy.as_fd(), &entries)
            }
        };
        return Ok(vec![(dst.display().to_string(), outcome)]);
    }
    let ids: Vec<String> = if which == "all" {
        target.list_ids()?
    } else {
        let p = target.resolve(which)?;
        vec![
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ]
    };
    let mut out = Vec::new();
    for id in ids {
        let root = open(&target.snapshot_dir(&id))?;
        let outcome = match &source {
            Some(src) => against_source_excluding(root.as_fd(), src.as_fd(), excludes),
            None => {
                let mpath = target.manifest(&id);
                let data = std::fs::read(&mpath).map_err(|e| {
                    Error::io(
                        "cannot read the manifest (was the snapshot made by pvc-backup?)",
                        mpath.display().to_string(),
                        e,
                    )
                })?;
                let entries = manifest::parse(&data).map_err(|e| {
                    Error::io("cannot read the manifest", mpath.display().to_string(), e)
                })?;
                against_manifest(root.as_fd(), &entries)
            }
        };
        let record = Verification {
            verified_at: store::id::rfc3339(std::time::SystemTime::now()),
            result: if outcome.ok() {
                "ok".into()
            } else {
                format!("failed ({} differences)", outcome.differences_total)
            },
            entries: outcome.entries,
            bytes_read: outcome.bytes_read,
        };
        // Recording is best effort: a read-only backup can still be verified.
        if let Ok(runs) = open(&target.records_dir()) {
            let name = CString::new(layout::verify_record(&id)).expect("no NUL");
            let _ = crate::sync::write_state_file(runs.as_fd(), &name, &record);
        }
        out.push((id, outcome));
    }
    Ok(out)
}
