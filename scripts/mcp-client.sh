#!/usr/bin/env bash
# Idempotent: installs the MCP client test's dependencies (the official MCP TypeScript SDK,
# pinned by tests/mcp/package-lock.json) with `npm ci`, for tests/it/mcp.rs; a quick no-op
# when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/mcp"

log() { printf 'mcp-client: %s\n' "$*" >&2; }
die() { printf 'mcp-client: error: %s\n' "$*" >&2; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  # A machine without Node.js gets Debian's (>= 18, which the SDK needs).
  as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  log "installing Node.js and npm (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends nodejs npm >/dev/null \
    || die "could not install nodejs and npm: install Node.js >= 18"
fi
command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 18 (the MCP client test uses the TypeScript SDK)"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm with Node.js"

STAMP="node_modules/.kb-package-lock.sha256"
WANT="$(sha256sum package-lock.json | awk '{ print $1 }')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -f node_modules/@modelcontextprotocol/sdk/package.json ]]; then
  log "ok (tests/mcp/node_modules matches package-lock.json)"
  exit 0
fi
log "npm ci in tests/mcp"
npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed in tests/mcp"
printf '%s\n' "$WANT" > "$STAMP"
log "installed"
