//! New directories of a mirror: made under a temporary name, renamed once complete, and taken
//! up where a killed run left them.

use std::os::unix::fs::MetadataExt;

use testkit::oracle::assert_mirror;
use testkit::tree::hostile_names;

use super::util::{Pair, assert_ok};

/// Paths below `root` with names like the mover's temporary ones.
fn leftovers(root: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .arg(".")
        .current_dir(root)
        .args(["-name", ".pvcb-*"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_new_folder_a_killed_run_left_is_taken_up_where_it_stopped() {
    let p = Pair::new();
    p.src
        .file(b"top", b"in the root")
        .file(b"dir/done", b"copied before the kill")
        .mtime(b"dir/done", 1_700_000_000, 0)
        .mode(b"dir/done", 0o640)
        .file(b"dir/half", b"only part of this was written")
        .file(b"dir/sub/deep", b"not reached")
        .mode(b"dir", 0o751)
        .mtime(b"dir", 1_600_000_000, 0);
    // What a run killed inside `dir` leaves: the folder under its temporary name, a file done
    // (content, mode and mtime final), a file half written (still its creation mtime), a file
    // the source no longer has, and a temporary folder whose source folder is gone.
    p.dst
        .file(b".pvcb-new.dir/done", b"copied before the kill")
        .mtime(b".pvcb-new.dir/done", 1_700_000_000, 0)
        .mode(b".pvcb-new.dir/done", 0o640)
        .file(b".pvcb-new.dir/half", b"only part")
        .file(b".pvcb-new.dir/gone", b"x")
        .file(b".pvcb-new.gone/file", b"y");
    let ino = std::fs::metadata(p.dst.path(b".pvcb-new.dir/done"))
        .unwrap()
        .ino();

    let s = p.sync();
    assert_ok(&s);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
    assert_eq!(leftovers(&p.dst.root), Vec::<String>::new());
    // The file the killed run finished is kept, not copied again.
    assert_eq!(
        std::fs::metadata(p.dst.path(b"dir/done")).unwrap().ino(),
        ino
    );
    assert_eq!(s.entries.copied, 3, "top, dir/half, dir/sub/deep");
    assert_eq!(s.entries.unchanged, 1, "dir/done");
}

#[test]
fn a_source_entry_named_like_a_temporary_folder_is_mirrored_beside_it() {
    let p = Pair::new();
    p.src
        .file(b"x/in-x", b"1")
        .file(b".pvcb-new.x/in-named-like-tmp", b"2")
        .file(b".pvcb-new.y", b"a file")
        .file(b"y/in-y", b"3");
    let s = p.sync();
    assert_ok(&s);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
    let again = p.sync();
    assert_ok(&again);
    assert_eq!((again.entries.copied, again.entries.deleted), (0, 0));
}

#[test]
fn hostile_names_of_new_folders_in_an_existing_one() {
    let p = Pair::new();
    p.src.file(b"keep", b"k");
    assert_ok(&p.sync());
    // 255-byte names leave no room for the temporary prefix: made under their own name.
    for (i, n) in hostile_names().into_iter().enumerate() {
        let mut f = n.clone();
        f.extend_from_slice(b"/f");
        p.src.file(&f, format!("{i}").as_bytes());
    }
    let s = p.sync();
    assert_ok(&s);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
    // The source has one name like a temporary file; the target has only that one.
    assert_eq!(leftovers(&p.dst.root), leftovers(&p.src.root));
}

#[test]
fn hard_links_inside_and_between_new_folders() {
    let p = Pair::new();
    // `a/second` is linked to `a/first` while `a` is being filled, so still under its temporary
    // name. The names in the `b` folders are linked before or after the folder of the first
    // name reached gets its own name.
    p.src
        .file(b"a/first", b"shared")
        .hardlink(b"a/first", b"a/second");
    p.src.file(b"c/origin", b"shared too");
    for i in 0..40 {
        p.src
            .dir(format!("b{i}/deep").as_bytes())
            .hardlink(b"c/origin", format!("b{i}/deep/name").as_bytes())
            .file(format!("b{i}/own").as_bytes(), b"own");
    }
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(s.entries.linked, 41);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
}
