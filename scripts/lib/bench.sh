# shellcheck shell=bash
# Helpers for scripts/bench.sh. Source after scripts/lib/quinistry.sh, with ROOT, BIN and B_TMP set.
#   bench_install             apt wrk, nginx(-light), apache2-utils (ab), curl, jq; the CNCF registry into $BIN (idempotent)
#   free_port                 a TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range
#   b_start NAME CMD...       start CMD in the background (logs in $B_TMP/NAME.log), PID in B_PID[NAME]
#   b_stop NAME               SIGTERM, then SIGKILL after 5 s, for the process and its children
#   b_stop_all                stop every process started with b_start (use in an EXIT trap)
#   wait_http URL             until URL answers 2xx (at most 10 s)
#   children PID              the PIDs whose parent is PID
#   cpu_ticks PID...          utime+stime of the PIDs, in clock ticks
#   machine_ticks             "busy irq total" clock ticks of the whole machine, from /proc/stat (irq:
#                             hard and soft interrupts, where loopback TCP does much of its work)
#   rss_kib PID               VmRSS of PID, in KiB; rss_parts PID: its anon, file and shmem parts
#   memfd_kib PID             the size of the memfd files PID holds open, in KiB
#   median_round KEY N        copy the median (by requests/s) of the results for KEY#1..KEY#N to KEY
#   bench KEY CLIENT CONC URL [client args...]
#                             warm up, then run CLIENT at concurrency CONC for $BENCH_DURATION; CLIENT is
#                             wrk (GET, wrk -t2 with $B_TMP/report.lua) or ab-head (HEAD, ab -k -i: wrk
#                             4.1 cannot do HEAD: it waits for the body that Content-Length announces,
#                             wg/wrk#198);
#                             sets R_RPS, R_P99 (ms), R_ERR (0, or counts by kind),
#                             and CPU in % of one core: R_CPU (server), R_CLI (client), R_ALL (machine),
#                             R_IRQ (interrupts), R_OTH (the rest: anything else running) for KEY; the server's PIDs are in $BENCH_PIDS (its children are added);
#                             with $BENCH_RSS_PID set, R_RSS is that PID's peak VmRSS during the run

# shellcheck disable=SC2034  # the results (R_*) are read by scripts/bench.sh
REGISTRY_VERSION=v3.1.2
REGISTRY_MOD=github.com/distribution/distribution/v3
declare -gA B_PID=() R_RPS=() R_P99=() R_ERR=() R_CPU=() R_CLI=() R_ALL=() R_IRQ=() R_OTH=() R_RSS=()
CLK_TCK=$(getconf CLK_TCK)

