//! Independent checks that a target mirrors a source: rsync's itemized dry run, and a snapshot of
//! both trees taken through the standard library's `stat` and `read_dir` (a walker and a stat
//! that share no code with the mover).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `rsync -aHAXn --numeric-ids --delete --itemize-changes SRC/ DST/` and returns what it
/// would change (empty when DST mirrors SRC). `/.pvc-backup` and `excludes` are left out, and so
/// are the `trusted.SGI_ACL_*` names through which XFS shows its ACLs (rsync flags even its own
/// copy from tmpfs to XFS without that filter; the ACLs themselves are still compared).
pub fn rsync_itemize(src: &Path, dst: &Path, excludes: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("rsync");
    cmd.args([
        "-aHAXn",
        "--numeric-ids",
        "--delete",
        "--itemize-changes",
        "--exclude=/.pvc-backup",
    ]);
    // Only root sees trusted.* names; as another user this filter makes rsync 3.x report
    // differences in ACLs that getfacl shows to be equal.
    if crate::skip::is_root() {
        cmd.arg("--filter=-x trusted.SGI_ACL_*");
    }
    for e in excludes {
        cmd.arg(format!("--exclude={e}"));
    }
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    let out = cmd.arg(s).arg(d).output().expect("run rsync");
    assert!(
        out.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// One entry as the standard library sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `f`, `d`, `l`, `p`, `c`, `b`, `s`.
    pub kind: char,
    /// `st_mode & 0o7777`.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size (regular files and symlinks).
    pub size: u64,
    /// mtime in nanoseconds (not compared for symlinks where the fs cannot set it).
    pub mtime_ns: i128,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// (dev, ino): used only to group hard links.
    pub inode: (u64, u64),
    /// Number of links.
    pub nlink: u64,
}

/// A whole tree as the standard library sees it, keyed by path relative to the root.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Entries by relative path (bytes).
    pub entries: BTreeMap<Vec<u8>, Seen>,
    root: PathBuf,
}

impl Snapshot {
    /// Walks `root` (not following symlinks), leaving out `.pvc-backup` at the root and any
    /// relative path in `excludes`.
    pub fn take(root: &Path, excludes: &[&str]) -> Snapshot {
        let mut snap = Snapshot {
            entries: BTreeMap::new(),
            root: root.to_path_buf(),
        };
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}")) {
                let e = e.expect("dir entry");
                let r = rel.join(e.file_name());
                let rb = r.as_os_str().as_bytes().to_vec();
                if rb == b".pvc-backup" || excludes.iter().any(|x| x.as_bytes() == rb.as_slice()) {
                    continue;
                }
                let m = std::fs::symlink_metadata(e.path()).expect("lstat");
                let ft = m.file_type();
                let kind = if ft.is_file() {
                    'f'
                } else if ft.is_dir() {
                    stack.push(r.clone());
                    'd'
                } else if ft.is_symlink() {
                    'l'
                } else if ft.is_fifo() {
                    'p'
                } else if ft.is_char_device() {
                    'c'
                } else if ft.is_block_device() {
                    'b'
                } else {
                    's'
                };
                let link = (kind == 'l').then(|| {
                    std::fs::read_link(e.path())
                        .expect("readlink")
                        .into_os_string()
                        .into_vec()
                });
                snap.entries.insert(
                    rb,
                    Seen {
                        kind,
                        perm: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                        size: if kind == 'd' { 0 } else { m.size() },
                        mtime_ns: i128::from(m.mtime()) * 1_000_000_000
                            + i128::from(m.mtime_nsec()),
                        rdev: if kind == 'c' || kind == 'b' {
                            m.rdev()
                        } else {
                            0
                        },
                        link,
                        blocks: m.blocks(),
                        inode: (m.dev(), m.ino()),
                        nlink: m.nlink(),
                    },
                );
            }
        }
        snap
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsString::from_vec(rel.to_vec()))
    }

    /// The hard-link groups: sets of paths sharing an inode (only groups of two or more).
    pub fn link_groups(&self) -> BTreeSet<BTreeSet<Vec<u8>>> {
        let mut by_inode: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
        for (p, s) in &self.entries {
            if s.kind != 'd' {
                by_inode.entry(s.inode).or_default().insert(p.clone());
            }
        }
        by_inode.into_values().filter(|g| g.len() > 1).collect()
    }
}

