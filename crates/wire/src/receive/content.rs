//! Pass 2: the content of the files asked for, each into a temporary (or partly received) file
//! placed once complete, with every frame checked against what was listed and announced; then
//! the extra names of hard-linked files.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;

use mover::attrs::{self, Handle};
use mover::content::write_all_at;
use mover::meta::{Kind, stat_at, stat_fd};
use rustix::fs::{AtFlags, Mode, OFlags, ftruncate, linkat, openat};

use crate::frame::Conn;
use crate::message::Message;
use crate::send::unexpected;
use crate::{Error, Result, delta};

use super::*;

impl Session<'_> {
    /// Pass 2: receives the files asked for, in order.
    pub(super) fn contents(&mut self, conn: &mut Conn) -> Result<()> {
        let wanted = std::mem::take(&mut self.wanted);
        for n in wanted {
            match conn.recv()? {
                Message::FileBegin { file, size } if file == n => {
                    self.receive_file(conn, n, size)?
                }
                Message::FileFailed { file, op, error } if file == n => {
                    let rel = self.file_rel(n);
                    self.fail(&rel, &op, format!("on the sender: {error}"));
                }
                other => {
                    return Err(match other {
                        Message::FileBegin { file, .. } | Message::FileFailed { file, .. } => {
                            Error::protocol(format!(
                                "the sender sent file {file} where file {n} was expected"
                            ))
                        }
                        other => unexpected("file start", &other),
                    });
                }
            }
        }
        Ok(())
    }

    /// Receives one file's content into a temporary file, then places it. A file the sender
    /// lies about (more or fewer bytes than announced, data beyond its size) fails, and its
    /// temporary file is removed; the frames up to its end are read and dropped.
    fn receive_file(&mut self, conn: &mut Conn, n: u64, size: u64) -> Result<()> {
        let rel = self.file_rel(n);
        let f = self
            .file_rec(n)
            .expect("only files of this batch are asked for");
        let (d, name, meta, want_x) = (
            f.dir.expect("only files of made directories are asked for"),
            f.name.clone(),
            f.meta,
            f.want_x.clone(),
        );
        let resumed = self.resumed.contains(&n);
        let mut failure: Option<Failure> = None;
        if size != meta.size {
            failure = Some((
                "receive",
                io::Error::other(format!(
                    "the sender announced {size} bytes for a file it listed with {}",
                    meta.size
                )),
            ));
        }
        let made = match failure {
            Some(_) => None,
            None => match self
                .open_dir(d)
                .and_then(|dfd| dfd.try_clone_to_owned())
                .and_then(|dfd| {
                    let flags = OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC;
                    let owner = (meta.uid, meta.gid);
                    if resumed {
                        let part = part_name(&name, &meta);
                        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        let fd = self.owners.retry_target(&[owner], &[dfd.as_fd()], || {
                            openat(dfd.as_fd(), &part, flags, Mode::empty()).map_err(Into::into)
                        })?;
                        return Ok((dfd, Tmp(part), fd));
                    }
                    if meta.size >= delta::DELTA_MIN {
                        let part = part_name(&name, &meta);
                        let make = || {
                            openat(dfd.as_fd(), &part, flags, Mode::from_raw_mode(0o600))
                                .map_err(Into::into)
                        };
                        let made = match self.owners.retry_target(&[owner], &[dfd.as_fd()], make) {
                            // Left by an attempt whose basis could not be used (--no-delete).
                            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                                self.discard(dfd.as_fd(), &Tmp(part.clone()));
                                self.owners.retry_target(&[owner], &[dfd.as_fd()], make)
                            }
                            r => r,
                        };
                        if let Ok(fd) = made {
                            return Ok((dfd, Tmp(part), fd));
                        }
                    }
                    let (tmp, fd) = self.make_tmp(&[dfd.as_fd()], owner, |t| {
                        openat(dfd.as_fd(), t, flags, Mode::from_raw_mode(0o600))
                            .map_err(Into::into)
                    })?;
                    Ok((dfd, tmp, fd))
                }) {
                Ok(m) => Some(m),
                Err(e) => {
                    failure = Some(("create", e));
                    None
                }
            },
        };
        // The older version the sender's equal chunks are copied from.
        let basis = match (self.basis_chunk.get(&n).copied(), &made) {
            (Some(chunk), Some((dfd, tmp, _))) => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let from = if resumed { &tmp.0 } else { &name };
                // Its folder: this one, or the same folder of the previous snapshot.
                let in_reference = self.basis_in_reference.contains(&n);
                let ref_dir = in_reference
                    .then(|| self.open_ref_dir(d)?.try_clone_to_owned().ok())
                    .flatten();
                let older_dir = match in_reference {
                    true => ref_dir.as_ref().map(|r| r.as_fd()),
                    false => Some(dfd.as_fd()),
                };
                older_dir
                    .and_then(|o| self.owners.open_in(o, from, flags).ok())
                    .and_then(|fd| Some((stat_fd(&fd).ok()?.size, fd, chunk)))
            }
            _ => None,
        };
        let mut copied_here = 0u64;
        let mut received = 0u64;
        let mut end = 0u64;
        let ended = loop {
            let msg = match conn.recv() {
                Ok(m) => m,
                Err(e) => break Err(e),
            };
            let data = match msg {
                Message::Data { offset, bytes } => Ok((offset, bytes)),
                Message::Compressed {
                    offset,
                    raw_len,
                    bytes,
                } => match expand(&bytes, raw_len) {
                    Some(b) => Ok((offset, b)),
                    None => Err(Message::Compressed {
                        offset,
                        raw_len,
                        bytes: Vec::new(),
                    }),
                },
                other => Err(other),
            };
            match data {
                Ok((_, _)) if failure.is_some() => {}
                Err(Message::Compressed { raw_len, .. }) => {
                    received += u64::from(raw_len);
                    failure.get_or_insert((
                        "receive",
                        io::Error::other(
                            "the sender sent compressed data that does not expand to its \
                             announced length",
                        ),
                    ));
                }
                Ok((offset, bytes)) => {
                    let len = bytes.len() as u64;
                    received += len;
                    if offset < end || offset.checked_add(len).is_none_or(|e| e > size) {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender sent bytes {offset} to {} of a file of {size} \
                                 bytes, overlapping or past its end",
                                offset.saturating_add(len)
                            )),
                        ));
                        continue;
                    }
                    end = offset + len;
                    let (_, _, fd) = made.as_ref().expect("made when no failure");
                    if let Err(e) = write_all_at(fd.as_fd(), &bytes, offset) {
                        failure = Some(("write", e));
                    }
                }
                Err(Message::Same { offset, len }) => {
                    if failure.is_some() {
                        continue;
                    }
                    let fits = basis.as_ref().is_some_and(|(have, _, chunk)| {
                        offset % u64::from(*chunk) == 0
                            && len <= u64::from(*chunk)
                            && offset >= end
                            && offset
                                .checked_add(len)
                                .is_some_and(|e| e <= size && e <= *have)
                    });
                    if !fits {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender said bytes {offset} to {} are unchanged, which the \
                                 older version in the target does not hold as one chunk",
                                offset.saturating_add(len)
                            )),
                        ));
                        continue;
                    }
                    if resumed {
                        // Already there, in the file being completed.
                        end = offset + len;
                        copied_here += len;
                        continue;
                    }
                    let (_, old, _) = basis.as_ref().expect("checked");
                    let (_, _, fd) = made.as_ref().expect("made when no failure");
                    match self
                        .copier
                        .copy_range(old.as_fd(), fd.as_fd(), offset, Some(len))
                    {
                        Ok(n) if n == len => {
                            end = offset + len;
                            copied_here += len;
                        }
                        Ok(_) => {
                            failure = Some((
                                "copy unchanged chunk",
                                io::Error::other("the older version became shorter"),
                            ))
                        }
                        Err(e) => failure = Some(("copy unchanged chunk", e)),
                    }
                }
                Err(Message::FileEnd { data_bytes }) => {
                    if failure.is_none() && data_bytes != received {
                        failure = Some((
                            "receive",
                            io::Error::other(format!(
                                "the sender announced {data_bytes} bytes of data and sent \
                                 {received}"
                            )),
                        ));
                    }
                    break Ok(());
                }
                Err(Message::FileFailed { file, op, error }) if file == n => {
                    if failure.is_none() {
                        failure = Some((
                            "read",
                            io::Error::other(format!("{op} on the sender: {error}")),
                        ));
                    }
                    break Ok(());
                }
                Err(other) => break Err(unexpected("data", &other)),
            }
        };
        if let Err(e) = ended {
            // A partly received large file stays for the next attempt to go on from; a
            // temporary one would stay for good under --no-delete.
            if let Some((dfd, tmp, fd)) = made
                && !tmp.0.to_bytes().starts_with(PART_PREFIX.as_bytes())
            {
                drop(fd);
                self.discard(dfd.as_fd(), &tmp);
            }
            return Err(e);
        }
        let Some((dfd, tmp, fd)) = made else {
            let (op, e) = failure.expect("nothing made means a failure");
            self.fail(&rel, op, e);
            return Ok(());
        };
        if failure.is_none()
            && let Err(e) = ftruncate(&fd, size)
        {
            failure = Some(("truncate", e.into()));
        }
        if let Some((op, e)) = failure {
            drop(fd);
            self.discard(dfd.as_fd(), &tmp);
            self.fail(&rel, op, e);
            return Ok(());
        }
        let have_x = attrs::read_xattrs(Handle::Fd(fd.as_fd())).ok();
        let applied = attrs::apply_new(
            Handle::Fd(fd.as_fd()),
            &meta,
            None,
            &want_x,
            have_x.as_ref(),
            Some(self.owners),
        );
        let ino = stat_fd(&fd).map(|m| m.ino).ok();
        drop(fd);
        if let Err(e) = self.place(dfd.as_fd(), &tmp, &name) {
            self.fail(&rel, "rename", e);
            return Ok(());
        }
        if let Some(f) = self.file_rec_mut(n) {
            f.ino = ino;
        }
        self.stats.copied.fetch_add(1, Relaxed);
        self.stats
            .bytes_copied
            .fetch_add(received + copied_here, Relaxed);
        if let Err(e) = applied {
            self.fail(&rel, e.op, e.err);
        }
        Ok(())
    }

    /// Pass 2, after the content: the extra names of hard-linked files.
    pub(super) fn links(&mut self) {
        for n in std::mem::take(&mut self.links) {
            let rel = self.file_rel(n);
            let f = self.file_rec(n).expect("a link is kept with its group");
            let g = f.group.expect("a link has a group");
            let (d, name, owner) = (
                f.dir.expect("listed"),
                f.name.clone(),
                (f.meta.uid, f.meta.gid),
            );
            let Some((Some(first_ino), Some(first_dir), first_name)) =
                self.file_rec(g).map(|f| (f.ino, f.dir, f.name.clone()))
            else {
                self.fail(
                    &rel,
                    "link",
                    "the first name of this hard-linked file could not be copied",
                );
                continue;
            };
            let r = (|| -> std::result::Result<bool, Failure> {
                let src_dir = self
                    .open_dir(first_dir)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| ("open target directory", e))?;
                let dfd = self
                    .open_dir(d)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| ("open target directory", e))?;
                match self
                    .owners
                    .retry_target(&[], &[dfd.as_fd()], || stat_at(&dfd, &name))
                {
                    Ok(h) if h.ino == first_ino && h.kind == Kind::File => return Ok(false),
                    Ok(_) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(("stat target", e)),
                }
                let (tmp, ()) = self
                    .make_tmp(&[dfd.as_fd(), src_dir.as_fd()], owner, |t| {
                        linkat(&src_dir, &first_name, &dfd, t, AtFlags::empty()).map_err(Into::into)
                    })
                    .map_err(|e| ("link", e))?;
                self.place(dfd.as_fd(), &tmp, &name)
                    .map_err(|e| ("rename", e))?;
                Ok(true)
            })();
            match r {
                Ok(true) => {
                    self.stats.linked.fetch_add(1, Relaxed);
                }
                Ok(false) => {
                    self.stats.unchanged.fetch_add(1, Relaxed);
                }
                Err((op, e)) => self.fail(&rel, op, e),
            }
        }
    }
}

/// Expands a [`Message::Compressed`] frame's data, which must be exactly `raw_len` bytes, at most
/// one chunk: a frame that expands to more is refused before it is written anywhere.
pub(crate) fn expand(bytes: &[u8], raw_len: u32) -> Option<Vec<u8>> {
    if raw_len as usize > crate::frame::DATA_CHUNK {
        return None;
    }
    zstd::bulk::decompress(bytes, raw_len as usize)
        .ok()
        .filter(|b| b.len() == raw_len as usize)
}
