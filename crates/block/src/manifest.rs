//! The manifest of per-chunk BLAKE3 hashes written next to an image-file destination.
//!
//! Format (JSON, one object):
//!
//! ```json
//! {"format": "pvc-backup-block-manifest", "version": 1, "hash": "blake3",
//!  "size": 4294967296, "chunk_size": 4194304,
//!  "chunks": ["af1349b9...", "..."]}
//! ```
//!
//! `chunks[i]` is the BLAKE3 hash (64 lowercase hex digits) of bytes
//! `[i * chunk_size, min((i + 1) * chunk_size, size))` of the image; the last chunk may be
//! shorter. It is written only after a copy without errors, atomically (temporary file, fsync,
//! rename), and removed before the next copy starts writing, so a manifest that exists describes
//! the image as that copy left it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The value of the manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "pvc-backup-block-manifest";

/// Appended to the destination's file name to name its manifest.
pub const MANIFEST_SUFFIX: &str = ".pvcb-manifest.json";

/// Per-chunk BLAKE3 hashes of an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// Hash function, "blake3".
    pub hash: String,
    /// Size of the image in bytes.
    pub size: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Hex BLAKE3 hash of each chunk, in order.
    pub chunks: Vec<String>,
}

/// Where the manifest of image `dst` lives: `DST.pvcb-manifest.json`.
pub fn manifest_path(dst: &Path) -> PathBuf {
    let mut name = dst.as_os_str().to_os_string();
    name.push(MANIFEST_SUFFIX);
    PathBuf::from(name)
}

impl Manifest {
    /// A manifest of the given chunk hashes.
    pub fn new(size: u64, chunk_size: u64, hashes: &[blake3::Hash]) -> Self {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: 1,
            hash: "blake3".into(),
            size,
            chunk_size,
            chunks: hashes.iter().map(|h| h.to_hex().to_string()).collect(),
        }
    }

    /// Reads a manifest, checking its format field.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| Error::io("cannot read manifest", path, e))?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| {
            Error::io(
                "cannot parse manifest",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(Error::io(
                "not a block manifest",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, m.format),
            ));
        }
        Ok(m)
    }

    /// Writes the manifest atomically: a temporary file beside it, fsync, rename.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let fail = |e| Error::io("cannot write manifest", path, e);
        let body = serde_json::to_vec(self).map_err(|e| fail(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&body).map_err(fail)?;
        f.write_all(b"\n").map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

/// Removes a manifest left by an earlier copy; a missing one is fine.
pub(crate) fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove stale manifest", path, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_sits_next_to_the_image_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let path = manifest_path(&img);
        assert_eq!(path, dir.path().join("disk.img.pvcb-manifest.json"));
        let hashes = [blake3::hash(b"a"), blake3::hash(b"b")];
        let m = Manifest::new(8192 + 10, 8192, &hashes);
        m.write(&path).unwrap();
        let back = Manifest::read(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.chunks[1], blake3::hash(b"b").to_hex().to_string());
        remove_stale(&path).unwrap();
        assert!(!path.exists());
        remove_stale(&path).unwrap();
    }
}
