#!/usr/bin/env bash
# e2e-travel.sh: quinistry leaves the machine it runs on. It pushes itself to the CNCF registry (v3.1.2,
# filesystem storage in a temp dir) open, behind htpasswd basic auth and behind bearer tokens (issued by
# deploy/internal/regauth), and crane and skopeo see there the very list, manifests and blobs quinistry
# serves; a second push uploads no blob; wrong credentials fail with one line and leave no tag. It exports
# itself as a tar that docker load names quinistry:latest, and runs the parent/child flow in a private
# dockerd: generation 1 from the export on port 5000, generation 2 pulled from localhost:5000 on 5001,
# generation 3 pulled from localhost:5001, one list digest throughout. Also the deploy/ manifests' test
# and bad input: one clear line and a non-zero exit. Needs scripts/install-tools.sh to have run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
source scripts/lib/dockerd.sh
PIDS=()
cleanup() {
  q_stop_all
  [[ -n ${DOCKER_HOST:-} ]] && dockerd_stop "$Q_TMP/docker"
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$Q_TMP"
}
trap cleanup EXIT

command -v registry >/dev/null || { echo "e2e-travel: no registry binary in .tools/bin: run scripts/install-tools.sh" >&2; exit 1; }
scripts/build.sh >/dev/null
Q=$ROOT/dist/quinistry-linux-amd64

check "deploy/: manifests decode strictly against the Kubernetes API types" \
  bash -c 'cd deploy && go test -count=1 ./... >/dev/null'
(cd deploy && go build -o "$Q_TMP/regauth" ./internal/regauth)
REGAUTH=$Q_TMP/regauth

# What quinistry serves: the digest every registry and generation must show.
q_start origin "$Q" --addr 127.0.0.1:0
ORIGIN=${Q_ADDR[origin]}
WANT=$(q_list_digest "$ORIGIN")
check "quinistry serves a list ($WANT)" test -n "$WANT"

