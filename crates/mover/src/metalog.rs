//! The metadata manifest of an unprivileged copy.
//!
//! A mover without `CAP_CHOWN` (a non-root pod under Pod Security "restricted") cannot give
//! entries their owners, and must not give copies the setuid or setgid bit under its own uid. It
//! copies what it can and writes what it could not apply to `TARGET/.pvc-backup/metadata.jsonl`,
//! one JSON object a line, the way rsync's `--fake-super` keeps them in xattrs:
//!
//! ```json
//! {"path":"data/app.db","uid":1001,"gid":1001,"mode":2536}
//! ```
//!
//! (`mode` is the full permission bits, decimal in JSON: 2536 is 0o4750.) A later sync *from*
//! that target, with privileges (a restore), reads the manifest and gives each entry the recorded
//! owner, group and mode instead of the ones on disk. A privileged sync into a target removes a
//! manifest left there, since the target then holds the real attributes.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;

use rustix::fs::{AtFlags, Mode, OFlags, openat, renameat, unlinkat};
use serde::{Deserialize, Serialize};

use crate::meta::Meta;

/// The manifest's name in the state folder.
pub const NAME: &CStr = store::layout::METADATA_LOG_C;
const TMP: &CStr = store::layout::METADATA_LOG_TMP_C;

/// The attributes an unprivileged copy could not apply to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// All permission bits (`mode & 0o7777`).
    pub mode: u32,
}

#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    uid: u32,
    gid: u32,
    mode: u32,
}

/// Writes the manifest during an unprivileged run.
#[derive(Debug)]
pub struct Writer {
    out: Mutex<BufWriter<std::fs::File>>,
    uid: u32,
    gid: u32,
}

impl Writer {
    /// Starts a manifest in the state folder `dir` for a mover running as `uid`/`gid`.
    pub fn create(dir: BorrowedFd<'_>, uid: u32, gid: u32) -> std::io::Result<Writer> {
        let fd = openat(
            dir,
            TMP,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(Writer {
            out: Mutex::new(BufWriter::new(std::fs::File::from(fd))),
            uid,
            gid,
        })
    }

    /// The attributes this mover can give a copy of `meta`: its own owner, and no setuid or
    /// setgid bit.
    pub fn applicable(&self, meta: &Meta) -> Meta {
        Meta {
            uid: self.uid,
            gid: self.gid,
            perm: meta.perm & !0o6000,
            ..*meta
        }
    }

    /// Records `meta` for the entry at `rel` when the copy cannot carry it.
    pub fn record(&self, rel: &[u8], meta: &Meta) -> std::io::Result<()> {
        if (meta.uid, meta.gid) == (self.uid, self.gid) && meta.perm & 0o6000 == 0 {
            return Ok(());
        }
        let line = Line {
            path: crate::relpath::display(rel),
            uid: meta.uid,
            gid: meta.gid,
            mode: meta.perm,
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")
    }

    /// Completes the manifest: flushed, then renamed into place.
    pub fn finish(self, dir: BorrowedFd<'_>) -> std::io::Result<()> {
        let mut out = self.out.into_inner().unwrap_or_else(|p| p.into_inner());
        out.flush()?;
        out.get_ref().sync_data()?;
        drop(out);
        renameat(dir, TMP, dir, NAME)?;
        Ok(())
    }
}

/// Removes a manifest from a state folder (a privileged run wrote the real attributes).
pub fn remove(dir: BorrowedFd<'_>) {
    let _ = unlinkat(dir, NAME, AtFlags::empty());
    let _ = unlinkat(dir, TMP, AtFlags::empty());
}

/// Reads the manifest of a source's state folder, if it has one: relative path (bytes) to the
/// recorded attributes.
pub fn read(state_dir: BorrowedFd<'_>) -> std::io::Result<Option<HashMap<Vec<u8>, Recorded>>> {
    let fd = match openat(
        state_dir.as_fd(),
        NAME,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = std::io::read_to_string(std::fs::File::from(fd))?;
    let mut map = HashMap::new();
    for (n, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: Line = serde_json::from_str(l).map_err(|e| {
            std::io::Error::other(format!("{}: line {}: {e}", NAME.to_string_lossy(), n + 1))
        })?;
        let path = crate::relpath::parse_display(&line.path).ok_or_else(|| {
            std::io::Error::other(format!(
                "{}: line {}: bad path",
                NAME.to_string_lossy(),
                n + 1
            ))
        })?;
        map.insert(
            path,
            Recorded {
                uid: line.uid,
                gid: line.gid,
                mode: line.mode,
            },
        );
    }
    Ok(Some(map))
}
