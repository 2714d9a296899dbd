#!/usr/bin/env bash
# e2e-nodes.sh: pulls across hosts over TLS, and an arm64 node that picks arm64 by itself. Three throw-away
# nodes (network namespaces on a private bridge, scripts/lib/nodes.sh):
#   a  serves quinistry over HTTPS with a certificate from a CA made for this run (IP SAN = its address),
#      over plain HTTP on another port, and with an expired certificate on a third
#   b  an amd64 node: a private dockerd (plain HTTP allowed for a's HTTP port only) and a private containerd
#   c  an arm64 node: Debian's arm64 containerd, ctr and skopeo under qemu-user 10.x, through a binfmt_misc
#      registration made in a private user and mount namespace (the host's binfmt_misc is not touched)
# Checks: docker without the CA or with a wrong one fails with the x509 error and nothing is served; with the
# CA in certs.d, docker pulls linux/amd64, then linux/arm64/v8 fetching only its manifest and config; the
# pulled image runs locked down in b and serves the same list digest; ctr with hosts.toml pulls both
# platforms; a certificate rotation (kill -HUP) is seen by b's next pull with no restart; plain-HTTP pull
# with insecure-registries; bad input (wrong CA, wrong host name, expired certificate, plain HTTP on the TLS
# port) gets a clear client error and a keeps serving; on c, ctr and skopeo with no platform fetch only the
# arm64 manifest and config (the server's access log, ctr content ls); at the end nothing is left behind.
# Needs scripts/install-tools.sh (which runs scripts/install-nodes.sh) and root.
# Set E2E_KEEP_TMP=1 to keep the logs (the nodes are torn down all the same).
set -euo pipefail
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
source scripts/lib/dockerd.sh
source scripts/lib/nodes.sh
export DOCKER_CONFIG=$Q_TMP/docker-config
mkdir -p "$DOCKER_CONFIG"

