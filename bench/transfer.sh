#!/usr/bin/env bash
# Transfer benchmark: the wire between two movers against rsync over ssh and rsync behind stunnel,
# between two network namespaces on this machine joined by a veth pair (receiver 10.231.8.1,
# sender 10.231.8.2). Every tool pushes from the sender's namespace into the receiver's:
#
#   pvc-backup  `mover receive DST --listen 10.231.8.1:PORT --keys DIR` in the receiver's namespace,
#               `mover send SRC --to 10.231.8.1:PORT --keys DIR --json` in the sender's, with a
#               fresh key pair from `mover keys` (each side given its own key and the peer's
#               certificate only).
#   rsync-ssh   `rsync -aHAXS --numeric-ids --delete -e ssh SRC/ root@10.231.8.1:DST/` to Debian's
#               openssh-server, run as `sshd -D -f <own config>` in the receiver's namespace on its
#               own port, with a generated host key (pinned on the client) and a generated client
#               key, root login by key only. This is how pv-migrate moves a volume: its rsync pushes
#               over ssh as root with a key (pv-migrate's own flags are `-av --no-inc-recursive`,
#               which keep neither hard links, ACLs nor xattrs; the flags here keep all of them).
#   volsync     VolSync's rsync-tls mover (mover-rsync-tls/server.sh and client.sh): on the
#               receiver's side stunnel (Debian's stunnel4) accepts TLS with a pre-shared key
#               (`ciphers = PSK`, `PSKsecrets`) and starts an rsync daemon for each connection
#               (`exec rsync --server --daemon --config=<own>`, the rsyncd.conf of VolSync's
#               privileged mover: uid 0, `numeric ids`, `transfer logging`, `open noatime`); on the
#               sender's side stunnel listens on loopback, and the sender runs VolSync's two commands
#               (with `*` matching dot files too):
#                 rsync -aAhHSxz --exclude=lost+found --itemize-changes --info=stats2,misc2 \
#                       SRC/* rsync://127.0.0.1:PORT/data
#                 rsync -rx --exclude=lost+found --ignore-existing --ignore-non-existing --delete \
#                       --itemize-changes --info=stats2,misc2 SRC/ rsync://127.0.0.1:PORT/data
#               the first copies what the folder holds (no -X: extended attributes are dropped, and
#               -z compresses), the second only deletes what the source lacks. VolSync starts the
#               daemon from stunnel as here, not as a standalone `rsync --daemon`.
#
# Cases (datasets from bench/mkdata.sh on one tmpfs, source and targets alike; one file in 1,000
# gets a user xattr, so that the checks see which tool keeps them):
#   D1 (100,000 files of 1-16 KiB) first copy, a re-run with nothing changed, a re-run after 1% of
#   the files changed (mkdata.sh modify); D2 (4 x 512 MiB) first copy; D1 first copy and a re-run
#   again with a 20 ms round trip (`tc qdisc add dev VETH root netem delay 10ms` on both ends),
#   when the kernel has netem (the output says when it has not). Beside them, a local copy of D2
#   on the same tmpfs with `cp -a` and with `pvc-backup mover sync`, the goal for D2 being within
#   1.2 times a local copy.
# Each side's wall time and peak RSS come from /usr/bin/time. The sender's wall time is the
# transfer's (the receiving side listens before the sender starts, so setting up a TLS or ssh
# connection is inside it); the receiver's is that of the receiving tool's own processes (for
# volsync, its two rsync daemons added up). A side's peak is its largest process: the receiving
# rsync or the sshd or stunnel above it; the sending rsync or its ssh or stunnel. The page cache is
# dropped before each transfer. Each figure is the median of --runs runs (3 by default), each peak
# the largest over the runs; the tools take turns going first. After every copy, `rsync -aHAXn
# --numeric-ids --delete --itemize-changes` between source and target must list nothing; for
# volsync, what it lists is reported as what that way of copying loses.
# With --million, one more case: a first copy of 1,000,000 files of 1 KiB, for peak memory (the
# goal is at most 64 MiB per side).
# Block volumes (`mover block` over the same wire; --block-only runs these cases alone): an image
# file of 1 GiB (16 MiB with --small) whose 4 MiB chunks are 30% random data and 70% zeros, copied
# into a missing image, then again after 1% of its chunks were rewritten, against what a user
# without pvc-backup runs for a volume (VolSync and pv-migrate copy no Block volumes):
#   rsync-img   `rsync -IS --inplace --no-whole-file -e ssh SRC root@10.231.8.1:DST` to the same
#               sshd: a first copy sends the image (its zeros as holes), a re-run rsync's delta
#               (both sides read the whole image); -I because the image may change within the
#               second of its last copy, where rsync's size-and-mtime check would skip it;
#   dd-ssh      `dd if=SRC bs=4M | ssh root@10.231.8.1 dd of=DST bs=4M conv=sparse,notrunc`: the
#               whole image every time.
# After every block copy `cmp` must find source and target equal.
#
# Usage: bench/transfer.sh [--small] [--million | --million-only | --block-only] [--runs N] [--dir DIR]
#   --small         a few thousand files and 2 x 8 MiB, one run: checks that the script works.
#   --million-only  only the case of 1,000,000 files.
#   --block-only    only the block cases.
# Needs root (network namespaces, a tmpfs, sshd); as root it installs missing Debian packages.
# Env: PVC_BACKUP_BIN (default: cargo build --release, then target/release/pvc-backup),
#      MKDATA (default bench/mkdata.sh).
# Progress goes to stderr, the Markdown report to stdout.
set -euo pipefail

