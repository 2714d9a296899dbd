#!/usr/bin/env bash
# run.sh: build dist/ (linux/amd64 and linux/arm64, or $PLATFORMS) and run the registry for this
# machine's platform on the embedded defaults (:8080, quinistry:latest, Docker media types).
# Extra arguments go to quinistry, e.g. scripts/run.sh --format oci --addr 127.0.0.1:5000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
arch=$(go env GOARCH)
exec "dist/quinistry-linux-$arch" "$@"
