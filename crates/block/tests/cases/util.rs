//! Test support: deterministic data, loop devices that always detach, and the kernel's own view
//! of files and devices (`cmp`, `stat`, `/sys/block`).

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether root-only tests can run; prints why not, and panics under CI=true.
pub fn root_or_skip(test: &str) -> bool {
    testkit::skip::need_root_and(test, &[])
}

/// A deterministic xorshift generator: the same seed gives the same bytes on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Creates a sparse file of `size` bytes and writes `data` at each offset.
pub fn sparse_file(path: &Path, size: u64, parts: &[(u64, Vec<u8>)]) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (off, data) in parts {
        f.write_all_at(data, *off).unwrap();
    }
    f.sync_all().unwrap();
}

/// Writes `data` at `offset` of a file or device and syncs it.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

/// Fills a whole file with random bytes (a destination full of old data).
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let f = File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all_at(&buf[..n], off).unwrap();
        off += n as u64;
    }
    f.sync_all().unwrap();
}

/// `cmp -n LEN A B` succeeds: the first `len` bytes are identical (the tool is independent of
/// the code under test).
pub fn same_bytes(a: &Path, b: &Path, len: u64) -> bool {
    let out = Command::new("cmp")
        .arg("-n")
        .arg(len.to_string())
        .arg(a)
        .arg(b)
        .output()
        .expect("cmp runs (diffutils)");
    if !out.status.success() {
        eprintln!(
            "cmp {} {}: {}",
            a.display(),
            b.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out.status.success()
}

/// Bytes allocated on disk for a file, in the kernel's view (`stat -c '%b %B'`).
pub fn allocated(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-c", "%b %B"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|s| s.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// The size of a file in the kernel's view (`stat -c %s`).
pub fn apparent_size(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-c", "%s"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A loop device over a file, detached when dropped, even when the test fails.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup runs (util-linux)");
        assert!(
            out.status.success(),
            "losetup {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Loop { dev }
    }

    /// Re-reads the backing file's size (`losetup -c`).
    pub fn refresh_size(&self) {
        let st = Command::new("losetup")
            .arg("-c")
            .arg(&self.dev)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Sectors written to the device so far, as the block layer counts them.
    pub fn sectors_written(&self) -> u64 {
        let name = self.dev.file_name().unwrap().to_str().unwrap();
        let stat = std::fs::read_to_string(format!("/sys/block/{name}/stat")).unwrap();
        stat.split_whitespace().nth(6).unwrap().parse().unwrap()
    }

    /// The device size in the kernel's view (`blockdev --getsize64`).
    pub fn size(&self) -> u64 {
        let out = Command::new("blockdev")
            .arg("--getsize64")
            .arg(&self.dev)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Options with a small chunk size so that tests use many chunks on small volumes.
pub fn opts(chunk: u64) -> block::Options {
    block::Options {
        chunk_size: chunk,
        threads: 3,
        ..block::Options::default()
    }
}

/// Runs a copy and returns its summary, panicking on a fatal error.
pub fn copy(src: &Path, dst: &Path, o: &block::Options) -> block::Summary {
    block::run(src, dst, o, &mut |_| {}).unwrap_or_else(|e| panic!("copy failed: {e}"))
}
