//! What the frames carry, and their encoding: a type byte, then fixed-width big-endian numbers
//! and length-prefixed byte strings. Decoding checks every length against what is left of the
//! frame, so a malformed frame is an error, never a read past its end.
//!
//! A transfer, after each side's [`Message::Hello`]:
//!
//! 1. the sender lists the source depth first: [`Message::Root`], then for each directory its
//!    entries in name order, a subdirectory as [`Message::Dir`] followed by its own entries and
//!    [`Message::Up`], every other entry as [`Message::Entry`]; then [`Message::ListEnd`];
//!    files are numbered from 0 in the order they are listed;
//! 2. the receiver answers with the numbers of the files it needs ([`Message::Want`], then
//!    [`Message::WantEnd`]);
//! 3. the sender sends each in that order: [`Message::FileBegin`], [`Message::Data`] (or
//!    [`Message::Compressed`]) for each region of data (holes are not sent), [`Message::FileEnd`]
//!    (or [`Message::FileFailed`]);
//! 4. the receiver ends with [`Message::Done`] and the summary.
//!
//! The listing comes in batches: after every [`crate::send::BATCH_FILES`] files the sender
//! pauses it with [`Message::ListPause`], anywhere in the tree, and steps 2 and 3 run for the
//! files listed since the previous pause before the listing goes on. Neither side then holds
//! more than one batch of files, however many the source has.
//!
//! Either side may end a transfer early with [`Message::Abort`].
//!
//! A block volume (`mover block` over the wire; hello sides 2 and 3) goes otherwise:
//!
//! 1. the sender announces the source: [`Message::BlockBegin`] (size, chunk size);
//! 2. the receiver answers with the BLAKE3 hash of each chunk of its destination, in order, in
//!    [`Message::BlockHashes`] frames (none when the sender said not to compare);
//! 3. the sender sends each chunk whose hash differs, in any order: [`Message::BlockZero`] for
//!    a chunk of zeros, else [`Message::BlockChunk`] followed by [`Message::Data`] (or
//!    [`Message::Compressed`]) frames that cover the chunk exactly, in order, their offsets
//!    counted from the chunk's start;
//!    [`Message::BlockFailed`] for a chunk it could not read; then [`Message::BlockEnd`];
//! 4. with verification, the sender sends the hashes of its source read again
//!    ([`Message::BlockHashes`]); the receiver ends with [`Message::Done`] and the summary.

use std::ffi::CString;

use mover::meta::{Kind, Meta, Ts};
use mover::xattr::Xattrs;

use crate::{Error, Result};

/// The attributes of a source entry, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    /// Entry type.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub perm: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time.
    pub mtime: Ts,
    /// Access time.
    pub atime: Ts,
    /// Device number (device nodes).
    pub rdev: u64,
    /// Number of hard links in the source.
    pub nlink: u32,
    /// Extended attributes (POSIX ACLs among them), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Attrs {
    /// The wire form of a source entry's attributes.
    pub fn from_meta(m: &Meta, x: &Xattrs) -> Attrs {
        Attrs {
            kind: m.kind,
            perm: m.perm,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            mtime: m.mtime,
            atime: m.atime,
            rdev: m.rdev,
            nlink: m.nlink,
            xattrs: x
                .iter()
                .map(|(n, v)| (n.to_bytes().to_vec(), v.to_vec()))
                .collect(),
        }
    }

    /// As the mover's attributes (fields the wire does not carry are zero).
    pub fn meta(&self) -> Meta {
        Meta {
            kind: self.kind,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            blocks: self.size.div_ceil(512),
            mtime: self.mtime,
            ctime: Ts::default(),
            atime: self.atime,
            ino: 0,
            dev: 0,
            nlink: self.nlink,
            rdev: self.rdev,
        }
    }

    /// The extended attributes as the mover's set; a name with a NUL byte or without a
    /// namespace is refused.
    pub fn xattr_set(&self) -> Result<Xattrs> {
        let mut pairs = Vec::with_capacity(self.xattrs.len());
        for (n, v) in &self.xattrs {
            if !n.contains(&b'.') {
                return Err(Error::protocol(format!(
                    "extended attribute name {:?} has no namespace",
                    String::from_utf8_lossy(n)
                )));
            }
            let n = CString::new(n.clone())
                .map_err(|_| Error::protocol("an extended attribute name holds a NUL byte"))?;
            pairs.push((n, v.clone()));
        }
        Ok(Xattrs::from_pairs(pairs))
    }
}

