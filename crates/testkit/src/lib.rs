//! Test support for pvc-backup, never shipped.
//!
//! - [`cmd`]: how a run of a binary ended, with its output when it is not what was expected.
//! - [`skip`]: tests that need root or a tool print why they skip, and fail instead when
//!   `CI=true`, so a CI run can never pass by skipping.
//! - [`fs`]: real filesystems made by the tests (tmpfs, ext4, xfs, btrfs on loop devices).
//! - [`tree`]: builders that make a test read like the situation it checks.
//! - [`objects`]: reading Kubernetes objects the way tests check them.
//! - [`oracle`]: independent eyes: rsync's itemized dry run, and the kernel's `stat` through std.
//! - [`cluster`]: a fake Kubernetes cluster (API server, controllers, a kubelet that runs the
//!   mover binary) for end-to-end tests without a real cluster.
//! - [`real`]: one test's namespace on a real cluster (`scripts/local-cluster.sh`), with the
//!   same methods, its volumes judged on the host.

pub mod cluster;
pub mod cmd;
pub mod fs;
pub mod objects;
pub mod oracle;
pub mod real;
pub mod skip;
pub mod tree;

/// Calls `done` every `every` until it returns true or `timeout` passes; returns whether it did.
pub fn poll_until(
    timeout: std::time::Duration,
    every: std::time::Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(every);
    }
}
