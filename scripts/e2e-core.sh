#!/usr/bin/env bash
# e2e-core.sh: the fixed point, end to end, in both formats, with and without SOURCE_DATE_EPOCH,
# for all platforms and a --platforms subset. Builds dist/ with scripts/build.sh, serves it, takes
# the amd64 and arm64 file systems and configs out of the served image with crane, starts each
# generation 2 exactly as a runtime would (Entrypoint + Cmd, the config's Env, its User; arm64 under
# qemu-aarch64-static) and expects the very same list digest.
# Also: reproducible builds, repeatable starts, bad start-up input, and the time to serve.
# Needs scripts/install-tools.sh to have run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
trap 'q_stop_all; rm -rf "$Q_TMP"' EXIT

scripts/build.sh >/dev/null
AMD64=$ROOT/dist/quinistry-linux-amd64

# Reproducible builds: a second build into another directory gives identical files.
DIST=$Q_TMP/dist2 scripts/build.sh >/dev/null
check "two builds give identical binaries" diff -r dist/ "$Q_TMP/dist2/"

# same_digest WANT ADDR: the list digest served at ADDR is WANT.
same_digest() { [[ $(q_list_digest "$2") == "$1" && -n $1 ]]; }
# names_platforms ADDR WANT: the list names the platforms WANT (os/arch, comma-separated), in order.
names_platforms() {
  local ps
  ps=$(crane manifest --insecure "$1/quinistry:latest" | jq -r '[.manifests[].platform | .os + "/" + .architecture] | join(",")')
  [[ $ps == "$2" ]] || { echo "  the list names $ps"; return 1; }
}
# elf_machine FILE: the ELF e_machine bytes, as hex.
elf_machine() { od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'; }
# config_env ADDR ARCH: the Env of that platform's image config, as compact JSON.
config_env() { crane config --insecure --platform "linux/$2" "$1/quinistry:latest" | jq -c '.config.Env'; }
# files_in DIR: the names of the files in DIR, sorted, space-separated.
files_in() { (cd "$1" && ls | sort | tr '\n' ' ' | sed 's/ $//'); }

# Generations are started the way a container runtime starts the image: q_start_image takes the
# exported file system and the config, runs Entrypoint + Cmd as the config's User with the config's
# Env and nothing else but the address. Generation 1 gets its settings the way a user gives them
# (flags, SOURCE_DATE_EPOCH) and nothing of this shell's environment.
chmod 0711 "$Q_TMP" # generation 2 runs as the image's user, 65532
EPOCH=1000000000
declare -A CASE_DIGEST=()

# generations CASE BINARY ENV WANT_ENV WANT_FILES FLAGS...: serve BINARY with FLAGS and the K=V words
# in ENV; its configs carry WANT_ENV; then, for amd64 (natively) and arm64 (under qemu), export that
# platform's file system (it holds exactly WANT_FILES), start generation 2 from it as the image
# says, and expect generation 1's list digest.
generations() {
  local case=$1 bin=$2 env=$3 want_env=$4 want_files=$5 want arch fs entry cfg runner
  shift 5
  Q_ENV=$env q_start "gen1-$case" "$bin" --addr 127.0.0.1:0 "$@"
  local addr=${Q_ADDR[gen1-$case]}
  want=$(q_list_digest "$addr")
  CASE_DIGEST[$case]=$want
  check "$case: generation 1 (${bin#"$ROOT"/} ${*:-(no flags)}${env:+, $env}) serves list $want" test -n "$want"
  check "$case: the list names linux/amd64,linux/arm64" names_platforms "$addr" linux/amd64,linux/arm64
  check "$case: crane digest agrees ($want)" [ "$(crane digest --insecure "$addr/quinistry:latest")" == "$want" ]
  local list_type=application/vnd.docker.distribution.manifest.list.v2+json
  [[ $want_env == *QUINISTRY_FORMAT=oci* ]] && list_type=application/vnd.oci.image.index.v1+json
  check "$case: the list is a $list_type" [ "$(crane manifest --insecure "$addr/quinistry:latest" | jq -r .mediaType)" == "$list_type" ]
  for arch in amd64 arm64; do
    check "$case/linux/$arch: the config carries Env $want_env" [ "$(config_env "$addr" $arch)" == "$want_env" ]
    fs=$Q_TMP/$case-$arch
    cfg=$Q_TMP/$case-$arch.config.json
    mkdir -p "$fs"
    crane export --insecure --platform linux/$arch "$addr/quinistry:latest" - | tar -x -C "$fs"
    crane config --insecure --platform linux/$arch "$addr/quinistry:latest" >"$cfg"
    entry=$(jq -r '.config.Entrypoint[0]' "$cfg")
    check "$case/linux/$arch: entrypoint $entry is in the exported file system" test -x "$fs$entry"
    case $arch in
      amd64) check "$case/linux/amd64: entrypoint is an x86-64 ELF file" [ "$(elf_machine "$fs$entry")" == 3e00 ] ;;
      arm64) check "$case/linux/arm64: entrypoint is an AArch64 ELF file" [ "$(elf_machine "$fs$entry")" == b700 ] ;;
    esac
    check "$case/linux/$arch: the file system holds exactly: $want_files" [ "$(files_in "$fs")" == "$want_files" ]
    runner=()
    [[ $arch == arm64 ]] && runner=(qemu-aarch64-static)
    q_start_image "gen2-$case-$arch" "$fs" "$cfg" "${runner[@]}"
    check "$case/linux/$arch: generation 2 (argv $(jq -c '(.config.Entrypoint // []) + (.config.Cmd // [])' "$cfg"), env $(jq -c '.config.Env' "$cfg"), user $(jq -r .config.User "$cfg")${runner:+, under ${runner[*]}}) serves $want" \
      same_digest "$want" "${Q_ADDR[gen2-$case-$arch]}"
    q_stop "gen2-$case-$arch"
  done
  q_stop "gen1-$case"
}

