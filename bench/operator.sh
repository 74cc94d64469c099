#!/usr/bin/env bash
# Runs `pvc-backup operator` on this host against a real API server that holds many
# BackupSchedules, and prints how long it takes to settle, its peak memory and its CPU time.
#
# It creates NAMESPACES namespaces (pvcb-bench-001, ..., labelled pvc-backup.io/bench=operator) and
# SCHEDULES BackupSchedules spread evenly over them, half naming one claim and half a selector,
# each daily at a minute of the hour twelve hours from now, so that none fires during the bench
# (the claims need not exist). Only then it starts the operator (every namespace, RUST_LOG=warn)
# and follows the schedules with `kubectl get --watch`: the operator has settled when every
# schedule has status.nextScheduleTime and the condition Ready=True. It runs HOLD seconds more and
# is stopped with SIGTERM. Figures: the time from its start until it settled; its peak memory,
# VmHWM of /proc/PID/status just before the SIGTERM; its CPU time (utime + stime of
# /proc/PID/stat) when it settled; the most sockets it held open (sampled every 0.2 s). When the
# API server drops the watch (it does, for a client slow to read a burst of changes), kubectl
# lists again: a run with a watch restart may read up to that list's time late.
#
# Every run starts an operator against schedules without a status, as the first: before runs 2..K
# the statuses the run before wrote are removed (one `kubectl replace --subresource=status` of all
# the schedules). The summary is the median of the runs, the largest for memory. Goals: settled
# within 30 s, at most 64 MiB.
#
# Needs a cluster: `scripts/local-cluster.sh up`, then `eval "$(scripts/local-cluster.sh env)"`.
# It applies the CRDs of `pvc-backup manifests --crds` (only those: that prints RBAC objects too);
# at the end, also on failure, it deletes the bench namespaces (and waits for them), and the CRDs
# when it installed them and no pvc-backup.io object is left. The operator acts in every
# namespace, so before each run the script waits (up to 10 minutes) while other namespaces hold
# pvc-backup.io objects (ALLOW_OTHERS=1 not to wait). The cluster tests delete the CRDs when they
# end, which ends a run: do not run both at once.
#
# Settings (environment):
#   PVC_BACKUP_BIN    the binary to test (default: build target/release/pvc-backup)
#   SCHEDULES         BackupSchedules (default 1000)
#   NAMESPACES        namespaces they are spread over (default 100)
#   RUNS              runs of the operator (default 3; or --runs K)
#   HOLD              seconds the operator runs on after it settled (default 10)
#   TIMEOUT           seconds it may take to settle before the run fails (default 300)
#   PORT              loopback port of its --metrics-address (default 18080)
#   PVC_BACKUP_IMAGE  its --image (default localhost/pvc-backup:dev)
#   LOGS              a folder to keep the operator's logs and the watch's lines in (default: none)
# `--small` makes 20 schedules over 4 namespaces and runs the operator twice, 2 s after settling:
# it only checks that the script and the operator work; its figures mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bench/operator.sh [--small] [--runs K]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SCHEDULES=20; NAMESPACES=4; RUNS=${RUNS:-2}; HOLD=${HOLD:-2} ;;
    --runs) [ $# -ge 2 ] || usage; RUNS=$2; shift ;;
    *) usage ;;
  esac
  shift
done

SCHEDULES=${SCHEDULES:-1000}
NAMESPACES=${NAMESPACES:-100}
RUNS=${RUNS:-3}
HOLD=${HOLD:-10}
TIMEOUT=${TIMEOUT:-300}
PORT=${PORT:-18080}
IMAGE=${PVC_BACKUP_IMAGE:-localhost/pvc-backup:dev}
LABEL=pvc-backup.io/bench=operator
PREFIX=pvcb-bench

die() { echo "operator.sh: $*" >&2; exit 1; }
for n in "$SCHEDULES" "$NAMESPACES" "$RUNS" "$HOLD" "$TIMEOUT"; do
  [[ "$n" =~ ^[0-9]+$ ]] || usage
done
[ "$NAMESPACES" -ge 1 ] && [ "$SCHEDULES" -ge "$NAMESPACES" ] && [ "$RUNS" -ge 1 ] \
  || die "needs RUNS >= 1 and SCHEDULES >= NAMESPACES >= 1"
command -v jq >/dev/null || die "jq is missing; install the Debian package jq"
if ! command -v kubectl >/dev/null || ! kubectl get --raw /readyz --request-timeout=5s >/dev/null 2>&1; then
  die "no cluster answers kubectl; start one with \`scripts/local-cluster.sh up\` and point kubectl at it with \`eval \"\$(scripts/local-cluster.sh env)\"\`"
fi

