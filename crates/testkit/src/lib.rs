//! Test support for pvc-backup, never shipped.
//!
//! - [`skip`]: tests that need root or a tool print why they skip, and fail instead when
//!   `CI=true`, so a CI run can never pass by skipping.
//! - [`fs`]: real filesystems made by the tests (tmpfs, ext4, xfs, btrfs on loop devices).
//! - [`tree`]: builders that make a test read like the situation it checks.
//! - [`oracle`]: independent eyes: rsync's itemized dry run, and the kernel's `stat` through std.
//! - [`cluster`]: a fake Kubernetes cluster (API server, controllers, a kubelet that runs the
//!   mover binary) for end-to-end tests without a real cluster.

pub mod cluster;
pub mod fs;
pub mod oracle;
pub mod skip;
pub mod tree;
