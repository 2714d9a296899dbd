#!/usr/bin/env bash
# e2e-travel.sh: quinistry leaves the machine it runs on. It pushes itself to the CNCF registry (v3.1.2,
# filesystem storage in a temp dir) open, behind htpasswd basic auth, behind bearer tokens (issued by
# deploy/internal/regauth) and over TLS with a private CA made here (--ca-file), and crane and skopeo see
# there the very list, manifests and blobs quinistry serves (for --format oci, the list quinistry itself
# serves in that format, with OCI media types only); a second push uploads no blob; wrong credentials
# fail with one line and leave no tag (404 MANIFEST_UNKNOWN). It exports itself (also to standard
# output) as a tar that docker load names quinistry:latest and ctr images import names
# docker.io/library/quinistry:latest; builds of a copy of the tree serve their commit and their
# release tag as tags; and it runs the parent/child flow in a private dockerd on a bridge of its own:
# each generation started with docker run -d -p 127.0.0.1:PORT:8080 (free ports) and nothing else,
# generation 2 pulled from generation 1, generation 3 from generation 2, one list digest throughout.
# Also the deploy/ manifests' test, bad input (one clear line and a non-zero exit), and a final check
# that nothing it started is left. Needs scripts/install-tools.sh to have run (and ss, ip, ctr).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
source scripts/lib/dockerd.sh
source scripts/lib/registry.sh
PIDS=()
cleanup() {
  q_stop_all
  if [[ -n ${DOCKER_HOST:-} ]]; then dockerd_stop "$Q_TMP/docker"; fi
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n ${BR:-} ]] && ip link del "$BR" 2>/dev/null
  rm -rf "$Q_TMP"
  return 0
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
# 4 image blobs (2 configs, 2 layers) and the SBOMs' 3 (the empty config, one document per platform)
check "open: first push uploads every blob, the SBOMs' included" uploaded 7
check "open: crane sees the same list, manifests and blobs" same_content "$OPEN/team/quinistry:v1"
check "open: skopeo sees the same list digest" [ "$(skopeo_digest "$OPEN/team/quinistry:v1")" == "$WANT" ]
check "open: second push succeeds" qpush --insecure "$OPEN/team/quinistry:v1"
check "open: second push uploads no blob" uploaded 0
check "open: push with --mount-from" qpush --insecure --mount-from team/quinistry "$OPEN/other/quinistry:v1"
check "open: --mount-from mounts every blob" grep -q ": 0 blobs uploaded (0 bytes), 7 mounted" "$Q_TMP/push.err"
q_start origin-oci "$Q" --addr 127.0.0.1:0 --format oci
WANT_OCI=$(q_list_digest "${Q_ADDR[origin-oci]}")
check "quinistry --format oci serves another list ($WANT_OCI)" [ -n "$WANT_OCI" -a "$WANT_OCI" != "$WANT" ]
check "open: --format oci push prints the list quinistry serves with --format oci" \
  eval '[ "$("$Q" push --insecure --format oci "$OPEN/team/quinistry:oci" 2>/dev/null)" == "$WANT_OCI" ]'
check "open: the registry holds that list under the tag" [ "$(crane digest --insecure "$OPEN/team/quinistry:oci")" == "$WANT_OCI" ]
# media_types REF: the media types the registry stored: the list's, then each manifest's, config's and layers'.
media_types() {
  local ref=$1 repo=${1%:*} d
  crane manifest --insecure "$ref" | jq -r .mediaType
  for d in $(crane manifest --insecure "$ref" | jq -r '.manifests[].digest'); do
    crane manifest --insecure "$repo@$d" | jq -r '.mediaType, .config.mediaType, .layers[].mediaType'
  done
}
media_types "$OPEN/team/quinistry:oci" | sort | uniq -c >"$Q_TMP/oci.types" || true
check "open: the OCI push stored only OCI media types ($(awk '{printf "%s×%s ", $1, $2}' "$Q_TMP/oci.types"))" \
  eval '! grep -v -e " application/vnd.oci.image.index.v1+json$" -e " application/vnd.oci.image.manifest.v1+json$" -e " application/vnd.oci.image.config.v1+json$" -e " application/vnd.oci.image.layer.v1.tar+gzip$" "$Q_TMP/oci.types" && grep -q " application/vnd.oci.image.index.v1+json$" "$Q_TMP/oci.types"'
check "open: the registry answers the OCI tag with Content-Type application/vnd.oci.image.index.v1+json" \
  grep -qix 'content-type: application/vnd.oci.image.index.v1+json' <(curl -fsSI -H "Accept: $LIST_ACCEPT" "http://$OPEN/v2/team/quinistry/manifests/oci" | tr -d '\r')
