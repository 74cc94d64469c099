//! `mover restore --repository`: a snapshot (or one folder of it) back into a folder, with
//! every attribute the snapshot holds, and what the snapshot lacks removed unless `no_delete`.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use contract::ExitCode;
use contract::summary::{ByteCounts, EntryCounts};
use mover::listing::Listing;
use mover::owner::{Impersonate, Owners};
use rustic_core::repofile::{Node, NodeType};
use rustic_core::{IndexedFull, LocalDestination, LsOptions, Repository, RestoreOptions};
use rustix::fs::{FileType, Mode, OFlags, openat};
use serde::Serialize;

use crate::location::{Location, S3Env};
use crate::open::{describe, open};
use crate::{Error, Result};

/// Settings of a restore from a repository.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which snapshot: its id (or a unique prefix of it), or `latest`.
    pub snapshot: String,
    /// Restore only this folder of the snapshot (relative to the path it backed up).
    pub subdir: Option<PathBuf>,
    /// Keep entries of the target that the snapshot lacks.
    pub no_delete: bool,
    /// `latest` is the newest snapshot of this host (of any host when `None`); an id is
    /// found whatever its host.
    pub host: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot: "latest".into(),
            subdir: None,
            no_delete: false,
            host: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `repository`: tells this report from a backup folder's.
    pub kind: &'static str,
    /// The snapshot restored (its full id, also when `latest` was asked for).
    pub snapshot: String,
    /// The path inside the snapshot that was restored.
    pub path: String,
    /// Entries of the target removed because the snapshot lacks them.
    pub removed: u64,
    /// The mover's exit code.
    pub exit_code: u8,
    /// The same run as every mover command sums one up: entries (files and folders) of the
    /// snapshot, written and found already equal, removed; bytes of the files and written.
    pub summary: contract::Summary,
}

