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

/// A fresh pair of self-signed certificates and their keys, in PEM, held in memory: what
/// [`generate`] writes into a folder, and what a caller that hands each side its files some
/// other way (a Kubernetes Secret per side) uses directly.
pub struct Pair {
    sender_key: String,
    sender_cert: String,
    receiver_key: String,
    receiver_cert: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves, even in a debug print.
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

impl Pair {
    /// Makes a new pair: one self-signed certificate and key for each side.
    pub fn generate() -> Result<Pair> {
        let make = |side: Side| {
            let name = format!("pvc-backup-{}", side.name());
            rcgen::generate_simple_self_signed(vec![name]).map_err(|e| Error::Keys {
                what: "cannot make a certificate for the",
                path: side.name().to_owned(),
                detail: e.to_string(),
            })
        };
        let sender = make(Side::Sender)?;
        let receiver = make(Side::Receiver)?;
        Ok(Pair {
            sender_key: sender.signing_key.serialize_pem(),
            sender_cert: sender.cert.pem(),
            receiver_key: receiver.signing_key.serialize_pem(),
            receiver_cert: receiver.cert.pem(),
        })
    }

    fn key(&self, side: Side) -> &str {
        match side {
            Side::Sender => &self.sender_key,
            Side::Receiver => &self.receiver_key,
        }
    }

    fn cert(&self, side: Side) -> &str {
        match side {
            Side::Sender => &self.sender_cert,
            Side::Receiver => &self.receiver_cert,
        }
    }

    /// What `side` needs in its `--keys` folder, as (file name, PEM content): its own key
    /// (`sender.key` or `receiver.key`) and certificate, and its peer's certificate; never the
    /// peer's key.
    pub fn files_for(&self, side: Side) -> Vec<(String, String)> {
        vec![
            (
                file_name(&side.key_file(Path::new(""))),
                self.key(side).to_owned(),
            ),
            (
                file_name(&side.cert_file(Path::new(""))),
                self.cert(side).to_owned(),
            ),
            (
                file_name(&side.peer().cert_file(Path::new(""))),
                self.cert(side.peer()).to_owned(),
            ),
        ]
    }
}

fn file_name(p: &Path) -> String {
    p.display().to_string()
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
    let pair = Pair::generate()?;
    for side in [Side::Sender, Side::Receiver] {
        write_new(&side.key_file(dir), pair.key(side).as_bytes(), 0o600)?;
        write_new(&side.cert_file(dir), pair.cert(side).as_bytes(), 0o644)?;
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
    fn each_side_given_only_its_files_of_a_pair_made_in_memory_loads_them() {
        let pair = Pair::generate().unwrap();
        let mut loaded = Vec::new();
        for side in [Side::Sender, Side::Receiver] {
            let dir = tempfile::tempdir().unwrap();
            let files = pair.files_for(side);
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            let peer_key = format!("{}.key", side.peer().name());
            assert!(!names.contains(&peer_key.as_str()), "{names:?}");
            for (name, pem) in &files {
                write_new(&dir.path().join(name), pem.as_bytes(), 0o600).unwrap();
            }
            loaded.push(load(dir.path(), side).unwrap());
        }
        assert_eq!(loaded[0].peer, loaded[1].cert);
        assert_eq!(loaded[1].peer, loaded[0].cert);
        assert!(!format!("{pair:?}").contains("PRIVATE"));
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
