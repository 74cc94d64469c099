#!/usr/bin/env bash
# A real run in a container runtime: builds the image, then runs in podman the mover pod exactly
# as `pvc-backup backup ... --dry-run=client -o yaml` renders it (its Job's pod template, with its
# security context intact) on podman volumes seeded with a tree of several owners, modes, xattrs,
# ACLs, hard links and a sparse file, and checks the copy against the source with rsync. Then
# runs the webhook from the Deployment `pvc-backup manifests --webhook` prints and sends it
# AdmissionReviews over TLS: the mover pod is allowed, the same pod with another image is not.
#
#   scripts/e2e-podman.sh [--binary FILE]
#
# --binary FILE   a static pvc-backup binary to put in the image (default: build one)
#
# Needs root (podman volumes owned by other users, loop devices). Installs what is missing
# (podman, buildah, runc, rsync, acl, attr, yq, ...) and gives podman a configuration of its own
# for this run only (scripts/containers-env.sh). With CI=true, not being root is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/containers-env.sh

if [ "$(id -u)" != 0 ]; then
  echo "e2e-podman.sh: SKIP: needs root (podman volumes owned by several users)"
  if [ "${CI:-}" = true ]; then echo "e2e-podman.sh: CI=true forbids skipping" >&2; exit 1; fi
  exit 0
fi

bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e-podman.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

install_debs podman buildah runc conmon catatonit rsync acl attr openssl curl yq jq binutils \
  ca-certificates util-linux e2fsprogs
containers_env

run_id="pvcb-e2e-$$"
work="$(mktemp -d "/tmp/$run_id.XXXXXX")"
pods=()
volumes=()
loops=()
cleanup() {
  local p v l
  for p in "${pods[@]}"; do podman pod rm -f "$p" >/dev/null 2>&1 || true; done
  for v in "${volumes[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1 || true; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work" "$CONTAINERS_ENV_DIR"
}
trap cleanup EXIT
fail() { echo "e2e-podman.sh: FAIL: $*" >&2; exit 1; }
step() { echo "e2e-podman.sh: $*"; }

# --- The image ---------------------------------------------------------------------------------
build_args=()
[ -n "$bin" ] && build_args=(--binary "$bin")
scripts/build-image.sh "${build_args[@]}" | tee "$work/build.log"
image_id="$(tail -n 1 "$work/build.log")"
if [ -z "$bin" ]; then
  bin="${CARGO_TARGET_DIR:-target}/$(uname -m)-unknown-linux-gnu/release/pvc-backup"
fi
version="$("$bin" --version | awk '{print $2}')"
image="ghcr.io/pvc-backup/pvc-backup:$version"
[ "$(podman image inspect -f '{{.Id}}' "$image")" = "$image_id" ] || fail "$image is not the image just built"

# What the image holds, by the kernel's own stat: exactly the binary and the CA certificates.
image_files() { # IMAGE
  local root
  root="$(podman image mount "$1")"
  (cd "$root" && find . -mindepth 1 -printf '%M %U:%G %p\n' | sort)
  podman image unmount "$1" >/dev/null
}
image_files "$image" >"$work/files"
cat >"$work/files.want" <<EOF
-rw-r--r-- 0:0 ./etc/ssl/certs/ca-certificates.crt
-rwxr-xr-x 0:0 ./pvc-backup
drwxr-xr-x 0:0 ./etc
drwxr-xr-x 0:0 ./etc/ssl
drwxr-xr-x 0:0 ./etc/ssl/certs
EOF
sort -o "$work/files.want" "$work/files.want"
diff -u "$work/files.want" "$work/files" || fail "the image holds other files than the binary and the CA certificates"
if grep -q '^...[sS]\|^......[sS]' "$work/files"; then fail "setuid or setgid file in the image"; fi
[ "$(podman image inspect -f '{{.Config.User}}' "$image")" = "65532:65532" ] || fail "default user is not 65532"
[ "$(podman image inspect -f '{{json .Config.Entrypoint}}' "$image")" = '["/pvc-backup"]' ] || fail "entrypoint"
labels="$(podman image inspect -f '{{json .Config.Labels}}' "$image")"
for want in "\"org.opencontainers.image.version\":\"$version\"" \
  '"org.opencontainers.image.licenses":"Apache-2.0"' \
  '"org.opencontainers.image.source":"https://github.com/pvc-backup/pvc-backup"'; do
  grep -qF "$want" <<<"$labels" || fail "label $want missing: $labels"
