//! Integration tests of `mover::Mirror`, checked with independent eyes (rsync, std's stat,
//! getfacl, find).

mod sync {
    pub mod util;

    mod backup;
    mod excludes;
    mod fidelity;
    mod filesystems;
    mod mutations;
    mod names;
    mod new_dirs;
    mod property;
    mod safety;
}