C_WORK=
cleanup() {
  set +e
  # the arm64 node's background pulls, when the suite stops early: that job and its children, by PID
  if [[ -n $C_WORK ]] && kill -0 "$C_WORK" 2>/dev/null; then pkill -TERM -P "$C_WORK"; kill -TERM "$C_WORK"; fi
  nodes_teardown
  if [[ -n ${E2E_KEEP_TMP:-} ]]; then echo "e2e-nodes: kept $Q_TMP"; else rm -rf "$Q_TMP"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
trap 'echo "e2e-nodes: aborted: line $LINENO exited with status $?" >&2' ERR

TMO=${E2E_TIMEOUT:-120}
# build while the nodes and their daemons start; skipped when dist/ is newer than every Go source
# (E2E_BUILD=1 builds anyway)
AMD64=$ROOT/dist/quinistry-linux-amd64
if [[ -n ${E2E_BUILD:-} || ! -x $AMD64 || ! -x $ROOT/dist/quinistry-linux-arm64 ||
  -n $(find . -path ./.tools -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$AMD64" -print -quit) ]]; then
  scripts/build.sh >"$Q_TMP/build.log" 2>&1 &
else
  echo "dist/ is newer than every Go source: not rebuilt" >"$Q_TMP/build.log" && true &
fi
BUILD_PID=$!

# ---------- the nodes
nodes_init
node_add a
node_add b
node_add c
A=${NODE_IP[a]} B=${NODE_IP[b]}
TLS_PORT=$(node_port) C_PORT=$(node_port) HTTP_PORT=$(node_port) EXP_PORT=$(node_port) B_PORT=$(node_port)
TLS=$A:$TLS_PORT TLS_C=$A:$C_PORT
PKI=$NODES_TMP/pki
nodes_ca ca
nodes_ca other
nodes_cert ca a "IP:$A"
nodes_cert ca expired "IP:$A" 20200101000000Z 20200102000000Z
echo "run $NODES_ID: nodes a=$A b=$B c=${NODE_IP[c]}; a serves https://$TLS (and https://$TLS_C for c), http://$A:$HTTP_PORT, expired https://$A:$EXP_PORT"
node_dockerd b --insecure-registry "$A:$HTTP_PORT"
node_containerd b
node_arm64 c
wait "$BUILD_PID" || { cat "$Q_TMP/build.log" >&2; exit 1; }
echo "  build: $(tail -n 1 "$Q_TMP/build.log" | sed "s|^$ROOT/||"); done at $(($(date +%s) - START)) s"
# one server per client node, so that each access log holds one node's requests (c works alongside b)
node_quinistry a tls "$AMD64" --addr "$TLS" --tls-cert "$PKI/a.crt" --tls-key "$PKI/a.key"
node_quinistry a tls-c "$AMD64" --addr "$TLS_C" --tls-cert "$PKI/a.crt" --tls-key "$PKI/a.key"
node_quinistry a http "$AMD64" --addr "$A:$HTTP_PORT"
node_quinistry a expired "$AMD64" --addr "$A:$EXP_PORT" --tls-cert "$PKI/expired.crt" --tls-key "$PKI/expired.key"
nodes_ready
echo "  servers, dockerd, containerd and arm64 containerd ready at $(($(date +%s) - START)) s"

# ---------- helpers (each is a check: status 0, or a short reason on stdout)

equals() { [[ $1 == "$2" ]] || { echo "  got '$1', want '$2'"; return 1; }; }
# fails_saying LOG STATUS TEXT: a command's status was non-zero and its output (LOG) says TEXT.
fails_saying() {
  [[ $2 != 0 ]] || { echo "  it succeeded"; return 1; }
  grep -q -- "$3" "$1" || { echo "  status $2, output:"; tail -n 3 "$1" | sed 's/^/  /'; return 1; }
}
# ok_saying LOG STATUS TEXT: a command succeeded and its output (LOG) says TEXT.
ok_saying() {
  [[ $2 == 0 ]] || { echo "  status $2, output:"; tail -n 3 "$1" | sed 's/^/  /'; return 1; }
  grep -q -- "$3" "$1" || { echo "  no '$3' in its output:"; tail -n 3 "$1" | sed 's/^/  /'; return 1; }
}
# https NODE URL CURL-ARGS...: curl from NODE trusting this run's CA.
https() { local n=$1; shift; node_run "$n" curl -fsS --max-time 20 --cacert "$PKI/ca.crt" -H "Accept: $LIST_ACCEPT" "$@"; }
# list_digest NODE: the list digest node a serves over TLS, asked from NODE.
list_digest() {
  https "$1" -I "https://$TLS/v2/quinistry/manifests/latest" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}
# a_serves NODE: node a still serves the list digest over TLS to NODE, from the process started at first.
a_serves() {
  kill -0 "${Q_PID[tls]}" 2>/dev/null || { echo "  quinistry on a (pid ${Q_PID[tls]}) is gone"; return 1; }
  equals "$(list_digest "$1")" "$LIST"
}

# access-log helpers: quinistry logs one line per request, written out at least every 100 ms
log_mark() { sleep 0.3; wc -l <"$Q_TMP/$1.log"; }
# fetched QNAME MARK KIND [END]: digests of the manifests or blobs (KIND) served with 200 to GETs after line
# MARK (and up to line END).
fetched() {
  [[ -n ${4:-} ]] || sleep 0.3
  sed -n "$(($2 + 1)),${4:-\$}p" "$Q_TMP/$1.log" |
    sed -n "s|.*msg=request method=GET path=/v2/quinistry/$3/\(sha256:[0-9a-f]*\) .* status=20[06] .*|\1|p" | sort -u | tr '\n' ' ' | sed 's/ $//'
}
requests_since() { sleep 0.3; tail -n +"$(($2 + 1))" "$Q_TMP/$1.log" | grep -c 'msg=request' || true; }
# short DIGESTS: each of the space-separated DIGESTS cut to 19 characters
short() { local s; for s in $1; do printf '%s ' "${s:0:19}"; done | sed 's/ $//'; }
# name_of DIGEST: which served object a digest is
name_of() {
  case $1 in
  "$LIST") echo list ;; "$AMD64_M") echo amd64-manifest ;; "$ARM64_M") echo arm64-manifest ;;
  "$AMD64_CFG") echo amd64-config ;; "$ARM64_CFG") echo arm64-config ;;
  *) if [[ " $LAYERS " == *" $1 "* ]]; then echo layer; else echo "other:${1:0:19}"; fi ;;
  esac
}
names() { local d; for d in $1; do name_of "$d"; done | sort | uniq -c | awk '{printf "%s%s", (NR > 1 ? "," : ""), ($1 > 1 ? $1 "x" : "") $2}'; }