media_types "$OPEN/team/quinistry:v1" | sort | uniq -c >"$Q_TMP/docker.types" || true
check "open: the default push stored only Docker media types ($(awk '{printf "%s×%s ", $1, $2}' "$Q_TMP/docker.types"))" \
  eval '! grep -v -e " application/vnd.docker.distribution.manifest.list.v2+json$" -e " application/vnd.docker.distribution.manifest.v2+json$" -e " application/vnd.docker.container.image.v1+json$" -e " application/vnd.docker.image.rootfs.diff.tar.gzip$" "$Q_TMP/docker.types" && grep -q manifest.list "$Q_TMP/docker.types"'

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
for ((i = 0; i < 100; i++)); do grep -qs ready "$Q_TMP/issuer/log" && break; sleep 0.1; done
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
# bearer_get PATH: status and first error code of an authorized GET on the bearer registry.
bearer_get() {
  local token
  token=$(curl -fsS -u alice:wonderland "http://localhost:${ISSUER##*:}/token?service=quinistry-e2e&scope=repository:team/wrong:pull" | jq -r '.token // .access_token')
  curl -sS -o "$Q_TMP/bearer.body" -w '%{http_code}' -H "Authorization: Bearer $token" -H "Accept: $LIST_ACCEPT" "http://$BEARER$1"
  echo " $(jq -r '.errors[0].code' "$Q_TMP/bearer.body" 2>/dev/null)"
}
got=$(bearer_get /v2/team/wrong/manifests/v1)
check "bearer: the failed push left no tag (an authorized GET gets $got)" [ "$got" == "404 MANIFEST_UNKNOWN" ]

# --- a registry over TLS with a private CA (made here, now): push --ca-file
pki=$Q_TMP/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=quinistry e2e CA $$" \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$pki/tls.key" -out "$pki/tls.csr" 2>/dev/null
openssl x509 -req -in "$pki/tls.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 1 \
  -extfile <(printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n') -out "$pki/tls.crt" 2>/dev/null
reg_start tls "  tls:
    certificate: $pki/tls.crt
    key: $pki/tls.key" https
TLSREG=$REG
check "tls: push --ca-file with the private CA succeeds" qpush --ca-file "$pki/ca.pem" "$TLSREG/team/quinistry:v1"
check "tls: pushed the served list digest" [ "$PUSHED" == "$WANT" ]
check "tls: crane (trusting the CA) sees the same list digest" \
  eval '[ "$(SSL_CERT_FILE="$pki/ca.pem" crane digest "$TLSREG/team/quinistry:v1")" == "$WANT" ]'
check "tls: without --ca-file the push fails with one line (unknown authority)" one_clean_line "certificate signed by unknown authority" \
  "$Q" push "$TLSREG/team/untrusted:v1"

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

check "export: --tar - writes the same tar to standard output, and nothing else" \
  eval '"$Q" export --tar - >"$Q_TMP/stdout.tar" 2>/dev/null && cmp "$Q_TMP/q.tar" "$Q_TMP/stdout.tar"'
check "export: an unknown --platform is one line and exit 2" \
  eval 'out=$("$Q" export --tar "$Q_TMP/never.tar" --platforms linux/amd64 --platform linux/arm64 2>&1 >/dev/null); st=$?; [[ $st == 2 && $(wc -l <<<"$out") == 1 && $out == "quinistry: export: --platform linux/arm64: the image has no such platform (it has linux/amd64)" && ! -e $Q_TMP/never.tar ]] || { echo "  exit $st: $out"; false; }'

# --- the build's version is served as a tag. A copy of this tree is committed, then tagged, in a
# git repository of its own (a worktree or a dirty tree gives no stable VCS stamp), and built as
# build.sh builds: untagged, the tag is the commit's short revision; tagged v0.99.1, it is v0.99.1.
vrepo=$Q_TMP/vrepo
mkdir -p "$vrepo"
git ls-files -z --cached --others --exclude-standard |
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$vrepo"
(cd "$vrepo" && git init -q && git add -A && git -c user.name=e2e -c user.email=e2e@quinistry.invalid \
  commit -qm e2e --date=2026-11-27T12:00:00Z) >/dev/null