done
step "image $image: $(stat -c %s "$bin")-byte static binary, CA certificates, user 65532, no shell, no setuid file"

# deploy/Containerfile's image stage, given the same binary in place of its Rust builder stage
# (which needs a registry), makes the same files and configuration.
mkdir -p "$work/ctx/out/etc/ssl/certs"
install -m 0755 "$bin" "$work/ctx/out/pvc-backup"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$work/ctx/out/etc/ssl/certs/"
cf_image="localhost/$run_id-containerfile"
podman build -q --build-arg "VERSION=$version" --build-context "build=$work/ctx" \
  -f deploy/Containerfile -t "$cf_image" . >/dev/null
image_files "$cf_image" | diff -u "$work/files" - || fail "deploy/Containerfile makes other files"
for f in '{{.Config.User}}' '{{json .Config.Entrypoint}}' \
  '{{index .Config.Labels "org.opencontainers.image.version"}}' \
  '{{index .Config.Labels "org.opencontainers.image.licenses"}}' \
  '{{index .Config.Labels "org.opencontainers.image.source"}}'; do
  [ "$(podman image inspect -f "$f" "$cf_image")" = "$(podman image inspect -f "$f" "$image")" ] \
    || fail "deploy/Containerfile and build-image.sh differ in $f"
done
podman rmi -f "$cf_image" >/dev/null
step "deploy/Containerfile's image stage makes the same image"

# --- A mover pod on file claims ----------------------------------------------------------------
volume() { # NAME: creates a podman volume and prints its folder (the caller records NAME)
  podman volume create "$1" >/dev/null
  podman volume inspect -f '{{.Mountpoint}}' "$1"
}

# seed DIR: owners, modes, xattrs, ACLs, hard links, symlinks, a FIFO and a sparse file.
seed() {
  local d="$1"
  mkdir -p "$d/app/conf" "$d/app/data/private" "$d/shared" "$d/empty-dir"
  printf 'listen 8080\n' >"$d/app/conf/server.conf"
  head -c 300000 /dev/urandom >"$d/app/data/blob.bin"
  printf 'only 1001 may read this\n' >"$d/app/data/private/secret"
  printf 'group-shared\n' >"$d/shared/notes.txt"
  ln "$d/app/data/blob.bin" "$d/app/data/blob-hardlink.bin"
  ln "$d/shared/notes.txt" "$d/app/notes-link.txt"
  ln -s ../conf/server.conf "$d/app/data/conf-link"
  ln -s /nowhere/dangling "$d/dangling"
  mkfifo "$d/app/fifo"
  # 64 MiB apparent, two 4 KiB extents written: the copy must stay sparse.
  truncate -s 64M "$d/sparse.img"
  printf 'head' | dd of="$d/sparse.img" conv=notrunc status=none
  printf 'tail' | dd of="$d/sparse.img" bs=1 seek=$((64 * 1024 * 1024 - 4)) conv=notrunc status=none
  chown -R 1001:1001 "$d/app"
  chown 1002:3000 "$d/shared" "$d/shared/notes.txt"
  chown 0:3000 "$d/sparse.img"
  chown -h 1003:1003 "$d/dangling"
  chmod 0700 "$d/app/data/private"
  chmod 0600 "$d/app/data/private/secret"
  chmod 2775 "$d/shared"
  chmod 0640 "$d/shared/notes.txt"
  chmod 1777 "$d/empty-dir"
  chmod 4750 "$d/app/conf/server.conf"
  setfattr -n user.origin -v e2e "$d/app/data/blob.bin"
  setfattr -n user.empty "$d/shared/notes.txt"
  setfattr -n user.comment -v "in a private folder" "$d/app/data/private/secret"
  setfacl -m u:1002:r-- "$d/app/conf/server.conf"
  setfacl -d -m g:3000:rwx "$d/shared"
  touch -h -d '2001-02-03 04:05:06.123456789' "$d/app/data/conf-link"
  touch -d '2019-12-31 23:59:59.5' "$d/app/data/blob.bin" "$d/sparse.img"
}

