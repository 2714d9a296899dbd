#!/usr/bin/env bash
# containerd.sh up|down DIR NETNS [arm64 NAME]: a private containerd in network namespace NETNS for the
# end-to-end tests (e2e/harness.BringUp), everything under DIR, the native snapshotter only (no mounts left
# to undo) and no CRI. Plain: the host's containerd. With "arm64 NAME": an arm64 node, Debian's arm64
# containerd from scripts/install-nodes.sh ($NODES_TOOLS, default .tools/nodes) under qemu-user, started in
# a new user namespace (root maps to root, all ids) and mount namespace that hold a binfmt_misc instance of
# their own (kernel >= 6.7) with an aarch64 registration NAME (flags FP): the host's binfmt_misc is not
# touched. up waits (CONTAINERD_TIMEOUT, default 120 s) for its socket and prints CONTAINERD_ADDRESS=<socket>
# and PID=<its pid> (for arm64 also ARM64=<the arm64 root, QEMU_LD_PREFIX> and QEMU=<the emulator>); down
# stops it by PID (TERM, KILL after 10 s). Asserts nothing; fails with one line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=${NODES_TOOLS:-$ROOT/.tools/nodes}
verb=${1:-} dir=${2:-} ns=${3:-} kind=${4:-} name=${5:-}
usage() { echo "usage: containerd.sh up|down DIR NETNS [arm64 NAME]" >&2; exit 2; }
[[ -n $dir && -n $ns ]] || usage
[[ -z $kind || ($kind == arm64 && -n $name) ]] || usage
fail() { echo "containerd.sh: $*" >&2; exit 1; }

# The aarch64 ELF header and mask, as binfmt_misc takes them (it decodes the \x escapes itself).
MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

config() {
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
}

up() {
  local pid i me qemu=$TOOLS/qemu/usr/bin/qemu-aarch64 arm=$TOOLS/arm64
  { mkdir -p "$dir" && dir=$(cd "$dir" && pwd); } || fail "cannot make $dir"
  [[ -e /run/netns/$ns ]] || fail "no network namespace $ns"
  config
  if [[ -z $kind ]]; then
    nsenter --net="/run/netns/$ns" containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/containerd.ours"
  else
    [[ -x $qemu && -x $arm/usr/bin/containerd ]] || fail "no arm64 containerd in $TOOLS: run scripts/install-nodes.sh"
    qemu=$(readlink -f "$qemu")
    mkdir -p "$dir/binfmt"
    mkfifo "$dir/go"
    # shellcheck disable=SC2016  # expanded by the inner bash
    nsenter --net="/run/netns/$ns" unshare --user --mount --propagation private -- bash -c '
      read -r _ <"$1/go" || exit 1
      mount -t binfmt_misc binfmt_misc "$1/binfmt" || exit 1
      printf "%s\n" ":$2:M::$3:$4:$5:FP" >"$1/binfmt/register" || exit 1
      export QEMU_LD_PREFIX=$6 PATH=$6/usr/bin:$6/usr/sbin:$PATH
      exec "$6/usr/bin/containerd" --config "$1/config.toml"' \
      _ "$dir" "$name" "$MAGIC" "$MASK" "$qemu" "$arm" >"$dir/containerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/containerd.ours"
    # map all ids once unshare has made the user namespace, then let it go on
    me=$(readlink /proc/self/ns/user)
    for ((i = 0; i < 500; i++)); do
      [[ $(readlink "/proc/$pid/ns/user" 2>/dev/null) != "$me" ]] && break
      kill -0 "$pid" 2>/dev/null || fail "unshare (pid $pid) ended: $(tail -n 1 "$dir/containerd.log")"
      sleep 0.02
    done
    { echo "0 0 4294967294" >"/proc/$pid/uid_map" && echo "0 0 4294967294" >"/proc/$pid/gid_map"; } 2>/dev/null ||
      fail "cannot map the ids of pid $pid"
    echo >"$dir/go"
  fi
  for ((i = 0; i < ${CONTAINERD_TIMEOUT:-120} * 10; i++)); do
    [[ -S $dir/containerd.sock ]] && break
    kill -0 "$pid" 2>/dev/null || fail "containerd (pid $pid) ended: $(grep -v 'module=grpc' "$dir/containerd.log" | tail -n 1)"
    sleep 0.1
  done
  [[ -S $dir/containerd.sock ]] || fail "containerd (pid $pid) made no socket in ${CONTAINERD_TIMEOUT:-120} s"
  echo "CONTAINERD_ADDRESS=$dir/containerd.sock"
  echo "PID=$pid"
  if [[ -n $kind ]]; then
    echo "ARM64=$arm"
    echo "QEMU=$qemu"
  fi
}

down() {
  local pid i
  pid=$(cat "$dir/containerd.ours" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/containerd.ours"
}

case $verb in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
