#!/usr/bin/env bash
# The demo: zcp's main job on the embedded local environment (no AWS account).
#   v1 (healthy) → v2 (broken: the canary fails its health check and is rolled back, latest
#   stays v1) → v3 (whole fleet, image baked, image parameter moved, latest v3) while
#   requests stream through the local HAProxy (each second: which version answered, how many
#   failed), then `zcp status` and `zcp history`.
# Everything runs on this machine: the AWS emulator on 127.0.0.1, a file:// state backend under
# .work/demo, three local instances each with its own supervisord and port.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/tools.sh
. scripts/env.sh
npx tsc -p tsconfig.json

export ZCP_WORK_DIR="${ZCP_WORK_DIR:-$ROOT/.work/demo}"
zcp() { "$ROOT/bin/zcp" "$@"; }
# Start from nothing, and leave nothing running behind.
zcp local down >/dev/null 2>&1 || true
rm -rf "$ZCP_WORK_DIR"
trap 'zcp local down >/dev/null 2>&1 || true' EXIT
start=$SECONDS

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "zcp release --env local --version v1"
zcp release --env local --version v1

broken="$(mktemp -d)"
cp -R examples/app/. "$broken/"
touch "$broken/BROKEN"   # this release answers 503 on /health (see examples/app/README.md)
step "a broken build: zcp release --env local --version v2 --source \"\$broken\""
set +e
zcp release --env local --version v2 --source "$broken"
code=$?
set -e
rm -rf "$broken"
if [ "$code" -ne 1 ]; then echo "demo: expected the broken release to fail with exit 1, got $code" >&2; exit 1; fi
echo "(exit $code: the canary failed its health check and was rolled back; latest is still v1)"

step "while requests stream through the load balancer: zcp release --env local --version v3"
lb="$(zcp status --env local --json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).loadBalancer.url)')"
node dist/bench/lib/watch-traffic.js "$lb" --max-s 600 &
watcher=$!
trap 'kill -TERM "$watcher" 2>/dev/null || true; zcp local down >/dev/null 2>&1 || true' EXIT
zcp release --env local --version v3
sleep 1
kill -TERM "$watcher"
wait "$watcher" || true

step "zcp status --env local"
zcp status --env local

step "zcp history --env local"
zcp history --env local

printf '\ndemo finished in %ss\n' "$((SECONDS - start))"