/// Restores a snapshot of the repository at `location` into `target` (created if missing).
pub fn restore(
    location: &Location,
    password: &str,
    env: &S3Env,
    target: &Path,
    opts: &Options,
) -> Result<Report> {
    let started = std::time::SystemTime::now();
    let url = location.url();
    let err = |e: Box<rustic_core::RusticError>| Error::repo(url, describe(&e));
    let repo = open(location, password, false, env)?
        .to_indexed()
        .map_err(err)?;
    let snap = repo
        .get_snapshot_from_str(&opts.snapshot, |s| {
            opts.host.as_deref().is_none_or(|h| s.hostname == h)
        })
        .map_err(|e| {
            Error::repo(
                url,
                format!(
                    "no snapshot {:?} ({}); list them with `pvc-backup mover snapshots --repository {url}`",
                    opts.snapshot,
                    describe(&e)
                ),
            )
        })?;
    // A snapshot of one folder (what the mover writes, and `restic backup DIR`) is restored
    // from inside that folder; a snapshot of several paths, from its root.
    let mut inner = match snap.paths.iter().collect::<Vec<_>>().as_slice() {
        [one] => PathBuf::from(one.to_string()),
        _ => PathBuf::from("/"),
    };
    if let Some(sub) = &opts.subdir {
        if sub.is_absolute()
            || sub
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::Usage(format!(
                "--subdir {}: give a relative path inside the snapshot, without `..`",
                sub.display()
            )));
        }
        inner.push(sub);
    }
    let inner_str = inner.to_string_lossy().into_owned();
    let node = repo
        .node_from_snapshot_and_path(&snap, &inner_str)
        .map_err(|e| {
            Error::repo(
                url,
                format!(
                    "snapshot {} holds no {inner_str}: {}",
                    snap.id,
                    describe(&e)
                ),
            )
        })?;
    if !node.is_dir() {
        return Err(Error::Usage(format!(
            "{inner_str} in snapshot {} is not a folder; restore a folder",
            snap.id
        )));
    }
    std::fs::create_dir_all(target).map_err(|e| {
        Error::Usage(format!(
            "cannot create the target {}: {e}",
            target.display()
        ))
    })?;
    let dest_str = format!("{}/", target.display());
    let dest = LocalDestination::new(&dest_str, true, false).map_err(err)?;
    let mut ropts = RestoreOptions::default();
    ropts.numeric_id = true;
    // Zeros come back as holes: restic's format does not record holes, and a file read as
    // zeros takes no room it did not need. (rustic_core 0.13 does not export the type of this
    // setting, so it is named by its serialized form.)
    ropts.sparse = serde_json::from_value(serde_json::json!("ByContent"))
        .map_err(|e| Error::repo(url, format!("restore settings: {e}")))?;
    let root = open_dir(rustix::fs::CWD, target)
        .map_err(|e| Error::Usage(format!("cannot open {}: {e}", target.display())))?;
    let removed = prepare_target(&repo, &node, root.as_fd(), true, opts.no_delete, url)?;
    let ls = LsOptions::default();
    let Written {
        written,
        unchanged,
        bytes_written,
    } = restore_in_batches(&repo, &node, &ropts, &dest)
        .map_err(|e| Error::repo(url, format!("the restore failed: {}", describe(&e))))?;
    let (mut entries, mut bytes) = (0u64, 0u64);
    // rustic sets modes with a plain chmod, which loses setgid bits without CAP_FSETID, and
    // punching holes below clears setuid and setgid bits.
    let owners = Owners::new(Impersonate::Auto);
    for entry in repo.ls(&node, &ls).map_err(err)? {
        let (path, n) = entry.map_err(err)?;
        entries += 1;
        if n.is_file() {
            bytes += n.meta.size;
        }
        if n.is_file() && n.meta.size >= HOLE_SCAN_MIN {
            let file = target.join(&path);
            sparsify(&file, &n).map_err(|e| {
                Error::repo(
                    url,
                    format!(
                        "cannot make the zeros of {} holes again: {e}",
                        file.display()
                    ),
                )
            })?;
        }
        // After punching holes: without CAP_FSETID a write clears setuid and setgid bits too.
        if let Some(mode) = n.meta.mode.filter(|_| n.is_dir() || n.is_file()) {
            let perm = crate::source::perm_from_restic(mode);
            let name = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Error::repo(url, format!("{} holds a NUL byte", path.display())))?;
            mover::attrs::restore_set_id_bits(
                mover::attrs::Handle::At(root.as_fd(), &name),
                perm,
                Some(&owners),
            )
            .map_err(|e| {
                Error::repo(
                    url,
                    format!(
                        "cannot set the mode {perm:o} of {} ({}): {}",
                        target.join(&path).display(),
                        e.op,
                        e.err
                    ),
                )
            })?;
        }
    }
    apply_root(&node, root.as_fd(), &owners).map_err(|e| {
        Error::repo(
            url,
            format!(
                "cannot give the target {} the attributes of the snapshot's folder ({}): {}",
                target.display(),
                e.op,
                e.err
            ),
        )
    })?;
    let summary = crate::summary::summary(
        "restore",
        url,
        &target.display().to_string(),
        &crate::summary::Timing::since(started),
        EntryCounts {
            total: entries,
            copied: written,
            unchanged,
            deleted: removed,
            ..EntryCounts::default()
        },
        ByteCounts {
            total: bytes,
            copied: bytes_written,
        },
        &[],
    );
    Ok(Report {
        kind: "repository",
        snapshot: crate::open::hex(&snap.id),
        path: inner_str,
        removed,
        exit_code: ExitCode::Ok.code(),
        summary,
    })
}

/// How much file content one batch of a restore holds at most (a file larger than this is a
/// batch of its own).
const BATCH_BYTES: u64 = 8 << 20;
/// How many entries one batch of a restore holds at most.
const BATCH_ENTRIES: usize = 4096;

/// One batch of a restore: entries in the snapshot's order, so that rustic's walk of the
/// target, which goes along with them, stays in step.
type Batch = Vec<(PathBuf, Node)>;

