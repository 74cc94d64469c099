//! What a run writes about itself: the manifest of the target, the entries it records while
//! placing them, and the state files of the target's state folder.

use std::ffi::{CStr, CString};
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{Mode, OFlags, openat, renameat};
use store::layout::{MIRROR_MANIFEST_C, MIRROR_MANIFEST_TMP_C};

use crate::manifest::{self, Chunk, PreviousFiles};
use crate::meta::{Kind, Meta, Ts, stat_at};
use crate::relpath;

use super::Mirror;
use super::mirror::Ctx;

impl Mirror {
    /// Writes `TARGET/.pvc-backup/manifest` for the mirror, hashing only files whose inode,
    /// size or mtime changed since the previous manifest.
    pub(super) fn write_manifest(&self, state: BorrowedFd<'_>) -> std::io::Result<()> {
        let previous = openat(
            state,
            MIRROR_MANIFEST_C,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .and_then(|fd| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).ok()?;
            crate::manifest::parse(&data).ok()
        })
        .unwrap_or_default();
        let known = crate::manifest::known(&previous);
        drop(previous);
        self.owners.retry_target(&[], &[state], || {
            let f = openat(
                state,
                MIRROR_MANIFEST_TMP_C,
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            crate::manifest::build(self.dst.as_fd(), &known, std::fs::File::from(f))?;
            renameat(state, MIRROR_MANIFEST_TMP_C, state, MIRROR_MANIFEST_C)?;
            Ok(())
        })
    }

    pub(super) fn manifest_dir(&self) -> BorrowedFd<'_> {
        self.meta_dir
            .as_ref()
            .map_or(self.state.dir.as_fd(), |d| d.as_fd())
    }
}

/// Writes a JSON document into the state folder under a temporary name, then renames it (the
/// summary of a run, `last-sync.json`, say).
pub fn write_state_file(
    dir: BorrowedFd<'_>,
    name: &CStr,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let tmp = CString::new(format!("{}.tmp", name.to_string_lossy())).expect("no NUL");
    let fd = openat(
        dir,
        tmp.as_c_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut f = std::io::BufWriter::new(std::fs::File::from(fd));
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    f.flush()?;
    renameat(dir, tmp.as_c_str(), dir, name)?;
    Ok(())
}

impl Ctx<'_> {
    /// Adds the target entry `name` of `dir` (in the directory `rel`) to the manifest as it is
    /// on disk now; a file's content is read and hashed unless `previous` holds its hash.
    /// `ctime` is the source's change time, given when the entry was placed with the extended
    /// attributes the source had then.
    pub(super) fn record_on_disk(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        previous: &PreviousFiles,
        ctime: Option<Ts>,
    ) {
        self.record_entry(chunk, dir, rel, name, ctime, |m| {
            previous.hash(name.to_bytes(), m).map(|h| (h, 0))
        });
    }

    /// Adds the file `name` the copy just placed in `dir` to the manifest with the hash of the
    /// `bytes` it copied. The attributes are the ones read from disk, as applied: `placed` when
    /// the copy read them through its descriptor, else read here.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_placed(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        (hash, bytes): ([u8; 32], u64),
        ctime: Option<Ts>,
        placed: Option<(Meta, [u8; 16])>,
    ) {
        if let (Some(rec), Some(c), Some((m, x))) = (self.record, chunk.as_mut(), placed)
            && m.size == bytes
        {
            rec.hashed(bytes);
            let mut e = manifest::Entry::from_meta(&m, Vec::new(), x, hash);
            e.ctime = ctime;
            c.push(name.to_bytes(), &e);
            return;
        }
        self.record_entry(chunk, dir, rel, name, ctime, |m| {
            (m.size == bytes).then_some((hash, bytes))
        });
    }

    /// Adds `name` of `dir` to the manifest as it is on disk now, with the source's change time
    /// `ctime` and the hash `known` gives (and the bytes hashed to get it), reading and hashing
    /// a file's content when it gives none.
    fn record_entry(
        &self,
        chunk: &mut Option<Chunk>,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        ctime: Option<Ts>,
        known: impl Fn(&Meta) -> Option<([u8; 32], u64)> + Sync,
    ) {
        let (Some(rec), Some(chunk)) = (self.record, chunk.as_mut()) else {
            return;
        };
        let described = self.owners.retry_target(&[], &[dir], || {
            let m = stat_at(dir, name)?;
            let known = known(&m);
            let e = manifest::describe(dir, name, &m, Vec::new(), known.map(|(h, _)| h))?;
            let hashed = match known {
                Some((_, bytes)) => bytes,
                None if m.kind == Kind::File => e.size,
                None => 0,
            };
            Ok((e, hashed))
        });
        match described {
            Ok((mut e, hashed)) => {
                rec.hashed(hashed);
                e.ctime = ctime;
                chunk.push(name.to_bytes(), &e);
            }
            Err(e) => rec.fail(std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e}",
                    relpath::display(&relpath::join(rel, name.to_bytes()))
                ),
            )),
        }
    }
}
