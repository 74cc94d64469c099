//! Real filesystems for tests: tmpfs mounts and images on loop devices, removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A filesystem kind a test can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// tmpfs (no loop device).
    Tmpfs,
    /// ext4 on a loop device.
    Ext4,
    /// xfs with reflink on a loop device.
    Xfs,
    /// btrfs on a loop device.
    Btrfs,
}

impl Kind {
    /// The name used by `mount -t`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tmpfs => "tmpfs",
            Kind::Ext4 => "ext4",
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
        }
    }

    /// The tool needed to make it.
    pub fn mkfs(self) -> Option<&'static str> {
        match self {
            Kind::Tmpfs => None,
            Kind::Ext4 => Some("mkfs.ext4"),
            Kind::Xfs => Some("mkfs.xfs"),
            Kind::Btrfs => Some("mkfs.btrfs"),
        }
    }
}

/// A mounted filesystem; unmounted (and its loop device detached) on drop.
#[derive(Debug)]
pub struct Mounted {
    /// Where it is mounted.
    pub path: PathBuf,
    loopdev: Option<String>,
    _dir: TempDir,
}

impl Mounted {
    /// Mounts a tmpfs of `size_mib` MiB that holds at most `inodes` inodes. Needs root.
    pub fn tmpfs_with_inodes(size_mib: u64, inodes: u64) -> Result<Mounted, String> {
        Mounted::mount_tmpfs(&format!("size={size_mib}m,nr_inodes={inodes}"))
    }

    fn mount_tmpfs(options: &str) -> Result<Mounted, String> {
        let dir = tempfile::Builder::new()
            .prefix("pvcb-fs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options])
            .arg("tmpfs")
            .arg(&mnt))?;
        Ok(Mounted {
            path: mnt,
            loopdev: None,
            _dir: dir,
        })
    }

    /// Makes and mounts a filesystem of `size_mib` MiB. Needs root.
    pub fn new(kind: Kind, size_mib: u64) -> Result<Mounted, String> {
        if kind == Kind::Tmpfs {
            return Mounted::mount_tmpfs(&format!("size={size_mib}m"));
        }
        let dir = tempfile::Builder::new()
            .prefix("pvcb-fs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let img = dir.path().join("fs.img");
        let f = std::fs::File::create(&img).map_err(|e| e.to_string())?;
        f.set_len(size_mib << 20).map_err(|e| e.to_string())?;
        drop(f);
        let dev = run(Command::new("losetup").args(["--find", "--show"]).arg(&img))?;
        let made = match kind {
            Kind::Ext4 => run(Command::new("mkfs.ext4").args(["-q", "-F", &dev])),
            Kind::Xfs => run(Command::new("mkfs.xfs").args(["-q", "-f", "-m", "reflink=1", &dev])),
            Kind::Btrfs => run(Command::new("mkfs.btrfs").args(["-q", "-f", &dev])),
            Kind::Tmpfs => unreachable!(),
        }
        .and_then(|_| run(Command::new("mount").arg(&dev).arg(&mnt)));
        if let Err(e) = made {
            let _ = run(Command::new("losetup").args(["-d", &dev]));
            return Err(e);
        }
        Ok(Mounted {
            path: mnt,
            loopdev: Some(dev),
            _dir: dir,
        })
    }

    /// A path inside the mount.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg(&self.path));
        if let Some(dev) = &self.loopdev {
            let _ = run(Command::new("losetup").args(["-d", dev]));
        }
    }
}
