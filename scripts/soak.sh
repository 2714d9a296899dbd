#!/usr/bin/env bash
# soak.sh: many real clients pull the image from one server at once, for a bounded time, and every
# download is checked against its digest. Builds dist/ with scripts/build.sh, serves
# dist/quinistry-linux-amd64, then runs until SOAK_SECONDS (default 20) have passed:
#   SOAK_CRANE  (default 4) loops of `crane pull --insecure --platform linux/<arch> --format oci`: the
#               layout's manifest is the served platform manifest, and every blob hashes to its name;
#   SOAK_SKOPEO (default 2) loops of `skopeo copy --src-tls-verify=false docker://... dir:...`, every
#               other one with --all: manifest.json is the served manifest (or list), and every blob and
#               instance manifest hashes to its name;
#   SOAK_CURL   (default 4) loops of raw `curl` GETs of every manifest and blob by digest, each checked
#               with sha256sum.
# The platforms alternate between linux/amd64 and linux/arm64. The server's VmRSS is sampled every
# second. Prints the counts (pulls, errors, digest mismatches) per client and the memory curve, and
# exits non-zero on any error or mismatch, a 5xx or a panic on the server, or when the last RSS sample
# exceeds the first one after SOAK_WARMUP (default 3) seconds by more than SOAK_RSS_GROWTH_MIB
# (default 32). Example of a longer run: SOAK_SECONDS=120 scripts/soak.sh
# Needs scripts/install-tools.sh to have run (crane, skopeo, curl, jq).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
trap 'q_stop_all; rm -rf "$Q_TMP"' EXIT
SECONDS_WANTED=${SOAK_SECONDS:-20}
CRANE=${SOAK_CRANE:-4} SKOPEO=${SOAK_SKOPEO:-2} CURL=${SOAK_CURL:-4}
WARMUP=${SOAK_WARMUP:-3} GROWTH_MIB=${SOAK_RSS_GROWTH_MIB:-32}
OP_TIMEOUT=120 # seconds any one client command may take
t_start=$(date +%s%N)

scripts/build.sh >/dev/null
q_start soak "$ROOT/dist/quinistry-linux-amd64" --addr 127.0.0.1:0
ADDR=${Q_ADDR[soak]} PID=${Q_PID[soak]}
REF=$ADDR/quinistry:latest

