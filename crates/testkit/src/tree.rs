//! Builders for file trees, so a test reads like the situation it checks.
//!
//! Paths are bytes relative to the tree's root (`b"dir/name"`), so hostile names (newlines,
//! invalid UTF-8, leading dashes) are written as they are.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tree under construction at `root`.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root folder.
    pub root: PathBuf,
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn check(r: libc::c_int, what: &str, p: &Path) {
    if r != 0 {
        panic!("{what} {p:?}: {}", std::io::Error::last_os_error());
    }
}

impl Tree {
    /// A tree at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        let root = root.into();
        std::fs::create_dir_all(&root).expect("create tree root");
        Tree { root }
    }

    /// The absolute path of `rel`.
    pub fn path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.root.clone();
        }
        self.root.join(OsStr::from_bytes(rel))
    }

    /// A regular file with `content` (parents created).
    pub fn file(&self, rel: &[u8], content: &[u8]) -> &Self {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parents");
        }
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        self
    }

    /// A sparse file of `size` bytes with `data` written at each offset.
    pub fn sparse(&self, rel: &[u8], size: u64, data: &[(u64, &[u8])]) -> &Self {
        use std::os::unix::fs::FileExt;
        let p = self.path(rel);
        let f = std::fs::File::create(&p).expect("create sparse");
        f.set_len(size).expect("set_len");
        for (off, bytes) in data {
            f.write_all_at(bytes, *off).expect("write sparse data");
        }
        self
    }

    /// A directory (parents created).
    pub fn dir(&self, rel: &[u8]) -> &Self {
        std::fs::create_dir_all(self.path(rel)).expect("create dir");
        self
    }

    /// A symlink `rel` pointing at `target` (bytes, not checked).
    pub fn symlink(&self, rel: &[u8], target: &[u8]) -> &Self {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), self.path(rel)).expect("symlink");
        self
    }

    /// A hard link `rel` to the existing `existing`.
    pub fn hardlink(&self, existing: &[u8], rel: &[u8]) -> &Self {
        std::fs::hard_link(self.path(existing), self.path(rel)).expect("hard link");
        self
    }

    /// A named pipe.
    pub fn fifo(&self, rel: &[u8]) -> &Self {
        let p = self.path(rel);
        // SAFETY: valid C string.
        check(
            unsafe { libc::mkfifo(cpath(&p).as_ptr(), 0o644) },
            "mkfifo",
            &p,
        );
        self
    }

    /// A device node (root only).
    pub fn device(&self, rel: &[u8], block: bool, major: u32, minor: u32) -> &Self {
        let p = self.path(rel);
        let kind = if block { libc::S_IFBLK } else { libc::S_IFCHR };
        // SAFETY: valid C string.
        let r = unsafe {
            libc::mknod(
                cpath(&p).as_ptr(),
                kind | 0o640,
                libc::makedev(major, minor),
            )
        };
        check(r, "mknod", &p);
        self
    }

    /// A Unix socket with no listener.
    pub fn socket(&self, rel: &[u8]) -> &Self {
        let p = self.path(rel);
        let l = std::os::unix::net::UnixListener::bind(&p).expect("bind socket");
        drop(l);
        self
    }

    /// Sets all mode bits (setuid, setgid and sticky included).
    pub fn mode(&self, rel: &[u8], mode: u32) -> &Self {
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        self
    }

    /// Sets the numeric owner and group without following a symlink (root only).
    pub fn owner(&self, rel: &[u8], uid: u32, gid: u32) -> &Self {
        std::os::unix::fs::lchown(self.path(rel), Some(uid), Some(gid)).expect("lchown");
        self
    }

    /// Sets an extended attribute without following a symlink.
    pub fn xattr(&self, rel: &[u8], name: &str, value: &[u8]) -> &Self {
        let p = self.path(rel);
        let n = CString::new(name).expect("name");
        // SAFETY: valid pointers and lengths.
        let r = unsafe {
            libc::lsetxattr(
                cpath(&p).as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        check(r, "lsetxattr", &p);
        self
    }

    /// Runs `setfacl ARGS PATH` (e.g. `["-m", "u:1234:rwx"]`).
    pub fn acl(&self, rel: &[u8], args: &[&str]) -> &Self {
        let out = Command::new("setfacl")
            .args(args)
            .arg(self.path(rel))
            .output()
            .expect("setfacl");
        assert!(
            out.status.success(),
            "setfacl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self
    }

    /// Sets mtime (and atime) without following a symlink.
    pub fn mtime(&self, rel: &[u8], sec: i64, nsec: i64) -> &Self {
        let p = self.path(rel);
        let ts = [libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }; 2];
        // SAFETY: valid C string and array of two timespecs.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                cpath(&p).as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(r, "utimensat", &p);
        self
    }

    /// Removes `rel`, whatever it is.
    pub fn remove(&self, rel: &[u8]) -> &Self {
        let p = self.path(rel);
        let m = std::fs::symlink_metadata(&p).expect("lstat before remove");
        if m.is_dir() {
            std::fs::remove_dir_all(&p).expect("remove dir");
        } else {
            std::fs::remove_file(&p).expect("remove file");
        }
        self
    }
}

/// Hostile but valid names: a newline, invalid UTF-8, a leading dash, a backslash, shell
/// metacharacters, a 255-byte name, and ones that look like the mover's temporary files and
/// folders.
pub fn hostile_names() -> Vec<Vec<u8>> {
    vec![
        b"new\nline".to_vec(),
        b"\xff\xfe-not-utf8".to_vec(),
        b"-rf --delete".to_vec(),
        b"back\\slash".to_vec(),
        b"$(touch pwned); `id` *?[]".to_vec(),
        vec![b'n'; 255],
        b".pvcb-tmp.1.1".to_vec(),
        b".pvcb-new.1".to_vec(),
        " spaces and tabs\t".as_bytes().to_vec(),
        "\u{e9}t\u{e9} \u{2603}".as_bytes().to_vec(),
    ]
}

/// Fills `t` with one of everything the mirror must keep. With `root`, also other owners,
/// device nodes, setuid/setgid and `trusted.` attributes. Returns the relative paths of sockets
/// (which are not copied).
pub fn rich_tree(t: &Tree, root: bool) -> Vec<&'static str> {
    t.file(b"plain", b"hello\n")
        .file(b"empty", b"")
        .dir(b"empty-dir")
        .file(b"dir/nested/deep.txt", b"deep")
        .sparse(
            b"sparse.img",
            64 << 20,
            &[
                (0, b"head"),
                (33 << 20, b"middle"),
                ((64 << 20) - 4, b"tail"),
            ],
        )
        .sparse(b"all-hole", 8 << 20, &[])
        .symlink(b"link-rel", b"dir/nested/deep.txt")
        .symlink(b"link-dangling", b"/nonexistent/target")
        .symlink(b"dir/link-abs", b"/etc/passwd")
        .file(b"hard-a", b"linked content")
        .hardlink(b"hard-a", b"dir/hard-b")
        .hardlink(b"hard-a", b"dir/nested/hard-c")
        .fifo(b"pipe")
        .socket(b"sock")
        .xattr(b"plain", "user.comment", b"a value")
        .xattr(b"dir", "user.dir-attr", b"\x00binary\xff")
        .mode(b"plain", 0o640)
        .mode(b"empty-dir", 0o750)
        .mtime(b"plain", 1_600_000_000, 123_456_789)
        .mtime(b"link-rel", 1_500_000_000, 42);
    if crate::skip::have_tool("setfacl") {
        t.acl(b"plain", &["-m", "u:4321:rw,g:765:r"])
            .acl(b"dir", &["-m", "u:4321:rwx", "-d", "-m", "g:765:rx"]);
    }
    for (i, name) in hostile_names().into_iter().enumerate() {
        let mut p = b"hostile/".to_vec();
        p.extend_from_slice(&name);
        t.file(&p, format!("hostile {i}").as_bytes());
        let mut d = b"hostile-dirs/".to_vec();
        d.extend_from_slice(&name);
        t.file(&[d.clone(), b"/inner".to_vec()].concat(), b"inner");
    }
    if root {
        t.file(b"owned/by-1001", b"x")
            .owner(b"owned/by-1001", 1001, 1002)
            .dir(b"owned/dir-2002")
            .owner(b"owned/dir-2002", 2002, 2003)
            .symlink(b"owned/link-3003", b"by-1001")
            .owner(b"owned/link-3003", 3003, 3004)
            .file(b"owned/setuid", b"#!/bin/true\n")
            .owner(b"owned/setuid", 1001, 1002)
            .mode(b"owned/setuid", 0o4755)
            .dir(b"owned/setgid-sticky")
            .owner(b"owned/setgid-sticky", 1001, 500)
            .mode(b"owned/setgid-sticky", 0o3775)
            .file(b"owned/readonly-dir/inside", b"in a 0500 dir")
            .mode(b"owned/readonly-dir", 0o500)
            .device(b"dev-null-copy", false, 1, 3)
            .device(b"dev-loop-like", true, 7, 200)
            .xattr(b"plain", "trusted.secret", b"t")
            .xattr(b"link-rel", "trusted.on-a-link", b"x")
            .xattr(
                b"plain",
                "security.capability",
                &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            );
    }
    vec!["sock"]
}

