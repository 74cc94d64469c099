//! The wire between two movers: `pvc-backup mover send` on the source's side and
//! `pvc-backup mover receive` on the target's side make the target an exact mirror of the source
//! over one TCP connection, as `pvc-backup mover sync SRC DST` does between two local folders.
//!
//! - [`keys`] makes and reads the two sides' self-signed certificates and keys.
//! - [`tls`] sets up TLS 1.3 with mutual authentication, each side pinning the other's exact
//!   certificate, and bounds the time a handshake may take.
//! - [`frame`] reads and writes length-prefixed frames with a maximum size, and [`message`] is
//!   what they carry.
//! - [`send`] walks the source with the mover's listing and owner code and streams it;
//!   [`receive`] compares it with the target, asks only for what differs, and writes through the
//!   mover's attribute code, relative to directory descriptors, every file under a temporary name.
//! - [`net`] connects or listens, and serves transfers one after another.
//! - [`volume`] carries a raw block volume instead of a tree (`mover block` over the wire):
//!   the receiver sends its chunks' hashes, the sender only the chunks that differ.
//!
//! Data flows one way: the sender lists, the receiver compares and asks, the sender sends
//! content, the receiver writes and reports.
//!
//! What each side decodes from the other is fuzzed by the cargo fuzz targets in `fuzz/`
//! (`scripts/fuzz.sh`).

pub mod delta;
mod error;
pub mod frame;
pub mod keys;
pub mod message;
pub mod name;
pub mod net;
pub mod receive;
pub mod send;
pub mod tls;
pub mod volume;

pub use error::{Error, Result};

/// The protocol version both sides must speak; a peer with another one is refused.
pub const PROTOCOL_VERSION: u32 = 3;

/// What each hello side is, for messages.
fn side_name(side: u8) -> &'static str {
    match side {
        0 => "a folder sender (mover send)",
        1 => "a folder receiver (mover receive)",
        2 => "a block volume sender (mover block SRC --to/--listen --send)",
        3 => "a block volume receiver (mover block DST --listen/--from)",
        _ => "an unknown side",
    }
}

/// The error for a peer's hello that is not the one expected: another protocol version, or
/// another kind of peer (a folder sender where a block volume sender was expected, say).
pub(crate) fn hello_mismatch(expected: u8, version: u32, side: u8) -> Error {
    Error::protocol(format!(
        "the peer is {} of protocol {version}; {} of protocol {PROTOCOL_VERSION} was expected          (are both sides the same pvc-backup version, and the same command?)",
        side_name(side),
        side_name(expected)
    ))
}
