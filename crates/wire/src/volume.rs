//! Block volumes over the wire: `mover block SRC --to` on the source's side and
//! `mover block DST --listen` on the target's side copy a raw device or image file as the local
//! `mover block SRC DST` does, sending only the chunks whose BLAKE3 hash differs.
//!
//! The receiver hashes its destination first and sends the hashes; the sender reads its source
//! with several workers, hashes each chunk and sends the chunks that differ, zero chunks as a
//! [`Message::BlockZero`] without bytes. The receiver writes them with the local copy's write
//! path ([`block::remote::Target`]): holes punched in images, write-zeroes on devices, one write
//! spanning the differing 4 KiB blocks. A transfer cut off is resumed by running both sides
//! again: the hashes show what already arrived.
//!
//! The receiver trusts nothing the sender says about where to write: a chunk is named by its
//! number, which must be one of the destination's, once; its data must cover it exactly, from
//! its start and in order; compressed data must expand to exactly what it announces.

use std::path::Path;
use std::time::Instant;

use block::remote::{Source, SourceChunk, Target};
use block::{Reporter, Summary, VolumeKind};
use contract::progress::block::{Phase, Progress};

use crate::frame::{Conn, DATA_CHUNK};
use crate::message::Message;
use crate::receive::expand;
use crate::send::{send_bytes, unexpected};
use crate::{Error, PROTOCOL_VERSION, Result, hello_mismatch};

/// The hello side of a block sender.
pub const SIDE_BLOCK_SENDER: u8 = 2;
/// The hello side of a block receiver.
pub const SIDE_BLOCK_RECEIVER: u8 = 3;

/// Hashes per [`Message::BlockHashes`] frame: 512 KiB of hashes, well inside a frame.
const HASHES_PER_FRAME: usize = 16 << 10;

/// The most chunks a volume may have over the wire: the hashes of 16 Mi chunks take 512 MiB
/// (a 64 TiB volume with 4 MiB chunks). A sender that announces more is refused before the
/// receiver makes room for them.
pub const MAX_CHUNKS: u64 = 1 << 24;

/// Stands for a chunk whose hash is not known (it could not be read) in
/// [`Message::BlockHashes`]; BLAKE3 gives it to no input anyone can find.
const UNKNOWN: [u8; 32] = [0; 32];

/// Settings of the sending side.
#[derive(Debug, Clone)]
pub struct BlockSendOptions {
    /// The copy settings: chunk size, workers, `verify`, `no_compare` (the receiver sends no
    /// hashes and every chunk is sent).
    pub copy: block::Options,
    /// Compress chunk data with zstd on the wire (each piece that shrinks goes compressed).
    pub compress: bool,
}

/// What the sender sent, counted as it goes: the attempts of one run add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockSent {
    /// Chunks whose data was sent.
    pub chunks: u64,
    /// Chunks sent as "zero this range", without data.
    pub zero_chunks: u64,
    /// Bytes of chunk data sent.
    pub bytes: u64,
    /// What that data took on the wire (less than `bytes` when compressed).
    pub wire_bytes: u64,
}

