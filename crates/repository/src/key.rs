//! The key file of a repository made by `--init`, with the scrypt settings restic uses.
//!
//! A restic repository's master key is stored encrypted in key files, each under a key derived
//! from a password by scrypt. rustic_core writes its key with scrypt's recommended settings,
//! N = 2^17 and r = 8, for which deriving the key takes 128 MiB. Every run that opens the
//! repository pays that: it was most of a backup's peak memory, and the floor of a mover pod's
//! memory limit. restic tunes its keys to half a second with at most 60 MiB (on the machine of
//! the benchmarks it picked N = 2^15, r = 8, p = 7: 32 MiB). So the key file of a repository
//! made with `--init` is one in restic's format with those settings, which every run then uses. `--init` writes that key file itself and hands rustic_core the master key
//! instead of the password, so that no key with rustic_core's settings is made at all.

use rustic_core::repofile::{KeyFile, MasterKey};
use rustic_core::{BytesList, FileType, Id, WriteBackend};

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::Aead;
use sha2::Digest;

/// scrypt's cost as a power of two: N = 32,768.
pub(crate) const LOG_N: u8 = 15;
/// scrypt's block size.
pub(crate) const R: u32 = 8;
/// scrypt's parallelism (computed one after the other, so it buys time, not memory).
pub(crate) const P: u32 = 7;

/// What can go wrong while the key is replaced.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("{0}")]
    Crypto(String),
    #[error(transparent)]
    Repo(#[from] Box<rustic_core::RusticError>),
}

/// A key file for `master` under `password`: scrypt with [`LOG_N`], [`R`], [`P`] over a fresh
/// 64-byte salt gives 64 bytes (AES-256 key, then Poly1305's k and r), which encrypt the master
/// key's JSON as restic does: a fresh 16-byte nonce, the AES-CTR ciphertext, the MAC.
pub(crate) fn key_file(master: &MasterKey, password: &str) -> Result<KeyFile, KeyError> {
    let crypto = |e: &dyn std::fmt::Display| KeyError::Crypto(e.to_string());
    let mut salt = vec![0u8; 64];
    getrandom::fill(&mut salt).map_err(|e| crypto(&e))?;
    let params = scrypt::Params::new(LOG_N, R, P).map_err(|e| crypto(&e))?;
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived).map_err(|e| crypto(&e))?;
    let cipher = Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&derived));
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| crypto(&e))?;
    let plain = serde_json::to_vec(master).map_err(|e| crypto(&e))?;
    let sealed = cipher
        .encrypt(
            aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&nonce),
            &plain[..],
        )
        .map_err(|e| crypto(&e))?;
    let mut data = nonce.to_vec();
    data.extend_from_slice(&sealed);
    Ok(KeyFile {
        hostname: None,
        username: None,
        created: Some(rustic_core::jiff::Zoned::now()),
        kdf: "scrypt".into(),
        n: 1 << LOG_N,
        r: R,
        p: P,
        data,
        salt,
    })
}

/// Writes a key file from [`key_file`] for `master` under `password` into the repository's
/// storage `be` (whose folders exist), before the repository's config is written: a repository
/// never exists without a key the password opens, and no key with rustic_core's settings, whose
/// derivation alone takes 128 MiB, is ever made.
pub(crate) fn write_key(
    be: &dyn WriteBackend,
    master: &MasterKey,
    password: &str,
) -> Result<(), KeyError> {
    let file = key_file(master, password)?;
    let json = serde_json::to_vec(&file).map_err(|e| KeyError::Crypto(e.to_string()))?;
    // A key file's id is the SHA-256 of its bytes.
    let hex: String = sha2::Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id: Id = hex.parse()?;
    be.write_bytes(FileType::Key, &id, false, BytesList::from(json))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustic_core's own reading of a key file (scrypt, then the MAC check, then the JSON) gives
    /// back the master key under the password, and refuses another password.
    #[test]
    fn rustic_core_reads_the_key_file_back() {
        let master = MasterKey::new();
        let file = key_file(&master, "a password").unwrap();
        assert_eq!((file.n, file.r, file.p), (32_768, 8, 7));
        assert_eq!(file.salt.len(), 64);
        let (encrypt, k, r) = file.key_from_password(&"a password").unwrap().to_keys();
        let json = serde_json::to_value(&master).unwrap();
        let b64 = |v: &serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        assert_eq!(encrypt, b64(&json["encrypt"]));
        assert_eq!(k, b64(&json["mac"]["k"]));
        assert_eq!(r, b64(&json["mac"]["r"]));
        assert!(file.key_from_password(&"another").is_err());
    }
}
