#!/usr/bin/env bash
# Runs every test of kb: installs what is missing (scripts/setup.sh: PostgreSQL, pgvector,
# the local model; scripts/schemathesis.sh: schemathesis for the OpenAPI test;
# scripts/node-clients.sh: the Node.js client tests' packages; scripts/fuzz.sh: a bounded
# fuzzing run of /rest/v1's parser), then the
# unit tests and the integration tests against a real PostgreSQL (kb's embedded cluster in
# a temporary directory) and the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# schemathesis (pinned, in its own virtual environment) for the OpenAPI test.
KB_SCHEMATHESIS="$(bash scripts/schemathesis.sh)"
export KB_SCHEMATHESIS
# The Node.js clients (npm ci, pinned): the MCP TypeScript SDK for tests/it/mcp.rs and
# supabase-js for tests/it/http/supabase.rs.
NODE_BIN="$(bash scripts/node-clients.sh)"
export PATH="$NODE_BIN:$PATH"
# The request grammar of /rest/v1 under libFuzzer for a bounded time (cargo fuzz, nightly).
bash scripts/fuzz.sh "${KB_FUZZ_SECONDS:-60}"
command -v cargo >/dev/null 2>&1 || { echo "test: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
cargo test --locked --lib --bins --tests "$@"
