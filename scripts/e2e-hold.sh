#!/usr/bin/env bash
# e2e-hold.sh: the real binary (dist/quinistry-linux-amd64, built with scripts/build.sh) under
# shutdown, load caps and probes:
#   - SIGTERM and SIGINT while a download is held in flight: the listener closes at once, the download
#     then completes with the right sha256, and the process exits 0 with a "stopped" line;
#   - --shutdown-timeout 1s with a download that does not finish: exit 0, the download cut short, and
#     by the server's own log the cut came at least 1 s after shutting down began;
#   - /healthz, /readyz (503 while packing, then 200) and /metrics; packing is held open by a FIFO
#     among the siblings (the server blocks opening it), so "while packing" is an event, not a race;
#   - --max-streams 2 with 4 concurrent downloads: 2 are sent, 2 get 429 TOOMANYREQUESTS with
#     Retry-After;
#   - a binary that cannot read itself refuses to start with one clear line.
# A "slow download" is a client that reads the first 64 KiB of the largest layer and then stops reading
# until told to go on; its receive buffer is small, so the server is still sending (and
# quinistry_blob_streams_in_flight says so) while it waits. curl --limit-rate cannot do this: the
# kernel's socket buffers take in a whole layer at once, and the curl 7.88 in CI then writes it out
# without limit.
# Needs scripts/install-tools.sh to have run (curl, jq), and perl (perl-base) and setpriv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
trap 'q_stop_all; rm -rf "$Q_TMP"' EXIT
start=$(date +%s%N)

scripts/build.sh >/dev/null
AMD64=$ROOT/dist/quinistry-linux-amd64

# slowget ADDR PATH GOFILE > OUT: GET PATH, read the first 64 KiB of the body, then read nothing more
# until GOFILE exists. Exits non-zero unless the status is 200 and the whole Content-Length arrived.
cat >"$Q_TMP/slowget.pl" <<'EOF'
use strict; use warnings; use Socket;
my ($addr, $path, $go) = @ARGV;
my ($host, $port) = $addr =~ /^(.*):(\d+)$/ or die "slowget: bad address $addr\n";
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "slowget: socket: $!\n";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', 4096)) or die "slowget: SO_RCVBUF: $!\n";
connect($s, pack_sockaddr_in($port, inet_aton($host))) or die "slowget: connect $addr: $!\n";
syswrite($s, "GET $path HTTP/1.1\r\nHost: $addr\r\nConnection: close\r\n\r\n");
my $buf = '';
while ($buf !~ /\r\n\r\n/) { sysread($s, $buf, 4096, length $buf) or die "slowget: no response head\n"; }
my ($head, $body) = split /\r\n\r\n/, $buf, 2;
$head =~ m{^HTTP/1\.[01] (\d+)} or die "slowget: bad status line\n";
die "slowget: status $1\n" if $1 != 200;
my ($want) = $head =~ /^Content-Length: *(\d+)/mi or die "slowget: no Content-Length\n";
binmode STDOUT; $| = 1;
print $body; my $got = length $body;
while ($got < 65536) { my $n = sysread($s, my $b, 65536 - $got) or last; print $b; $got += $n; }
select(undef, undef, undef, 0.02) until -e $go;
while (1) { my $n = sysread($s, my $b, 1 << 16); last if !$n; print $b; $got += $n; }
die "slowget: got $got of $want bytes\n" if $got != $want;
EOF
slowget() { perl "$Q_TMP/slowget.pl" "$@"; }

