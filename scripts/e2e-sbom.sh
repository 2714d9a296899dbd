#!/usr/bin/env bash
# e2e-sbom.sh: quinistry knows itself. In both formats it serves one SPDX 2.3 SBOM per platform image as an
# OCI 1.1 referrer of that image's manifest, and real clients agree:
#   - syft (scanning registry:HOST:PORT/quinistry:latest per platform) finds the same Go modules and versions;
#   - oras discover/pull and regctl artifact list/get list one SPDX artifact per platform, filter by
#     artifact type, and fetch a document that tools-golang reads back as SPDX 2.3;
#   - the OCI conformance suite's referrers tests (OCI_RO_DATA_REFERRERS) pass;
#   - after quinistry push to the CNCF registry v3.1.2, oras discover there lists the same artifacts, and
#     oras finds them in quinistry export's OCI layout;
#   - generation 2 (amd64 natively, arm64 under qemu), started as the image says, serves the same referrers;
#   - the HTML page at / renders in headless chromium with no console error and no request leaving the
#     origin, showing every platform digest and the pull line (screenshot kept in results/e2e-sbom/).
# Needs scripts/install-tools.sh (which runs scripts/install-sbom.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
chmod 0711 "$Q_TMP" # generation 2 runs as the image's user, 65532
source scripts/lib/quinistry.sh
source scripts/lib/registry.sh
OUT=$ROOT/results/e2e-sbom
PIDS=()
cleanup() {
  q_stop_all
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$Q_TMP"
}
trap cleanup EXIT

for tool in syft oras regctl registry conformance.test chromium; do
  command -v "$tool" >/dev/null || { echo "e2e-sbom: no $tool: run scripts/install-tools.sh" >&2; exit 1; }
done
echo "syft $(go version -m "$(command -v syft)" | awk '$1=="mod"{print $3}'), oras $(oras version | awk '/^Version:/{print $2}'), regctl $(regctl version --format '{{.VCSTag}}'), $(chromium --version 2>/dev/null)"
scripts/build.sh >/dev/null
AMD64=$ROOT/dist/quinistry-linux-amd64
(cd deploy && go build -o "$Q_TMP/regauth" ./internal/regauth)
REGAUTH=$Q_TMP/regauth
rm -rf "$OUT" && mkdir -p "$OUT"
# The clients keep their settings and caches under the temp dir (HOME and the XDG dirs stay: go test
# needs its build cache).
export SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true SYFT_CACHE_DIR=$Q_TMP/syft-cache \
  REGCTL_CONFIG=$Q_TMP/regctl.json DOCKER_CONFIG=$Q_TMP/docker
SPDX=application/spdx+json
ACCEPT_ALL="$LIST_ACCEPT"
# jqe ARGS...: jq -e, quietly (a check's verdict is its exit status).
jqe() { jq -e "$@" >/dev/null; }

# platform_digest ADDR ARCH: the platform manifest digest the list names for linux/ARCH.
platform_digest() {
  curl -fsS -H "Accept: $ACCEPT_ALL" "http://$1/v2/quinistry/manifests/latest" |
    jq -r --arg a "$2" '.manifests[] | select(.platform.architecture == $a) | .digest'
}
# referrers ADDR DIGEST [QUERY]: the referrers index body.
referrers() { curl -fsS "http://$1/v2/quinistry/referrers/$2${3:-}"; }
# sbom_doc ADDR SUBJECT: the SPDX document the subject's referrer holds.
sbom_doc() {
  local m
  m=$(referrers "$1" "$2" | jq -r '.manifests[0].digest')
  curl -fsS "http://$1/v2/quinistry/blobs/$(curl -fsS "http://$1/v2/quinistry/manifests/$m" | jq -r '.layers[0].digest')"
}
# our_modules FILE: name@version of every Go module package in an SPDX document (deps, main, stdlib).
our_modules() { jq -r '.packages[] | select(.SPDXID | startswith("SPDXRef-Package-go-")) | .name + "@" + .versionInfo' "$1" | sort -u; }
# syft_modules FILE: name@version of every go-module package in syft's JSON. syft writes UNKNOWN where the
# build information says (devel) (a main module built with no VCS stamp); both mean "no version".
syft_modules() { jq -r '.artifacts[] | select(.type == "go-module") | .name + "@" + (.version | sub("^UNKNOWN$"; "(devel)"))' "$1" | sort -u; }
# same_sets A B: the two files hold the same lines; prints the difference when not.
same_sets() { diff <(sort -u "$1") <(sort -u "$2") >"$Q_TMP/diff" || { sed 's/^/  /' "$Q_TMP/diff"; return 1; }; }
# readback FILES...: tools-golang reads every file back as valid SPDX 2.3 (sbom package test).
readback() { SBOM_READBACK_FILES="$*" go test -count=1 -run TestReadBackFiles -v ./sbom >"$Q_TMP/readback" 2>&1 || { tail -20 "$Q_TMP/readback"; return 1; }; grep -c ': SPDX-2.3,' "$Q_TMP/readback" | grep -qx "$#"; }

