//! The Kubernetes clusters pvc-backup's tests run against, never shipped. The engine's tests
//! use `testkit` alone and so compile no Kubernetes; only the cluster tests need this crate.
//!
//! - [`fake`]: a fake Kubernetes cluster (API server, controllers, a kubelet that runs the
//!   mover binary) for end-to-end tests without a real cluster.
//! - [`real`]: one test's namespace on a real cluster (`scripts/local-cluster.sh`), with the
//!   same methods, its volumes judged on the host; `PVC_BACKUP_TEST_CLUSTER=real` asks for it.
//! - [`objects`]: reading Kubernetes objects the way tests check them.

pub mod fake;
pub mod objects;
pub mod real;
