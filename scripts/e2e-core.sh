#!/usr/bin/env bash
# e2e-core.sh: the fixed point, end to end, in both formats. Builds dist/ with scripts/build.sh,
# serves it, takes the amd64 and arm64 file systems out of the served image with crane, runs each
# binary found there (arm64 under qemu-aarch64-static) and expects the very same list digest.
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
# names_platforms ADDR: the list names linux/amd64 and linux/arm64.
names_platforms() {
  local ps
  ps=$(crane manifest --insecure "$1/quinistry:latest" | jq -r '[.manifests[].platform | .os + "/" + .architecture] | join(",")')
  [[ $ps == "linux/amd64,linux/arm64" ]]
}
# elf_machine FILE: the ELF e_machine bytes, as hex.
elf_machine() { od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'; }

for format in docker oci; do
  q_start gen1-$format "$AMD64" --addr 127.0.0.1:0 --format $format
  addr=${Q_ADDR[gen1-$format]}
  want=$(q_list_digest "$addr")
  check "$format: list digest served ($want)" test -n "$want"
  check "$format: list names linux/amd64 and linux/arm64" names_platforms "$addr"
  check "$format: crane digest agrees" [ "$(crane digest --insecure "$addr/quinistry:latest")" == "$want" ]

  for arch in amd64 arm64; do
    fs=$Q_TMP/$format-$arch
    mkdir -p "$fs"
    crane export --insecure --platform linux/$arch "$addr/quinistry:latest" - | tar -x -C "$fs"
    entry=$(crane config --insecure --platform linux/$arch "$addr/quinistry:latest" | jq -r '.config.Entrypoint[0]')
    check "$format/$arch: entrypoint $entry is in the exported file system" test -x "$fs$entry"
    case $arch in
      amd64) check "$format/amd64: entrypoint is an x86-64 ELF file" [ "$(elf_machine "$fs$entry")" == 3e00 ] ;;
      arm64) check "$format/arm64: entrypoint is an AArch64 ELF file" [ "$(elf_machine "$fs$entry")" == b700 ] ;;
    esac
    check "$format/$arch: the file system holds every platform's binary" \
      test -x "$fs/quinistry-linux-amd64" -a -x "$fs/quinistry-linux-arm64"
    runner=()
    [[ $arch == arm64 ]] && runner=(qemu-aarch64-static)
    q_start gen2-$format-$arch "${runner[@]}" "$fs$entry" --addr 127.0.0.1:0 --format $format
    check "$format/$arch: generation 2 serves the same list digest" same_digest "$want" "${Q_ADDR[gen2-$format-$arch]}"
    q_stop gen2-$format-$arch
  done
  q_stop gen1-$format
  q_start again-$format "$AMD64" --addr 127.0.0.1:0 --format $format
  check "$format: a second start of the same dist/ serves the same digest" same_digest "$want" "${Q_ADDR[again-$format]}"
  q_stop again-$format
done

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

# Bad start-up input: a non-zero exit and one readable line, no stack trace.
one_clean_line() {
  local want=$1 out status=0
  shift
  out=$("$@" 2>&1 >/dev/null) || status=$?
  [[ $status -ne 0 && $(wc -l <<<"$out") -eq 1 && $out == *"$want"* && $out != *goroutine* ]] ||
    { echo "  exit $status, output: $out"; return 1; }
}
busy=${Q_ADDR[gen1-docker]##*:}
q_start busy "$AMD64" --addr 127.0.0.1:0
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