BOTH="quinistry-linux-amd64 quinistry-linux-arm64"
generations docker "$AMD64" "" '["PATH=/"]' "$BOTH"
generations oci "$AMD64" "" '["PATH=/","QUINISTRY_FORMAT=oci"]' "$BOTH" --format oci
generations docker-epoch "$AMD64" "SOURCE_DATE_EPOCH=$EPOCH" "[\"PATH=/\",\"SOURCE_DATE_EPOCH=$EPOCH\"]" "$BOTH"
generations oci-epoch "$AMD64" "SOURCE_DATE_EPOCH=$EPOCH" "[\"PATH=/\",\"QUINISTRY_FORMAT=oci\",\"SOURCE_DATE_EPOCH=$EPOCH\"]" "$BOTH" --format oci
check "settings change the image on purpose: docker, oci, docker+epoch, oci+epoch are four digests" \
  [ "$(printf '%s\n' "${CASE_DIGEST[docker]}" "${CASE_DIGEST[oci]}" "${CASE_DIGEST[docker-epoch]}" "${CASE_DIGEST[oci-epoch]}" | sort -u | wc -l)" -eq 4 ]
Q_ENV= q_start again "$AMD64" --addr 127.0.0.1:0
check "a second start of the same dist/ serves the same digest (${CASE_DIGEST[docker]})" same_digest "${CASE_DIGEST[docker]}" "${Q_ADDR[again]}"
q_stop again

# Every supported platform: build all six, serve them from the amd64 binary, and run each other
# binary under its qemu user-mode emulator: all serve the same list digest, big-endian s390x included.
ALL="linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x linux/riscv64"
DIST=$Q_TMP/dist-all PLATFORMS="$ALL" scripts/build.sh >/dev/null
q_start all "$Q_TMP/dist-all/quinistry-linux-amd64" --addr 127.0.0.1:0
want=$(q_list_digest "${Q_ADDR[all]}")
check "all platforms: the list names all six" [ "$(crane manifest --insecure "${Q_ADDR[all]}/quinistry:latest" |
  jq -r '[.manifests[].platform | .os + "/" + .architecture + (if .variant and .architecture != "arm64" then "/" + .variant else "" end)] | join(" ")')" == "$ALL" ]
