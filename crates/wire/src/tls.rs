//! TLS 1.3 between the two sides, with mutual authentication and pinned certificates.
//!
//! Whichever side listens is the TLS server and whichever connects the TLS client; both present
//! their certificate and both accept exactly one certificate from the other: the one they were
//! given ([`crate::keys::Identity::peer`]), compared byte for byte. No authority, name or date
//! is involved, so a certificate cannot be swapped for another one signed by the same key or
//! issued for the same name. TLS 1.2 and older are not offered; a peer that speaks only them, or
//! no TLS at all, fails the handshake.
//!
//! A handshake has a deadline: a peer that connects and sends nothing, or sends its bytes one at
//! a time, is dropped when it passes (see [`accept`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use crate::keys::Identity;
use crate::{Error, Result};

/// How long a handshake may take by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay silent by default once authenticated (each side sends a
/// keepalive frame when it has sent nothing for a quarter of that, see [`crate::frame::Conn`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The time limits of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The whole handshake, however the peer spreads its bytes.
    pub handshake: Duration,
    /// Silence from the peer once authenticated.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: HANDSHAKE_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// A connection after its handshake: plaintext in, TLS records on the socket.
pub trait Duplex: Read + Write + Send {}

impl<T: Read + Write + Send> Duplex for T {}

/// An authenticated connection.
pub type Stream = Box<dyn Duplex>;

/// Accepts only the one certificate it was given.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            tracing::warn!("refused a peer whose certificate is not the pinned one");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("only TLS 1.3 is accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("only TLS 1.3 is accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pinned(id: &Identity, provider: &CryptoProvider) -> Arc<Pinned> {
    Arc::new(Pinned {
        cert: id.peer.clone(),
        algorithms: provider.signature_verification_algorithms,
    })
}

/// The TLS settings of the listening side.
pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = pinned(id, &provider);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())?;
    Ok(Arc::new(config))
}

/// The TLS settings of the connecting side.
pub fn client_config(id: &Identity) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = pinned(id, &provider);
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())?;
    Ok(Arc::new(config))
}

/// The socket as seen during a handshake: every read and write fails once the deadline passed,
/// however the peer spreads its bytes.
struct Deadlined<'a> {
    tcp: &'a TcpStream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn left(&self) -> io::Result<Duration> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not complete in time",
            )),
        }
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        match self.tcp.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the handshake did not complete in time",
                ))
            }
            r => r,
        }
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn handshake(
    conn: &mut rustls::ConnectionCommon<impl rustls::SideData>,
    tcp: &TcpStream,
    t: Timeouts,
) -> io::Result<()> {
    let mut io = Deadlined {
        tcp,
        deadline: Instant::now() + t.handshake,
    };
    while conn.is_handshaking() {
        conn.complete_io(&mut io)?;
    }
    // Send what the handshake left queued (a server's session tickets) before the deadline ends.
    while conn.wants_write() {
        conn.write_tls(&mut io)?;
    }
    // A write may wait on a peer that is busy (removing a large tree, say) for as long as it
    // is: only silence is limited, and the peer's keepalives break it.
    tcp.set_read_timeout(Some(t.idle))?;
    tcp.set_write_timeout(None)?;
    Ok(())
}

/// Runs the server side of a handshake on an accepted connection within `t.handshake`.
pub fn accept(tcp: TcpStream, config: Arc<ServerConfig>, t: Timeouts) -> Result<Stream> {
    let peer = peer_name(&tcp);
    let mut conn = ServerConnection::new(config)?;
    handshake(&mut conn, &tcp, t)
        .map_err(|e| Error::net(format!("TLS handshake with {peer} failed"), e))?;
    Ok(Box::new(StreamOwned::new(conn, tcp)))
}

/// The name a connecting side asks for in its hello (SNI) unless told another.
pub const SERVER_NAME: &str = "pvc-backup";

/// Checks a name for the hello (SNI): a DNS name, as a router that picks the backend by it
/// expects.
pub fn check_server_name(name: &str) -> Result<()> {
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        _ => Err(Error::Usage(format!(
            "--server-name {name:?} is not a DNS name: give the host name the router serves \
             (the Route's host)"
        ))),
    }
}

/// Runs the client side of a handshake on a connected socket within `t.handshake`, asking for
/// `server_name` in the hello (SNI). The name is not checked (the certificate is pinned), but
/// TLS carries one, and a router with TLS passthrough picks the backend by it.
pub fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    t: Timeouts,
    server_name: &str,
) -> Result<Stream> {
    let peer = peer_name(&tcp);
    check_server_name(server_name)?;
    let name = ServerName::try_from(server_name.to_owned()).expect("checked above");
    let mut conn = ClientConnection::new(config, name)?;
    handshake(&mut conn, &tcp, t).map_err(|e| {
        Error::net(
            format!(
                "TLS handshake with {peer} failed (is it the peer whose certificate this side \
                 was given?)"
            ),
            e,
        )
    })?;
    Ok(Box::new(StreamOwned::new(conn, tcp)))
}

fn peer_name(tcp: &TcpStream) -> String {
    tcp.peer_addr()
        .map_or_else(|_| "the peer".to_string(), |a| a.to_string())
}
