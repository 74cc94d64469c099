#!/usr/bin/env bash
# A single-node Kubernetes cluster made of Kubernetes' own components, run as host processes, for
# the tests of pvc-backup's cluster commands: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, and a node of kubelet + containerd + runc + the CNI bridge that runs the real
# pvc-backup image. Root only.
#
#   scripts/local-cluster.sh up       build what is missing (once; cached), start, wait until Ready
#   scripts/local-cluster.sh env      print the exports that point kubectl and the tests at it
#   scripts/local-cluster.sh status   say what runs
#   scripts/local-cluster.sh down     stop everything it started; no process or mount is left
#   scripts/local-cluster.sh images   (re)load the pvc-backup and tools images into the node
#   scripts/local-cluster.sh services start what makes Services reachable, when it does not run
#                                     (a cluster brought up before `up` started it)
#
# Environment:
#   PVC_BACKUP_CLUSTER_DIR   its files (default /var/tmp/pvc-backup-cluster)
#   PVC_BACKUP_CACHE         built Kubernetes binaries and Go caches (default /var/cache/pvc-backup)
#   PVC_BACKUP_BIN           a static pvc-backup binary for the image (default: build one)
#
# The API server enforces RBAC (Node and RBAC authorizers), service-account tokens with
# TokenRequest, PodSecurity, ValidatingAdmissionWebhook and ValidatingAdmissionPolicy. Storage:
# the in-tree hostpath provisioner behind the default class `standard` and the class `other`
# (volumes are host folders under /tmp/hostpath_pv, named in each PV's spec.hostPath.path), and
# static PVs; the VolumeSnapshot CRDs are installed. Services: kube-proxy (iptables) routes
# ClusterIPs, and dnsmasq on the node's address answers NAME.NAMESPACE.svc(.cluster.local) from a
# hosts file kept in step with the Services. See "Testing against a real cluster" in
# docs/kubernetes.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

DIR="${PVC_BACKUP_CLUSTER_DIR:-/var/tmp/pvc-backup-cluster}"
NODE="pvcb-node"
# The node's address: on an interface of its own (a bridge with no ports: this kernel has no
# dummy interfaces), so that nothing in the cluster speaks to an
# address outside this machine. Pods get addresses of the CNI bridge's subnet, and routes through
# the bridge to the node and to the Services' range (there is no default route).
NODE_IF="pvcb0"
NODE_IP="10.231.0.1"
POD_SUBNET="10.231.128.0/24"
SERVICE_RANGE="10.0.0.0/24"
API_PORT=6443
ETCD_PORT=23790
IMAGE="localhost/pvc-backup:dev"
TOOLS_IMAGE="localhost/pvc-backup-tools:dev"
PAUSE_IMAGE="localhost/pause:3.10"
SOCK="$DIR/containerd/containerd.sock"

log() { echo "local-cluster: $*" >&2; }
die() { echo "local-cluster: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (it runs a kubelet, containerd and mounts)"; }

install_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs

pki() {
  local p="$DIR/pki"
  [ -f "$p/done" ] && return 0
  rm -rf "$p"; mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pvc-backup-local-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  # NAME CN O SANS(extension line or "") KIND(client|server|both)
  cert() {
    local name="$1" cn="$2" o="$3" sans="$4" usage="$5" subj="/CN=$2"
    [ -n "$o" ] && subj="/O=$o/CN=$cn"
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
    {
      echo "basicConstraints=CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$usage"
      [ -n "$sans" ] && echo "subjectAltName=$sans"
    } >"$p/$name.ext"
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 3650 -extfile "$p/$name.ext" -out "$p/$name.crt" 2>/dev/null
    rm -f "$p/$name.csr" "$p/$name.ext"
  }
  cert apiserver kube-apiserver "" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:10.0.0.1" serverAuth
  cert admin admin system:masters "" clientAuth
  cert controller-manager system:kube-controller-manager "" "" clientAuth
  cert scheduler system:kube-scheduler "" "" clientAuth
  cert kubelet "system:node:$NODE" system:nodes "DNS:$NODE,IP:$NODE_IP,IP:127.0.0.1" serverAuth,clientAuth
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" clientAuth
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  for who in admin controller-manager scheduler kubelet; do kubeconfig "$who"; done
  touch "$p/done"
}

kubeconfig() {
  local who="$1" p="$DIR/pki"
  cat >"$DIR/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$p/ca.crt")
users:
- name: $who
  user:
    client-certificate-data: $(base64 -w0 "$p/$who.crt")
    client-key-data: $(base64 -w0 "$p/$who.key")
contexts:
- name: local
  context: {cluster: local, user: $who}
current-context: local
EOF
}

