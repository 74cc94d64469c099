//! The trees a fuzzed transfer runs against, all in one folder of the process:
//!
//! - `source`: what the `sender` target lists and sends: every entry type a listing carries,
//!   a hard-linked pair, an extended attribute, and a file large enough (over 4 MiB) to be
//!   sent by chunks against an older version;
//! - `target`: what the `receiver` target receives into, laid out anew before each input: some
//!   entries equal to the source's, an older version of the large file, a partly received copy
//!   of it to go on from, entries the source lacks, a file where the source has a folder, and
//!   symlinks that point outside;
//! - `outside`: a folder beside the target, which no input may change.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mover::meta::{Kind, Ts};
use wire::message::Attrs;

/// The modification time of the source's entries (seconds since 1970).
pub const MTIME: i64 = 1_700_000_000;

/// The size of the large file: over the 4 MiB from which a file is sent by chunks, with a last,
/// short chunk.
pub const BIG: u64 = (4 << 20) + 100;

/// The last bytes of the source's large file; the rest of it is zeros.
const TAIL: &[u8] = b"the end of a large file, the only part that differs from its older version";

/// The large file's name in both trees.
pub const BIG_NAME: &str = "big";

/// Places, and what the source holds.
#[derive(Debug)]
pub struct Scene {
    /// The folder of it all.
    pub root: PathBuf,
    /// The sender's tree.
    pub source: PathBuf,
    /// The receiver's target.
    pub target: PathBuf,
    /// The folder no transfer may touch.
    pub outside: PathBuf,
    /// The number of regular files the source lists (each name of a hard-linked file counts).
    pub source_files: u64,
    /// Their bytes added up.
    pub source_bytes: u64,
    outside_seen: Vec<Seen>,
}

/// What is compared of an entry outside the target before and after an input.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    name: PathBuf,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    entries: Vec<PathBuf>,
    content: Vec<u8>,
}

impl Scene {
    /// The process's scene, made on first use in the temporary folder (`TMPDIR`).
    pub fn get() -> &'static Scene {
        static SCENE: OnceLock<Scene> = OnceLock::new();
        SCENE.get_or_init(|| {
            let root = std::env::temp_dir().join(format!("pvc-backup-fuzz.{}", std::process::id()));
            Scene::new(root)
        })
    }

    /// Makes the source and the outside folder in `root` (created, emptied first).
    pub fn new(root: PathBuf) -> Scene {
        clear(&root);
        std::fs::create_dir_all(&root).expect("make the scene's folder");
        let source = root.join("source");
        let target = root.join("target");
        let outside = root.join("outside");
        std::fs::create_dir(&outside).expect("make the outside folder");
        std::fs::write(outside.join("precious"), b"keep me").expect("write outside");
        make_source(&source);
        let (mut files, mut bytes) = (0, 0);
        walk(&source, &mut |_, m| {
            if m.is_file() {
                files += 1;
                bytes += m.len();
            }
        });
        let mut scene = Scene {
            root,
            source,
            target,
            outside,
            source_files: files,
            source_bytes: bytes,
            outside_seen: Vec::new(),
        };
        scene.outside_seen = scene.look_outside();
        scene
    }

    /// Lays the target out anew (see the module's documentation).
    pub fn reset_target(&self) {
        clear(&self.target);
        make_target(&self.target, &self.outside, self.source_big_mtime());
    }

    /// Removes the target.
    pub fn clear_target(&self) {
        clear(&self.target);
    }

    /// Panics when anything outside the target changed: an entry added or removed, a content,
    /// mode, owner or time changed, an extended attribute set (it changes the change time).
    pub fn assert_outside_untouched(&self) {
        let now = self.look_outside();
        assert_eq!(
            now, self.outside_seen,
            "the receiver changed a folder outside its target"
        );
    }

    /// Panics when the target holds a temporary entry of this process (`.pvcb-tmp.PID.N`) once
    /// a transfer ended: each is renamed into place or removed, whatever the sender did. (A
    /// sender cannot list such a name itself but by chance: it does not know this process id.)
    pub fn assert_no_temporary_left(&self) {
        let prefix = format!(".pvcb-tmp.{}.", std::process::id());
        let mut todo = vec![self.target.clone()];
        while let Some(d) = todo.pop() {
            // A folder the transfer left unreadable (to an ordinary user) is not looked into.
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                assert!(
                    !name.as_bytes().starts_with(prefix.as_bytes()),
                    "a temporary entry was left: {}",
                    e.path().display()
                );
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
        }
    }

    fn look_outside(&self) -> Vec<Seen> {
        let mut seen = Vec::new();
        for p in [self.outside.clone(), self.outside.join("precious")] {
            let m = std::fs::symlink_metadata(&p).expect("stat outside");
            let entries = if m.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                    .expect("list outside")
                    .map(|e| e.expect("list outside").file_name().into())
                    .collect();
                v.sort();
                v
            } else {
                Vec::new()
            };
            let content = if m.is_file() {
                std::fs::read(&p).expect("read outside")
            } else {
                Vec::new()
            };
            seen.push(Seen {
                name: p,
                ino: m.ino(),
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                entries,
                content,
            });
        }
        seen
    }

    fn source_big_mtime(&self) -> Ts {
        let m = std::fs::symlink_metadata(self.source.join(BIG_NAME)).expect("stat big");
        Ts {
            sec: m.mtime(),
            nsec: m.mtime_nsec() as u32,
        }
    }
}

