#!/usr/bin/env bash
# File-mirror benchmark: `pvc-backup mover sync` against rsync, cp -a and tar | tar.
#
# Datasets (built with bench/mkdata.sh, deterministic):
#   D1  100,000 files of 1-16 KiB in 1,000 folders
#   D2  8 files of 512 MiB
#   D3  D1 after `mkdata.sh modify DIR 1` (1% of the files rewritten)
# Each runs on tmpfs and on ext4 on a loop device, source and target on the same filesystem. The
# ext4 image lives in RAM (its own tmpfs) unless --ext4-on-disk puts it under --dir: with the
# page cache dropped, ext4 then reads through the block layer, and the figures do not depend on
# a disk shared with other work. Cases:
#   full copy into an empty target   D1, D2: all four tools
#   re-run with nothing changed       D1, D2: pvc-backup and rsync --delete (cp -a and tar have
#                                     no incremental mode)
#   re-run after the 1% change (D3)   pvc-backup and rsync --delete, both starting from a target
#                                     that mirrors D1
# Beside them, two references measured with other programs, each doing only the part of the work
# no correct tool can skip: reading every source file (8 cat at once) for a full copy, and the
# attributes of every entry on both sides (one find per side, both at once) for a re-run. Where a
# reference is above a target, meeting it needs that part alone done faster than they do it.
# The page cache is dropped before every timed run (the tools' executables are read back in);
# each figure is the median of --runs runs
# (3 by default); wall time and peak RSS come from /usr/bin/time. After every pvc-backup run the
# target is checked with `rsync -aHAXn --delete --itemize-changes`: any difference is a failure.
# Last, the peak memory of pvc-backup on 1,000,000 small files (tmpfs, one run) is compared with
# its peak on D1.
#
# With --baseline BIN, a second pvc-backup build (for example one of main, before a change) runs
# in every pvc-backup case beside the first, interleaved with it, and the report gives the ratio
# of the two: a slowdown of the change shows in the same run, on the same data.
#
# Usage: bench/compare.sh [--small] [--runs N] [--dir DIR] [--ext4-on-disk] [--baseline BIN]
#   --small   a check that the script works: a few thousand files, one run; tmpfs only (a tmpfs
#             folder such as /dev/shm) and no cache dropping when not root. No timing meaning.
#   --dir     work folder for mount points, the ext4 image and results
#             (default ${TMPDIR:-/var/tmp}/pvc-backup-bench-compare); removed at the end.
#   --baseline  another pvc-backup binary to time in every pvc-backup case, as "baseline"
# Env: PVC_BACKUP_BIN (the binary; default: `cargo build --release -p pvc-backup`, then
#      ${CARGO_TARGET_DIR:-target}/release/pvc-backup), MKDATA (default
#      bench/mkdata.sh).
# Progress goes to stderr; the Markdown report to stdout.
set -euo pipefail

SMALL=0
RUNS=""
EXT4_ON_DISK=0
BASE_BIN=""
DIR="${TMPDIR:-/var/tmp}/pvc-backup-bench-compare"
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --runs) RUNS="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    --ext4-on-disk) EXT4_ON_DISK=1 ;;
    --baseline) BASE_BIN="$2"; shift ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MKDATA="${MKDATA:-$ROOT/bench/mkdata.sh}"
log() { echo "compare.sh: [${SECONDS}s] $*" >&2; }
die() { log "$*"; exit 1; }
[ -f "$MKDATA" ] || die "dataset generator not found: $MKDATA"

IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

# Dataset sizes. The peak-memory run on many files uses 1,000,000 files, or 10,000 in small mode.
if [ "$SMALL" = 1 ]; then
  D1_ENV=(NFILES=3000 NDIRS=30 MINKIB=1 MAXKIB=16)
  D2_ENV=(NBIG=2 BIGMIB=8)
  MANY_ENV=(NFILES=10000 NDIRS=100 MINKIB=1 MAXKIB=1)
  RUNS="${RUNS:-1}"
  TMPFS_SIZE=1G; EXT4_MIB=512
else
  D1_ENV=(NFILES=100000 NDIRS=1000 MINKIB=1 MAXKIB=16)
  D2_ENV=(NBIG=8 BIGMIB=512)
  MANY_ENV=(NFILES=1000000 NDIRS=10000 MINKIB=1 MAXKIB=1)
  RUNS="${RUNS:-3}"
  TMPFS_SIZE=13G; EXT4_MIB=16384
  # A baseline keeps a fourth 4 GiB mirror of D2 beside the source and the other two.
  [ -z "$BASE_BIN" ] || { TMPFS_SIZE=18G; EXT4_MIB=20480; }