SMALL=0; MILLION=0; MAIN=1; BLOCK=1; RUNS=""; DIR="${TMPDIR:-/var/tmp}/pvc-backup-bench-transfer"
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --million) MILLION=1 ;;
    --million-only) MILLION=1; MAIN=0; BLOCK=0 ;;
    --block-only) MAIN=0; BLOCK=1 ;;
    --runs) RUNS="${2:?--runs needs a number}"; shift ;;
    --dir) DIR="${2:?--dir needs a folder}"; shift ;;
    -h|--help) sed -n '2,71p' "$0"; exit 0 ;;
    *) echo "transfer.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$RUNS" ] && ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
  echo "transfer.sh: --runs takes a number of runs, 1 or more (not $RUNS)" >&2; exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MKDATA="${MKDATA:-$ROOT/bench/mkdata.sh}"
log() { echo "transfer.sh: [${SECONDS}s] $*" >&2; }
die() { log "$*"; exit 1; }
[ -f "$MKDATA" ] || die "dataset generator not found: $MKDATA"
if [ "$(id -u)" != 0 ]; then
  echo "transfer.sh: needs root: it makes network namespaces joined by a veth pair (ip netns), mounts a tmpfs and runs sshd; run it as root" >&2
  exit 2
fi
# The folder ends up in sshd's, stunnel's and rsyncd's configuration files, which take no quoting.
case "$DIR" in *[[:space:]]*) die "--dir must not contain white space: $DIR" ;; esac
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac

if [ "$SMALL" = 1 ]; then
  D1_ENV=(NFILES=3000 NDIRS=30); D2_ENV=(NBIG=2 BIGMIB=8); RUNS="${RUNS:-1}"; TMPFS_SIZE=2G
  B_MIB=16
else
  D1_ENV=(NFILES=100000 NDIRS=1000); D2_ENV=(NBIG=4 BIGMIB=512); RUNS="${RUNS:-3}"; TMPFS_SIZE=16G
  B_MIB=1024
fi
M_ENV=(NFILES=1000000 NDIRS=10000 MINKIB=1 MAXKIB=1)

# Tools, from Debian, installed when missing.
need=(ip:iproute2 tc:iproute2 ss:iproute2 ps:procps rsync:rsync /usr/sbin/sshd:openssh-server
      ssh:openssh-client ssh-keygen:openssh-client stunnel4:stunnel4 /usr/bin/time:time
      python3:python3 setfattr:attr openssl:openssl cmp:diffutils)
