#!/usr/bin/env bash
# netns.sh up|down ID SUBNET NODE...: throw-away hosts for the end-to-end tests (e2e/harness.NewNetwork,
# which picks ID and SUBNET so that no two runs on this machine share them). up makes a switch namespace
# ID-sw holding a bridge, and for each NODE a network namespace ID-NODE with an eth0 linked to the bridge
# by a veth pair, addressed SUBNET.2, SUBNET.3, ... (/24) in the order given, lo up; it prints
# SWITCH=ID-sw, BRIDGE=br0, NS_<NODE>=ID-NODE and IP_<NODE>=SUBNET.N. down deletes every namespace
# named ID-* (their veths and the bridge go with them). Asserts nothing; fails with one line.
set -euo pipefail
verb=${1:-} id=${2:-} net=${3:-}
[[ -n $id && -n $net ]] || { echo "usage: netns.sh up|down ID SUBNET NODE..." >&2; exit 2; }
shift 3
fail() { echo "netns.sh: $*" >&2; exit 1; }
case $verb in
  up)
    sw=$id-sw
    ip netns add "$sw" 2>/dev/null || fail "cannot add namespace $sw"
    { ip -n "$sw" link add br0 type bridge && ip -n "$sw" link set br0 up && ip -n "$sw" link set lo up; } 2>/dev/null ||
      fail "cannot make the bridge in $sw"
    echo "SWITCH=$sw"
    echo "BRIDGE=br0"
    n=2
    for node in "$@"; do
      ns=$id-$node
      ip netns add "$ns" 2>/dev/null || fail "cannot add namespace $ns"
      # veth names: at most 15 characters, unique to this run (the id) and node (its number)
      {
        ip link add "${id}n$n" netns "$ns" type veth peer name "${id}s$n" netns "$sw" &&
          ip -n "$sw" link set "${id}s$n" master br0 up &&
          ip -n "$ns" link set "${id}n$n" name eth0 &&
          ip -n "$ns" addr add "$net.$n/24" dev eth0 &&
          ip -n "$ns" link set eth0 up &&
          ip -n "$ns" link set lo up
      } 2>/dev/null || fail "cannot link $ns to the bridge"
      echo "NS_$node=$ns"
      echo "IP_$node=$net.$n"
      n=$((n + 1))
    done
    ;;
  down)
    for ns in $(ip netns list | awk -v p="$id-" 'index($1, p) == 1 {print $1}'); do
      ip netns delete "$ns" || fail "cannot delete namespace $ns"
    done
    ;;
  *) echo "usage: netns.sh up|down ID SUBNET NODE..." >&2; exit 2 ;;
esac
