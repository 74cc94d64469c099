#!/usr/bin/env bash
# Runs pvc-backup's mover pods through OpenShift's own SecurityContextConstraints admission code
# (github.com/openshift/apiserver-library-go, sccmatching and sccadmission) and checks that the
# root mover is admitted under pvc-backup-mover and refused by restricted-v2, that the pods of the
# templates backup-block and backup-shared get the same verdicts, and that the --unprivileged
# mover and the operator's pod fit restricted-v2. See main.go and docs/openshift.md.
#
# The checker (main.go) is built once from the Go modules pinned in go.mod into a cache folder
# outside the repository, keyed by the pinned apiserver-library-go version and the sources; a
# second run finds it there and builds nothing.
#
#   tests/scc/run.sh                builds the checker when missing, then runs the checks
#   tests/scc/run.sh --build-only   builds the checker when missing, and stops there
#
# Environment: PVC_BACKUP_BIN, the pvc-backup binary (default: built here with cargo);
# PVC_BACKUP_CACHE (default /var/cache/pvc-backup) holds GOMODCACHE, GOCACHE and the checker.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=tests/scc

CACHE="${PVC_BACKUP_CACHE:-/var/cache/pvc-backup}"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build-scc" GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local CGO_ENABLED=0
log() { echo "run.sh: $*" >&2; }

lib_version="$(awk '$1 == "github.com/openshift/apiserver-library-go" { print $2 }' "$src/go.mod")"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
OUT="$CACHE/scc-check-$lib_version-$key"
checker="$OUT/scc-check"

if [ ! -x "$checker" ]; then
  command -v go >/dev/null || { log "Go is needed to build OpenShift's admission code (go 1.23 or later)"; exit 1; }
  mkdir -p "$OUT" "$GOMODCACHE" "$GOCACHE"
  log "building the SCC checker with apiserver-library-go $lib_version (cold: about 3 minutes on 2 cores) into $OUT"
  start=$(date +%s)
  (cd "$src" && go build -p 1 -trimpath -ldflags "-s -w" -o "$checker.tmp" .)
  mv "$checker.tmp" "$checker"
  log "built in $(( $(date +%s) - start )) s"
  # Go's build cache (1.1 GB) would only speed up building other sources; the checker is kept.
  rm -rf "$GOCACHE"
  # Checkers built from earlier sources are of no further use.
  for old in "$CACHE"/scc-check-*; do
    [ "$old" = "$OUT" ] || rm -rf "$old"
  done
fi
[ "${1:-}" = --build-only ] && exit 0

bin="${PVC_BACKUP_BIN:-}"
if [ -z "$bin" ]; then
  tdir="${CARGO_TARGET_DIR:-target}"
  case "$tdir" in /*) ;; *) tdir="$(pwd)/$tdir" ;; esac
  cargo build --locked -q -p pvc-backup
  bin="$tdir/debug/pvc-backup"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" manifests --openshift >"$work/manifests.yaml"
"$bin" backup data --dry-run=client --size 1Gi -n shop >"$work/job-root.yaml"
"$bin" backup data --dry-run=client --size 1Gi -n shop --unprivileged >"$work/job-unprivileged.yaml"
# The operator's Deployment, alone: its pod must run under restricted-v2 like the unprivileged mover.
"$bin" manifests --openshift --operator --namespace shop \
  | yq -y 'select(.kind == "Deployment" and .metadata.name == "pvc-backup-operator")' >"$work/operator.yaml"

# The templates' parameters as `oc process -p PVC_NAME=data -p PVC_BCK=data-backup` fills them;
# the others keep their defaults.
"$checker" --manifests "$work/manifests.yaml" --stock "$src/openshift-sccs.yaml" \
  --param PVC_NAME=data --param PVC_BCK=data-backup \
  --root cli="$work/job-root.yaml" \
  --root backup-block=deploy/openshift/backup-block.yaml \
  --root backup-shared=deploy/openshift/backup-shared.yaml \
  --unprivileged cli-unprivileged="$work/job-unprivileged.yaml" \
  --unprivileged operator="$work/operator.yaml"