/// One frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message of each side.
    Hello {
        /// [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// 0: sender, 1: receiver.
        side: u8,
        /// From the receiver: compare files of equal size and mtime by content, so send each
        /// file's BLAKE3 hash in its entry.
        checksum: bool,
    },
    /// The source root's own attributes.
    Root(Attrs),
    /// A subdirectory of the current directory; its entries follow, then [`Message::Up`].
    Dir {
        /// Its name (one path component).
        name: Vec<u8>,
        /// Its attributes.
        attrs: Attrs,
    },
    /// The end of the current directory's entries.
    Up,
    /// A non-directory entry of the current directory.
    Entry {
        /// Its name (one path component).
        name: Vec<u8>,
        /// Its attributes.
        attrs: Attrs,
        /// A symlink's target (empty for other kinds).
        target: Vec<u8>,
        /// For a file with several names: the number of the first file listed with the same
        /// inode (its own number for the first).
        group: Option<u64>,
        /// A file's BLAKE3 hash, when the receiver asked for them.
        hash: Option<[u8; 32]>,
    },
    /// An entry of the current directory (or, with an empty name, the directory itself) that
    /// the sender could not read. The receiver keeps what it has under that name.
    Unreadable {
        /// Its name, or empty for the current directory's own listing.
        name: Vec<u8>,
        /// What failed.
        op: String,
        /// What the sender's kernel said.
        error: String,
    },
    /// An entry of the current directory that the sender leaves out (`send --exclude`): the
    /// receiver keeps its own entry of that name, or removes it when `delete` is set
    /// (`--delete-excluded`), as `mover sync` does.
    Excluded {
        /// Its name (one path component).
        name: Vec<u8>,
        /// Remove the receiver's entry of that name.
        delete: bool,
    },
    /// The end of the listing.
    ListEnd,
    /// A pause in the listing: the receiver asks for the files listed since the previous pause
    /// ([`Message::Want`] up to [`Message::WantEnd`]), the sender sends them, then the listing
    /// goes on where it paused.
    ListPause,
    /// Files the receiver needs, by number, in increasing order.
    Want(Vec<u64>),
    /// For a file asked for whose older version the target has: the BLAKE3 hash of each
    /// `chunk` bytes of that version, so that the sender sends only the chunks that differ.
    Basis {
        /// The file's number (one asked for).
        file: u64,
        /// Chunk size in bytes.
        chunk: u32,
        /// The hashes, chunk by chunk from the start (the last chunk may be shorter).
        hashes: Vec<[u8; 32]>,
    },
    /// The end of the receiver's requests.
    WantEnd,
    /// The content of a file follows.
    FileBegin {
        /// Its number.
        file: u64,
        /// Its size, as listed.
        size: u64,
    },
    /// A region of data of the current file.
    Data {
        /// Where it starts in the file.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A region of data of the current file, compressed with zstd (`send --compress`).
    Compressed {
        /// Where it starts in the file.
        offset: u64,
        /// Its length once expanded (at most [`crate::frame::DATA_CHUNK`]).
        raw_len: u32,
        /// The zstd frame.
        bytes: Vec<u8>,
    },
    /// A chunk of the current file equal to the same chunk of the receiver's older version
    /// (see [`Message::Basis`]): the receiver copies it from there.
    Same {
        /// Where it starts (a multiple of the chunk size).
        offset: u64,
        /// Its length (at most one chunk).
        len: u64,
    },
    /// The end of the current file, with how many bytes of data were sent for it.
    FileEnd {
        /// Bytes sent in its [`Message::Data`] frames.
        data_bytes: u64,
    },
    /// A file the sender could not read (instead of its content, or after part of it).
    FileFailed {
        /// Its number.
        file: u64,
        /// What failed.
        op: String,
        /// What the sender's kernel said.
        error: String,
    },
    /// The receiver's summary of the transfer (JSON of a `contract::Summary`).
    Done(Vec<u8>),
    /// Nothing but a sign of life from a side that is busy (see [`crate::frame`]).
    Keepalive,
    /// Block transfer, from the sender: the source volume and how it is cut into chunks.
    BlockBegin {
        /// The source's size in bytes.
        size: u64,
        /// Bytes per chunk (a multiple of 4 KiB).
        chunk_size: u64,
        /// The source is an image file (else a block device).
        source_file: bool,
        /// The receiver hashes its chunks and sends the hashes (else every chunk is sent).
        compare: bool,
        /// After the copy, the sender sends the hashes of its source read again and the
        /// receiver compares them with its destination read again.
        verify: bool,
    },
    /// Block transfer: the BLAKE3 hashes of chunks `first`, `first + 1`, ... of one side. All
    /// zero bytes stand for a chunk that could not be read.
    BlockHashes {
        /// The number of the first chunk.
        first: u64,
        /// The hashes.
        hashes: Vec<[u8; 32]>,
    },
    /// Block transfer: the data of this chunk follows, as [`Message::Data`] or
    /// [`Message::Compressed`] frames covering it exactly, in order, their offsets counted
    /// from the chunk's start.
    BlockChunk {
        /// The chunk's number.
        index: u64,
    },
    /// Block transfer: this chunk of the source is all zeros; zero it without data.
    BlockZero {
        /// The chunk's number.
        index: u64,
    },
    /// Block transfer: the sender could not read this chunk.
    BlockFailed {
        /// The chunk's number.
        index: u64,
        /// What the sender's kernel said.
        error: String,
    },
    /// Block transfer: every differing chunk was sent; what the sender read to find them.
    BlockEnd {
        /// Chunks of the source read.
        chunks_read: u64,
        /// Chunks of the source that were holes of an image file, not read.
        chunks_hole: u64,
        /// Chunks of the source that are all zeros.
        chunks_zero: u64,
        /// Bytes of the source read.
        bytes_read: u64,
    },
    /// The transfer ends early with this exit code.
    Abort {
        /// The mover exit code.
        code: u8,
        /// Why.
        message: String,
    },
}

