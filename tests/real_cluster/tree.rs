//! The tree the tests seed into a claim, and the listing that judges a copy of it: what
//! `find`, `stat`, `sha256sum` and `readlink` of the tools image print, compared between the
//! source and the target. Nothing of pvc-backup's own code reads the data.

use std::collections::BTreeMap;

/// Where the tree lies inside a claim (the claim's root may hold `lost+found` or the backup's
/// own folders, which are no part of the comparison).
pub const TREE: &str = "tree";

/// Writes the tree at `/data/tree`: three owners, several modes, a hard link, a symlink owned
/// by another user, a sparse file, content of known checksums, and fixed times.
pub const SEED: &str = r#"set -e
mkdir -p /data/tree && cd /data/tree
mkdir -p owned/deep shared
printf 'alpha\n' > a.txt
yes pvc-backup-real-cluster | head -c 3000000 > big.txt
printf 'owned by 1000\n' > owned/b.txt
printf 'owned by 2000\n' > owned/deep/c.txt
ln owned/b.txt shared/b-hardlink
ln -s ../a.txt shared/a-symlink
truncate -s 8388608 sparse.img
printf data | dd of=sparse.img bs=1 seek=1048576 conv=notrunc 2>/dev/null
chown 1000:1000 owned/b.txt
chmod 600 owned/b.txt
chown 2000:3000 owned/deep/c.txt
chmod 640 owned/deep/c.txt
chmod 604 big.txt
chown 1000:2000 owned owned/deep
chmod 750 owned
chmod 711 owned/deep
chown -h 1000:1000 shared/a-symlink
touch -d '2021-03-04 05:06:07' a.txt big.txt owned/b.txt owned/deep/c.txt sparse.img
touch -d '2022-01-02 03:04:05' owned/deep owned shared .
sync
"#;

/// Changes the seeded tree everywhere a restore must undo: a file gone, one rewritten, one
/// added, an owner and a mode changed.
pub const DAMAGE: &str = r#"set -e
cd /data/tree
rm a.txt
printf 'changed\n' > big.txt
printf 'extra\n' > extra.txt
chown 0:0 owned/b.txt
chmod 777 owned
sync
"#;

/// Lists the tree at `/data/$ROOT`: one `S` line per entry (inode, owner, group, mode, links,
/// size, mtime, path, type), one checksum line per file, one `L` line per symlink, and the
/// sparse file's allocation.
pub const LIST: &str = r#"set -e
cd "/data/$ROOT"
find . -exec stat -c 'S %i %u %g %a %h %s %Y %n %F' {} +
find . -type f -exec sha256sum {} +
find . -type l -exec sh -c 'for l; do echo "L $l $(readlink "$l")"; done' sh {} +
stat -c 'B %b %B' ./sparse.img
echo END
"#;

/// Known checksums of the seeded files (`sha256sum` of the same content made by hand).
pub const KNOWN: &[(&str, &str)] = &[
    (
        "./a.txt",
        "b6a98d9ce9a2d9149288fa3df42d377c3e42737afdcdaf714e33c0a100b51060",
    ),
    (
        "./big.txt",
        "935621f344bb168350719f006a509b94695350e7ce7eadcfc8bc98e5310757ef",
    ),
    (
        "./owned/b.txt",
        "d38b5bfb975c3b32267886402e0c3e507c3b77fb7b62af20ec78e14d7b19fa85",
    ),
    (
        "./owned/deep/c.txt",
        "1987297b668901ee9fc55a41ec2f034888d37b857a59f1811daca761bb0505f2",
    ),
    (
        "./sparse.img",
        "4b90b8e8f3c62587fd481a1e8bdabcf55df7d93954b3fa21dbd2842958647a2f",
    ),
];

/// A tree as the tools image sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Path to `owner group mode links size mtime type`, with a hard link's partner named
    /// instead of its inode number; links and size are left out for folders, whose values
    /// belong to the filesystem, not to the tree.
    pub entries: BTreeMap<String, String>,
    /// Path to SHA-256 of each regular file.
    pub sums: BTreeMap<String, String>,
    /// Symlink path to its target.
    pub links: BTreeMap<String, String>,
    /// Bytes allocated to `sparse.img` (not compared: it depends on the filesystem).
    pub sparse_allocated: u64,
}

