#!/usr/bin/env bash
# Versioned-backup benchmark: `pvc-backup mover backup` against restic, and `mover verify`
# against b3sum and sha256sum over the same files.
#
# Cases (datasets from bench/mkdata.sh, on tmpfs):
#   first backup of D1 into an empty repository      pvc-backup backup vs restic backup
#   second backup of D1 with nothing changed          pvc-backup backup vs restic backup
#   space used after both backups                     du of the target vs du of the repository
#   verify of D2 (8 x 512 MiB) after a backup         pvc-backup verify vs b3sum, sha256sum
# Beside them, a reference measured with other programs doing only the part of a no-change
# snapshot that the layout itself asks for: a stat of every source entry and a hard link of every
# file into a new tree (cp -al, one process per core, each over its share of D1's top-level
# folders). Where its ratio to restic is above the target, meeting the target needs that part
# alone done faster than cp does it.
# One untimed first backup by each tool comes before the timed runs (see "warm-up" below).
# The page cache is dropped before each timed run when root. Each figure is the median of --runs
# runs (3 by default); wall time and peak RSS come from /usr/bin/time. restic runs with a fixed
# password from the environment and no compression beyond its default.
#
# Usage: bench/backup.sh [--small] [--runs N] [--dir DIR]
#   --small  a few thousand files and 2 x 8 MiB, one run: checks that the script works.
# Env: PVC_BACKUP_BIN (default: cargo build --release, then target/release/pvc-backup),
#      MKDATA (default bench/mkdata.sh).
# Progress goes to stderr, the Markdown table to stdout.
set -euo pipefail

SMALL=0; RUNS=""; DIR="${TMPDIR:-/var/tmp}/pvc-backup-bench-backup"
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --runs) RUNS="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "backup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MKDATA="${MKDATA:-$ROOT/bench/mkdata.sh}"
log() { echo "backup.sh: [${SECONDS}s] $*" >&2; }
die() { log "$*"; exit 1; }
[ -f "$MKDATA" ] || die "dataset generator not found: $MKDATA"
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

if [ "$SMALL" = 1 ]; then
  D1_ENV=(NFILES=3000 NDIRS=30); D2_ENV=(NBIG=2 BIGMIB=8); RUNS="${RUNS:-1}"; TMPFS_SIZE=1G
else
  D1_ENV=(NFILES=100000 NDIRS=1000); D2_ENV=(NBIG=8 BIGMIB=512); RUNS="${RUNS:-3}"; TMPFS_SIZE=14G
fi

# Tools: restic, b3sum and time come from Debian; as root they are installed when missing.
need=(restic:restic b3sum:b3sum /usr/bin/time:time sha256sum:coreutils python3:python3)
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

if [ -n "${PVC_BACKUP_BIN:-}" ]; then
  BIN="$PVC_BACKUP_BIN"
else
  log "building pvc-backup (release)"
  (cd "$ROOT" && cargo build --release -q -p pvc-backup)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pvc-backup"
fi
[ -x "$BIN" ] || die "pvc-backup binary not found: $BIN"

