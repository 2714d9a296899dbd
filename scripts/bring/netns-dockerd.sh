#!/usr/bin/env bash
# netns-dockerd.sh up|down DIR NETNS [DOCKERD-FLAGS...]: a private Docker daemon (and its own containerd)
# in network namespace NETNS, for the end-to-end tests (e2e/harness.BringUp), with its socket, data, log
# and configuration file under DIR (its own trust key too: else dockerd 20.10 writes /etc/docker/key.json).
# DOCKERD-FLAGS are added to dockerd's (--insecure-registry 10.1.2.3:8080, say). up prints
# DOCKER_HOST=unix://..., DOCKER=<the CLI 28> and PID=<dockerd's pid>; down stops the daemon by PID (its
# containers killed first), unmounts and deletes what is under DIR but the log. Asserts nothing; fails
# with one line.
set -euo pipefail
# shellcheck source=scripts/lib/dockerd.sh
source "$(dirname "$0")/../lib/dockerd.sh"
verb=${1:-} dir=${2:-} ns=${3:-}
[[ -n $dir && -n $ns ]] || { echo "usage: netns-dockerd.sh up|down DIR NETNS [DOCKERD-FLAGS...]" >&2; exit 2; }
shift 3
case $verb in
  up)
    [[ -e /run/netns/$ns ]] || { echo "netns-dockerd.sh: no network namespace $ns" >&2; exit 1; }
    { mkdir -p "$dir" && dir=$(cd "$dir" && pwd); } || { echo "netns-dockerd.sh: cannot make $dir" >&2; exit 1; }
    printf '{"deprecated-key-path": "%s"}\n' "$dir/key.json" >"$dir/daemon.json"
    # shellcheck disable=SC2034  # read by dockerd_start
    DOCKERD_WRAP=(nsenter --net="/run/netns/$ns")
    # shellcheck disable=SC2034  # read by dockerd_start
    DOCKERD_ARGS=(--config-file="$dir/daemon.json" "$@")
    if ! dockerd_start "$dir" >/dev/null 2>&1; then
      echo "netns-dockerd.sh: dockerd in $ns did not answer: $(grep -v 'module=grpc' "$dir/dockerd.log" | tail -n 1)" >&2
      exit 1
    fi
    echo "DOCKER_HOST=$DOCKER_HOST"
    echo "DOCKER=$DOCKER"
    echo "PID=$(cat "$dir/dockerd.ours")"
    ;;
  down) dockerd_stop "$dir" ;;
  *) echo "usage: netns-dockerd.sh up|down DIR NETNS [DOCKERD-FLAGS...]" >&2; exit 2 ;;
esac