# What is served, from the server itself: the list, each platform's manifest, config and layers.
curl -fsS -H "Accept: $LIST_ACCEPT" "http://$ADDR/v2/quinistry/manifests/latest" >"$Q_TMP/list.json"
LIST=$(q_list_digest "$ADDR")
declare -A MANIFEST=()
BLOBS=()
for arch in amd64 arm64; do
  MANIFEST[$arch]=$(jq -r --arg a $arch '.manifests[] | select(.platform.architecture == $a) | .digest' "$Q_TMP/list.json")
  curl -fsS -H "Accept: $LIST_ACCEPT" "http://$ADDR/v2/quinistry/manifests/${MANIFEST[$arch]}" >"$Q_TMP/$arch.json"
  mapfile -t -O ${#BLOBS[@]} BLOBS < <(jq -r '.config.digest, .layers[].digest' "$Q_TMP/$arch.json")
done
mapfile -t BLOBS < <(printf '%s\n' "${BLOBS[@]}" | sort -u)
LAYERS=$(jq '.layers | length' "$Q_TMP/amd64.json")
[[ -n $LIST && -n ${MANIFEST[amd64]} && -n ${MANIFEST[arm64]} && ${#BLOBS[@]} -ge 4 ]] ||
  { echo "soak: could not read what the server serves" >&2; exit 1; }
echo "soak: $REF, list $LIST, ${#BLOBS[@]} blobs; $CRANE crane, $SKOPEO skopeo and $CURL curl loops for ${SECONDS_WANTED} s"

END=$(($(date +%s) + SECONDS_WANTED))

# sha_names DIR COUNT: DIR holds COUNT files named by a sha256 (hex, or hex.manifest.json), and each
# hashes to its name; prints what is wrong, if anything.
sha_names() {
  local dir=$1 count=$2 files
  mapfile -t files < <(find "$dir" -maxdepth 1 -type f -regextype posix-extended \
    -regex '.*/[0-9a-f]{64}(\.manifest\.json)?' -printf '%f\n')
  if ((${#files[@]} != count)); then
    echo "${#files[@]} blobs, not $count"
    return
  fi
  (cd "$dir" && sha256sum -- "${files[@]}" 2>&1) |
    awk '{ name = $2; sub(/\..*/, "", name); if (NF != 2 || name != $1) print $2 " hashes to " $1 }'
}
# record FILE RESULT...: append one result line ("ok", "error ..." or "mismatch ...").
record() {
  local f=$1
  shift
  echo "$*" >>"$f"
}

crane_loop() {
  local i=$1 n=0 arch dir out bad
  out=$Q_TMP/res.crane.$i
  : >"$out"
  while (($(date +%s) < END)); do
    arch=$([[ $(((i + n) % 2)) == 0 ]] && echo amd64 || echo arm64)
    dir=$Q_TMP/crane.$i.$n
    if ! timeout $OP_TIMEOUT crane pull --insecure --platform "linux/$arch" --format oci "$REF" "$dir" 2>"$dir.err"; then
      record "$out" "error crane linux/$arch: $(tail -1 "$dir.err")"
    elif [[ $(jq -r '.manifests[0].digest' "$dir/index.json") != "${MANIFEST[$arch]}" ]]; then
      record "$out" "mismatch crane linux/$arch: manifest $(jq -r '.manifests[0].digest' "$dir/index.json")"
    elif bad=$(sha_names "$dir/blobs/sha256" $((LAYERS + 2))) && [[ -n $bad ]]; then
      # the platform manifest, its config and the layers
      record "$out" "mismatch crane linux/$arch: $bad"
    else
      record "$out" ok
    fi
    rm -rf "$dir" "$dir.err"
    n=$((n + 1))
  done
}

skopeo_loop() {
  local i=$1 n=0 arch dir out bad want what args count
  out=$Q_TMP/res.skopeo.$i
  : >"$out"
  while (($(date +%s) < END)); do
    dir=$Q_TMP/skopeo.$i.$n
    # manifest.json is the list or the platform manifest; the other files are the layers, each
    # platform's config and, with --all, each platform's manifest.
    if (((i + n) % 2 == 0)); then
      args=(--all) want=$LIST what=all count=$((LAYERS + 4))
    else
      arch=$([[ $(((i + n) % 4)) == 1 ]] && echo amd64 || echo arm64)
      args=(--override-os linux --override-arch "$arch") want=${MANIFEST[$arch]} what=linux/$arch count=$((LAYERS + 1))
    fi
    if ! timeout $OP_TIMEOUT skopeo copy -q "${args[@]}" --src-tls-verify=false "docker://$REF" "dir:$dir" 2>"$dir.err"; then
      record "$out" "error skopeo $what: $(tail -1 "$dir.err")"
    elif [[ sha256:$(sha256sum <"$dir/manifest.json" | cut -d' ' -f1) != "$want" ]]; then
      record "$out" "mismatch skopeo $what: manifest.json is not $want"
    elif bad=$(sha_names "$dir" $count) && [[ -n $bad ]]; then
      record "$out" "mismatch skopeo $what: $bad"
    else
      record "$out" ok
    fi
    rm -rf "$dir" "$dir.err"
    n=$((n + 1))
  done
}

curl_loop() {
  local i=$1 n=0 d path got out f
  out=$Q_TMP/res.curl.$i
  f=$Q_TMP/curl.$i
  local all=("${BLOBS[@]}" "$LIST" "${MANIFEST[amd64]}" "${MANIFEST[arm64]}")
  : >"$out"
  while (($(date +%s) < END)); do
    d=${all[$(((i + n) % ${#all[@]}))]}
    path=blobs/$d
    [[ $d == "$LIST" || $d == "${MANIFEST[amd64]}" || $d == "${MANIFEST[arm64]}" ]] && path=manifests/$d
    if ! timeout $OP_TIMEOUT curl -fsS -H "Accept: $LIST_ACCEPT" -o "$f" "http://$ADDR/v2/quinistry/$path" 2>"$f.err"; then
      record "$out" "error curl $path: $(tail -1 "$f.err")"
    elif got=sha256:$(sha256sum <"$f" | cut -d' ' -f1) && [[ $got != "$d" ]]; then
      record "$out" "mismatch curl $path: got $got"
    else
      record "$out" ok
    fi
    n=$((n + 1))
  done
  rm -f "$f" "$f.err"
}

# rss_loop: the server's VmRSS in KiB, one line a second (on the second), until the end.
rss_loop() {
  local next=$(($(date +%s) + 1))
  while ((next <= END)) && [[ -r /proc/$PID/status ]]; do
    awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" >>"$Q_TMP/rss"
    while (($(date +%s) < next)); do sleep 0.1; done
    next=$((next + 1))
  done
}

workers=()
for ((i = 0; i < CRANE; i++)); do crane_loop $i & workers+=($!); done
for ((i = 0; i < SKOPEO; i++)); do skopeo_loop $i & workers+=($!); done
for ((i = 0; i < CURL; i++)); do curl_loop $i & workers+=($!); done
rss_loop &
sampler=$!
wait "${workers[@]}" "$sampler"

# Counts per client.
passed=0 errors=0 mismatches=0
for kind in crane skopeo curl; do
  k_ok=0 k_err=0 k_mis=0
  if compgen -G "$Q_TMP/res.$kind.*" >/dev/null; then
    k_ok=$(cat "$Q_TMP"/res.$kind.* | grep -c '^ok$' || true)
    k_err=$(cat "$Q_TMP"/res.$kind.* | grep -c '^error' || true)
    k_mis=$(cat "$Q_TMP"/res.$kind.* | grep -c '^mismatch' || true)
  fi
  printf 'soak: %-6s %6d pulls, %d errors, %d digest mismatches\n' $kind "$k_ok" "$k_err" "$k_mis"
  passed=$((passed + k_ok)) errors=$((errors + k_err)) mismatches=$((mismatches + k_mis))
  if ((k_ok == 0)); then
    echo "soak: no $kind pull passed"
    errors=$((errors + 1))
  fi
done
cat "$Q_TMP"/res.* | grep -v '^ok$' | sort | uniq -c | head -20 | sed 's/^/soak:   /' || true

# The server's side: no 5xx, no panic, no stream left in flight.
curl -fsS "http://$ADDR/metrics" >"$Q_TMP/metrics"
server_5xx=$(awk -F'status="' '/^quinistry_requests_total/ { split($2, a, "\""); if (a[1] ~ /^5/) n += $NF } END { print n + 0 }' "$Q_TMP/metrics")
served=$(awk '$1 == "quinistry_response_bytes_total" {print $2}' "$Q_TMP/metrics")
requests=$(awk '/^quinistry_requests_total/ { n += $NF } END { print n + 0 }' "$Q_TMP/metrics")
in_flight=$(awk '$1 == "quinistry_blob_streams_in_flight" {print $2}' "$Q_TMP/metrics")
echo "soak: server answered $requests requests, $((served / 1048576)) MiB, $server_5xx with a 5xx; $in_flight streams in flight at the end"
if ((server_5xx > 0)) || [[ $in_flight != 0 ]]; then errors=$((errors + 1)); fi
if grep -q 'panic' "$Q_TMP/soak.log"; then
  echo "soak: the server log mentions a panic"
  errors=$((errors + 1))
fi

# The memory curve.
mapfile -t rss <"$Q_TMP/rss"
if ((${#rss[@]} <= WARMUP + 1)); then
  echo "soak: only ${#rss[@]} RSS samples: run for longer than SOAK_WARMUP=$WARMUP s"
  errors=$((errors + 1))
else
  base=${rss[WARMUP]} last=${rss[-1]}
  read -r min max < <(printf '%s\n' "${rss[@]}" | sort -n | sed -n '1p;$p' | paste -sd' ')
  mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
  echo "soak: VmRSS MiB, one sample a second: $(for k in "${rss[@]}"; do printf '%s ' "$(mib "$k")"; done)"
  echo "soak: VmRSS first $(mib "${rss[0]}"), after ${WARMUP} s warm-up $(mib "$base"), min $(mib "$min"), max $(mib "$max"), last $(mib "$last") MiB; growth $(mib $((last - base))) MiB (limit $GROWTH_MIB)"
  if ((last - base > GROWTH_MIB * 1024)); then
    echo "soak: resident memory grew by more than $GROWTH_MIB MiB"
    errors=$((errors + 1))
  fi
fi

echo "soak: took $((($(date +%s%N) - t_start) / 1000000)) ms"
failed=$((errors + mismatches))
echo "soak: $passed passed, $failed failed"
((failed == 0))
