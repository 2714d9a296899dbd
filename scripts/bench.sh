#!/usr/bin/env bash
# bench.sh: installs what the benchmark needs (crane and the CNCF registry by scripts/install-tools.sh;
# wrk, nginx-light and apache2-utils from apt), then runs the benchmark driver, e2e/cmd/bench, which
# prints a markdown report on stdout (see docs/benchmarks.md and the driver's doc comment):
#   BENCH_DURATION=10s BENCH_WARMUP=1s BENCH_ROUNDS=1 STARTUP_RUNS=21 BENCH_NICE=0 BENCH_VETH=1 scripts/bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$ROOT/scripts/lib/apt.sh"
"$ROOT/scripts/install-tools.sh" >&2
apt_ensure bench 'wrk=4.1.0*' 'nginx-light=1.22.1*' 'apache2-utils=2.4.*' >&2
cd "$ROOT/e2e"
exec go run ./cmd/bench
