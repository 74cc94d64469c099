//! End-to-end tests of the cluster commands: the real `pvc-backup` binary against the fake
//! cluster of `testcluster`, whose kubelet runs the real mover on folders, and with
//! `PVC_BACKUP_TEST_CLUSTER=real` against the local cluster of `scripts/local-cluster.sh`
//! (Kubernetes' own components, a kubelet running the pvc-backup image). Data on disk is checked
//! with rsync and the standard library, objects through the k8s-openapi types.

mod backup;
mod clone;
mod migrate;
mod real_only;
mod restore;
mod resume;
mod util;
