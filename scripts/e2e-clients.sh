#!/usr/bin/env bash
# e2e-clients.sh: real registry clients against quinistry, in both formats (docker, oci).
# For each format: serve dist/quinistry-linux-amd64, then
#   docker   (a private dockerd 20.10): pull linux/amd64 and linux/arm64, run the pulled amd64 image
#            (read-only, user 65532, no capabilities, host network) as a second generation that serves
#            the same list digest, pull again from it (same RepoDigest, same image), and run the arm64
#            image under qemu (binfmt) as another generation serving the same list digest;
#            `docker manifest inspect --insecure` (client-only) names both platforms
#   crane    manifest bytes and digest, pull of linux/arm64 to a tarball, validate, ls
#   skopeo   copy of linux/arm64 to an OCI layout, copy --all keeping the list digest, inspect --raw
#   the OCI distribution-spec conformance suite, pull workflow, read-only: must be all green.
# Needs scripts/install-tools.sh to have run, and root (dockerd, binfmt_misc).
# Set E2E_KEEP_TMP=1 to keep the temporary directory (logs, pulled images) for a post-mortem.
set -euo pipefail
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
source scripts/lib/dockerd.sh
# the docker CLI's configuration (credentials, manifest cache) stays in the temporary directory
export DOCKER_CONFIG=$Q_TMP/docker-config
mkdir -p "$DOCKER_CONFIG"

BINFMT_MOUNTED_HERE=
cleanup() {
  set +e
  binfmt_arm64_off
  # unmount binfmt_misc if this script mounted it and nobody has registered anything since
  if [[ -n $BINFMT_MOUNTED_HERE && $(ls /proc/sys/fs/binfmt_misc) == $'register\nstatus' ]]; then
    umount /proc/sys/fs/binfmt_misc
  fi
  dockerd_stop "$Q_TMP/docker" # kills its containers first
  q_stop_all
  if [[ -n ${E2E_KEEP_TMP:-} ]]; then echo "e2e-clients: kept $Q_TMP"; else rm -rf "$Q_TMP"; fi
}
trap cleanup EXIT
trap 'echo "e2e-clients: aborted: line $LINENO exited with status $?" >&2' ERR

# Bounded client calls: nothing here may hang the suite.
TMO=${E2E_TIMEOUT:-180}
dk() { timeout "$TMO" "$DOCKER" "$@"; }
cr() { timeout "$TMO" crane --insecure "$@"; }
sk() { timeout "$TMO" skopeo "$@"; }
get() { curl -fsS --max-time 30 -H "Accept: $LIST_ACCEPT" "$@"; }

scripts/build.sh >/dev/null
AMD64=$ROOT/dist/quinistry-linux-amd64
CONFORMANCE=$ROOT/.tools/bin/conformance.test

dockerd_start "$Q_TMP/docker"

echo "docker CLI:  $("$DOCKER" --version) ($DOCKER)"
echo "dockerd:     $(dockerd --version); server $("$DOCKER" version -f '{{.Server.Version}}, API {{.Server.APIVersion}}')"
echo "crane:       $(crane version)"
echo "skopeo:      $(skopeo --version)"
echo "qemu:        $(qemu-aarch64-static --version | head -1)"
echo "conformance: $(go version -m "$CONFORMANCE" | awk '$1 == "mod" {print $2 "@" $3}')"

# ---------- helpers (each is a check: status 0 or a short reason on stdout)

# served_digest ADDR: the list digest served for quinistry:latest (HEAD, as docker asks).
served_digest() {
  curl -fsSI --max-time 30 -H "Accept: $LIST_ACCEPT" "http://$1/v2/quinistry/manifests/latest" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}
# same_digest WANT ADDR: ADDR serves the list digest WANT.
same_digest() {
  local got
  got=$(served_digest "$2") || true
  [[ -n $1 && $got == "$1" ]] || { echo "  served $got, want $1"; return 1; }
}
# equals GOT WANT: a comparison that says what differed.
equals() { [[ $1 == "$2" ]] || { echo "  got '$1', want '$2'"; return 1; }; }
sha256_of() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

