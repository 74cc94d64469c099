//! What the mover knows about an entry: one `statx` call with only the fields it uses.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, StatxFlags, StatxTimestamp, makedev, statx};

/// The type of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// A Unix domain socket.
    Socket,
}

impl Kind {
    /// The kind for a file type as the kernel reports it.
    pub fn from_file_type(t: FileType) -> Option<Kind> {
        Some(match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Socket => Kind::Socket,
            FileType::Unknown => return None,
        })
    }

    /// The kernel's file type for this kind.
    pub fn file_type(self) -> FileType {
        match self {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
            Kind::Symlink => FileType::Symlink,
            Kind::Fifo => FileType::Fifo,
            Kind::CharDevice => FileType::CharacterDevice,
            Kind::BlockDevice => FileType::BlockDevice,
            Kind::Socket => FileType::Socket,
        }
    }

    /// A short lower-case name, as used in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::CharDevice => "char-device",
            Kind::BlockDevice => "block-device",
            Kind::Socket => "socket",
        }
    }
}

/// A timestamp with nanoseconds (ordered by time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ts {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

impl From<StatxTimestamp> for Ts {
    fn from(t: StatxTimestamp) -> Self {
        Ts {
            sec: t.tv_sec,
            nsec: t.tv_nsec,
        }
    }
}

impl Ts {
    /// The time now.
    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }

    /// This time less the duration `d` (given as a `Ts` with `nsec` below a second).
    pub fn minus(self, d: Ts) -> Ts {
        let mut sec = self.sec.saturating_sub(d.sec);
        let mut nsec = i64::from(self.nsec) - i64::from(d.nsec);
        if nsec < 0 {
            nsec += 1_000_000_000;
            sec = sec.saturating_sub(1);
        }
        Ts {
            sec,
            nsec: nsec as u32,
        }
    }

    /// As a kernel timespec.
    pub fn timespec(self) -> rustix::fs::Timespec {
        rustix::fs::Timespec {
            tv_sec: self.sec,
            tv_nsec: self.nsec.into(),
        }
    }
}

/// The attributes of an entry that the mover compares and copies.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Entry type.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub perm: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Modification time.
    pub mtime: Ts,
    /// Change time: when the inode last changed (content, owner, mode, links, extended
    /// attributes); set by the kernel only, to the current time.
    pub ctime: Ts,
    /// Access time.
    pub atime: Ts,
    /// Inode number.
    pub ino: u64,
    /// Device of the filesystem holding the entry.
    pub dev: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Device number, for device nodes.
    pub rdev: u64,
}

impl Meta {
    /// Whether holes make up part of a regular file (fewer bytes allocated than its size).
    pub fn looks_sparse(&self) -> bool {
        self.kind == Kind::File && self.blocks.saturating_mul(512) < self.size
    }
}

const MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::ATIME)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::BLOCKS);

fn from_statx(st: rustix::fs::Statx) -> io::Result<Meta> {
    let mode = u32::from(st.stx_mode);
    let kind = Kind::from_file_type(FileType::from_raw_mode(mode))
        .ok_or_else(|| io::Error::other("unknown file type"))?;
    Ok(Meta {
        kind,
        perm: mode & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        size: st.stx_size,
        blocks: st.stx_blocks,
        mtime: st.stx_mtime.into(),
        ctime: st.stx_ctime.into(),
        atime: st.stx_atime.into(),
        ino: st.stx_ino,
        dev: makedev(st.stx_dev_major, st.stx_dev_minor),
        nlink: st.stx_nlink,
        rdev: makedev(st.stx_rdev_major, st.stx_rdev_minor),
    })
}

/// Stats `name` in `dir` without following a symlink.
pub fn stat_at(dir: impl AsFd, name: &CStr) -> io::Result<Meta> {
    from_statx(statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, MASK)?)
}

/// Stats an open descriptor.
pub fn stat_fd(fd: impl AsFd) -> io::Result<Meta> {
    from_statx(statx(fd, c"", AtFlags::EMPTY_PATH, MASK)?)
}