const HELLO: u8 = 1;
const ROOT: u8 = 2;
const DIR: u8 = 3;
const UP: u8 = 4;
const ENTRY: u8 = 5;
const UNREADABLE: u8 = 6;
const LIST_END: u8 = 7;
const WANT: u8 = 8;
const WANT_END: u8 = 9;
const FILE_BEGIN: u8 = 10;
const DATA: u8 = 11;
const FILE_END: u8 = 12;
const FILE_FAILED: u8 = 13;
const DONE: u8 = 14;
const ABORT: u8 = 15;
const COMPRESSED: u8 = 16;
const KEEPALIVE: u8 = 17;
const BASIS: u8 = 18;
const SAME: u8 = 19;
const EXCLUDED: u8 = 20;
const BLOCK_BEGIN: u8 = 21;
const BLOCK_HASHES: u8 = 22;
const BLOCK_CHUNK: u8 = 23;
const BLOCK_ZERO: u8 = 24;
const BLOCK_FAILED: u8 = 25;
const BLOCK_END: u8 = 26;
const LIST_PAUSE: u8 = 27;

/// Flags of [`Message::BlockBegin`].
const FLAG_FILE: u8 = 1;
const FLAG_COMPARE: u8 = 2;
const FLAG_VERIFY: u8 = 4;

fn put_u32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(o: &mut Vec<u8>, b: &[u8]) {
    put_u32(o, b.len() as u32);
    o.extend_from_slice(b);
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::File => 0,
        Kind::Dir => 1,
        Kind::Symlink => 2,
        Kind::Fifo => 3,
        Kind::CharDevice => 4,
        Kind::BlockDevice => 5,
        Kind::Socket => 6,
    }
}