# dpull LOG REF [FLAGS...]: docker pull REF, its output in LOG.
dpull() {
  local log=$1 ref=$2
  shift 2
  dk pull "$@" "$ref" >"$log" 2>&1 || { tail -n 5 "$log" | sed 's/^/  /'; return 1; }
}
# downloaded LOG: the pull downloaded at least one layer (nothing was there before).
downloaded() { grep -q 'Pull complete' "$1" || { echo "  no layer downloaded:"; sed 's/^/  /' "$1"; return 1; }; }
# img_is IMAGE OS/ARCH ENTRYPOINT: the local image's platform, entrypoint, user and port.
img_is() {
  local got
  # shellcheck disable=SC2016  # a Go template, not a shell expansion
  got=$(dk image inspect -f '{{.Os}}/{{.Architecture}} {{json .Config.Entrypoint}} {{.Config.User}} {{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}}' "$1")
  equals "$got" "$2 [\"$3\"] 65532 8080/tcp"
}
# has_repo_digest IMAGE REPO@DIGEST
has_repo_digest() {
  local got
  # shellcheck disable=SC2016  # a Go template, not a shell expansion
  got=$(dk image inspect -f '{{join .RepoDigests " "}}' "$1")
  [[ " $got " == *" $2 "* ]] || { echo "  RepoDigests: $got, want $2"; return 1; }
}
image_id() { dk image inspect -f '{{.Id}}' "$1"; }

# run_gen2 NAME IMAGE [DOCKER RUN FLAGS...]: run IMAGE as a quinistry server on the host's loopback,
# locked down; wait (bounded) for its ready line and set C_ADDR[NAME] from it.
declare -A C_ADDR=()
run_gen2() {
  local name=$1 image=$2 i a
  shift 2
  dk run -d --name "$name" --network host --read-only --user 65532 --cap-drop ALL \
    --security-opt no-new-privileges --pull never "$@" "$image" \
    --addr 127.0.0.1:0 >/dev/null || return 1
  for ((i = 0; i < 600; i++)); do
    a=$(dk logs "$name" 2>&1 | sed -n 's/.*msg=ready addr=\([^ ]*\).*/\1/p' | head -1)
    if [[ -n $a ]]; then C_ADDR[$name]=$a; return 0; fi
    [[ $(dk inspect -f '{{.State.Running}}' "$name") == true ]] || break
    sleep 0.1
  done
  echo "  container $name did not log its ready line; state $(dk inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$name"); its log:"
  dk logs "$name" 2>&1 | tail -n 10 | sed 's/^/  /'
  return 1
}

# list_platforms FILE: os/arch of each entry of a manifest list (JSON) in FILE.
list_platforms() { jq -r '[.manifests[].platform | .os + "/" + .architecture] | join(",")' "$1"; }
# dmi_ok REF LISTFILE: docker manifest inspect (plain and verbose) names linux/amd64 and linux/arm64,
# and its verbose children are the list's children.
dmi_ok() {
  local out=$Q_TMP/dmi.json got
  "$DOCKER" manifest inspect --insecure "$1" >"$out" || return 1
  equals "$(jq -r .mediaType "$out")" "$(jq -r .mediaType "$2")" || return 1
  equals "$(list_platforms "$out")" linux/amd64,linux/arm64 || return 1
  timeout "$TMO" "$DOCKER" manifest inspect --insecure -v "$1" >"$out" || return 1
  got=$(jq -r '[.[] | .Descriptor.platform.os + "/" + .Descriptor.platform.architecture + "@" + .Descriptor.digest] | join(",")' "$out")
  equals "$got" "$(jq -r '[.manifests[] | .platform.os + "/" + .platform.architecture + "@" + .digest] | join(",")' "$2")"
}

# crane_pull_arm64 REF TAR: crane pull of linux/arm64 into a tarball whose config says arm64.
crane_pull_arm64() {
  local dir=$Q_TMP/crane-x cfg
  cr pull --platform linux/arm64 "$1" "$2" || return 1
  rm -rf "$dir" && mkdir -p "$dir" && tar -xf "$2" -C "$dir"
  cfg=$(jq -r '.[0].Config' "$dir/manifest.json")
  equals "$(jq -r '.os + "/" + .architecture' "$dir/$cfg")" linux/arm64
}
crane_validate() { local out; out=$(cr validate --remote "$1" 2>&1) || { echo "  ${out//$'\n'/$'\n'  }"; return 1; }; }
crane_lists_latest() { cr ls "$1" | grep -qx latest || { echo "  tags: $(cr ls "$1" | tr '\n' ' ')"; return 1; }; }

