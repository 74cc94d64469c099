# Sourced by the scripts that run buildah or podman. Gives them a configuration of their own
# (CONTAINERS_CONF, for this process and its children only) that works on machines without
# systemd or a writable cgroup tree, where the defaults fail: runc, cgroupfs, no journald, and
# ulimits no higher than the machine allows.

containers_env() {
  local dir
  dir="$(mktemp -d /tmp/pvc-backup-containers.XXXXXX)"
  cat >"$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$dir/containers.conf"
  CONTAINERS_ENV_DIR="$dir"
}

# Installs the Debian packages named when their commands are missing (root only).
install_debs() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): needs ${missing[*]} (Debian packages); run as root to install them" >&2
    return 1
  fi
  echo "$(basename "$0"): installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
