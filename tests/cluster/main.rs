//! End-to-end tests of the cluster commands: the real `pvc-backup` binary against the fake
//! cluster of the testkit, whose kubelet runs the real mover on folders. Data on disk is checked
//! with rsync and the standard library, objects through the k8s-openapi types.

mod backup;
mod clone;
mod migrate;
mod restore;
mod util;
