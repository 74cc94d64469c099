#!/usr/bin/env bash
# How long a workload is down during `pvc-backup migrate`, on the local cluster
# (scripts/local-cluster.sh): a Deployment whose claim holds D1 (100,000 small files) moves to
# the StorageClass `other` while 1% of the files change during the live copy.
#
#   bench/downtime.sh [--small]        (root; the local cluster up)
#
# Downtime is measured from outside, by polling the API server: from the moment the Deployment
# has no ready pod to the moment a ready pod of it mounts the new claim. The CLI's own steps are
# timed from its stderr: the final copy (workload stopped) and the verification.
#
# Environment: PVC_BACKUP_BIN (default ${CARGO_TARGET_DIR:-target}/release/pvc-backup),
# MKDATA (default bench/mkdata.sh), KUBECONFIG etc. as `scripts/local-cluster.sh env`
# prints them (this script evaluates it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
small=false
[ "${1:-}" = --small ] && small=true
[ "$(id -u)" = 0 ] || { echo "downtime.sh: needs root (the claim's folder is filled on the host)" >&2; exit 1; }
eval "$("$ROOT/scripts/local-cluster.sh" env)"
tdir="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${PVC_BACKUP_BIN:-$tdir/release/pvc-backup}"
MKDATA="${MKDATA:-$ROOT/bench/mkdata.sh}"
[ -x "$BIN" ] || { echo "downtime.sh: $BIN is missing: cargo build --release, or set PVC_BACKUP_BIN" >&2; exit 1; }
[ -f "$MKDATA" ] || { echo "downtime.sh: the dataset generator $MKDATA is missing; set MKDATA" >&2; exit 1; }
kubectl get --raw /readyz >/dev/null || { echo "downtime.sh: the local cluster is not up: scripts/local-cluster.sh up" >&2; exit 1; }

NS="pvcb-downtime-$$"
PV="pv-$NS-data"
DIR="/tmp/hostpath_pv/static/$PV"
WORK="$(mktemp -d /tmp/pvcb-downtime.XXXXXX)"
cleanup() {
  kubectl delete namespace "$NS" --wait=true --timeout=120s >/dev/null 2>&1 || true
  kubectl delete pv "$PV" --wait=false >/dev/null 2>&1 || true
  rm -rf "$DIR" "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }

kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pvc-backup.io/test=true >/dev/null
"$BIN" manifests --backup-namespace "$NS" | kubectl apply -f - >/dev/null
mkdir -p "$DIR"
if $small; then
  NFILES=2000 NDIRS=20 bash "$MKDATA" d1 "$DIR" >&2
else
  bash "$MKDATA" d1 "$DIR" >&2
fi
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: $PV, labels: {pvc-backup.io/test: "true"}}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  claimRef: {kind: PersistentVolumeClaim, apiVersion: v1, namespace: $NS, name: data}
  hostPath: {path: $DIR, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
  storageClassName: standard
  volumeName: $PV
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: $PVC_BACKUP_TEST_TOOLS_IMAGE
        command: [sleep, "86400"]
        readinessProbe: {exec: {command: [cat, /data/t00/d0000/f000000.bin]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
kubectl -n "$NS" rollout status deployment/web --timeout=180s >/dev/null

# The migration, its stderr time-stamped line by line.
( "$BIN" migrate data --storage-class other -n "$NS" 2>&1 >/dev/null | while IFS= read -r line; do
    echo "$(now) $line"; done >"$WORK/steps" ) &
mig=$!

# 1% of the files change while the live copy runs (once its mover has started).
until grep -q 'mover running in pod' "$WORK/steps" 2>/dev/null; do
  kill -0 $mig 2>/dev/null || break
  sleep 0.05
done
changed="$(bash "$MKDATA" modify "$DIR" 1 7)"
changed_at="$(now)"

# Downtime as the API server shows it.
down=""; up=""
while kill -0 $mig 2>/dev/null || [ -z "$up" ]; do
  state="$(kubectl -n "$NS" get deployment web \
    -o jsonpath='{.status.readyReplicas}/{.spec.template.spec.volumes[0].persistentVolumeClaim.claimName}' 2>/dev/null || true)"
  t="$(now)"
  ready="${state%%/*}"; claim="${state#*/}"
  if [ -z "$down" ] && [ "${ready:-0}" = 0 ]; then down="$t"; fi
  if [ -n "$down" ] && [ "${ready:-0}" = 1 ] && [ "$claim" != data ]; then up="$t"; break; fi
  if ! kill -0 $mig 2>/dev/null && [ -z "$down" ]; then break; fi
  sleep 0.1
done
wait $mig || { echo "downtime.sh: the migration failed:" >&2; cat "$WORK/steps" >&2; exit 1; }
[ -n "$down" ] && [ -n "$up" ] || { echo "downtime.sh: the workload's stop or return was not seen:" >&2; cat "$WORK/steps" >&2; exit 1; }

step_at() { grep -m1 "$1" "$WORK/steps" | cut -d' ' -f1; }
live="$(step_at 'copying while the workload runs')"
scale="$(step_at 'to zero')"
final="$(step_at 'copying the last changes')"
verify="$(step_at 'verifying the copy')"
point="$(step_at 'pointing ')"

# The copy must hold the changed source exactly (rsync, run as root on the host, as the judge).
new_dir="$(kubectl get pv "$(kubectl -n "$NS" get pvc data-other -o jsonpath='{.spec.volumeName}')" -o jsonpath='{.spec.hostPath.path}')"
diff="$(rsync -aHAXn --numeric-ids --itemize-changes --delete --exclude /.pvc-backup "$DIR/" "$new_dir/")"
[ -z "$diff" ] || { echo "downtime.sh: the new claim differs from the source:" >&2; echo "$diff" | head >&2; exit 1; }

sec() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
echo "## migrate downtime ($( $small && echo 'small: 2,000 files' || echo 'D1: 100,000 files'), $changed files changed during the live copy)"
echo
echo "| measure | seconds |"
echo "|---|---|"
echo "| live copy (workload running), to the scale-down | $(sec "$live" "$scale") |"
echo "| **downtime**: no ready pod until a ready pod on the new claim | **$(sec "$down" "$up")** |"
echo "| of which the final copy (workload stopped) | $(sec "$final" "$verify") |"
echo "| of which the verification | $(sec "$verify" "$point") |"
echo "| the 1% change was written by | $(sec "$live" "$changed_at") after the live copy began |"
cat "$WORK/steps" >&2
