#!/usr/bin/env bash
# test.sh: every test, as README.md and .ci/run give it. Installs what the tests need (apt packages,
# pinned Go tools), then: go vet, the unit tests with the race detector, each fuzz target for a
# bounded number of executions, and each end-to-end suite of e2e/ (real daemons and clients; TestSoak
# is the short soak). FUZZTIME (default 100000x, about 10 s here) bounds each fuzz target,
# SOAK_SECONDS (default 20) the soak.
#
# A stage that fails does not stop the others: every stage runs and reports what it counted
# ("<stage>: N passed, M failed, K skipped" from go test -json: tests and subtests, or fuzz targets;
# the install and go vet count as one), then a summary of all stages, and the last line is
# "stages: N passed, M failed". The exit status is 1 when any stage failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
start=$(date +%s)
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
STAGE_NAMES=() STAGE_PASSED=() STAGE_FAILED=() STAGE_OK=() STAGE_SECONDS=()

# stage NAME CMD...: run CMD as one stage, its output shown (less the lines of Go tests that
# passed) and kept, and record its result: the counts its last "NAME: N passed, M failed" line
# gives (gotest's and fuzz's, from go test -json), else one passed or failed stage.
stage() {
  local name=$1 log rc passed=1 failed=0 ok=1 line t0=$SECONDS
  shift
  log=$LOGS/${#STAGE_NAMES[@]}.log
  printf '\n=== %s\n' "$name"
  "$@" 2>&1 | tee "$log" | grep --line-buffered -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS: )'
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
  [[ -z $line ]] || read -r passed failed < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*$/\1 \2/' <<<"$line")
  [[ -n $line ]] || ((rc == 0)) || passed=0 failed=1
  ((rc == 0 && failed == 0)) || ok=0
  ((ok || failed > 0)) || failed=1 # it failed without saying what: count the stage itself
  STAGE_NAMES+=("$name") STAGE_PASSED+=("$passed") STAGE_FAILED+=("$failed") STAGE_OK+=("$ok")
  STAGE_SECONDS+=($((SECONDS - t0)))
  printf '=== %s: %s (exit %d, %d s): %d passed, %d failed\n' "$name" "$( ((ok)) && echo PASS || echo FAIL)" "$rc" "$((SECONDS - t0))" "$passed" "$failed"
}

# gotest NAME DIR ARGS...: go test ARGS in DIR through gotestsum, which writes results/NAME.xml
# (JUnit) and results/NAME.json (go test -json); then print what it counted.
gotest() {
  local name=$1 dir=$2 rc=0
  shift 2
  (cd "$dir" && gotestsum --format standard-verbose --junitfile "$RESULTS/$name.xml" \
    --jsonfile "$RESULTS/$name.json" -- "$@") || rc=$?
  counts "$name" "$RESULTS/$name.json" || rc=1
  return $rc
}

# counts NAME JSON...: from go test -json files, print each skipped test by name, then
# "NAME: N passed, M failed, K skipped" (tests and subtests); fail when nothing ran.
counts() {
  local name=$1 passed failed skipped
  shift
  jq -r 'select(.Action == "skip" and .Test != null) | "SKIP \(.Test)"' "$@"
  read -r passed failed skipped < <(jq -rs '[.[] | select(.Test != null)] |
    "\([.[] | select(.Action == "pass")] | length) \([.[] | select(.Action == "fail")] | length) \([.[] | select(.Action == "skip")] | length)"' "$@")
  echo "$name: $passed passed, $failed failed, $skipped skipped"
  if ((passed + failed == 0)); then
    echo "$name: ran no test"
    return 1
  fi
}

# fuzz_all: every fuzz target for FUZZTIME executions, each through gotestsum (results/fuzz-*.xml and
# .json); prints what they counted. A count, not a duration: go1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a duration runs out while a worker is busy
# (golang/go#75804, fixed in go1.27).
fuzz_all() {
  local target pkg rc=0 files=()
  while read -r target; do
    pkg=$(grep -rlE "^func $target\(" --include='*_test.go' --exclude-dir=e2e . | head -1 | xargs dirname)
    gotestsum --format standard-verbose --junitfile "$RESULTS/fuzz-$target.xml" --jsonfile "$RESULTS/fuzz-$target.json" -- \
      -run='^$' -fuzz="^$target\$" -fuzztime="$FUZZTIME" "$pkg" </dev/null || rc=1
    files+=("$RESULTS/fuzz-$target.json")
  done < <(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' --exclude-dir=e2e . | sed 's/^func //' | sort -u)
  counts fuzz "${files[@]}" || rc=1
  return $rc
}

# unit: the unit tests of the product's and deploy's modules, with the race detector; the e2e module
# is vetted here and runs stage by stage below.
unit() {
  local rc=0
  (gotestsum --format standard-verbose --junitfile "$RESULTS/unit.xml" --jsonfile "$RESULTS/unit.json" -- \
    -race -count=1 ./...) || rc=1
  (cd deploy && go vet ./... && gotestsum --format standard-verbose --junitfile "$RESULTS/unit-deploy.xml" \
    --jsonfile "$RESULTS/unit-deploy.json" -- -race -count=1 ./...) || rc=1
  counts unit "$RESULTS/unit.json" "$RESULTS/unit-deploy.json" || rc=1
  return $rc
}

export PATH=$ROOT/.tools/bin:$PATH
RESULTS=$ROOT/results
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

stage "install tools" scripts/install-tools.sh
stage "go vet" sh -c 'go vet ./... && cd e2e && go vet ./...'
stage "unit tests" unit
stage "fuzz (${FUZZTIME:=100000x} each)" fuzz_all
# the end-to-end suites in Go (e2e/): one stage each
while read -r suite; do
  stage "e2e ${suite#Test}" gotest "e2e-${suite#Test}" e2e -count=1 -timeout=30m -run "^$suite\$" .
done < <(cd e2e && go test -list '^Test' . | grep '^Test')

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
