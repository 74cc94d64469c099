//! Versioned backups: each run adds a complete, browsable snapshot of the source to the target,
//! one tree per run (owners, modes, xattrs, ACLs, hard links and sparse files kept, as by `sync`),
//! laid out as the [`store`] says, with the summary and the manifest of each run beside it.
//!
//! Entries unchanged since the previous snapshot are hard links to it, so space grows with what
//! changed, not with the number of snapshots. A snapshot is built under a partial name and
//! renamed to its final name only once complete; a run that dies leaves the partial folder
//! behind, and the next run removes it before starting. Retention runs only after a run in which
//! nothing failed, and never removes the newest snapshot.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{
    AtFlags, Mode, OFlags, fsync, mkdirat, openat, renameat, symlinkat, syncfs, unlinkat,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::listing::Listing;
use contract::snapshots::{SnapshotInfo, SnapshotRecord};
use contract::{ExitCode, Summary};
use store::layout::{self, Target};
use store::record::Verification;
use store::retention::Policy;
use store::{SnapshotId, layout::STATE_DIR};

use crate::summary::Stats;
use crate::sync::{Mirror, Options, write_state_file};
use crate::{Error, Result, relpath};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

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
    /// The snapshots left after retention, newest first, as their records tell them (empty
    /// when they could not be read: the backup itself is done).
    pub kept: Vec<SnapshotRecord>,
    /// Partial snapshots of earlier runs that died, removed first.
    pub cleaned: Vec<String>,
    /// Bytes read to hash content for the manifest (files linked from the previous snapshot
    /// keep their hash and are not read).
    pub hashed_bytes: u64,
}

/// A prepared backup run: source and target checked, target locked.
#[derive(Debug)]
pub struct Backup {
    sync: Mirror,
    dst: PathBuf,
    policy: Policy,
}