/// Removes `path` and everything below it, when it exists. Folders a transfer left without
/// permissions (mode 0, say) are opened up first, so that an ordinary user can remove them too.
pub fn clear(path: &Path) {
    fn open_up(p: &Path) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        if m.is_dir() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(path);
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", path.display()),
    }
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path, &std::fs::Metadata)) {
    for e in std::fs::read_dir(dir).expect("list") {
        let p = e.expect("list").path();
        let m = std::fs::symlink_metadata(&p).expect("stat");
        f(&p, &m);
        if m.is_dir() {
            walk(&p, f);
        }
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in a scene path")
}

/// Sets an entry's access and modification times, without following a symlink.
fn set_mtime(p: &Path, sec: i64) {
    let t = libc::timespec {
        tv_sec: sec,
        tv_nsec: 250_000_000,
    };
    let times = [t, t];
    // SAFETY: a valid path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c(p).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

fn file(p: &Path, content: &[u8], sec: i64) {
    std::fs::write(p, content).expect("write a scene file");
    set_mtime(p, sec);
}

fn mkdir(p: &Path) {
    std::fs::create_dir(p).expect("make a scene folder");
}

fn symlink(target: &Path, p: &Path, sec: i64) {
    std::os::unix::fs::symlink(target, p).expect("make a scene symlink");
    set_mtime(p, sec);
}

/// The source: see the module's documentation.
fn make_source(s: &Path) {
    mkdir(s);
    file(&s.join("a.txt"), b"hello\n", MTIME);
    // A filesystem without user xattrs just leaves it out.
    let (path, name, value) = (c(&s.join("a.txt")), c(Path::new("user.note")), b"a note");
    // SAFETY: valid C strings and a buffer with its length.
    unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    // Written, not sparse: the sender compares it chunk by chunk against a basis.
    let mut big = vec![0u8; BIG as usize - TAIL.len()];
    big.extend_from_slice(TAIL);
    file(&s.join(BIG_NAME), &big, MTIME + 1);
    mkdir(&s.join("dir"));
    file(&s.join("dir/nested.txt"), b"nested", MTIME);
    symlink(Path::new("../a.txt"), &s.join("dir/link"), MTIME);
    file(&s.join("empty"), b"", MTIME);
    mkdir(&s.join("empty-dir"));
    // SAFETY: a valid path.
    let r = unsafe { libc::mkfifo(c(&s.join("fifo")).as_ptr(), 0o644) };
    assert_eq!(r, 0, "mkfifo");
    set_mtime(&s.join("fifo"), MTIME);
    file(&s.join("hard1"), b"one content, two names", MTIME);
    std::fs::hard_link(s.join("hard1"), s.join("hard2")).expect("link");
    file(&s.join("perm"), b"only its owner reads this", MTIME);
    std::fs::set_permissions(s.join("perm"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    mkdir(&s.join("was-link"));
    file(&s.join("was-link/inside"), b"x", MTIME);
    for d in ["dir", "empty-dir", "was-link", ""] {
        set_mtime(&s.join(d), MTIME + 2);
    }
}

/// The target: see the module's documentation.
fn make_target(t: &Path, outside: &Path, big_mtime: Ts) {
    mkdir(t);
    file(&t.join("a.txt"), b"hello\n", MTIME);
    // The older version of the large file: zeros where the source has zeros, and no tail.
    let big = t.join(BIG_NAME);
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(BIG))
        .expect("older version");
    set_mtime(&big, MTIME - 100);
    // What a transfer cut off after the first MiB of the source's large file left.
    let attrs = Attrs {
        kind: Kind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        size: BIG,
        mtime: big_mtime,
        atime: big_mtime,
        rdev: 0,
        nlink: 1,
        xattrs: Vec::new(),
    };
    let part = wire::receive::part_name(&CString::new(BIG_NAME).expect("no NUL"), &attrs.meta());
    let part = t.join(std::ffi::OsStr::from_bytes(part.to_bytes()));
    std::fs::File::create(&part)
        .and_then(|f| f.set_len(1 << 20))
        .expect("partly received file");
    file(&t.join("old"), b"the source lacks this", MTIME);
    file(
        &t.join("dir"),
        b"a file where the source has a folder",
        MTIME,
    );
    symlink(outside, &t.join("was-link"), MTIME);
    symlink(&outside.join("precious"), &t.join("escape"), MTIME);
}