# ---------------------------------------------------------------------------------------------
# Processes: each runs under setsid with its pid in $DIR/run/NAME.pid and its log in $DIR/log.

running() { local f="$DIR/run/$1.pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

start() {
  local name="$1"; shift
  running "$name" && return 0
  mkdir -p "$DIR/run" "$DIR/log"
  setsid "$@" >>"$DIR/log/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/run/$name.pid"
}

wait_for() {
  local what="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what did not come up in ${secs}s; see $DIR/log/"
}

kc() { "$BINDIR/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------------
# The node's network and images

network() {
  if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
    ip link add "$NODE_IF" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_IF"
    ip link set "$NODE_IF" up
  fi
  mkdir -p "$DIR/cni"
  cat >"$DIR/cni/10-pvcb.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pvcb",
  "plugins": [
    {"type": "bridge", "bridge": "pvcb-br0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]],
              "routes": [{"dst": "$NODE_IP/32"}, {"dst": "$SERVICE_RANGE"}], "dataDir": "$DIR/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }

has_image() { ctr_ images ls -q 2>/dev/null | grep -qx "$1"; }

# Commits a FROM-scratch image with buildah and imports it into the node's containerd.
import_image() {
  local name="$1" ctrid="$2" tar
  tar="$(mktemp /tmp/pvcb-image.XXXXXX.tar)"
  buildah commit --quiet "$ctrid" "$name" >/dev/null
  buildah rm "$ctrid" >/dev/null
  rm -f "$tar"
  buildah push --quiet "$name" "docker-archive:$tar:$name" >/dev/null
  ctr_ images import --no-unpack "$tar" >/dev/null
  rm -f "$tar"
}

pause_image() {
  has_image "$PAUSE_IMAGE" && return 0
  local src bin c
  src="$(kube_src)/build/pause/linux/pause.c"
  bin="$DIR/images/pause"
  mkdir -p "$DIR/images"
  gcc -Os -static -o "$bin" "$src"
  strip "$bin"
  c="$(buildah from --quiet scratch)"
  buildah copy --quiet --chmod 0755 "$c" "$bin" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  import_image "$PAUSE_IMAGE" "$c"
}

# The workloads of the tests (a Deployment that sleeps with a claim mounted): busybox, static,
# from Debian's busybox-static.
tools_image() {
  has_image "$TOOLS_IMAGE" && return 0
  local c root="$DIR/images/tools"
  rm -rf "$root"; mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  for app in sh sleep ls cat stat sha256sum find true echo touch rm mkdir; do ln -s busybox "$root/bin/$app"; done
  c="$(buildah from --quiet scratch)"
  buildah copy --quiet "$c" "$root" / >/dev/null
  buildah config --entrypoint '[]' --cmd '["/bin/sh"]' --env PATH=/bin "$c"
  import_image "$TOOLS_IMAGE" "$c"
}

pvcb_image() {
  local args=(--tag "$IMAGE")
  [ -n "${PVC_BACKUP_BIN:-}" ] && args+=(--binary "$PVC_BACKUP_BIN")
  "$repo/scripts/build-image.sh" "${args[@]}" >&2
  local tar
  tar="$(mktemp /tmp/pvcb-image.XXXXXX.tar)"; rm -f "$tar"
  buildah push --quiet "$IMAGE" "docker-archive:$tar:$IMAGE" >/dev/null
  ctr_ images import --no-unpack "$tar" >/dev/null
  rm -f "$tar"
}

images() {
  # shellcheck source=containers-env.sh
  . "$repo/scripts/containers-env.sh"
  containers_env
  pause_image
  tools_image
  pvcb_image
  rm -rf "$CONTAINERS_ENV_DIR"
}

# ---------------------------------------------------------------------------------------------

BINDIR=""
binaries() { BINDIR="$("$here/local-cluster/build.sh")/bin"; }
# openshift/api, pinned, from the Go module proxy (into the cache's module folder).
OPENSHIFT_API_VERSION="v0.0.0-20260116192047-6fb7fdae95fd"
openshift_api() {
  local dir="${PVC_BACKUP_CACHE:-/var/cache/pvc-backup}/go/mod/github.com/openshift/api@$OPENSHIFT_API_VERSION"
  if [ ! -d "$dir" ]; then
    (cd "$(mktemp -d)" && GOMODCACHE="$(dirname "$(dirname "$(dirname "$dir")")")" GOFLAGS=-mod=mod \
      go mod download "github.com/openshift/api@$OPENSHIFT_API_VERSION") >&2
  fi
  echo "$dir"
}
kube_src() { echo "${PVC_BACKUP_CACHE:-/var/cache/pvc-backup}/go/mod/k8s.io/kubernetes@${KUBE_VERSION:-v1.34.4}"; }

control_plane() {
  local p="$DIR/pki"
  start etcd "$BINDIR/etcd" --name local --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster local=http://127.0.0.1:23800 --unsafe-no-fsync --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$BINDIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range "$SERVICE_RANGE" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,StorageObjectInUseProtection,PersistentVolumeClaimResize,NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota \
    --enable-aggregator-routing=true --allow-privileged=true \
    --profiling=false --v=1
  wait_for kube-apiserver 90 kc get --raw /readyz

  start kube-controller-manager "$BINDIR/kube-controller-manager" \
    --kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --controllers '*' --use-service-account-credentials \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --enable-hostpath-provisioner --allocate-node-cidrs=false \
    --service-cluster-ip-range "$SERVICE_RANGE" --v=1
  start kube-scheduler "$BINDIR/kube-scheduler" \
    --kubeconfig "$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --v=1
}

# The runtime the node's containerd calls: runc, with one change where this machine needs it.
# The kubelet asks for a negative oom_score_adj for pod sandboxes (-998) and Guaranteed pods; a
# process without CAP_SYS_RESOURCE (as here: the VM's root lacks it) may not lower its own, and
# runc then fails every sandbox ("can't get final child's PID from pipe"). The wrapper raises a
# negative value to 0 in the bundle's config.json before runc reads it; nothing else changes.
runtime_wrapper() {
  mkdir -p "$DIR/bin"
  cat >"$DIR/bin/runc" <<'WRAP'
#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ] && [ -f "$a/config.json" ]; then
    jq '(.process.oomScoreAdj // 0) as $o | if $o < 0 then .process.oomScoreAdj = 0 else . end' \
      "$a/config.json" >"$a/config.json.new" && mv "$a/config.json.new" "$a/config.json"
  fi
  prev="$a"
done
exec /usr/bin/runc "$@"
WRAP
  chmod 0755 "$DIR/bin/runc"
}

node() {
  local p="$DIR/pki"
  mkdir -p "$DIR/containerd" "$DIR/kubelet"
  runtime_wrapper
  cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$DIR/bin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni"
EOF
  start containerd containerd --config "$DIR/containerd/config.toml"
  wait_for containerd 30 ctr --address "$SOCK" version

  images

  resolv_conf
  cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$p/ca.crt"}
authorization: {mode: Webhook}
address: "$NODE_IP"
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: "unix://$SOCK"
tlsCertFile: "$p/kubelet.crt"
tlsPrivateKeyFile: "$p/kubelet.key"
resolvConf: "$DIR/resolv.conf"
clusterDNS: ["$NODE_IP"]
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
maxPods: 60
EOF
  start kubelet "$BINDIR/kubelet" --config "$DIR/kubelet/config.yaml" \
    --kubeconfig "$DIR/kubelet.kubeconfig" --root-dir "$DIR/kubelet/root" \
    --hostname-override "$NODE" --node-ip "$NODE_IP" --v=1
  wait_for "node $NODE" 120 sh -c "'$BINDIR/kubectl' --kubeconfig '$DIR/admin.kubeconfig' get node '$NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
}

# The pods' resolver: the node's dnsmasq (see services). A kubelet started without clusterDNS
# hands this file to each new pod as it is, so a cluster brought up before services existed
# resolves Service names too once `services` has run.
resolv_conf() {
  printf 'nameserver %s\nsearch svc.cluster.local cluster.local\noptions ndots:5\n' "$NODE_IP" \
    >"$DIR/resolv.conf"
}

# Services reach their pods: kube-proxy writes the iptables rules of every ClusterIP
# (--masquerade-all, so that a pod reaching a Service whose endpoint is on the same bridge gets
# the answer back through the node), and dnsmasq serves the Services' names from a hosts folder
# (read again whenever a file in it changes) that a loop rewrites from `kubectl get services`.
services() {
  mkdir -p "$DIR/dns/hosts" "$DIR/bin"
  resolv_conf
  start kube-proxy "$BINDIR/kube-proxy" --kubeconfig "$DIR/admin.kubeconfig" \
    --hostname-override "$NODE" --proxy-mode iptables --masquerade-all \
    --cluster-cidr "$POD_SUBNET" --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    --healthz-bind-address 127.0.0.1:10256 --metrics-bind-address 127.0.0.1:10249 --v=1
  cat >"$DIR/bin/dns-sync" <<'SYNC'
#!/bin/sh
# dns-sync KUBECTL KUBECONFIG DIR: rewrites DIR/hosts/services (for dnsmasq) from the cluster's
# Services at start and after every change a watch reports.
kubectl="$1" kubeconfig="$2" dir="$3"
refresh() {
  "$kubectl" --kubeconfig "$kubeconfig" get services -A -o jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc {.metadata.name}.{.metadata.namespace}.svc.cluster.local{"\n"}{end}' \
    2>/dev/null | grep -v '^None ' >"$dir/services.new" || return 0
  cmp -s "$dir/services.new" "$dir/hosts/services" || mv "$dir/services.new" "$dir/hosts/services"
}
while :; do
  refresh
  "$kubectl" --kubeconfig "$kubeconfig" get services -A --watch-only -o name 2>/dev/null |
    while read -r _; do refresh; done
  sleep 1
done
SYNC
  chmod 0755 "$DIR/bin/dns-sync"
  start dns-sync "$DIR/bin/dns-sync" "$BINDIR/kubectl" "$DIR/admin.kubeconfig" "$DIR/dns"
  start dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --hostsdir="$DIR/dns/hosts" \
    --listen-address="$NODE_IP" --bind-interfaces --port=53 --local=/svc/ --local=/cluster.local/ \
    --user=root --pid-file="$DIR/dns/dnsmasq.pid" --log-facility=-
  wait_for "the Services' names" 30 sh -c "grep -q ' kubernetes.default.svc ' '$DIR/dns/hosts/services' \
    && kill -0 \$(cat '$DIR/run/dnsmasq.pid')"
}

objects() {
  # The apiserver's kubelet client may read logs and exec: system:masters already can.
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: other
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-block
provisioner: kubernetes.io/no-provisioner
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
EOF
  kc apply -f "$(kube_src)/cluster/addons/volumesnapshots/crd/" >/dev/null
  # OpenShift's SecurityContextConstraints, so that the SCC and the RBAC around it that
  # `manifests --openshift` and deploy/openshift ship are checked by this API server too (it
  # stores SCCs; only OpenShift enforces them).
  kc apply --server-side -f "$(openshift_api)/security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml" >/dev/null
  # OpenShift's Route, so that `--expose route` makes a Route this API server validates (no
  # router runs here: the test that uses it plays one with HAProxy, OpenShift's router's engine).
  kc apply --server-side -f "$(openshift_api)/route/v1/zz_generated.crd-manifests/routes.crd.yaml" >/dev/null
  wait_for "the default service account" 60 kc -n default get serviceaccount default
}

up() {
  need_root
  install_debs containerd runc containernetworking-plugins iptables conntrack iproute2 openssl curl \
    buildah gcc libc6-dev busybox-static binutils jq dnsmasq-base
  binaries
  mkdir -p "$DIR"
  pki
  network
  control_plane
  node
  objects
  services
  log "up: $("$BINDIR/kube-apiserver" --version), node $NODE Ready; $(env_lines | tr '\n' ' ')"
}

env_lines() {
  echo "export PATH=$("$here/local-cluster/build.sh" --path)/bin:\$PATH"
  echo "export KUBECONFIG=$DIR/admin.kubeconfig"
  echo "export PVC_BACKUP_IMAGE=$IMAGE"
  echo "export PVC_BACKUP_TEST_TOOLS_IMAGE=$TOOLS_IMAGE"
  echo "export PVC_BACKUP_TEST_OTHER_CLASS=other"
}

status() {
  local name rc=0
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet \
    kube-proxy dnsmasq dns-sync; do
    if running "$name"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: stopped"; rc=1; fi
  done
  [ -f "$DIR/admin.kubeconfig" ] && kc get nodes 2>/dev/null || true
  return $rc
}

stop_pid() {
  local name="$1" f="$DIR/run/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  need_root
  # Pods first, while the kubelet and containerd can still stop them.
  if running kubelet && [ -f "$DIR/admin.kubeconfig" ]; then
    kc delete namespaces -l pvc-backup.io/test --wait=false >/dev/null 2>&1 || true
  fi
  stop_pid kubelet
  if running containerd; then
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd
  # The shims outlive containerd by design; they and their containers go too.
  pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $SOCK" 2>/dev/null || true
  for name in dnsmasq dns-sync; do stop_pid "$name"; done
  if running kube-proxy; then
    stop_pid kube-proxy
    # Its iptables rules outlive it.
    "$("$here/local-cluster/build.sh" --path)/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$name"; done
  # Mounts under the cluster's folder, deepest first (volumes, sandboxes, overlay snapshots, netns).
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$DIR" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  ip link del pvcb-br0 2>/dev/null || true
  ip link del "$NODE_IF" 2>/dev/null || true
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_lines ;;
  status) status ;;
  images) need_root; images ;;
  services) need_root; install_debs dnsmasq-base; binaries; services ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 2; exit 0 ;;
esac
