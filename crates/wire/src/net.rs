//! Connecting and listening: TCP, then the TLS handshake within its deadline.
//!
//! A listening side handshakes each connection on a thread of its own, so a peer that connects
//! and stalls (or that fails the handshake) delays no other: a correct peer connecting at the
//! same time is served as soon as it is authenticated.
//!
//! A listening side is normally the TLS server. When both sides listen and a relay connects to
//! each and joins the two connections (`pvc-backup clone --via local`), one of them takes the
//! client's part instead ([`Handshake::Client`]): TLS stays end to end between the two sides.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ServerConfig};

use crate::tls::{self, Stream, Timeouts};
use crate::{Error, Result};

/// Most handshakes in progress at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 64;

/// Connects to `addr` (`HOST:PORT`) and completes the handshake, asking for `server_name`
/// (see [`tls::connect`]), each within `t.handshake`.
pub fn connect(
    addr: &str,
    config: Arc<ClientConfig>,
    t: Timeouts,
    server_name: &str,
) -> Result<(Stream, SocketAddr)> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::net(format!("cannot resolve {addr} (give HOST:PORT)"), e))?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, t.handshake) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tls::connect(tcp, config, t, server_name)?, a));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::net(
        format!("cannot connect to {addr} (is the other side listening there?)"),
        last.unwrap_or_else(|| std::io::Error::other("the name has no address")),
    ))
}

/// The first pause between two attempts to connect again; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest pause between two attempts to connect again.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// As [`connect`], trying again after a network failure (1 s, 2 s, 4 s, ... at most 10 s
/// apart) until `deadline`.
pub fn connect_until(
    addr: &str,
    config: Arc<ClientConfig>,
    t: Timeouts,
    server_name: &str,
    deadline: Instant,
) -> Result<(Stream, SocketAddr)> {
    let mut pause = RETRY_FIRST;
    loop {
        match connect(addr, config.clone(), t, server_name) {
            Err(e @ Error::Net { .. }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                tracing::warn!("{e}; trying again in {} s", pause.min(left).as_secs_f64());
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(RETRY_MAX);
            }
            r => return r,
        }
    }
}

/// Which end of the TLS handshake a listening side takes on the connections it accepts.
#[derive(Clone)]
pub enum Handshake {
    /// The server's, as a listening side usually does: it waits for the peer's ClientHello.
    Server(Arc<ServerConfig>),
    /// The client's: it sends the ClientHello on the connection it accepted. For two listening
    /// sides joined by a relay that connects to both (one of them must start the handshake).
    Client(Arc<ClientConfig>),
}

/// A listening socket that hands out authenticated connections, one at a time.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    ready: Receiver<(Stream, SocketAddr)>,
}

impl std::fmt::Debug for dyn tls::Duplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TLS stream")
    }
}

impl Listener {
    /// Listens on `addr` (`ADDR:PORT`; port 0 picks a free one, see [`Listener::local_addr`]).
    /// Each connection must complete its handshake, as `handshake` says, within `t.handshake`
    /// or is dropped.
    pub fn bind(addr: &str, handshake: Handshake, t: Timeouts) -> Result<Listener> {
        let tcp = TcpListener::bind(addr)
            .map_err(|e| Error::net(format!("cannot listen on {addr}"), e))?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::net(format!("cannot listen on {addr}"), e))?;
        let (tx, ready) = sync_channel(0);
        let busy = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                for conn in tcp.incoming() {
                    let conn = match conn {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors, say: wait rather than spin.
                            tracing::warn!("cannot accept a connection: {e}");
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            continue;
                        }
                    };
                    let peer = match conn.peer_addr() {
                        Ok(p) => p,
                        Err(_) => continue,
                    };
                    if busy.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
                        tracing::warn!(%peer, "too many handshakes in progress; connection closed");
                        continue;
                    }
                    busy.fetch_add(1, Ordering::Relaxed);
                    let (tx, handshake, busy) = (tx.clone(), handshake.clone(), busy.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("handshake".into())
                            .spawn(move || {
                                let _ = conn.set_nodelay(true);
                                let r = match handshake {
                                    Handshake::Server(config) => tls::accept(conn, config, t),
                                    Handshake::Client(config) => {
                                        tls::connect(conn, config, t, tls::SERVER_NAME)
                                    }
                                };
                                busy.fetch_sub(1, Ordering::Relaxed);
                                match r {
                                    Ok(stream) => {
                                        let _ = tx.send((stream, peer));
                                    }
                                    Err(e) => tracing::warn!("connection refused: {e}"),
                                }
                            });
                    if spawned.is_err() {
                        tracing::warn!(%peer, "cannot start a handshake thread; connection closed");
                    }
                }
            })
            .map_err(|e| Error::net("cannot start the listening thread", e))?;
        Ok(Listener { local, ready })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next authenticated connection until `deadline`, when there is one.
    pub fn next_until(&self, deadline: Option<Instant>) -> Result<(Stream, SocketAddr)> {
        let Some(deadline) = deadline else {
            return self.next();
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.ready.recv_timeout(left).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::net(
                "the peer did not connect again in time",
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ),
            RecvTimeoutError::Disconnected => Error::net(
                "the listening socket stopped",
                std::io::Error::other("accept ended"),
            ),
        })
    }

    /// Waits for the next authenticated connection.
    pub fn next(&self) -> Result<(Stream, SocketAddr)> {
        self.ready.recv().map_err(|_| {
            Error::net(
                "the listening socket stopped",
                std::io::Error::other("accept ended"),
            )
        })
    }
}
