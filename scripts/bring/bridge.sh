#!/usr/bin/env bash
# bridge.sh up|down NAME [SUBNET]: a Linux bridge NAME, up, addressed SUBNET.1/24 (SUBNET such as
# 10.129.162, claimed by the caller: e2e/harness.ClaimSubnet), for a private dockerd (DOCKERD_BRIDGE)
# whose containers get addresses on it. up prints BRIDGE=NAME, SUBNET=SUBNET.0/24 and
# GATEWAY=SUBNET.1; down deletes the bridge (its address and route go with it). Asserts nothing;
# fails with one line.
set -euo pipefail
verb=${1:-} name=${2:-} net=${3:-}
usage() { echo "usage: bridge.sh up NAME SUBNET | down NAME (NAME: at most 15 characters)" >&2; exit 2; }
[[ -n $name && ${#name} -le 15 ]] || usage
case $verb in
  up)
    [[ $net =~ ^10\.[0-9]+\.[0-9]+$ ]] || usage
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
  *) usage ;;
esac