# reg_start NAME [AUTH_YAML]: a CNCF registry on a free port, storage under $Q_TMP/NAME; sets REG.
reg_start() {
  local name=$1 auth=${2:-} port i
  port=$("$REGAUTH" port)
  mkdir -p "$Q_TMP/$name"
  cat >"$Q_TMP/$name/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $Q_TMP/$name/data
http:
  addr: 127.0.0.1:$port
$auth
EOF
  registry serve "$Q_TMP/$name/config.yml" >"$Q_TMP/$name/log" 2>&1 &
  PIDS+=($!)
  REG=127.0.0.1:$port
  for ((i = 0; i < 100; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/") =~ ^(200|401)$ ]] && return 0
    sleep 0.1
  done
  echo "reg_start: registry $name did not start:" >&2
  cat "$Q_TMP/$name/log" >&2
  return 1
}

# qpush ARGS...: quinistry push; the pushed digest in PUSHED, its stderr in $Q_TMP/push.err.
qpush() { PUSHED=$("$Q" push "$@" 2>"$Q_TMP/push.err"); }
# uploaded N: the last push uploaded N blobs.
uploaded() { grep -q "^pushed .*: $1 blobs uploaded" "$Q_TMP/push.err" || { cat "$Q_TMP/push.err"; return 1; }; }
# one_clean_line WANT CMD...: CMD fails with one line of stderr holding WANT, and no stack trace.
one_clean_line() {
  local want=$1 out status=0
  shift
  out=$("$@" 2>&1 >/dev/null) || status=$?
  [[ $status -ne 0 && $(wc -l <<<"$out") -eq 1 && $out == *"$want"* && $out != *goroutine* ]] ||
    { echo "  exit $status, output: $out"; return 1; }
}
# same_content REF [CRANE_FLAGS...]: crane and skopeo find at REF the list quinistry serves, each platform
# manifest byte for byte, and every blob with the right digest.
same_content() {
  local ref=$1 repo=${1%:*} d b
  shift
  [[ $(crane digest --insecure "$@" "$ref") == "$WANT" ]] || { echo "  crane digest differs"; return 1; }
  cmp -s <(crane manifest --insecure "$@" "$ref") <(crane manifest --insecure "$ORIGIN/quinistry@$WANT") ||
    { echo "  list differs"; return 1; }
  for d in $(crane manifest --insecure "$@" "$ref" | jq -r '.manifests[].digest'); do
    cmp -s <(crane manifest --insecure "$@" "$repo@$d") <(crane manifest --insecure "$ORIGIN/quinistry@$d") ||
      { echo "  manifest $d differs"; return 1; }
    for b in $(crane manifest --insecure "$@" "$repo@$d" | jq -r '.config.digest, .layers[].digest'); do
      [[ sha256:$(crane blob --insecure "$@" "$repo@$b" | sha256sum | cut -d' ' -f1) == "$b" ]] ||
        { echo "  blob $b differs"; return 1; }
    done
  done
}
# skopeo_digest REF [SKOPEO_FLAGS...]: the digest of the raw manifest skopeo reads at REF.
skopeo_digest() {
  local ref=$1
  shift
  echo "sha256:$(skopeo inspect --tls-verify=false "$@" --raw "docker://$ref" | sha256sum | cut -d' ' -f1)"
}

# --- open registry
reg_start open
OPEN=$REG
check "open: push succeeds" qpush --insecure "$OPEN/team/quinistry:v1"
check "open: push prints the served list digest" [ "$PUSHED" == "$WANT" ]
check "open: first push uploads every blob" uploaded 4
check "open: crane sees the same list, manifests and blobs" same_content "$OPEN/team/quinistry:v1"
check "open: skopeo sees the same list digest" [ "$(skopeo_digest "$OPEN/team/quinistry:v1")" == "$WANT" ]
check "open: second push succeeds" qpush --insecure "$OPEN/team/quinistry:v1"
check "open: second push uploads no blob" uploaded 0
check "open: push with --mount-from" qpush --insecure --mount-from team/quinistry "$OPEN/other/quinistry:v1"
check "open: --mount-from mounts every blob" grep -q ": 0 blobs uploaded (0 bytes), 4 mounted" "$Q_TMP/push.err"
check "open: --format oci pushes the OCI index quinistry serves with --format oci" \
  bash -c "[ \"\$('$Q' push --insecure --format oci '$OPEN/team/quinistry:oci' 2>/dev/null)\" == \"\$(crane digest --insecure '$OPEN/team/quinistry:oci')\" ]"

# --- htpasswd basic auth
"$REGAUTH" htpasswd alice <<<"wonderland" >"$Q_TMP/htpasswd"
reg_start basic "auth:
  htpasswd:
    realm: quinistry-e2e
    path: $Q_TMP/htpasswd"
BASIC=$REG
check "basic: push with --username and --password-stdin" \
  bash -c "'$Q' push --insecure --username alice --password-stdin '$BASIC/team/quinistry:v1' <<<wonderland >'$Q_TMP/d' 2>'$Q_TMP/push.err'"
check "basic: pushed the served list digest" [ "$(cat "$Q_TMP/d")" == "$WANT" ]
mkdir -p "$Q_TMP/dockercfg"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$BASIC" "$(printf alice:wonderland | base64)" >"$Q_TMP/dockercfg/config.json"
check "basic: push with credentials from docker's config.json" qpush --insecure --docker-config "$Q_TMP/dockercfg" "$BASIC/team/quinistry:v1"
check "basic: second push uploads no blob" uploaded 0
check "basic: crane (same config.json) sees the same content" env DOCKER_CONFIG="$Q_TMP/dockercfg" bash -c "$(declare -f same_content); WANT=$WANT ORIGIN=$ORIGIN same_content '$BASIC/team/quinistry:v1'"
check "basic: skopeo sees the same list digest" [ "$(skopeo_digest "$BASIC/team/quinistry:v1" --creds alice:wonderland)" == "$WANT" ]
check "basic: wrong password fails with one line" one_clean_line "401 Unauthorized: credentials rejected" \
  bash -c "'$Q' push --insecure --username alice --password-stdin '$BASIC/team/wrong:v1' <<<nope"
check "basic: no credentials fails with one line" one_clean_line "authentication required" \
  "$Q" push --insecure --docker-config "$Q_TMP/nowhere" "$BASIC/team/wrong:v1"
check "basic: the failed pushes left no tag" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' -u alice:wonderland "http://$BASIC/v2/team/wrong/manifests/v1")" == 404 ]

# --- bearer tokens (the realm names localhost: crane refuses a realm on a private IP literal)
mkdir -p "$Q_TMP/issuer"
ISSUER=127.0.0.1:$("$REGAUTH" port)
"$REGAUTH" issuer "$Q_TMP/issuer" "$ISSUER" alice <<<"wonderland" 2>"$Q_TMP/issuer/log" &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do grep -q ready "$Q_TMP/issuer/log" && break; sleep 0.1; done
reg_start bearer "auth:
  token:
    realm: http://localhost:${ISSUER##*:}/token
    service: quinistry-e2e
    issuer: quinistry-e2e-issuer
    rootcertbundle: $Q_TMP/issuer/root.crt"
BEARER=$REG
check "bearer: push with a token" \
  bash -c "'$Q' push --insecure --username alice --password-stdin '$BEARER/team/quinistry:v1' <<<wonderland >'$Q_TMP/d' 2>'$Q_TMP/push.err'"
check "bearer: pushed the served list digest" [ "$(cat "$Q_TMP/d")" == "$WANT" ]
check "bearer: second push uploads no blob" \
  bash -c "'$Q' push --insecure --username alice --password-stdin '$BEARER/team/quinistry:v1' <<<wonderland 2>&1 >/dev/null | grep -q ': 0 blobs uploaded'"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$BEARER" "$(printf alice:wonderland | base64)" >"$Q_TMP/dockercfg/config.json"
check "bearer: crane sees the same content" env DOCKER_CONFIG="$Q_TMP/dockercfg" bash -c "$(declare -f same_content); WANT=$WANT ORIGIN=$ORIGIN same_content '$BEARER/team/quinistry:v1'"
check "bearer: skopeo sees the same list digest" [ "$(skopeo_digest "$BEARER/team/quinistry:v1" --creds alice:wonderland)" == "$WANT" ]
check "bearer: wrong password fails with one line" one_clean_line "credentials rejected" \
  bash -c "'$Q' push --insecure --username alice --password-stdin '$BEARER/team/wrong:v1' <<<nope"
check "bearer: the failed push left no tag" \
  bash -c "! DOCKER_CONFIG='$Q_TMP/dockercfg' crane digest --insecure '$BEARER/team/wrong:v1' 2>/dev/null"

# --- bad input
check "bad input: malformed reference" one_clean_line 'invalid reference "127.0.0.1:1/Team/Q"' "$Q" push --insecure 127.0.0.1:1/Team/Q
check "bad input: unreachable registry" one_clean_line "cannot reach 127.0.0.1:1: connection refused" "$Q" push --insecure 127.0.0.1:1/q:v1
check "bad input: plain HTTP without --insecure" one_clean_line "speaks plain HTTP (use --insecure)" "$Q" push "$OPEN/q:v1"
check "bad input: a registry that refuses blobs (quinistry is read-only)" one_clean_line "405 Method Not Allowed" \
  "$Q" push --insecure "$ORIGIN/elsewhere:latest"
check "bad input: a registry that refuses manifests (quinistry is read-only; it has every blob)" \
  bash -c "'$Q' push --insecure '$ORIGIN/quinistry:latest' 2>&1 >/dev/null | tail -1 | grep -q 'registry refused the linux/amd64 manifest (application/vnd.docker.distribution.manifest.v2+json): 405 Method Not Allowed'"
check "bad input: export to a full disk" one_clean_line "cannot write /dev/full: no space left on device" "$Q" export --tar /dev/full
check "bad input: export with no destination" one_clean_line "give --oci-layout DIR or --tar FILE" "$Q" export

# --- export, docker load, parent and child
check "export: prints the served list digest" [ "$("$Q" export --tar "$Q_TMP/q.tar" 2>/dev/null)" == "$WANT" ]
"$Q" export --tar "$Q_TMP/q2.tar" 2>/dev/null >/dev/null
check "export: a second export is byte for byte the same" cmp "$Q_TMP/q.tar" "$Q_TMP/q2.tar"
check "export: --oci-layout holds the same files as the tar" bash -c \
  "'$Q' export --oci-layout '$Q_TMP/layout' >/dev/null 2>&1 && mkdir '$Q_TMP/untar' && tar -xf '$Q_TMP/q.tar' -C '$Q_TMP/untar' && diff -r '$Q_TMP/layout' '$Q_TMP/untar'"
check "export: skopeo reads an OCI-format layout's index" bash -c \
  "[ \"\$('$Q' export --format oci --oci-layout '$Q_TMP/oci-layout' 2>/dev/null)\" == sha256:\$(skopeo inspect --raw 'oci:$Q_TMP/oci-layout:latest' | sha256sum | cut -d' ' -f1) ]"

dockerd_start "$Q_TMP/docker"
check "docker load names the export quinistry:latest" bash -c "'$DOCKER' load -i '$Q_TMP/q.tar' | grep -qx 'Loaded image: quinistry:latest'"
# free_or PORT: PORT when nothing listens there, else a free port.
free_or() { if curl -s -o /dev/null "http://127.0.0.1:$1/"; then "$REGAUTH" port; else echo "$1"; fi; }
# gen_wait PORT: the list digest served on PORT once it answers.
gen_wait() {
  local i d
  for ((i = 0; i < 100; i++)); do
    d=$(q_list_digest "127.0.0.1:$1" 2>/dev/null || true)
    [[ -n $d ]] && { echo "$d"; return 0; }
    sleep 0.1
  done
  return 1
}
P1=$(free_or 5000)
"$DOCKER" run -d --name gen1 --network=host quinistry:latest --addr "127.0.0.1:$P1" >/dev/null
check "generation 1 (docker load, port $P1) serves the same list digest" [ "$(gen_wait "$P1")" == "$WANT" ]
P2=$(free_or 5001)
check "generation 2 pulled from localhost:$P1" bash -c "'$DOCKER' pull -q 'localhost:$P1/quinistry:latest' >/dev/null"
"$DOCKER" run -d --name gen2 --network=host "localhost:$P1/quinistry:latest" --addr "127.0.0.1:$P2" >/dev/null
check "generation 2 (port $P2) serves the same list digest" [ "$(gen_wait "$P2")" == "$WANT" ]
check "generation 3 pulled from localhost:$P2" bash -c "'$DOCKER' pull -q 'localhost:$P2/quinistry:latest' >/dev/null"
check "generation 3's repo digest is the same list digest" bash -c \
  "'$DOCKER' image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' 'localhost:$P2/quinistry:latest' | grep -qx 'localhost:$P2/quinistry@$WANT'"
P3=$("$REGAUTH" port)
"$DOCKER" run -d --name gen3 --network=host "localhost:$P2/quinistry:latest" --addr "127.0.0.1:$P3" >/dev/null
check "generation 3 (port $P3) serves the same list digest" [ "$(gen_wait "$P3")" == "$WANT" ]

# --- an OCI-format image, exported or pushed, then loaded or pulled and run with no flag but the
# address, serves the digest that was exported or pushed: the image carries its format.
OCI_EXPORTED=$("$Q" export --format oci --tag oci --tar "$Q_TMP/oci.tar" 2>/dev/null)
check "oci export: docker load names it quinistry:oci" bash -c "'$DOCKER' load -i '$Q_TMP/oci.tar' | grep -qx 'Loaded image: quinistry:oci'"
P4=$("$REGAUTH" port)
"$DOCKER" run -d --name oci-loaded --network=host --read-only --user 65532 quinistry:oci --addr "127.0.0.1:$P4" >/dev/null
check "oci export: the loaded image, run plainly, serves the exported OCI index $OCI_EXPORTED" \
  [ "$(gen_wait "$P4")" == "$OCI_EXPORTED" ]
OCI_PUSHED=$("$Q" push --insecure --format oci "$OPEN/team/quinistry:oci-run" 2>/dev/null)
check "oci push: docker pull of the pushed OCI image" bash -c "'$DOCKER' pull -q '$OPEN/team/quinistry:oci-run' >/dev/null"
P5=$("$REGAUTH" port)
"$DOCKER" run -d --name oci-pulled --network=host --read-only --user 65532 "$OPEN/team/quinistry:oci-run" --addr "127.0.0.1:$P5" >/dev/null
check "oci push: the pulled image, run plainly, serves the pushed OCI index $OCI_PUSHED" \
  [ "$(gen_wait "$P5")" == "$OCI_PUSHED" -a "$OCI_PUSHED" == "$OCI_EXPORTED" ]

checks_done e2e-travel
