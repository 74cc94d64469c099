//! Random trees, random mutations, sync, compare with the oracle, repeat.

use proptest::prelude::*;
use testkit::oracle::assert_mirror;
use testkit::skip::is_root;
use testkit::tree::Tree;

use super::util::{Pair, assert_ok};

const NAMES: [&[u8]; 6] = [b"a", b"b", b"\xffz", b"-x", b"n\nl", b"c"];

/// One change to a tree; paths are picked from a small set so changes collide often.
#[derive(Debug, Clone)]
enum Op {
    Write { path: (u8, u8), len: u16, seed: u8 },
    Sparse { path: (u8, u8), hole_mib: u8 },
    Mkdir { path: (u8, u8) },
    Symlink { path: (u8, u8), target: u8 },
    Hardlink { from: (u8, u8), to: (u8, u8) },
    Chmod { path: (u8, u8), mode: u16 },
    Chown { path: (u8, u8), uid: u16 },
    Xattr { path: (u8, u8), value: u8 },
    Touch { path: (u8, u8), sec: u32 },
    Remove { path: (u8, u8) },
}

fn path_of(p: (u8, u8)) -> Vec<u8> {
    let d = NAMES[p.0 as usize % NAMES.len()];
    let f = NAMES[p.1 as usize % NAMES.len()];
    if p.0.is_multiple_of(3) {
        f.to_vec()
    } else {
        [d, b"/", f].concat()
    }
}

fn op() -> impl Strategy<Value = Op> {
    let path = (0u8..6, 0u8..6);
    prop_oneof![
        4 => (path.clone(), 0u16..3000, any::<u8>()).prop_map(|(path, len, seed)| Op::Write { path, len, seed }),
        1 => (path.clone(), 1u8..4).prop_map(|(path, hole_mib)| Op::Sparse { path, hole_mib }),
        2 => path.clone().prop_map(|path| Op::Mkdir { path }),
        1 => (path.clone(), 0u8..6).prop_map(|(path, target)| Op::Symlink { path, target }),
        1 => (path.clone(), path.clone()).prop_map(|(from, to)| Op::Hardlink { from, to }),
        2 => (path.clone(), 0u16..0o7777).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => (path.clone(), 0u16..5).prop_map(|(path, uid)| Op::Chown { path, uid }),
        1 => (path.clone(), any::<u8>()).prop_map(|(path, value)| Op::Xattr { path, value }),
        1 => (path.clone(), 0u32..2_000_000_000).prop_map(|(path, sec)| Op::Touch { path, sec }),
        2 => path.prop_map(|path| Op::Remove { path }),
    ]
}

/// Applies an op where it makes sense; ops that do not fit the current tree are ignored.
fn apply(t: &Tree, op: &Op) {
    let exists = |p: &[u8]| std::fs::symlink_metadata(t.path(p)).ok();
    let parent_ok = |p: &[u8]| match p.iter().rposition(|&b| b == b'/') {
        None => true,
        Some(i) => {
            let parent = &p[..i];
            match exists(parent) {
                Some(m) => m.is_dir(),
                None => {
                    t.dir(parent);
                    true
                }
            }
        }
    };
    match op {
        Op::Write { path, len, seed } => {
            let p = path_of(*path);
            if parent_ok(&p) && exists(&p).is_none_or(|m| m.is_file()) {
                let data: Vec<u8> = (0..*len).map(|i| (i as u8).wrapping_mul(*seed)).collect();
                t.file(&p, &data);
            }
        }
        Op::Sparse { path, hole_mib } => {
            let p = path_of(*path);
            if parent_ok(&p) && exists(&p).is_none() {
                t.sparse(&p, u64::from(*hole_mib) << 20, &[(4096, b"island")]);
            }
        }
        Op::Mkdir { path } => {
            let p = path_of(*path);
            if parent_ok(&p) && exists(&p).is_none() {
                t.dir(&p);
            }
        }
        Op::Symlink { path, target } => {
            let p = path_of(*path);
            if parent_ok(&p) && exists(&p).is_none() {
                t.symlink(&p, NAMES[*target as usize]);
            }
        }
        Op::Hardlink { from, to } => {
            let (a, b) = (path_of(*from), path_of(*to));
            if exists(&a).is_some_and(|m| m.is_file()) && parent_ok(&b) && exists(&b).is_none() {
                t.hardlink(&a, &b);
            }
        }
        Op::Chmod { path, mode } => {
            let p = path_of(*path);
            // Directories stay traversable for the oracle's own walk.
            if let Some(m) = exists(&p).filter(|m| !m.file_type().is_symlink()) {
                // The test itself must be able to go on changing what it chmods: directories
                // stay traversable, and without root, files stay writable by their owner.
                let keep = match (m.is_dir(), is_root()) {
                    (true, _) => 0o700,
                    (false, true) => 0o400,
                    (false, false) => 0o600,
                };
                let mode = u32::from(*mode) | keep;
                let mode = if is_root() { mode } else { mode & 0o777 };
                t.mode(&p, mode);
            }
        }
        Op::Chown { path, uid } => {
            let p = path_of(*path);
            if is_root() && exists(&p).is_some() {
                t.owner(&p, 1000 + u32::from(*uid), 2000 + u32::from(*uid));
            }
        }
        Op::Xattr { path, value } => {
            let p = path_of(*path);
            if exists(&p).is_some_and(|m| m.is_file() || m.is_dir()) {
                t.xattr(&p, "user.prop", &[*value]);
            }
        }
        Op::Touch { path, sec } => {
            let p = path_of(*path);
            if exists(&p).is_some() {
                t.mtime(&p, i64::from(*sec), i64::from(*sec % 1_000_000_000));
            }
        }
        Op::Remove { path } => {
            let p = path_of(*path);
            if exists(&p).is_some() {
                t.remove(&p);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_and_mutations_stay_mirrored(
        first in prop::collection::vec(op(), 1..40),
        rounds in prop::collection::vec(prop::collection::vec(op(), 1..15), 1..4),
    ) {
        let p = Pair::new();
        // A non-empty source, so the empty-source refusal does not apply.
        p.src.file(b"anchor", b"x");
        for o in &first {
            apply(&p.src, o);
        }
        assert_ok(&p.sync());
        assert_mirror(&p.src.root, &p.dst.root, &[]);
        for round in &rounds {
            for o in round {
                apply(&p.src, o);
            }
            if std::fs::symlink_metadata(p.src.path(b"anchor")).is_err() {
                p.src.file(b"anchor", b"x");
            }
            assert_ok(&p.sync());
            assert_mirror(&p.src.root, &p.dst.root, &[]);
        }
    }
}
