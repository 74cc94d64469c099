//! Versioned backups: each run adds a complete, browsable snapshot of the source to the target.
//!
//! ```text
//! DST/snapshots/2026-11-25T02-00-00Z/   one complete tree per run (owners, modes, xattrs, ACLs,
//! DST/snapshots/2026-11-26T02-00-00Z/   hard links and sparse files kept, as by `sync`)
//! DST/latest -> snapshots/2026-11-26T02-00-00Z
//! DST/.pvc-backup/lock                   held for the whole run
//! DST/.pvc-backup/snapshots/ID.json      the summary of the run that made snapshot ID
//! ```
//!
//! Entries unchanged since the previous snapshot are hard links to it, so space grows with what
//! changed, not with the number of snapshots. A snapshot is built as `snapshots/.partial-ID` and
//! renamed to its final name only once complete; a run that dies leaves the partial folder
//! behind, and the next run removes it before starting. Retention runs only after a run in which
//! nothing failed, and never removes the newest snapshot.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustix::fs::{
    AtFlags, Mode, OFlags, fsync, mkdirat, openat, renameat, symlinkat, syncfs, unlinkat,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::listing::Listing;
use crate::retention::{Civil, Policy};
use contract::snapshots::SnapshotInfo;
use contract::{ExitCode, Summary};

use crate::summary::Stats;
use crate::sync::{Mirror, Options, write_state_file};
use crate::{Error, Result, relpath};

/// The folder of snapshots in the target.
pub const SNAPSHOTS: &CStr = c"snapshots";
const PARTIAL: &str = ".partial-";
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A snapshot's name for a time: `2026-11-25T02-00-00Z` (RFC 3339 with `-` for `:`, so it is a
/// valid name everywhere and sorts by time).
pub fn snapshot_id(t: SystemTime) -> String {
    crate::summary::rfc3339(t).replace(':', "-")
}

/// The time a snapshot name stands for, if it is one.
pub fn parse_id(id: &str) -> Option<Civil> {
    let b = id.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |a: usize, z: usize| id.get(a..z)?.parse::<u32>().ok();
    Some(Civil {
        year: n(0, 4)? as i32,
        month: n(5, 7)?,
        day: n(8, 10)?,
        hour: n(11, 13)?,
        minute: n(14, 16)?,
        second: n(17, 19)?,
    })
}

/// What a backup run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupReport {
    /// The new snapshot's name.
    pub snapshot: String,
    /// The snapshot it was compared with, if any.
    pub previous: Option<String>,
    /// The copy's summary.
    pub summary: Summary,
    /// Snapshots removed by retention.
    pub removed: Vec<String>,
    /// Partial snapshots of earlier runs that died, removed first.
    pub cleaned: Vec<String>,
    /// Bytes read to hash content for the manifest (files linked from the previous snapshot
    /// keep their hash and are not read).
    pub hashed_bytes: u64,
}

/// The file in a backup folder's state folder (`.pvc-backup/`) that marks it as holding versions
/// of a block volume (sparse images, made by the block crate) rather than snapshots of a tree.
pub const BLOCK_MARKER: &str = "block-volume";

/// Whether the backup folder `dst` holds versions of a block volume.
pub fn holds_block_versions(dst: &Path) -> bool {
    dst.join(crate::STATE_DIR).join(BLOCK_MARKER).is_file()
}

/// A prepared backup run: source and target checked, target locked.
#[derive(Debug)]
pub struct Backup {
    sync: Mirror,
    dst: PathBuf,
    policy: Policy,
}

fn open_or_make(ctx: &Mirror, dir: BorrowedFd<'_>, name: &CStr, what: &Path) -> Result<OwnedFd> {
    let owners = ctx.owners();
    let made = owners.retry_target(&[], &[dir], || {
        match mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    });
    made.map_err(|e| Error::io("cannot create", what.display().to_string(), e))?;
    owners
        .open_in(dir, name, DIR_FLAGS)
        .map_err(|e| Error::io("cannot open", what.display().to_string(), e))
}