fn put_attrs(o: &mut Vec<u8>, a: &Attrs) {
    o.push(kind_code(a.kind));
    put_u32(o, a.perm);
    put_u32(o, a.uid);
    put_u32(o, a.gid);
    put_u64(o, a.size);
    put_u64(o, a.mtime.sec as u64);
    put_u32(o, a.mtime.nsec);
    put_u64(o, a.atime.sec as u64);
    put_u32(o, a.atime.nsec);
    put_u64(o, a.rdev);
    put_u32(o, a.nlink);
    put_u32(o, a.xattrs.len() as u32);
    for (n, v) in &a.xattrs {
        put_bytes(o, n);
        put_bytes(o, v);
    }
}

/// Reads fields off a frame, checking each against what is left.
struct Reader<'a>(&'a [u8]);

fn short() -> Error {
    Error::protocol("a frame ends in the middle of a field")
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(short());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn text(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }

    fn ts(&mut self) -> Result<Ts> {
        let sec = self.u64()? as i64;
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err(Error::protocol(format!("a time has {nsec} nanoseconds")));
        }
        Ok(Ts { sec, nsec })
    }

    fn attrs(&mut self) -> Result<Attrs> {
        let kind = match self.u8()? {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::Fifo,
            4 => Kind::CharDevice,
            5 => Kind::BlockDevice,
            6 => Kind::Socket,
            k => return Err(Error::protocol(format!("unknown entry type {k}"))),
        };
        let perm = self.u32()?;
        if perm & !0o7777 != 0 {
            return Err(Error::protocol(format!("mode bits {perm:o} out of range")));
        }
        let (uid, gid, size) = (self.u32()?, self.u32()?, self.u64()?);
        let (mtime, atime) = (self.ts()?, self.ts()?);
        let (rdev, nlink) = (self.u64()?, self.u32()?);
        let count = self.u32()? as usize;
        // Each attribute takes at least 8 bytes, so the count is bounded by the frame.
        if count > self.0.len() / 8 {
            return Err(short());
        }
        let mut xattrs = Vec::with_capacity(count);
        for _ in 0..count {
            xattrs.push((self.bytes()?, self.bytes()?));
        }
        Ok(Attrs {
            kind,
            perm,
            uid,
            gid,
            size,
            mtime,
            atime,
            rdev,
            nlink,
            xattrs,
        })
    }

    /// A count, then that many 32-byte hashes (the count bounded by the frame).
    fn hashes(&mut self) -> Result<Vec<[u8; 32]>> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 32 {
            return Err(short());
        }
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            hashes.push(self.take(32)?.try_into().expect("32 bytes"));
        }
        Ok(hashes)
    }

    fn end(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::protocol("a frame has bytes after its last field"))
        }
    }
}