/// Sends the volume at `src` over `conn` (whose handshake is done), adding what it sends to
/// `sent`, and returns the receiver's summary. A refusal on this side (missing or empty source)
/// is told to the receiver too, so both sides end with the same exit code.
pub fn send(
    conn: &mut Conn,
    src: &Path,
    opts: &BlockSendOptions,
    sent: &mut BlockSent,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let source = match Source::open(src, &opts.copy) {
        Ok(s) => s,
        Err(e) => {
            let e = Error::from(e);
            refuse(conn, "sender", &e, true);
            return Err(e);
        }
    };
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        side: SIDE_BLOCK_SENDER,
        checksum: false,
    })?;
    expect_hello(conn, SIDE_BLOCK_RECEIVER)?;
    let compare = !opts.copy.no_compare;
    conn.send(&Message::BlockBegin {
        size: source.size(),
        chunk_size: opts.copy.chunk_size,
        source_file: source.kind() == VolumeKind::File,
        compare,
        verify: opts.copy.verify,
    })?;
    conn.flush()?;
    let theirs = if compare {
        recv_hashes(conn, source.chunks())?
    } else {
        Vec::new()
    };
    let differs = |index: u64, hash: &blake3::Hash| {
        theirs
            .get(index as usize)
            .is_none_or(|h| h == &UNKNOWN || h != hash.as_bytes())
    };
    let mut end = (0u64, 0u64, 0u64, 0u64);
    let mut failed = None;
    let mut reporter = Reporter::new(Phase::Copy, source.chunks(), source.size());
    reporter.emit(progress);
    source.scan(opts.copy.threads, &differs, &mut |event| {
        let Some(c) = event else {
            reporter.maybe_emit(progress);
            return true;
        };
        end.0 += u64::from(c.bytes_read > 0);
        end.1 += u64::from(c.hole);
        end.2 += u64::from(c.zero);
        end.3 += c.bytes_read;
        reporter.advance(c.len);
        reporter.maybe_emit(progress);
        match send_chunk(conn, &c, &differs, opts.compress, sent) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    reporter.emit(progress);
    conn.send(&Message::BlockEnd {
        chunks_read: end.0,
        chunks_hole: end.1,
        chunks_zero: end.2,
        bytes_read: end.3,
    })?;
    conn.flush()?;
    if opts.copy.verify {
        let hashes = source.rehash(opts.copy.threads, progress);
        let wire: Vec<[u8; 32]> = hashes
            .iter()
            .map(|h| h.as_ref().map_or(UNKNOWN, |h| *h.as_bytes()))
            .collect();
        send_hashes(conn, &wire)?;
    }
    match conn.recv()? {
        Message::Done(json) => serde_json::from_slice(&json)
            .map_err(|e| Error::protocol(format!("the receiver's summary does not read: {e}"))),
        other => Err(unexpected("summary", &other)),
    }
}

/// Sends what one chunk needs: nothing when equal, a zero message, its data, or its failure.
fn send_chunk(
    conn: &mut Conn,
    c: &SourceChunk,
    differs: &dyn Fn(u64, &blake3::Hash) -> bool,
    compress: bool,
    sent: &mut BlockSent,
) -> Result<()> {
    if let Some(error) = &c.error {
        return conn.send(&Message::BlockFailed {
            index: c.index,
            error: error.clone(),
        });
    }
    if let Some(data) = &c.data {
        conn.send(&Message::BlockChunk { index: c.index })?;
        // The data frames' offsets count from the chunk's start.
        for (i, piece) in data.chunks(DATA_CHUNK).enumerate() {
            let offset = (i * DATA_CHUNK) as u64;
            sent.wire_bytes += send_bytes(conn, offset, piece, compress)?;
        }
        sent.chunks += 1;
        sent.bytes += data.len() as u64;
    } else if c.zero && c.hash.as_ref().is_some_and(|h| differs(c.index, h)) {
        conn.send(&Message::BlockZero { index: c.index })?;
        sent.zero_chunks += 1;
    }
    Ok(())
}

/// Settings of the receiving side.
#[derive(Debug, Clone)]
pub struct BlockReceiveOptions {
    /// Workers hashing the destination, `manifest` (the chunk size, `verify` and `no_compare`
    /// are the sender's).
    pub copy: block::Options,
}

/// Receives a volume into `dst` from the sender on `conn` (whose handshake is done) and
/// returns the summary, which the sender gets too. `source` names the sender in the summary.
pub fn receive(
    conn: &mut Conn,
    dst: &Path,
    opts: &BlockReceiveOptions,
    source: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let r = receive_inner(conn, dst, opts, source, progress);
    if let Err(e) = &r {
        // A peer that broke the connection is not told; one that broke the protocol or a
        // refusal here is.
        if !matches!(e, Error::Net { .. } | Error::Remote { .. }) {
            refuse(conn, "receiver", e, false);
        }
    }
    r
}

fn receive_inner(
    conn: &mut Conn,
    dst: &Path,
    opts: &BlockReceiveOptions,
    source: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let started = Instant::now();
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        side: SIDE_BLOCK_RECEIVER,
        checksum: false,
    })?;
    expect_hello(conn, SIDE_BLOCK_SENDER)?;
    let (size, chunk_size, source_file, compare, verify) = match conn.recv()? {
        Message::BlockBegin {
            size,
            chunk_size,
            source_file,
            compare,
            verify,
        } => (size, chunk_size, source_file, compare, verify),
        other => return Err(unexpected("block transfer start", &other)),
    };
    let copy = block::Options {
        chunk_size,
        no_compare: !compare,
        verify,
        verify_only: false,
        ..opts.copy.clone()
    };
    if let Err(e) = copy.validate() {
        return Err(Error::protocol(format!("the sender's settings: {e}")));
    }
    if size.div_ceil(chunk_size) > MAX_CHUNKS {
        return Err(Error::protocol(format!(
            "a volume of {size} bytes in chunks of {chunk_size} bytes has more than {MAX_CHUNKS} \
             chunks; give the sender a larger --chunk-size"
        )));
    }
    let mut target = Target::open(dst, Path::new(source), size, &copy)?;
    let kind = if source_file {
        VolumeKind::File
    } else {
        VolumeKind::Device
    };
    let mut summary = target.summary(source, kind);
    target.prepare()?;
    if compare {
        let (hashes, read) = target.hashes(progress);
        summary.bytes_read += read;
        let wire: Vec<[u8; 32]> = hashes
            .iter()
            .map(|h| h.map_or(UNKNOWN, |h| *h.as_bytes()))
            .collect();
        send_hashes(conn, &wire)?;
    }
    let sender = receive_chunks(conn, &mut target, &mut summary, progress)?;
    summary.chunks_done = summary.chunks;
    summary.chunks_read = sender.0;
    summary.chunks_hole = sender.1;
    summary.chunks_zero = sender.2;
    summary.bytes_read += sender.3;
    target.finish(&mut summary)?;
    if verify {
        let chunks = target.chunks();
        target.verify(&mut summary, progress, || {
            let hashes = recv_hashes(conn, chunks)?;
            Ok::<_, Error>(
                hashes
                    .into_iter()
                    .map(|h| {
                        if h == UNKNOWN {
                            Err("the sender could not read this chunk again".to_string())
                        } else {
                            Ok(blake3::Hash::from_bytes(h))
                        }
                    })
                    .collect(),
            )
        })?;
    }
    summary.conclude();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    progress(&summary.done_progress());
    let json = serde_json::to_vec(&summary).expect("a summary serializes");
    conn.send(&Message::Done(json))?;
    conn.flush()?;
    Ok(summary)
}