/// Every difference between a source and its mirror, in words: kinds, modes, owners (when
/// `owners`), sizes, mtimes, device numbers, symlink targets, content, hard-link groups and
/// allocation of sparse files. Sockets in the source are expected to be absent from the target.
pub fn differences(src: &Snapshot, dst: &Snapshot, owners: bool) -> Vec<String> {
    let mut out = Vec::new();
    let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    for (p, s) in &src.entries {
        if s.kind == 's' {
            if dst.entries.contains_key(p) {
                out.push(format!("{}: socket should not be copied", show(p)));
            }
            continue;
        }
        let Some(d) = dst.entries.get(p) else {
            out.push(format!("{}: missing in target", show(p)));
            continue;
        };
        let mut diff = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{}: {what} {a} != {b}", show(p)));
            }
        };
        diff("kind", s.kind.to_string(), d.kind.to_string());
        if s.kind != 'l' {
            diff("mode", format!("{:o}", s.perm), format!("{:o}", d.perm));
        }
        if owners {
            diff(
                "owner",
                format!("{}:{}", s.uid, s.gid),
                format!("{}:{}", d.uid, d.gid),
            );
        }
        if s.kind == 'f' || s.kind == 'l' {
            diff("size", s.size.to_string(), d.size.to_string());
        }
        diff("mtime", s.mtime_ns.to_string(), d.mtime_ns.to_string());
        diff("rdev", s.rdev.to_string(), d.rdev.to_string());
        diff("link", format!("{:?}", s.link), format!("{:?}", d.link));
        if s.kind == 'f' && d.kind == 'f' && s.size == d.size {
            let a = std::fs::read(src.path(p)).expect("read source file");
            let b = std::fs::read(dst.path(p)).expect("read target file");
            if a != b {
                out.push(format!("{}: content differs", show(p)));
            }
            // Holes stay holes: the copy may not allocate more than the source (plus a few
            // blocks of filesystem metadata).
            let sparse = s.blocks * 512 < s.size;
            if sparse && d.blocks > s.blocks + 64 {
                out.push(format!(
                    "{}: sparse file allocates {} blocks in the target, {} in the source",
                    show(p),
                    d.blocks,
                    s.blocks
                ));
            }
        }
    }
    for p in dst.entries.keys() {
        if !src.entries.contains_key(p) {
            out.push(format!("{}: extraneous in target", show(p)));
        }
    }
    if src.link_groups() != dst.link_groups() {
        out.push(format!(
            "hard-link groups differ: source {:?}, target {:?}",
            src.link_groups()
                .iter()
                .map(|g| g.iter().map(|p| show(p)).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            dst.link_groups()
                .iter()
                .map(|g| g.iter().map(|p| show(p)).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ));
    }
    out
}

/// `getfacl -R -n -P -p` of a tree as text blocks by path (`.pvc-backup` left out), or `None`
/// when getfacl is missing.
pub fn acls(root: &Path) -> Option<BTreeMap<String, String>> {
    let out = Command::new("getfacl")
        .args(["-R", "-n", "-P", "-p", "."])
        .current_dir(root)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut map = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(head) = lines.next() else { continue };
        let Some(path) = head.strip_prefix("# file: ") else {
            continue;
        };
        if path == "./.pvc-backup" || path.starts_with("./.pvc-backup/") {
            continue;
        }
        map.insert(path.to_string(), lines.collect::<Vec<_>>().join("\n"));
    }
    Some(map)
}

/// Asserts that `dst` mirrors `src`: rsync sees nothing to do (when present), the snapshots
/// agree, and the ACLs read by getfacl agree. `excludes` are relative paths left out of all
/// three (sockets, for rsync, which would otherwise want to create them).
pub fn assert_mirror(src: &Path, dst: &Path, excludes: &[&str]) {
    if crate::skip::have_tool("rsync") {
        let anchored: Vec<String> = excludes.iter().map(|e| format!("/{e}")).collect();
        let refs: Vec<&str> = anchored.iter().map(String::as_str).collect();
        let lines = rsync_itemize(src, dst, &refs);
        assert!(
            lines.is_empty(),
            "rsync would still change:\n{}",
            lines.join("\n")
        );
    }
    let owners = crate::skip::is_root();
    let s = Snapshot::take(src, excludes);
    let d = Snapshot::take(dst, excludes);
    let diffs = differences(&s, &d, owners);
    assert!(
        diffs.is_empty(),
        "target differs from source:\n{}",
        diffs.join("\n")
    );
    if let (Some(a), Some(b)) = (acls(src), acls(dst)) {
        let a: BTreeMap<_, _> = a
            .into_iter()
            .filter(|(p, _)| b.contains_key(p) || !excludes.iter().any(|e| p.ends_with(e)))
            .collect();
        let b: BTreeMap<_, _> = b.into_iter().filter(|(p, _)| a.contains_key(p)).collect();
        for (p, acl) in &a {
            if let Some(other) = b.get(p) {
                assert_eq!(acl, other, "ACL of {p} differs");
            }
        }
    }
}

/// The snapshots in a backup folder as the kernel lists them (`read_dir` of `DST/snapshots`,
/// partial ones left out), newest first: their names are their UTC times.
pub fn snapshot_names(backup: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(backup.join("snapshots"))
        .unwrap_or_else(|e| panic!("read {}/snapshots: {e}", backup.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.reverse();
    names
}
