//! Frames: a 4-byte big-endian length, then that many bytes (a type byte and its payload).
//!
//! A frame longer than [`MAX_FRAME`] is refused when its length is read, before any buffer is
//! made for it, so a peer cannot make this side allocate what it announces.

use std::io::{Read, Write};

use crate::message::Message;
use crate::tls::Stream;
use crate::{Error, Result};

/// The largest frame either side accepts (type byte and payload).
pub const MAX_FRAME: usize = 1 << 20;

/// The most file content one frame carries.
pub const DATA_CHUNK: usize = 256 << 10;

/// Written frames are gathered up to this size before they go to TLS.
const OUT_BUFFER: usize = 512 << 10;

/// One side's end of a connection: frames out (buffered until [`Conn::flush`]) and in.
pub struct Conn {
    stream: Stream,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

fn broken(e: std::io::Error) -> Error {
    Error::net("the connection broke", e)
}

impl Conn {
    /// Frames over an authenticated stream.
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            out: Vec::with_capacity(OUT_BUFFER + DATA_CHUNK + 64),
            input: Vec::new(),
        }
    }

    /// Queues a message; it leaves once enough is queued or at [`Conn::flush`].
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        msg.encode(&mut self.out);
        self.finish_frame(start)
    }

    /// Queues a frame of file content (as [`Message::Data`], without copying it into one).
    pub fn send_data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        Message::encode_data(offset, bytes, &mut self.out);
        self.finish_frame(start)
    }

    fn finish_frame(&mut self, start: usize) -> Result<()> {
        let len = self.out.len() - start - 4;
        if len > MAX_FRAME {
            self.out.truncate(start);
            return Err(Error::protocol(format!(
                "a message of {len} bytes is larger than a frame may be ({MAX_FRAME}); a name, \
                 symlink target or set of extended attributes this large cannot be sent"
            )));
        }
        self.out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        if self.out.len() >= OUT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes raw bytes, frames or not, straight to the peer (for tests of a peer's defences).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush()?;
        self.stream.write_all(bytes).map_err(broken)?;
        self.stream.flush().map_err(broken)
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).map_err(broken)?;
            self.out.clear();
        }
        self.stream.flush().map_err(broken)
    }

    /// Reads the next message (sending what is queued first, so that the peer can answer it).
    pub fn recv(&mut self) -> Result<Message> {
        // A peer that stopped (and said why in its last frame) may no longer take what this
        // side has queued: its reason is still worth reading.
        let flushed = self.flush();
        let mut len = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut len) {
            flushed?;
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::protocol("the peer closed the connection before the transfer ended")
            } else {
                broken(e)
            });
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(Error::protocol(format!(
                "a frame of {len} bytes is announced; frames are 1 to {MAX_FRAME} bytes"
            )));
        }
        self.input.resize(len, 0);
        self.stream.read_exact(&mut self.input).map_err(broken)?;
        Message::decode(&self.input)
    }
}