bench_install() {
  local missing=() p
  for p in wrk apache2-utils curl jq; do
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]] || missing+=("$p")
  done
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  if ((${#missing[@]})); then
    echo "bench: apt-get install ${missing[*]}" >&2
    # keep the nginx package from starting a system-wide nginx: the benchmark runs its own
    (
      policy=/usr/sbin/policy-rc.d
      if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
      fi
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        apt-get install -y -qq --no-install-recommends "${missing[@]/nginx-light/nginx}" >/dev/null
    )
  fi
  if [[ $(registry_version) != "$REGISTRY_VERSION" ]]; then
    echo "bench: go install $REGISTRY_MOD/cmd/registry@$REGISTRY_VERSION (a few minutes)" >&2
    GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=local \
      go install "$REGISTRY_MOD/cmd/registry@$REGISTRY_VERSION" 2>&1 | grep -v '^go: downloading' >&2 || true
    [[ $(registry_version) == "$REGISTRY_VERSION" ]] || { echo "bench: registry install failed" >&2; return 1; }
  fi
}

registry_version() {
  [[ -x $BIN/registry ]] && go version -m "$BIN/registry" 2>/dev/null |
    awk -v m="$REGISTRY_MOD" '$1 == "mod" && $2 == m {print $3}'
}

free_port() {
  local p lo
  # below the ephemeral range, where the kernel picks the local ports of outgoing connections
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  ((lo > 12000)) || lo=61000
  while :; do
    p=$((10000 + RANDOM % (lo - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

b_start() {
  local name=$1
  shift
  "$@" >"$B_TMP/$name.log" 2>&1 </dev/null &
  B_PID[$name]=$!
}

b_stop() {
  local pid=${B_PID[$1]:-} kids i
  [[ -n $pid ]] || return 0
  kids=$(children "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # shellcheck disable=SC2086  # a list of PIDs
  kill -KILL "$pid" $kids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "B_PID[$1]"
}

b_stop_all() {
  local n
  for n in "${!B_PID[@]}"; do b_stop "$n"; done
}

wait_http() {
  local i
  for ((i = 0; i < 200; i++)); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "wait_http: $1 did not answer" >&2
  return 1
}

children() {
  local f rest
  local -a s
  for f in /proc/[0-9]*/stat; do
    read -r rest 2>/dev/null <"$f" || continue
    read -r -a s <<<"${rest##*) }"  # after the command name, which may hold spaces: state, ppid, ...
    if [[ ${s[1]} == "$1" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
  done
  return 0
}

cpu_ticks() {
  local pid rest sum=0
  local -a s
  for pid in "$@"; do
    read -r rest 2>/dev/null <"/proc/$pid/stat" || continue
    read -r -a s <<<"${rest##*) }"
    sum=$((sum + s[11] + s[12]))  # utime, stime: fields 14 and 15 of stat
  done
  echo "$sum"
}

machine_ticks() {
  # cpu user nice system idle iowait irq softirq steal (guest time is already in user and nice)
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8, $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

rss_kib() {
  awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# rss_parts PID: "anon file shmem" parts of VmRSS, in KiB
rss_parts() {
  awk '$1 == "RssAnon:" {a = $2} $1 == "RssFile:" {f = $2} $1 == "RssShmem:" {s = $2} END {print a + 0, f + 0, s + 0}' \
    "/proc/$1/status" 2>/dev/null || echo 0 0 0
}

# memfd_kib PID: the size of the memfd files PID holds open, in KiB (their pages are memory that VmRSS
# does not count unless they are mapped)
memfd_kib() {
  local f
  for f in /proc/"$1"/fd/*; do
    if [[ $(readlink "$f" 2>/dev/null) == /memfd:* ]]; then stat -L -c '%i %s' "$f" 2>/dev/null || true; fi
  done | sort -u | awk '{t += $2} END {printf "%.0f", t / 1024}'
}

bench() {
  local key=$1 client=$2 conc=$3 url=$4 c0 c1 m0 m1 i0 i1 t0 t1 pids peak=0 r secs cc=0 x
  local -a cmd warm
  shift 4
  case $client in
    wrk)
      cmd=(wrk -t2 -c"$conc" --timeout 10s -s "$B_TMP/report.lua" "$@")
      warm=("${cmd[@]}" -d"$BENCH_WARMUP" "$url")
      cmd+=(-d"$BENCH_DURATION" "$url") ;;
    ab-head)
      cmd=(ab -q -k -i -c"$conc" -n 1000000000 -s 10 "$@")
      warm=("${cmd[@]}" -t "$(seconds "$BENCH_WARMUP")" "$url")
      cmd+=(-t "$(seconds "$BENCH_DURATION")" "$url") ;;
    *) echo "bench: unknown client $client" >&2; return 1 ;;
  esac
  pids="$BENCH_PIDS $(for p in $BENCH_PIDS; do children "$p"; done)"
  "${warm[@]}" >/dev/null
  # shellcheck disable=SC2086  # lists of PIDs
  c0=$(cpu_ticks $pids)
  read -r m0 i0 t0 < <(machine_ticks)
  "${cmd[@]}" >"$B_TMP/client.out" 2>&1 &
  CLIENT_PID=$!
  while kill -0 "$CLIENT_PID" 2>/dev/null; do
    # the client's CPU time so far: the last sample misses at most the last 0.1 s of its run
    x=$(cpu_ticks "$CLIENT_PID")
    ((x > cc)) && cc=$x
    if [[ -n ${BENCH_RSS_PID:-} ]]; then
      r=$(rss_kib "$BENCH_RSS_PID")
      ((r > peak)) && peak=$r
    fi
    sleep 0.1
  done
  wait "$CLIENT_PID" || { cat "$B_TMP/client.out" >&2; CLIENT_PID=; return 1; }
  CLIENT_PID=
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $pids)
  read -r m1 i1 t1 < <(machine_ticks)
  # "requests seconds errors p99_ms": wrk's from the lua script's done(), ab's from its report
  if [[ $client == wrk ]]; then
    awk '$1 == "BENCH" {
      split("connect read write status timeout", kind); e = ""
      for (i = 1; i <= 5; i++) if ($(4 + i) > 0) e = e (e == "" ? "" : ",") $(4 + i) "_" kind[i]
      print $2, $3 / 1e6, (e == "" ? 0 : e), $10 / 1000}' "$B_TMP/client.out"
  else
    awk -F': *' '/^Complete requests/ {n = $2} /^Time taken/ {t = $2 + 0} /^Failed requests/ {f = $2 + 0}
      /^Non-2xx/ {x = $2 + 0} /^ *99%/ {split($0, a, " "); p = a[2]}
      END {e = (f ? f "_failed" : ""); if (x) e = e (e == "" ? "" : ",") x "_non-2xx"; print n, t, (e == "" ? 0 : e), p}' \
      "$B_TMP/client.out"
  fi >"$B_TMP/client.sum"
  read -r req secs err p99 <"$B_TMP/client.sum"
  R_RPS[$key]=$(awk -v r="$req" -v s="$secs" 'BEGIN {printf "%.0f", (s > 0 ? r / s : 0)}')
  R_P99[$key]=$(awk -v p="$p99" 'BEGIN {printf "%.2f", p}')
  R_ERR[$key]=${err//_/ }
  R_RSS[$key]=$peak
  # CPU over the run, in % of one core: the server's, the client's, and the rest of the machine's
  # (anything else running); measured over slightly longer than the client's own run (start, polling)
  R_CPU[$key]=$(awk -v c=$((c1 - c0)) -v s="$secs" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", (s > 0 ? 100 * c / hz / s : 0)}')
  R_CLI[$key]=$(awk -v c="$cc" -v s="$secs" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", (s > 0 ? 100 * c / hz / s : 0)}')
  R_ALL[$key]=$(awk -v b=$((m1 - m0)) -v t=$((t1 - t0)) -v n="$(nproc)" 'BEGIN {printf "%.0f", (t ? 100 * n * b / t : 0)}')
  R_IRQ[$key]=$(awk -v b=$((i1 - i0)) -v t=$((t1 - t0)) -v n="$(nproc)" 'BEGIN {printf "%.0f", (t ? 100 * n * b / t : 0)}')
  R_OTH[$key]=$((R_ALL[$key] - R_CPU[$key] - R_CLI[$key] - R_IRQ[$key]))
  ((R_OTH[$key] >= 0)) || R_OTH[$key]=0
  ((req > 0)) || { echo "bench: $key: no requests done; the client said:" >&2; cat "$B_TMP/client.out" >&2; return 1; }
  echo "bench: $key: ${R_RPS[$key]} req/s, p99 ${R_P99[$key]} ms, errors ${R_ERR[$key]}, server CPU ${R_CPU[$key]}%," \
    "client ${R_CLI[$key]}%, irq ${R_IRQ[$key]}%, other ${R_OTH[$key]}%" >&2
}

# seconds DURATION: wrk's duration (10s, 2m, 1h or plain seconds) in whole seconds, for ab
seconds() {
  local d=$1
  case $d in
    *h) echo $((${d%h} * 3600)) ;;
    *m) echo $((${d%m} * 60)) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}

# median_round KEY N: copy the results of the median round (by requests/s) of "KEY#1".."KEY#N" to KEY
median_round() {
  local key=$1 n=$2 i m v
  m=$(for ((i = 1; i <= n; i++)); do echo "${R_RPS[$key#$i]} $i"; done | sort -n | awk '{r[NR] = $2} END {print r[int((NR + 1) / 2)]}')
  for v in R_RPS R_P99 R_ERR R_RSS R_CPU R_CLI R_ALL R_IRQ R_OTH; do
    declare -n arr=$v
    arr["$key"]=${arr["$key#$m"]}
    unset -n arr
  done
  [[ $n == 1 ]] || echo "bench: $key: rounds $(for ((i = 1; i <= n; i++)); do printf '%s ' "${R_RPS[$key#$i]}"; done)req/s" >&2
}