if [ -z "${PVC_BACKUP_BIN:-}" ]; then
  cargo build --release --locked -p pvc-backup >&2
  PVC_BACKUP_BIN=${CARGO_TARGET_DIR:-target}/release/pvc-backup
fi

work=$(mktemp -d)
operator_pid=
watch_pid=
installed_crds=
stop_operator() {
  [ -n "$operator_pid" ] || return 0
  kill -TERM "$operator_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$operator_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$operator_pid" 2>/dev/null; then
    echo "operator.sh: the operator did not stop within 10 s of SIGTERM; killing it" >&2
    kill -KILL "$operator_pid" 2>/dev/null || true
  fi
  wait "$operator_pid" 2>/dev/null || true
  operator_pid=
}
stop_watch() {
  [ -n "$watch_pid" ] || return 0
  # Its own process group: the loop, kubectl and jq.
  kill -- "-$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
  watch_pid=
}
cleanup() {
  stop_operator
  stop_watch
  if [ -n "$(kubectl get ns -l "$LABEL" -o name 2>/dev/null)" ]; then
    echo "operator.sh: deleting the bench namespaces" >&2
    kubectl delete ns -l "$LABEL" --wait --timeout=600s >/dev/null \
      || echo "operator.sh: the bench namespaces are not gone yet (kubectl get ns -l $LABEL)" >&2
  fi
  if [ -n "$installed_crds" ]; then
    if [ -z "$(kubectl get pvc-backup -A -o name 2>/dev/null)" ]; then
      kubectl delete --ignore-not-found --wait=false $installed_crds >/dev/null || true
    else
      echo "operator.sh: pvc-backup.io objects remain elsewhere: the CRDs stay installed" >&2
    fi
  fi
  if [ -n "${LOGS:-}" ]; then
    mkdir -p "$LOGS" && cp "$work"/operator-*.log "$work"/follow-* "$LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# pvc-backup.io objects outside the bench's namespaces: the operator would act on them too.
# None when the CRDs are not installed.
others() {
  { kubectl get pvc-backup -A -o json 2>/dev/null || echo '{"items": []}'; } \
    | jq --arg p "$PREFIX-" '[.items[] | select(.metadata.namespace | startswith($p) | not)] | length'
}
# Waits up to 10 minutes for the other objects to go (the tests of a shared cluster's users).
alone() {
  [ "${ALLOW_OTHERS:-}" = 1 ] && return 0
  local n
  for ((t = 0; t < 120; t++)); do
    n=$(others)
    [ "$n" -eq 0 ] && return 0
    (( t == 0 )) && echo "operator.sh: waiting for the $n pvc-backup.io objects of other namespaces to go: the operator would act on them too (ALLOW_OTHERS=1 not to wait)" >&2
    sleep 5
  done
  kubectl get pvc-backup -A >&2
  die "other namespaces still hold pvc-backup.io objects; remove them, or set ALLOW_OTHERS=1"
}
alone

# 1. The CRDs: only they (`manifests --crds` adds them to the RBAC of a backup namespace).
"$PVC_BACKUP_BIN" manifests --crds | kubectl create --dry-run=client -f - -o json \
  | jq -s '{apiVersion: "v1", kind: "List", items: map(select(.kind == "CustomResourceDefinition"))}' \
  > "$work/crds.json"
crds=$(jq -r '.items[] | "crd/" + .metadata.name' "$work/crds.json")
[ -n "$crds" ] || die "\`$PVC_BACKUP_BIN manifests --crds\` gave no CustomResourceDefinition"
for crd in $crds; do
  kubectl get "$crd" >/dev/null 2>&1 || installed_crds="$installed_crds $crd"
done
kubectl apply -f "$work/crds.json" >/dev/null
# shellcheck disable=SC2086
kubectl wait --for=condition=Established --timeout=60s $crds >/dev/null

# 2. The namespaces and the schedules, made from scratch.
if [ -n "$(kubectl get ns -l "$LABEL" -o name)" ]; then
  echo "operator.sh: deleting bench namespaces left by an earlier run" >&2
  kubectl delete ns -l "$LABEL" --wait --timeout=600s >/dev/null
fi

hour=$(( ($(date -u +%-H) + 12) % 24 ))
ns_name() { printf '%s-%03d' "$PREFIX" "$1"; }
for ((n = 1; n <= NAMESPACES; n++)); do
  printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {%s: "%s"}\n' \
    "$(ns_name "$n")" "${LABEL%%=*}" "${LABEL#*=}"
done > "$work/namespaces.yaml"
# Spread evenly: schedule i (from 0) goes to namespace i % NAMESPACES + 1; even ones name a
# claim, odd ones a selector. One file per namespace batch, created by one kubectl each.
batch=$(( (NAMESPACES + 9) / 10 ))
for ((i = 0; i < SCHEDULES; i++)); do
  n=$(( i % NAMESPACES + 1 ))
  if (( i % 2 == 0 )); then
    source="claim: data-$i"
  else
    source="selector: {matchLabels: {backup: nightly}}"
  fi
  printf -- '---\napiVersion: pvc-backup.io/v1alpha1\nkind: BackupSchedule\nmetadata:\n  name: s-%04d\n  namespace: %s\n  labels: {%s: "%s"}\nspec:\n  schedule: "%d %d * * *"\n  source: {%s}\n' \
    "$i" "$(ns_name "$n")" "${LABEL%%=*}" "${LABEL#*=}" $(( i % 60 )) "$hour" "$source" \
    >> "$work/schedules-$(( (n - 1) / batch )).yaml"
done
created_at=$EPOCHREALTIME
kubectl create -f "$work/namespaces.yaml" >/dev/null
for f in "$work"/schedules-*.yaml; do
  kubectl create -f "$f" >/dev/null &
done
calc() { awk "BEGIN {print $1}"; }
wait_all() { local rc=0 p; for p in "$@"; do wait "$p" || rc=1; done; return $rc; }
# shellcheck disable=SC2046
wait_all $(jobs -p) || die "creating the schedules failed"
count=$(kubectl get backupschedules -A -l "$LABEL" --no-headers | wc -l)
[ "$count" -eq "$SCHEDULES" ] || die "$count BackupSchedules exist, not $SCHEDULES"
printf 'created %d namespaces and %d BackupSchedules (daily at %02d:MM UTC) in %.1f s\n' \
  "$NAMESPACES" "$SCHEDULES" "$hour" "$(calc "$EPOCHREALTIME - $created_at")"

echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "kubernetes: $(kubectl version -o json | jq -r '"server \(.serverVersion.gitVersion), kubectl \(.clientVersion.gitVersion)"')"
echo "binary: $PVC_BACKUP_BIN ($("$PVC_BACKUP_BIN" --version))"

# Follows the schedules: one line per change, "EPOCH-SECONDS READY SEEN RESTARTS", READY the
# schedules with nextScheduleTime and Ready=True among the SEEN. The API server closes a watch
# that does not keep up with a burst of changes ("unresponsive" in its log): kubectl then lists
# and watches again, RESTARTS counting how often.
follow() {
  while :; do
    kubectl get backupschedules -A -l "$LABEL" --watch --no-headers -o \
      'custom-columns=NS:.metadata.namespace,NAME:.metadata.name,NEXT:.status.nextScheduleTime,READY:.status.conditions[?(@.type=="Ready")].status' \
      2>>"$work/watch.err" || sleep 0.5
    echo RESTART
  done | jq -R -n --unbuffered -r 'foreach inputs as $l ({seen: {}, ready: 0, restarts: 0};
      if $l == "RESTART" then .restarts += 1
      else ($l | [splits(" +")]) as $f
        | ($f[0] + "/" + $f[1]) as $k
        | ($f[2] != "<none>" and $f[3] == "True") as $r
        | (.seen[$k] // false) as $was
        | .seen[$k] = $r
        | .ready += (if $r == $was then 0 elif $r then 1 else -1 end)
      end;
      "\(now) \(.ready) \(.seen | length) \(.restarts)")' > "$work/follow"
}
# Clock ticks of user and system time of process $1.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
kb_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

results=()
failed=
for ((run = 1; run <= RUNS; run++)); do
  if (( run > 1 )); then
    kubectl get backupschedules -A -l "$LABEL" -o json | jq 'del(.items[].status)' \
      | kubectl replace --subresource=status -f - >/dev/null
    left=$(kubectl get backupschedules -A -l "$LABEL" -o json \
      | jq '[.items[] | select(.status.nextScheduleTime != null)] | length')
    [ "$left" -eq 0 ] || die "$left schedules still have a status after clearing"
  fi
  alone
  : > "$work/follow"
  : > "$work/watch.err"
  set -m
  follow &
  watch_pid=$!
  set +m
  # Every schedule seen, none settled.
  for _ in $(seq 300); do
    [ "$(tail -n1 "$work/follow" | cut -d' ' -f3)" = "$SCHEDULES" ] && break
    [ -s "$work/watch.err" ] && break
    kill -0 "$watch_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$(tail -n1 "$work/follow" | cut -d' ' -f2-3)" = "0 $SCHEDULES" ] \
    || { cat "$work/watch.err" >&2; die "the watch of the schedules did not start (last: $(tail -n1 "$work/follow"))"; }

  load=$(cut -d' ' -f1-3 /proc/loadavg)
  log="$work/operator-$run.log"
  kubeconfig=()
  [ -n "${KUBECONFIG:-}" ] && kubeconfig=(--kubeconfig "$KUBECONFIG")
  start=$EPOCHREALTIME
  RUST_LOG=warn "$PVC_BACKUP_BIN" operator "${kubeconfig[@]}" --image "$IMAGE" \
    --metrics-address "127.0.0.1:$PORT" 2>"$log" &
  operator_pid=$!
  settled= first= cpu= sockets=0 restarts=0
  while :; do
    last=$(tail -n1 "$work/follow")
    ready=$(echo "$last" | cut -d' ' -f2)
    if [ -z "$first" ] && [ "${ready:-0}" -gt 0 ]; then
      first=$(awk '$2 > 0 {print $1; exit}' "$work/follow")
    fi
    if [ "$ready" = "$SCHEDULES" ]; then
      cpu=$(cpu_ticks "$operator_pid")
      settled=$(echo "$last" | cut -d' ' -f1)
      restarts=$(echo "$last" | cut -d' ' -f4)
      break
    fi
    kill -0 "$operator_pid" 2>/dev/null || { cat "$log" >&2; die "run $run: the operator exited"; }
    [ -s "$work/watch.err" ] && { cat "$work/watch.err" >&2; die "run $run: the watch of the schedules failed (the CRDs deleted?)"; }
    s=$(find "/proc/$operator_pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
    (( s > sockets )) && sockets=$s
    if awk "BEGIN {exit !($EPOCHREALTIME - $start > $TIMEOUT)}"; then
      echo "operator.sh: run $run: $ready of $SCHEDULES schedules settled after $TIMEOUT s" >&2
      failed=1
      break
    fi
    sleep 0.2
  done
  [ -n "$failed" ] && break
  sleep "$HOLD"
  kill -0 "$operator_pid" 2>/dev/null || { cat "$log" >&2; die "run $run: the operator exited"; }
  hwm=$(kb_of "$operator_pid" VmHWM)
  rss=$(kb_of "$operator_pid" VmRSS)
  cpu_all=$(cpu_ticks "$operator_pid")
  stop_operator
  stop_watch
  cp "$work/follow" "$work/follow-$run"
  warnings=$(grep -c -E 'WARN|ERROR' "$log" || true)
  shared=$(others) tag=$run
  if [ "$shared" -gt 0 ]; then
    echo "operator.sh: run $run: $shared pvc-backup.io objects of other namespaces appeared during the run; the operator may have acted on them, and its figures are marked *" >&2
    tag="$run*"
  fi
  results+=("$(awk -v r="$tag" -v load="$load" -v s="$start" -v f="$first" -v d="$settled" \
    -v hwm="$hwm" -v rss="$rss" -v c="$cpu" -v ca="$cpu_all" -v hz="$hz" -v w="$warnings" \
    -v so="$sockets" -v re="$restarts" 'BEGIN {
    printf "%s|%s|%.1f|%.1f|%.1f|%.1f|%.2f|%.2f|%d|%d|%d\n", r, load, f - s, d - s, hwm / 1024,
      rss / 1024, c / hz, ca / hz, so, re, w }')")
  if [ "$warnings" -gt 0 ]; then
    echo "operator.sh: run $run: the operator logged $warnings warnings or errors; the first:" >&2
    grep -m5 -E 'WARN|ERROR' "$log" >&2
  fi
done

col() { printf '%s\n' "${results[@]}" | cut -d'|' -f"$1"; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
largest() { sort -g | tail -n1; }
echo
echo "$SCHEDULES BackupSchedules over $NAMESPACES namespaces; times from the operator's start"
{
  echo "run|load average before|first settled s|all settled s|peak RSS MiB|RSS at stop MiB|CPU s to settle|CPU s at stop|sockets (most)|watch restarts|warnings"
  printf '%s\n' "${results[@]}"
  if [ "${#results[@]}" -gt 1 ]; then
    printf 'median|-|%s|%s|%s (largest)|%s|%s|%s|%s|-|-\n' "$(col 3 | median)" "$(col 4 | median)" \
      "$(col 5 | largest)" "$(col 6 | median)" "$(col 7 | median)" "$(col 8 | median)" "$(col 9 | median)"
  fi
} | column -t -s'|'
[ -z "$failed" ] || die "run $((${#results[@]} + 1)) did not settle within $TIMEOUT s"
settle=$(col 4 | median)
peak=$(col 5 | largest)
verdict() { if awk "BEGIN {exit !($1)}"; then echo met; else echo "NOT met"; fi; }
echo "goal: settled within 30 s: $(verdict "$settle <= 30") ($settle s, median of ${#results[@]})"
echo "goal: peak memory at most 64 MiB: $(verdict "$peak <= 64") ($peak MiB, largest of ${#results[@]})"
