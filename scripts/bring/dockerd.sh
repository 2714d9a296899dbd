#!/usr/bin/env bash
# dockerd.sh up|down DIR: a private Docker daemon (and its own containerd) with its socket, data and
# log under DIR, for the end-to-end tests (e2e/harness.BringUp). up prints DOCKER_HOST=unix://...
# and DOCKER=<the CLI 28>; down stops the daemon by PID, kills its containers first, unmounts and
# deletes what is under DIR. DOCKERD_* tuning: see scripts/lib/dockerd.sh. Asserts nothing; fails
# with one line.
set -euo pipefail
# shellcheck source=scripts/lib/dockerd.sh
source "$(dirname "$0")/../lib/dockerd.sh"
verb=${1:-} dir=${2:-}
[[ -n $dir ]] || { echo "usage: dockerd.sh up|down DIR" >&2; exit 2; }
case $verb in
  up)
    dockerd_start "$dir" >&2
    echo "DOCKER_HOST=$DOCKER_HOST"
    echo "DOCKER=$DOCKER"
    ;;
  down) dockerd_stop "$dir" ;;
  *) echo "usage: dockerd.sh up|down DIR" >&2; exit 2 ;;
esac