q_stop all
for pair in arm64:aarch64 arm-v7:arm ppc64le:ppc64le s390x:s390x riscv64:riscv64; do
  file=quinistry-linux-${pair%%:*}
  Q_READY_SECONDS=60 q_start "all-$file" "qemu-${pair##*:}-static" "$Q_TMP/dist-all/$file" --addr 127.0.0.1:0
  check "all platforms: $file under qemu serves the same list digest" same_digest "$want" "${Q_ADDR[all-$file]}"
  q_stop "all-$file"
done
# A --platforms subset of the six: its image holds only those binaries, so its generations find
# exactly them, with no flag of their own.
generations subset "$Q_TMP/dist-all/quinistry-linux-amd64" "" '["PATH=/"]' "$BOTH" --platforms linux/arm64,linux/amd64
check "the subset's digest differs from all six's" [ "${CASE_DIGEST[subset]}" != "$want" ]

# Bad start-up input: a non-zero exit and one readable line, no stack trace.
one_clean_line() {
  local want=$1 out status=0
  shift
  out=$("$@" 2>&1 >/dev/null) || status=$?
  [[ $status -ne 0 && $(wc -l <<<"$out") -eq 1 && $out == *"$want"* && $out != *goroutine* ]] ||
    { echo "  exit $status, output: $out"; return 1; }
}
q_start busy "$AMD64" --addr 127.0.0.1:0
busy=${Q_ADDR[busy]##*:}
check "bad input: missing siblings directory" one_clean_line "cannot read siblings directory" "$AMD64" --addr 127.0.0.1:0 --siblings "$Q_TMP/missing"
mkdir -m 000 "$Q_TMP/locked"
check "bad input: unreadable siblings directory" one_clean_line "cannot read siblings directory" setpriv --reuid=65532 --regid=65532 --clear-groups "$AMD64" --addr 127.0.0.1:0 --siblings "$Q_TMP/locked"
check "bad input: address in use" one_clean_line "address already in use" "$AMD64" --addr "${Q_ADDR[busy]}"
check "bad input: unknown format" one_clean_line 'unknown format "zip"' "$AMD64" --format zip
check "bad input: unknown platform" one_clean_line 'platform "linux/mips" is not supported' "$AMD64" --platforms linux/mips
check "bad input: unknown flag" one_clean_line "flag provided but not defined: -nope" "$AMD64" --nope
check "bad input: push with an unknown flag" one_clean_line "push: flag provided but not defined: -nope" "$AMD64" push --nope
check "bad input: platform with no binary" one_clean_line "no binary for linux/s390x" "$AMD64" --addr 127.0.0.1:0 --platforms linux/amd64,linux/s390x
q_stop busy

# Time from exec to the list being served (amd64 + arm64 binaries), median of 11 runs.
port=$busy
times=()
for i in $(seq 11); do
  t0=$(date +%s%N)
  "$AMD64" --addr 127.0.0.1:$port 2>/dev/null &
  pid=$!
  until curl -fs -o /dev/null -H "Accept: $LIST_ACCEPT" "http://127.0.0.1:$port/v2/quinistry/manifests/latest"; do
    kill -0 $pid || break
  done
  t1=$(date +%s%N)
  kill $pid; wait $pid 2>/dev/null || true
  times+=($(((t1 - t0) / 1000000)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 6p)
echo "time to serve the list (exec until the list is served, amd64+arm64): median ${median} ms of ${times[*]}"
for f in dist/*; do echo "binary $(basename "$f"): $(stat -c %s "$f") bytes"; done
checks_done e2e-core