fn open_or_make(
    owners: &crate::owner::Owners,
    dir: BorrowedFd<'_>,
    name: &CStr,
    what: &Path,
) -> Result<OwnedFd> {
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

/// Complete snapshots in `dir` (the store's `snapshots/`) with their times, newest first.
fn complete_snapshots(dir: BorrowedFd<'_>) -> std::io::Result<Vec<(String, SnapshotId)>> {
    let l = Listing::read(dir)?;
    Ok(layout::newest_first((0..l.len()).map(|i| l.name_bytes(i))))
}

impl Backup {
    /// Checks source and target (as [`Mirror::prepare`] does) and locks the target.
    pub fn prepare(src: &Path, dst: &Path, opts: Options, policy: Policy) -> Result<Backup> {
        if Target::new(dst).holds_block_versions() {
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
        let target = Target::new(&dst);
        let snaps_path = target.snapshots_dir();
        let snaps = open_or_make(
            sync.owners(),
            root.as_fd(),
            layout::SNAPSHOTS_C,
            &snaps_path,
        )?;
        let io = |what: &'static str| {
            let p = snaps_path.display().to_string();
            move |e: std::io::Error| Error::io(what, p.clone(), e)
        };

        // Partial snapshots of runs that died (the lock says none is running now).
        let listing = Listing::read(&snaps).map_err(io("cannot read"))?;
        let (cleaned, _) = remove_partials(sync.owners(), snaps.as_fd(), &listing, false)
            .map_err(io("cannot remove a partial snapshot in"))?;

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
        let new_id = new_id(&existing);
        let id = new_id.to_string();
        let partial = CString::new(layout::partial(&new_id)).expect("no NUL");
        let target_path = snaps_path.join(partial.to_str().expect("ASCII"));
        let target = open_or_make(sync.owners(), snaps.as_fd(), &partial, &target_path)?;
        // An unprivileged run keeps the owners it cannot apply in the snapshot's own state
        // folder, where a restore from the snapshot finds them.
        let meta_dir = if !crate::check::can_chown() {
            Some(open_or_make(
                sync.owners(),
                target.as_fd(),
                layout::STATE_DIR_C,
                &target_path,
            )?)
        } else {
            None
        };
        let reference = open_previous(sync.owners(), snaps.as_fd(), previous.as_deref())
            .map_err(io("cannot open"))?;
        let state = sync
            .state_fd()
            .try_clone_to_owned()
            .map_err(io("cannot use state of"))?;
        let runs = open_or_make_raw(sync.owners(), state.as_fd(), layout::SNAPSHOTS_C)
            .map_err(io("cannot record the snapshot in"))?;
        // The copy pass writes the manifest as it places entries; files linked from the previous
        // snapshot keep the hash its manifest recorded. A manifest left by a run that died is
        // removed, and a damaged previous one only means those files are read again.
        let mname = CString::new(layout::manifest(&id)).expect("no NUL");
        let mtmp = CString::new(layout::manifest_tmp(&id)).expect("no NUL");
        remove_dead_manifests(runs.as_fd());
        let previous_manifest = previous.as_ref().and_then(|p| {
            let name = CString::new(layout::manifest(p)).ok()?;
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
            let names = Names {
                root: root.as_fd(),
                snaps: snaps.as_fd(),
                runs: runs.as_fd(),
                path: &snaps_path,
            };
            complete(owners, &names, &partial, &id, s, &policy)
        })?;
        let (summary, removed) = summary;
        let kept = records(&dst).unwrap_or_default();
        Ok(BackupReport {
            snapshot: id,
            previous,
            summary,
            removed,
            kept,
            cleaned,
            hashed_bytes: hashed.get(),
        })
    }
}

/// Removes the partial snapshots that runs which died left in `snaps` (listed in `listing`; the
/// lock says none is being made now), all of them or all but the newest (`keep_newest`).
/// Returns the names removed and the one kept.
fn remove_partials(
    owners: &crate::owner::Owners,
    snaps: BorrowedFd<'_>,
    listing: &Listing,
    keep_newest: bool,
) -> std::io::Result<(Vec<String>, Option<Vec<u8>>)> {
    let mut partials: Vec<Vec<u8>> = (0..listing.len())
        .map(|i| listing.name_bytes(i).to_vec())
        .filter(|n| layout::is_partial(n))
        .collect();
    // Partial names hold their run's time: the newest sorts last.
    partials.sort();
    let kept = if keep_newest { partials.pop() } else { None };
    let mut removed = Vec::new();
    for name in partials {
        let c = CString::new(name.clone()).expect("a listed name has no NUL");
        owners.retry_target(&[], &[snaps], || crate::remove::remove(snaps, &c))?;
        removed.push(relpath::display(&name));
    }
    Ok((removed, kept))
}

/// The previous complete snapshot `id` in `snaps`, opened: the reference whose unchanged
/// entries the new snapshot links.
fn open_previous(
    owners: &crate::owner::Owners,
    snaps: BorrowedFd<'_>,
    id: Option<&str>,
) -> std::io::Result<Option<OwnedFd>> {
    id.map(|p| {
        let c = CString::new(p).expect("no NUL");
        owners.open_in(snaps, &c, DIR_FLAGS)
    })
    .transpose()
}

/// The name of a new snapshot: the time now, one second later when a snapshot has that name
/// (names stay times).
fn new_id(existing: &[(String, SnapshotId)]) -> SnapshotId {
    let id = SnapshotId::now();
    if existing.iter().any(|(e, _)| *e == id.to_string()) {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        return SnapshotId::now();
    }
    id
}

/// A snapshot filled by another writer: the wire's receiver, which gets the source from a
/// sending mover on another machine (`mover receive --snapshot`). The store is the same as
/// [`Backup`]'s; what differs is what happens to a run that died. [`Backup`] removes its
/// partial snapshot, as it can read its source again at disk speed; a transfer over a network
/// takes its partial snapshot up instead, under the new run's name, so that a re-run (or a
/// reconnect within `--retry-for`) sends only what did not arrive before. The previous
/// complete snapshot is the reference whose unchanged files the writer links
/// ([`Incoming::reference`]), and its manifest lends their hashes to the new manifest, built
/// once the snapshot is filled.
#[derive(Debug)]
pub struct Incoming {
    root: OwnedFd,
    snaps: OwnedFd,
    runs: OwnedFd,
    dst: PathBuf,
    snaps_path: PathBuf,
    partial: CString,
    id: String,
    target: OwnedFd,
    reference: Option<OwnedFd>,
    previous: Option<String>,
    taken_up: Option<String>,
    cleaned: Vec<String>,
    policy: Policy,
}

impl Incoming {
    /// Starts a snapshot in the store open at `root` (the folder `dst`, locked, with its state
    /// folder open at `state`): the newest partial snapshot left by a run that died is renamed
    /// to the new run's partial name and filled further, older ones are removed.
    pub fn begin(
        owners: &crate::owner::Owners,
        root: BorrowedFd<'_>,
        state: BorrowedFd<'_>,
        dst: &Path,
        policy: Policy,
    ) -> Result<Incoming> {
        if Target::new(dst).holds_block_versions() {
            return Err(Error::Usage(format!(
                "{} holds versions of a block volume, not snapshots of a folder: give the \
                 folder a backup folder of its own",
                dst.display()
            )));
        }
        let snaps_path = Target::new(dst).snapshots_dir();
        let io = |what: &'static str| {
            let p = snaps_path.display().to_string();
            move |e: std::io::Error| Error::io(what, p.clone(), e)
        };
        let snaps = open_or_make(owners, root, layout::SNAPSHOTS_C, &snaps_path)?;
        let runs = open_or_make_raw(owners, state, layout::SNAPSHOTS_C)
            .map_err(io("cannot record the snapshot in"))?;
        remove_dead_manifests(runs.as_fd());
        let listing = Listing::read(&snaps).map_err(io("cannot read"))?;
        let (cleaned, newest) = remove_partials(owners, snaps.as_fd(), &listing, true)
            .map_err(io("cannot remove a partial snapshot in"))?;
        let existing = complete_snapshots(snaps.as_fd()).map_err(io("cannot read"))?;
        let previous = existing.first().map(|(id, _)| id.clone());
        let new_id = new_id(&existing);
        let id = new_id.to_string();
        let partial = CString::new(layout::partial(&new_id)).expect("no NUL");
        let taken_up = match newest {
            Some(old) => {
                let c = CString::new(old.clone()).expect("a listed name has no NUL");
                owners
                    .retry_target(&[], &[snaps.as_fd()], || {
                        renameat(snaps.as_fd(), &c, snaps.as_fd(), &partial).map_err(Into::into)
                    })
                    .map_err(io("cannot take up a partial snapshot in"))?;
                Some(relpath::display(&old))
            }
            None => None,
        };
        let target_path = snaps_path.join(partial.to_str().expect("ASCII"));
        let target = open_or_make(owners, snaps.as_fd(), &partial, &target_path)?;
        let reference =
            open_previous(owners, snaps.as_fd(), previous.as_deref()).map_err(io("cannot open"))?;
        Ok(Incoming {
            root: root
                .try_clone_to_owned()
                .map_err(io("cannot use the target of"))?,
            snaps,
            runs,
            dst: dst.to_path_buf(),
            snaps_path,
            partial,
            id,
            target,
            reference,
            previous,
            taken_up,
            cleaned,
            policy,
        })
    }

    /// The folder to fill: the new snapshot under its partial name.
    pub fn target(&self) -> BorrowedFd<'_> {
        self.target.as_fd()
    }

    /// The partial snapshot's path, for messages.
    pub fn target_path(&self) -> PathBuf {
        self.snaps_path.join(self.partial.to_str().expect("ASCII"))
    }

    /// The previous complete snapshot, whose entries equal to the source's are hard-linked
    /// into the new one rather than sent; `None` for the first snapshot.
    pub fn reference(&self) -> Option<BorrowedFd<'_>> {
        self.reference.as_ref().map(|r| r.as_fd())
    }

    /// The partial snapshot of a run that died which this run goes on filling, if any.
    pub fn taken_up(&self) -> Option<&str> {
        self.taken_up.as_deref()
    }

    /// Completes the filled snapshot: writes its manifest (hashing the files that are not
    /// linked from the previous snapshot), flushes it, names it, points `latest` at it, records
    /// `summary`, and applies retention when nothing failed.
    pub fn complete(self, owners: &crate::owner::Owners, summary: Summary) -> Result<BackupReport> {
        let io = |what: &'static str| {
            let p = self.snaps_path.display().to_string();
            move |e: std::io::Error| Error::io(what, p.clone(), e)
        };
        let known = self
            .previous
            .as_ref()
            .and_then(|p| {
                let name = CString::new(layout::manifest(p)).ok()?;
                let fd = openat(
                    &self.runs,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).ok()?;
                crate::manifest::parse(&data).ok()
            })
            .map(|entries| crate::manifest::known(&entries))
            .unwrap_or_default();
        let mname = CString::new(layout::manifest(&self.id)).expect("no NUL");
        let mtmp = CString::new(layout::manifest_tmp(&self.id)).expect("no NUL");
        let runs = self.runs.as_fd();
        let (_, hashed) = owners
            .retry_target(&[], &[runs], || {
                let f = openat(
                    runs,
                    mtmp.as_c_str(),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let counts = crate::manifest::build(self.target.as_fd(), &known, f.into())?;
                renameat(runs, mtmp.as_c_str(), runs, mname.as_c_str())?;
                Ok(counts)
            })
            .map_err(io("cannot write the manifest of the snapshot in"))?;
        drop(known);
        let names = Names {
            root: self.root.as_fd(),
            snaps: self.snaps.as_fd(),
            runs,
            path: &self.snaps_path,
        };
        let removed = complete(
            owners,
            &names,
            &self.partial,
            &self.id,
            &summary,
            &self.policy,
        )?;
        Ok(BackupReport {
            kept: records(&self.dst).unwrap_or_default(),
            snapshot: self.id,
            previous: self.previous,
            summary,
            removed,
            cleaned: self.cleaned,
            hashed_bytes: hashed,
        })
    }
}

