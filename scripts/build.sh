#!/usr/bin/env bash
# build.sh: cross-compile quinistry into dist/ as dist/quinistry-<os>-<arch>[-<variant>],
# reproducibly (CGO_ENABLED=0, -trimpath, no build id). The platforms come from $PLATFORMS
# (default "linux/amd64 linux/arm64"); the crossbuild package owns the naming.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./crossbuild/cmd/crossbuild -out "${DIST:-dist}" -platforms "${PLATFORMS:-linux/amd64 linux/arm64}"