dkb() { timeout "$TMO" "$DOCKER" -H "${NODE_DOCKER[b]}" "$@"; }
ctrb() { CONTAINERD_SNAPSHOTTER=native node_run b timeout "$TMO" ctr --address "${NODE_CTR[b]}" "$@"; }
ctrc() { CONTAINERD_SNAPSHOTTER=native node_arm64_run c timeout "$TMO" ctr --address "${NODE_CTR[c]}" "$@"; }

# ---------- what a serves
LIST=$(list_digest c) || true
check "a serves the list over TLS to c ($LIST)" test -n "$LIST"
https b -o "$Q_TMP/list.json" "https://$TLS/v2/quinistry/manifests/latest"
AMD64_M=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$Q_TMP/list.json")
ARM64_M=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$Q_TMP/list.json")
ARM64_PLATFORM=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .platform | .os + "/" + .architecture + "/" + .variant' "$Q_TMP/list.json")
https b -o "$Q_TMP/amd64.json" "https://$TLS/v2/quinistry/manifests/$AMD64_M"
https b -o "$Q_TMP/arm64.json" "https://$TLS/v2/quinistry/manifests/$ARM64_M"
AMD64_CFG=$(jq -r .config.digest "$Q_TMP/amd64.json")
ARM64_CFG=$(jq -r .config.digest "$Q_TMP/arm64.json")
LAYERS=$(jq -r '.layers[].digest' "$Q_TMP/amd64.json" | sort | tr '\n' ' ')
check "the platform images share their layers ($(short "$LAYERS"))" \
  equals "$(jq -r '.layers[].digest' "$Q_TMP/arm64.json" | sort | tr '\n' ' ')" "$LAYERS"
echo "  list $LIST: amd64 $AMD64_M (config $AMD64_CFG), $ARM64_PLATFORM $ARM64_M (config $ARM64_CFG)"

# ---------- the arm64 node's pulls run in the background while b works; checked further down
# c_work: ctr images pull and skopeo copy on c, with no platform anywhere; results under $CW.
CW=$Q_TMP/c
REF_C=$TLS_C/quinistry:latest
HOSTS_C=$NODES_TMP/hosts-c
SKO=$NODES_TMP/skopeo-dir
c_work() {
  set +e
  mkdir -p "$CW" "$NODES_TMP/skopeo-certs" "$NODES_TMP/skopeo-tmp"
  node_hosts_toml "$HOSTS_C" "$TLS_C" "$PKI/ca.crt"
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$NODES_TMP/policy.json"
  cp "$PKI/ca.crt" "$NODES_TMP/skopeo-certs/ca.crt"
  ctrc version >"$CW/version" 2>&1
  log_mark tls-c >"$CW/ctr.mark"
  local t=$SECONDS rc=0
  ctrc images pull --hosts-dir "$HOSTS_C" "$REF_C" >"$CW/ctr.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - t))" >"$CW/ctr.rc"
  ctrc content ls -q >"$CW/content" 2>&1
  ctrc snapshots --snapshotter native ls >"$CW/snapshots" 2>&1
  log_mark tls-c >"$CW/skopeo.mark"
  t=$SECONDS rc=0
  TMPDIR=$NODES_TMP/skopeo-tmp node_arm64_run c timeout "$TMO" skopeo --policy "$NODES_TMP/policy.json" copy -q \
    --src-cert-dir "$NODES_TMP/skopeo-certs" "docker://$REF_C" "dir:$SKO" >"$CW/skopeo.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - t))" >"$CW/skopeo.rc"
  log_mark tls-c >"$CW/end.mark"
}
c_work &
C_WORK=$!