# oci_ref_digest DIR: the digest index.json of an OCI layout names for tag latest.
oci_ref_digest() {
  jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' "$1/index.json"
}
oci_blob() { echo "$1/blobs/${2%%:*}/${2#*:}"; }
# oci_arm64_ok DIR: the image in the OCI layout DIR is a linux/arm64 one, its blobs are all there
# with the right digests (skopeo verified them too).
oci_arm64_ok() {
  local m cfg b
  m=$(oci_blob "$1" "$(oci_ref_digest "$1")")
  cfg=$(oci_blob "$1" "$(jq -r .config.digest "$m")")
  equals "$(jq -r '.os + "/" + .architecture' "$cfg")" linux/arm64 || return 1
  for b in $(jq -r '.config.digest, .layers[].digest' "$m"); do
    equals "$(sha256_of "$(oci_blob "$1" "$b")")" "$b" || return 1
  done
}

# conformance NAME ADDR LIST MANIFESTS BLOBS: the OCI conformance suite, pull workflow, read-only,
# in its own directory (it writes ./results). It prints a summary then panics (exit 2) at this
# version: judge by the summary, fail when there is none.
declare -A CONF_COUNTS=()
conformance() {
  local name=$1 addr=$2 dir=$Q_TMP/conformance-$1 out counts pass failed errors result
  mkdir -p "$dir"
  out=$dir/output.txt
  (cd "$dir" && env OCI_REGISTRY="$addr" OCI_TLS=disabled OCI_REPO1=quinistry OCI_REPO2=quinistry \
    OCI_API_PULL=true OCI_API_PUSH=false OCI_API_BLOBS_DELETE=false OCI_API_MANIFESTS_DELETE=false \
    OCI_API_TAGS_DELETE=false OCI_API_TAGS_LIST=true OCI_API_REFERRER=true \
    OCI_RO_DATA_TAGS=latest OCI_RO_DATA_MANIFESTS="$3" OCI_RO_DATA_BLOBS="$4" \
    timeout "$TMO" "$CONFORMANCE" >"$out" 2>&1) || true
  result=$(sed -n 's/^OCI Conformance Result: *//p' "$out")
  if [[ -z $result ]]; then
    echo "  no summary printed; end of its output:"
    tail -n 15 "$out" | sed 's/^/  /'
    return 1
  fi
  counts=$(sed -n '/^OCI Conformance Result:/,/^$/s/^  \([A-Za-z]*\)\.*: *\([0-9]*\)$/\1=\2/p' "$out" | tr '\n' ' ')
  CONF_COUNTS[$name]="$result: ${counts% }"
  pass=$(sed -n 's/.*\bPass=\([0-9]*\).*/\1/p' <<<"$counts")
  failed=$(sed -n 's/.*\bFAIL=\([0-9]*\).*/\1/p' <<<"$counts")
  errors=$(sed -n 's/.*\bError=\([0-9]*\).*/\1/p' <<<"$counts")
  if [[ $result != Pass || ${pass:-0} -eq 0 || ${failed:-1} -ne 0 || ${errors:-1} -ne 0 ]]; then
    echo "  ${CONF_COUNTS[$name]}"
    grep -E ': (FAIL|Error)$' "$out" | sed 's/^ */  /' || true
    grep -E '^\s+(Error|Expected|Actual|Messages):' "$out" | head -n 20 | sed 's/^ */  /' || true
    return 1
  fi
}

# ---------- the suite

