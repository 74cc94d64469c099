#!/usr/bin/env bash
# Builds the pvc-backup image with buildah from a static binary built on this machine: FROM
# scratch, so no registry is needed. The result is the image deploy/Containerfile makes: the
# binary at /pvc-backup, the CA certificates, user 65532 by default, OCI labels.
#
#   scripts/build-image.sh [--binary FILE] [--tag IMAGE]...
#
# --binary FILE   use this static binary instead of building one
# --tag IMAGE     tag the image IMAGE too (repeatable)
#
# It is tagged ghcr.io/pvc-backup/pvc-backup:VERSION (the image pvc-backup's manifests and Jobs
# name by default, so podman finds it locally) and localhost/pvc-backup:VERSION. Run as root, it
# installs buildah when it is missing. On the last line it prints the image ID.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/containers-env.sh

bin=""
tags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) bin="$2"; shift 2 ;;
    --tag) tags+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

install_debs buildah ca-certificates binutils
containers_env
trap 'rm -rf "$CONTAINERS_ENV_DIR"' EXIT

if [ -z "$bin" ]; then bin="$(scripts/build-static.sh | tail -1)"; fi
[ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable file" >&2; exit 1; }

# The image has no loader and no libraries: the binary must need none.
if readelf -lW "$bin" | grep -q 'INTERP'; then
  echo "build-image.sh: $bin asks for a dynamic loader; build it with crt-static" >&2; exit 1
fi
if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
  echo "build-image.sh: $bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)" >&2; exit 1
fi
if readelf -SW "$bin" | grep -q ' \.symtab '; then
  echo "build-image.sh: $bin is not stripped (the release profile strips it)" >&2; exit 1
fi
version="$("$bin" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "build-image.sh: $bin --version printed no version" >&2; exit 1; }
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
size="$(stat -c %s "$bin")"
echo "build-image.sh: binary $bin: version $version, $size bytes, static, stripped"

image="ghcr.io/pvc-backup/pvc-backup:$version"
ctr="$(buildah from --quiet scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$CONTAINERS_ENV_DIR"' EXIT
buildah copy --quiet --chmod 0755 "$ctr" "$bin" /pvc-backup >/dev/null
buildah copy --quiet --chmod 0644 "$ctr" /etc/ssl/certs/ca-certificates.crt \
  /etc/ssl/certs/ca-certificates.crt >/dev/null
buildah config \
  --user 65532:65532 \
  --entrypoint '["/pvc-backup"]' \
  --workingdir / \
  --label org.opencontainers.image.title=pvc-backup \
  --label "org.opencontainers.image.description=Back up, clone and migrate Kubernetes PersistentVolumeClaims with full fidelity" \
  --label org.opencontainers.image.source=https://github.com/pvc-backup/pvc-backup \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$ctr"
id="$(buildah commit --quiet "$ctr" "$image")"
buildah tag "$image" "localhost/pvc-backup:$version" "${tags[@]}"
echo "build-image.sh: built $image (also localhost/pvc-backup:$version${tags[*]:+ ${tags[*]}})"
echo "$id"