/// Restores the tree below `node` into `dest` in batches of at most [`BATCH_BYTES`] of content.
///
/// rustic's restore plans every file at once and reads packs on twenty threads ahead of the
/// writes, so a restore held about as much memory as the files it wrote: 949 MiB for 830 MiB of
/// small files. Here it restores the folders first, then the other entries a batch at a time,
/// then the folders' own attributes, deepest first. A batch lists no folder, so rustic's walk of
/// the target does not go into any; it looks at the target's top level only. The files of one
/// hard-link group go into one batch, since rustic links the members of a group to the first it
/// restores within the same plan.
fn restore_in_batches<S: IndexedFull>(
    repo: &Repository<S>,
    node: &Node,
    ropts: &RestoreOptions,
    dest: &LocalDestination,
) -> rustic_core::RusticResult<Written> {
    let ls = LsOptions::default();
    let counts = std::cell::RefCell::new(Written::default());
    // rustic's preparation creates what is missing and plans the contents; its restore writes
    // them and then sets each entry's attributes. Each entry is counted in the first batch that
    // lists it (the folders' second pass only sets their attributes).
    let run = |batch: &Batch, restore: bool| -> rustic_core::RusticResult<()> {
        let stream = || batch.iter().cloned().map(Ok);
        let plan = repo.prepare_restore(ropts, stream(), dest, false)?;
        if !restore || batch.iter().any(|(_, n)| !n.is_dir()) {
            let (files, dirs) = (&plan.stats.files, &plan.stats.dirs);
            let mut c = counts.borrow_mut();
            c.written += files.restore + files.modify + dirs.restore + dirs.modify;
            c.unchanged += files.unchanged + files.verified + dirs.unchanged + dirs.verified;
            c.bytes_written += plan.restore_size.saturating_sub(plan.matched_size);
        }
        if restore {
            repo.restore(plan, ropts, stream(), dest)?;
        }
        Ok(())
    };
    // Folders: created now, given their attributes at the end.
    let dirs: Batch = repo
        .ls(node, &ls)?
        .filter(|e| e.as_ref().map_or(true, |(_, n)| n.is_dir()))
        .collect::<rustic_core::RusticResult<_>>()?;
    run(&dirs, false)?;
    let mut batch: Batch = Vec::new();
    let mut bytes = 0u64;
    let mut linked: std::collections::BTreeMap<(u64, u64), Batch> = Default::default();
    for entry in repo.ls(node, &ls)? {
        let (path, n) = entry?;
        if n.is_dir() {
            continue;
        }
        // As rustic tells a hard-link group.
        if n.is_file() && n.meta.links > 1 && n.meta.device_id != 0 && n.meta.inode != 0 {
            linked
                .entry((n.meta.device_id, n.meta.inode))
                .or_default()
                .push((path, n));
            continue;
        }
        if n.is_file() {
            bytes += n.meta.size;
        }
        batch.push((path, n));
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_ENTRIES {
            run(&batch, true)?;
            batch.clear();
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        run(&batch, true)?;
        batch.clear();
        bytes = 0;
    }
    for (_, group) in linked {
        bytes += group.first().map_or(0, |(_, n)| n.meta.size);
        batch.extend(group);
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_ENTRIES {
            batch.sort_by(|a, b| a.0.cmp(&b.0));
            run(&batch, true)?;
            batch.clear();
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        run(&batch, true)?;
    }
    run(&dirs, true)?;
    Ok(counts.into_inner())
}

/// What a restore wrote: entries written and found already equal, and bytes written.
#[derive(Debug, Default)]
struct Written {
    written: u64,
    unchanged: u64,
    bytes_written: u64,
}

/// Files smaller than this are not scanned for zeros to turn back into holes.
const HOLE_SCAN_MIN: u64 = 64 << 10;

/// Turns the runs of zeros of a restored file back into holes, keeping its times.
///
/// restic's format does not record holes: a sparse file is stored as its zeros. rustic leaves a
/// hole only where a whole chunk is zeros, so a disk image with data scattered through it would
/// come back allocated. Each aligned 4 KiB block of zeros is punched out again; a file whose
/// source allocated its zeros comes back sparse (same content, less room).
fn sparsify(path: &Path, node: &Node) -> std::io::Result<()> {
    use rustix::fs::{FallocateFlags, Timespec, Timestamps, fallocate, futimens};
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let fd = openat(
        rustix::fs::CWD,
        path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    let size = node.meta.size;
    let mut buf = vec![0u8; 1 << 20];
    let mut run: Option<u64> = None;
    let mut punched = false;
    let mut flush = |start: u64, end: u64| -> std::io::Result<()> {
        punched = true;
        fallocate(
            &file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            start,
            end - start,
        )?;
        Ok(())
    };
    let mut off = 0u64;
    while off < size {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
            let at = off + (i * BLOCK) as u64;
            if block.len() == BLOCK && block.iter().all(|&b| b == 0) {
                run.get_or_insert(at);
            } else if let Some(start) = run.take() {
                flush(start, at)?;
            }
        }
        off += n as u64;
    }
    if let Some(start) = run.take() {
        flush(start, off)?;
    }
    if punched {
        // Punching holes set the modification time: give the snapshot's back.
        let ts = |t: Option<jiff::Timestamp>| {
            t.map_or(
                Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                |t| Timespec {
                    tv_sec: t.as_second(),
                    tv_nsec: i64::from(t.subsec_nanosecond()),
                },
            )
        };
        futimens(
            &file,
            &Timestamps {
                last_access: ts(node.meta.atime),
                last_modification: ts(node.meta.mtime),
            },
        )?;
    }
    Ok(())
}

/// Gives the target folder the owner, mode, extended attributes and times of the snapshot's
/// folder: rustic restores what a folder holds, not the folder it is restored into.
fn apply_root(
    node: &Node,
    root: BorrowedFd<'_>,
    owners: &Owners,
) -> Result<(), mover::attrs::OpError> {
    let op = |e: std::io::Error| mover::attrs::OpError { op: "stat", err: e };
    let have = mover::meta::stat_fd(root).map_err(op)?;
    let have_x = mover::xattr::read(mover::xattr::Target::Fd(root)).map_err(op)?;
    let m = &node.meta;
    let ts = |t: Option<jiff::Timestamp>, or: mover::meta::Ts| {
        t.map_or(or, |t| mover::meta::Ts {
            sec: t.as_second(),
            nsec: t.subsec_nanosecond().unsigned_abs(),
        })
    };
    let want = mover::meta::Meta {
        perm: m.mode.map_or(have.perm, crate::source::perm_from_restic),
        uid: m.uid.unwrap_or(have.uid),
        gid: m.gid.unwrap_or(have.gid),
        mtime: ts(m.mtime, have.mtime),
        atime: ts(m.atime, have.atime),
        ..have
    };
    let want_x = mover::xattr::Xattrs::from_pairs(
        m.extended_attributes
            .iter()
            .filter_map(|x| {
                Some((
                    CString::new(x.name.as_bytes()).ok()?,
                    x.value.clone().unwrap_or_default(),
                ))
            })
            .collect(),
    );
    mover::attrs::apply_new(
        mover::attrs::Handle::Fd(root),
        &want,
        Some(&have),
        &want_x,
        Some(&have_x),
        Some(owners),
    )
    .map(|_| ())
}

fn open_dir(dir: BorrowedFd<'_>, path: impl rustix::path::Arg) -> std::io::Result<OwnedFd> {
    Ok(openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Prepares the folder `dir` for rustic's restore of the snapshot's folder `node`: removes what
/// the snapshot lacks there and below (unless `keep_extra`; at the root the mover's state folder
/// and `lost+found` always stay), entries whose type differs from the snapshot's, and the
/// entries rustic recreates rather than rewrites (symlinks, special files, and files the
/// snapshot hard-links), so that a restore into a used folder, or again after an interrupted
/// one, ends with what the snapshot holds. Returns how many entries went that the snapshot lacks.
fn prepare_target<S: IndexedFull>(
    repo: &Repository<S>,
    node: &Node,
    dir: BorrowedFd<'_>,
    root: bool,
    keep_extra: bool,
    url: &str,
) -> Result<u64> {
    let Some(tree_id) = node.subtree else {
        return Ok(0);
    };
    let tree = repo
        .get_tree(&tree_id)
        .map_err(|e| Error::repo(url, describe(&e)))?;
    let listing =
        Listing::read(dir).map_err(|e| Error::repo(url, format!("cannot list the target: {e}")))?;
    // One lookup table per folder: a folder of many entries must not cost a scan per entry.
    let by_name: std::collections::HashMap<Vec<u8>, &Node> = tree
        .nodes
        .iter()
        .map(|n| (n.name().as_bytes().to_vec(), n))
        .collect();
    let mut removed = 0;
    for i in 0..listing.len() {
        let name = listing.name_bytes(i);
        if root && (name == store::layout::STATE_DIR.as_bytes() || name == b"lost+found") {
            continue;
        }
        let cname = CString::from(listing.name(i));
        let have = match listing.dtype(i) {
            FileType::Unknown => match mover::meta::stat_at(dir, &cname) {
                Ok(m) => m.kind.file_type(),
                Err(_) => FileType::Unknown,
            },
            t => t,
        };
        let wanted = by_name.get(name).copied();
        let remove = match wanted {
            None if keep_extra => false,
            None => true,
            Some(n) => match (&n.node_type, have) {
                (NodeType::Dir, FileType::Directory) => {
                    if let Ok(sub) = open_dir(dir, listing.name(i)) {
                        removed += prepare_target(repo, n, sub.as_fd(), false, keep_extra, url)?;
                    }
                    false
                }
                (NodeType::File, FileType::RegularFile) => n.meta.links > 1,
                _ => true,
            },
        };
        if remove {
            let n = mover::remove::remove(dir, &cname).map_err(|e| {
                Error::repo(
                    url,
                    format!(
                        "cannot remove {} from the target: {e}",
                        String::from_utf8_lossy(name)
                    ),
                )
            })?;
            if wanted.is_none() {
                removed += n;
            }
        }
    }
    Ok(removed)
}
