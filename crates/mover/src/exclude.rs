//! Leaving entries out of a copy: `--exclude PATTERN`, `--exclude-from FILE`,
//! `--exclude-caches`, and what becomes of the target's matching entries (`--delete-excluded`).
//!
//! Patterns follow gitignore's rules, matched against the entry's path relative to the copy's
//! root (the source, or its `--subdir`): `*.log` matches at any depth, a leading `/` anchors a
//! pattern at the root (`/tmp`), a pattern with a `/` inside is anchored too (`logs/*.gz`), a
//! trailing `/` matches folders only (`cache/`), `**` spans folders, and `!` re-includes what an
//! earlier pattern left out (the last matching pattern wins). A folder that is left out is not
//! entered, so nothing below it can be re-included, as in git.

use std::ffi::{CStr, OsStr};
use std::io::Read as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{Mode, OFlags, openat};
use rustix::io::Errno;

use crate::meta::{Kind, Meta};
use crate::owner::{Id, Owners};
use crate::{Error, Result};

/// The name of the file that marks a cache folder (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// What a `CACHEDIR.TAG` file must begin with to mark its folder as a cache.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// What a copy leaves out.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Option<Arc<Gitignore>>,
    caches: bool,
    delete_excluded: bool,
}

impl Excludes {
    /// Excludes from gitignore-style `patterns` (in order: a later one wins), skipping folders
    /// tagged as caches when `caches`, and deleting the target's matching entries when
    /// `delete_excluded`. A pattern that is not a valid glob is a usage error that names it.
    pub fn new(patterns: &[String], caches: bool, delete_excluded: bool) -> Result<Excludes> {
        let patterns = if patterns.is_empty() {
            None
        } else {
            let mut b = GitignoreBuilder::new("");
            for p in patterns {
                if p.is_empty() {
                    return Err(Error::Usage(
                        "--exclude: an empty pattern matches nothing; leave it out".into(),
                    ));
                }
                b.add_line(None, p).map_err(|e| {
                    Error::Usage(format!(
                        "--exclude {p:?} is not a valid pattern ({e}); patterns are gitignore \
                         globs such as '*.tmp', '/cache/' or 'logs/**/*.gz'"
                    ))
                })?;
            }
            let built = b
                .build()
                .map_err(|e| Error::Usage(format!("the --exclude patterns cannot be used: {e}")))?;
            Some(Arc::new(built))
        };
        Ok(Excludes {
            patterns,
            caches,
            delete_excluded,
        })
    }

    /// The patterns of an exclude file: one a line, as in a `.gitignore`; blank lines and lines
    /// starting with `#` are left out. A file that cannot be read is a usage error naming it.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read(path).map_err(|e| {
            Error::Usage(format!(
                "--exclude-from {}: cannot read it ({e}); give a file with one pattern a line",
                path.display()
            ))
        })?;
        let text = String::from_utf8(text).map_err(|_| {
            Error::Usage(format!(
                "--exclude-from {}: not UTF-8 text; give a file with one pattern a line",
                path.display()
            ))
        })?;
        Ok(text
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect())
    }

    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_none() && !self.caches
    }

    /// Whether folders that hold a valid `CACHEDIR.TAG` are left out.
    pub fn caches(&self) -> bool {
        self.caches
    }

    /// Whether target entries that an exclude matches are deleted (they are kept otherwise).
    pub fn delete_excluded(&self) -> bool {
        self.delete_excluded
    }

    /// Whether the source entry `name` of `dir` (looked up as `dir_id`), at `rel` relative to
    /// the copy's root, is left out: matched by a pattern, or a folder tagged as a cache (read
    /// as its owner where the mover itself may not).
    pub fn leaves_out(
        &self,
        owners: &Owners,
        dir: BorrowedFd<'_>,
        dir_id: Id,
        rel: &[u8],
        name: &CStr,
        meta: &Meta,
    ) -> bool {
        let is_dir = meta.kind == Kind::Dir;
        if self.matches(rel, is_dir) {
            return true;
        }
        if !(is_dir && self.caches) {
            return false;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let owner = (meta.uid, meta.gid);
        let Ok(fd) = owners.open_as(dir, dir_id, name, Some(owner), flags) else {
            return false;
        };
        owners
            .retry_entry(fd.as_fd(), owner, || is_cache_dir(fd.as_fd()))
            .unwrap_or(false)
    }

    /// Whether a pattern leaves out the entry at `rel` (relative to the copy's root; a folder
    /// when `is_dir`).
    pub fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        match &self.patterns {
            Some(g) => g
                .matched(Path::new(OsStr::from_bytes(rel)), is_dir)
                .is_ignore(),
            None => false,
        }
    }
}