fi
case "$RUNS" in ''|*[!0-9]*|0) die "--runs needs a positive number" ;; esac
envval() { local k="$1" kv; shift; for kv in "$@"; do if [ "${kv%%=*}" = "$k" ]; then echo "${kv#*=}"; fi; done; }

# Tools. As root, missing Debian packages are installed; otherwise they are named and we stop.
need_cmds=(rsync:rsync /usr/bin/time:time python3:python3 tar:tar cp:coreutils find:findutils xargs:findutils)
[ "$IS_ROOT" = 1 ] && need_cmds+=(mkfs.ext4:e2fsprogs losetup:mount mount:mount fstrim:util-linux)
missing=()
for cp in "${need_cmds[@]}"; do
  command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$IS_ROOT" = 1 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    die "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})"
  fi
fi

if [ -n "${PVC_BACKUP_BIN:-}" ]; then
  BIN="$PVC_BACKUP_BIN"
else
  log "building pvc-backup (release)"
  (cd "$ROOT" && cargo build --release -p pvc-backup >&2)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pvc-backup"
  case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
fi
[ -x "$BIN" ] || die "pvc-backup binary not found or not executable: $BIN"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
if [ -n "$BASE_BIN" ]; then
  [ -x "$BASE_BIN" ] || die "--baseline: pvc-backup binary not found or not executable: $BASE_BIN"
  BASE_BIN="$(cd "$(dirname "$BASE_BIN")" && pwd)/$(basename "$BASE_BIN")"
fi