# version_tag_served DIR WANT: quinistry built in DIR lists the tag WANT beside latest, and serves
# its list under it.
version_tag_served() {
  local tags by_tag list
  (cd "$1" && DIST=$Q_TMP/vdist PLATFORMS=linux/amd64 scripts/build.sh) >/dev/null 2>&1 || { echo "  build failed"; return 1; }
  q_start version "$Q_TMP/vdist/quinistry-linux-amd64" --addr 127.0.0.1:0 || return 1
  tags=$(curl -fsS "http://${Q_ADDR[version]}/v2/quinistry/tags/list" | jq -c .tags)
  by_tag=$(curl -fsSI -H "Accept: $LIST_ACCEPT" "http://${Q_ADDR[version]}/v2/quinistry/manifests/$2" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
  list=$(q_list_digest "${Q_ADDR[version]}")
  q_stop version
  echo "  tags $tags; $2 names ${by_tag:-nothing}; latest names $list"
  [[ $tags == "[\"$2\",\"latest\"]" || $tags == "[\"latest\",\"$2\"]" ]] && [[ -n $list && $by_tag == "$list" ]]
}
rev=$(git -C "$vrepo" rev-parse HEAD)
check "version: a build of commit ${rev:0:12} serves tag ${rev:0:12} for its list" version_tag_served "$vrepo" "${rev:0:12}"
git -C "$vrepo" tag v0.99.1
check "version: a build of tag v0.99.1 serves tag v0.99.1 for its list" version_tag_served "$vrepo" v0.99.1

# --- a private dockerd on a bridge of its own, so that -p publishes ports for real (docker-proxy into
# the container's network namespace). Name and subnet are unique to this run.
BR=qtrv$$
for ((i = 0; i < 50; i++)); do
  SUBNET=10.$((RANDOM % 100 + 150)).$((RANDOM % 250 + 1))
  ip route | grep -q "^${SUBNET//./\\.}\." || break
done
ip link add "$BR" type bridge
ip addr add "$SUBNET.1/24" dev "$BR"
ip link set "$BR" up
DOCKERD_BRIDGE=$BR dockerd_start "$Q_TMP/docker"
check "docker load names the export quinistry:latest" bash -c "'$DOCKER' load -i '$Q_TMP/q.tar' | grep -qx 'Loaded image: quinistry:latest'"

# containerd (the daemon's own, in a namespace of this run) imports the export by the names in its
# index.json, every platform.
CTR_NS=quinistry-e2e-$$
CTR_SOCK=$(find "$Q_TMP/docker/exec" -name containerd.sock -type s 2>/dev/null | head -1)
ctr_() { ctr --address "$CTR_SOCK" --namespace "$CTR_NS" "$@"; }
check "containerd: ctr images import reads the export ($CTR_SOCK)" \
  eval 'ctr_ images import --all-platforms --no-unpack "$Q_TMP/q.tar" >"$Q_TMP/ctr.out" 2>&1 || { cat "$Q_TMP/ctr.out"; false; }'
# columns: REF TYPE DIGEST SIZE (a number and a unit) PLATFORMS LABELS
ctr_ images ls 2>/dev/null | awk 'NR > 1 {print $1, $3, $6}' >"$Q_TMP/ctr.images"
check "containerd: the import is named docker.io/library/quinistry:latest with the list digest, both platforms ($(cat "$Q_TMP/ctr.images"))" \
  [ "$(cat "$Q_TMP/ctr.images")" == "docker.io/library/quinistry:latest $WANT linux/amd64,linux/arm64/v8" ]
check "containerd: the host platform's manifest, config and layers are all there ($(ctr_ images check 2>/dev/null | awk 'NR > 1 {print $4, $5}'))" \
  eval '[ "$(ctr_ images check 2>/dev/null | awk "NR > 1 {print \$4}")" == complete ]'

# wait_list ADDR: the list digest served at ADDR once it answers (at most 30 s).
wait_list() {
  local i d
  for ((i = 0; i < 300; i++)); do
    d=$(q_list_digest "$1" 2>/dev/null || true)
    [[ -n $d ]] && { echo "$d"; return 0; }
    sleep 0.1
  done
  return 1
}
# run_gen NAME PORT IMAGE: docker run -d -p 127.0.0.1:PORT:8080 IMAGE, as the README says, and nothing
# else: the image's own entrypoint and default :8080. Checks the run and that the container runs.
run_gen() {
  local id
  id=$("$DOCKER" run -d --name "$1" -p "127.0.0.1:$2:8080" "$3" 2>"$Q_TMP/$1.run") || { echo "  docker run: $(cat "$Q_TMP/$1.run")"; return 1; }
  [[ $id =~ ^[0-9a-f]{64}$ ]] || { echo "  docker run printed '$id'"; return 1; }
  [[ $("$DOCKER" inspect -f '{{.State.Running}} {{.NetworkSettings.IPAddress}}' "$id") == "true $SUBNET."* ]] ||
    { echo "  $("$DOCKER" inspect -f '{{.State.Status}} {{.NetworkSettings.IPAddress}}' "$id"); $("$DOCKER" logs "$id" 2>&1 | tail -3)"; return 1; }
}
# free_port: a port nothing listens on, from the kernel.
free_port() { "$REGAUTH" port; }
P1=$(free_port)
check "generation 1: docker run -d -p 127.0.0.1:$P1:8080 quinistry:latest starts a running container on $BR" run_gen gen1 "$P1" quinistry:latest
check "generation 1 (docker load, published on $P1) serves the same list digest" [ "$(wait_list "127.0.0.1:$P1")" == "$WANT" ]
# quinistry serves before it logs its ready line, and flushes its log every 100 ms: allow 2 s
check "generation 1 logs that it listens on :8080 inside its container" \
  bash -c "for i in {1..20}; do '$DOCKER' logs gen1 2>&1 | grep -q 'msg=ready addr=\[::\]:8080' && exit 0; sleep 0.1; done; exit 1"
P2=$(free_port)
check "generation 2 pulled from localhost:$P1" bash -c "'$DOCKER' pull -q 'localhost:$P1/quinistry:latest' >/dev/null"
check "generation 2: docker run -d -p 127.0.0.1:$P2:8080 localhost:$P1/quinistry:latest" run_gen gen2 "$P2" "localhost:$P1/quinistry:latest"
check "generation 2 (published on $P2) serves the same list digest" [ "$(wait_list "127.0.0.1:$P2")" == "$WANT" ]
check "generation 3 pulled from localhost:$P2" bash -c "'$DOCKER' pull -q 'localhost:$P2/quinistry:latest' >/dev/null"
check "generation 3's repo digest is the same list digest" bash -c \
  "'$DOCKER' image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' 'localhost:$P2/quinistry:latest' | grep -qx 'localhost:$P2/quinistry@$WANT'"
P3=$(free_port)
check "generation 3: docker run -d -p 127.0.0.1:$P3:8080 localhost:$P2/quinistry:latest" run_gen gen3 "$P3" "localhost:$P2/quinistry:latest"
check "generation 3 (published on $P3) serves the same list digest" [ "$(wait_list "127.0.0.1:$P3")" == "$WANT" ]
check "bad input: docker run -d of an image that is not there fails, and says so" \
  eval '! "$DOCKER" run -d --name nogen "localhost:$P3/quinistry:nope" >/dev/null 2>"$Q_TMP/nogen.err" && grep -q "manifest unknown" "$Q_TMP/nogen.err"'

# --- an OCI-format image, exported or pushed, then loaded or pulled and run with no flag at all,
# serves the digest that was exported or pushed: the image carries its format.
OCI_EXPORTED=$("$Q" export --format oci --tag oci --tar "$Q_TMP/oci.tar" 2>/dev/null)
check "oci export: docker load names it quinistry:oci" bash -c "'$DOCKER' load -i '$Q_TMP/oci.tar' | grep -qx 'Loaded image: quinistry:oci'"
P4=$(free_port)
check "oci export: docker run -d -p 127.0.0.1:$P4:8080 quinistry:oci" run_gen oci-loaded "$P4" quinistry:oci
check "oci export: the loaded image, run plainly, serves the exported OCI index $OCI_EXPORTED" \
  [ "$(wait_list "127.0.0.1:$P4")" == "$OCI_EXPORTED" ]
OCI_PUSHED=$("$Q" push --insecure --format oci "$OPEN/team/quinistry:oci-run" 2>/dev/null)
check "oci push: the pushed digest is the exported one ($OCI_PUSHED)" [ "$OCI_PUSHED" == "$OCI_EXPORTED" ]
check "oci push: docker pull of the pushed OCI image" bash -c "'$DOCKER' pull -q '$OPEN/team/quinistry:oci-run' >/dev/null"
P5=$(free_port)
check "oci push: docker run -d -p 127.0.0.1:$P5:8080 $OPEN/team/quinistry:oci-run" run_gen oci-pulled "$P5" "$OPEN/team/quinistry:oci-run"
check "oci push: the pulled image, run plainly, serves the pushed OCI index $OCI_PUSHED" \
  [ "$(wait_list "127.0.0.1:$P5")" == "$OCI_PUSHED" ]

# --- clean up, and check that nothing is left
cleanup
trap - EXIT
check "cleanup: no process started here is left ($(pgrep -f -- "$Q_TMP" | wc -l) naming the temp dir, $(pgrep -fc -- "docker-proxy .*-host-port ($P1|$P2|$P3|$P4|$P5) " || true) docker-proxy)" \
  eval '! pgrep -f -- "$Q_TMP" >/dev/null && ! pgrep -f -- "docker-proxy .*-host-port ($P1|$P2|$P3|$P4|$P5) " >/dev/null'
check "cleanup: bridge $BR and its subnet $SUBNET.0/24 are gone" eval '! ip link show "$BR" >/dev/null 2>&1 && ! ip route | grep -q "^$SUBNET\."'
check "cleanup: no mount under the temp dir, and the temp dir is gone" eval '! grep -qF "$Q_TMP" /proc/self/mountinfo && [ ! -e "$Q_TMP" ]'
check "cleanup: nothing listens on the generations' ports" eval '! ss -Hltn | grep -qE ":($P1|$P2|$P3|$P4|$P5) "'

checks_done e2e-travel