/// The folders of a store a snapshot is completed in: its root, `snapshots/`, and the state
/// folder's `snapshots/` (records and manifests); `path` names `snapshots/` in errors.
struct Names<'a> {
    root: BorrowedFd<'a>,
    snaps: BorrowedFd<'a>,
    runs: BorrowedFd<'a>,
    path: &'a Path,
}

/// Completes a filled snapshot whose manifest is in place: flushes it to the disk, gives it its
/// final name `id`, points `latest` at it, records the run's summary, and applies retention
/// after a run in which nothing failed. Returns the snapshots retention removed.
fn complete(
    owners: &crate::owner::Owners,
    n: &Names<'_>,
    partial: &CStr,
    id: &str,
    s: &Summary,
    policy: &Policy,
) -> Result<Vec<String>> {
    let Names {
        root,
        snaps,
        runs,
        path,
    } = *n;
    let io = |what: &'static str| {
        let p = path.display().to_string();
        move |e: std::io::Error| Error::io(what, p.clone(), e)
    };
    // On the disk before it is named: after a crash of the node, a snapshot under its final
    // name must not hold files whose data never left the page cache. `syncfs` also reports a
    // write that failed in the background (it would otherwise go unseen).
    syncfs(snaps)
        .and_then(|()| syncfs(runs))
        .map_err(|e| io("cannot flush the snapshot to the disk in")(e.into()))?;

    // Complete: give the snapshot its final name and point `latest` at it.
    let final_name = CString::new(id).expect("no NUL");
    owners
        .retry_target(&[], &[snaps], || {
            renameat(snaps, partial, snaps, &final_name).map_err(Into::into)
        })
        .map_err(io("cannot name the snapshot in"))?;
    let link = layout::snapshot_path(id);
    let tmp = layout::LATEST_TMP_C;
    owners
        .retry_target(&[], &[root], || {
            let _ = unlinkat(root, tmp, AtFlags::empty());
            symlinkat(link.as_str(), root, tmp)?;
            renameat(root, tmp, root, layout::LATEST_C)?;
            Ok(())
        })
        .map_err(io("cannot point latest at the snapshot in"))?;
    // The new names on the disk before retention removes anything: a crash must not leave the
    // older snapshots gone and the new one unnamed.
    fsync(runs)
        .and_then(|()| fsync(snaps))
        .and_then(|()| fsync(root))
        .map_err(|e| io("cannot flush the names of the snapshot in")(e.into()))?;
    let per_run = CString::new(layout::run_record(id)).expect("no NUL");
    owners
        .retry_target(&[], &[runs], || write_state_file(runs, &per_run, s))
        .map_err(io("cannot record the snapshot in"))?;

    // Retention, only after a run in which nothing failed.
    let mut removed = Vec::new();
    if s.exit_code == ExitCode::Ok && policy.is_set() {
        let all = complete_snapshots(snaps).map_err(io("cannot read"))?;
        let times: Vec<SnapshotId> = all.iter().map(|(_, t)| *t).collect();
        let keep = store::retention::keep(&times, policy);
        for (i, (name, _)) in all.iter().enumerate() {
            if keep.contains(&i) || name == id {
                continue;
            }
            let c = CString::new(name.as_str()).expect("no NUL");
            owners
                .retry_target(&[], &[snaps], || crate::remove::remove(snaps, &c))
                .map_err(io("cannot remove an expired snapshot in"))?;
            for record in layout::records(name) {
                let f = CString::new(record).expect("no NUL");
                let _ = unlinkat(runs, f.as_c_str(), AtFlags::empty());
            }
            removed.push(name.clone());
        }
    }
    Ok(removed)
}

