//! The server's TLS settings, loaded from PEM files and reloaded when the files change.
//!
//! Certificates managed by cert-manager or a service CA are rotated by rewriting the mounted
//! secret; the server picks the new pair up on its next check, without a restart, and keeps the
//! old pair while the new files are incomplete or do not match.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// The certificate and key files and what was last loaded from them.
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: (Vec<u8>, Vec<u8>),
    last_failed: Option<(Vec<u8>, Vec<u8>)>,
}

/// What a check of the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files are the ones in use.
    Unchanged,
    /// The files changed and make a usable configuration.
    Changed(Arc<ServerConfig>),
    /// The files changed but cannot be used (yet); the old configuration stays.
    Failed(Error),
}

impl TlsFiles {
    /// Loads the pair for the first time.
    pub fn load(cert: &Path, key: &Path) -> Result<(Self, Arc<ServerConfig>)> {
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        let config = server_config(cert, key, &cert_pem, &key_pem)?;
        Ok((
            Self {
                cert: cert.to_owned(),
                key: key.to_owned(),
                loaded: (cert_pem, key_pem),
                last_failed: None,
            },
            config,
        ))
    }

    /// Reads the files again and builds a new configuration if they changed. A pair that
    /// failed is not reported again until the files change once more.
    pub fn check(&mut self) -> Reload {
        let pair = match read_pair(&self.cert, &self.key) {
            Ok(pair) => pair,
            Err(err) => return Reload::Failed(err),
        };
        if pair == self.loaded || self.last_failed.as_ref() == Some(&pair) {
            return Reload::Unchanged;
        }
        match server_config(&self.cert, &self.key, &pair.0, &pair.1) {
            Ok(config) => {
                self.loaded = pair;
                self.last_failed = None;
                Reload::Changed(config)
            }
            Err(err) => {
                self.last_failed = Some(pair);
                Reload::Failed(err)
            }
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let cert_pem = std::fs::read(cert).map_err(|error| Error::TlsRead {
        what: "certificate",
        path: cert.to_owned(),
        error,
    })?;
    let key_pem = std::fs::read(key).map_err(|error| Error::TlsRead {
        what: "key",
        path: key.to_owned(),
        error,
    })?;
    Ok((cert_pem, key_pem))
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1) from a
/// PEM certificate chain and a PEM private key.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>> {
    let invalid = |what: &'static str, path: &Path, why: String| Error::TlsInvalid {
        what,
        path: path.to_owned(),
        why,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", cert_path, format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "certificate",
            cert_path,
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid("key", key_path, format!("no usable PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("certificate", cert_path, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            invalid(
                "key",
                key_path,
                format!(
                    "it does not go with the certificate in {}: {e}",
                    cert_path.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