# conformance NAME ADDR MANIFESTS BLOBS REFERRERS: the OCI conformance suite, pull and referrers, read-only.
# It prints a summary and then panics at this version (see registry-facts.md): judge by the summary.
conformance() {
  local name=$1 addr=$2 dir=$Q_TMP/conformance-$1 out result counts
  set -- "$1" "$2" "$(xargs <<<"$3")" "$(xargs <<<"$4")" "$(xargs <<<"$5")" # one space between digests
  mkdir -p "$dir"
  out=$dir/output.txt
  (cd "$dir" && env OCI_REGISTRY="$addr" OCI_TLS=disabled OCI_REPO1=quinistry OCI_REPO2=quinistry \
    OCI_API_PULL=true OCI_API_PUSH=false OCI_API_BLOBS_DELETE=false OCI_API_MANIFESTS_DELETE=false \
    OCI_API_TAGS_DELETE=false OCI_API_TAGS_LIST=true OCI_API_REFERRER=true \
    OCI_RO_DATA_TAGS=latest OCI_RO_DATA_MANIFESTS="$3" OCI_RO_DATA_BLOBS="$4" OCI_RO_DATA_REFERRERS="$5" \
    timeout 300 conformance.test >"$out" 2>&1) || true
  result=$(sed -n 's/^OCI Conformance Result: *//p' "$out")
  counts=$(sed -n '/^OCI Conformance Result:/,/^$/s/^  \([A-Za-z]*\)\.*: *\([0-9]*\)$/\1=\2/p' "$out" | tr '\n' ' ')
  echo "  conformance/$name: ${result:-no summary} ${counts% }; referrers tests: $(grep -c 'referrers' "$out" || true) lines"
  cp "$out" "$OUT/conformance-$name.txt"
  [[ $result == Pass ]] && [[ $counts == *"FAIL=0"* ]] && [[ $counts == *"Error=0"* ]] && grep -q 'referrers' "$out" ||
    { grep -E ': (FAIL|Error)$' "$out" | head | sed 's/^ */  /'; return 1; }
}

