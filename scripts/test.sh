#!/usr/bin/env bash
# test.sh: every test, as README.md and .ci/run give it. Installs what the tests need (apt packages,
# pinned Go tools), then: go vet, the unit tests with the race detector, each fuzz target for a
# bounded number of executions, the end-to-end suites against real clients, and a short soak.
# FUZZTIME (default 100000x, about 10 s here) bounds each fuzz target, SOAK_SECONDS (default 20) the soak.
#
# A stage that fails does not stop the others: every stage runs and reports what it counted
# ("<stage>: N passed, M failed": Go tests and subtests, fuzz targets, or a suite's checks; a stage
# that counts nothing counts as one), then a summary of all stages, and the last line is
# "stages: N passed, M failed". The exit status is 1 when any stage failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
start=$(date +%s)
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
STAGE_NAMES=() STAGE_PASSED=() STAGE_FAILED=() STAGE_OK=() STAGE_SECONDS=()

# stage NAME CMD...: run CMD as one stage, its output shown (less the lines of Go tests that
# passed) and kept; count what it ran and what failed, and record the stage's result.
stage() {
  local name=$1 log rc passed failed ok line t0=$SECONDS
  shift
  log=$LOGS/${#STAGE_NAMES[@]}.log
  printf '\n=== %s\n' "$name"
  "$@" 2>&1 | tee "$log" | grep --line-buffered -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS: )'
  rc=${PIPESTATUS[0]}
  # a suite's own total ("<suite>: N passed, M failed"), else Go's per-test lines, else the exit status
  line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    read -r passed failed < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")
  else
    passed=$(grep -cE '^\s*--- PASS: ' "$log" || true)
    failed=$(grep -cE '^\s*--- FAIL: ' "$log" || true)
    if ((passed + failed == 0)); then
      ((rc == 0)) && passed=1 || failed=1
    fi
  fi
  ok=1
  if ((rc != 0 || failed > 0)); then
    ok=0
    ((failed > 0)) || failed=1 # it failed without saying what: count the stage itself
  fi
  STAGE_NAMES+=("$name") STAGE_PASSED+=("$passed") STAGE_FAILED+=("$failed") STAGE_OK+=("$ok")
  STAGE_SECONDS+=($((SECONDS - t0)))
  printf '=== %s: %s (exit %d, %d s): %d passed, %d failed\n' "$name" "$( ((ok)) && echo PASS || echo FAIL)" "$rc" "$((SECONDS - t0))" "$passed" "$failed"
}

# fuzz_all: every fuzz target for FUZZTIME executions; prints "fuzz: N passed, M failed" (targets).
# A count, not a duration: go1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" when a duration runs out while a worker is busy (golang/go#75804, fixed in go1.27).
fuzz_all() {
  local target pkg passed=0 failed=0
  for target in $(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' . | sed 's/^func //' | sort -u); do
    pkg=$(grep -rlE "^func $target\(" --include='*_test.go' . | head -1 | xargs dirname)
    if go test -run='^$' -fuzz="^$target\$" -fuzztime="$FUZZTIME" "$pkg"; then
      echo "PASS fuzz $target ($pkg)"
      passed=$((passed + 1))
    else
      echo "FAIL fuzz $target ($pkg)"
      failed=$((failed + 1))
    fi
  done
  echo "fuzz: $passed passed, $failed failed"
  ((failed == 0))
}

# unit: the unit tests of both modules, verbose so that each test is counted; the two go test
# runs' results are both kept.
unit() {
  local rc=0
  go test -race -count=1 -v ./... || rc=1
  (cd deploy && go vet ./... && go test -race -count=1 -v ./...) || rc=1
  return $rc
}

stage "install tools" scripts/install-tools.sh
stage "go vet" go vet ./...
stage "unit tests" unit
stage "fuzz (${FUZZTIME:=100000x} each)" fuzz_all
for suite in scripts/e2e-*.sh; do
  stage "$suite" "$suite"
done
stage "soak (${SOAK_SECONDS:-20}s)" scripts/soak.sh

echo
echo "test.sh: took $(($(date +%s) - start)) s"
stages_passed=0 stages_failed=0
for i in "${!STAGE_NAMES[@]}"; do
  if ((STAGE_OK[i])); then
    verdict=PASS stages_passed=$((stages_passed + 1))
  else
    verdict=FAIL stages_failed=$((stages_failed + 1))
  fi
  printf '%s %s (%d s): %d passed, %d failed\n' "$verdict" "${STAGE_NAMES[i]}" "${STAGE_SECONDS[i]}" "${STAGE_PASSED[i]}" "${STAGE_FAILED[i]}"
done
echo "stages: $stages_passed passed, $stages_failed failed"
((stages_failed == 0))
