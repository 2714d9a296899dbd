#!/usr/bin/env bash
# run.sh: build dist/ (linux/amd64 and linux/arm64, or $PLATFORMS) and run the registry for this
# machine's platform on the embedded defaults (:8080, quinistry:latest, Docker media types).
# Extra arguments go to quinistry, e.g. scripts/run.sh --format oci --addr 127.0.0.1:5000
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=${PLATFORMS:-linux/amd64 linux/arm64}
echo "run.sh: building dist/ for $platforms (the first build downloads Go modules: about a minute)" >&2
start=$(date +%s)
scripts/build.sh >/dev/null
echo "run.sh: built in $(($(date +%s) - start)) s:" dist/* >&2
arch=$(go env GOARCH)
echo "run.sh: starting dist/quinistry-linux-$arch $*" >&2
exec "dist/quinistry-linux-$arch" "$@"
