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

/// Makes ring the process's TLS provider before a test makes a client: with the two providers
/// the workspace compiles in (ring, and aws-lc-rs from the repository crate's S3 client), rustls
/// picks none by itself and kube's client would panic.
pub fn use_ring_for_tls() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
