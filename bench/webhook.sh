#!/usr/bin/env bash
# Loads `pvc-backup webhook` on loopback with wrk and prints requests per second, the p50 and p99
# latency, and the CPU time per request of the server and of wrk (which, unlike the first three,
# hardly depends on what else runs on the machine).
#
# The requests are real AdmissionReviews over TLS with keep-alive, half of them allowed (the mover
# image) and half denied (a foreign image), as the API server sends them.
#
# Settings (environment):
#   PVC_BACKUP_BIN  the binary to test (default: build target/release/pvc-backup)
#   DURATION        how long to load (default 20s)
#   CONNECTIONS     concurrent connections (default 32)
#   THREADS         wrk threads (default 1)
#   PORT            loopback port (default 18443)
# `--small` loads for 2 seconds with 4 connections: it only checks that the script and the server
# work; its figures mean nothing.
# Run as root, it installs wrk (Debian package) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --small) DURATION=2s; CONNECTIONS=4 ;;
  "") ;;
  *) echo "usage: bench/webhook.sh [--small]" >&2; exit 2 ;;
esac

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
PORT=${PORT:-18443}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "webhook.sh: installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
  else
    echo "webhook.sh: $1 is missing; install the Debian package $2 (or run as root)" >&2
    exit 1
  fi
}
need wrk wrk
need openssl openssl
need curl curl

if [ -z "${PVC_BACKUP_BIN:-}" ]; then
  cargo build --release --locked -p pvc-backup >&2
  PVC_BACKUP_BIN=${CARGO_TARGET_DIR:-target}/release/pvc-backup
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

review() { # image
  cat <<JSON
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","userInfo":{"username":"developer","groups":["system:authenticated"]},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"mover","namespace":"shop","labels":{"app.kubernetes.io/name":"pvc-backup"}},"spec":{"serviceAccountName":"pvc-backup-deployer","automountServiceAccountToken":false,"containers":[{"name":"mover","image":"$1","args":["mover","sync","/source","/backup"],"securityContext":{"runAsUser":0,"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"],"add":["CHOWN","DAC_OVERRIDE","FOWNER","SETUID","SETGID"]}},"volumeMounts":[{"name":"source","mountPath":"/source","readOnly":true},{"name":"backup","mountPath":"/backup"}]}],"volumes":[{"name":"source","persistentVolumeClaim":{"claimName":"data","readOnly":true}},{"name":"backup","persistentVolumeClaim":{"claimName":"data-backup"}}]}},"oldObject":null,"dryRun":false}}
JSON
}
review quay.io/pvc-backup/pvc-backup:1.0 | tr -d '\n' > "$work/allow.json"
review docker.io/library/busybox:latest | tr -d '\n' > "$work/deny.json"

cat > "$work/mix.lua" <<LUA
local function slurp(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end
local bodies = { slurp("$work/allow.json"), slurp("$work/deny.json") }
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/validate", nil, bodies[(n % 2) + 1])
end
LUA

args=(webhook --listen "127.0.0.1:$PORT" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key"
      --allowed-image 'quay.io/pvc-backup/*')
RUST_LOG=warn "$PVC_BACKUP_BIN" "${args[@]}" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  curl -ksf "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -ksf "https://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

# Both verdicts must be right before anything is measured.
curl -ks -H 'Content-Type: application/json' --data-binary @"$work/allow.json" "https://127.0.0.1:$PORT/validate" | grep -q '"allowed":true'
curl -ks -H 'Content-Type: application/json' --data-binary @"$work/deny.json" "https://127.0.0.1:$PORT/validate" | grep -q '"allowed":false'

echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before the run (other processes): $(cut -d" " -f1-3 /proc/loadavg)"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, TLS keep-alive, POST /validate, 50% allowed / 50% denied"
# CPU time per request does not depend on how busy the machine is, unlike requests/s: read the
# server's utime and stime (clock ticks, fields 14 and 15 of /proc/PID/stat) around the run, and
# wrk's from bash's `time`.
cpu_ticks() { awk '{print $14, $15}' "/proc/$server_pid/stat"; }
ticks_before=$(cpu_ticks)
TIMEFORMAT='%3U %3S'
{ time wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/mix.lua" "https://127.0.0.1:$PORT" > "$work/wrk.out" ; } 2> "$work/wrk.time"
ticks_after=$(cpu_ticks)
cat "$work/wrk.out"

rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
errors=$(grep -E 'Non-2xx|Socket errors' "$work/wrk.out" || true)
echo
echo "requests/s: $rps  p50: $p50  p99: $p99"
requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
awk -v req="$requests" -v before="$ticks_before" -v after="$ticks_after" -v hz="$(getconf CLK_TCK)" \
    -v wrk="$(cat "$work/wrk.time")" 'BEGIN {
  split(before, b, " "); split(after, a, " "); split(wrk, w, " ")
  user = (a[1] - b[1]) / hz / req * 1e6; sys = (a[2] - b[2]) / hz / req * 1e6
  printf "CPU per request: server %.1f us (user %.1f, system %.1f), wrk %.1f us (%d requests)\n",
    user + sys, user, sys, (w[1] + w[2]) / req * 1e6, req
}'
[ -z "$errors" ] || { echo "webhook.sh: errors during the load: $errors" >&2; exit 1; }
curl -ks "https://127.0.0.1:$PORT/metrics" | grep '^pvc_backup_admission_requests_total'
