//! `sync --also`: once SRC is mirrored into DST, DST is mirrored into each extra folder, so that
//! N copies read the source once.
//!
//! The folders are checked before anything is copied: an extra folder that is SRC, DST or
//! another extra folder, or lies inside or around one of them, would copy into its own source or
//! delete another copy's files. Paths are compared where they lead: made absolute against the
//! current folder, with symlinks and `..` resolved as far as the path exists (a folder still to
//! be made is compared by its name below the part that exists).

use std::path::{Component, Path, PathBuf};

use contract::ExitCode;

use crate::{Error, Mirror, Options, Result};

/// The extra folders of a mirror of SRC into DST, checked not to overlap.
#[derive(Debug, Clone, Copy)]
pub struct Also<'a> {
    dst: &'a Path,
    extras: &'a [PathBuf],
}

impl<'a> Also<'a> {
    /// Checks the extra folders of a mirror of `src` into `dst`: [`Error::Usage`] names the
    /// first one that overlaps SRC, DST or an earlier one.
    pub fn new(src: &Path, dst: &'a Path, extras: &'a [PathBuf]) -> Result<Also<'a>> {
        match overlap(src, dst, extras) {
            Some(why) => Err(Error::Usage(why)),
            None => Ok(Also { dst, extras }),
        }
    }

    /// Makes each extra folder a mirror of DST after the first copy ended with `first`, and
    /// returns the exit code of the whole run (see [`ExitCode::worst`]). The extra copies mirror
    /// what DST now holds, so they are only made from a DST that was written (done or partial),
    /// never after a refusal or a fatal error. `copy` runs one of them (showing its progress and
    /// summary as the caller likes) and returns its exit code.
    pub fn copy<E>(
        &self,
        first: ExitCode,
        mut copy: impl FnMut(&Extra<'_>) -> Result<ExitCode, E>,
    ) -> Result<ExitCode, E> {
        if !first.wrote_target() {
            return Ok(first);
        }
        let mut worst = first;
        for folder in self.extras {
            let code = copy(&Extra {
                from: self.dst,
                to: folder,
            })?;
            worst = worst.worst(code);
        }
        Ok(worst)
    }
}

/// One extra copy: DST mirrored into an extra folder.
#[derive(Debug, Clone, Copy)]
pub struct Extra<'a> {
    from: &'a Path,
    to: &'a Path,
}

impl Extra<'_> {
    /// The extra folder, as given.
    pub fn folder(&self) -> &Path {
        self.to
    }

    /// Prepares the mirror of DST into the extra folder with the run's options. DST already is
    /// the `--subdir`, and an empty one was accepted by the first copy.
    pub fn prepare(&self, options: Options) -> Result<Mirror> {
        let options = Options {
            subdir: None,
            allow_empty: true,
            ..options
        };
        Mirror::prepare(self.from, self.to, options)
    }
}

/// Where a path leads: absolute, its longest existing part with symlinks, `.` and `..` resolved
/// by the kernel, the rest (folders still to be made, which cannot be symlinks) appended with `.`
/// dropped and `..` taking off the name before it.
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let parts: Vec<Component<'_>> = abs.components().collect();
    for exists in (1..=parts.len()).rev() {
        let head: PathBuf = parts[..exists].iter().collect();
        if let Ok(mut out) = std::fs::canonicalize(&head) {
            for part in &parts[exists..] {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(name) => out.push(name),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
            return out;
        }
    }
    abs
}

/// A path as the user gave it, and where it leads when that differs.
fn shown(given: &Path, real: &Path) -> String {
    let abs = std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf());
    if abs.components().eq(real.components()) {
        given.display().to_string()
    } else {
        format!("{} (which is {})", given.display(), real.display())
    }
}

