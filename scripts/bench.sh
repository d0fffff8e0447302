#!/usr/bin/env bash
# The benchmark command (`npm run bench`): builds, then runs each benchmark of bench/ in turn
# and repeats the line each one prints last as a summary. Every benchmark prints ratios
# against a baseline measured in the same run; none asserts a time.
#
#   ZCP_BENCH_QUICK=1   smaller sizes for a quick check: a 4-instance fleet, a 20 MB tree,
#                       one round of releases with and without traffic control,
#                       SSM fleets of 10 and 100
#   ZCP_BENCH_MB=N      size of the packaging tree in MB (default 200, 20 when quick)
#   ZCP_BENCH_ISOLATE=0 run the local-environment benchmarks in the machine's own network
#                       namespace (see below)
#
# The local environment's apps listen on fixed 127.0.0.1 ports (18080 and up), which another
# local environment on the same machine (a test run, a demo) may hold. When the machine
# allows it (`unshare -n`, usually as root), the benchmarks that start local environments run
# in a network namespace of their own with only a loopback interface: they neither collide
# with nor disturb anything else, and can reach nothing but 127.0.0.1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/env.sh
. scripts/env.sh
command -v pulumi >/dev/null || { echo "bench: run 'bash scripts/tools.sh' first (pulumi missing)" >&2; exit 1; }

quick="${ZCP_BENCH_QUICK:-0}"
if [ "$quick" = 1 ]; then
  release_sizes=4 ssm_sizes=10,100 mb="${ZCP_BENCH_MB:-20}" zd_rounds=1 timeline_sizes=16
else
  release_sizes=4,16,32 ssm_sizes=10,100,1000,5000 mb="${ZCP_BENCH_MB:-200}" zd_rounds=2 timeline_sizes=16,64
fi

echo "== build"
npx tsc -p tsconfig.json

cpu="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)"
echo "== machine: $(nproc) CPUs (${cpu:-unknown model}), ${mem:-unknown} memory, node $(node --version), $(date -u +%Y-%m-%dT%H:%MZ)"

can_isolate() {
  [ "${ZCP_BENCH_ISOLATE:-1}" = 1 ] && command -v unshare >/dev/null && command -v ip >/dev/null && unshare -n true 2>/dev/null
}
# Runs a command in a new network namespace whose only interface is loopback, when possible.
# shellcheck disable=SC2317 # called through run_bench
isolated() {
  if can_isolate; then
    unshare -n -- bash -c 'ip link set lo up && exec "$@"' bench-netns "$@"
  else
    "$@"
  fi
}
if can_isolate; then
  echo "== local environments run in a network namespace of their own"
else
  echo "== local environments share the machine's network: 127.0.0.1:18080 and up must be free"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
summary=()
status=0
run_bench() {
  local name="$1"
  shift
  echo
  echo "== $name"
  set +e
  "$@" 2>&1 | tee "$log"
  local code="${PIPESTATUS[0]}"
  set -e
  local last
  last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)"
  if [ "$code" -ne 0 ]; then
    status=1
    summary+=("$name: failed (exit $code): $last")
  else
    summary+=("$last")
  fi
}

run_bench release-overhead isolated node dist/bench/release-overhead.js --sizes "$release_sizes"
run_bench ssm-economy node dist/bench/ssm-economy.js --sizes "$ssm_sizes"
run_bench packaging node dist/bench/packaging.js --mb "$mb"
run_bench engine-overhead isolated node dist/bench/engine-overhead.js
run_bench aws-timeline node dist/bench/aws-timeline.js --sizes "$timeline_sizes"
run_bench zero-downtime isolated node dist/bench/zero-downtime.js --rounds "$zd_rounds"

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