impl Listing {
    /// Parses the output of [`LIST`]; panics with the text when it is not complete.
    pub fn parse(text: &str) -> Listing {
        assert!(
            text.lines().any(|l| l == "END"),
            "the listing pod did not finish its listing:\n{text}"
        );
        let mut raw = Vec::new();
        let mut sums = BTreeMap::new();
        let mut links = BTreeMap::new();
        let mut sparse_allocated = None;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [
                    "S",
                    inode,
                    uid,
                    gid,
                    mode,
                    nlink,
                    size,
                    mtime,
                    path,
                    kind @ ..,
                ] => {
                    raw.push((
                        (*path).to_owned(),
                        (*inode).to_owned(),
                        [*uid, *gid, *mode, *nlink, *size, *mtime].map(str::to_owned),
                        kind.join(" "),
                    ));
                }
                ["L", path, target] => {
                    links.insert((*path).to_owned(), (*target).to_owned());
                }
                ["B", blocks, block_size] => {
                    let n = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{line:?}"));
                    sparse_allocated = Some(n(blocks) * n(block_size));
                }
                [sum, path] if sum.len() == 64 => {
                    sums.insert((*path).to_owned(), (*sum).to_owned());
                }
                _ => {}
            }
        }
        raw.sort();
        // The first path of each inode stands for it, so that two trees compare equal when the
        // same paths share an inode, whatever the inode numbers.
        let mut first_of_inode = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (path, inode, [uid, gid, mode, nlink, size, mtime], kind) in raw {
            let line = if kind == "directory" {
                format!("{uid} {gid} {mode} - - {mtime} {kind}")
            } else {
                let first = first_of_inode.entry(inode).or_insert_with(|| path.clone());
                format!("{uid} {gid} {mode} {nlink} {size} {mtime} {kind} inode-of:{first}")
            };
            entries.insert(path, line);
        }
        Listing {
            entries,
            sums,
            links,
            sparse_allocated: sparse_allocated
                .unwrap_or_else(|| panic!("no allocation line for sparse.img:\n{text}")),
        }
    }

    /// Panics unless this is the tree [`SEED`] writes: its known checksums, owners, link and
    /// hard link. Run on the source, it makes sure that the comparisons that follow compare
    /// the tree the tests meant, not two equal failures.
    pub fn assert_seeded(&self) {
        for (path, sum) in KNOWN {
            assert_eq!(
                self.sums.get(*path).map(String::as_str),
                Some(*sum),
                "{path}: {self:#?}"
            );
        }
        let entry = |p: &str| self.entries.get(p).map(String::as_str).unwrap_or_default();
        assert!(
            entry("./owned/deep/c.txt").starts_with("2000 3000 640 1 "),
            "{self:#?}"
        );
        assert!(entry("./owned").starts_with("1000 2000 750 "), "{self:#?}");
        assert!(
            entry("./shared/b-hardlink").starts_with("1000 1000 600 2 ")
                && entry("./shared/b-hardlink").ends_with("inode-of:./owned/b.txt"),
            "{self:#?}"
        );
        assert!(
            entry("./shared/a-symlink").starts_with("1000 1000 "),
            "{self:#?}"
        );
        assert_eq!(
            self.links.get("./shared/a-symlink").map(String::as_str),
            Some("../a.txt")
        );
        self.assert_sparse();
    }

    /// Panics unless `sparse.img` holds far fewer bytes than its 8 MiB: holes stayed holes.
    pub fn assert_sparse(&self) {
        assert!(
            self.sparse_allocated < 4 << 20,
            "sparse.img has {} bytes allocated of 8 MiB: its holes were written out",
            self.sparse_allocated
        );
    }

    /// Panics, showing both listings' differences, unless `copy` is the same tree as `self`
    /// and kept the sparse file sparse.
    pub fn assert_copied_to(&self, copy: &Listing, what: &str) {
        if (&self.entries, &self.sums, &self.links) != (&copy.entries, &copy.sums, &copy.links) {
            let mut diff = String::new();
            let keys: std::collections::BTreeSet<&String> =
                self.entries.keys().chain(copy.entries.keys()).collect();
            for k in keys {
                let (a, b) = (self.entries.get(k), copy.entries.get(k));
                let (sa, sb) = (self.sums.get(k), copy.sums.get(k));
                let (la, lb) = (self.links.get(k), copy.links.get(k));
                if a != b || sa != sb || la != lb {
                    diff.push_str(&format!(
                        "{k}\n  source: {a:?} {sa:?} {la:?}\n  {what}: {b:?} {sb:?} {lb:?}\n"
                    ));
                }
            }
            panic!("{what} differs from the source tree:\n{diff}");
        }
        copy.assert_sparse();
    }
}