for format in docker oci; do
  echo "--- format $format"
  q_start gen1-$format "$AMD64" --addr 127.0.0.1:0 --format $format
  addr=${Q_ADDR[gen1-$format]}
  ref=$addr/quinistry:latest
  list=$(served_digest "$addr") || true
  check "$format: list digest served ($list)" test -n "$list"
  listfile=$Q_TMP/$format-list.json
  get -o "$listfile" "http://$addr/v2/quinistry/manifests/latest"
  check "$format: list bytes hash to the list digest" equals "$(sha256_of "$listfile")" "$list"
  list_type=application/vnd.docker.distribution.manifest.list.v2+json
  [[ $format == oci ]] && list_type=application/vnd.oci.image.index.v1+json
  check "$format: the list is a $list_type" equals "$(jq -r .mediaType "$listfile")" "$list_type"
  amd64_m=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$listfile")
  arm64_m=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$listfile")
  blobs=()
  for m in $amd64_m $arm64_m; do
    mapfile -t -O "${#blobs[@]}" blobs < <(get "http://$addr/v2/quinistry/manifests/$m" | jq -r '.config.digest, .layers[].digest')
  done
  mapfile -t blobs < <(printf '%s\n' "${blobs[@]}" | sort -u)
  echo "  list $list; amd64 $amd64_m; arm64 $arm64_m; ${#blobs[@]} blobs"

  # --- docker: pull both platforms, run both, pull from the second generation
  img=qtest/$format
  log=$Q_TMP/pull-$format
  check "docker/$format: docker pull $ref" dpull "$log-amd64.log" "$ref"
  check "docker/$format: the pull downloaded layers" downloaded "$log-amd64.log"
  dk tag "$ref" "$img:amd64" || true
  check "docker/$format: pulled image is linux/amd64, entrypoint, user 65532, port 8080" \
    img_is "$img:amd64" linux/amd64 /quinistry-linux-amd64
  check "docker/$format: RepoDigest is the list digest" has_repo_digest "$img:amd64" "$addr/quinistry@$list"
  check "docker/$format: docker pull --platform linux/arm64" dpull "$log-arm64.log" "$ref" --platform linux/arm64
  dk tag "$ref" "$img:arm64" || true
  check "docker/$format: pulled image is linux/arm64, entrypoint, user 65532, port 8080" \
    img_is "$img:arm64" linux/arm64 /quinistry-linux-arm64
  # dockerd keeps one image per REPO@DIGEST reference and the amd64 image holds it already: the arm64
  # image gets no RepoDigest, so read the digest the pull reported
  check "docker/$format: the arm64 pull reports the list digest" grep -qx "Digest: $list" "$log-arm64.log"

  check "docker/$format: amd64 image runs read-only as 65532 without capabilities" \
    run_gen2 gen2-$format-amd64 "$img:amd64"
  addr2=${C_ADDR[gen2-$format-amd64]:-}
  check "docker/$format: the amd64 container serves the same list digest" same_digest "$list" "$addr2"
  ref2=$addr2/quinistry:latest
  check "docker/$format: docker pull from the container ($ref2)" dpull "$log-gen2.log" "$ref2"
  check "docker/$format: same RepoDigest from the container" has_repo_digest "$ref2" "$addr2/quinistry@$list"
  check "docker/$format: same image ID from the container" equals "$(image_id "$ref2")" "$(image_id "$img:amd64")"
  check "docker/$format: docker manifest inspect of generation 2 shows the $list_type with both platforms" dmi_ok "$ref2" "$listfile"
  check "docker/$format: generation 3, pulled from generation 2, runs with no flag but the address" \
    run_gen2 gen3-$format-amd64 "$ref2"
  addr3=${C_ADDR[gen3-$format-amd64]:-}
  check "docker/$format: generation 3 serves the same list digest ($list)" same_digest "$list" "$addr3"
  check "docker/$format: docker manifest inspect of generation 3 shows the $list_type" dmi_ok "$addr3/quinistry:latest" "$listfile"
  dk rm -f gen2-$format-amd64 gen3-$format-amd64 >/dev/null 2>&1 || true

  [[ -e /proc/sys/fs/binfmt_misc/register ]] || BINFMT_MOUNTED_HERE=1
  check "docker/$format: arm64 emulation on (binfmt)" binfmt_arm64_on
  check "docker/$format: arm64 image runs under emulation, locked down" \
    run_gen2 gen2-$format-arm64 "$img:arm64" --platform linux/arm64
  check "docker/$format: the arm64 container serves the same list digest" \
    same_digest "$list" "${C_ADDR[gen2-$format-arm64]:-}"
  dk rm -f gen2-$format-arm64 >/dev/null 2>&1 || true
  binfmt_arm64_off

  check "docker/$format: docker manifest inspect --insecure names linux/amd64 and linux/arm64" dmi_ok "$ref" "$listfile"

  # --- crane
  check "crane/$format: crane manifest gives the served bytes" equals "$(cr manifest "$ref" | sha256sum | cut -d' ' -f1)" "${list#sha256:}"
  check "crane/$format: crane digest is the list digest" equals "$(cr digest "$ref")" "$list"
  check "crane/$format: crane pull --platform linux/arm64 to a tarball" crane_pull_arm64 "$ref" "$Q_TMP/crane-$format-arm64.tar"
  check "crane/$format: crane validate --remote (every platform, every blob digested)" crane_validate "$ref"
  check "crane/$format: crane ls lists latest" crane_lists_latest "$addr/quinistry"

  # --- skopeo
  sko=$Q_TMP/skopeo-$format
  mkdir -p "$sko"
  check "skopeo/$format: copy --override-arch arm64 to an OCI layout" \
    sk copy -q --src-tls-verify=false --override-arch arm64 "docker://$ref" "oci:$sko/arm64:latest"
  check "skopeo/$format: the copied image is linux/arm64 with verified blobs" oci_arm64_ok "$sko/arm64"
  check "skopeo/$format: copy --all --preserve-digests to a dir keeps the list digest" \
    sk copy -q --src-tls-verify=false --all --preserve-digests "docker://$ref" "dir:$sko/all-dir"
  check "skopeo/$format: the copied list's digest is the list digest" equals "$(sha256_of "$sko/all-dir/manifest.json")" "$list"
  if [[ $format == oci ]]; then
    check "skopeo/$format: arm64 copy keeps the arm64 manifest digest" equals "$(oci_ref_digest "$sko/arm64")" "$arm64_m"
    check "skopeo/$format: copy --all --preserve-digests to an OCI layout" \
      sk copy -q --src-tls-verify=false --all --preserve-digests "docker://$ref" "oci:$sko/all-oci:latest"
    check "skopeo/$format: the OCI layout's index.json names the list digest" equals "$(oci_ref_digest "$sko/all-oci")" "$list"
  else
    # an OCI layout holds OCI types only: skopeo converts the Docker list (a new digest, by design)
    check "skopeo/$format: copy --all to an OCI layout (converted to an OCI index)" \
      sk copy -q --src-tls-verify=false --all "docker://$ref" "oci:$sko/all-oci:latest"
    check "skopeo/$format: the converted index has both platforms" \
      equals "$(list_platforms "$(oci_blob "$sko/all-oci" "$(oci_ref_digest "$sko/all-oci")")")" linux/amd64,linux/arm64
  fi
  sk inspect --tls-verify=false --raw "docker://$ref" >"$sko/raw.json" || true
  check "skopeo/$format: inspect --raw gives the served bytes" cmp -s "$sko/raw.json" "$listfile"

  # --- OCI conformance suite
  manifests="$list $amd64_m $arm64_m"
  check "conformance/$format: OCI distribution-spec pull workflow (read-only) all green" \
    conformance "$format" "$addr" "$manifests" "${blobs[*]}"
  echo "  conformance/$format: ${CONF_COUNTS[$format]:-no summary}"

  # --- next format starts from an empty image store, so its pulls really download
  dk ps -aq | xargs -r timeout "$TMO" "$DOCKER" rm -f >/dev/null
  dk images -aq | sort -u | xargs -r timeout "$TMO" "$DOCKER" rmi -f >/dev/null
  check "docker/$format: image store emptied" equals "$(dk images -aq)" ""
  q_stop gen1-$format
done

for f in docker oci; do echo "conformance ($f): ${CONF_COUNTS[$f]:-no summary}"; done
echo "e2e-clients: total time $(($(date +%s) - START)) s"
checks_done e2e-clients