missing=()
for nt in "${need[@]}"; do command -v "${nt%%:*}" >/dev/null 2>&1 || missing+=("${nt#*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

if [ -n "${PVC_BACKUP_BIN:-}" ]; then
  BIN="$PVC_BACKUP_BIN"
else
  log "building pvc-backup (release)"
  (cd "$ROOT" && cargo build --release -q -p pvc-backup)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pvc-backup"
fi
case "$BIN" in /*) ;; *) BIN="$(pwd)/$BIN" ;; esac
[ -x "$BIN" ] || die "pvc-backup binary not found: $BIN"

# ---- the two namespaces, the work folder, and whatever runs in the background ----
ID=$$
NS_R="pvcb-bench-$ID-recv"; NS_S="pvcb-bench-$ID-send"
VETH_R="pvbr$ID"; VETH_S="pvbs$ID"
IP_R=10.231.8.1; IP_S=10.231.8.2
BG=()       # /usr/bin/time processes running a server in the background
NS_MADE=()
stop_bg() { # PID: ends what /usr/bin/time (PID) runs, then reaps both
  local p=$1 c
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
  wait "$p" 2>/dev/null || true
  local keep=() b
  for b in "${BG[@]}"; do [ "$b" = "$p" ] || keep+=("$b"); done
  BG=("${keep[@]}")
}
cleanup() {
  local p
  for p in "${BG[@]}"; do
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for n in "${NS_MADE[@]}"; do ip netns delete "$n" 2>/dev/null || true; done
  if mountpoint -q "$DIR/fs" 2>/dev/null; then umount "$DIR/fs" || umount -l "$DIR/fs" || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$DIR"; mkdir -p "$DIR/fs" "$DIR/res"
RES="$DIR/res"
mount -t tmpfs -o "size=$TMPFS_SIZE" tmpfs "$DIR/fs"
W="$DIR/fs"
mkdir -p "$W/keys" "$W/logs" "$W/out"
K="$W/keys"; L="$W/logs"; O="$W/out"

ip netns add "$NS_R"; NS_MADE+=("$NS_R")
ip netns add "$NS_S"; NS_MADE+=("$NS_S")
ip link add "$VETH_R" netns "$NS_R" type veth peer name "$VETH_S" netns "$NS_S"
ip -n "$NS_R" addr add "$IP_R/24" dev "$VETH_R"
ip -n "$NS_S" addr add "$IP_S/24" dev "$VETH_S"
for nd in "$NS_R:$VETH_R" "$NS_S:$VETH_S"; do
  ip -n "${nd%%:*}" link set "${nd#*:}" up
  ip -n "${nd%%:*}" link set lo up
done

# netem: a trial on the receiver's end, removed at once.
NETEM=0; NETEM_WHY=""
if command -v modprobe >/dev/null; then modprobe sch_netem 2>/dev/null || true; fi
if err=$(ip netns exec "$NS_R" tc qdisc add dev "$VETH_R" root netem delay 10ms 2>&1); then
  ip netns exec "$NS_R" tc qdisc del dev "$VETH_R" root
  NETEM=1
else
  NETEM_WHY="this kernel ($(uname -r)) has no netem qdisc: \`tc qdisc add ... netem\` says \"$(echo "$err" | head -n 1)\""
  [ -e "/lib/modules/$(uname -r)" ] || NETEM_WHY+=" and there are no loadable modules (no /lib/modules/$(uname -r))"
  log "no 20 ms round-trip cases: $NETEM_WHY"
fi
delay() { # on|off: 10 ms each way on both ends of the veth pair
  local nd
  for nd in "$NS_R:$VETH_R" "$NS_S:$VETH_S"; do
    if [ "$1" = on ]; then
      ip netns exec "${nd%%:*}" tc qdisc add dev "${nd#*:}" root netem delay 10ms
    else
      ip netns exec "${nd%%:*}" tc qdisc del dev "${nd#*:}" root
    fi
  done
}

# ---- keys and configuration ----
"$BIN" mover keys "$K/pvcb" >"$L/keys.out" 2>&1 || { cat "$L/keys.out" >&2; die "pvc-backup mover keys failed"; }
mkdir -m 700 "$K/pvcb-recv" "$K/pvcb-send"
cp -p "$K/pvcb/receiver.key" "$K/pvcb/receiver.crt" "$K/pvcb/sender.crt" "$K/pvcb-recv/"
cp -p "$K/pvcb/sender.key" "$K/pvcb/sender.crt" "$K/pvcb/receiver.crt" "$K/pvcb-send/"

ssh-keygen -q -t ed25519 -N '' -C pvcb-bench-host -f "$K/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C pvcb-bench-client -f "$K/ssh_client_ed25519_key"
cp "$K/ssh_client_ed25519_key.pub" "$K/authorized_keys"
echo "pvcb-bench-receiver $(cut -d' ' -f1,2 "$K/ssh_host_ed25519_key.pub")" >"$K/known_hosts"
# sshd's privilege separation folder, which Debian's service would make.
mkdir -p /run/sshd; chmod 0755 /run/sshd
sshd_config() { # PORT: root by key only, on the receiver's address
  cat <<EOF
Port $1
ListenAddress $IP_R
HostKey $K/ssh_host_ed25519_key
PidFile $K/sshd.pid
AuthorizedKeysFile $K/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
LogLevel ERROR
EOF
}
SSH_E="ssh -F /dev/null -i $K/ssh_client_ed25519_key -o HostKeyAlias=pvcb-bench-receiver -o UserKnownHostsFile=$K/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR"

printf 'pvcb-bench:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$K/psk.txt"
chmod 600 "$K/psk.txt"
stunnel_globals() { # NAME
  cat <<EOF
foreground = yes
pid =
output = $L/stunnel-$1.log
syslog = no
debug = notice
socket = l:SO_KEEPALIVE=1
socket = l:TCP_KEEPIDLE=180
socket = r:SO_KEEPALIVE=1
socket = r:TCP_KEEPIDLE=180
EOF
}
stunnel_server_config() { # PORT DST
  stunnel_globals server
  cat <<EOF
[rsync]
ciphers = PSK
PSKsecrets = $K/psk.txt
accept = $IP_R:$1
client = no
exec = /usr/bin/time
execargs = time -a -f %e:%M -o $O/recv.time /usr/bin/rsync --server --daemon --config=$K/rsyncd.conf .
EOF
}
stunnel_client_config() { # PORT
  stunnel_globals client
  cat <<EOF
[rsync]
ciphers = PSK
PSKsecrets = $K/psk.txt
accept = 127.0.0.1:$1
client = yes
connect = $IP_R:$1
EOF
}
rsyncd_config() { # DST: VolSync's privileged mover
  cat <<EOF
address = 127.0.0.1
log file = $L/rsyncd.log
max verbosity = 10
use chroot = false
numeric ids = true
munge symlinks = false
open noatime = true
reverse lookup = false
transfer logging = true
read only = false
uid = 0
gid = *

[data]
comment = PVC data
path = $1
EOF
}
VOLSYNC_CLIENT='shopt -s dotglob
rsync -aAhHSxz --exclude=lost+found --itemize-changes --info=stats2,misc2 "$1"/* "rsync://127.0.0.1:$2/data"; a=$?
rsync -rx --exclude=lost+found --ignore-existing --ignore-non-existing --delete --itemize-changes --info=stats2,misc2 "$1"/ "rsync://127.0.0.1:$2/data"; b=$?
exit $((a * 100 + b))'

# ---- measuring ----
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
tline() { tail -n 1 "$1" | tr ':' ' '; } # the "seconds KiB" line of a /usr/bin/time output file
wait_listen() { # NS PORT WHAT PID: until something listens on PORT in NS (at most 10 s)
  local i
  for ((i = 0; i < 200; i++)); do
    if ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; then return 0; fi
    kill -0 "$4" 2>/dev/null || die "$3 exited before it listened: $(tail -n 5 "$L/$3.err" 2>/dev/null)"
    sleep 0.05
  done
  die "$3 does not listen on port $2 after 10 s"
}
gone() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -z "$s" ] || [ "${s:0:1}" = Z ]; }
wait_gone() { # PID WHAT: waits (at most 120 s) for PID to end, then reaps it and returns its status
  local i
  for ((i = 0; i < 2400; i++)); do gone "$1" && break; sleep 0.05; done
  gone "$1" || die "$2 is still running 120 s after the sender ended"
  local s=0; wait "$1" || s=$?
  local keep=() b
  for b in "${BG[@]}"; do [ "$b" = "$1" ] || keep+=("$b"); done
  BG=("${keep[@]}")
  return "$s"
}
wait_lines() { # FILE N WHAT: until FILE has N figure lines (at most 120 s)
  local i
  for ((i = 0; i < 2400; i++)); do
    [ -f "$1" ] && [ "$(grep -c '^[0-9]' "$1")" -ge "$2" ] && return 0
    sleep 0.05
  done
  die "$3 did not end 120 s after the sender ended"
}
wait_idle() { # PID WHAT: until the server that /usr/bin/time (PID) runs has no child left (at most
  # 120 s), so that what its connections used is counted in its peak
  local s i
  s=$(ps -o pid= --ppid "$1" | tr -d ' ')
  [ -n "$s" ] || return 0
  for ((i = 0; i < 2400; i++)); do
    [ -z "$(ps -o pid= --ppid "$s")" ] && return 0
    sleep 0.05
  done
  die "$2 still serves a connection 120 s after the sender ended"
}
kib() { tline "$1" | cut -d' ' -f2; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }
PORT=7600
bg_in() { # NS TIMEFILE NAME CMD...: CMD in NS under /usr/bin/time, in the background; sets BGP
  local ns=$1 tf=$2 name=$3; shift 3
  ip netns exec "$ns" /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$L/$name.out" 2>"$L/$name.err" &
  BGP=$!; BG+=("$BGP")
}

# send_timed TOOL CASE CMD...: the sending side, in the sender's namespace under /usr/bin/time;
# a failure ends the run with what the logs say.
send_timed() {
  local t=$1 c=$2; shift 2
  if ! ip netns exec "$NS_S" timeout 7200 /usr/bin/time -f '%e %M' -o "$O/send.time" "$@" \
       >"$O/send.out" 2>"$O/send.err"; then
    tail -n 20 "$O/send.err" >&2
    for f in "$L"/*.err "$L"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 10 "$f" >&2; }; done
    die "$t: the sender failed in case $c"
  fi
}

# transfer TOOL CASE SRC DST: one timed transfer; appends "seconds KiB" to $RES/CASE_TOOL_send
# and $RES/CASE_TOOL_recv.
transfer() {
  local t=$1 c=$2 src=$3 dst=$4 send=() rp="" cpid="" ss="" sk="" rs="" rk=""
  PORT=$((PORT + 1))
  mkdir -p "$dst"
  rm -f "$O"/*.time
  drop_caches
  case $t in
    pvcb)
      bg_in "$NS_R" "$O/recv.time" receive "$BIN" mover receive "$dst" --listen "$IP_R:$PORT" --keys "$K/pvcb-recv" -q
      rp=$BGP; wait_listen "$NS_R" "$PORT" receive "$rp"
      send=("$BIN" mover send "$src" --to "$IP_R:$PORT" --keys "$K/pvcb-send" --json) ;;
    ssh)
      sshd_config "$PORT" >"$K/sshd_config"
      bg_in "$NS_R" "$O/sshd.time" sshd /usr/sbin/sshd -D -f "$K/sshd_config" -E "$L/sshd.log"
      rp=$BGP; wait_listen "$NS_R" "$PORT" sshd "$rp"
      send=(rsync -aHAXS --numeric-ids --delete -e "$SSH_E -p $PORT"
            --rsync-path="/usr/bin/time -f %e:%M -o $O/recv.time rsync" "$src/" "root@$IP_R:$dst/") ;;
    volsync)
      rsyncd_config "$dst" >"$K/rsyncd.conf"
      stunnel_server_config "$PORT" >"$K/stunnel-server.conf"
      stunnel_client_config "$PORT" >"$K/stunnel-client.conf"
      bg_in "$NS_R" "$O/stunnel-server.time" stunnel-server stunnel4 "$K/stunnel-server.conf"
      rp=$BGP; wait_listen "$NS_R" "$PORT" stunnel-server "$rp"
      bg_in "$NS_S" "$O/stunnel-client.time" stunnel-client stunnel4 "$K/stunnel-client.conf"
      cpid=$BGP; wait_listen "$NS_S" "$PORT" stunnel-client "$cpid"
      send=(bash -c "$VOLSYNC_CLIENT" volsync "$src" "$PORT") ;;
  esac
  send_timed "$t" "$c" "${send[@]}"
  read -r ss sk < <(tline "$O/send.time")
  case $t in
    pvcb)
      wait_gone "$rp" "mover receive" || { tail -n 20 "$L/receive.err" >&2; die "pvc-backup receive failed in case $c"; }
      read -r rs rk < <(tline "$O/recv.time")
      log "$c: pvc-backup sent $(tail -n 1 "$O/send.out" | python3 -c 'import json, sys; s = json.load(sys.stdin)["sent"]; print(s["files"], "files,", s["bytes"], "bytes")')" ;;
    ssh)
      wait_lines "$O/recv.time" 1 "the receiving rsync"
      read -r rs rk < <(tline "$O/recv.time")
      wait_idle "$rp" sshd
      stop_bg "$rp"
      rk=$(max "$(kib "$O/sshd.time")" "$rk") ;;
    volsync)
      # Two connections, two daemons: their wall times add up.
      wait_lines "$O/recv.time" 2 "the rsync daemons"
      rs=$(grep -v '^Command' "$O/recv.time" | awk -F: '{ s += $1 } END { printf "%.2f", s }')
      rk=$(grep -v '^Command' "$O/recv.time" | awk -F: '$2 > m { m = $2 } END { print m }')
      wait_idle "$rp" stunnel
      stop_bg "$rp"; stop_bg "$cpid"
      rk=$(max "$(kib "$O/stunnel-server.time")" "$rk")
      sk=$(max "$(kib "$O/stunnel-client.time")" "$sk") ;;
  esac
  echo "$ss $sk" >>"$RES/${c}_${t}_send"
  echo "$rs $rk" >>"$RES/${c}_${t}_recv"
  log "$c, $t: sender $ss s $((sk / 1024)) MiB, receiver $rs s $((rk / 1024)) MiB"
}

# timed NAME CMD...: a local command, timed; appends "seconds KiB" to $RES/NAME.
timed() {
  local name=$1; shift
  drop_caches
  /usr/bin/time -f '%e %M' -o "$O/local.time" "$@" >"$O/local.out" 2>"$O/local.err" \
    || { tail -n 20 "$O/local.err" >&2; die "$name failed: $*"; }
  tline "$O/local.time" >>"$RES/$name"
  log "$name: $(tline "$O/local.time" | awk '{ printf "%s s, %d MiB", $1, $2 / 1024 }')"
}

declare -A NOTED
NOTES=()
# check TOOL CASE SRC DST: rsync's itemized dry run must list nothing (pvc-backup's state folder
# aside). For volsync, what it lists is what that way of copying loses, noted once per case.
check() {
  local t=$1 c=$2 out
  out=$(rsync -aHAXn --numeric-ids --delete --itemize-changes --exclude=/.pvc-backup "$3/" "$4/") \
    || die "the rsync check of $t, $c failed"
  [ -z "$out" ] && return 0
  if [ "$t" = volsync ] || [ "$t" = cp ]; then
    if [ -z "${NOTED[$t$c]:-}" ]; then
      NOTED[$t$c]=1
      NOTES+=("$(label "$t"), $(casename "$c"): $(printf '%s\n' "$out" | loses)")
    fi
    return 0
  fi
  log "$t, $c: the target differs from the source (rsync -aHAXn --itemize-changes):"
  printf '%s\n' "$out" | head -n 20 >&2
  exit 1
}
loses() { # itemized lines on stdin: what the target lacks, in words
  awk '
    $2 == "./" { root = $1; next }
    $1 == "*deleting" { del++; next }
    { if (substr($1, 11, 1) == "x") { x++; next } other++; if (ex == "") ex = $0 }
    END {
      s = ""
      if (root != "") s = "the root folder'"'"'s own attributes (`" root " ./`)"
      if (x) s = s (s == "" ? "" : "; ") "the extended attributes of " x (x == 1 ? " entry" : " entries")
      if (del) s = s (s == "" ? "" : "; ") del (del == 1 ? " entry" : " entries") " the source lacks still there"
      if (other) s = s (s == "" ? "" : "; ") other " other differences, such as `" ex "`"
      print "rsync -aHAXn lists " s
    }'
}

label() {
  case $1 in
    pvcb) echo "pvc-backup send/receive" ;; ssh) echo "rsync over ssh (pv-migrate)" ;;
    volsync) echo "rsync daemon behind stunnel (VolSync)" ;; cp) echo "cp -a" ;;
    sync) echo "pvc-backup mover sync" ;;
    blk) echo "pvc-backup mover block" ;; rsyncimg) echo "rsync -IS --inplace over ssh" ;;
    ddssh) echo "dd over ssh" ;;
  esac
}
casename() {
  case $1 in
    d1_first) echo "D1 first copy" ;; d1_same) echo "D1 re-run, nothing changed" ;;
    d1_pct) echo "D1 re-run, 1% changed" ;; d2_first) echo "D2 first copy" ;;
    rtt_first) echo "D1 first copy, 20 ms round trip" ;;
    rtt_same) echo "D1 re-run, nothing changed, 20 ms round trip" ;;
    m_first) echo "1,000,000 files of 1 KiB, first copy" ;;
    d2_local) echo "D2 local copy, same tmpfs" ;;
    b_first) echo "image, first copy" ;; b_pct) echo "image, re-run, 1% of the chunks changed" ;;
  esac
}

# One file in 1,000 (and the first) gets a user xattr.
tag_xattrs() {
  find "$1" -type f | sort | awk 'NR % 1000 == 1' | xargs -r -d '\n' setfattr -n user.pvcb-bench -v tagged
}

TOOLS=(pvcb ssh volsync)
order() { # RUN: the tools, the first of run R being the R-th
  local r=$(( ($1 - 1) % ${#TOOLS[@]} ))
  printf '%s\n' "${TOOLS[@]:$r}" "${TOOLS[@]:0:$r}"
}

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
BIN_DATE="$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
LOAD_BEFORE="$(uptime)"
log "start: $LOAD_BEFORE"
log "binary: $BIN"

B_RUNS="$RUNS"
if [ "$MAIN" = 1 ]; then
  log "building D1 and D2"
  env "${D1_ENV[@]}" "$MKDATA" d1 "$W/d1.orig" >&2
  tag_xattrs "$W/d1.orig"
  env "${D2_ENV[@]}" "$MKDATA" d2 "$W/d2" >&2
  tag_xattrs "$W/d2"
  # In a virtual machine, memory not touched for a while costs several times the kernel time on
  # first use (docs/benchmarks.md). A run keeps one copy of D1 per tool for the re-runs, so the
  # untimed warm-up touches as much: the sources again and one D1 copy per tool, together.
  mkdir "$W/warm"
  cp -a "$W/d1.orig" "$W/warm/d1"; cp -a "$W/d2" "$W/warm/d2"
  for t in "${TOOLS[@]}"; do cp -a "$W/d1.orig" "$W/warm/d1-$t"; done
  rm -rf "$W/warm"
else
  RUNS=0
fi

for run in $(seq "$RUNS"); do
  mapfile -t ORDER < <(order "$run")
  log "run $run of $RUNS (${ORDER[*]})"
  rm -rf "$W/d1" "$W"/dst-*; cp -a "$W/d1.orig" "$W/d1"
  for t in "${ORDER[@]}"; do transfer "$t" d1_first "$W/d1" "$W/dst-$t"; check "$t" d1_first "$W/d1" "$W/dst-$t"; done
  for t in "${ORDER[@]}"; do transfer "$t" d1_same "$W/d1" "$W/dst-$t"; check "$t" d1_same "$W/d1" "$W/dst-$t"; done
  env "${D1_ENV[@]}" "$MKDATA" modify "$W/d1" 1 >&2
  for t in "${ORDER[@]}"; do transfer "$t" d1_pct "$W/d1" "$W/dst-$t"; check "$t" d1_pct "$W/d1" "$W/dst-$t"; done
  if [ "$NETEM" = 1 ]; then
    rm -rf "$W"/dst-*
    delay on
    log "round trip with netem: $(ip netns exec "$NS_S" tc qdisc show dev "$VETH_S" | head -n 1)"
    for t in "${ORDER[@]}"; do transfer "$t" rtt_first "$W/d1" "$W/dst-$t"; check "$t" rtt_first "$W/d1" "$W/dst-$t"; done
    for t in "${ORDER[@]}"; do transfer "$t" rtt_same "$W/d1" "$W/dst-$t"; check "$t" rtt_same "$W/d1" "$W/dst-$t"; done
    delay off
  fi
  rm -rf "$W/d1" "$W"/dst-*
  for t in "${ORDER[@]}"; do
    transfer "$t" d2_first "$W/d2" "$W/dst-$t"; check "$t" d2_first "$W/d2" "$W/dst-$t"; rm -rf "$W/dst-$t"
  done
  # The local copies D2's goal is measured against, on the same tmpfs.
  mkdir "$W/local"
  timed d2_local_cp cp -a "$W/d2/." "$W/local/"
  check cp d2_local "$W/d2" "$W/local"; rm -rf "$W/local"
  timed d2_local_sync "$BIN" mover sync -q "$W/d2" "$W/local"
  check sync d2_local "$W/d2" "$W/local"; rm -rf "$W/local"
done

# ---- block volumes ----
CHUNK=$((4 << 20))
random_chunk() { # SEED: 4 MiB of pseudo-random bytes (AES-CTR of zeros under a fixed key)
  head -c "$CHUNK" /dev/zero | openssl enc -aes-128-ctr -nosalt \
    -K 00112233445566778899aabbccddeeff -iv "$(printf '%032x' "$1")"
}
put_chunk() { # FILE INDEX SEED
  random_chunk "$3" | dd of="$1" bs=4M seek="$2" conv=notrunc status=none iflag=fullblock
}
# btransfer TOOL CASE SRC DST: one timed copy of an image; appends "seconds KiB" to
# $RES/CASE_TOOL_send and $RES/CASE_TOOL_recv.
btransfer() {
  local t=$1 c=$2 src=$3 dst=$4 send=() rp="" ss="" sk="" rs="" rk=""
  PORT=$((PORT + 1))
  rm -f "$O"/*.time
  drop_caches
  case $t in
    blk)
      bg_in "$NS_R" "$O/recv.time" receive "$BIN" mover block "$dst" --listen "$IP_R:$PORT" --keys "$K/pvcb-recv" -q
      rp=$BGP; wait_listen "$NS_R" "$PORT" receive "$rp"
      send=("$BIN" mover block "$src" --to "$IP_R:$PORT" --keys "$K/pvcb-send" --progress json) ;;
    rsyncimg|ddssh)
      sshd_config "$PORT" >"$K/sshd_config"
      bg_in "$NS_R" "$O/sshd.time" sshd /usr/sbin/sshd -D -f "$K/sshd_config" -E "$L/sshd.log"
      rp=$BGP; wait_listen "$NS_R" "$PORT" sshd "$rp"
      if [ "$t" = rsyncimg ]; then
        send=(rsync -IS --inplace --no-whole-file -e "$SSH_E -p $PORT"
              --rsync-path="/usr/bin/time -f %e:%M -o $O/recv.time rsync" "$src" "root@$IP_R:$dst")
      else
        send=(bash -c 'dd if="$1" bs=4M status=none | $2 -p "$3" "root@$4" "/usr/bin/time -f %e:%M -o $5 dd of=$6 bs=4M conv=sparse,notrunc iflag=fullblock status=none"' \
              dd-ssh "$src" "$SSH_E" "$PORT" "$IP_R" "$O/recv.time" "$dst")
      fi ;;
  esac
  send_timed "$t" "$c" "${send[@]}"
  read -r ss sk < <(tline "$O/send.time")
  if [ "$t" = blk ]; then
    wait_gone "$rp" "mover block" || { tail -n 20 "$L/receive.err" >&2; die "pvc-backup mover block (receiving) failed in case $c"; }
    read -r rs rk < <(tline "$O/recv.time")
    log "$c: pvc-backup sent $(tail -n 1 "$O/send.out" | python3 -c 'import json, sys; s = json.load(sys.stdin)["sent"]; print(s["chunks"], "chunks,", s["bytes"], "bytes,", s["zero_chunks"], "zero chunks")')"
  else
    wait_lines "$O/recv.time" 1 "the receiving $t"
    read -r rs rk < <(tline "$O/recv.time")
    wait_idle "$rp" sshd
    stop_bg "$rp"
    rk=$(max "$(kib "$O/sshd.time")" "$rk")
  fi
  echo "$ss $sk" >>"$RES/${c}_${t}_send"
  echo "$rs $rk" >>"$RES/${c}_${t}_recv"
  log "$c, $t: sender $ss s $((sk / 1024)) MiB, receiver $rs s $((rk / 1024)) MiB"
  cmp "$src" "$dst" || die "$t, $c: the image copied differs from its source (cmp)"
}
BTOOLS=(blk rsyncimg ddssh)
border() { # RUN: the block tools, the first of run R being the R-th
  local r=$(( ($1 - 1) % ${#BTOOLS[@]} ))
  printf '%s\n' "${BTOOLS[@]:$r}" "${BTOOLS[@]:0:$r}"
}
if [ "$BLOCK" = 1 ]; then
  B_CHUNKS=$((B_MIB / 4))
  log "building a ${B_MIB} MiB image, 30% of its 4 MiB chunks random data"
  truncate -s "${B_MIB}M" "$W/b.img"
  for ((i = 0; i < B_CHUNKS; i++)); do
    if [ $(( (i * 7919) % 10 )) -lt 3 ]; then put_chunk "$W/b.img" "$i" "$i"; fi
  done
  seed=$B_CHUNKS
  for run in $(seq "$B_RUNS"); do
    mapfile -t ORDER < <(border "$run")
    log "block run $run of $B_RUNS (${ORDER[*]})"
    rm -f "$W"/b-dst-*
    for t in "${ORDER[@]}"; do btransfer "$t" b_first "$W/b.img" "$W/b-dst-$t.img"; done
    # 1% of the chunks (at least one) rewritten with new data, anywhere in the image.
    n=$(( B_CHUNKS / 100 )); [ "$n" -ge 1 ] || n=1
    for ((j = 0; j < n; j++)); do
      seed=$((seed + 1)); put_chunk "$W/b.img" $(( (seed * 104729) % B_CHUNKS )) "$seed"
    done
    for t in "${ORDER[@]}"; do btransfer "$t" b_pct "$W/b.img" "$W/b-dst-$t.img"; done
  done
  rm -f "$W"/b.img "$W"/b-dst-*
fi

if [ "$MILLION" = 1 ]; then
  log "a million files of 1 KiB"
  rm -rf "$W/d1.orig" "$W/d2" "$W"/dst-*
  env "${M_ENV[@]}" "$MKDATA" d1 "$W/m" >&2
  tag_xattrs "$W/m"
  for t in "${TOOLS[@]}"; do
    transfer "$t" m_first "$W/m" "$W/dst-$t"; check "$t" m_first "$W/m" "$W/dst-$t"; rm -rf "$W/dst-$t"
  done
fi
LOAD_AFTER="$(uptime)"
log "end: $LOAD_AFTER"

# ---- report ----
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
secs() { cut -d' ' -f1 <"$RES/$1" | median; }
peak() { cut -d' ' -f2 <"$RES/$1" | sort -n | tail -n 1 | awk '{ printf "%.1f", $1 / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else if (v + 0 <= lim + 0) print "met"; else printf "not met: %.2f times the goal\n", v / lim }'; }
CASES=(); goal_cases=()
if [ "$MAIN" = 1 ]; then
  CASES=(d1_first d1_same d1_pct d2_first); goal_cases=(d1_first d1_same d1_pct)
  if [ "$NETEM" = 1 ]; then CASES+=(rtt_first rtt_same); goal_cases+=(rtt_first rtt_same); fi
fi
[ "$MILLION" = 1 ] && CASES+=(m_first)

echo "## Results"
echo
echo "- Started $STARTED at commit $COMMIT; binary $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'), built $BIN_DATE)"
echo "- Machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r); both namespaces on this machine, joined by a veth pair; source and targets on one tmpfs"
echo "- Load before: $LOAD_BEFORE"
echo "- Load after: $LOAD_AFTER"
echo "- Median of $([ "$MAIN" = 1 ] || [ "$BLOCK" = 1 ] && echo "$B_RUNS run(s)" || echo "1 run")$([ "$MILLION" = 1 ] && echo " (1,000,000 files: 1 run)"); peak MiB is the largest over the runs of a side's largest process; page cache dropped before every transfer"
echo "- $(rsync --version | head -n 1 | awk '{ print "rsync " $3 }'), $(ssh -V 2>&1 | cut -d, -f1), $(stunnel4 -version 2>&1 | grep -m 1 '^stunnel' | cut -d' ' -f1-2)"
if [ "$NETEM" = 1 ]; then
  echo "- 20 ms round trip: netem, 10 ms each way on both ends of the veth pair"
else
  echo "- **No 20 ms round-trip cases**: $NETEM_WHY"
fi
[ "$SMALL" = 1 ] && echo "- **Small mode: a check that the script works, the figures mean nothing.**"
if [ ${#CASES[@]} -gt 0 ]; then
  echo
  echo "| case | tool | sender s | receiver s | sender peak MiB | receiver peak MiB | sender time / rsync over ssh |"
  echo "|---|---|---|---|---|---|---|"
  for c in "${CASES[@]}"; do
    for t in "${TOOLS[@]}"; do
      s=$(secs "${c}_${t}_send")
      echo "| $(casename "$c") | $(label "$t") | $s | $(secs "${c}_${t}_recv") | $(peak "${c}_${t}_send") | $(peak "${c}_${t}_recv") | $(ratio "$s" "$(secs "${c}_ssh_send")") |"
    done
  done
  if [ "$MAIN" = 1 ]; then
    for t in cp sync; do
      echo "| $(casename d2_local) | $(label "$t") | $(secs "d2_local_$t") | | $(peak "d2_local_$t") | | |"
    done
  fi
  echo
  echo "| goal | measured | met? |"
  echo "|---|---|---|"
  for c in "${goal_cases[@]}"; do
    r=$(ratio "$(secs "${c}_pvcb_send")" "$(secs "${c}_ssh_send")")
    echo "| $(casename "$c"): at most 0.25 of rsync over ssh | $r | $(verdict "$r" 0.25) |"
  done
  if [ "$MAIN" = 1 ]; then
    for t in cp sync; do
      r=$(ratio "$(secs d2_first_pvcb_send)" "$(secs "d2_local_$t")")
      echo "| D2 first copy: within 1.2 of a local copy ($(label "$t")) | $r | $(verdict "$r" 1.2) |"
    done
  fi
  if [ "$MILLION" = 1 ]; then
    for side in send recv; do
      m=$(peak "m_first_pvcb_$side")
      echo "| 1,000,000 files: at most 64 MiB on the $([ "$side" = send ] && echo sender || echo receiver)'s side | $m MiB | $(verdict "$m" 64) |"
    done
  else
    echo "| 1,000,000 files: at most 64 MiB per side | not measured (\`--million\`) | |"
  fi
fi
if [ "$BLOCK" = 1 ]; then
  echo
  echo "Block volumes: an image of $B_MIB MiB, 30% of its 4 MiB chunks random data (all copies equal to their source, by \`cmp\`)."
  echo
  echo "| case | tool | sender s | receiver s | sender peak MiB | receiver peak MiB | sender time / rsync over ssh | sender time / dd over ssh |"
  echo "|---|---|---|---|---|---|---|---|"
  for c in b_first b_pct; do
    for t in "${BTOOLS[@]}"; do
      s=$(secs "${c}_${t}_send")
      echo "| $(casename "$c") | $(label "$t") | $s | $(secs "${c}_${t}_recv") | $(peak "${c}_${t}_send") | $(peak "${c}_${t}_recv") | $(ratio "$s" "$(secs "${c}_rsyncimg_send")") | $(ratio "$s" "$(secs "${c}_ddssh_send")") |"
    done
  done
fi
if [ ${#NOTES[@]} -gt 0 ]; then
  echo
  echo "What the copies that are not exact lose (checked after every copy; every other copy was exact):"
  echo
  for n in "${NOTES[@]}"; do echo "- $n"; done
fi
log "done"