# metric ADDR NAME: the value of an unlabelled metric.
metric() { curl -fsS "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
# wait_metric ADDR NAME VALUE: poll (at most 10 s) until the metric has VALUE.
wait_metric() {
  local i
  for ((i = 0; i < 200; i++)); do [[ $(metric "$1" "$2") == "$3" ]] && return 0; sleep 0.05; done
  echo "  $2 is $(metric "$1" "$2"), not $3"
  return 1
}
# largest_layer ADDR: the digest and size of the largest layer of the linux/amd64 image.
largest_layer() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$1/v2/quinistry/manifests/latest" |
    jq -r '.layers | max_by(.size) | "\(.digest) \(.size)"'
}
# sha_is FILE DIGEST: FILE hashes to DIGEST.
sha_is() { [[ sha256:$(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }
# wait_exit PID SECONDS: wait for PID (a child of this shell) to exit, at most SECONDS; sets EXIT_STATUS.
wait_exit() {
  local pid=$1 i
  for ((i = 0; i < $2 * 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then EXIT_STATUS=timeout; return 1; fi
  EXIT_STATUS=0
  wait "$pid" || EXIT_STATUS=$?
}
# refused ADDR: a new connection to ADDR is refused (curl exit 7), polled for at most 5 s.
refused() {
  local i rc
  for ((i = 0; i < 100; i++)); do
    rc=0
    curl -sS -m 2 -o /dev/null "http://$1/healthz" 2>/dev/null || rc=$?
    ((rc == 7)) && return 0
    sleep 0.05
  done
  echo "  curl exit $rc, not 7"
  return 1
}
in_log() { grep -q -- "$2" "$Q_TMP/$1.log"; }
# logged NAME TEXT: TEXT appears in the server's log (polled, at most 10 s).
logged() {
  local i
  for ((i = 0; i < 100; i++)); do grep -q -- "$2" "$Q_TMP/$1.log" && return 0; sleep 0.1; done
  return 1
}
# line_of NAME TEXT: the number of the first line of NAME's log holding TEXT (empty when none).
line_of() { grep -n -m1 -- "$2" "$Q_TMP/$1.log" | cut -d: -f1; }
# log_lines NAME A B: where A and B are in the log, for the check's description.
log_lines() { echo "lines $(line_of "$1" "$2" || true) and $(line_of "$1" "$3" || true)"; }
# log_order NAME A B: NAME's log has a line holding A and, after it, a line holding B.
log_order() {
  local a b
  a=$(line_of "$1" "$2") b=$(line_of "$1" "$3")
  [[ -n $a && -n $b ]] && ((a < b))
}
# log_ms NAME TEXT: the time (ms since the epoch) the server stamped on the first line holding TEXT.
log_ms() {
  local t
  t=$(grep -m1 -- "$2" "$Q_TMP/$1.log" | sed -n 's/^time=\([^ ]*\) .*/\1/p')
  [[ -n $t ]] && echo $(($(date -d "$t" +%s%N) / 1000000))
}
not_in_log() { ! in_log "$@"; }
# client_ok STATUS ERRFILE: a slowget exited 0; otherwise show what it said.
client_ok() { [[ $1 == 0 ]] || { echo "  exit $1: $(cat "$2")"; return 1; }; }
# one_clear_line OUT PATH: OUT is one line naming PATH and the reason, without a stack trace.
one_clear_line() {
  [[ $(wc -l <<<"$1") == 1 && $1 == "quinistry: "*"$2: permission denied" && $1 != *goroutine* && $1 != *panic* ]]
}

# --- SIGTERM and SIGINT while a download is in flight: it completes, then exit 0.
for sig in TERM INT; do
  name=drain-$sig
  q_start $name "$AMD64" --addr 127.0.0.1:0
  addr=${Q_ADDR[$name]} pid=${Q_PID[$name]}
  read -r layer _ < <(largest_layer "$addr")
  slowget "$addr" "/v2/quinistry/blobs/$layer" "$Q_TMP/$name.go" >"$Q_TMP/$name.blob" 2>"$Q_TMP/$name.client" &
  client=$!
  check "SIG$sig: the slow download is in flight" wait_metric "$addr" quinistry_blob_streams_in_flight 1
  kill -$sig "$pid"
  check "SIG$sig: the listener closes at once" refused "$addr"
  check "SIG$sig: the process waits for the download" kill -0 "$pid"
  touch "$Q_TMP/$name.go"
  wait_exit "$pid" 20 || true
  check "SIG$sig: the process exits 0 (got $EXIT_STATUS)" [ "$EXIT_STATUS" == 0 ]
  unset "Q_PID[$name]"
  client_status=0
  wait $client || client_status=$?
  check "SIG$sig: the download completes" client_ok $client_status "$Q_TMP/$name.client"
  check "SIG$sig: the download has the right sha256" sha_is "$Q_TMP/$name.blob" "$layer"
  check "SIG$sig: logs shutting down, then stopped ($(log_lines $name 'msg="shutting down"' 'msg=stopped'))" \
    log_order $name 'msg="shutting down"' 'msg=stopped'
  check "SIG$sig: no download was cut" not_in_log $name 'cut off'
done

# --- --shutdown-timeout 1s with a download that does not finish: exit 0 after about 1 s, download cut.
name="cut"
q_start $name "$AMD64" --addr 127.0.0.1:0 --shutdown-timeout 1s
addr=${Q_ADDR[$name]} pid=${Q_PID[$name]}
read -r layer size < <(largest_layer "$addr")
slowget "$addr" "/v2/quinistry/blobs/$layer" "$Q_TMP/$name.go" >"$Q_TMP/$name.blob" 2>"$Q_TMP/$name.client" &
client=$!
check "timeout: the slow download is in flight" wait_metric "$addr" quinistry_blob_streams_in_flight 1
kill -TERM "$pid"
wait_exit "$pid" 60 || true
unset "Q_PID[$name]"
check "timeout: the process exits 0 (got $EXIT_STATUS)" [ "$EXIT_STATUS" == 0 ]
check "timeout: logs the 1s timeout it shuts down with" in_log $name 'msg="shutting down" timeout=1s'
check "timeout: logs shutting down, then that in-flight requests were cut off, then stopped ($(log_lines $name 'msg="shutting down"' 'cut off at the shutdown timeout'), $(line_of $name msg=stopped || true))" \
  eval "log_order $name 'msg=\"shutting down\"' 'cut off at the shutdown timeout' && log_order $name 'cut off at the shutdown timeout' msg=stopped"
# The server's own clock: the cut comes no sooner than the timeout after shutting down began (a
# timer never fires early, so this holds however busy the machine is; no upper bound is bet on).
began=$(log_ms $name 'msg="shutting down"') || began=
cut=$(log_ms $name 'cut off at the shutdown timeout') || cut=
waited=-1
[[ -z $began || -z $cut ]] || waited=$((cut - began))
check "timeout: the server waited the timeout before cutting ($waited ms by its log)" [ "$waited" -ge 1000 ]
touch "$Q_TMP/$name.go"
client_status=0
wait $client || client_status=$?
check "timeout: the download is cut ($(cat "$Q_TMP/$name.client"))" [ $client_status != 0 ]
got=$(stat -c %s "$Q_TMP/$name.blob")
check "timeout: the download stopped short ($got of $size bytes)" [ "$got" -lt "$size" ]

# --- Probes: /readyz is 503 while packing (the server listens first), then 200; /healthz; /metrics.
# Packing is held open by an event, not raced: a FIFO named like the arm64 sibling blocks the
# server's open of it until this script opens the other end.
name="probe"
mkdir "$Q_TMP/gate"
mkfifo "$Q_TMP/gate/quinistry-linux-arm64"
"$AMD64" --addr 127.0.0.1:0 --siblings "$Q_TMP/gate" >"$Q_TMP/$name.out" 2>"$Q_TMP/$name.log" &
Q_PID[$name]=$!
# listening_port PID: the TCP port PID listens on, once it listens (at most 10 s).
listening_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$(ss -Hltnp | awk -v pid="pid=$1," 'index($0, pid) {n = split($4, a, ":"); print a[n]; exit}')
    [[ -n $p ]] && { echo "$p"; return 0; }
    sleep 0.05
  done
  return 1
}
port=$(listening_port "${Q_PID[$name]}") || port=
addr=127.0.0.1:$port
check "probes: listening on $addr while packing (the FIFO holds it)" [ -n "$port" ]
check "probes: /readyz answers 503 packing while packing" \
  [ "$(curl -sS -w ' %{http_code}' "http://$addr/readyz")" == "packing
 503" ]
check "probes: /healthz answers 200 while packing" [ "$(curl -sS -o /dev/null -w '%{http_code}' "http://$addr/healthz")" == 200 ]
check "probes: /metrics says quinistry_ready 0 while packing" grep -qx 'quinistry_ready 0' <(curl -fsS "http://$addr/metrics")
curl -sS -o /dev/null -w '%{http_code}' -H "Accept: $LIST_ACCEPT" "http://$addr/v2/quinistry/manifests/latest" >"$Q_TMP/waiter" 2>&1 &
waiter=$!
check "probes: a manifest request made while packing waits (not refused, not answered)" \
  eval "[[ \$(curl -sS -w '%{http_code}' -o /dev/null 'http://$addr/readyz') == 503 ]] && kill -0 $waiter && [ ! -s '$Q_TMP/waiter' ]"
# open the FIFO's writing end: the server's open returns (bounded, should the server be gone)
timeout 10 bash -c ': >"$1"' _ "$Q_TMP/gate/quinistry-linux-arm64" || echo "  nobody opened the FIFO"
check "probes: the FIFO is skipped with one warning" logged $name 'quinistry-linux-arm64: not a regular file'
check "probes: it becomes ready" logged $name 'msg=ready'
waiter_status=0
wait $waiter || waiter_status=$?
check "probes: the waiting manifest request is answered 200 ($(cat "$Q_TMP/waiter"))" [ "$waiter_status" == 0 -a "$(cat "$Q_TMP/waiter")" == 200 ]
addr=127.0.0.1:$port
check "probes: /readyz says ready" [ "$(curl -fsS "http://$addr/readyz")" == ready ]
check "probes: /healthz is 200" [ "$(curl -fsS -o /dev/null -w '%{http_code}' "http://$addr/healthz")" == 200 ]
read -r layer _ < <(largest_layer "$addr")
curl -fsS -o "$Q_TMP/probe.blob" "http://$addr/v2/quinistry/blobs/$layer"
# Log lines are buffered, and flushed at least every 100 ms: with no more traffic and no shutdown,
# the request's line still reaches the log.
check "log: the blob request's line is written out while the server idles" logged $name "path=/v2/quinistry/blobs/$layer "
check "log: ... and the server is still running" kill -0 "${Q_PID[$name]}"
curl -fsS -D "$Q_TMP/metrics.head" -o "$Q_TMP/metrics" "http://$addr/metrics"
check "metrics: Prometheus text content type" grep -qi '^content-type: text/plain; version=0.0.4' "$Q_TMP/metrics.head"
for line in 'quinistry_ready 1' 'quinistry_build_info{version=' 'quinistry_pack_seconds ' \
  'quinistry_requests_total{route="manifest",status="200"} 2' 'quinistry_requests_total{route="blob",status="200"} 1' \
  'quinistry_blob_streams_in_flight 0' 'quinistry_blob_streams_limit 1024' '# TYPE quinistry_requests_total counter'; do
  check "metrics: has $line" grep -qF "$line" "$Q_TMP/metrics"
done
bytes=$(awk '$1 == "quinistry_response_bytes_total" {print $2}' "$Q_TMP/metrics")
check "metrics: bytes served ($bytes) include the layer ($(stat -c %s "$Q_TMP/probe.blob"))" [ "${bytes:-0}" -gt "$(stat -c %s "$Q_TMP/probe.blob")" ]
q_stop probe

# --- --max-streams 2 with 4 concurrent downloads: two are sent, two get 429 with Retry-After.
name=cap
q_start $name "$AMD64" --addr 127.0.0.1:0 --max-streams 2
addr=${Q_ADDR[$name]}
read -r layer _ < <(largest_layer "$addr")
for i in 1 2; do
  slowget "$addr" "/v2/quinistry/blobs/$layer" "$Q_TMP/$name.go" >"$Q_TMP/$name.$i.blob" 2>"$Q_TMP/$name.$i.client" &
  clients[i]=$!
done
check "cap: two slow downloads are in flight" wait_metric "$addr" quinistry_blob_streams_in_flight 2
for i in 3 4; do
  curl -sS -D "$Q_TMP/$name.$i.head" -o "$Q_TMP/$name.$i.body" "http://$addr/v2/quinistry/blobs/$layer" &
  clients[i]=$!
done
wait "${clients[3]}" "${clients[4]}"
for i in 3 4; do
  check "cap: download $i gets 429" grep -q '^HTTP/1.1 429 ' "$Q_TMP/$name.$i.head"
  check "cap: download $i gets Retry-After: 1" grep -qi '^retry-after: 1' "$Q_TMP/$name.$i.head"
  check "cap: download $i gets TOOMANYREQUESTS" [ "$(jq -r '.errors[0].code' "$Q_TMP/$name.$i.body")" == TOOMANYREQUESTS ]
done
touch "$Q_TMP/$name.go"
for i in 1 2; do
  client_status=0
  wait "${clients[$i]}" || client_status=$?
  check "cap: download $i completes" client_ok $client_status "$Q_TMP/$name.$i.client"
  check "cap: download $i has the right sha256" sha_is "$Q_TMP/$name.$i.blob" "$layer"
done
check "cap: the slots are given back" wait_metric "$addr" quinistry_blob_streams_in_flight 0
curl -fsS -o "$Q_TMP/$name.after" "http://$addr/v2/quinistry/blobs/$layer"
check "cap: a download afterwards is sent whole" sha_is "$Q_TMP/$name.after" "$layer"
check "cap: /metrics counts the two 429s" grep -qF 'quinistry_requests_total{route="blob",status="429"} 2' <(curl -fsS "http://$addr/metrics")
q_stop $name

# --- A binary that cannot read itself (execute-only, run as a user that is not root) refuses to start
# with one clear line and no stack trace.
mkdir -m 755 "$Q_TMP/xonly"
cp dist/quinistry-linux-* "$Q_TMP/xonly/"
chmod 111 "$Q_TMP/xonly/quinistry-linux-amd64"
out=$(setpriv --reuid=65532 --regid=65532 --clear-groups "$Q_TMP/xonly/quinistry-linux-amd64" --addr 127.0.0.1:0 2>&1 >/dev/null) && status=0 || status=$?
echo "  unreadable binary: exit $status: $out"
check "unreadable binary: exits 1" [ "$status" == 1 ]
check "unreadable binary: one clear line naming the binary and the reason" one_clear_line "$out" "$Q_TMP/xonly/quinistry-linux-amd64"

# --- TLS: HTTPS with HTTP/2, and the certificate reloaded on SIGHUP without a restart.
tls=$Q_TMP/tls
mkdir -p "$tls"
make_cert() { # make_cert NAME: a self-signed certificate for 127.0.0.1 with that common name
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
  cp "$tls/cert.pem" "$tls/$1.pem"
}
served_cn() { # served_cn ADDR: the common name of the certificate the server presents
  openssl s_client -connect "$1" -servername 127.0.0.1 </dev/null 2>/dev/null | openssl x509 -noout -subject | sed 's/.*CN *= *//'
}
make_cert first
q_start tls "$AMD64" --addr 127.0.0.1:0 --tls-cert "$tls/cert.pem" --tls-key "$tls/key.pem"
addr=${Q_ADDR[tls]}
check "tls: /v2/ over HTTPS answers with HTTP/2" \
  [ "$(curl -fsS --cacert "$tls/first.pem" -o /dev/null -w '%{http_version}' "https://$addr/v2/")" == 2 ]
check "tls: crane reads the list over verified HTTPS" \
  eval 'SSL_CERT_FILE="$tls/first.pem" crane digest "$addr/quinistry:latest" >/dev/null'
check "tls: the first certificate is served" [ "$(served_cn "$addr")" == first ]
make_cert second
kill -HUP "${Q_PID[tls]}"
serves_cn() { # serves_cn ADDR CN: within 5 s, the server presents the certificate named CN
  local i
  for ((i = 0; i < 50; i++)); do [[ $(served_cn "$1") == "$2" ]] && return 0; sleep 0.1; done
  return 1
}
check "tls: after SIGHUP the new certificate is served" serves_cn "$addr" second
check "tls: HTTPS works with the new certificate" curl -fsS --cacert "$tls/second.pem" -o /dev/null "https://$addr/v2/"
echo broken >"$tls/key.pem"
kill -HUP "${Q_PID[tls]}"
check "tls: the failed reload is logged" logged tls 'TLS certificate not reloaded'
check "tls: a broken key on SIGHUP keeps the last certificate" [ "$(served_cn "$addr")" == second ]
q_stop tls
out=$("$AMD64" --addr 127.0.0.1:0 --tls-cert "$tls/missing.pem" --tls-key "$tls/key.pem" 2>&1 >/dev/null) && status=0 || status=$?
check "bad input: a missing TLS certificate is one line and exit 1" \
  eval '[[ $status == 1 && $(wc -l <<<"$out") == 1 && $out == "quinistry: cannot load TLS certificate"* ]]'

q_stop_all
check "cleanup: no server or client started here still runs ($(jobs -pr | wc -l) left)" [ -z "$(jobs -pr)" ]
echo "e2e-hold took $((($(date +%s%N) - start) / 1000000)) ms"
checks_done e2e-hold
