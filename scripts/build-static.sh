#!/usr/bin/env bash
# Builds the static pvc-backup binary the image holds, and prints its path on the last line.
#
#   scripts/build-static.sh
#
# glibc linked statically (crt-static) rather than musl: no second C toolchain to install for
# ring, and glibc's allocator keeps up with the mover's threads where musl's does not. Naming
# --target keeps build scripts and proc macros dynamic, as they must be. The release profile
# strips the binary. scripts/build-image.sh calls this unless given --binary; scripts/test.sh
# starts it early, in the background, so that the build uses the CPU its tests leave idle.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(uname -m)-unknown-linux-gnu"
tdir="${CARGO_TARGET_DIR:-target}"
var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
env "$var=-C target-feature=+crt-static" \
  cargo build --release --locked -p pvc-backup --target "$target" >&2
echo "$tdir/$target/release/pvc-backup"
