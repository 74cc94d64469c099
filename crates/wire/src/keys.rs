//! The two sides' keys: one self-signed certificate and key per side, made together by
//! `pvc-backup mover keys DIR`.
//!
//! Each side reads only its own key and the other side's certificate: the sender needs
//! `sender.key` and `receiver.crt`, the receiver `receiver.key` and `sender.crt`. A certificate
//! is not trusted through any authority: each side compares the certificate its peer presents
//! with the one it was given, byte for byte (see [`crate::tls`]).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// Which end of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that reads the source.
    Sender,
    /// The side that writes the target.
    Receiver,
}

impl Side {
    /// The side's name, as in its files' names and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        }
    }

    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Sender => Side::Receiver,
            Side::Receiver => Side::Sender,
        }
    }

    /// The file of this side's private key in `dir` (`sender.key` or `receiver.key`).
    pub fn key_file(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.key", self.name()))
    }

    /// The file of this side's certificate in `dir` (`sender.crt` or `receiver.crt`).
    pub fn cert_file(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.crt", self.name()))
    }
}

/// What one side needs for a transfer: its own certificate and key, and its peer's certificate.
#[derive(Debug)]
pub struct Identity {
    /// This side.
    pub side: Side,
    /// This side's certificate (DER).
    pub cert: CertificateDer<'static>,
    /// This side's private key (DER).
    pub key: PrivateKeyDer<'static>,
    /// The only certificate the peer may present (DER).
    pub peer: CertificateDer<'static>,
}

/// Makes a fresh pair of self-signed certificates in `dir` (created if missing, mode 0700):
/// `sender.key`, `sender.crt`, `receiver.key`, `receiver.crt`; keys are mode 0600. Refuses
/// when any of the four exists, so that keys in use are never replaced by accident. Returns
/// the files written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = [Side::Sender, Side::Receiver]
        .into_iter()
        .flat_map(|s| [s.key_file(dir), s.cert_file(dir)])
        .collect();
    if let Some(f) = files.iter().find(|f| f.symlink_metadata().is_ok()) {
        return Err(Error::Keys {
            what: "refusing to overwrite",
            path: f.display().to_string(),
            detail: "keys are already there; remove the four files of the old pair first, or \
                     choose another folder"
                .into(),
        });
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Keys {
            what: "cannot create the keys folder",
            path: dir.display().to_string(),
            detail: e.to_string(),
        })?;
    for side in [Side::Sender, Side::Receiver] {
        let name = format!("pvc-backup-{}", side.name());
        let made = rcgen::generate_simple_self_signed(vec![name]).map_err(|e| Error::Keys {
            what: "cannot make a certificate for",
            path: side.cert_file(dir).display().to_string(),
            detail: e.to_string(),
        })?;
        write_new(
            &side.key_file(dir),
            made.signing_key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&side.cert_file(dir), made.cert.pem().as_bytes(), 0o644)?;
    }
    Ok(files)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let fail = |e: std::io::Error| Error::Keys {
        what: "cannot write",
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// Reads what `side` needs from `dir`: its own key and certificate and its peer's certificate.
/// A key readable by others than its owner is refused.
pub fn load(dir: &Path, side: Side) -> Result<Identity> {
    let key_path = side.key_file(dir);
    let bad = |what: &'static str, path: &Path, detail: String| Error::Keys {
        what,
        path: path.display().to_string(),
        detail,
    };
    let meta = fs::metadata(&key_path).map_err(|e| {
        bad(
            "cannot read the key",
            &key_path,
            format!(
                "{e}; make the keys with `pvc-backup mover keys DIR` and give this side its files"
            ),
        )
    })?;
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(
            "refusing a key others may read:",
            &key_path,
            format!(
                "its mode is {:o}; run `chmod 600 {}`",
                meta.permissions().mode() & 0o777,
                key_path.display()
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| bad("cannot read the key", &key_path, e.to_string()))?;
    let cert = read_cert(&side.cert_file(dir))?;
    let peer = read_cert(&side.peer().cert_file(dir))?;
    Ok(Identity {
        side,
        cert,
        key,
        peer,
    })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path).map_err(|e| Error::Keys {
        what: "cannot read the certificate",
        path: path.display().to_string(),
        detail: format!(
            "{e}; make the keys with `pvc-backup mover keys DIR` and give this side its files"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_pair_is_made_once_and_each_side_reads_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("keys");
        let files = generate(&k).unwrap();
        assert_eq!(files.len(), 4);
        for side in [Side::Sender, Side::Receiver] {
            let mode = fs::metadata(side.key_file(&k))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", side.name());
        }
        let s = load(&k, Side::Sender).unwrap();
        let r = load(&k, Side::Receiver).unwrap();
        assert_eq!(s.peer, r.cert);
        assert_eq!(r.peer, s.cert);
        assert_ne!(s.cert, r.cert);
        // A second pair in the same folder is refused, and the first one is kept.
        let before = fs::read(Side::Sender.key_file(&k)).unwrap();
        let e = generate(&k).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(fs::read(Side::Sender.key_file(&k)).unwrap(), before);
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let key = Side::Receiver.key_file(dir.path());
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(dir.path(), Side::Receiver).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        // The other side does not read that key.
        load(dir.path(), Side::Sender).unwrap();
    }

    #[test]
    fn a_missing_file_names_itself_and_the_command_that_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        fs::remove_file(Side::Sender.cert_file(dir.path())).unwrap();
        let e = load(dir.path(), Side::Receiver).unwrap_err().to_string();
        assert!(e.contains("sender.crt") && e.contains("mover keys"), "{e}");
    }
}