declare -A SBOMS=()   # format/arch -> artifact manifest digest (generation 1)
for format in docker oci; do
  echo "--- format $format"
  q_start gen1-$format "$AMD64" --addr 127.0.0.1:0 --format $format
  addr=${Q_ADDR[gen1-$format]}
  list=$(q_list_digest "$addr")
  manifests=$list blobs="" subjects=""

  for arch in amd64 arm64; do
    d=$(platform_digest "$addr" $arch)
    subjects+=" $d"
    idx=$(referrers "$addr" "$d")
    n=$(jq '.manifests | length' <<<"$idx")
    art=$(jq -r '.manifests[0].digest' <<<"$idx")
    SBOMS[$format/$arch]=$art
    check "$format/$arch: referrers of $d list 1 artifact ($art)" [ "$n" == 1 ]
    check "$format/$arch: it is $SPDX with its platform and created annotations" \
      jqe --arg p linux/$arch '.manifests[0] | .artifactType == "application/spdx+json" and .annotations["io.github.quinistry.sbom.platform"] == $p and (.annotations["org.opencontainers.image.created"] | length > 0)' <<<"$idx"
    check "$format/$arch: ?artifactType=$SPDX keeps it and sets OCI-Filters-Applied" bash -c \
      "curl -fsS -D '$Q_TMP/h' 'http://$addr/v2/quinistry/referrers/$d?artifactType=application%2Fspdx%2Bjson' | jq -e '.manifests | length == 1' >/dev/null && grep -qi '^OCI-Filters-Applied: artifactType' '$Q_TMP/h'"
    check "$format/$arch: ?artifactType=application/vnd.cyclonedx+json lists none" \
      jqe '.manifests == []' <(referrers "$addr" "$d" '?artifactType=application%2Fvnd.cyclonedx%2Bjson')
    m=$(curl -fsS "http://$addr/v2/quinistry/manifests/$art")
    check "$format/$arch: the artifact manifest's subject is $d, its config the empty one" \
      jqe --arg d "$d" '.subject.digest == $d and .config.mediaType == "application/vnd.oci.empty.v1+json" and .config.size == 2' <<<"$m"
    manifests+=" $d $art"
    blobs+=" $(jq -r '.config.digest, .layers[].digest' <<<"$m" | tr '\n' ' ')"
    sbom_doc "$addr" "$d" >"$Q_TMP/ours-$format-$arch.json"
    cp "$Q_TMP/ours-$format-$arch.json" "$OUT/quinistry-linux-$arch-$format.spdx.json"
    check "$format/$arch: quinistry sbom --platform linux/$arch prints the served document" \
      cmp -s "$Q_TMP/ours-$format-$arch.json" <("$AMD64" sbom --format $format --platform linux/$arch 2>/dev/null)

    # syft, from the registry, for this platform
    syft scan -q "registry:$addr/quinistry:latest" --platform linux/$arch -o "syft-json=$Q_TMP/syft-$format-$arch.json" 2>"$Q_TMP/syft.err" || cat "$Q_TMP/syft.err"
    our_modules "$Q_TMP/ours-$format-$arch.json" >"$Q_TMP/ours-$format-$arch.mods"
    syft_modules "$Q_TMP/syft-$format-$arch.json" >"$Q_TMP/syft-$format-$arch.mods"
    check "$format/$arch: syft finds the same Go modules and versions as our SBOM ($(paste -sd' ' "$Q_TMP/ours-$format-$arch.mods"))" \
      same_sets "$Q_TMP/ours-$format-$arch.mods" "$Q_TMP/syft-$format-$arch.mods"
  done
  check "$format: the list has no referrers and an unknown subject gets an empty index" bash -c \
    "[ \"\$(curl -fsS http://$addr/v2/quinistry/referrers/$list | jq -c .manifests)\" == '[]' ] && [ \"\$(curl -fsS http://$addr/v2/quinistry/referrers/sha256:$(printf x | sha256sum | cut -d' ' -f1) | jq -c .manifests)\" == '[]' ]"

  # oras and regctl
  for arch in amd64 arm64; do
    art=${SBOMS[$format/$arch]}
    oras discover --plain-http --platform linux/$arch --format json "$addr/quinistry:latest" >"$Q_TMP/oras.json" 2>"$Q_TMP/oras.err" || cat "$Q_TMP/oras.err"
    check "$format/$arch: oras discover --platform linux/$arch lists $art" \
      jqe --arg a "$art" '[.. | objects | select(.artifactType? == "application/spdx+json") | .digest] == [$a]' "$Q_TMP/oras.json"
    check "$format/$arch: oras discover --artifact-type $SPDX selects it, another type nothing" bash -c \
      "oras discover --plain-http --platform linux/$arch --artifact-type $SPDX --format json '$addr/quinistry:latest' | jq -e --arg a $art '[.. | objects | select(.artifactType? == \"$SPDX\") | .digest] == [\$a]' >/dev/null &&
       oras discover --plain-http --platform linux/$arch --artifact-type application/vnd.cyclonedx+json --format json '$addr/quinistry:latest' | jq -e '[.. | objects | select(.artifactType? != null)] == []' >/dev/null"
    mkdir -p "$Q_TMP/oras-$format-$arch"
    check "$format/$arch: oras pull fetches quinistry-linux-$arch.spdx.json" bash -c \
      "cd '$Q_TMP/oras-$format-$arch' && oras pull --plain-http '$addr/quinistry@$art' >/dev/null && cmp -s quinistry-linux-$arch.spdx.json '$Q_TMP/ours-$format-$arch.json'"
  done
  regctl registry set --tls disabled "$addr" >/dev/null 2>&1
  for arch in amd64 arm64; do
    art=${SBOMS[$format/$arch]}
    d=$(platform_digest "$addr" $arch)
    check "$format/$arch: regctl artifact list --platform linux/$arch lists $art" bash -c \
      "regctl artifact list --platform linux/$arch --format '{{json .}}' '$addr/quinistry:latest' | jq -e --arg a $art '[.descriptors[].digest] == [\$a]' >/dev/null"
    check "$format/$arch: regctl artifact list --filter-artifact-type selects it, another type nothing" bash -c \
      "regctl artifact list --filter-artifact-type $SPDX --format '{{json .}}' '$addr/quinistry@$d' | jq -e '.descriptors | length == 1' >/dev/null &&
       regctl artifact list --filter-artifact-type application/vnd.cyclonedx+json --format '{{json .}}' '$addr/quinistry@$d' | jq -e '.descriptors == []' >/dev/null"
    check "$format/$arch: regctl artifact get --subject fetches the document" bash -c \
      "regctl artifact get --subject '$addr/quinistry@$d' --filter-artifact-type $SPDX >'$Q_TMP/regctl-$format-$arch.json' && cmp -s '$Q_TMP/regctl-$format-$arch.json' '$Q_TMP/ours-$format-$arch.json'"
  done
  check "$format: tools-golang reads back the documents oras and regctl fetched as SPDX 2.3" \
    readback "$Q_TMP"/oras-$format-*/*.spdx.json "$Q_TMP"/regctl-$format-*.json

  check "$format: OCI conformance suite, pull and referrers (OCI_RO_DATA_REFERRERS=$subjects), all green" \
    conformance "$format" "$addr" "$manifests" "$blobs" "$subjects"

  # generation 2, started as a container runtime would (q_start_image: Entrypoint + Cmd, the config's Env
  # and user, and a listen address), arm64 under qemu
  for arch in amd64 arm64; do
    fs=$Q_TMP/fs-$format-$arch
    cfg=$Q_TMP/fs-$format-$arch.config.json
    mkdir -p "$fs"
    crane export --insecure --platform linux/$arch "$addr/quinistry:latest" - | tar -x -C "$fs" || true
    crane config --insecure --platform linux/$arch "$addr/quinistry:latest" >"$cfg"
    entry=$(jq -r '.config.Entrypoint[0]' "$cfg")
    runner=()
    [[ $arch == arm64 ]] && runner=(qemu-aarch64-static)
    Q_READY_SECONDS=60 q_start_image gen2-$format-$arch "$fs" "$cfg" "${runner[@]}"
    g2=${Q_ADDR[gen2-$format-$arch]}
    same=true
    for a in amd64 arm64; do
      d=$(platform_digest "$addr" $a)
      cmp -s <(referrers "$addr" "$d") <(referrers "$g2" "$d") || same=false
      cmp -s <(sbom_doc "$addr" "$d") <(sbom_doc "$g2" "$d") || same=false
    done
    check "$format/$arch: generation 2 ($entry, env $(jq -c '.config.Env' "$cfg")${runner:+, under qemu}) serves the same referrers and SBOM documents (${SBOMS[$format/amd64]}, ${SBOMS[$format/arm64]})" $same
    q_stop gen2-$format-$arch
  done
  q_stop gen1-$format
done

# --- push to the CNCF registry v3.1.2, then oras discover there
q_start origin "$AMD64" --addr 127.0.0.1:0
ORIGIN=${Q_ADDR[origin]}
reg_start reg
check "push: quinistry push to the CNCF registry succeeds" bash -c "'$AMD64' push --insecure '$REG/team/quinistry:v1' >/dev/null 2>'$Q_TMP/push.err'"
echo "  $(tail -1 "$Q_TMP/push.err")"
for arch in amd64 arm64; do
  d=$(platform_digest "$ORIGIN" $arch)
  want=$(referrers "$ORIGIN" "$d" | jq -r '.manifests[].digest') || want=
  got=$(oras discover --plain-http --format json "$REG/team/quinistry@$d" 2>/dev/null | jq -r '.. | objects | select(.artifactType? == "application/spdx+json") | .digest') || got=none
  check "push/$arch: oras discover on the CNCF registry lists the served SBOM $want" [ -n "$want" -a "$got" == "$want" ]
  check "push/$arch: the registry holds the same document" \
    cmp -s <(sbom_doc "$ORIGIN" "$d") <(oras pull --plain-http "$REG/team/quinistry@$want" -o "$Q_TMP/pulled-$arch" >/dev/null 2>&1 && cat "$Q_TMP/pulled-$arch/quinistry-linux-$arch.spdx.json")
done

# --- export: the OCI layout holds the SBOMs, and oras finds them there by their subject
"$AMD64" export --oci-layout "$Q_TMP/layout" >/dev/null 2>&1
for arch in amd64 arm64; do
  want=$(referrers "$ORIGIN" "$(platform_digest "$ORIGIN" $arch)" | jq -r '.manifests[].digest') || want=
  got=$(oras discover --oci-layout --platform linux/$arch --format json "$Q_TMP/layout:latest" 2>/dev/null |
    jq -r '.. | objects | select(.artifactType? == "application/spdx+json") | .digest') || got=none
  check "export/$arch: oras discover --oci-layout finds the served SBOM $want in the export" [ -n "$want" -a "$got" == "$want" ]
done

# --- the page, in headless chromium, with every host but loopback unresolvable
page_url="http://$ORIGIN/"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --disable-default-apps --disable-extensions --no-default-browser-check
  --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" --enable-logging=stderr --v=0)
timeout 60 "${chrome[@]}" --user-data-dir="$Q_TMP/chrome1" --log-net-log="$Q_TMP/netlog.json" --net-log-capture-mode=Default \
  --virtual-time-budget=3000 --dump-dom "$page_url" >"$Q_TMP/dom.html" 2>"$Q_TMP/chrome1.log" || true
timeout 60 "${chrome[@]}" --user-data-dir="$Q_TMP/chrome2" --window-size=1100,900 --hide-scrollbars \
  --screenshot="$OUT/page.png" "$page_url" >/dev/null 2>"$Q_TMP/chrome2.log" || true
cp "$Q_TMP/dom.html" "$OUT/page.html"
cp "$Q_TMP/chrome1.log" "$OUT/chromium.log"
check "page: chromium rendered it (DOM has the title)" grep -q '<h1>quinistry</h1>' "$Q_TMP/dom.html"
for arch in amd64 arm64; do
  d=$(platform_digest "$ORIGIN" $arch)
  check "page: shows the linux/$arch digest $d" grep -q "$d" "$Q_TMP/dom.html"
done
check "page: shows the pull line docker pull $ORIGIN/quinistry:latest" grep -q "docker pull $ORIGIN/quinistry:latest" "$Q_TMP/dom.html"
check "page: no console message and no CSP report in chromium's log" bash -c "! grep -E 'CONSOLE|Content Security Policy|Refused to' '$Q_TMP/chrome1.log' '$Q_TMP/chrome2.log'"
# The net log's URL requests: those the page made carry its site in their network isolation key; the
# browser's own (update checks and the like, which the resolver rules above stop) carry another or none.
jq -r '(.constants.logEventTypes.URL_REQUEST_START_JOB) as $t | .events[] | select(.type == $t) |
  [(.params.network_isolation_key // "none" | split(" ")[0]), .params.url] | @tsv' "$Q_TMP/netlog.json" >"$Q_TMP/requests" 2>/dev/null || true
page_requests=$(awk -F'\t' '$1 == "http://127.0.0.1" {print $2}' "$Q_TMP/requests")
check "page: every request the page made went to the origin ($(tr '\n' ' ' <<<"$page_requests"))" \
  bash -c "[ -n \"\$1\" ] && ! grep -v '^http://$ORIGIN/' <<<\"\$1\"" _ "$page_requests"
echo "  (chromium's own requests, stopped by --host-resolver-rules: $(awk -F'\t' '$1 != "http://127.0.0.1" {sub(/[?].*/, "", $2); print $2}' "$Q_TMP/requests" | sort -u | tr '\n' ' '))"
check "page: screenshot kept ($OUT/page.png)" bash -c "[ \"\$(head -c 8 '$OUT/page.png' | od -An -tx1 | tr -d ' \n')\" == 89504e470d0a1a0a ]"
check "page: curl without Accept: text/html still gets the JSON 404" \
  bash -c "[ \"\$(curl -s -o '$Q_TMP/404' -w '%{http_code}' http://$ORIGIN/)\" == 404 ] && jq -e '.errors[0].code == \"NOT_FOUND\"' '$Q_TMP/404' >/dev/null"
check "page: HEAD / with Accept: text/html answers 200 text/html with a Content-Security-Policy" bash -c \
  "curl -fsSI -H 'Accept: text/html' http://$ORIGIN/ | tr -d '\r' | grep -qi '^content-security-policy: default-src .none.'"
q_stop origin

# --- clean up, and check it
cleanup
trap - EXIT
left=$(for p in "${PIDS[@]}"; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done)
check "cleanup: no process left (registry, quinistry, chromium) and the temp dir is gone" \
  bash -c "[ -z '$left' ] && [ ! -e '$Q_TMP' ] && ! pgrep -f -- 'user-data-dir=$Q_TMP/chrom[e]' >/dev/null"
checks_done e2e-sbom