/// Why an extra folder cannot be used, if one cannot.
fn overlap(src: &Path, dst: &Path, also: &[PathBuf]) -> Option<String> {
    let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    let sides = [("SRC", src, resolved(src)), ("DST", dst, resolved(dst))];
    let extras: Vec<PathBuf> = also.iter().map(|p| resolved(p)).collect();
    for (i, (extra, e)) in also.iter().zip(&extras).enumerate() {
        for (what, given, other) in &sides {
            if nested(e, other) {
                return Some(format!(
                    "--also {} overlaps {what} {}: give a folder outside both",
                    shown(extra, e),
                    shown(given, other)
                ));
            }
        }
        if let Some(j) = (0..i).find(|&j| nested(e, &extras[j])) {
            return Some(format!(
                "--also {} overlaps --also {}: give each copy its own folder",
                shown(extra, e),
                shown(&also[j], &extras[j])
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extras: &[&str]) -> Result<(), String> {
        let extras: Vec<PathBuf> = extras.iter().map(PathBuf::from).collect();
        Also::new(Path::new("/data/src"), Path::new("/backup/dst"), &extras)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn folders_apart_from_src_dst_and_each_other_are_accepted() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&["/copies/one", "/copies/two"]), Ok(()));
        // A shared prefix of the name is not nesting.
        assert_eq!(check(&["/backup/dst2", "/data/src-copy"]), Ok(()));
    }

    #[test]
    fn the_same_folder_as_src_or_dst_is_refused() {
        assert_eq!(
            check(&["/data/src"]),
            Err("--also /data/src overlaps SRC /data/src: give a folder outside both".into())
        );
        assert_eq!(
            check(&["/backup/dst"]),
            Err("--also /backup/dst overlaps DST /backup/dst: give a folder outside both".into())
        );
        // A trailing slash or a `.` names the same folder.
        assert!(check(&["/backup/dst/"]).is_err());
        assert!(check(&["/backup/./dst"]).is_err());
    }

    #[test]
    fn a_folder_inside_or_around_src_or_dst_is_refused() {
        assert_eq!(
            check(&["/backup/dst/more"]),
            Err(
                "--also /backup/dst/more overlaps DST /backup/dst: give a folder outside both"
                    .into()
            )
        );
        assert!(check(&["/backup"]).unwrap_err().contains("overlaps DST"));
        assert!(
            check(&["/data/src/a/b"])
                .unwrap_err()
                .contains("overlaps SRC")
        );
        assert!(check(&["/"]).unwrap_err().contains("overlaps SRC"));
    }

    #[test]
    fn two_extra_folders_that_overlap_are_refused() {
        assert_eq!(
            check(&["/copies/one", "/copies/one/inner"]),
            Err(
                "--also /copies/one/inner overlaps --also /copies/one: give each copy its own \
                 folder"
                    .into()
            )
        );
        assert!(
            check(&["/copies/one/inner", "/copies/one"])
                .unwrap_err()
                .contains("overlaps --also /copies/one/inner")
        );
        assert!(check(&["/copies/one", "/copies/one"]).is_err());
    }

    #[test]
    fn relative_folders_are_compared_from_the_current_folder() {
        let cwd = std::env::current_dir().unwrap();
        let extras = [PathBuf::from("inner")];
        let err = Also::new(Path::new("/data/src"), &cwd, &extras).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "--also inner overlaps DST {}: give a folder outside both",
                cwd.display()
            )
        );
    }

    #[test]
    fn paths_are_compared_where_they_lead_through_dotdot_and_symlinks() {
        // Folders that do not exist: `..` is taken off by name.
        assert_eq!(check(&["/backup/dst/../elsewhere"]), Ok(()));
        assert_eq!(
            check(&["/copies/../backup/dst"]),
            Err(
                "--also /copies/../backup/dst (which is /backup/dst) overlaps DST /backup/dst: \
                 give a folder outside both"
                    .into()
            )
        );
        // Folders that exist: a symlink to DST, or into it, is DST.
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let (src, dst) = (real.join("src"), real.join("dst"));
        std::fs::create_dir_all(dst.join("inner")).unwrap();
        std::fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(&dst, real.join("link")).unwrap();
        std::os::unix::fs::symlink(dst.join("inner"), real.join("into")).unwrap();
        let refused = |extra: PathBuf| {
            let extras = [extra];
            Also::new(&src, &dst, &extras)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(real.join("link")),
            format!(
                "--also {0}/link (which is {0}/dst) overlaps DST {0}/dst: give a folder outside \
                 both",
                real.display()
            )
        );
        assert!(refused(real.join("into/new")).contains("overlaps DST"));
        assert!(refused(real.join("link/../src")).contains("overlaps SRC"));
        // A folder beside them, reached through a symlink's parent, is accepted.
        let extras = [real.join("into/../../copy")];
        assert!(Also::new(&src, &dst, &extras).is_ok());
    }

    #[test]
    fn the_whole_run_ends_with_the_worst_code_and_extras_follow_only_a_written_target() {
        let extras = [PathBuf::from("/copies/one"), PathBuf::from("/copies/two")];
        let also = Also::new(Path::new("/data/src"), Path::new("/backup/dst"), &extras).unwrap();
        let run = |first, codes: &[ExitCode]| {
            let mut seen = Vec::new();
            let code = also
                .copy(first, |extra| {
                    seen.push(extra.folder().to_path_buf());
                    Ok::<_, ()>(codes[seen.len() - 1])
                })
                .unwrap();
            (code, seen.len())
        };
        use ExitCode as C;
        assert_eq!(run(C::Ok, &[C::Ok, C::Ok]), (C::Ok, 2));
        assert_eq!(run(C::Ok, &[C::Partial, C::Ok]), (C::Partial, 2));
        assert_eq!(run(C::Partial, &[C::Fatal, C::Ok]), (C::Fatal, 2));
        assert_eq!(run(C::Ok, &[C::Fatal, C::Partial]), (C::Fatal, 2));
        // No copy of a target that was not written.
        assert_eq!(run(C::Refused, &[]), (C::Refused, 0));
        assert_eq!(run(C::Fatal, &[]), (C::Fatal, 0));
        assert_eq!(run(C::Usage, &[]), (C::Usage, 0));
        // An error of the caller stops the copies.
        let mut calls = 0;
        let err = also.copy(ExitCode::Ok, |_| {
            calls += 1;
            Err("stdout closed")
        });
        assert_eq!((err, calls), (Err("stdout closed"), 1));
    }
}