# Work area, mounts and loop devices; all removed on exit.
MOUNTS=()
LOOPS=()
TD=""
cleanup() {
  local rc=$? i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  for i in "${LOOPS[@]}"; do losetup -d "$i" 2>/dev/null || true; done
  rm -rf "$DIR" 2>/dev/null || true
  [ -z "$TD" ] || rm -rf "$TD"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "$DIR"
mkdir -p "$DIR/res"
RES="$DIR/res"

# Filesystems to run on: "label:mountpoint".
FSLIST=()
mount_tmpfs() { # mountpoint size
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2,nr_inodes=0,mode=0755" pvcb-bench "$1"
  MOUNTS+=("$1")
}
if [ "$IS_ROOT" = 1 ]; then
  mount_tmpfs "$DIR/tmpfs" "$TMPFS_SIZE"
  FSLIST+=("tmpfs:$DIR/tmpfs")
  IMG="$DIR/ext4.img"
  if [ "$EXT4_ON_DISK" = 0 ]; then
    mount_tmpfs "$DIR/ext4-image" "$((EXT4_MIB + 256))M"
    IMG="$DIR/ext4-image/ext4.img"
  fi
  truncate -s "${EXT4_MIB}M" "$IMG"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$IMG"
  LOOP=$(losetup --find --show --direct-io=on "$IMG" 2>/dev/null || losetup --find --show "$IMG")
  LOOPS+=("$LOOP")
  mkdir -p "$DIR/ext4"
  mount -t ext4 "$LOOP" "$DIR/ext4"
  MOUNTS+=("$DIR/ext4")
  FSLIST+=("ext4:$DIR/ext4")
else
  [ "$SMALL" = 1 ] || die "the full benchmark needs root (tmpfs and loop mounts, dropping the page cache); --small runs without"
  shm="${TMPFS_DIR:-/dev/shm}"
  [ "$(stat -f -c %T "$shm" 2>/dev/null)" = tmpfs ] && [ -w "$shm" ] \
    || die "not root and $shm is not a writable tmpfs (set TMPFS_DIR to one)"
  TD="$(mktemp -d "$shm/pvc-backup-bench.XXXXXX")"
  FSLIST+=("tmpfs:$TD")
  log "not root: tmpfs folder $TD only, page cache not dropped"
fi

# Gives the space of deleted files back to the image's tmpfs (untimed; a no-op on tmpfs).
trim() { if [ "$CUR_FS" = ext4 ]; then fstrim "$CUR_MNT" 2>/dev/null || true; fi; }
# The programs themselves (and their libraries) are read back in right after the drop: the
# figures are about the data, not about loading an executable from a busy disk.
WARM=()
for exe in "$BIN" ${BASE_BIN:+"$BASE_BIN"} "$(command -v rsync)" "$(command -v cp)" "$(command -v tar)" "$(command -v bash)" /usr/bin/time \
  "$(command -v find)" "$(command -v xargs)" "$(command -v cat)"; do
  WARM+=("$exe")
  while read -r lib; do WARM+=("$lib"); done < <(ldd "$exe" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
drop_caches() {
  if [ "$IS_ROOT" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
  cat "${WARM[@]}" > /dev/null
}

# timed KEY CMD...: runs CMD once after dropping the page cache; appends "seconds peak_kib" to
# $RES/KEY. A tool that fails stops the benchmark.
timed() {
  local key="$1"; shift
  drop_caches
  if ! /usr/bin/time -f '%e %M' -o "$RES/time.tmp" "$@" >/dev/null 2>"$RES/err.tmp"; then
    log "$key failed: $*"; cat "$RES/err.tmp" >&2; cat "$RES/time.tmp" >&2 2>/dev/null || true
    exit 1
  fi
  tail -n 1 "$RES/time.tmp" >> "$RES/$key"
  log "  $key: $(tail -n 1 "$RES/time.tmp" | awk '{printf "%s s, %.1f MiB", $1, $2 / 1024}')"
}
# timed_tar KEY SRC DST: tar | tar. Wall time of the pipeline; peak RSS is the larger of the two
# tar processes' peaks.
TAR_OPTS=(--xattrs --xattrs-include='*' --acls --numeric-owner)
timed_tar() {
  local key="$1" src="$2" dst="$3" a b
  drop_caches
  if ! /usr/bin/time -f '%e %M' -o "$RES/time.tmp" bash -c '
      set -euo pipefail
      r="$1"; s="$2"; d="$3"; shift 3
      /usr/bin/time -f %M -o "$r/tar1.tmp" tar "$@" -C "$s" -cf - . \
        | /usr/bin/time -f %M -o "$r/tar2.tmp" tar "$@" -C "$d" -xpf -
    ' tarpipe "$RES" "$src" "$dst" "${TAR_OPTS[@]}" >/dev/null 2>"$RES/err.tmp"; then
    log "$key failed: tar | tar"; cat "$RES/err.tmp" >&2; exit 1
  fi
  a=$(tail -n 1 "$RES/tar1.tmp"); b=$(tail -n 1 "$RES/tar2.tmp")
  echo "$(cut -d' ' -f1 < <(tail -n 1 "$RES/time.tmp")) $(( a > b ? a : b ))" >> "$RES/$key"
  log "  $key: $(tail -n 1 "$RES/$key" | awk '{printf "%s s, %.1f MiB", $1, $2 / 1024}')"
}

# exact SRC DST WHAT: fails unless DST mirrors SRC exactly (pvc-backup's state folder aside).
exact() {
  local out
  out=$(rsync -aHAXn --numeric-ids --delete --itemize-changes --exclude=/.pvc-backup "$1/" "$2/") \
    || die "rsync check of $3 failed"
  if [ -n "$out" ]; then
    log "$3: the target differs from the source:"
    printf '%s\n' "$out" | head -n 20 >&2
    exit 1
  fi
}

PVCB=("$BIN" mover sync -q)
BASE=("$BASE_BIN" mover sync -q)
# The pvc-backup builds timed in each case: the one measured, and the baseline when given.
MINE=(pvcb); [ -n "$BASE_BIN" ] && MINE+=(base)
# mine T SRC DST: an untimed run of build T (pvcb or base).
# mine_order R: the builds in the order of run R; with a baseline the two take turns going first.
mine_order() { if [ $(( $1 % 2 )) = 0 ]; then printf '%s\n' "${MINE[@]}" | tac; else printf '%s\n' "${MINE[@]}"; fi; }
mine() { local t="$1"; shift; if [ "$t" = base ]; then "${BASE[@]}" "$@"; else "${PVCB[@]}" "$@"; fi; }
RSYNC=(rsync -aHAX --numeric-ids)

run_tool() { # tool key src dst  (full copy: dst is an empty folder)
  case "$1" in
    pvcb)  timed "$2" "${PVCB[@]}" "$3" "$4" ;;
    base)  timed "$2" "${BASE[@]}" "$3" "$4" ;;
    rsync) timed "$2" "${RSYNC[@]}" "$3/" "$4/" ;;
    cp)    timed "$2" cp -a "$3/." "$4/" ;;
    tar)   timed_tar "$2" "$3" "$4" ;;
    read)  timed "$2" bash -c "$READ_ALL" read-all "$3" ;;
  esac
}
# References, measured with other programs: the part of the work no correct tool can skip. A full
# copy reads every byte of every source file: READ_ALL does only that, eight cat processes at
# once. A re-run looks at the attributes of every entry on both sides (without a change journal
# it cannot know otherwise that nothing changed): STAT_BOTH does only that, one find per side,
# both at once.
# Either fails the step when any of its programs fails, so that a reference never times less work.
READ_ALL='set -o pipefail; find "$1" -type f -print0 | xargs -0 -r -P 8 -n 1000 cat > /dev/null'
STAT_BOTH='f="%i %s %T@ %C@ %m %U %G\n"; find "$1" -printf "$f" > /dev/null & p=$!
  find "$2" -printf "$f" > /dev/null; s=$?; wait "$p" && [ "$s" = 0 ]'
