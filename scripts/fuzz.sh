#!/usr/bin/env bash
# Fuzzes what one mover decodes from the other (crates/wire/fuzz) with cargo fuzz and libFuzzer,
# each target for N seconds, and fails on any crash, hang (an input taking over 30 s) or memory
# blow-up (over 2 GB). Targets:
#
#   message   one frame: decoded, or refused, never a panic; a decoded one encodes back to itself
#   receiver  a sender's byte stream against a real receiver and target (listing, requests'
#             answers, file content, compressed data, unchanged chunks); nothing outside the
#             target may change
#   sender    a receiver's byte stream against a real sender of a real tree (hello, requests,
#             bases of chunks, the summary)
#
# Usage: scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 60 seconds, every target)
#
# Each target starts from seeds captured from real transfers between the wire's own sender and
# receiver, which it writes into crates/wire/fuzz/corpus/TARGET/ when it starts; what libFuzzer
# finds interesting stays there for the next run. An input that fails is kept in
# crates/wire/fuzz/artifacts/TARGET/; run it again with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir crates/wire/fuzz TARGET ARTIFACT
#
# cargo fuzz passes the compiler -Z flags (AddressSanitizer, coverage instrumentation) that only
# a nightly compiler takes; RUSTC_BOOTSTRAP=1 makes the stable one take them, so no nightly
# toolchain is needed. cargo-fuzz is installed once from crates.io into a cache folder outside
# the repository, keyed by its version, and the fuzz build keeps its compiled dependencies there:
# PVC_BACKUP_CACHE, default /var/cache/pvc-backup (for a user who may not write there,
# ~/.cache/pvc-backup).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(message receiver sender)
log() { echo "fuzz.sh: $*" >&2; }

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:-}"; shift 2 || { log "--seconds needs a number"; exit 2; } ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) log "unknown option $1 (see --help)"; exit 2 ;;
    *)
      case " ${ALL_TARGETS[*]} " in
        *" $1 "*) targets+=("$1") ;;
        *) log "no target $1; the targets are: ${ALL_TARGETS[*]}"; exit 2 ;;
      esac
      shift ;;
  esac
done
case "$seconds" in
  '' | *[!0-9]* | 0) log "--seconds takes a whole number of seconds, 1 or more (got '$seconds')"; exit 2 ;;
esac
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

CACHE="${PVC_BACKUP_CACHE:-/var/cache/pvc-backup}"
if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pvc-backup"
  mkdir -p "$CACHE"
fi

# cargo-fuzz, built once per version.
tool="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [ ! -x "$tool/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tool"
  start=$(date +%s)
  rm -rf "$tool.tmp"
  CARGO_TARGET_DIR="$tool.tmp/build" cargo install --quiet --locked cargo-fuzz \
    --version "$CARGO_FUZZ_VERSION" --root "$tool.tmp"
  rm -rf "$tool.tmp/build" "$tool"
  mv "$tool.tmp" "$tool"
  log "installed in $(( $(date +%s) - start )) s"
  for old in "$CACHE"/cargo-fuzz-*; do
    [ "$old" = "$tool" ] || rm -rf "$old"
  done
fi
export PATH="$tool/bin:$PATH"

# The fuzz build's own target folder, kept between runs, keyed by compiler and dependency
# versions: one built for others would only be rebuilt.
fuzz_dir=crates/wire/fuzz
# Resolved first, so that the key is that of the lock file the build then uses.
cargo metadata --quiet --format-version 1 --manifest-path "$fuzz_dir/Cargo.toml" >/dev/null
key="$( (rustc -V; cat "$fuzz_dir/Cargo.lock") | sha256sum | cut -c1-12)"
export CARGO_TARGET_DIR="$CACHE/fuzz-target-$key"
for old in "$CACHE"/fuzz-target-*; do
  [ "$old" = "$CARGO_TARGET_DIR" ] || rm -rf "$old"
done
export RUSTC_BOOTSTRAP=1

start=$(date +%s)
cargo fuzz build --fuzz-dir "$fuzz_dir" -O
log "built the targets in $(( $(date +%s) - start )) s"

# The targets lay out their trees in a folder of their own, in memory when /dev/shm is there.
scratch="$(mktemp -d "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/pvc-backup-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
  corpus="$fuzz_dir/corpus/$t"
  mkdir -p "$corpus"
  out="$scratch/$t.log"
  log "$t: fuzzing for $seconds s"
  if TMPDIR="$scratch" cargo fuzz run --fuzz-dir "$fuzz_dir" -O "$t" "$corpus" -- \
      -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 >"$out" 2>&1; then
    # The last status line (executions, coverage, corpus) and the number of runs.
    status="$(grep -E '^#[0-9]+' "$out" | tail -n 1 || true)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out")"
    log "$t: ok: ${runs:-?} runs in $seconds s; last status: $status"
  else
    log "$t: FAILED; the end of its output:"
    tail -n 40 "$out" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  log "failing targets: ${failed[*]}; their inputs are in $fuzz_dir/artifacts/"
  exit 1
fi
log "no target failed"
