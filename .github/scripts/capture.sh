#!/usr/bin/env bash
# Runs a command, streams its output to the job log, and hands that output to later jobs as
# step outputs, for a pull-request comment:
#   status   the command's exit status
#   text     its output (stdout and stderr), shortened to ZCP_CAPTURE_LIMIT bytes (default
#            20000: three of them fit in one 65536-character comment)
# The step succeeds whatever the command returns, so the outputs exist even when it failed;
# the job checks `status` in a later step and fails there.
#
# Use: bash .github/scripts/capture.sh COMMAND [ARG...]
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: capture.sh COMMAND [ARG...]" >&2
  exit 2
fi
: "${GITHUB_OUTPUT:?capture.sh runs inside a GitHub Actions step}"
limit="${ZCP_CAPTURE_LIMIT:-20000}"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

set +e
"$@" 2>&1 | tee "$out"
status="${PIPESTATUS[0]}"
set -e

# A random delimiter: the captured text cannot end the value early and add outputs of its own.
delimiter="zcp_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
{
  printf 'status=%s\n' "$status"
  printf 'text<<%s\n' "$delimiter"
  # Cutting at a byte count can split a character; iconv -c drops the broken tail.
  head -c "$limit" "$out" | iconv -f UTF-8 -t UTF-8 -c || true
  if [ "$(wc -c <"$out")" -gt "$limit" ]; then
    printf '\n[shortened to %s bytes; the job log has all of it]' "$limit"
  fi
  printf '\n%s\n' "$delimiter"
} >>"$GITHUB_OUTPUT"
