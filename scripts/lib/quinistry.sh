# shellcheck shell=bash
# Helpers for end-to-end tests that start quinistry servers. Source it, then:
#   q_start NAME CMD...    start CMD (a quinistry binary and its flags, with --addr 127.0.0.1:0) in the
#                          background with an EMPTY environment plus the K=V words of $Q_ENV (so nothing
#                          of the test shell's environment, such as SOURCE_DATE_EPOCH or QUINISTRY_*,
#                          reaches it), wait (Q_READY_SECONDS, default 15) until it logs its ready line,
#                          set Q_ADDR[NAME] and Q_PID[NAME]
#   q_stop NAME            stop it (SIGTERM, then SIGKILL after 10 s)
#   q_stop_all             stop every server started here (use in an EXIT trap)
#   q_list_digest ADDR [NAME]  the list digest served for NAME:latest (HEAD, as docker asks)
#   check DESC CMD...      run CMD, print "PASS DESC" or "FAIL DESC" and count; checks_done prints the
#                          totals and fails if any check failed
# Logs go to $Q_TMP/NAME.log.

declare -gA Q_ADDR=() Q_PID=()
Q_TMP=${Q_TMP:-$(mktemp -d)}
CHECKS_PASSED=0
CHECKS_FAILED=0

LIST_ACCEPT='application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'

q_start() {
  local name=$1 i exe
  shift
  local -a extra=()
  read -ra extra <<<"${Q_ENV:-}"
  exe=$(command -v "$1") || { echo "q_start: $1 not found" >&2; return 1; }
  shift
  env -i "${extra[@]}" "$exe" "$@" >"$Q_TMP/$name.out" 2>"$Q_TMP/$name.log" </dev/null &
  Q_PID[$name]=$!
  _q_wait_ready "$name"
}

# _q_wait_ready NAME: wait until NAME logs its ready line and record its address.
_q_wait_ready() {
  local name=$1 i
  for ((i = 0; i < ${Q_READY_SECONDS:-15} * 20; i++)); do
    if grep -q 'msg=ready' "$Q_TMP/$name.log" 2>/dev/null; then
      Q_ADDR[$name]=$(sed -n 's/.*msg=ready addr=\([^ ]*\).*/\1/p' "$Q_TMP/$name.log" | head -1)
      return 0
    fi
    kill -0 "${Q_PID[$name]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "q_start: $name did not become ready; its log:" >&2
  cat "$Q_TMP/$name.log" >&2
  return 1
}

q_stop() {
  local pid=${Q_PID[$1]:-} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "Q_PID[$1]"
}

q_stop_all() {
  local n
  for n in "${!Q_PID[@]}"; do q_stop "$n"; done
}

q_list_digest() {
  curl -fsSI -H "Accept: $LIST_ACCEPT" "http://$1/v2/${2:-quinistry}/manifests/latest" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}

check() {
  local desc=$1
  shift
  if "$@"; then
    echo "PASS $desc"
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
  else
    echo "FAIL $desc"
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
  fi
}

checks_done() {
  echo "$1: $CHECKS_PASSED passed, $CHECKS_FAILED failed"
  ((CHECKS_FAILED == 0))
}
