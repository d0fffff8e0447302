#!/usr/bin/env bash
# The test command: typecheck + build, lint, then each suite in its own mocha process
# (Pulumi mocks are process-global, so unit tests never share a process with the engine).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Idempotent (about two seconds once everything is there), so `npm test` works on a fresh machine.
bash scripts/tools.sh
. scripts/env.sh

echo "== typecheck + build"
rm -rf dist
npx tsc -p tsconfig.json
echo "== lint"
npx eslint .
status=0 passed=0 failed=0 skipped=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
suites="${ZCP_TEST_SUITES:-unit agent integration}"
for suite in $suites; do
  echo "== tests/$suite"
  npx mocha --config "tests/$suite/.mocharc.json" 2>&1 | tee "$log" || status=1
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  plain="$(sed 's/\x1b\[[0-9;]*m//g' "$log")"
  p=$(grep -Eo '^ *[0-9]+ passing' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  f=$(grep -Eo '^ *[0-9]+ failing' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  k=$(grep -Eo '^ *[0-9]+ pending' <<<"$plain" | grep -Eo '[0-9]+' | tail -1 || true)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${k:-0}))
done
# One closing line across all suites, in the plain form any reader understands.
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$passed" -eq 0 ]; then echo "test: no test ran" >&2; status=1; fi
exit $status