# ---------- docker on b, over TLS
echo "--- docker on b, pulling https://$TLS"
REF=$TLS/quinistry:latest
mark=$(log_mark tls)
rc=0; dkb pull "$REF" >"$Q_TMP/pull-noca.log" 2>&1 || rc=$?
check "b: docker pull with no CA fails: $(grep -o 'x509: [^"]*' "$Q_TMP/pull-noca.log" | head -1)" \
  fails_saying "$Q_TMP/pull-noca.log" "$rc" "x509: certificate signed by unknown authority"
n=$(requests_since tls "$mark")
check "b: nothing was served to it ($n requests in a's access log)" equals "$n" 0

node_certs_d "$TLS" "$PKI/other.crt"
rc=0; dkb pull "$REF" >"$Q_TMP/pull-wrongca.log" 2>&1 || rc=$?
check "b: docker pull with another CA in certs.d fails: $(grep -o 'x509: [^"]*' "$Q_TMP/pull-wrongca.log" | head -1)" \
  fails_saying "$Q_TMP/pull-wrongca.log" "$rc" "x509: certificate signed by unknown authority"
cp "$PKI/ca.crt" "/etc/docker/certs.d/$TLS/ca.crt"

mark=$(log_mark tls)
rc=0; dkb pull "$REF" >"$Q_TMP/pull-amd64.log" 2>&1 || rc=$?
got=$(dkb image inspect -f '{{.Os}}/{{.Architecture}} {{index .RepoDigests 0}}' "$REF" 2>/dev/null || true)
check "b: docker pull with the CA in /etc/docker/certs.d/$TLS gets $got" \
  equals "$rc $got" "0 linux/amd64 $TLS/quinistry@$LIST"
m=$(fetched tls "$mark" manifests) bl=$(fetched tls "$mark" blobs)
check "b: it fetched manifests [$(names "$m")] and blobs [$(names "$bl")]" \
  equals "$(names "$m") $(names "$bl")" "amd64-manifest,list amd64-config,2xlayer"
dkb tag "$REF" q:amd64

mark=$(log_mark tls)
rc=0; dkb pull --platform linux/arm64 "$REF" >"$Q_TMP/pull-arm64.log" 2>&1 || rc=$?
dkb tag "$REF" q:arm64 2>/dev/null || true
got=$(dkb image inspect -f '{{.Os}}/{{.Architecture}}/{{.Variant}} {{.Id}}' q:arm64 2>/dev/null || true)
check "b: docker pull --platform linux/arm64 gets ${got% *} (config ${got#* })" \
  equals "$rc $got" "0 linux/arm64/v8 $ARM64_CFG"
m=$(fetched tls "$mark" manifests) bl=$(fetched tls "$mark" blobs)
check "b: the arm64 pull fetched manifests [$(names "$m")] and blobs [$(names "$bl")] only (layers shared)" \
  equals "$m $bl" "$ARM64_M $ARM64_CFG"

# the pulled image, locked down on b's network, serves the same list (asked from a, across the bridge)
b_addr=
run_b() {
  local i
  dkb run -d --name "q-$NODES_ID" --network host --read-only --user 65532 --cap-drop ALL \
    --security-opt no-new-privileges --pull never q:amd64 --addr "$B:$B_PORT" >/dev/null || return 1
  for ((i = 0; i < 300; i++)); do
    if dkb logs "q-$NODES_ID" 2>&1 | grep -q 'msg=ready'; then b_addr=$B:$B_PORT; return 0; fi
    [[ $(dkb inspect -f '{{.State.Running}}' "q-$NODES_ID") == true ]] || break
    sleep 0.1
  done
  echo "  container did not log ready; its log:"; dkb logs "q-$NODES_ID" 2>&1 | tail -n 5 | sed 's/^/  /'
  return 1
}
check "b: the amd64 image runs read-only, user 65532, no capabilities, on b's host network ($B:$B_PORT)" run_b
got=$(dkb inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.NetworkMode}}' "q-$NODES_ID" || true)
check "b: the container is locked down: $got" equals "$got" "65532 true [ALL] host"
served=$(node_run a curl -fsSI --max-time 20 -H "Accept: $LIST_ACCEPT" "http://$b_addr/v2/quinistry/manifests/latest" |
  tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}' || true)
