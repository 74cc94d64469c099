#!/usr/bin/env bash
# Rewrites the plain resource files of deploy/kustomize from `pvc-backup manifests`, after a
# change to the objects it prints. tests/deploy.rs fails until the files agree again. Needs yq
# (Debian package yq).
#
#   scripts/update-deploy.sh [BINARY]     (default: build the debug binary)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
  cargo build --locked -q -p pvc-backup
  bin="${CARGO_TARGET_DIR:-target}/debug/pvc-backup"
fi
command -v yq >/dev/null || { echo "update-deploy.sh: needs yq (apt-get install yq)" >&2; exit 1; }

# write FILE HEADER FILTER ARGS...: the objects of `manifests ARGS` that FILTER selects.
write() {
  local file="$1" header="$2" filter="$3"
  shift 3
  {
    printf '%s\n' "$header" | sed 's/^/# /'
    echo "# Written by scripts/update-deploy.sh from \`pvc-backup manifests${*:+ $*}\`; do not edit."
    env -u PVC_BACKUP_IMAGE "$bin" manifests "$@" | yq -y --explicit-start "select($filter)"
  } >"$file"
  echo "update-deploy.sh: wrote $file"
}

write deploy/kustomize/mover/mover.yaml \
  "The mover's service account (no token) and its RoleBinding to the ClusterRole backuper." \
  '.kind == "ServiceAccount" or .kind == "RoleBinding"'
write deploy/kustomize/base/cluster-roles.yaml \
  "backuper (use of the SCC, for the mover), pvc-backup-operator and pvc-backup-volumes (for people)." \
  '.kind == "ClusterRole"'
write deploy/kustomize/base/webhook.yaml \
  "The admission webhook in the namespace pvc-backup, its certificate from cert-manager." \
  '.kind != "ServiceAccount" and .kind != "RoleBinding" and .kind != "ClusterRole"' --webhook
write deploy/kustomize/operator/cluster-roles.yaml \
  "backuper (use of the SCC, for the mover), pvc-backup-operator and pvc-backup-volumes (for people and the operator's runs)." \
  '.kind == "ClusterRole" and .metadata.name != "pvc-backup-controller"' --operator
write deploy/kustomize/operator/operator.yaml \
  "The pvc-backup.io definitions and the operator in the namespace pvc-backup." \
  '.kind == "CustomResourceDefinition" or .kind == "Namespace" or .kind == "ClusterRoleBinding" or .metadata.name == "pvc-backup-controller" or .metadata.namespace == "pvc-backup"' --operator
write deploy/kustomize/openshift/scc.yaml \
  "The SecurityContextConstraints that admit the mover pod: exactly its five capabilities." \
  '.kind == "SecurityContextConstraints"' --openshift
write deploy/openshift/scc.yaml \
  "The SecurityContextConstraints that admit the mover pod: exactly its five capabilities." \
  '.kind == "SecurityContextConstraints"' --openshift
write deploy/openshift/cluster-roles.yaml \
  "backuper (use of the SCC pvc-backup-mover, for the mover), pvc-backup-operator and pvc-backup-volumes (for people)." \
  '.kind == "ClusterRole"'
write deploy/openshift/namespace.yaml \
  "The mover's service account and its RoleBinding to backuper; apply in each namespace: oc apply -n NS -f namespace.yaml" \
  '.kind == "ServiceAccount" or .kind == "RoleBinding"'