/// Receives the chunks until [`Message::BlockEnd`], writing each, and returns what the sender
/// says it read: (chunks read, holes, zero chunks, bytes read).
fn receive_chunks(
    conn: &mut Conn,
    target: &mut Target,
    summary: &mut Summary,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(u64, u64, u64, u64)> {
    let chunks = target.chunks();
    let mut seen = vec![false; chunks as usize];
    let mut data = Vec::new();
    let mut handled = 0u64;
    let mut reporter = Reporter::new(Phase::Copy, chunks, summary.size);
    let mut claim = |index: u64, what: &str| -> Result<()> {
        if index >= chunks {
            return Err(Error::protocol(format!(
                "{what} {index} is past the end of the volume ({chunks} chunks)"
            )));
        }
        if std::mem::replace(&mut seen[index as usize], true) {
            return Err(Error::protocol(format!("{what} {index} was sent twice")));
        }
        Ok(())
    };
    loop {
        let (index, result) = match conn.recv()? {
            Message::BlockChunk { index } => {
                claim(index, "chunk")?;
                let (offset, len) = target.chunk_range(index);
                recv_chunk_data(conn, offset, len, &mut data)?;
                let r = target.write_chunk(index, &data).map(|w| {
                    summary.bytes_read += w.read;
                    // A chunk sent whose blocks all turned out equal (its hash was unknown).
                    if !summary.count_written(w.written, w.zeroed) {
                        summary.chunks_equal += 1;
                    }
                });
                (index, r)
            }
            Message::BlockZero { index } => {
                claim(index, "zero chunk")?;
                let r = target.zero_chunk(index).map(|n| {
                    summary.count_written(0, n);
                });
                (index, r)
            }
            Message::BlockFailed { index, error } => {
                claim(index, "failed chunk")?;
                (index, Err(format!("on the sender: {error}")))
            }
            Message::BlockEnd {
                chunks_read,
                chunks_hole,
                chunks_zero,
                bytes_read,
            } => {
                // Every chunk not sent was equal, by the sender's comparison of the hashes.
                summary.chunks_equal += chunks - handled;
                reporter.emit(progress);
                return Ok((chunks_read, chunks_hole, chunks_zero, bytes_read));
            }
            other => return Err(unexpected("chunk", &other)),
        };
        handled += 1;
        let (offset, len) = target.chunk_range(index);
        if let Err(reason) = result {
            summary.errors.push(block::ChunkError {
                phase: "copy",
                offset,
                len: len as u64,
                reason,
            });
        }
        reporter.advance(len as u64);
        reporter.maybe_emit(progress);
    }
}

/// Reads the data frames of one chunk of `len` bytes starting at byte `offset` of the volume
/// into `data`: they must cover it exactly, in order, each at most [`DATA_CHUNK`] bytes.
fn recv_chunk_data(conn: &mut Conn, offset: u64, len: usize, data: &mut Vec<u8>) -> Result<()> {
    data.clear();
    while data.len() < len {
        let at = data.len() as u64;
        let piece = match conn.recv()? {
            Message::Data { offset: o, bytes } if o == at => bytes,
            Message::Compressed {
                offset: o,
                raw_len,
                bytes,
            } if o == at => expand(&bytes, raw_len).ok_or_else(|| {
                Error::protocol(format!(
                    "compressed data at byte {} does not expand to the {raw_len} bytes it \
                     announces (at most {DATA_CHUNK})",
                    offset + at
                ))
            })?,
            Message::Data { offset: o, .. } | Message::Compressed { offset: o, .. } => {
                return Err(Error::protocol(format!(
                    "data for byte {o} of a chunk, where byte {at} was due"
                )));
            }
            other => return Err(unexpected("data", &other)),
        };
        if piece.is_empty() || piece.len() > DATA_CHUNK || data.len() + piece.len() > len {
            return Err(Error::protocol(format!(
                "{} bytes of data at byte {} of a chunk of {len} bytes",
                piece.len(),
                data.len()
            )));
        }
        data.extend_from_slice(&piece);
    }
    Ok(())
}

/// Sends `hashes` (all of one side's chunks, in order) in as many frames as they need.
fn send_hashes(conn: &mut Conn, hashes: &[[u8; 32]]) -> Result<()> {
    for (i, part) in hashes.chunks(HASHES_PER_FRAME).enumerate() {
        conn.send(&Message::BlockHashes {
            first: (i * HASHES_PER_FRAME) as u64,
            hashes: part.to_vec(),
        })?;
    }
    conn.flush()
}

/// Receives the hashes of `chunks` chunks, in order.
fn recv_hashes(conn: &mut Conn, chunks: u64) -> Result<Vec<[u8; 32]>> {
    let mut all = Vec::with_capacity(chunks.min(1 << 20) as usize);
    while (all.len() as u64) < chunks {
        match conn.recv()? {
            Message::BlockHashes { first, hashes }
                if first == all.len() as u64
                    && !hashes.is_empty()
                    && hashes.len() as u64 <= chunks - first =>
            {
                all.extend_from_slice(&hashes);
            }
            Message::BlockHashes { first, hashes } => {
                return Err(Error::protocol(format!(
                    "{} hashes from chunk {first}, where chunk {} of {chunks} was due",
                    hashes.len(),
                    all.len()
                )));
            }
            other => return Err(unexpected("chunk hashes", &other)),
        }
    }
    Ok(all)
}

fn expect_hello(conn: &mut Conn, side: u8) -> Result<()> {
    match conn.recv()? {
        Message::Hello {
            version: PROTOCOL_VERSION,
            side: s,
            ..
        } if s == side => Ok(()),
        Message::Hello {
            version, side: s, ..
        } => Err(hello_mismatch(side, version, s)),
        other => Err(unexpected("hello", &other)),
    }
}

/// Tells the peer why this side stops. Before the hellos (`unread_hello`) the peer's hello is
/// read after, so that closing the connection with it unread does not reset the connection
/// before the peer has read why.
fn refuse(conn: &mut Conn, side: &str, e: &Error, unread_hello: bool) {
    let _ = conn.send(&Message::Abort {
        code: e.exit_code().code(),
        message: format!("the {side} stopped: {e}"),
    });
    let _ = conn.flush();
    if unread_hello {
        let _ = conn.recv();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::replay::{frames, replay};

    const CHUNK: u64 = 64 << 10;

    fn opening(size: u64) -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                side: SIDE_BLOCK_SENDER,
                checksum: false,
            },
            Message::BlockBegin {
                size,
                chunk_size: CHUNK,
                source_file: true,
                compare: true,
                verify: false,
            },
        ]
    }

    /// Plays `stream` to a receiver writing into `dir/dst.img`, a file of 4 chunks of 0x11 bytes,
    /// beside `dir/other` (8 bytes of 0x22).
    fn play(stream: Vec<u8>) -> (tempfile::TempDir, Result<Summary>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dst.img"), vec![0x11; 4 * CHUNK as usize]).unwrap();
        std::fs::write(dir.path().join("other"), [0x22; 8]).unwrap();
        let mut conn = replay(stream);
        let opts = BlockReceiveOptions {
            copy: block::Options {
                threads: 2,
                ..block::Options::default()
            },
        };
        let r = receive(
            &mut conn,
            &dir.path().join("dst.img"),
            &opts,
            "test",
            &mut |_| {},
        );
        (dir, r)
    }

    /// Nothing beside the target changed, and the target kept the size the sender announced.
    fn only_target_touched(dir: &Path) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dst.img", "other"]);
        assert_eq!(std::fs::read(dir.join("other")).unwrap(), [0x22; 8]);
        assert_eq!(
            std::fs::metadata(dir.join("dst.img")).unwrap().len(),
            4 * CHUNK
        );
    }

    fn refused(extra: Vec<Message>, wanted: &str) {
        let mut msgs = opening(4 * CHUNK);
        msgs.extend(extra);
        let (dir, r) = play(frames(&msgs));
        match r {
            Err(Error::Protocol(m)) => assert!(m.contains(wanted), "{m}"),
            other => panic!("not refused as a protocol violation: {other:?}"),
        }
        only_target_touched(dir.path());
    }

    #[test]
    fn a_well_behaved_sender_gets_its_chunks_written_and_a_manifest() {
        let mut msgs = opening(4 * CHUNK);
        msgs.push(Message::BlockChunk { index: 1 });
        for i in 0..(CHUNK as usize / DATA_CHUNK).max(1) {
            let len = DATA_CHUNK.min(CHUNK as usize);
            msgs.push(Message::Data {
                offset: (i * len) as u64,
                bytes: vec![0x33; len],
            });
        }
        msgs.push(Message::BlockZero { index: 3 });
        msgs.push(Message::BlockEnd {
            chunks_read: 4,
            chunks_hole: 0,
            chunks_zero: 1,
            bytes_read: 4 * CHUNK,
        });
        let (dir, r) = play(frames(&msgs));
        let s = r.unwrap();
        assert_eq!(
            (s.chunks_written, s.chunks_zeroed, s.chunks_equal),
            (1, 1, 2)
        );
        assert_eq!(s.exit_code, 0);
        let data = std::fs::read(dir.path().join("dst.img")).unwrap();
        let c = CHUNK as usize;
        assert!(data[..c].iter().all(|&b| b == 0x11));
        assert!(data[c..2 * c].iter().all(|&b| b == 0x33));
        assert!(data[3 * c..].iter().all(|&b| b == 0));
        assert!(dir.path().join("dst.img.pvcb-manifest.json").exists());
    }

    #[test]
    fn a_chunk_past_the_end_is_refused() {
        refused(vec![Message::BlockChunk { index: 4 }], "past the end");
        refused(vec![Message::BlockZero { index: u64::MAX }], "past the end");
        refused(
            vec![Message::BlockFailed {
                index: 9,
                error: String::new(),
            }],
            "past the end",
        );
    }

    #[test]
    fn a_chunk_sent_twice_is_refused() {
        refused(
            vec![
                Message::BlockZero { index: 2 },
                Message::BlockZero { index: 2 },
            ],
            "twice",
        );
    }

    #[test]
    fn data_that_is_not_where_it_is_due_is_refused() {
        // Not at the chunk's start (unaligned).
        refused(
            vec![
                Message::BlockChunk { index: 0 },
                Message::Data {
                    offset: 512,
                    bytes: vec![1; 512],
                },
            ],
            "was due",
        );
        // Past the chunk's end: a length that lies.
        refused(
            vec![
                Message::BlockChunk { index: 0 },
                Message::Data {
                    offset: 0,
                    bytes: vec![1; CHUNK as usize + 4096],
                },
            ],
            "bytes of data",
        );
        // Empty data would never end the chunk.
        refused(
            vec![
                Message::BlockChunk { index: 0 },
                Message::Data {
                    offset: 0,
                    bytes: Vec::new(),
                },
            ],
            "bytes of data",
        );
        // A chunk cut short by the next chunk.
        refused(
            vec![
                Message::BlockChunk { index: 0 },
                Message::Data {
                    offset: 0,
                    bytes: vec![1; 4096],
                },
                Message::BlockChunk { index: 1 },
            ],
            "expected a data message",
        );
    }

    #[test]
    fn compressed_data_that_lies_about_its_length_is_refused() {
        let z = zstd::bulk::compress(&[7u8; 8192], 3).unwrap();
        refused(
            vec![
                Message::BlockChunk { index: 0 },
                Message::Compressed {
                    offset: 0,
                    raw_len: 4096,
                    bytes: z,
                },
            ],
            "does not expand",
        );
    }

    #[test]
    fn bad_settings_and_oversized_frames_are_refused_before_writing() {
        let mut msgs = opening(4 * CHUNK);
        msgs[1] = Message::BlockBegin {
            size: 4 * CHUNK,
            chunk_size: 1000,
            source_file: true,
            compare: true,
            verify: false,
        };
        let (dir, r) = play(frames(&msgs));
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
        only_target_touched(dir.path());
        // A size whose hashes would not fit in memory.
        msgs[1] = Message::BlockBegin {
            size: u64::MAX,
            chunk_size: 4096,
            source_file: true,
            compare: true,
            verify: false,
        };
        let (dir, r) = play(frames(&msgs));
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
        only_target_touched(dir.path());
        let mut stream = frames(&opening(4 * CHUNK));
        stream.extend_from_slice(&(crate::frame::MAX_FRAME as u32 + 1).to_be_bytes());
        let (dir, r) = play(stream);
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
        only_target_touched(dir.path());
    }

    #[test]
    fn a_folder_sender_is_told_it_reached_a_block_receiver() {
        let msgs = [Message::Hello {
            version: PROTOCOL_VERSION,
            side: 0,
            checksum: false,
        }];
        let (_dir, r) = play(frames(&msgs));
        let m = r.unwrap_err().to_string();
        assert!(m.contains("folder sender"), "{m}");
    }
}
