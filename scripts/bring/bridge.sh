#!/usr/bin/env bash
# bridge.sh up|down NAME: a Linux bridge NAME, up, addressed .1 of a /24 picked at random in
# 10.150.0.0-10.249.255.0 among those no route on this machine covers yet, for a private dockerd
# (DOCKERD_BRIDGE) whose containers get addresses on it. up prints BRIDGE=NAME, SUBNET=10.A.B.0/24
# and GATEWAY=10.A.B.1; down deletes the bridge (its address and route go with it). Asserts
# nothing; fails with one line.
set -euo pipefail
verb=${1:-} name=${2:-}
[[ -n $name && ${#name} -le 15 ]] || { echo "usage: bridge.sh up|down NAME (at most 15 characters)" >&2; exit 2; }
case $verb in
  up)
    routes=$(ip -4 route show table all)
    net=
    for ((i = 0; i < 50; i++)); do
      candidate=10.$((RANDOM % 100 + 150)).$((RANDOM % 250 + 1))
      if ! grep -q "^${candidate//./\\.}\.\|[^0-9]${candidate//./\\.}\.[0-9]*/" <<<"$routes"; then
        net=$candidate
        break
      fi
    done
    [[ -n $net ]] || { echo "bridge.sh: no free 10.x.y.0/24 found" >&2; exit 1; }
    ip link add "$name" type bridge || { echo "bridge.sh: cannot add bridge $name" >&2; exit 1; }
    if ! { ip addr add "$net.1/24" dev "$name" && ip link set "$name" up; }; then
      ip link del "$name" 2>/dev/null || true
      echo "bridge.sh: cannot address bridge $name as $net.1/24" >&2
      exit 1
    fi
    echo "BRIDGE=$name"
    echo "SUBNET=$net.0/24"
    echo "GATEWAY=$net.1"
    ;;
  down)
    if ip link show "$name" >/dev/null 2>&1; then
      ip link del "$name" || { echo "bridge.sh: cannot delete bridge $name" >&2; exit 1; }
    fi
    ;;
  *) echo "usage: bridge.sh up|down NAME" >&2; exit 2 ;;
esac