cleanup() {
  if mountpoint -q "$DIR/fs" 2>/dev/null; then umount "$DIR/fs" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
rm -rf "$DIR"; mkdir -p "$DIR/fs" "$DIR/res"
if [ "$IS_ROOT" = 1 ]; then
  mount -t tmpfs -o "size=$TMPFS_SIZE" tmpfs "$DIR/fs"
  W="$DIR/fs"
else
  W="$(mktemp -d /dev/shm/pvc-backup-bench-backup.XXXXXX)"
  trap 'rm -rf "$W"; cleanup' EXIT
fi

drop_caches() { if [ "$IS_ROOT" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }

# timed NAME CMD...: runs CMD once, appends "seconds peakKiB" to $DIR/res/NAME.
timed() {
  local name="$1"; shift
  drop_caches
  /usr/bin/time -f '%e %M' -o "$DIR/res/time.tmp" "$@" >"$DIR/res/out.tmp" 2>"$DIR/res/err.tmp" \
    || { cat "$DIR/res/err.tmp" >&2; die "$name failed: $*"; }
  cat "$DIR/res/time.tmp" >>"$DIR/res/$name"
  log "$name: $(cut -d' ' -f1 "$DIR/res/time.tmp") s"
}

median() { # FILE column(1=seconds, 2=KiB)
  awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

log "building D1 and D2"
env "${D1_ENV[@]}" "$MKDATA" d1 "$W/d1" >&2
env "${D2_ENV[@]}" "$MKDATA" d2 "$W/d2" >&2
export RESTIC_PASSWORD=pvc-backup-bench

# One untimed first backup by each tool: in a virtual machine, memory the guest has not touched
# before, or has handed back to its host, costs several times the kernel time on first use (see
# docs/benchmarks.md), so without this whichever tool runs first would pay for it.
log "warm-up: an untimed first backup of D1 by each tool"
"$BIN" mover backup -q "$W/d1" "$W/pvcb" >/dev/null || die "pvc-backup's warm-up backup failed"
restic init -q --repo "$W/restic" >/dev/null
restic backup -q --repo "$W/restic" "$W/d1" >/dev/null || die "restic's warm-up backup failed"

for run in $(seq "$RUNS"); do
  log "run $run of $RUNS: first and second backup of D1"
  rm -rf "$W/pvcb" "$W/restic"
  timed first_pvcb "$BIN" mover backup -q "$W/d1" "$W/pvcb"
  restic init -q --repo "$W/restic" >/dev/null
  timed first_restic restic backup -q --repo "$W/restic" "$W/d1"
  sleep 1.1 # snapshot names are times to the second
  timed second_pvcb "$BIN" mover backup -q "$W/d1" "$W/pvcb"
  timed second_restic restic backup -q --repo "$W/restic" "$W/d1"
  # Both backups must hold exactly D1 (checked outside the timing). A snapshot made without root
  # also holds .pvc-backup/, the owners it could not set (docs/mover.md).
  out=$(rsync -aHAXn --numeric-ids --delete --itemize-changes --exclude=/.pvc-backup "$W/d1/" "$W/pvcb/latest/")
  [ -z "$out" ] || die "the latest snapshot differs from D1: $out"
  "$BIN" mover verify "$W/pvcb" --snapshot all >/dev/null || die "mover verify failed on the D1 backup"
  echo "$(du -sk "$W/pvcb" | cut -f1) $(du -sk "$W/restic" | cut -f1)" >"$DIR/res/space"
done

# The reference runs after all the backups: what it frees (a tree of links) would otherwise be
# warm memory for the backup after it. It fails the step when any cp fails, and its tree must
# hold as many entries as D1, so that it never times less work.
LINK_ALL='src=$1 dst=$2 n=$(nproc); mkdir "$dst" || exit 1
  mapfile -d "" names < <(find "$src" -mindepth 1 -maxdepth 1 -printf "%f\0")
  [ ${#names[@]} -gt 0 ] || exit 1
  pids=()
  for ((g = 0; g < n; g++)); do
    grp=(); for ((i = g; i < ${#names[@]}; i += n)); do grp+=("$src/${names[i]}"); done
    if [ ${#grp[@]} -gt 0 ]; then cp -al -t "$dst" "${grp[@]}" & pids+=($!); fi
  done
  s=0; for p in "${pids[@]}"; do wait "$p" || s=1; done; exit $s'
for run in $(seq "$RUNS"); do
  log "run $run of $RUNS: reference, a stat and a hard link of every entry (cp -al, $(nproc) at once)"
  rm -rf "$W/links"
  timed link_ref bash -c "$LINK_ALL" link-all "$W/d1" "$W/links"
  [ "$(find "$W/links" | wc -l)" = "$(find "$W/d1" | wc -l)" ] || die "the reference's tree does not hold all of D1"
done
rm -rf "$W/links"

log "verify of D2"
rm -rf "$W/pvcb2"
"$BIN" mover backup -q "$W/d2" "$W/pvcb2"
for run in $(seq "$RUNS"); do
  timed verify_pvcb "$BIN" mover verify "$W/pvcb2"
  timed verify_b3sum sh -c "cd '$W/pvcb2/latest' && b3sum --num-threads \$(nproc) *"
  timed verify_sha256 sh -c "cd '$W/pvcb2/latest' && sha256sum *"
done

ratio_of() { # pvcb-name other-name: the ratio of their medians
  awk -v a="$(median "$DIR/res/$1" 1)" -v b="$(median "$DIR/res/$2" 1)" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'
}
row() { # label pvcb-name other-name
  printf '| %s | %s | %s | %s | %s MiB / %s MiB |\n' "$1" "$(median "$DIR/res/$2" 1)" "$(median "$DIR/res/$3" 1)" \
    "$(ratio_of "$2" "$3")" "$(( $(median "$DIR/res/$2" 2) / 1024 ))" "$(( $(median "$DIR/res/$3" 2) / 1024 ))"
}
read -r space_pvcb space_restic <"$DIR/res/space"
echo "| case | pvc-backup s | other s | ratio | peak RSS (pvc-backup / other) |"
echo "|---|---|---|---|---|"
row "D1 first backup vs restic" first_pvcb first_restic
row "D1 second backup, nothing changed, vs restic" second_pvcb second_restic
row "reference (cp -al in the pvc-backup column): a stat and a link of every entry, one cp per core, vs restic's D1 second backup" link_ref second_restic
row "verify D2 vs b3sum (all cores)" verify_pvcb verify_b3sum
row "verify D2 vs sha256sum" verify_pvcb verify_sha256
echo
echo "Space after both D1 backups: pvc-backup $((space_pvcb / 1024)) MiB, restic $((space_restic / 1024)) MiB (du -sk)."
judge() { awk -v v="$1" -v lim="$2" -v a="$3" -v b="$4" 'BEGIN { print (v != "-" && v + 0 <= lim + 0) ? a : b }'; }
first=$(ratio_of first_pvcb first_restic); second=$(ratio_of second_pvcb second_restic); ref=$(ratio_of link_ref second_restic)
echo
echo "| target | measured | met? | reference (cp -al, one per core) |"
echo "|---|---|---|---|"
echo "| D1 first backup: at most 0.2 of restic's time | $first | $(judge "$first" 0.2 met "not met") | |"
echo "| D1 second backup, nothing changed: at most 0.1 of restic's time | $second | $(judge "$second" 0.1 met "not met") | $ref ($(judge "$ref" 0.1 "below the target" "above the target")) |"
echo
echo "Runs: $RUNS (median). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), tmpfs."