/// Whether the open directory `dir` holds a `CACHEDIR.TAG` file that begins with the signature
/// the specification requires (a file of that name without it marks nothing). An error only when
/// the tag is there but may not be read.
pub fn is_cache_dir(dir: BorrowedFd<'_>) -> std::io::Result<bool> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match openat(dir, c"CACHEDIR.TAG", flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if e == Errno::ACCESS || e == Errno::PERM => return Err(e.into()),
        Err(_) => return Ok(false),
    };
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    let mut f = std::fs::File::from(fd);
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head == CACHEDIR_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str]) -> Excludes {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        Excludes::new(&p, false, false).unwrap()
    }

    #[test]
    fn patterns_follow_gitignore_rules() {
        let e = ex(&["*.log", "/top", "cache/", "logs/**/*.gz", "!keep.log"]);
        assert!(e.matches(b"a.log", false));
        assert!(e.matches(b"deep/down/a.log", false));
        assert!(!e.matches(b"keep.log", false), "re-included by the later !");
        assert!(e.matches(b"top", true));
        assert!(
            !e.matches(b"sub/top", true),
            "a leading / anchors at the root"
        );
        assert!(e.matches(b"cache", true));
        assert!(e.matches(b"x/cache", true));
        assert!(
            !e.matches(b"cache", false),
            "a trailing / matches folders only"
        );
        assert!(e.matches(b"logs/a/b/c.gz", false));
        assert!(
            !e.matches(b"other/logs/c.gz", false),
            "a / inside anchors too"
        );
        assert!(!e.matches(b"a.txt", false));
    }

    #[test]
    fn names_that_are_not_utf8_are_matched_as_bytes() {
        let e = ex(&["*.bin"]);
        assert!(e.matches(b"\xff\xfe.bin", false));
        assert!(!e.matches(b"\xff\xfe.txt", false));
    }

    #[test]
    fn a_bad_pattern_is_refused_by_name() {
        let err = Excludes::new(&["a[z-a]".to_string()], false, false).unwrap_err();
        assert!(err.to_string().contains("\"a[z-a]\""), "{err}");
        assert_eq!(err.exit_code(), contract::ExitCode::Usage.code());
    }

    #[test]
    fn an_exclude_file_is_read_like_a_gitignore() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("excludes");
        std::fs::write(&f, "# comment\n\n*.tmp\r\n/cache/\n").unwrap();
        assert_eq!(Excludes::read_file(&f).unwrap(), ["*.tmp", "/cache/"]);
        let err = Excludes::read_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn only_a_signed_tag_marks_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            rustix::fs::open(
                dir.path(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        assert!(!is_cache_dir(std::os::fd::AsFd::as_fd(&open())).unwrap());
        std::fs::write(dir.path().join(CACHEDIR_TAG), b"Signature: wrong").unwrap();
        assert!(!is_cache_dir(std::os::fd::AsFd::as_fd(&open())).unwrap());
        std::fs::write(
            dir.path().join(CACHEDIR_TAG),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# made by a cache\n",
        )
        .unwrap();
        assert!(is_cache_dir(std::os::fd::AsFd::as_fd(&open())).unwrap());
    }
}