stat_both() { timed "$1" bash -c "$STAT_BOTH" stat-both "$2" "$3"; }
NOTES=()
# full DS FS SRC BASE: the full-copy case; leaves BASE/dst-pvcb and BASE/dst-rsync as mirrors.
full_case() {
  local ds="$1" fs="$2" src="$3" base="$4" r t dst
  local order=(cp tar rsync "${MINE[@]}")
  log "$ds full copy on $fs"
  rm -rf "$base"/dst-*; trim
  for ((r = 1; r <= RUNS; r++)); do
    # Every tool copies beside the source alone (its target is removed after the run), and each
    # run starts with the next tool: in this virtual machine, memory not used for a while costs
    # up to three times the kernel time on first touch (D2 on tmpfs), so no tool should be the
    # one that always gets it.
    for t in "${order[@]:$(( (r - 1) % ${#order[@]} ))}" "${order[@]:0:$(( (r - 1) % ${#order[@]} ))}"; do
      dst="$base/dst-$t"
      rm -rf "$dst"; mkdir "$dst"
      run_tool "$t" "${ds}_full_${fs}_$t" "$src" "$dst"
      if [ "$t" = pvcb ] || [ "$t" = base ]; then
        exact "$src" "$dst" "$t, $ds full copy on $fs"
      elif [ "$r" = 1 ] && [ -n "$(rsync -aHAXn --numeric-ids --delete --itemize-changes "$src/" "$dst/")" ]; then
        NOTES+=("$t's $ds full copy on $fs is not an exact mirror (rsync -n lists differences).")
      fi
      rm -rf "$dst"; trim
    done
  done
  # The reading reference runs after all the copies: a run that only reads leaves the memory
  # it used warm for whatever comes next, so it must not run right before one of the tools.
  for ((r = 1; r <= RUNS; r++)); do run_tool read "${ds}_full_${fs}_read" "$src"; done
  # The re-run cases start from a mirror each tool made itself (untimed).
  mkdir "$base/dst-rsync"
  for t in "${MINE[@]}"; do
    mkdir "$base/dst-$t"
    mine "$t" "$src" "$base/dst-$t"
    exact "$src" "$base/dst-$t" "$t, $ds full copy on $fs"
  done
  "${RSYNC[@]}" "$src/" "$base/dst-rsync/"
}
# rerun DS FS SRC BASE: re-runs into the mirrors left by full_case, nothing changed.
rerun_case() {
  local ds="$1" fs="$2" src="$3" base="$4" r t
  log "$ds re-run with nothing changed on $fs"
  for ((r = 1; r <= RUNS; r++)); do
    for t in $(mine_order "$r"); do
      run_tool "$t" "${ds}_rerun_${fs}_$t" "$src" "$base/dst-$t"
      exact "$src" "$base/dst-$t" "$t, $ds re-run on $fs"
    done
    timed "${ds}_rerun_${fs}_rsync" "${RSYNC[@]}" --delete "$src/" "$base/dst-rsync/"
  done
  for ((r = 1; r <= RUNS; r++)); do stat_both "${ds}_rerun_${fs}_stat" "$src" "$base/dst-pvcb"; done
}
# d3 FS D1SRC BASE: each run restores a copy of D1, brings both targets back to mirroring it
# (untimed, each with its own tool), rewrites 1% of the source with the same seed, then times
# both tools on the same changed source.
d3_case() {
  local fs="$1" d1="$2" base="$3" r t s3="$3/src-d3"
  log "D3 re-run after a 1% change on $fs"
  for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$s3"; trim; cp -a "$d1" "$s3"
    for t in "${MINE[@]}"; do
      mine "$t" "$s3" "$base/dst-$t" || die "$t failed restoring the D1 mirror"
      exact "$s3" "$base/dst-$t" "$t's D1 mirror before the D3 run"
    done
    "${RSYNC[@]}" --delete "$s3/" "$base/dst-rsync/" || die "rsync failed restoring the D1 mirror"
    exact "$s3" "$base/dst-rsync" "rsync's D1 mirror before the D3 run"
    env "${D1_ENV[@]}" "$MKDATA" modify "$s3" 1 >&2
    for t in $(mine_order "$r"); do
      run_tool "$t" "d3_rerun_${fs}_$t" "$s3" "$base/dst-$t"
      exact "$s3" "$base/dst-$t" "$t, D3 re-run on $fs"
    done
    timed "d3_rerun_${fs}_rsync" "${RSYNC[@]}" --delete "$s3/" "$base/dst-rsync/"
    exact "$s3" "$base/dst-rsync" "rsync, D3 re-run on $fs"
    stat_both "d3_rerun_${fs}_stat" "$s3" "$base/dst-pvcb"
  done
  rm -rf "$s3"
}

