//! A manifest recorded by the workers while they make a tree.

use std::io::{self, BufWriter, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::meta::Ts;

use super::format::{Chunk, Dirs, encode_header, encode_index};
use super::previous::{Previous, PreviousFiles};

/// A manifest written while a tree is being made, by the workers that make it: each adds the
/// entries it placed, in chunks, as it goes. The first error is kept and makes [`finish`] fail,
/// since a manifest that misses an entry would make a good snapshot look damaged.
///
/// [`finish`]: Recorder::finish
#[derive(Debug)]
pub struct Recorder {
    out: Mutex<Option<Out>>,
    previous: Option<Previous>,
    entries: AtomicU64,
    hashed: AtomicU64,
    error: Mutex<Option<io::Error>>,
}

/// The manifest being written, and where each directory's entries went in it.
#[derive(Debug)]
struct Out {
    w: BufWriter<std::fs::File>,
    /// Bytes written so far.
    pos: u64,
    index: Dirs,
}

impl Recorder {
    /// Starts a manifest in `out` for a run that started at `started` (before it read anything
    /// of the source); `previous` is the manifest of the tree the new one shares files with,
    /// whose hashes are reused.
    pub fn new(
        out: std::fs::File,
        started: Ts,
        previous: Option<Previous>,
    ) -> io::Result<Recorder> {
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut header = Vec::new();
        encode_header(&mut header, Some(started));
        w.write_all(&header)?;
        Ok(Recorder {
            out: Mutex::new(Some(Out {
                w,
                pos: header.len() as u64,
                index: Dirs::new(),
            })),
            previous,
            entries: AtomicU64::new(0),
            hashed: AtomicU64::new(0),
            error: Mutex::new(None),
        })
    }

    /// The files the previous manifest lists in the directory `rel` (none without one).
    pub fn previous_files(&self, rel: &[u8]) -> PreviousFiles {
        self.previous
            .as_ref()
            .map(|p| p.files_in(rel))
            .unwrap_or_default()
    }

    /// Counts bytes read to hash content.
    pub fn hashed(&self, bytes: u64) {
        self.hashed.fetch_add(bytes, Relaxed);
    }

    /// Adds a chunk of entries.
    pub fn add(&self, chunk: Chunk) {
        if chunk.entries == 0 {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let written = match out.as_mut() {
            Some(o) => o.w.write_all(&chunk.buf).map(|()| {
                let len = chunk.buf.len() as u64;
                let entries = o.pos + chunk.rel.end as u64..o.pos + len;
                o.pos += len;
                let rel = &chunk.buf[chunk.rel.clone()];
                if !chunk.files {
                    return;
                }
                match o.index.get_mut(rel) {
                    Some(v) => v.push(entries),
                    None => {
                        o.index.insert(rel.to_vec(), vec![entries]);
                    }
                }
            }),
            None => Err(io::Error::other("manifest already finished")),
        };
        drop(out);
        match written {
            Ok(()) => {
                self.entries.fetch_add(chunk.entries, Relaxed);
            }
            Err(e) => self.fail(e),
        }
    }

    /// Records that an entry could not be described: the manifest is not written.
    pub fn fail(&self, e: io::Error) {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    /// Writes out what is buffered and the index, and syncs it. Returns the number of entries
    /// and of bytes hashed, or the first error of any worker.
    pub fn finish(&self) -> io::Result<(u64, u64)> {
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let o = self.out.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Out { mut w, pos, index } =
            o.ok_or_else(|| io::Error::other("manifest already finished"))?;
        w.write_all(&encode_index(&index, pos))?;
        w.flush()?;
        w.get_ref().sync_data()?;
        Ok((self.entries.load(Relaxed), self.hashed.load(Relaxed)))
    }
}
