#!/usr/bin/env bash
# veth.sh up|down DIR: two network namespaces joined by a veth pair, a client's and a server's, for
# traffic across a real link instead of loopback (e2e/cmd/bench). Names and the /30 subnet (inside
# 10.64.0.0/10) are unique to this run; nothing is configured outside the two namespaces. up prints
# CLIENT_NS and SERVER_NS (paths for nsenter --net), CLIENT_IP and SERVER_IP, and records the
# namespaces it made in DIR/veth.env; down deletes those (and with them the veth pair). Asserts
# nothing; fails with one line.
set -euo pipefail
verb=${1:-} dir=${2:-}
[[ -n $dir && -d $dir ]] || { echo "usage: veth.sh up|down DIR (an existing directory)" >&2; exit 2; }
state=$dir/veth.env
case $verb in
  up)
    id=
    for ((i = 0; i < 20; i++)); do
      # 14 bits, one to one with the subnet 10.(64 + r/256).(r%256).0/30
      r=$(((RANDOM * 32768 + RANDOM + $$) % 16384))
      if ip netns add "$(printf 'qv%04x' "$r")-c" 2>/dev/null; then id=$(printf 'qv%04x' "$r"); break; fi
    done
    [[ -n $id ]] || { echo "veth.sh: no free namespace name after 20 tries" >&2; exit 1; }
    echo "$id-c" >>"$state"
    ip netns add "$id-s" || { echo "veth.sh: cannot make namespace $id-s" >&2; exit 1; }
    echo "$id-s" >>"$state"
    net=10.$((64 + (r >> 8))).$((r & 255))
    {
      ip link add "${id}c" netns "$id-c" type veth peer name "${id}s" netns "$id-s" &&
        ip -n "$id-c" addr add "$net.1/30" dev "${id}c" && ip -n "$id-s" addr add "$net.2/30" dev "${id}s" &&
        ip -n "$id-c" link set "${id}c" up && ip -n "$id-s" link set "${id}s" up &&
        ip -n "$id-c" link set lo up && ip -n "$id-s" link set lo up
    } >&2 || { echo "veth.sh: cannot set up the veth pair ${id}c/${id}s" >&2; exit 1; }
    echo "CLIENT_NS=/run/netns/$id-c"
    echo "SERVER_NS=/run/netns/$id-s"
    echo "CLIENT_IP=$net.1"
    echo "SERVER_IP=$net.2"
    ;;
  down)
    [[ -e $state ]] || exit 0
    while read -r ns; do
      [[ ! -e /run/netns/$ns ]] || ip netns delete "$ns" || { echo "veth.sh: cannot delete namespace $ns" >&2; exit 1; }
    done <"$state"
    rm -f "$state"
    ;;
  *) echo "usage: veth.sh up|down DIR" >&2; exit 2 ;;
esac