# render_pod CLAIM TARGET OUT [ARGS...]: `pvc-backup backup` as a user types it, then the Job's
# pod template as a Pod and the claims as they are (podman makes each claim a named volume).
render_pod() {
  local claim="$1" target="$2" out="$3"
  shift 3
  "$bin" backup "$claim" --to "$target" --size 1Gi --namespace e2e "$@" --dry-run=client -o yaml \
    >"$work/rendered.yaml" || fail "pvc-backup backup --dry-run=client failed"
  yq -y --explicit-start 'select(.kind == "PersistentVolumeClaim")' "$work/rendered.yaml" >"$out"
  yq -y --explicit-start 'select(.kind == "Job") | {
      apiVersion: "v1", kind: "Pod",
      metadata: ({name: .metadata.name, namespace: .metadata.namespace} + (.spec.template.metadata // {})),
      spec: .spec.template.spec
    }' "$work/rendered.yaml" >>"$out"
  [ "$(yq -r 'select(.kind == "Pod") | .metadata.name' "$out")" != "" ] || fail "no Job rendered: $(cat "$work/rendered.yaml")"
}

# run_pod FILE: plays it, waits for the mover, prints its exit code; the log is in $work/mover.log.
run_pod() {
  local pod ctr
  pod="$(yq -r 'select(.kind == "Pod") | .metadata.name' "$1")"
  ctr="$pod-$(yq -r 'select(.kind == "Pod") | .spec.containers[0].name' "$1")"
  pods+=("$pod")
  podman kube play --network none "$1" >"$work/play.log" 2>&1 || { cat "$work/play.log" >&2; fail "podman kube play"; }
  code="$(podman wait "$ctr")"
  podman logs "$ctr" >"$work/mover.log" 2>&1 || true
  inspect_ctr="$ctr"
}

step "file claim: seeding the source volume"
src_claim="$run_id-data"
volumes+=("$src_claim")
src_dir="$(volume "$src_claim")"
seed "$src_dir"
dst_claim="$run_id-data-backup"
render_pod "$src_claim" "$dst_claim" "$work/pod.yaml"
# podman makes a claim's volume when the pod names it; the target is recorded for clean-up.
volumes+=("$dst_claim")
run_pod "$work/pod.yaml"
[ "$code" = 0 ] || { cat "$work/mover.log" >&2; fail "the mover exited with $code"; }

# The pod ran with the rendered security context: these five capabilities and no other,
# as root, read-only root filesystem, no privilege escalation.
caps="$(podman inspect -f '{{range .EffectiveCaps}}{{.}} {{end}}' "$inspect_ctr" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')"
[ "$caps" = "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_SETGID CAP_SETUID " ] || fail "capabilities were: $caps"
[ "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$inspect_ctr")" = true ] || fail "root filesystem was writable"
podman inspect -f '{{.HostConfig.SecurityOpt}}' "$inspect_ctr" | grep -q 'no-new-privileges' || fail "privilege escalation was allowed"
case "$(podman inspect -f '{{.Config.User}}' "$inspect_ctr")" in 0|0:*) ;; *) fail "not run as root" ;; esac

dst_dir="$(podman volume inspect -f '{{.Mountpoint}}' "$dst_claim")"
mode="$(yq -r 'select(.kind == "Pod") | .spec.containers[0].args[1]' "$work/pod.yaml")"
case "$mode" in
  sync) copy="$dst_dir" ;;
  backup) copy="$dst_dir/latest" ;;
  *) fail "unexpected mover command $mode" ;;
