//! Names are bytes, and depth is unbounded.

use std::ffi::CString;
use std::process::Command;

use testkit::oracle::assert_mirror;
use testkit::skip::need_tools;
use testkit::tree::hostile_names;

use super::util::{Pair, assert_ok};

#[test]
fn hostile_names_as_files_dirs_links_and_link_targets() {
    let p = Pair::new();
    for (i, n) in hostile_names().into_iter().enumerate() {
        p.src.file(&n, format!("{i}").as_bytes());
        let mut d = b"d/".to_vec();
        d.extend_from_slice(&n);
        p.src.dir(&d);
        let mut l = b"links/".to_vec();
        l.extend_from_slice(&n);
        p.src.dir(b"links").symlink(&l, &n);
    }
    let s = p.sync();
    assert_ok(&s);
    assert_mirror(&p.src.root, &p.dst.root, &[]);
    // Re-running finds every hostile name equal.
    let again = p.sync();
    assert_eq!(again.entries.copied, 0);
}

/// Creates `depth` nested directories with long names below `root`, through directory
/// descriptors (a path this long cannot be passed to the kernel), and a file at the bottom.
fn make_deep(root: &std::path::Path, depth: usize, name: &[u8]) {
    let c = CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: plain syscalls on valid C strings; descriptors are closed as we go.
    unsafe {
        let mut fd = libc::open(c.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        assert!(fd >= 0);
        for _ in 0..depth {
            assert_eq!(libc::mkdirat(fd, n.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, n.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            assert!(next >= 0);
            libc::close(fd);
            fd = next;
        }
        let f = libc::openat(
            fd,
            c"bottom".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o644,
        );
        assert!(f >= 0);
        assert_eq!(libc::write(f, b"at the bottom".as_ptr().cast(), 13), 13);
        libc::close(f);
        libc::close(fd);
    }
}

/// `find`'s view of a tree (type, mode, size, mtime, path): GNU find walks trees of any depth.
fn find_listing(root: &std::path::Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args([
            "-path",
            "./.pvc-backup",
            "-prune",
            "-o",
            "-printf",
            "%y %m %s %T@ %P\\n",
        ])
        .current_dir(root)
        .output()
        .expect("find");
    assert!(
        out.status.success(),
        "find: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            // Directory sizes are not data and differ between filesystems.
            if l.starts_with("d ") {
                let mut parts: Vec<&str> = l.splitn(5, ' ').collect();
                parts[2] = "-";
                parts.join(" ")
            } else {
                l.to_string()
            }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn trees_deeper_than_path_max_are_mirrored() {
    if !need_tools("trees_deeper_than_path_max_are_mirrored", &["find"]) {
        return;
    }
    let p = Pair::new();
    p.src.file(b"top", b"1");
    // 40 levels of 200-byte names: about 8 KiB of path, twice PATH_MAX.
    make_deep(&p.src.root, 40, &[b'd'; 200]);
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(s.entries.total, 42);
    let (a, b) = (find_listing(&p.src.root), find_listing(&p.dst.root));
    assert_eq!(a.len(), 43, "find saw the whole source");
    assert_eq!(a, b);
    assert!(
        b.iter()
            .any(|l| l.starts_with("f 644 13 ") && l.ends_with("/bottom"))
    );
    // A second run over the deep tree changes nothing, and removing it works too.
    assert_eq!(p.sync().entries.copied, 0);
    let deep = p.src.path(&[b'd'; 200]);
    Command::new("rm").arg("-rf").arg(&deep).status().unwrap();
    let s = p.sync();
    assert_ok(&s);
    assert_eq!(s.entries.deleted, 41);
    assert_eq!(find_listing(&p.src.root), find_listing(&p.dst.root));
}