check "a: the container on b serves the same list digest ($served)" equals "$served" "$LIST"
dkb rm -f "q-$NODES_ID" >/dev/null || true

# ---------- ctr on b, with hosts.toml
echo "--- containerd on b (ctr --hosts-dir)"
HOSTS=$NODES_TMP/hosts
node_hosts_toml "$HOSTS" "$TLS" "$PKI/ca.crt"
rc=0; ctrb images pull --hosts-dir "$HOSTS" "$REF" >"$Q_TMP/ctr-b-amd64.log" 2>&1 || rc=$?
content=$(ctrb content ls -q 2>/dev/null | tr '\n' ' ' || true)
check "b: ctr images pull (hosts.toml): $(grep -o 'unpacking [^ ]*' "$Q_TMP/ctr-b-amd64.log"), content has [$(names "$content")]" \
  equals "$rc $(grep -o 'unpacking [^ ]*' "$Q_TMP/ctr-b-amd64.log") $(names "$content")" "0 unpacking linux/amd64 amd64-config,amd64-manifest,2xlayer,list"
rc=0; ctrb images pull --hosts-dir "$HOSTS" --platform linux/arm64 "$REF" >"$Q_TMP/ctr-b-arm64.log" 2>&1 || rc=$?
content=$(ctrb content ls -q 2>/dev/null | tr '\n' ' ' || true)
check "b: ctr images pull --platform linux/arm64 (hosts.toml): $(grep -o 'unpacking [^ ]*' "$Q_TMP/ctr-b-arm64.log"), content now [$(names "$content")]" \
  equals "$rc $(grep -o 'unpacking [^ ]*' "$Q_TMP/ctr-b-arm64.log") $(names "$content")" \
  "0 unpacking linux/arm64 amd64-config,amd64-manifest,arm64-config,arm64-manifest,2xlayer,list"

# ---------- certificate rotation on a
echo "--- certificate rotation on a (kill -HUP)"
served_fp() { node_run b openssl s_client -connect "$TLS" -CAfile "$PKI/ca.crt" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2; }
old_fp=$(served_fp || true)
pid=${Q_PID[tls]}
nodes_cert ca a "IP:$A"
new_fp=$(openssl x509 -noout -fingerprint -sha256 -in "$PKI/a.crt" | cut -d= -f2)
kill -HUP "$pid"
for ((i = 0; i < 50; i++)); do grep -q 'TLS certificate reloaded' "$Q_TMP/tls.log" && break; sleep 0.1; done
got=$(served_fp || true)
check "a: after kill -HUP, pid $pid serves the new certificate (${got:0:23}..., was ${old_fp:0:23}...)" \
  equals "$(kill -0 "$pid" && echo alive) $got" "alive $new_fp"
dkb rmi -f q:amd64 q:arm64 "$REF" >/dev/null 2>&1 || true
mark=$(log_mark tls)
rc=0; dkb pull "$REF" >"$Q_TMP/pull-rotated.log" 2>&1 || rc=$?
got=$(dkb image inspect -f '{{.Os}}/{{.Architecture}} {{index .RepoDigests 0}}' "$REF" 2>/dev/null || true)
check "b: the next docker pull, no restart on either side, gets $got ($(requests_since tls "$mark") requests)" \
  equals "$rc $got" "0 linux/amd64 $TLS/quinistry@$LIST"
rc=0; ctrb images pull --hosts-dir "$HOSTS" "$REF" >"$Q_TMP/ctr-b-rotated.log" 2>&1 || rc=$?
check "b: the next ctr pull resolves $(grep -o 'sha256:[0-9a-f]*' "$Q_TMP/ctr-b-rotated.log" | tail -1 | cut -c1-19) over the new certificate" \
  ok_saying "$Q_TMP/ctr-b-rotated.log" "$rc" "$LIST"