esac
# rsync as the oracle: an itemized dry run that would change nothing.
rsync -aHAXn --numeric-ids --delete --itemize-changes --exclude=/.pvc-backup \
  "$src_dir/" "$copy/" >"$work/rsync.out"
[ ! -s "$work/rsync.out" ] || { cat "$work/rsync.out" >&2; fail "the copy differs from the source"; }
# rsync compares times to the second; the kernel's stat to the nanosecond.
stamps() { (cd "$1" && find . -path ./.pvc-backup -prune -o -printf '%p %T@ %m %U:%G %n\n' | sort); }
diff -u <(stamps "$src_dir") <(stamps "$copy") || fail "times, modes, owners or link counts differ"
[ "$(stat -c %i "$copy/app/data/blob.bin")" = "$(stat -c %i "$copy/app/data/blob-hardlink.bin")" ] \
  || fail "hard link not kept"
blocks_src="$(stat -c %b "$src_dir/sparse.img")"
blocks_dst="$(stat -c %b "$copy/sparse.img")"
[ "$blocks_dst" -le $((blocks_src + 16)) ] || fail "sparse file filled: $blocks_dst blocks, source $blocks_src"
cmp "$src_dir/sparse.img" "$copy/sparse.img" || fail "sparse file content"
step "file claim: mover $mode copied the tree; rsync -aHAX, stat and cmp find no difference"
podman pod rm -f "${pods[-1]}" >/dev/null

# --- A mover pod on a block claim --------------------------------------------------------------
# The source is a loop device given to podman as the claim: podman has no volumeDevices, so the
# claim's device becomes a hostPath of type BlockDevice at the pod's devicePath, which podman
# passes to the container as a device. Everything else stays as rendered.
step "block claim: a loop device with data and holes"
truncate -s 64M "$work/block.img"
head -c $((3 * 1024 * 1024)) /dev/urandom | dd of="$work/block.img" bs=1M seek=5 conv=notrunc status=none
printf 'end of the volume' | dd of="$work/block.img" bs=1 seek=$((64 * 1024 * 1024 - 17)) conv=notrunc status=none
loop="$(losetup -f --show "$work/block.img")"
loops+=("$loop")
bdst_claim="$run_id-blk-backup"
render_pod "$run_id-blk" "$bdst_claim" "$work/block-pod.yaml" --source-volume-mode block
volumes+=("$bdst_claim")
[ "$(yq -r 'select(.kind == "Pod") | .spec.containers[0].volumeDevices[0].devicePath' "$work/block-pod.yaml")" = /source ] \
  || fail "the block claim is not rendered as a device at /source"