/// Complete snapshots in `dir` (names that parse as times), newest first.
fn complete_snapshots(dir: BorrowedFd<'_>) -> std::io::Result<Vec<(String, Civil)>> {
    let l = Listing::read(dir)?;
    let mut v: Vec<(String, Civil)> = (0..l.len())
        .filter_map(|i| {
            let name = std::str::from_utf8(l.name_bytes(i)).ok()?;
            Some((name.to_string(), parse_id(name)?))
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(v)
}

impl Backup {
    /// Checks source and target (as [`Mirror::prepare`] does) and locks the target.
    pub fn prepare(src: &Path, dst: &Path, opts: Options, policy: Policy) -> Result<Backup> {
        if holds_block_versions(dst) {
            return Err(Error::Usage(format!(
                "{} holds versions of a block volume, not snapshots of a folder: give the folder \
                 {} a backup folder of its own",
                dst.display(),
                src.display()
            )));
        }
        Ok(Backup {
            // Free room is checked once the previous snapshot, whose unchanged files the new
            // one links, is known.
            sync: Mirror::prepare_with(src, dst, opts, false)?,
            dst: dst.to_path_buf(),
            policy,
        })
    }

    /// The run's counters, for progress display.
    pub fn stats(&self) -> Arc<Stats> {
        self.sync.stats()
    }

    /// Makes the new snapshot, points `latest` at it and applies retention.
    pub fn run(self) -> Result<BackupReport> {
        let Backup { sync, dst, policy } = self;
        // Before anything of the source is read: the manifest records it, and the next run
        // trusts only change times older than it (see `manifest::CHANGE_MARGIN`).
        let started = crate::meta::Ts::now();
        let root = sync
            .target_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("cannot use target", dst.display().to_string(), e))?;
        let snaps_path = dst.join("snapshots");
        let snaps = open_or_make(&sync, root.as_fd(), SNAPSHOTS, &snaps_path)?;
        let io = |what: &'static str| {
            let p = snaps_path.display().to_string();
            move |e: std::io::Error| Error::io(what, p.clone(), e)
        };

        // Partial snapshots of runs that died (the lock says none is running now).
        let mut cleaned = Vec::new();
        let listing = Listing::read(&snaps).map_err(io("cannot read"))?;
        for i in 0..listing.len() {
            let name = listing.name(i);
            if name.to_bytes().starts_with(PARTIAL.as_bytes()) {
                let removed = sync.owners().retry_target(&[], &[snaps.as_fd()], || {
                    crate::remove::remove(snaps.as_fd(), name)
                });
                removed.map_err(io("cannot remove a partial snapshot in"))?;
                cleaned.push(relpath::display(name.to_bytes()));
            }
        }

        let existing = complete_snapshots(snaps.as_fd()).map_err(io("cannot read"))?;
        let previous = existing.first().map(|(id, _)| id.clone());
        // Room for the new snapshot: its folders, and what differs from the previous one.
        if !sync.options().no_space_check {
            let prev = previous.as_ref().and_then(|p| {
                let c = CString::new(p.as_str()).ok()?;
                sync.owners().open_in(snaps.as_fd(), &c, DIR_FLAGS).ok()
            });
            crate::space::check(
                sync.source_fd(),
                sync.target_fd(),
                prev.as_ref().map(|r| r.as_fd()),
                &dst,
                &sync.options().excludes,
                true,
            )?;
        }
        let mut id = snapshot_id(SystemTime::now());
        if existing.iter().any(|(e, _)| *e == id) {
            // Two runs within one second: wait for the next one, names stay times.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            id = snapshot_id(SystemTime::now());
        }
        let partial = CString::new(format!("{PARTIAL}{id}")).expect("no NUL");
        let target_path = snaps_path.join(partial.to_str().expect("ASCII"));
        let target = open_or_make(&sync, snaps.as_fd(), &partial, &target_path)?;
        // An unprivileged run keeps the owners it cannot apply in the snapshot's own state
        // folder, where a restore from the snapshot finds them.
        let meta_dir = if !crate::check::can_chown() {
            Some(open_or_make(
                &sync,
                target.as_fd(),
                c".pvc-backup",
                &target_path,
            )?)
        } else {
            None
        };
        let reference = match &previous {
            Some(p) => {
                let c = CString::new(p.as_str()).expect("no NUL");
                Some(
                    sync.owners()
                        .open_in(snaps.as_fd(), &c, DIR_FLAGS)
                        .map_err(io("cannot open"))?,
                )
            }
            None => None,
        };
        let state = sync
            .state_fd()
            .try_clone_to_owned()
            .map_err(io("cannot use state of"))?;
        let runs = open_or_make_raw(sync.owners(), state.as_fd(), c"snapshots")
            .map_err(io("cannot record the snapshot in"))?;
        // The copy pass writes the manifest as it places entries; files linked from the previous
        // snapshot keep the hash its manifest recorded. A manifest left by a run that died is
        // removed, and a damaged previous one only means those files are read again.
        let mname = CString::new(format!("{id}.manifest")).expect("no NUL");
        let mtmp = CString::new(format!("{id}.manifest.tmp")).expect("no NUL");
        remove_dead_manifests(runs.as_fd());
        let previous_manifest = previous.as_ref().and_then(|p| {
            let name = CString::new(format!("{p}.manifest")).ok()?;
            let fd = openat(
                &runs,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            crate::manifest::Previous::open(std::fs::File::from(fd)).ok()
        });
        let recorder = sync
            .owners()
            .retry_target(&[], &[runs.as_fd()], || {
                let f = openat(
                    &runs,
                    mtmp.as_c_str(),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                Ok(std::fs::File::from(f))
            })
            .and_then(|f| crate::manifest::Recorder::new(f, started, previous_manifest))
            .map_err(io("cannot write the manifest of the snapshot in"))?;
        let recorder = Arc::new(recorder);
        let summary = sync
            .retarget(target, target_path, meta_dir, reference)
            .record_into(recorder.clone());
        let hashed = std::cell::Cell::new(0u64);
        // `retarget` keeps the lock: it lives in `summary` (the Mirror) until the run ends.
        let summary = summary.run_keep(|s, owners| {
            // The manifest, before the snapshot gets its name: a snapshot without one never
            // appears.
            let (_, h) = recorder
                .finish()
                .and_then(|h| {
                    owners.retry_target(&[], &[runs.as_fd()], || {
                        renameat(&runs, mtmp.as_c_str(), &runs, mname.as_c_str())?;
                        Ok(h)
                    })
                })
                .map_err(io("cannot write the manifest of the snapshot in"))?;
            hashed.set(h);
            // On the disk before it is named: after a crash of the node, a snapshot under its
            // final name must not hold files whose data never left the page cache. `syncfs`
            // also reports a write that failed in the background (it would otherwise go unseen).
            syncfs(&snaps)
                .and_then(|()| syncfs(&runs))
                .map_err(|e| io("cannot flush the snapshot to the disk in")(e.into()))?;

            // Complete: give the snapshot its final name and point `latest` at it.
            let final_name = CString::new(id.as_str()).expect("no NUL");
            owners
                .retry_target(&[], &[snaps.as_fd()], || {
                    renameat(snaps.as_fd(), &partial, snaps.as_fd(), &final_name)
                        .map_err(Into::into)
                })
                .map_err(io("cannot name the snapshot in"))?;
            let link = format!("snapshots/{id}");
            owners
                .retry_target(&[], &[root.as_fd()], || {
                    let _ = unlinkat(root.as_fd(), c".latest.tmp", AtFlags::empty());
                    symlinkat(link.as_str(), root.as_fd(), c".latest.tmp")?;
                    renameat(root.as_fd(), c".latest.tmp", root.as_fd(), c"latest")?;
                    Ok(())
                })
                .map_err(io("cannot point latest at the snapshot in"))?;
            // The new names on the disk before retention removes anything: a crash must not
            // leave the older snapshots gone and the new one unnamed.
            fsync(&runs)
                .and_then(|()| fsync(&snaps))
                .and_then(|()| fsync(&root))
                .map_err(|e| io("cannot flush the names of the snapshot in")(e.into()))?;
            let per_run = CString::new(format!("{id}.json")).expect("no NUL");
            owners
                .retry_target(&[], &[runs.as_fd()], || {
                    write_state_file(runs.as_fd(), &per_run, s)
                })
                .map_err(io("cannot record the snapshot in"))?;

            // Retention, only after a run in which nothing failed.
            let mut removed = Vec::new();
            if s.exit_code == ExitCode::Ok && policy.is_set() {
                let all = complete_snapshots(snaps.as_fd()).map_err(io("cannot read"))?;
                let times: Vec<Civil> = all.iter().map(|(_, t)| *t).collect();
                let keep = crate::retention::keep(&times, &policy);
                for (i, (name, _)) in all.iter().enumerate() {
                    if keep.contains(&i) || *name == id {
                        continue;
                    }
                    let c = CString::new(name.as_str()).expect("no NUL");
                    owners
                        .retry_target(&[], &[snaps.as_fd()], || {
                            crate::remove::remove(snaps.as_fd(), &c)
                        })
                        .map_err(io("cannot remove an expired snapshot in"))?;
                    for ext in ["json", "manifest", "verify.json"] {
                        let f = CString::new(format!("{name}.{ext}")).expect("no NUL");
                        let _ = unlinkat(runs.as_fd(), f.as_c_str(), AtFlags::empty());
                    }
                    removed.push(name.clone());
                }
            }
            Ok(removed)
        })?;
        let (summary, removed) = summary;
        Ok(BackupReport {
            snapshot: id,
            previous,
            summary,
            removed,
            cleaned,
            hashed_bytes: hashed.get(),
        })
    }
}

/// Removes manifests that runs which died left half written (`ID.manifest.tmp`); the lock says
/// none is being written now.
fn remove_dead_manifests(runs: BorrowedFd<'_>) {
    let Ok(l) = Listing::read(runs) else { return };
    for i in 0..l.len() {
        if l.name_bytes(i).ends_with(b".manifest.tmp") {
            let _ = unlinkat(runs, l.name(i), AtFlags::empty());
        }
    }
}

fn open_or_make_raw(
    owners: &crate::owner::Owners,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> std::io::Result<OwnedFd> {
    owners.retry_target(&[], &[dir], || {
        match mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    })?;
    owners.open_in(dir, name, DIR_FLAGS)
}

/// Lists the snapshots of a target, newest first. Counting unique bytes reads the attributes of
/// every entry of every snapshot.
pub fn list(dst: &Path) -> Result<Vec<SnapshotInfo>> {
    let io = |what: &'static str| {
        let p = dst.display().to_string();
        move |e: std::io::Error| Error::io(what, p.clone(), e)
    };
    let c = CString::new(dst.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage("NUL in path".into()))?;
    let root = openat(
        rustix::fs::CWD,
        c.as_c_str(),
        DIR_FLAGS.difference(OFlags::NOFOLLOW),
        Mode::empty(),
    )
    .map_err(|e| io("cannot open")(e.into()))?;
    let snaps = match openat(&root, SNAPSHOTS, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot open snapshots of")(e.into())),
    };
    let latest = rustix::fs::readlinkat(&root, c"latest", Vec::new())
        .ok()
        .and_then(|l| {
            l.to_str()
                .ok()
                .map(|s| s.trim_start_matches("snapshots/").to_string())
        });
    let runs = openat(&root, c".pvc-backup/snapshots", DIR_FLAGS, Mode::empty()).ok();
    let mut out = Vec::new();
    for (id, t) in complete_snapshots(snaps.as_fd()).map_err(io("cannot read"))? {
        let summary: Option<Summary> = runs.as_ref().and_then(|r| {
            let name = CString::new(format!("{id}.json")).ok()?;
            let fd = openat(
                r,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            serde_json::from_reader(std::fs::File::from(fd)).ok()
        });
        let c = CString::new(id.as_str()).expect("no NUL");
        let dir = openat(&snaps, c.as_c_str(), DIR_FLAGS, Mode::empty())
            .map_err(|e| io("cannot open")(e.into()))?;
        out.push(SnapshotInfo {
            time: format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            ),
            latest: latest.as_deref() == Some(id.as_str()),
            entries: summary.as_ref().map(|s| s.entries.total),
            bytes: summary.as_ref().map(|s| s.bytes.total),
            unique_bytes: unique_bytes(dir).map_err(io("cannot read"))?,
            result: summary.map(|s| s.result),
            verified: runs.as_ref().and_then(|r| {
                let name = CString::new(format!("{id}.verify.json")).ok()?;
                let fd = openat(
                    r,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                let rec: crate::verify::Record =
                    serde_json::from_reader(std::fs::File::from(fd)).ok()?;
                Some(format!("{} at {}", rec.result, rec.verified_at))
            }),
            id,
        });
    }
    Ok(out)
}

/// Sums the sizes of regular files with a single link below `dir`.
fn unique_bytes(dir: OwnedFd) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![(dir, true)];
    while let Some((d, is_root)) = stack.pop() {
        let l = Listing::read(&d)?;
        for i in 0..l.len() {
            let name = l.name(i);
            if is_root && name.to_bytes() == crate::STATE_DIR.as_bytes() {
                continue;
            }
            let m = crate::meta::stat_at(&d, name)?;
            match m.kind {
                crate::meta::Kind::File if m.nlink == 1 => total += m.blocks * 512,
                crate::meta::Kind::Dir => {
                    stack.push((openat(&d, name, DIR_FLAGS, Mode::empty())?, false))
                }
                _ => {}
            }
        }
    }
    Ok(total)
}

/// The names of the complete snapshots of `dst`, newest first.
pub fn list_ids(dst: &Path) -> Result<Vec<String>> {
    let snaps = dst.join("snapshots");
    let c = CString::new(snaps.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage("NUL in path".into()))?;
    let fd = openat(rustix::fs::CWD, c.as_c_str(), DIR_FLAGS, Mode::empty())
        .map_err(|e| Error::io("cannot open", snaps.display().to_string(), e.into()))?;
    Ok(complete_snapshots(fd.as_fd())
        .map_err(|e| Error::io("cannot read", snaps.display().to_string(), e))?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Resolves a snapshot name, or `latest`, to its folder in `dst`.
pub fn resolve(dst: &Path, which: &str) -> Result<PathBuf> {
    if which == "latest" {
        let link = std::fs::read_link(dst.join("latest")).map_err(|e| {
            Error::Usage(format!(
                "{} has no latest snapshot ({e}); is it a backup made by `pvc-backup mover backup`?",
                dst.display()
            ))
        })?;
        let id = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return resolve(dst, &id);
    }
    if parse_id(which).is_none() || which.contains('/') {
        return Err(Error::Usage(format!(
            "{which:?} is not a snapshot name (like 2026-11-25T02-00-00Z) nor `latest`; \
             `pvc-backup mover snapshots {}` lists them",
            dst.display()
        )));
    }
    let path = dst.join("snapshots").join(which);
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "no snapshot {which} in {}; `pvc-backup mover snapshots {}` lists them",
            dst.display(),
            dst.display()
        )));
    }
    Ok(path)
}