/// Removes manifests that runs which died left half written; the lock says none is being written
/// now.
fn remove_dead_manifests(runs: BorrowedFd<'_>) {
    let Ok(l) = Listing::read(runs) else { return };
    for i in 0..l.len() {
        if l.name_bytes(i)
            .ends_with(layout::MANIFEST_TMP_SUFFIX.as_bytes())
        {
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
    let io = io_at(dst);
    let Some((_, snaps)) = open_snapshots(dst)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for r in records(dst)? {
        let c = CString::new(r.id.as_str()).expect("no NUL");
        let dir = openat(&snaps, c.as_c_str(), DIR_FLAGS, Mode::empty())
            .map_err(|e| io("cannot open")(e.into()))?;
        out.push(SnapshotInfo {
            unique_bytes: unique_bytes(dir).map_err(io("cannot read"))?,
            verified: match (&r.verified, &r.verified_at) {
                (Some(result), Some(at)) => Some(format!("{result} at {at}")),
                _ => None,
            },
            id: r.id,
            time: r.time,
            latest: r.latest,
            entries: r.entries,
            bytes: r.bytes,
            result: r.result,
        });
    }
    Ok(out)
}

/// The error of an I/O call on `dst`, with what was being done.
fn io_at(dst: &Path) -> impl Fn(&'static str) -> Box<dyn Fn(std::io::Error) -> Error> {
    let p = dst.display().to_string();
    move |what| {
        let p = p.clone();
        Box::new(move |e| Error::io(what, p.clone(), e))
    }
}

/// The target's root and its snapshots folder; `None` when it has no snapshot yet.
fn open_snapshots(dst: &Path) -> Result<Option<(OwnedFd, OwnedFd)>> {
    let io = io_at(dst);
    let c = CString::new(dst.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage("NUL in path".into()))?;
    let root = openat(
        rustix::fs::CWD,
        c.as_c_str(),
        DIR_FLAGS.difference(OFlags::NOFOLLOW),
        Mode::empty(),
    )
    .map_err(|e| io("cannot open")(e.into()))?;
    match openat(&root, layout::SNAPSHOTS_C, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some((root, fd))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io("cannot open snapshots of")(e.into())),
    }
}

/// The snapshots of a target as their records tell them, newest first: the names, the run
/// summaries and the verification records, without reading any snapshot's files.
pub fn records(dst: &Path) -> Result<Vec<SnapshotRecord>> {
    let io = io_at(dst);
    let Some((root, snaps)) = open_snapshots(dst)? else {
        return Ok(Vec::new());
    };
    let latest = rustix::fs::readlinkat(&root, layout::LATEST_C, Vec::new())
        .ok()
        .and_then(|l| l.to_str().ok().map(layout::latest_id));
    let runs = openat(&root, layout::STATE_DIR_C, DIR_FLAGS, Mode::empty())
        .and_then(|state| openat(&state, layout::SNAPSHOTS_C, DIR_FLAGS, Mode::empty()))
        .ok();
    let read = |name: String| -> Option<std::fs::File> {
        let name = CString::new(name).ok()?;
        let fd = openat(
            runs.as_ref()?,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(std::fs::File::from(fd))
    };
    let mut out = Vec::new();
    for (id, t) in complete_snapshots(snaps.as_fd()).map_err(io("cannot read"))? {
        let summary: Option<Summary> =
            read(layout::run_record(&id)).and_then(|f| serde_json::from_reader(f).ok());
        let verified: Option<Verification> =
            read(layout::verify_record(&id)).and_then(|f| serde_json::from_reader(f).ok());
        out.push(SnapshotRecord {
            time: t.rfc3339(),
            latest: latest.as_deref() == Some(id.as_str()),
            entries: summary.as_ref().map(|s| s.entries.total),
            bytes: summary.as_ref().map(|s| s.bytes.total),
            result: summary.map(|s| s.result),
            verified_at: verified.as_ref().map(|v| v.verified_at.clone()),
            verified: verified.map(|v| v.result),
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
            if is_root && name.to_bytes() == STATE_DIR.as_bytes() {
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