/// A tree at `root` that only each owner can read in full (root: uses other owners): five
/// owners, 0600 files in 0700 folders nested across owners, setgid folders, files whose group
/// is not their owner's, a hard link and a symlink inside such folders, user xattrs and POSIX
/// ACLs (when setfacl is there) on entries only their owner may read. What a root-squashed mover
/// reaches only by acting as each owner.
pub fn many_owners(root: PathBuf) -> Tree {
    let t = Tree::new(root);
    t.file(b"public.txt", b"anyone")
        .file(b"a/own-a", b"secret of 1001")
        .file(b"a/b/own-b", b"secret of 1002")
        .file(b"a/b/c/own-c", b"secret of 1003")
        .file(b"d/shared-group", b"1004 in group 3000")
        .file(b"d/e/deep", b"1005")
        .file(b"acl/with-acl", b"1001 lets 1002 read")
        .hardlink(b"a/own-a", b"a/own-a-link")
        .symlink(b"a/b/link-to-c", b"c/own-c")
        .owner(b"public.txt", 1001, 1001)
        .owner(b"a", 1001, 1001)
        .owner(b"a/own-a", 1001, 1001)
        .owner(b"a/b", 1002, 1002)
        .owner(b"a/b/own-b", 1002, 1002)
        .owner(b"a/b/link-to-c", 1002, 1002)
        .owner(b"a/b/c", 1003, 1003)
        .owner(b"a/b/c/own-c", 1003, 1003)
        .owner(b"d", 1004, 3000)
        .owner(b"d/shared-group", 1004, 3000)
        .owner(b"d/e", 1005, 3000)
        .owner(b"d/e/deep", 1005, 1005)
        .owner(b"acl", 1001, 1001)
        .owner(b"acl/with-acl", 1001, 1001)
        .mode(b"a", 0o700)
        .mode(b"a/own-a", 0o600)
        .mode(b"a/b", 0o700)
        .mode(b"a/b/own-b", 0o600)
        .mode(b"a/b/c", 0o700)
        .mode(b"a/b/c/own-c", 0o400)
        .mode(b"d", 0o2770)
        .mode(b"d/shared-group", 0o640)
        .mode(b"d/e", 0o2700)
        .mode(b"d/e/deep", 0o600)
        .mode(b"acl", 0o750)
        .mode(b"acl/with-acl", 0o640)
        .xattr(b"a/b/own-b", "user.note", b"only 1002 can read this")
        .xattr(b"d/e", "user.dir", b"on a 2700 dir");
    if crate::skip::have_tool("setfacl") {
        t.acl(b"acl/with-acl", &["-m", "u:1002:r"])
            .acl(b"acl", &["-d", "-m", "u:1002:rx"])
            .acl(b"a/own-a", &["-m", "u:1002:r"]);
    }
    t.owner(b"", 1001, 1001).mode(b"", 0o755);
    t
}
