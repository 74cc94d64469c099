//! Helpers shared by the sync tests.

use std::path::Path;

use contract::Summary;
use mover::{Mirror, Options};
use tempfile::TempDir;
use testkit::tree::Tree;

/// A source and a target folder in a fresh temporary directory.
pub struct Pair {
    pub _dir: TempDir,
    pub src: Tree,
    pub dst: Tree,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::under(&std::env::temp_dir())
    }

    pub fn under(base: &Path) -> Pair {
        let dir = tempfile::Builder::new()
            .prefix("pvcb-sync-")
            .tempdir_in(base)
            .expect("tempdir");
        let src = Tree::new(dir.path().join("src"));
        let dst = Tree {
            root: dir.path().join("dst"),
        };
        Pair {
            _dir: dir,
            src,
            dst,
        }
    }

    pub fn sync(&self) -> Summary {
        sync_with(&self.src.root, &self.dst.root, Options::default())
    }
}

pub fn sync_with(src: &Path, dst: &Path, opts: Options) -> Summary {
    let s = Mirror::prepare(src, dst, opts).unwrap_or_else(|e| panic!("prepare: {e}"));
    s.run().unwrap_or_else(|e| panic!("run: {e}"))
}

/// Asserts a run had no failed entry.
pub fn assert_ok(s: &Summary) {
    assert_eq!(s.exit_code, 0, "run was not clean: {:#?}", s.errors);
    assert!(s.errors.is_empty());
}
