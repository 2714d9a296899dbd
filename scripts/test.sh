#!/usr/bin/env bash
# test.sh: every test, as README.md and .ci/run give it. Installs what the tests need (apt packages,
# pinned Go tools), then: go vet, the unit tests with the race detector, each fuzz target for a
# bounded number of executions, the end-to-end suites against real clients, and a short soak.
# FUZZTIME (default 100000x, about 10 s here) bounds each fuzz target, SOAK_SECONDS (default 20) the soak.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
stages=0
stage() { printf '\n=== %s\n' "$*"; stages=$((stages + 1)); }

stage "install tools"
scripts/install-tools.sh

stage "go vet"
go vet ./...

stage "unit tests"
go test -race -count=1 ./...
(cd deploy && go vet ./... && go test -race -count=1 ./...)

# A count, not a duration: go1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" when a duration runs out while a worker is busy (golang/go#75804, fixed in go1.27).
stage "fuzz (${FUZZTIME:=100000x} each)"
for target in $(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' . | sed 's/^func //' | sort -u); do
  pkg=$(grep -rlE "^func $target\(" --include='*_test.go' . | head -1 | xargs dirname)
  go test -run='^$' -fuzz="^$target\$" -fuzztime="$FUZZTIME" "$pkg"
done

for suite in scripts/e2e-*.sh; do
  stage "$suite"
  "$suite"
done

stage "soak (${SOAK_SECONDS:-20}s)"
scripts/soak.sh

echo
echo "test.sh: all stages passed in $(($(date +%s) - start)) s"
# set -e stops at the first stage that fails, so reaching here means every stage passed.
echo "stages: $stages passed, 0 failed"
