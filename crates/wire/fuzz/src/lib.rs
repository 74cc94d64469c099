//! What the fuzz targets of the wire share: an in-memory peer that plays back the bytes
//! libFuzzer makes up, the trees a transfer runs against ([`scene`]), and seed inputs captured
//! from real transfers between the wire's own sender and receiver ([`capture`]).
//!
//! An input of the `receiver` and `sender` targets is one byte of options (see
//! [`ReceiverInput`] and [`SenderInput`]) followed by exactly the bytes the other side would
//! send once TLS is up: frames with their 4-byte length prefixes. The `message` target takes
//! one frame without its prefix.

pub mod capture;
pub mod scene;

use std::io::{self, Read, Write};

use wire::frame::Conn;
use wire::receive::ReceiveOptions;
use wire::send::SendOptions;

/// A peer that sends `bytes`, then closes the connection; what this side sends it is dropped.
struct Replay {
    bytes: Vec<u8>,
    pos: usize,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.bytes[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
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

/// A connection whose peer sends `bytes` and closes.
pub fn replay(bytes: &[u8]) -> Conn {
    Conn::without_keepalives(Box::new(Replay {
        bytes: bytes.to_vec(),
        pos: 0,
    }))
}

/// An input of the `receiver` target: the receiver's options, and what the sender sends.
#[derive(Debug)]
pub struct ReceiverInput<'a> {
    /// Bit 0 of the first byte: `--checksum`; bit 1: `--no-delete`.
    pub opts: ReceiveOptions,
    /// The sender's bytes.
    pub stream: &'a [u8],
}

impl ReceiverInput<'_> {
    /// Splits an input.
    pub fn parse(data: &[u8]) -> ReceiverInput<'_> {
        let (flags, stream) = data.split_first().map_or((0, &[][..]), |(f, s)| (*f, s));
        ReceiverInput {
            opts: ReceiveOptions {
                checksum: flags & 1 != 0,
                no_delete: flags & 2 != 0,
                ..ReceiveOptions::default()
            },
            stream,
        }
    }

    /// The options byte that [`ReceiverInput::parse`] reads back as `opts`.
    pub fn flags(opts: &ReceiveOptions) -> u8 {
        u8::from(opts.checksum) | (u8::from(opts.no_delete) << 1)
    }
}

/// An input of the `sender` target: the sender's options, and what the receiver sends.
#[derive(Debug)]
pub struct SenderInput<'a> {
    /// Bit 0 of the first byte: `--compress`.
    pub opts: SendOptions,
    /// The receiver's bytes.
    pub stream: &'a [u8],
}

impl SenderInput<'_> {
    /// Splits an input.
    pub fn parse(data: &[u8]) -> SenderInput<'_> {
        let (flags, stream) = data.split_first().map_or((0, &[][..]), |(f, s)| (*f, s));
        SenderInput {
            opts: SendOptions {
                compress: flags & 1 != 0,
                ..SendOptions::default()
            },
            stream,
        }
    }

    /// The options byte that [`SenderInput::parse`] reads back as `opts`.
    pub fn flags(opts: &SendOptions) -> u8 {
        u8::from(opts.compress)
    }
}

/// The frames of a recorded stream, without their length prefixes (a cut-off last frame is
/// left out).
pub fn frames(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            break;
        }
        out.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    out
}
