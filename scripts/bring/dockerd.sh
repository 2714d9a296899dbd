#!/usr/bin/env bash
# dockerd.sh up|down DIR [NETNS [DOCKERD-FLAGS...]]: a private Docker daemon (and its own containerd)
# for the end-to-end tests (e2e/harness.BringUp), with its socket, data, log, configuration and trust
# key under DIR (else dockerd 20.10 writes /etc/docker/key.json), in network namespace NETNS when one
# is given (- for this one). DOCKERD-FLAGS are added to dockerd's (--insecure-registry 10.1.2.3:8080,
# say). DOCKERD_BRIDGE names a bridge the caller made and addressed: containers get a network of their
# own on it, and -p publishes ports through docker-proxy (default: none, host networking only). Storage
# is vfs, which works on any backing file system. up prints DOCKER_HOST=unix://..., DOCKER (the CLI 28
# at /usr/local/bin, not Debian's older one) and PID (dockerd's); down kills the containers, stops
# dockerd by PID and then any process naming DIR, unmounts and deletes what is under DIR but the log.
# Asserts nothing; fails with one line.
set -euo pipefail
verb=${1:-} dir=${2:-} ns=${3:--}
usage() { echo "usage: dockerd.sh up|down DIR [NETNS [DOCKERD-FLAGS...]]" >&2; exit 2; }
[[ -n $dir && $dir != / ]] || usage
shift $(($# < 3 ? $# : 3))
DOCKER=/usr/local/bin/docker
[[ -x $DOCKER ]] || DOCKER=docker

stop() {
  local pid p i
  pid=$(cat "$dir/dockerd.ours" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    # the containers first (a graceful stop waits 10 s each); dockerd then stops its containerd
    timeout 10 "$DOCKER" -H "$sock" ps -q | xargs -r timeout 10 "$DOCKER" -H "$sock" kill >/dev/null 2>&1 || true
    kill -TERM "$pid"
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for p in $(pgrep -f -- "$dir/"); do # its containerd, shims and runc: their command lines name DIR
    [[ $(cat "/proc/$p/comm" 2>/dev/null) =~ ^(containerd|containerd-shim|dockerd|runc) ]] && kill -KILL "$p"
  done 2>/dev/null
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  find "$dir" -mindepth 1 -maxdepth 1 ! -name dockerd.log -exec rm -rf {} +
}

case $verb in
  up)
    { mkdir -p "$dir" && dir=$(cd "$dir" && pwd); } || { echo "dockerd.sh: cannot make $dir" >&2; exit 1; }
    sock=unix://$dir/docker.sock wrap=()
    if [[ $ns != - ]]; then
      [[ -e /run/netns/$ns ]] || { echo "dockerd.sh: no network namespace $ns" >&2; exit 1; }
      wrap=(nsenter --net="/run/netns/$ns")
    fi
    printf '{"deprecated-key-path": "%s"}\n' "$dir/key.json" >"$dir/daemon.json"
    ${wrap[@]+"${wrap[@]}"} dockerd --storage-driver=vfs --iptables=false --ip6tables=false --ip-masq=false \
      --bridge="${DOCKERD_BRIDGE:-none}" --host="$sock" --data-root="$dir/data" --exec-root="$dir/exec" \
      --pidfile="$dir/dockerd.pid" --config-file="$dir/daemon.json" "$@" >"$dir/dockerd.log" 2>&1 </dev/null &
    echo $! >"$dir/dockerd.ours"
    for ((i = 0; i < 300; i++)); do # 30 s
      "$DOCKER" -H "$sock" info >/dev/null 2>&1 && break
      kill -0 "$(cat "$dir/dockerd.ours")" 2>/dev/null || i=300
      sleep 0.1
    done
    if ((i >= 300)); then
      line=$(grep -v 'module=grpc' "$dir/dockerd.log" | tail -n 1 || true)
      stop
      echo "dockerd.sh: dockerd did not answer on $sock: $line" >&2
      exit 1
    fi
    printf 'DOCKER_HOST=%s\nDOCKER=%s\nPID=%s\n' "$sock" "$DOCKER" "$(cat "$dir/dockerd.ours")"
    ;;
  down)
    [[ -d $dir ]] || exit 0
    dir=$(cd "$dir" && pwd) sock=unix://$dir/docker.sock
    stop
    ;;
  *) usage ;;
esac
