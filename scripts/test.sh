#!/usr/bin/env bash
# The test command: incremental typecheck + build, then lint and the three suites side by
# side, each in its own mocha process (Pulumi mocks are process-global, so unit tests never
# share a process with the engine). Every *.test.ts under tests/<suite>/ is picked up by its
# suite's mocharc (tests/<suite>/.mocharc.cjs); each suite runs its files in parallel workers,
# longest file first (tests/longest-first.cjs).
#
#   ZCP_TEST_SUITES="unit agent"   run only these suites (default: unit agent integration)
#   ZCP_TEST_SERIAL=1              one suite after another (easier to read when debugging)
#   ZCP_TEST_JOBS=N                parallel workers of each suite (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Idempotent (about two seconds once everything is there), so `npm test` works on a fresh machine.
bash scripts/tools.sh
. scripts/env.sh

started=$SECONDS
echo "== typecheck + build (incremental)"
npx tsc -p tsconfig.json
# The build is incremental, so output of a deleted or renamed source would linger in dist/
# (and a stale *.test.js would still run): drop compiled files without a source.
node scripts/prune-dist.js
echo "== build done in $((SECONDS - started))s"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
suites="${ZCP_TEST_SUITES:-unit agent integration}"
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f "%e %U %S" -o)

# Runs one named step into its own log; timings (wall, user CPU, system CPU) go beside it.
run_step() {
  local name="$1"
  shift
  local start=$SECONDS rc=0
  if [ ${#TIME[@]} -gt 0 ]; then
    "${TIME[@]}" "$logs/$name.time" "$@" >"$logs/$name.log" 2>&1 || rc=$?
  else
    "$@" >"$logs/$name.log" 2>&1 || rc=$?
    echo "$((SECONDS - start)) ? ?" >"$logs/$name.time"
  fi
  echo "$rc" >"$logs/$name.rc"
}

steps=(lint)
run_lint() { run_step lint npx eslint --cache --cache-location dist/.eslintcache .; }
for suite in $suites; do steps+=("$suite"); done
run_suite() {
  local suite="$1"
  # Every suite spreads its files over parallel workers (its mocharc): agent and integration
  # files are independent (each has its own fleet, work folder and emulator) and most of their
  # time is spent waiting on processes, so they share the CPUs well.
  run_step "$suite" npx mocha --config "tests/$suite/.mocharc.cjs" --jobs "${ZCP_TEST_JOBS:-2}"
}

if [ -n "${ZCP_TEST_SERIAL:-}" ]; then
  run_lint
  for suite in $suites; do run_suite "$suite"; done
else
  pids=()
  run_lint &
  pids+=($!)
  for suite in $suites; do
    run_suite "$suite" &
    pids+=($!)
  done
  wait "${pids[@]}"
fi

status=0 passed=0 failed=0 skipped=0
for step in "${steps[@]}"; do
  if [ "$step" = lint ]; then echo "== lint"; else echo "== tests/$step"; fi
  cat "$logs/$step.log"
  [ "$(cat "$logs/$step.rc")" -eq 0 ] || status=1
  [ "$step" = lint ] && continue
  plain="$(sed 's/\x1b\[[0-9;]*m//g' "$logs/$step.log")"
  p=$(grep -Eo '^ *[0-9]+ passing' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  f=$(grep -Eo '^ *[0-9]+ failing' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  k=$(grep -Eo '^ *[0-9]+ pending' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${k:-0}))
done
echo "== timings (seconds: wall, user CPU, system CPU)"
for step in "${steps[@]}"; do
  # GNU time puts "Command exited with non-zero status N" first when the step failed.
  read -r wall user sys < <(tail -1 "$logs/$step.time") || true
  printf '  %-12s wall %6s  user %6s  sys %6s  exit %s\n' "$step" "${wall:-?}" "${user:-?}" "${sys:-?}" "$(cat "$logs/$step.rc")"
done
echo "  total        wall $((SECONDS - started))"
# One closing line across all suites, in the plain form any reader understands.
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$passed" -eq 0 ]; then echo "test: no test ran" >&2; status=1; fi
exit $status
