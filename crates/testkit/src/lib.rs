//! Test support for pvc-backup, never shipped.
//!
//! - [`cmd`]: how a run of a binary ended, with its output when it is not what was expected.
//! - [`skip`]: tests that need root or a tool print why they skip, and fail instead when
//!   `CI=true`, so a CI run can never pass by skipping.
//! - [`fs`]: real filesystems made by the tests (tmpfs, ext4, xfs, btrfs on loop devices).
//! - [`tree`]: builders that make a test read like the situation it checks.
//! - [`oracle`]: independent eyes: rsync's itemized dry run, and the kernel's `stat` through std.
//! - [`s3`]: a real S3 server (SeaweedFS) for the repository tests.
//!
//! Nothing here knows Kubernetes, so the engine's tests compile none; the clusters the cluster
//! tests run against are in `testcluster`.

pub mod cmd;
pub mod fs;
pub mod oracle;
pub mod s3;
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
