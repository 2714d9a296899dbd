# shellcheck shell=bash
# Private Docker daemon and arm64 emulation for end-to-end tests. Source it, then:
#   dockerd_start DIR    start dockerd (+ its own containerd) with sockets and data under DIR, export DOCKER_HOST
#   dockerd_stop DIR     stop them by PID, unmount and delete what is under DIR (dockerd.log is kept)
#   binfmt_arm64_on/off  register qemu-aarch64-static (F flag) so linux/arm64 containers run; off undoes
#                        only a registration made by on in this shell
# Use "$DOCKER" rather than docker: the CLI 28 at /usr/local/bin, not Debian's older /usr/bin/docker.
# Typical use: dockerd_start "$tmp/docker"; trap 'binfmt_arm64_off; dockerd_stop "$tmp/docker"' EXIT
# Tuning: DOCKERD_STORAGE_DRIVER (default vfs, works on any backing fs; overlay2 works here too, no faster
# for small images), DOCKERD_TIMEOUT (seconds to wait for the daemon, default 30), DOCKERD_BRIDGE (a
# bridge the caller made and addressed: containers get their own network on it and -p publishes ports
# through docker-proxy; default none, host networking only).

DOCKER=/usr/local/bin/docker
[[ -x $DOCKER ]] || DOCKER=docker
export DOCKER

dockerd_start() {
  local dir=${1:?usage: dockerd_start DIR} pid i
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  dockerd --storage-driver="${DOCKERD_STORAGE_DRIVER:-vfs}" --iptables=false --ip6tables=false --ip-masq=false \
    --bridge="${DOCKERD_BRIDGE:-none}" --host="unix://$dir/docker.sock" --data-root="$dir/data" --exec-root="$dir/exec" \
    --pidfile="$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 </dev/null &
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

_BINFMT=/proc/sys/fs/binfmt_misc
_BINFMT_NAME=quinistry-aarch64
_BINFMT_OURS=

binfmt_arm64_on() {
  [[ -e $_BINFMT/register ]] || mount -t binfmt_misc binfmt_misc "$_BINFMT" || return 1
  # an aarch64 handler is already there (binfmt-support's qemu-aarch64, say): use it, never remove it
  if grep -qs '^magic 7f454c460201010000000000000000000200b700' "$_BINFMT"/*; then return 0; fi
  # the kernel decodes the \x escapes itself
  printf '%s\n' ":$_BINFMT_NAME:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F" \
    >"$_BINFMT/register" || return 1
  _BINFMT_OURS=1
}

binfmt_arm64_off() {
  if [[ -n $_BINFMT_OURS && -e $_BINFMT/$_BINFMT_NAME ]]; then
    echo -1 >"$_BINFMT/$_BINFMT_NAME"
  fi
  _BINFMT_OURS=
}