# The tree can move while the benchmark runs: note the commit and the binary's age at the start.
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
BIN_DATE="$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
LOAD_BEFORE="$(uptime)"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
log "start: $LOAD_BEFORE"
log "binary: $BIN"

FS_LABELS=()
for entry in "${FSLIST[@]}"; do
  fs="${entry%%:*}"; mnt="${entry#*:}"
  CUR_FS="$fs"; CUR_MNT="$mnt"
  FS_LABELS+=("$fs")
  base="$mnt/bench"
  rm -rf "$base"; mkdir -p "$base"
  log "generating D1 on $fs"
  env "${D1_ENV[@]}" "$MKDATA" d1 "$base/src-d1" >&2
  full_case d1 "$fs" "$base/src-d1" "$base"
  rerun_case d1 "$fs" "$base/src-d1" "$base"
  d3_case "$fs" "$base/src-d1" "$base"
  rm -rf "$base"/*; trim
  log "generating D2 on $fs"
  env "${D2_ENV[@]}" "$MKDATA" d2 "$base/src-d2" >&2
  full_case d2 "$fs" "$base/src-d2" "$base"
  rerun_case d2 "$fs" "$base/src-d2" "$base"
  rm -rf "$base"; trim
done

# The filesystems of the cases above are done with: unmount them and detach the loop device
# first, so that what they hold (the ext4 image lives in RAM) is free for the largest dataset,
# whose source and copy take about 10 GiB of tmpfs and kernel memory at 1,000,000 files.
if [ "$IS_ROOT" = 1 ]; then
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}"
    if [ "${MOUNTS[$i]}" = "$DIR/ext4" ]; then
      for l in "${LOOPS[@]}"; do losetup -d "$l"; done
      LOOPS=()
    fi
  done
  MOUNTS=()
  rm -f "$DIR/ext4.img"
fi

# Peak memory on many small files: tmpfs, one run, generated once and removed right after.
MANY_N="$(envval NFILES "${MANY_ENV[@]}")"
log "peak memory on $MANY_N small files (tmpfs)"
if [ "$IS_ROOT" = 1 ]; then
  mount_tmpfs "$DIR/many" "$([ "$SMALL" = 1 ] && echo 1G || echo 12G)"
  many="$DIR/many"
else
  many="${FSLIST[0]#*:}/many"; mkdir -p "$many"
fi
env "${MANY_ENV[@]}" "$MKDATA" d1 "$many/src" >&2
for t in "${MINE[@]}"; do
  run_tool "$t" "many_full_tmpfs_$t" "$many/src" "$many/dst"
  exact "$many/src" "$many/dst" "$t, $MANY_N files"
  rm -rf "$many/dst"
done
if [ "$IS_ROOT" = 1 ]; then
  umount "$many"; unset 'MOUNTS[${#MOUNTS[@]}-1]'
else
  rm -rf "$many"
fi
LOAD_AFTER="$(uptime)"
log "end: $LOAD_AFTER"

# ---- report ----
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
secs() { cut -d' ' -f1 < "$RES/$1" | median; }
peak_mib() { cut -d' ' -f2 < "$RES/$1" | sort -n | tail -n 1 | awk '{ printf "%.1f", $1 / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
toolname() {
  case "$1" in
    pvcb) echo pvc-backup ;; base) echo "pvc-backup baseline" ;; rsync) echo rsync ;; cp) echo "cp -a" ;; tar) echo "tar \| tar" ;;
    read) echo "reference: only read every file (8 cat)" ;; stat) echo "reference: only stat both sides (2 find)" ;;
  esac
}
casename() {
  case "$1" in
    d1_full) echo "D1 full copy" ;; d2_full) echo "D2 full copy" ;;
    d1_rerun) echo "D1 re-run, nothing changed" ;; d2_rerun) echo "D2 re-run, nothing changed" ;;
    d3_rerun) echo "D3 re-run after 1% change" ;;
  esac
}

echo
echo "## Results"
echo
echo "- Started $STARTED at commit $COMMIT; binary $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'), built $BIN_DATE)"
echo "- Machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
echo "- Filesystems: ${FS_LABELS[*]}$([ "$IS_ROOT" = 1 ] && echo " (ext4: ${EXT4_MIB} MiB image on a loop device, the image $([ "$EXT4_ON_DISK" = 1 ] && echo "in $DIR" || echo "in RAM (tmpfs)"), default mkfs.ext4 and mount options)"); source and target on the same filesystem"
echo "- Median of $RUNS run(s); page cache $([ "$IS_ROOT" = 1 ] && echo "dropped before every timed run" || echo "NOT dropped (not root)"); peak MiB is the largest peak RSS over the runs; for tar | tar it is the larger of the two tar processes' peaks"
echo "- Load average before: ${LOAD_BEFORE##*load average: }; after: ${LOAD_AFTER##*load average: }"
[ "$SMALL" = 1 ] && echo "- **Small mode: a check that the script works, the figures mean nothing.**"
echo
echo "| case | filesystem | tool | median s | peak MiB | ratio to rsync | ratio to cp -a |"
echo "|---|---|---|---|---|---|---|"
for fs in "${FS_LABELS[@]}"; do
  for c in d1_full d2_full d1_rerun d2_rerun d3_rerun; do
    for t in pvcb base rsync cp tar read stat; do
      key="${c}_${fs}_$t"
      if [ -f "$RES/$key" ]; then
        s=$(secs "$key")
        rr="n/a"; rc="n/a"
        [ -f "$RES/${c}_${fs}_rsync" ] && rr=$(ratio "$s" "$(secs "${c}_${fs}_rsync")")
        [ -f "$RES/${c}_${fs}_cp" ] && rc=$(ratio "$s" "$(secs "${c}_${fs}_cp")")
        echo "| $(casename "$c") | $fs | $(toolname "$t") | $s | $(peak_mib "$key") | $rr | $rc |"
      elif [ "${c#*_}" = rerun ] && { [ "$t" = cp ] || [ "$t" = tar ]; }; then
        echo "| $(casename "$c") | $fs | $(toolname "$t") | n/a: no incremental mode (a re-run is a full copy) | | | |"
      fi
    done
  done
done
for t in "${MINE[@]}"; do
  echo "| $MANY_N files of 1 KiB, full copy (1 run) | tmpfs | $(toolname "$t") | $(secs "many_full_tmpfs_$t") | $(peak_mib "many_full_tmpfs_$t") | | |"
done
if [ -n "$BASE_BIN" ]; then
  echo
  echo "### Against the baseline"
  echo
  echo "Baseline: $BASE_BIN ($("$BASE_BIN" --version 2>/dev/null || echo 'version unknown'), built $(date -u -r "$BASE_BIN" '+%Y-%m-%d %H:%M UTC')). Time and peak memory of the measured build divided by the baseline's, same runs: above 1 is slower or larger."
  echo
  echo "| case | filesystem | time ratio | peak memory ratio |"
  echo "|---|---|---|---|"
  for fs in "${FS_LABELS[@]}"; do
    for c in d1_full d2_full d1_rerun d2_rerun d3_rerun; do
      k="${c}_${fs}"
      [ -f "$RES/${k}_pvcb" ] && [ -f "$RES/${k}_base" ] || continue
      echo "| $(casename "$c") | $fs | $(ratio "$(secs "${k}_pvcb")" "$(secs "${k}_base")") | $(ratio "$(peak_mib "${k}_pvcb")" "$(peak_mib "${k}_base")") |"
    done
  done
  echo "| $MANY_N files, full copy (1 run) | tmpfs | $(ratio "$(secs many_full_tmpfs_pvcb)" "$(secs many_full_tmpfs_base)") | $(ratio "$(peak_mib many_full_tmpfs_pvcb)" "$(peak_mib many_full_tmpfs_base)") |"
fi

echo
echo "### Targets"
echo
echo "A reference does, with other programs, only the part of the work that no correct tool can skip:"
echo "reading every source file (a full copy), looking at every entry on both sides (a re-run). Where"
echo "its ratio is above a target, meeting the target needs that part alone done faster than they do it."
echo
echo "| target | filesystem | measured | met? | reference (other programs) |"
echo "|---|---|---|---|---|"
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { if (v == "n/a") print "n/a"; else if (v + 0 <= lim + 0) print "met"; else print "not met" }'; }
target_row() { # text fs measured limit [reference ratio]
  local b="${5:-}"
  if [ -n "$b" ] && [ "$b" != n/a ]; then
    b="$b ($(awk -v v="$b" -v lim="$4" 'BEGIN { print (v + 0 > lim + 0) ? "above the target" : "below the target" }'))"
  fi
  echo "| $1 | $2 | $3 | $(verdict "$3" "$4") | $b |"
}
bound() { # key of the reference run, key of the tool it is compared with: the ratio, or nothing
  if [ -f "$RES/$1" ] && [ -f "$RES/$2" ]; then ratio "$(secs "$1")" "$(secs "$2")"; fi
}
for fs in "${FS_LABELS[@]}"; do
  p=$(secs "d1_full_${fs}_pvcb")
  target_row "D1 full copy: at most 0.25 of rsync's time" "$fs" "$(ratio "$p" "$(secs "d1_full_${fs}_rsync")")" 0.25 \
    "$(bound "d1_full_${fs}_read" "d1_full_${fs}_rsync")"
  target_row "D1 full copy: at most 0.8 of cp -a's time" "$fs" "$(ratio "$p" "$(secs "d1_full_${fs}_cp")")" 0.8 \
    "$(bound "d1_full_${fs}_read" "d1_full_${fs}_cp")"
  target_row "D2 full copy: at most 1.1 of cp -a's time" "$fs" \
    "$(ratio "$(secs "d2_full_${fs}_pvcb")" "$(secs "d2_full_${fs}_cp")")" 1.1 \
    "$(bound "d2_full_${fs}_read" "d2_full_${fs}_cp")"
  target_row "D1 re-run, nothing changed: at most 0.25 of rsync's time" "$fs" \
    "$(ratio "$(secs "d1_rerun_${fs}_pvcb")" "$(secs "d1_rerun_${fs}_rsync")")" 0.25 \
    "$(bound "d1_rerun_${fs}_stat" "d1_rerun_${fs}_rsync")"
  target_row "D3 re-run after 1% change: at most 0.3 of rsync's time" "$fs" \
    "$(ratio "$(secs "d3_rerun_${fs}_pvcb")" "$(secs "d3_rerun_${fs}_rsync")")" 0.3 \
    "$(bound "d3_rerun_${fs}_stat" "d3_rerun_${fs}_rsync")"
done
d1_peak=0
for fs in "${FS_LABELS[@]}"; do
  for c in d1_full d1_rerun d3_rerun; do
    v=$(peak_mib "${c}_${fs}_pvcb")
    d1_peak=$(awk -v a="$d1_peak" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
  done
done
target_row "peak memory on D1 (largest over all D1/D3 runs): at most 32 MiB" "${FS_LABELS[*]}" "$d1_peak MiB" 32
many_peak=$(peak_mib many_full_tmpfs_pvcb)
d1_tmpfs_peak=$(peak_mib d1_full_tmpfs_pvcb)
echo "| peak memory on $MANY_N files: at most 1.5x D1's full copy ($d1_tmpfs_peak MiB) | tmpfs | $many_peak MiB = $(ratio "$many_peak" "$d1_tmpfs_peak")x | $(verdict "$(ratio "$many_peak" "$d1_tmpfs_peak")" 1.5) | |"
if [ ${#NOTES[@]} -gt 0 ]; then
  echo
  for n in "${NOTES[@]}"; do echo "- $n"; done
fi
log "done"
