#!/usr/bin/env bash
# Builds, once, the Kubernetes components and etcd that scripts/local-cluster.sh runs, from the Go
# modules of one pinned release, into a cache folder outside the repository keyed by version.
# A second run finds the binaries there and builds nothing.
#
#   build.sh            builds what is missing, then prints the folder that holds the binaries
#   build.sh --path     prints that folder only
#
# Environment: PVC_BACKUP_CACHE (default /var/cache/pvc-backup) holds GOMODCACHE, GOCACHE and the
# binaries; KUBE_VERSION and ETCD_VERSION pin the releases.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.17}"
CACHE="${PVC_BACKUP_CACHE:-/var/cache/pvc-backup}"
OUT="$CACHE/kubernetes-$KUBE_VERSION-etcd-$ETCD_VERSION"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local CGO_ENABLED=0

if [ "${1:-}" = --path ]; then echo "$OUT"; exit 0; fi

BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd)
have_all() { for b in "${BINS[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done; }
if have_all; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build Kubernetes' components (go 1.24 or later)" >&2; exit 1; }
mkdir -p "$OUT/src/kube" "$OUT/src/etcd" "$OUT/bin" "$GOMODCACHE" "$GOCACHE"
log() { echo "build.sh: $*" >&2; }

# k8s.io/kubernetes replaces its staging modules with folders that a module download leaves out:
# a module of our own requires it and points each staging module at its published version.
minor="${KUBE_VERSION#v1.}"; staging_version="v0.$minor"
STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)
{
  echo "module pvcbackup.local/kube"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  for m in "${STAGING[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $staging_version"; done
} >"$OUT/src/kube/go.mod"
cat >"$OUT/src/kube/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO

git_minor="${minor%%.*}"
ldflags="-s -w"
for v in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$git_minor"
  ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
log "building Kubernetes $KUBE_VERSION (cold: 4 to 10 minutes on 2 cores) into $OUT"
(
  cd "$OUT/src/kube"
  go mod tidy -e >/dev/null 2>&1 || true
  go mod download
  go build -tags tools -trimpath -ldflags "$ldflags" -o "$OUT/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl
)
log "Kubernetes built in $(( $(date +%s) - start )) s"

# etcd's server module has replace lines too, and its root package is the etcd command.
start=$(date +%s)
cat >"$OUT/src/etcd/go.mod" <<GOMOD
module pvcbackup.local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
cat >"$OUT/src/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
(
  cd "$OUT/src/etcd"
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
    echo "replace go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION" >>go.mod
  done
  go mod tidy -e >/dev/null 2>&1 || true
  go build -tags tools -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3
)
log "etcd built in $(( $(date +%s) - start )) s"
have_all || { echo "build.sh: the build ended without every binary in $OUT/bin" >&2; exit 1; }
# Go's build cache (3.4 GB here) would only speed up building another version; the binaries are
# kept, and a test machine's disk is scarcer than those minutes.
rm -rf "$GOCACHE"
echo "$OUT"
