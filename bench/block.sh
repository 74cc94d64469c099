#!/usr/bin/env bash
# Block-volume benchmark: pvc-backup mover block against dd.
#
# Builds a loop device (4 GiB, or 64 MiB with --small) whose 4 MiB chunks are 30% random data and
# 70% zeros, laid out the same way on every run, then times:
#   - a full copy to a second (all-zero) loop device (also with --no-compare) and to a new image
#     file,
#   - a re-run after 1% of the chunks changed (to the device and to the image), and beside it the
#     least any re-run without changed-block tracking reads: the whole source once (dd
#     of=/dev/null, timed right after the full copies), as a ratio to dd's full copy,
#   - versioned backups (`mover backup` of the device): a first version and a new version after 1%
#     of the chunks changed, onto xfs (reflinks: each version a clone of the previous one plus the
#     changed chunks) and onto ext4 (full images),
# for pvc-backup, `dd bs=4M conv=sparse,fsync` and `dd bs=4M oflag=direct`. The page cache is
# dropped before every timed run; each figure is the median of 3 runs; peak memory comes from
# /usr/bin/time. dd has no incremental mode, so its re-run figure is its full copy.
#
# Usage: bench/block.sh [--small] [--bin PATH] [--dir DIR]   (PVC_BACKUP_BIN=PATH works like --bin)
# Needs root (loop devices), losetup, blkdiscard, mkfs.xfs, openssl, /usr/bin/time.
set -euo pipefail

SIZE_MIB=4096
BIN="${PVC_BACKUP_BIN:-}"
DIR="${TMPDIR:-/var/tmp}/pvc-backup-bench-block"
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SIZE_MIB=64 ;;
    --bin) BIN="$2"; shift ;;
    --dir) DIR="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "block.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" != 0 ]; then
  echo "block.sh: needs root for loop devices" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [ -z "$BIN" ]; then
  if [ "$SIZE_MIB" = 64 ]; then
    # The small run only checks that the script works: the test build is good enough.
    cargo build -p pvc-backup >&2
    BIN="${CARGO_TARGET_DIR:-target}/debug/pvc-backup"
  else
    cargo build --release -p pvc-backup >&2
    BIN="${CARGO_TARGET_DIR:-target}/release/pvc-backup"
  fi
fi