impl Message {
    /// Appends the encoded message (type byte and payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello {
                version,
                side,
                checksum,
            } => {
                out.push(HELLO);
                put_u32(out, *version);
                out.push(*side);
                out.push(u8::from(*checksum));
            }
            Message::Root(a) => {
                out.push(ROOT);
                put_attrs(out, a);
            }
            Message::Dir { name, attrs } => {
                out.push(DIR);
                put_bytes(out, name);
                put_attrs(out, attrs);
            }
            Message::Up => out.push(UP),
            Message::Entry {
                name,
                attrs,
                target,
                group,
                hash,
            } => {
                out.push(ENTRY);
                put_bytes(out, name);
                put_attrs(out, attrs);
                put_bytes(out, target);
                match group {
                    Some(g) => {
                        out.push(1);
                        put_u64(out, *g);
                    }
                    None => out.push(0),
                }
                match hash {
                    Some(h) => {
                        out.push(1);
                        out.extend_from_slice(h);
                    }
                    None => out.push(0),
                }
            }
            Message::Unreadable { name, op, error } => {
                out.push(UNREADABLE);
                put_bytes(out, name);
                put_bytes(out, op.as_bytes());
                put_bytes(out, error.as_bytes());
            }
            Message::Excluded { name, delete } => {
                out.push(EXCLUDED);
                put_bytes(out, name);
                out.push(u8::from(*delete));
            }
            Message::ListEnd => out.push(LIST_END),
            Message::ListPause => out.push(LIST_PAUSE),
            Message::Want(files) => {
                out.push(WANT);
                put_u32(out, files.len() as u32);
                for f in files {
                    put_u64(out, *f);
                }
            }
            Message::WantEnd => out.push(WANT_END),
            Message::Basis {
                file,
                chunk,
                hashes,
            } => {
                out.push(BASIS);
                put_u64(out, *file);
                put_u32(out, *chunk);
                put_u32(out, hashes.len() as u32);
                for h in hashes {
                    out.extend_from_slice(h);
                }
            }
            Message::Same { offset, len } => {
                out.push(SAME);
                put_u64(out, *offset);
                put_u64(out, *len);
            }
            Message::FileBegin { file, size } => {
                out.push(FILE_BEGIN);
                put_u64(out, *file);
                put_u64(out, *size);
            }
            Message::Data { offset, bytes } => Message::encode_data(*offset, bytes, out),
            Message::Compressed {
                offset,
                raw_len,
                bytes,
            } => {
                out.push(COMPRESSED);
                put_u64(out, *offset);
                put_u32(out, *raw_len);
                put_bytes(out, bytes);
            }
            Message::FileEnd { data_bytes } => {
                out.push(FILE_END);
                put_u64(out, *data_bytes);
            }
            Message::FileFailed { file, op, error } => {
                out.push(FILE_FAILED);
                put_u64(out, *file);
                put_bytes(out, op.as_bytes());
                put_bytes(out, error.as_bytes());
            }
            Message::Keepalive => out.push(KEEPALIVE),
            Message::Done(summary) => {
                out.push(DONE);
                put_bytes(out, summary);
            }
            Message::BlockBegin {
                size,
                chunk_size,
                source_file,
                compare,
                verify,
            } => {
                out.push(BLOCK_BEGIN);
                put_u64(out, *size);
                put_u64(out, *chunk_size);
                let flag = |on: bool, f: u8| if on { f } else { 0 };
                out.push(
                    flag(*source_file, FLAG_FILE)
                        | flag(*compare, FLAG_COMPARE)
                        | flag(*verify, FLAG_VERIFY),
                );
            }
            Message::BlockHashes { first, hashes } => {
                out.push(BLOCK_HASHES);
                put_u64(out, *first);
                put_u32(out, hashes.len() as u32);
                for h in hashes {
                    out.extend_from_slice(h);
                }
            }
            Message::BlockChunk { index } => {
                out.push(BLOCK_CHUNK);
                put_u64(out, *index);
            }
            Message::BlockZero { index } => {
                out.push(BLOCK_ZERO);
                put_u64(out, *index);
            }
            Message::BlockFailed { index, error } => {
                out.push(BLOCK_FAILED);
                put_u64(out, *index);
                put_bytes(out, error.as_bytes());
            }
            Message::BlockEnd {
                chunks_read,
                chunks_hole,
                chunks_zero,
                bytes_read,
            } => {
                out.push(BLOCK_END);
                for n in [chunks_read, chunks_hole, chunks_zero, bytes_read] {
                    put_u64(out, *n);
                }
            }
            Message::Abort { code, message } => {
                out.push(ABORT);
                out.push(*code);
                put_bytes(out, message.as_bytes());
            }
        }
    }

    /// Appends a [`Message::Data`] frame's content without building the message.
    pub fn encode_data(offset: u64, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(DATA);
        put_u64(out, offset);
        put_bytes(out, bytes);
    }

    /// Decodes one frame (type byte and payload).
    pub fn decode(frame: &[u8]) -> Result<Message> {
        let mut r = Reader(frame);
        let msg = match r.u8()? {
            HELLO => Message::Hello {
                version: r.u32()?,
                side: r.u8()?,
                checksum: r.u8()? != 0,
            },
            ROOT => Message::Root(r.attrs()?),
            DIR => Message::Dir {
                name: r.bytes()?,
                attrs: r.attrs()?,
            },
            UP => Message::Up,
            ENTRY => Message::Entry {
                name: r.bytes()?,
                attrs: r.attrs()?,
                target: r.bytes()?,
                group: match r.u8()? {
                    0 => None,
                    _ => Some(r.u64()?),
                },
                hash: match r.u8()? {
                    0 => None,
                    _ => Some(r.take(32)?.try_into().expect("32 bytes")),
                },
            },
            UNREADABLE => Message::Unreadable {
                name: r.bytes()?,
                op: r.text()?,
                error: r.text()?,
            },
            EXCLUDED => Message::Excluded {
                name: r.bytes()?,
                delete: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(Error::protocol("an excluded entry's flag is not 0 or 1")),
                },
            },
            LIST_END => Message::ListEnd,
            LIST_PAUSE => Message::ListPause,
            WANT => {
                let n = r.u32()? as usize;
                if n > r.0.len() / 8 {
                    return Err(short());
                }
                let mut files = Vec::with_capacity(n);
                for _ in 0..n {
                    files.push(r.u64()?);
                }
                Message::Want(files)
            }
            WANT_END => Message::WantEnd,
            BASIS => {
                let (file, chunk) = (r.u64()?, r.u32()?);
                Message::Basis {
                    file,
                    chunk,
                    hashes: r.hashes()?,
                }
            }
            BLOCK_BEGIN => {
                let (size, chunk_size, flags) = (r.u64()?, r.u64()?, r.u8()?);
                if flags & !(FLAG_FILE | FLAG_COMPARE | FLAG_VERIFY) != 0 {
                    return Err(Error::protocol(format!(
                        "unknown block transfer flags {flags:#x}"
                    )));
                }
                Message::BlockBegin {
                    size,
                    chunk_size,
                    source_file: flags & FLAG_FILE != 0,
                    compare: flags & FLAG_COMPARE != 0,
                    verify: flags & FLAG_VERIFY != 0,
                }
            }
            BLOCK_HASHES => Message::BlockHashes {
                first: r.u64()?,
                hashes: r.hashes()?,
            },
            BLOCK_CHUNK => Message::BlockChunk { index: r.u64()? },
            BLOCK_ZERO => Message::BlockZero { index: r.u64()? },
            BLOCK_FAILED => Message::BlockFailed {
                index: r.u64()?,
                error: r.text()?,
            },
            BLOCK_END => Message::BlockEnd {
                chunks_read: r.u64()?,
                chunks_hole: r.u64()?,
                chunks_zero: r.u64()?,
                bytes_read: r.u64()?,
            },
            SAME => Message::Same {
                offset: r.u64()?,
                len: r.u64()?,
            },
            FILE_BEGIN => Message::FileBegin {
                file: r.u64()?,
                size: r.u64()?,
            },
            DATA => Message::Data {
                offset: r.u64()?,
                bytes: r.bytes()?,
            },
            COMPRESSED => Message::Compressed {
                offset: r.u64()?,
                raw_len: r.u32()?,
                bytes: r.bytes()?,
            },
            FILE_END => Message::FileEnd {
                data_bytes: r.u64()?,
            },
            FILE_FAILED => Message::FileFailed {
                file: r.u64()?,
                op: r.text()?,
                error: r.text()?,
            },
            DONE => Message::Done(r.bytes()?),
            KEEPALIVE => Message::Keepalive,
            ABORT => Message::Abort {
                code: r.u8()?,
                message: r.text()?,
            },
            t => return Err(Error::protocol(format!("unknown frame type {t}"))),
        };
        r.end()?;
        Ok(msg)
    }

    /// A short name of the message's type, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Root(_) => "root",
            Message::Dir { .. } => "directory",
            Message::Up => "end of directory",
            Message::Entry { .. } => "entry",
            Message::Unreadable { .. } => "unreadable entry",
            Message::Excluded { .. } => "excluded entry",
            Message::ListEnd => "end of listing",
            Message::ListPause => "pause of the listing",
            Message::Want(_) => "request",
            Message::WantEnd => "end of requests",
            Message::Basis { .. } => "basis",
            Message::Same { .. } => "same chunk",
            Message::FileBegin { .. } => "file start",
            Message::Data { .. } | Message::Compressed { .. } => "data",
            Message::FileEnd { .. } => "file end",
            Message::FileFailed { .. } => "file failure",
            Message::Done(_) => "summary",
            Message::Keepalive => "keepalive",
            Message::BlockBegin { .. } => "block transfer start",
            Message::BlockHashes { .. } => "chunk hashes",
            Message::BlockChunk { .. } => "chunk start",
            Message::BlockZero { .. } => "zero chunk",
            Message::BlockFailed { .. } => "chunk failure",
            Message::BlockEnd { .. } => "block transfer end",
            Message::Abort { .. } => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attrs {
        Attrs {
            kind: Kind::File,
            perm: 0o4755,
            uid: 1001,
            gid: 1002,
            size: 1 << 40,
            mtime: Ts {
                sec: -5,
                nsec: 999_999_999,
            },
            atime: Ts { sec: 7, nsec: 1 },
            rdev: 0,
            nlink: 3,
            xattrs: vec![(b"user.a".to_vec(), b"\0\xff".to_vec())],
        }
    }

    #[test]
    fn every_message_decodes_to_itself() {
        let all = [
            Message::Hello {
                version: 1,
                side: 1,
                checksum: true,
            },
            Message::Root(attrs()),
            Message::Dir {
                name: b"d\xff".to_vec(),
                attrs: attrs(),
            },
            Message::Up,
            Message::Entry {
                name: b"f".to_vec(),
                attrs: attrs(),
                target: b"../x".to_vec(),
                group: Some(4),
                hash: Some([7; 32]),
            },
            Message::Unreadable {
                name: vec![],
                op: "read".into(),
                error: "denied".into(),
            },
            Message::Excluded {
                name: b"cache".to_vec(),
                delete: true,
            },
            Message::ListEnd,
            Message::ListPause,
            Message::Want(vec![0, 5, 9]),
            Message::WantEnd,
            Message::Basis {
                file: 5,
                chunk: 1 << 20,
                hashes: vec![[1; 32], [2; 32]],
            },
            Message::Same {
                offset: 1 << 20,
                len: 77,
            },
            Message::FileBegin { file: 3, size: 10 },
            Message::Data {
                offset: 4,
                bytes: b"abc".to_vec(),
            },
            Message::Compressed {
                offset: 9,
                raw_len: 100,
                bytes: b"zz".to_vec(),
            },
            Message::FileEnd { data_bytes: 3 },
            Message::FileFailed {
                file: 3,
                op: "open".into(),
                error: "gone".into(),
            },
            Message::Done(b"{}".to_vec()),
            Message::Keepalive,
            Message::BlockBegin {
                size: 1 << 40,
                chunk_size: 4 << 20,
                source_file: true,
                compare: false,
                verify: true,
            },
            Message::BlockHashes {
                first: 7,
                hashes: vec![[3; 32], [0; 32]],
            },
            Message::BlockChunk { index: 9 },
            Message::BlockZero { index: u64::MAX },
            Message::BlockFailed {
                index: 2,
                error: "I/O error".into(),
            },
            Message::BlockEnd {
                chunks_read: 1,
                chunks_hole: 2,
                chunks_zero: 3,
                bytes_read: 4,
            },
            Message::Abort {
                code: 254,
                message: "empty".into(),
            },
        ];
        for m in all {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(Message::decode(&out).unwrap(), m);
        }
    }

    #[test]
    fn a_truncated_or_padded_frame_is_refused() {
        let mut out = Vec::new();
        Message::Dir {
            name: b"d".to_vec(),
            attrs: attrs(),
        }
        .encode(&mut out);
        for cut in 1..out.len() {
            assert!(Message::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        out.push(0);
        assert!(Message::decode(&out).is_err());
        // A length that claims more than the frame holds is refused, not allocated.
        let mut lie = vec![DATA];
        put_u64(&mut lie, 0);
        put_u32(&mut lie, u32::MAX);
        assert!(Message::decode(&lie).is_err());
    }
}
