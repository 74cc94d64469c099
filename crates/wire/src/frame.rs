//! Frames: a 4-byte big-endian length, then that many bytes (a type byte and its payload).
//!
//! A frame longer than [`MAX_FRAME`] is refused when its length is read, before any buffer is
//! made for it, so a peer cannot make this side allocate what it announces.
//!
//! A connection may stay silent only so long (its socket's read timeout, set after the
//! handshake, see [`crate::tls::Timeouts`]). Work on one side can take longer than that
//! between two frames (removing a large tree, hashing a large file, a slow source), so each
//! [`Conn`] has a thread that sends a [`Message::Keepalive`] whenever this side has sent nothing
//! for a quarter of the idle timeout and is not in the middle of reading or writing.
//! [`Conn::recv`] skips keepalives.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::message::Message;
use crate::tls::Stream;
use crate::{Error, Result};

/// The largest frame either side accepts (type byte and payload).
pub const MAX_FRAME: usize = 1 << 20;

/// The most file content one frame carries.
pub const DATA_CHUNK: usize = 256 << 10;

/// Written frames are gathered up to this size before they go to TLS.
const OUT_BUFFER: usize = 512 << 10;

/// The stream and what is queued for it, used by one thread at a time.
struct Io {
    stream: Stream,
    out: Vec<u8>,
    last_sent: Instant,
}

impl Io {
    fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).map_err(broken)?;
            self.out.clear();
        }
        self.stream.flush().map_err(broken)?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

/// One side's end of a connection: frames out (buffered until [`Conn::flush`]) and in.
pub struct Conn {
    io: Arc<Mutex<Io>>,
    input: Vec<u8>,
    idle: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

fn broken(e: std::io::Error) -> Error {
    Error::net("the connection broke", e)
}

/// Sends a keepalive when the connection has been quiet for `every` and nobody uses it; ends
/// with the connection.
fn keep_alive(io: Weak<Mutex<Io>>, every: Duration) {
    let mut frame = Vec::with_capacity(8);
    frame.extend_from_slice(&[0; 4]);
    Message::Keepalive.encode(&mut frame);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    loop {
        std::thread::sleep(every / 2);
        let Some(io) = io.upgrade() else { return };
        // Busy (blocked in a read or a write) means the other side is the one to wait on.
        let Ok(mut io) = io.try_lock() else { continue };
        if io.last_sent.elapsed() >= every {
            io.out.extend_from_slice(&frame);
            if io.flush().is_err() {
                return;
            }
        }
    }
}

impl Conn {
    /// Frames over an authenticated stream whose socket reads time out after `idle` (see
    /// [`crate::tls::Timeouts`]); keepalives go out after a quarter of that without a frame.
    pub fn new(stream: Stream, idle: Duration) -> Conn {
        let io = Arc::new(Mutex::new(Io {
            stream,
            out: Vec::with_capacity(OUT_BUFFER + DATA_CHUNK + 64),
            last_sent: Instant::now(),
        }));
        let weak = Arc::downgrade(&io);
        let every = (idle / 4).max(Duration::from_millis(20));
        // Without the thread the connection still works; only long pauses would end it.
        let _ = std::thread::Builder::new()
            .name("keepalive".into())
            .spawn(move || keep_alive(weak, every));
        Conn {
            io,
            input: Vec::new(),
            idle,
        }
    }

    /// Frames over a stream whose peer never gives up on a silent side (an in-memory peer, as
    /// the fuzz targets use): no keepalive thread is started.
    pub fn without_keepalives(stream: Stream) -> Conn {
        Conn {
            io: Arc::new(Mutex::new(Io {
                stream,
                out: Vec::with_capacity(OUT_BUFFER + DATA_CHUNK + 64),
                last_sent: Instant::now(),
            })),
            input: Vec::new(),
            idle: Duration::ZERO,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message; it leaves once enough is queued or at [`Conn::flush`].
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        let mut io = self.lock();
        let start = io.out.len();
        io.out.extend_from_slice(&[0; 4]);
        msg.encode(&mut io.out);
        finish_frame(&mut io, start)
    }

    /// Queues a frame of file content (as [`Message::Data`], without copying it into one).
    pub fn send_data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut io = self.lock();
        let start = io.out.len();
        io.out.extend_from_slice(&[0; 4]);
        Message::encode_data(offset, bytes, &mut io.out);
        finish_frame(&mut io, start)
    }

    /// Writes raw bytes, frames or not, straight to the peer (for tests of a peer's defences).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let mut io = self.lock();
        io.flush()?;
        io.stream.write_all(bytes).map_err(broken)?;
        io.stream.flush().map_err(broken)
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<()> {
        self.lock().flush()
    }

    /// Reads the next message other than a keepalive (sending what is queued first, so that
    /// the peer can answer it).
    pub fn recv(&mut self) -> Result<Message> {
        loop {
            let msg = self.recv_any()?;
            if msg != Message::Keepalive {
                return Ok(msg);
            }
        }
    }

    fn recv_any(&mut self) -> Result<Message> {
        let idle = self.idle;
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        // A peer that stopped (and said why in its last frame) may no longer take what this
        // side has queued: its reason is still worth reading.
        let flushed = io.flush();
        let read_failed = |e: std::io::Error| match e.kind() {
            // A peer killed, or a connection cut: worth trying again (`--retry-for`).
            std::io::ErrorKind::UnexpectedEof => Error::net(
                "the peer closed the connection before the transfer ended",
                e,
            ),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::net(
                format!(
                    "the peer sent nothing for {} s (not even a keepalive); it stopped, or the \
                     network between the two sides did",
                    idle.as_secs_f64()
                ),
                e,
            ),
            _ => broken(e),
        };
        let mut len = [0u8; 4];
        if let Err(e) = io.stream.read_exact(&mut len) {
            flushed?;
            return Err(read_failed(e));
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(Error::protocol(format!(
                "a frame of {len} bytes is announced; frames are 1 to {MAX_FRAME} bytes"
            )));
        }
        self.input.resize(len, 0);
        io.stream.read_exact(&mut self.input).map_err(read_failed)?;
        drop(io);
        Message::decode(&self.input)
    }
}

fn finish_frame(io: &mut Io, start: usize) -> Result<()> {
    let len = io.out.len() - start - 4;
    if len > MAX_FRAME {
        io.out.truncate(start);
        return Err(Error::protocol(format!(
            "a message of {len} bytes is larger than a frame may be ({MAX_FRAME}); a name, \
             symlink target or set of extended attributes this large cannot be sent"
        )));
    }
    io.out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    if io.out.len() >= OUT_BUFFER {
        io.flush()?;
    }
    Ok(())
}

/// A connection that plays recorded frames to the code under test and drops what it sends.
#[cfg(test)]
pub(crate) mod replay {
    use std::io::{self, Read, Write};

    use super::Conn;
    use crate::message::Message;

    struct Replay(io::Cursor<Vec<u8>>);

    impl Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Replay {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `msgs` as the frames a peer sends.
    pub(crate) fn frames(msgs: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut f = Vec::new();
            m.encode(&mut f);
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(&f);
        }
        out
    }

    /// A connection whose peer sends `stream` (see [`frames`]), then closes.
    pub(crate) fn replay(stream: Vec<u8>) -> Conn {
        Conn::without_keepalives(Box::new(Replay(io::Cursor::new(stream))))
    }
}