CHUNK=$((4 << 20))
CHUNKS=$((SIZE_MIB / 4))
RUNS=3
LOOPS=()
cleanup() {
  umount "$DIR/xfs" 2>/dev/null || true
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
rm -rf "$DIR"
mkdir -p "$DIR"

# Deterministic pseudo-random bytes: AES-CTR of zeros under a fixed key, offset by a seed.
random_chunk() { # seed -> 4 MiB on stdout
  head -c "$CHUNK" /dev/zero | openssl enc -aes-128-ctr -nosalt \
    -K 00112233445566778899aabbccddeeff -iv "$(printf '%032x' "$1")"
}
is_data_chunk() { [ $(( ($1 * 7919) % 10 )) -lt 3 ]; } # 30% of the chunks, spread out

echo "block.sh: building a ${SIZE_MIB} MiB source with 30% random chunks in $DIR" >&2
truncate -s "${SIZE_MIB}M" "$DIR/src.raw"
data_chunks=0
for ((i = 0; i < CHUNKS; i++)); do
  if is_data_chunk "$i"; then
    random_chunk "$i" | dd of="$DIR/src.raw" bs=4M seek="$i" conv=notrunc,fsync status=none iflag=fullblock
    data_chunks=$((data_chunks + 1))
  fi
done
truncate -s "${SIZE_MIB}M" "$DIR/dst.raw"
SRC=$(losetup --find --show "$DIR/src.raw"); LOOPS+=("$SRC")
DST=$(losetup --find --show "$DIR/dst.raw"); LOOPS+=("$DST")
IMG="$DIR/copy.img"
DATA_BYTES=$((data_chunks * CHUNK))
# An xfs filesystem (reflinks) on a loop device over a sparse file beside the others, for versions.
truncate -s "$(( SIZE_MIB * 4 > 1024 ? SIZE_MIB * 4 : 1024 ))M" "$DIR/xfs.raw"
XFSDEV=$(losetup --find --show "$DIR/xfs.raw"); LOOPS+=("$XFSDEV")
mkfs.xfs -q -f -m reflink=1 "$XFSDEV"
mkdir -p "$DIR/xfs"
mount "$XFSDEV" "$DIR/xfs"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# timed NAME CMD...: runs CMD once after dropping caches; appends "seconds maxrss_kib" to $DIR/NAME.
timed() {
  local name="$1"; shift
  drop_caches
  /usr/bin/time -f '%e %M' -o "$DIR/time.tmp" "$@" >/dev/null 2>"$DIR/err.tmp" || {
    echo "block.sh: $name failed:" >&2; cat "$DIR/err.tmp" >&2; exit 1; }
  cat "$DIR/time.tmp" >> "$DIR/$name.times"
}
median() { sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"; }
secs() { cut -d' ' -f1 < "$DIR/$1.times" | median; }
rss_mib() { cut -d' ' -f2 < "$DIR/$1.times" | sort -n | tail -n 1 | awk '{printf "%.0f", $1 / 1024}'; }
fresh_dst() { blkdiscard -f "$DST" 2>/dev/null || dd if=/dev/zero of="$DST" bs=4M oflag=direct status=none; }
allocated() { du -B1 "$IMG" | cut -f1; }
change_one_percent() { # seed: rewrite 1% of the chunks (at least one) with new data
  local n=$(( CHUNKS / 100 )); [ "$n" -ge 1 ] || n=1
  for ((k = 0; k < n; k++)); do
    random_chunk $(( 100000 * $1 + k )) | dd of="$SRC" bs=4M seek=$(( (k * 97 + $1 * 13) % CHUNKS )) \
      conv=notrunc,fsync oflag=direct iflag=fullblock status=none
  done
}

PVCB=("$BIN" mover block --progress none -q)
# The full-copy cases, one function each. A run right after one that wrote gigabytes can find the
# disk still busy with them (the page cache is dropped, but a virtual disk's host may still be
# writing), so the order changes from run to run, and not only where it starts: shifting one
# order round would leave every case behind the same one each time (the comparing copy onto the
# device always behind dd's 4 GiB direct write into an image). Run r (from 0) takes the cases
# with a step of r % 6 + 1 from a start of 3r; as their count (7) is prime, each run is a whole
# permutation, and in the 3 runs no case follows the same case twice.
case_pvcb_dev() {
  fresh_dst; timed pvcb_dev "${PVCB[@]}" "$SRC" "$DST"
  cmp -n $((SIZE_MIB << 20)) "$SRC" "$DST" || { echo "block.sh: pvc-backup copy differs" >&2; exit 1; }
}
case_pvcb_dev_nc() {
  fresh_dst; timed pvcb_dev_nc "${PVCB[@]}" --no-compare "$SRC" "$DST"
  cmp -n $((SIZE_MIB << 20)) "$SRC" "$DST" || { echo "block.sh: pvc-backup --no-compare copy differs" >&2; exit 1; }
}
case_dd_sparse_dev() { fresh_dst; timed dd_sparse_dev dd if="$SRC" of="$DST" bs=4M conv=sparse,fsync status=none; }
case_dd_direct_dev() { fresh_dst; timed dd_direct_dev dd if="$SRC" of="$DST" bs=4M oflag=direct status=none; }
case_pvcb_img() {
  rm -f "$IMG" "$IMG".pvcb-manifest.json; timed pvcb_img "${PVCB[@]}" "$SRC" "$IMG"
  cmp "$SRC" "$IMG" || { echo "block.sh: pvc-backup image differs" >&2; exit 1; }
  pvcb_alloc=$(allocated)
}
case_dd_sparse_img() {
  rm -f "$IMG"; timed dd_sparse_img dd if="$SRC" of="$IMG" bs=4M conv=sparse,fsync status=none
  sparse_alloc=$(allocated)
}
case_dd_direct_img() {
  rm -f "$IMG"; timed dd_direct_img dd if="$SRC" of="$IMG" bs=4M oflag=direct status=none
  direct_alloc=$(allocated)
}
CASES=(pvcb_dev pvcb_dev_nc dd_sparse_dev dd_direct_dev pvcb_img dd_sparse_img dd_direct_img)
for ((r = 0; r < RUNS; r++)); do
  for ((k = 0; k < ${#CASES[@]}; k++)); do
    "case_${CASES[(r * 3 + k * (r % 6 + 1)) % ${#CASES[@]}]}"
  done
done
# The least a re-run reads: without changed-block tracking from the storage, every byte of the
# source, to learn what changed. dd does only that here, right after the full copies it is
# compared with (and after them, so that it warms nothing for them).
for ((r = 0; r < RUNS; r++)); do timed read_src dd if="$SRC" of=/dev/null bs=4M status=none; done
# Re-runs: both targets hold a full copy; each run changes 1% of the chunks first.
"${PVCB[@]}" "$SRC" "$DST" 2>/dev/null
rm -f "$IMG"; "${PVCB[@]}" "$SRC" "$IMG" 2>/dev/null
for ((r = 0; r < RUNS; r++)); do
  change_one_percent "$((r + 1))"
  timed pvcb_dev_rerun "${PVCB[@]}" "$SRC" "$DST"
  timed pvcb_img_rerun "${PVCB[@]}" "$SRC" "$IMG"
done
cmp -n $((SIZE_MIB << 20)) "$SRC" "$DST" && cmp "$SRC" "$IMG" || { echo "block.sh: re-run copy differs" >&2; exit 1; }

# Versioned backups of the device: a first version (a new backup folder each run), then new
# versions after 1% changed, on xfs (reflinked) and on ext4 (full images).
BACKUP=("$BIN" mover backup --progress none -q)
for fs in xfs ext4; do
  if [ "$fs" = xfs ]; then VDIR="$DIR/xfs/versions"; else VDIR="$DIR/versions"; fi
  for ((r = 0; r < RUNS; r++)); do
    rm -rf "$VDIR"; timed "pvcb_backup_first_$fs" "${BACKUP[@]}" "$SRC" "$VDIR"
  done
  cmp "$SRC" "$VDIR/latest/volume.img" || { echo "block.sh: first version on $fs differs" >&2; exit 1; }
  for ((r = 0; r < RUNS; r++)); do
    change_one_percent "$((r + 11))"
    timed "pvcb_backup_rerun_$fs" "${BACKUP[@]}" "$SRC" "$VDIR"
  done
  cmp "$SRC" "$VDIR/latest/volume.img" || { echo "block.sh: new version on $fs differs" >&2; exit 1; }
  "$BIN" mover verify "$VDIR" --snapshot all >/dev/null || { echo "block.sh: versions on $fs do not verify" >&2; exit 1; }
  snapshots_listing="$("$BIN" mover snapshots "$VDIR")"
  if [ "$fs" = xfs ]; then xfs_listing="$snapshots_listing"; xfs_used=$(df -B1 --output=used "$DIR/xfs" | tail -n 1); fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() { # label pvcb_name dd_name_for_ratio
  local p s d
  p=$(secs "$2"); s=$(secs "dd_sparse_$3"); d=$(secs "dd_direct_$3")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$p" "$s" "$d" \
    "$(ratio "$p" "$s")" "$(ratio "$p" "$d")" "$(rss_mib "$2") / $(rss_mib "dd_sparse_$3") / $(rss_mib "dd_direct_$3")"
}
echo
echo "Source: ${SIZE_MIB} MiB loop device, ${data_chunks} of ${CHUNKS} chunks (4 MiB) random, the rest zero; $(nproc) CPUs; median of $RUNS runs, page cache dropped before each; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo '| case | pvc-backup s | dd conv=sparse s | dd oflag=direct s | ratio to dd sparse | ratio to dd direct | peak RSS MiB (pvc-backup / dd sparse / dd direct) |'
echo '|---|---|---|---|---|---|---|'
row "full copy to device" pvcb_dev dev
row "full copy to device, --no-compare" pvcb_dev_nc dev
row "full copy to image file" pvcb_img img
row "1% changed, to device" pvcb_dev_rerun dev
row "1% changed, to image file" pvcb_img_rerun img
rs=$(secs read_src)
printf '| %s | %s | %s | %s | %s | %s | %s |\n' "reference: only read the whole source, as any re-run must (dd of=/dev/null)" \
  "$rs (dd)" "$(secs dd_sparse_dev)" "$(secs dd_direct_dev)" "$(ratio "$rs" "$(secs dd_sparse_dev)")" \
  "$(ratio "$rs" "$(secs dd_direct_dev)")" "$(rss_mib read_src)"
row "versioned backup, first version, xfs" pvcb_backup_first_xfs img
row "versioned backup, 1% changed, xfs (reflink)" pvcb_backup_rerun_xfs img
row "versioned backup, first version, ext4" pvcb_backup_first_ext4 img
row "versioned backup, 1% changed, ext4 (full image)" pvcb_backup_rerun_ext4 img
echo
echo "Image file allocation (du -B1): pvc-backup $pvcb_alloc, dd conv=sparse $sparse_alloc, dd oflag=direct $direct_alloc; source non-zero data $DATA_BYTES bytes."
echo
echo "Versions on xfs after the runs above (xfs used: $xfs_used bytes):"
echo
echo '```text'
echo "$xfs_listing"
echo '```'