# ---------- plain HTTP between nodes, with insecure-registries
echo "--- plain HTTP: b's dockerd has --insecure-registry $A:$HTTP_PORT"
rc=0; dkb pull "$A:$HTTP_PORT/quinistry:latest" >"$Q_TMP/pull-http.log" 2>&1 || rc=$?
plat=$(dkb image inspect -f '{{.Os}}/{{.Architecture}}' "$A:$HTTP_PORT/quinistry:latest" 2>/dev/null || true)
digests=" $(dkb image inspect -f '{{join .RepoDigests " "}}' "$A:$HTTP_PORT/quinistry:latest" 2>/dev/null || true) "
want=$A:$HTTP_PORT/quinistry@$LIST
got=$([[ $digests == *" $want "* ]] && echo "$want" || echo "no RepoDigest for $A:$HTTP_PORT")
check "b: docker pull http://$A:$HTTP_PORT gets $plat, $got" equals "$rc $plat $got" "0 linux/amd64 $want"

# ---------- bad input from b: a clear client error each time, and a keeps serving c
echo "--- bad input"
curl_bad() { local log=$1; shift; node_run b curl -sS --max-time 20 -o /dev/null "$@" >"$log" 2>&1; }
rc=0; curl_bad "$Q_TMP/bad-ca.log" --cacert "$PKI/other.crt" "https://$TLS/v2/" || rc=$?
check "b: curl with a wrong CA: status $rc, $(head -1 "$Q_TMP/bad-ca.log")" \
  fails_saying "$Q_TMP/bad-ca.log" "$rc" "unable to get local issuer certificate"
check "a: still serves c after the wrong CA" a_serves c
rc=0; curl_bad "$Q_TMP/bad-name.log" --cacert "$PKI/ca.crt" --resolve "wrong-$NODES_ID.invalid:$TLS_PORT:$A" \
  "https://wrong-$NODES_ID.invalid:$TLS_PORT/v2/" || rc=$?
check "b: curl with a wrong host name (SNI wrong-$NODES_ID.invalid): status $rc, $(head -1 "$Q_TMP/bad-name.log")" \
  fails_saying "$Q_TMP/bad-name.log" "$rc" "no alternative certificate subject name matches"
check "a: still serves c after the wrong host name" a_serves c
rc=0; curl_bad "$Q_TMP/bad-expired.log" --cacert "$PKI/ca.crt" "https://$A:$EXP_PORT/v2/" || rc=$?
check "b: curl against the expired certificate: status $rc, $(head -1 "$Q_TMP/bad-expired.log")" \
  fails_saying "$Q_TMP/bad-expired.log" "$rc" "certificate has expired"
node_certs_d "$A:$EXP_PORT" "$PKI/ca.crt"
rc=0; dkb pull "$A:$EXP_PORT/quinistry:latest" >"$Q_TMP/pull-expired.log" 2>&1 || rc=$?
check "b: docker pull against the expired certificate: $(grep -o 'x509: [^"]*' "$Q_TMP/pull-expired.log" | head -1)" \
  fails_saying "$Q_TMP/pull-expired.log" "$rc" "x509: certificate has expired"
check "a: still serves c after the expired certificate" a_serves c
rc=0; node_run b curl -sS --max-time 20 -f "http://$TLS/v2/" >"$Q_TMP/bad-http.log" 2>&1 || rc=$?
body=$(node_run b curl -sS --max-time 20 "http://$TLS/v2/" 2>&1 || true)
check "b: plain HTTP to the TLS port: status $rc, $(cat "$Q_TMP/bad-http.log"): '$body'" \
  fails_saying "$Q_TMP/bad-http.log" "$rc" "error: 400"
check "b: ... with a body that says why" grep -q "HTTP request to an HTTPS server" <<<"$body"
check "a: still serves c after plain HTTP on the TLS port (pid ${Q_PID[tls]})" a_serves c

# ---------- the arm64 node: no platform given anywhere
echo "--- arm64 node c: Debian's arm64 containerd, ctr, skopeo under qemu-user"
CPID=${_NODE_CTR_PID[c]}
exe=$(readlink "/proc/$CPID/exe" || true)
check "c: containerd (pid $CPID) is an arm64 program run by ${exe##*/} ($("$exe" --version | head -1 | cut -d' ' -f1-3))" \
  equals "$exe" "$(readlink -f "$NODES_TOOLS/qemu/usr/bin/qemu-aarch64")"