yq -y --explicit-start --arg dev "$loop" 'if .kind == "Pod" then
    .spec.containers |= map(.volumeMounts = ((.volumeMounts // []) + [(.volumeDevices // [])[] | {name, mountPath: .devicePath}]) | del(.volumeDevices))
    | .spec.volumes |= map(if .name == "source" then {name, hostPath: {path: $dev, type: "BlockDevice"}} else . end)
  else . end' "$work/block-pod.yaml" >"$work/block-pod-podman.yaml"
run_pod "$work/block-pod-podman.yaml"
[ "$code" = 0 ] || { cat "$work/mover.log" >&2; fail "the block mover exited with $code"; }
bdst_dir="$(podman volume inspect -f '{{.Mountpoint}}' "$bdst_claim")"
cmp "$loop" "$bdst_dir/latest/volume.img" || fail "the block backup differs from the device"
alloc=$(( $(stat -c %b "$bdst_dir/latest/volume.img") * 512 ))
[ "$alloc" -le $((4 * 1024 * 1024 + 65536)) ] || fail "the block backup is not sparse: $alloc bytes allocated"
step "block claim: mover backup made a sparse image ($alloc bytes allocated of 64 MiB) equal to the device (cmp)"
podman pod rm -f "${pods[-1]}" >/dev/null

# --- The webhook -------------------------------------------------------------------------------
step "webhook: from the Deployment of pvc-backup manifests --webhook"
port=$((20000 + $$ % 20000))
tls="$work/tls"
mkdir -p "$tls"
host="pvc-backup-webhook.pvc-backup.svc"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=e2e-ca -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$host" \
  -keyout "$tls/tls.key" -out "$tls/tls.csr" 2>/dev/null
openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 1 -extfile <(printf 'subjectAltName=DNS:%s' "$host") -out "$tls/tls.crt" 2>/dev/null
chmod 0755 "$tls"
chmod 0644 "$tls/tls.crt" "$tls/tls.key"
"$bin" manifests --webhook --ca-bundle "$tls/ca.crt" --image "$image" >"$work/webhook.yaml"
# The Deployment's pod, as podman runs it: host network on a free port instead of 8443, the
# certificate folder in place of the secret, no probes (checked below with curl instead).
yq -y --arg tls "$tls" --arg listen "127.0.0.1:$port" 'select(.kind == "Deployment") | {
    apiVersion: "v1", kind: "Pod",
    metadata: {name: "'"$run_id"'-webhook", labels: .spec.template.metadata.labels},
    spec: (.spec.template.spec
      | .hostNetwork = true
      | .volumes = [{name: "tls", hostPath: {path: $tls, type: "Directory"}}]
      | .containers |= map(del(.readinessProbe, .livenessProbe, .ports)
          | .args |= map(if . == "0.0.0.0:8443" then $listen else . end)))
  }' "$work/webhook.yaml" >"$work/webhook-pod.yaml"
pods+=("$run_id-webhook")
podman kube play "$work/webhook-pod.yaml" >"$work/play.log" 2>&1 || { cat "$work/play.log" >&2; fail "podman kube play (webhook)"; }
wctr="$run_id-webhook-webhook"
case "$(podman inspect -f '{{.Config.User}}' "$wctr")" in 65532|65532:*) ;; *) fail "webhook not run as 65532" ;; esac
curl_tls() { curl -sS --cacert "$tls/ca.crt" --resolve "$host:$port:127.0.0.1" "$@"; }
for _ in $(seq 100); do
  curl_tls -f "https://$host:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl_tls -f "https://$host:$port/readyz" >/dev/null || { podman logs "$wctr" >&2; fail "webhook not ready"; }

# review IMAGE UID: the mover pod rendered above, with IMAGE, as the API server would send it.
review() {
  yq --arg image "$1" --arg uid "$2" 'select(.kind == "Pod") | {
      apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
      request: {
        uid: $uid,
        kind: {group: "", version: "v1", kind: "Pod"},
        resource: {group: "", version: "v1", resource: "pods"},
        namespace: "e2e", operation: "CREATE",
        userInfo: {username: "system:serviceaccount:kube-system:job-controller"},
        object: (.spec.containers[0].image = $image),
        dryRun: false
      }
    }' "$work/pod.yaml"
}
allow_uid="11111111-2222-3333-4444-555555555555"
deny_uid="66666666-7777-8888-9999-000000000000"
review "$image" "$allow_uid" >"$work/allow.json"
review docker.io/library/busybox:latest "$deny_uid" >"$work/deny.json"
post() { curl_tls -f -H 'Content-Type: application/json' --data-binary @"$1" "https://$host:$port/validate"; }
post "$work/allow.json" >"$work/allow.out" || fail "webhook request failed"
post "$work/deny.json" >"$work/deny.out" || fail "webhook request failed"
[ "$(jq -r .response.uid "$work/allow.out")" = "$allow_uid" ] || fail "answer without the request's uid: $(cat "$work/allow.out")"
[ "$(jq -r .response.allowed "$work/allow.out")" = true ] || fail "the mover pod was refused: $(cat "$work/allow.out")"
[ "$(jq -r .response.uid "$work/deny.out")" = "$deny_uid" ] || fail "answer without the request's uid: $(cat "$work/deny.out")"
[ "$(jq -r .response.allowed "$work/deny.out")" = false ] || fail "a foreign image was allowed: $(cat "$work/deny.out")"
step "webhook: the mover pod allowed, busybox under pvc-backup-deployer refused: $(jq -r .response.status.message "$work/deny.out")"

echo "e2e-podman.sh: all passed"
