# shellcheck shell=bash
# Private Docker daemon for end-to-end tests (the implementation of scripts/bring/dockerd.sh; arm64
# emulation is scripts/bring/binfmt.sh). Source it, then:
#   dockerd_start DIR    start dockerd (+ its own containerd) with sockets and data under DIR, export DOCKER_HOST
#   dockerd_stop DIR     stop them by PID, unmount and delete what is under DIR (dockerd.log is kept)
# Use "$DOCKER" rather than docker: the CLI 28 at /usr/local/bin, not Debian's older /usr/bin/docker.
# Typical use: dockerd_start "$tmp/docker"; trap 'dockerd_stop "$tmp/docker"' EXIT
# Tuning: DOCKERD_STORAGE_DRIVER (default vfs, works on any backing fs; overlay2 works here too, no faster
# for small images), DOCKERD_TIMEOUT (seconds to wait for the daemon, default 30), DOCKERD_BRIDGE (a
# bridge the caller made and addressed: containers get their own network on it and -p publishes ports
# through docker-proxy; default none, host networking only), the arrays DOCKERD_WRAP (a command dockerd
# is started under, e.g. (nsenter --net=/run/netns/NAME) to put it in a network namespace) and
# DOCKERD_ARGS (more dockerd flags, e.g. (--insecure-registry 10.1.2.3:8080)).

DOCKER=/usr/local/bin/docker
[[ -x $DOCKER ]] || DOCKER=docker
export DOCKER

dockerd_start() {
  local dir=${1:?usage: dockerd_start DIR} pid i
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  ${DOCKERD_WRAP[@]+"${DOCKERD_WRAP[@]}"} dockerd --storage-driver="${DOCKERD_STORAGE_DRIVER:-vfs}" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge="${DOCKERD_BRIDGE:-none}" \
    --host="unix://$dir/docker.sock" --data-root="$dir/data" --exec-root="$dir/exec" \
    --pidfile="$dir/dockerd.pid" ${DOCKERD_ARGS[@]+"${DOCKERD_ARGS[@]}"} >"$dir/dockerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/dockerd.ours"
  export DOCKER_HOST=unix://$dir/docker.sock
  for ((i = 0; i < ${DOCKERD_TIMEOUT:-30} * 10; i++)); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "dockerd_start: dockerd (pid $pid) did not answer on $DOCKER_HOST; end of $dir/dockerd.log:" >&2
  grep -v 'module=grpc' "$dir/dockerd.log" | tail -n 10 >&2
  dockerd_stop "$dir"
  return 1
}

dockerd_stop() {
  local dir=${1:?usage: dockerd_stop DIR} pid p i m h
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  [[ $dir != / ]] || return 1
  pid=$(cat "$dir/dockerd.ours" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    # kill containers first (a graceful stop waits 10 s each), then dockerd stops its containerd
    h=(-H "unix://$dir/docker.sock")
    timeout 10 "$DOCKER" "${h[@]}" ps -q | xargs -r timeout 10 "$DOCKER" "${h[@]}" kill >/dev/null 2>&1 || true
    kill -TERM "$pid"
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # leftovers of this daemon only: containerd or shims whose command lines name DIR
  for p in $(pgrep -f -- "$dir/"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) =~ ^(containerd|containerd-shim|dockerd|runc) ]] && kill -KILL "$p"
  done 2>/dev/null
  # unmount anything under DIR, deepest first, then delete all but the log
  awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  find "$dir" -mindepth 1 -maxdepth 1 ! -name dockerd.log -exec rm -rf {} +
  [[ ${DOCKER_HOST:-} != "unix://$dir/docker.sock" ]] || unset DOCKER_HOST
}