wait "$C_WORK" || true
ver=$(awk '/Version:/ {printf "%s ", $2}' "$CW/version")
check "c: arm64 ctr talks to arm64 containerd (versions: ${ver% })" test -n "$ver"
reg=$(node_arm64_run c cat "$NODES_TMP/c-arm64/binfmt/$NODES_ID-aarch64" 2>/dev/null | awk '/^(enabled|interpreter|flags)/ {printf "%s%s", (n++ ? ", " : ""), $0}' || true)
check "c: its own binfmt_misc has $NODES_ID-aarch64 (${reg//$ROOT\//})" \
  equals "$reg" "enabled, interpreter $NODES_TOOLS/qemu/usr/bin/qemu-aarch64, flags: PF"
check "c: the host's binfmt_misc has no $NODES_ID-aarch64 ($(find /proc/sys/fs/binfmt_misc -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) entries there)" \
  test ! -e "/proc/sys/fs/binfmt_misc/$NODES_ID-aarch64"
read -r rc secs <"$CW/ctr.rc"
unpacked=$(grep -o 'unpacking [^ ]*' "$CW/ctr.log" || true)
check "c: ctr images pull with no --platform: $unpacked ($secs s)" equals "$rc $unpacked" "0 unpacking linux/arm64/v8"
[[ $rc == 0 ]] || tail -n 5 "$CW/ctr.log" | sed 's/^/  /'
m=$(fetched tls-c "$(cat "$CW/ctr.mark")" manifests "$(cat "$CW/skopeo.mark")")
bl=$(fetched tls-c "$(cat "$CW/ctr.mark")" blobs "$(cat "$CW/skopeo.mark")")
check "c: a's access log: it fetched manifests [$(names "$m")] and blobs [$(names "$bl")], nothing of amd64" \
  equals "$(names "$m") $(names "$bl")" "arm64-manifest,list arm64-config,2xlayer"
content=$(tr '\n' ' ' <"$CW/content")
check "c: ctr content ls: [$(names "$content")]" \
  equals "$(names "$content")" "arm64-config,arm64-manifest,2xlayer,list"
snaps=$(tail -n +2 "$CW/snapshots" | grep -c . || true)
check "c: the image was unpacked ($snaps snapshots)" test "$snaps" -ge 1

read -r rc secs <"$CW/skopeo.rc"
[[ $rc == 0 ]] || sed 's/^/  /' "$CW/skopeo.log"
sko_m=sha256:$(sha256sum "$SKO/manifest.json" 2>/dev/null | cut -d' ' -f1)
sko_cfg=$(jq -r .config.digest "$SKO/manifest.json" 2>/dev/null || true)
plat=$(jq -r '.os + "/" + .architecture + "/" + .variant' "$SKO/${sko_cfg#sha256:}" 2>/dev/null || true)
check "c: arm64 skopeo copy with no override picks $plat ($(name_of "$sko_m") ${sko_m:0:19}, $secs s)" \
  equals "$rc $plat $sko_m" "0 linux/arm64/v8 $ARM64_M"
m=$(fetched tls-c "$(cat "$CW/skopeo.mark")" manifests "$(cat "$CW/end.mark")")
bl=$(fetched tls-c "$(cat "$CW/skopeo.mark")" blobs "$(cat "$CW/end.mark")")
check "c: a's access log: skopeo fetched manifests [$(names "$m")] and blobs [$(names "$bl")], nothing of amd64" \
  equals "$(names "$m") $(names "$bl")" "arm64-manifest arm64-config,2xlayer"

# ---------- teardown, and nothing left
echo "--- teardown"
t=$(date +%s)
nodes_teardown
check "nothing left behind: no namespace, veth, mount, process, certs.d entry or folder of run $NODES_ID ($(($(date +%s) - t)) s)" nodes_leftovers
echo "e2e-nodes: total time $(($(date +%s) - START)) s"
checks_done e2e-nodes
